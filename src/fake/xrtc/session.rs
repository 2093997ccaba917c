//! Logins, session cookies and the per-key / per-account limits.

use std::collections::HashMap;
use std::net::IpAddr;

use http::{header, HeaderValue, Response, StatusCode};
use rand::distr::{Alphanumeric, SampleString};
use rand::Rng;
use tokio::time::Instant;

use super::{json, now_ms, parse_fail, xerr, Body, Fake, State};

/// A logged-in client, known by its JSESSIONID.
pub(super) struct Session {
    /// The AWSALBAPP-0 cookie issued with it: both must come back.
    alb: String,
    /// The client's IP at login: the document forbids sharing cookies across IPs.
    ip: IpAddr,
    account: String,
    /// Item calls count against this key's rate.
    key: String,
    /// Idle expiry is measured from the previous accepted use.
    last_used: Instant,
}

#[derive(Default)]
pub(super) struct Limits {
    /// Per API key: when its last login was accepted (LOGIN_TIMEOUT).
    last_login: HashMap<String, Instant>,
    /// Per API key: (tokens, when counted).
    buckets: HashMap<String, (f64, Instant)>,
    /// Per account: requests this month (the fake's month is its lifetime).
    used: HashMap<String, u64>,
}

/// Why `Fake::limits` refused a request.
#[derive(Debug, PartialEq)]
pub(super) enum Refused {
    Rate,
    Quota,
}

impl Refused {
    fn answer(&self) -> Response<Body> {
        // The document states both limits but no error code for them: 50 and
        // 51 are the fake's own, in the system group.
        match self {
            Refused::Rate => xerr(
                StatusCode::BAD_REQUEST,
                2,
                50,
                "Too many requests per second for this API key",
            ),
            Refused::Quota => xerr(
                StatusCode::BAD_REQUEST,
                2,
                51,
                "Monthly request limit of this account reached",
            ),
        }
    }
}

fn denied(st: &mut State) -> Box<Response<Body>> {
    st.stats.session_denials += 1;
    Box::new(xerr(
        StatusCode::UNAUTHORIZED,
        4,
        10011,
        "Server session denied",
    ))
}

/// The value of one cookie in a `Cookie` header.
fn cookie<'a>(cookies: &'a str, name: &str) -> Option<&'a str> {
    cookies
        .split(';')
        .filter_map(|p| p.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

impl Fake {
    /// Counts one request against `key`'s rate and `account`'s quota.
    pub(super) fn limits(&self, st: &mut State, account: &str, key: &str) -> Result<(), Refused> {
        let cfg = &self.inner.cfg;
        let rate = f64::from(cfg.rate_per_second);
        let now = Instant::now();
        let (tokens, at) = st.limits.buckets.get(key).copied().unwrap_or((rate, now));
        let tokens = (tokens + (now - at).as_secs_f64() * rate).min(rate);
        // A client pacing itself exactly at the rate sends each request when
        // its token is due, but on a busy loopback it arrives a few ms early
        // as often as late: without tolerance the fake would refuse requests
        // that the real server, measuring over longer windows, accepts.
        let threshold = 1.0 - rate * cfg.rate_tolerance.as_secs_f64();
        if tokens < threshold {
            st.limits.buckets.insert(key.to_string(), (tokens, now));
            st.stats.rate_violations += 1;
            return Err(Refused::Rate);
        }
        st.limits.buckets.insert(key.to_string(), (tokens - 1.0, now));
        let used = st.limits.used.entry(account.to_string()).or_insert(0);
        *used += 1;
        if *used > cfg.monthly_quota {
            return Err(Refused::Quota);
        }
        Ok(())
    }

    pub(super) fn login(&self, ip: IpAddr, text: &str) -> Response<Body> {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
            return parse_fail(4, "login body is not JSON");
        };
        let (Some(account), Some(key)) = (v["accountid"].as_str(), v["apikey"].as_str()) else {
            return xerr(
                StatusCode::BAD_REQUEST,
                4,
                30,
                "INVALID_ARGUMENTS: accountid and apikey strings are required",
            );
        };
        let mut st = self.state();
        if !st.accounts.iter().any(|(a, k)| a == account && k == key) {
            return xerr(
                StatusCode::BAD_REQUEST,
                4,
                35,
                "INVALID_CREDENTIALS: wrong account id and/or API key",
            );
        }
        if let Err(refused) = self.limits(&mut st, account, key) {
            return refused.answer();
        }
        let now = Instant::now();
        let spacing = self.inner.cfg.login_timeout;
        if st.limits.last_login.get(key).is_some_and(|t| now - *t < spacing) {
            st.stats.login_rejections += 1;
            return xerr(
                StatusCode::BAD_REQUEST,
                4,
                45,
                "TOO_FREQUENT_LOGIN: login called too often for this API key",
            );
        }
        st.limits.last_login.insert(key.to_string(), now);
        let gone = self.sweep_idle(&mut st, now);
        let mut rng = rand::rng();
        let id: String = (0..16)
            .map(|_| format!("{:02X}", rng.random::<u8>()))
            .collect();
        let alb = Alphanumeric.sample_string(&mut rng, 40);
        st.sessions.insert(
            id.clone(),
            Session {
                alb: alb.clone(),
                ip,
                account: account.to_string(),
                key: key.to_string(),
                last_used: now,
            },
        );
        let ms = now_ms();
        st.stats.logins.push(ms);
        drop(st);
        self.inner.portals.forget_cursors(&gone);
        let mut r = json(StatusCode::OK, format!("{{\"servertimestamp\":{ms}}}"));
        for c in [
            format!("JSESSIONID={id}; Path=/; HttpOnly"),
            format!("AWSALBAPP-0={alb}; Path=/"),
        ] {
            // Hex and alphanumeric values: always a valid header value.
            if let Ok(v) = HeaderValue::from_str(&c) {
                r.headers_mut().append(header::SET_COOKIE, v);
            }
        }
        r
    }

    /// Drops sessions nobody used within `session_idle`, so a long-running
    /// fake does not keep every session ever opened. Returns their ids.
    fn sweep_idle(&self, st: &mut State, now: Instant) -> Vec<String> {
        let idle = self.inner.cfg.session_idle;
        let gone: Vec<String> = st
            .sessions
            .iter()
            .filter(|(_, s)| now - s.last_used >= idle)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &gone {
            st.sessions.remove(id);
        }
        gone
    }

    /// Checks the session cookies and the limits; returns (account, session id).
    pub(super) fn admit(
        &self,
        ip: IpAddr,
        cookies: &str,
    ) -> Result<(String, String), Box<Response<Body>>> {
        let mut st = self.state();
        let (Some(id), Some(alb)) = (
            cookie(cookies, "JSESSIONID"),
            cookie(cookies, "AWSALBAPP-0"),
        ) else {
            return Err(denied(&mut st));
        };
        let now = Instant::now();
        let idle = self.inner.cfg.session_idle;
        // An idle session is gone for good; a wrong AWSALBAPP-0 or another
        // client IP is denied without harming the real holder's session.
        if st.sessions.get(id).is_some_and(|s| now - s.last_used >= idle) {
            st.sessions.remove(id);
            drop(st);
            self.inner.portals.forget_cursors(&[id.to_string()]);
            st = self.state();
        }
        let (account, key) = match st.sessions.get_mut(id) {
            Some(s) if s.alb == alb && s.ip == ip => {
                s.last_used = now;
                (s.account.clone(), s.key.clone())
            }
            _ => return Err(denied(&mut st)),
        };
        if let Err(refused) = self.limits(&mut st, &account, &key) {
            return Err(Box::new(refused.answer()));
        }
        Ok((account, id.to_string()))
    }
}

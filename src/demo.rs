//! `countersign demo`: a fake of each route's upstream, listening where the
//! demo config says the upstream is, and a gateway in front of them; then
//! ready-to-paste curl lines. No credentials or network needed.

use std::fmt::Write as _;
use std::path::Path;

use crate::config::{Listen, Problem};
use crate::keys::Keyring;
use crate::kinds::{self, BuildEnv, Config, RouteConfig};
use crate::{fake, server};

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("config problems")]
    Config(Vec<Problem>),
    #[error("{0}")]
    Run(String),
}

type Stop = tokio::sync::watch::Receiver<bool>;

/// The fake of one kind: how the demo starts it and what it prints for it.
struct DemoFake {
    kind: &'static str,
    /// Serves on the route's upstream address, then on the kind's further
    /// endpoints' addresses, in order, until `stop` turns true.
    start: fn(Vec<tokio::net::TcpListener>, Stop),
    /// Ready-to-paste curl lines for a route of this kind.
    curl: fn(&mut String, &str, &str),
}

/// Every kind's fake (a test checks each registry row has one).
const FAKES: &[DemoFake] = &[
    DemoFake {
        kind: "xrtc",
        start: |mut l, stop| {
            let fake = fake::xrtc::Fake::new(fake::xrtc::Config::default());
            tokio::spawn(fake.serve(l.remove(0), None, stopped(stop)));
        },
        curl: curl_xrtc,
    },
    DemoFake {
        kind: "utilsio",
        start: |mut l, stop| {
            let fake = fake::utilsio::Fake::new(fake::utilsio::Config::default());
            tokio::spawn(fake.serve(l.remove(0), None, stopped(stop)));
        },
        curl: curl_utilsio,
    },
    DemoFake {
        kind: "teamdrive",
        start: |mut l, stop| {
            let fake = fake::teamdrive::Fake::new(fake::teamdrive::Config::default());
            tokio::spawn(fake.serve(l.remove(0), None, stopped(stop)));
        },
        curl: curl_teamdrive,
    },
    DemoFake {
        kind: "tts",
        start: |mut l, stop| {
            let fake = fake::tts::Fake::new(fake::tts::Config::default());
            let main = l.remove(0);
            if let Some(spider) = l.pop() {
                tokio::spawn(
                    fake.clone()
                        .serve_spider(spider, None, stopped(stop.clone())),
                );
            }
            tokio::spawn(fake.serve(main, None, stopped(stop)));
        },
        curl: curl_tts,
    },
    DemoFake {
        kind: "aws",
        start: |mut l, stop| {
            let fake = fake::aws::Fake::new(fake::aws::Config::default());
            tokio::spawn(fake.serve(l.remove(0), None, stopped(stop)));
        },
        curl: curl_aws,
    },
    DemoFake {
        // The demo's recipe route describes Binance's signing; its fake is
        // written from Binance's documentation.
        kind: "recipe",
        start: |mut l, stop| {
            let fake = fake::exchanges::binance::Fake::new(Default::default());
            tokio::spawn(fake.serve(l.remove(0), None, stopped(stop)));
        },
        curl: curl_recipe,
    },
    DemoFake {
        kind: "oauth2",
        start: |mut l, stop| {
            let fake = fake::oauth2::Fake::new(fake::oauth2::Config::default());
            tokio::spawn(fake.serve(l.remove(0), None, stopped(stop)));
        },
        curl: curl_oauth2,
    },
    DemoFake {
        kind: "oauth1",
        start: |mut l, stop| {
            let fake = fake::oauth1::Fake::new(fake::oauth1::Config::default());
            tokio::spawn(fake.serve(l.remove(0), None, stopped(stop)));
        },
        curl: curl_oauth1,
    },
];

async fn stopped(mut stop: Stop) {
    let _ = stop.wait_for(|s| *s).await;
}

pub async fn run(path: &Path) -> Result<(), DemoError> {
    let cfg = kinds::load(path).map_err(DemoError::Config)?;
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    for route in cfg.routes.values() {
        start_fake(route, &shutdown_rx).await?;
    }
    let addr = match cfg.server.listen {
        Listen::Tcp(a) => a,
        Listen::Unix(_) => return Err(DemoError::Run("the demo listens on TCP".into())),
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| DemoError::Run(format!("gateway cannot listen on {addr}: {e}")))?;
    println!("{}", curl_lines(&cfg, &addr.to_string()));
    forget_rotations(&cfg.server.state_dir);
    let gateway = server::gateway(cfg).map_err(|e| DemoError::Run(e.to_string()))?;
    server::serve(gateway, listener, server::shutdown_signal()).await;
    let _ = shutdown_tx.send(true);
    Ok(())
}

/// The demo's fakes start with their built-in keys every time, so keys
/// rotated in an earlier demo run would no longer work: forget them.
fn forget_rotations(state_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(state_dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with("keys.") {
            let _ = std::fs::remove_file(e.path());
            tracing::info!(file = %e.path().display(), "demo: forgot a key rotated in an earlier demo run");
        }
    }
}

/// Starts the fake of `route`'s kind on the route's upstream address (and
/// its kind's further endpoints).
async fn start_fake(route: &RouteConfig, stop: &Stop) -> Result<(), DemoError> {
    let fake = FAKES
        .iter()
        .find(|f| f.kind == route.kind_name)
        .ok_or_else(|| {
            DemoError::Run(format!("the demo has no fake for kind {}", route.kind_name))
        })?;
    let keyring = Keyring::detached();
    let kind = route
        .kind
        .build(&BuildEnv {
            keyring: &keyring,
            route,
        })
        .map_err(|e| DemoError::Run(format!("routes.{}: {e}", route.name)))?;
    let mut origins = vec![route.upstream.clone()];
    origins.extend(kind.endpoints().into_iter().map(|(origin, _)| origin));
    let mut listeners = Vec::new();
    for origin in origins {
        if origin.scheme_str() != Some("http") {
            return Err(DemoError::Run(format!(
                "routes.{}: {origin} must be a plain http:// loopback address in the demo config",
                route.name
            )));
        }
        let authority = origin
            .authority()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let listener = tokio::net::TcpListener::bind(&authority)
            .await
            .map_err(|e| {
                DemoError::Run(format!(
                    "fake for route {} cannot listen on {authority}: {e}",
                    route.name
                ))
            })?;
        tracing::info!(route = %route.name, %authority, "fake upstream started");
        listeners.push(listener);
    }
    (fake.start)(listeners, stop.clone());
    Ok(())
}

fn curl_lines(cfg: &Config, addr: &str) -> String {
    let mut out = format!("countersign demo: gateway on http://{addr}, fake upstreams behind it.\nPaste these (Ctrl-C stops the demo):\n\n");
    for route in cfg.routes.values() {
        if let Some(fake) = FAKES.iter().find(|f| f.kind == route.kind_name) {
            (fake.curl)(&mut out, addr, &route.name);
        }
    }
    let _ = writeln!(out, "# a countersign error: no such route");
    let _ = writeln!(out, "curl -si http://{addr}/nope/v1/item/get");
    out
}

fn curl_xrtc(out: &mut String, addr: &str, r: &str) {
    let _ = writeln!(
        out,
        "# XRTC: store an item (countersign logs in and holds the cookies)"
    );
    let _ = writeln!(out, "curl -s http://{addr}/{r}/v1/item/set -d '{{items:[{{\"portalid\":\"demo\",\"payload\":\"hello\"}}]}}'");
    let _ = writeln!(out, "# XRTC: read it back");
    let _ = writeln!(
        out,
        "curl -s http://{addr}/{r}/v1/item/get -d '{{portals:[{{\"portalid\":\"demo\"}}]}}'"
    );
    let _ = writeln!(
        out,
        "# XRTC: stream for 5 s; set more items from another shell and watch them arrive"
    );
    let _ = writeln!(out, "curl -sN http://{addr}/{r}/v1/item/get -d '{{portals:[{{\"portalid\":\"demo\"}}],\"mode\":\"stream\"}}'\n");
}

fn curl_utilsio(out: &mut String, addr: &str, r: &str) {
    let _ = writeln!(
        out,
        "# utilsio: countersign adds appId, the timestamp and the HMAC signature"
    );
    let _ = writeln!(
        out,
        "curl -s http://{addr}/{r}/subscription -H 'x-utilsio-device-id: phone-1'"
    );
    let _ = writeln!(out, "curl -s -X DELETE http://{addr}/{r}/subscription -d '{{\"deviceId\":\"phone-1\",\"subscriptionIds\":[\"s2\",\"s1\"]}}'\n");
}

fn curl_tts(out: &mut String, addr: &str, r: &str) {
    let id = fake::tts::DEMO_IDENTIFIER;
    let _ = writeln!(
        out,
        "# TTS: countersign logs in, holds the session, fills the body and adds the checksum"
    );
    let _ = writeln!(out, "curl -s http://{addr}/{r}/{id} -H 'content-type: application/json' -d '{{\"action\":\"fetchStats\",\"month\":\"2025-01\",\"output\":\"json\"}}'");
    let _ = writeln!(
        out,
        "curl -s http://{addr}/{r}/{id}/customers/get_users -d ''"
    );
    let _ = writeln!(
        out,
        "# TTS spider: a cache purge (POST) and a health check (HEAD, to the spider host)"
    );
    let _ = writeln!(
        out,
        "curl -s http://{addr}/{r}/https://{id} --data-urlencode action=purge"
    );
    let _ = writeln!(out, "curl -sI http://{addr}/{r}/https://{id}/products\n");
}

fn curl_aws(out: &mut String, addr: &str, r: &str) {
    let _ = writeln!(out, "# AWS SigV4 (S3, path style): countersign signs every request; an unmodified AWS SDK works with");
    let _ = writeln!(
        out,
        "# placeholder credentials and endpoint_url = http://{addr}/{r}"
    );
    let _ = writeln!(out, "curl -s -X PUT http://{addr}/{r}/demo-bucket");
    let _ = writeln!(
        out,
        "curl -s -X PUT http://{addr}/{r}/demo-bucket/hello.txt -d 'hello from countersign'"
    );
    let _ = writeln!(out, "curl -s http://{addr}/{r}/demo-bucket/hello.txt");
    let _ = writeln!(out, "curl -s 'http://{addr}/{r}/demo-bucket?list-type=2'\n");
}

fn curl_recipe(out: &mut String, addr: &str, r: &str) {
    let _ = writeln!(out, "# A recipe (Binance's signing, described in CEL in config/demo.toml): timestamp, recvWindow,");
    let _ = writeln!(
        out,
        "# and the HMAC signature over the query go on the query; the key in X-MBX-APIKEY"
    );
    let _ = writeln!(out, "curl -s 'http://{addr}/{r}/api/v3/account'");
    let _ = writeln!(out, "curl -s 'http://{addr}/{r}/api/v3/order?symbol=LTCBTC' -d 'side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1'\n");
}

fn curl_oauth2(out: &mut String, addr: &str, r: &str) {
    let _ = writeln!(out, "# OAuth 2.0: countersign fetches a client-credentials token once, holds and renews it, adds Authorization: Bearer");
    let _ = writeln!(out, "curl -s http://{addr}/{r}/orders/42");
    let _ = writeln!(out, "curl -s http://{addr}/{r}/orders -H 'content-type: application/json' -d '{{\"item\":\"book\"}}'\n");
}

fn curl_oauth1(out: &mut String, addr: &str, r: &str) {
    let _ = writeln!(out, "# OAuth 1.0a: countersign signs every request (HMAC-SHA1) with a fresh nonce and timestamp");
    let _ = writeln!(
        out,
        "curl -s 'http://{addr}/{r}/statuses/home_timeline.json?count=2'"
    );
    let _ = writeln!(out, "curl -s http://{addr}/{r}/statuses/update.json --data-urlencode 'status=Hello Ladies + Gentlemen'\n");
}

fn curl_teamdrive(out: &mut String, addr: &str, r: &str) {
    let _ = writeln!(
        out,
        "# TeamDrive: countersign sets <requesttime>, adds <distributor> and the checksum"
    );
    let _ = writeln!(out, "curl -s http://{addr}/{r}/yvva/api/api.xml -d \"<?xml version='1.0' encoding='UTF-8' ?><teamdrive><command>getuserdata</command><username>demo</username></teamdrive>\"\n");
}

/// The route table of `countersign check`: every setting, secrets by source only.
pub fn route_table(cfg: &Config) -> String {
    let mut out = format!(
        "listen {}  max_body {}  state_dir {}\n",
        cfg.server.listen,
        cfg.server.max_body,
        cfg.server.state_dir.display()
    );
    if let Some(st) = &cfg.server.state {
        let _ = writeln!(
            out,
            "state {}  prefix {}  on_state_failure {}  expected_replicas {}  password {}",
            st.display,
            st.prefix,
            st.on_failure.as_str(),
            st.expected_replicas,
            st.password_source.as_deref().unwrap_or("none")
        );
    }
    let _ = writeln!(
        out,
        "{:<12} {:<9} {:<32} {:<18} {:<12} {:<8} secrets",
        "route", "kind", "upstream", "rate", "quota/month", "login"
    );
    for r in cfg.routes.values() {
        let rate = r
            .rate_limit
            .map(|l| {
                format!(
                    "{}/s b{} w{}",
                    l.per_second,
                    l.burst,
                    humantime::format_duration(l.wait)
                )
            })
            .unwrap_or_else(|| "-".into());
        let quota = r
            .quota_per_month
            .map(|q| q.to_string())
            .unwrap_or_else(|| "-".into());
        let secrets: Vec<String> = r
            .secret_sources
            .iter()
            .map(|(k, s)| format!("{k}={s}"))
            .collect();
        let _ = writeln!(
            out,
            "{:<12} {:<9} {:<32} {:<18} {:<12} {:<8} {}",
            r.name,
            r.kind_name,
            format!(
                "{}{}",
                r.upstream.to_string().trim_end_matches('/'),
                r.base_path
            ),
            rate,
            quota,
            humantime::format_duration(r.login_interval).to_string(),
            secrets.join(" ")
        );
    }
    for (name, c) in &cfg.clients {
        let _ = writeln!(out, "client {name}: routes {}", c.routes.join(", "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_demo_fake() {
        for row in kinds::REGISTRY {
            assert!(
                FAKES.iter().any(|f| f.kind == row.name),
                "kind {} has no fake in the demo's FAKES table",
                row.name
            );
        }
    }
}

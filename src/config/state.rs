//! `[server] state = "redis://…"` and its companions: where replicas that
//! share a credential keep the state they must agree on.

use std::path::PathBuf;
use std::time::Duration;

use super::Section;
use crate::secret::Secret;

/// What a replica does while Redis cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnStateFailure {
    /// Refuse with 503 `state_unavailable`: the upstream's limits can never be
    /// exceeded, at the price of availability.
    FailClosed,
    /// Keep serving with local limits divided by `expected_replicas`.
    Local,
}

impl OnStateFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            OnStateFailure::FailClosed => "fail_closed",
            OnStateFailure::Local => "local",
        }
    }
}

/// A shared (Redis) state store.
#[derive(Debug, Clone)]
pub struct StateConfig {
    /// The URL as written; it may carry a password, so it is a secret.
    pub url: Secret,
    /// The URL with any password replaced by `***`, for logs and `check`.
    pub display: String,
    /// `state_password`: the password from a secret reference (wins over one in the URL).
    pub password: Option<Secret>,
    /// Where the password comes from (`env:NAME`, `file:/path`, `literal`), for `check`.
    pub password_source: Option<String>,
    /// Every key countersign writes starts with `<prefix>:`.
    pub prefix: String,
    /// Extra trust root for `rediss://` (a private CA).
    pub ca_file: Option<PathBuf>,
    /// Longest wait for one Redis answer before it counts as a failure.
    pub timeout: Duration,
    pub on_failure: OnStateFailure,
    /// How many replicas share each credential: the divisor of local limits.
    pub expected_replicas: u32,
}

/// Reads the `state*` keys of `[server]`. `None` without `state` (embedded store).
pub fn parse(s: &mut Section<'_>) -> Option<StateConfig> {
    let url: Option<String> = s.get("state");
    let password = s.secret("state_password", false);
    let password_source = password.as_ref().and_then(|_| {
        s.secret_sources
            .iter()
            .rev()
            .find(|(k, _)| k == "state_password")
            .map(|(_, source)| source.clone())
    });
    let prefix = s
        .get::<String>("state_prefix")
        .unwrap_or_else(|| "countersign".into());
    let ca_file = s.get::<PathBuf>("state_ca_file");
    let timeout = s
        .duration("state_timeout")
        .unwrap_or(Duration::from_millis(500));
    let on_failure = match s.get::<String>("on_state_failure").as_deref() {
        None | Some("fail_closed") => Some(OnStateFailure::FailClosed),
        Some("local") => Some(OnStateFailure::Local),
        Some(_) => {
            s.problem("on_state_failure", "must be \"fail_closed\" or \"local\"");
            None
        }
    };
    let replicas = s.get::<u32>("expected_replicas");
    let Some(url) = url else {
        for key in [
            "state_password",
            "state_prefix",
            "state_ca_file",
            "state_timeout",
            "on_state_failure",
            "expected_replicas",
        ] {
            if s.has(key) {
                s.problem(
                    key,
                    "only applies to a shared state store: set state = \"redis://host:port/db\"",
                );
            }
        }
        return None;
    };
    let (url, display) = match normalize_url(&url) {
        Ok(d) => d,
        Err(why) => {
            s.problem("state", why);
            return None;
        }
    };
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_graphic() && b != b'*') {
        s.problem(
            "state_prefix",
            "must be non-empty printable ASCII without spaces or '*'",
        );
    }
    if let Some(p) = &ca_file {
        if !p.is_file() {
            s.problem("state_ca_file", format!("file {} not found", p.display()));
        } else if !url.expose().starts_with("rediss://")
            && !url.expose().starts_with("rediss+cluster://")
        {
            s.problem(
                "state_ca_file",
                "only applies to a rediss:// (TLS) state URL",
            );
        }
    }
    if timeout.is_zero() {
        s.problem("state_timeout", "must be more than 0");
    }
    let expected_replicas = match (on_failure, replicas) {
        (_, Some(0)) => {
            s.problem("expected_replicas", "must be at least 1");
            1
        }
        (_, Some(n)) => n,
        (Some(OnStateFailure::Local), None) => {
            s.problem(
                "expected_replicas",
                "is required with on_state_failure = \"local\": local limits are the shared ones divided by it",
            );
            1
        }
        (_, None) => 1,
    };
    Some(StateConfig {
        url,
        display,
        password,
        password_source,
        prefix,
        ca_file,
        timeout,
        on_failure: on_failure?,
        expected_replicas,
    })
}

/// `redis://user:pw@host:6379/0` -> `redis://user:***@host:6379/0`; refuses
/// anything that is not a redis:// or rediss:// URL with a host, or a
/// Redis Cluster's `redis+cluster://h1:p1,h2:p2` (`rediss+cluster://`).
/// Errors never repeat a part of the URL.
pub fn redact_url(url: &str) -> Result<String, String> {
    Ok(split_url(url)?.display())
}

/// The URL for the Redis client (its user name and password percent-encoded
/// where they hold a character that would end them, `/` or `@`), and the
/// redacted one for logs and `check`.
fn normalize_url(url: &str) -> Result<(Secret, String), String> {
    let parts = split_url(url)?;
    let userinfo = match parts.userinfo {
        Some(u) => match u.split_once(':') {
            Some((user, pw)) => format!("{}:{}@", encode_userinfo(user), encode_userinfo(pw)),
            None => format!("{}@", encode_userinfo(u)),
        },
        None => String::new(),
    };
    let full = format!("{}://{userinfo}{}{}", parts.scheme, parts.host, parts.path);
    Ok((Secret::new(full), parts.display()))
}

/// A redis URL in parts, split where a password cannot: at the last `@`
/// (a password may hold `@` and `/`; a host and a database number cannot).
struct UrlParts<'a> {
    scheme: &'a str,
    userinfo: Option<&'a str>,
    host: &'a str,
    path: &'a str,
}

impl UrlParts<'_> {
    fn display(&self) -> String {
        let userinfo = match self.userinfo {
            Some(u) => match u.split_once(':') {
                Some((user, _)) => format!("{user}:***@"),
                None => format!("{u}@"),
            },
            None => String::new(),
        };
        format!("{}://{userinfo}{}{}", self.scheme, self.host, self.path)
    }
}

fn split_url(url: &str) -> Result<UrlParts<'_>, String> {
    let (scheme, rest) = url
        .split_once("://")
        .filter(|(scheme, _)| {
            matches!(
                *scheme,
                "redis" | "rediss" | "redis+cluster" | "rediss+cluster"
            )
        })
        .ok_or_else(|| {
            "must be a URL like redis://host:6379/0, rediss://host:6380/0 or redis+cluster://host1:7000,host2:7000".to_string()
        })?;
    let cluster = scheme.ends_with("+cluster");
    let (userinfo, after) = match rest.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, rest),
    };
    let (host, path) = match after.find('/') {
        Some(i) => after.split_at(i),
        None => (after, ""),
    };
    if host.is_empty() {
        return Err("has no host (write it like redis://127.0.0.1:6379/0)".into());
    }
    if cluster && host.split(',').any(str::is_empty) {
        return Err("names an empty node (write it like redis+cluster://h1:7000,h2:7000)".into());
    }
    let db = path.trim_start_matches('/');
    if !db.is_empty() && db.parse::<u32>().is_err() {
        return Err(
            "names a database that is not a number (write it like redis://host:6379/0)".into(),
        );
    }
    if cluster && !db.is_empty() && db != "0" {
        return Err("names a database other than 0: a Redis Cluster has only database 0".into());
    }
    Ok(UrlParts {
        scheme,
        userinfo,
        host,
        path,
    })
}

/// Percent-encodes what may not appear raw in a URL's user name or
/// password; `%` stays, so a part already encoded is left as it is.
fn encode_userinfo(part: &str) -> String {
    let mut out = String::with_capacity(part.len());
    for b in part.bytes() {
        let keep = b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%".contains(&b);
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_passwords_redacted() {
        assert_eq!(
            redact_url("redis://127.0.0.1:6379/2").unwrap(),
            "redis://127.0.0.1:6379/2"
        );
        assert_eq!(
            redact_url("rediss://app:hunter2@cache:6380/0").unwrap(),
            "rediss://app:***@cache:6380/0"
        );
        assert_eq!(
            redact_url("redis://:hunter2@cache").unwrap(),
            "redis://:***@cache"
        );
        assert!(redact_url("http://cache:6379").is_err());
        assert!(redact_url("redis:///0").is_err());
        assert!(redact_url("redis://cache/zero").is_err());
        assert_eq!(
            redact_url("rediss+cluster://app:hunter2@n1:7000,n2:7000").unwrap(),
            "rediss+cluster://app:***@n1:7000,n2:7000"
        );
        assert!(redact_url("redis+cluster://n1:7000,,n2:7000").is_err());
        assert!(redact_url("redis+cluster://n1:7000/3").is_err());
    }

    /// Split at the first `/`, a password holding one ended up in
    /// "database … is not a number", printed whole.
    #[test]
    fn a_password_with_slash_or_at_is_split_at_the_last_at_and_never_printed() {
        for (url, shown) in [
            ("redis://:pa/ss@cache:6379/0", "redis://:***@cache:6379/0"),
            (
                "rediss://app:p@ss/w0rd@cache:6380/1",
                "rediss://app:***@cache:6380/1",
            ),
            ("redis://:x/y/z@cache", "redis://:***@cache"),
        ] {
            assert_eq!(redact_url(url).unwrap(), shown, "{url}");
            let (full, display) = normalize_url(url).unwrap();
            assert_eq!(display, shown);
            let info = redis::IntoConnectionInfo::into_connection_info(full.expose()).unwrap();
            let pw = url.split_once("://").unwrap().1.rsplit_once('@').unwrap().0;
            let pw = pw.split_once(':').unwrap().1;
            assert_eq!(info.redis_settings().password(), Some(pw), "{url}");
            assert_eq!(info.addr().to_string().split(':').next(), Some("cache"));
        }
        let e = redact_url("redis://:hunter2/x@cache/zero").unwrap_err();
        assert!(!e.contains("hunter2") && !e.contains("zero"), "{e}");
    }
}

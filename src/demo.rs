//! `countersign demo`: a fake of each route's upstream, listening where the
//! demo config says the upstream is, and a gateway in front of them; then
//! ready-to-paste curl lines. No credentials or network needed.

use std::fmt::Write as _;
use std::path::Path;

use crate::config::{self, Config, Listen, Problem};
use crate::kinds::KindConfig;
use crate::{fake, server};

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("config problems")]
    Config(Vec<Problem>),
    #[error("{0}")]
    Run(String),
}

pub async fn run(path: &Path) -> Result<(), DemoError> {
    let cfg = config::load(path).map_err(DemoError::Config)?;
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    for route in cfg.routes.values() {
        let authority = route
            .upstream
            .authority()
            .map(|a| a.to_string())
            .unwrap_or_default();
        if route.upstream.scheme_str() != Some("http") {
            return Err(DemoError::Run(format!(
                "routes.{}.upstream must be a plain http:// loopback address in the demo config",
                route.name
            )));
        }
        let listener = tokio::net::TcpListener::bind(&authority)
            .await
            .map_err(|e| {
                DemoError::Run(format!(
                    "fake for route {} cannot listen on {authority}: {e}",
                    route.name
                ))
            })?;
        let mut rx = shutdown_rx.clone();
        let stop = async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        match &route.kind {
            KindConfig::Xrtc(_) => {
                let fake = fake::xrtc::Fake::new(fake::xrtc::Config::default());
                tokio::spawn(fake.serve(listener, None, stop));
            }
            KindConfig::Utilsio(_) => {
                let fake = fake::utilsio::Fake::new(fake::utilsio::Config::default());
                tokio::spawn(fake.serve(listener, None, stop));
            }
            KindConfig::Teamdrive(_) => {
                let fake = fake::teamdrive::Fake::new(fake::teamdrive::Config::default());
                tokio::spawn(fake.serve(listener, None, stop));
            }
            KindConfig::Tts(t) => {
                let fake = fake::tts::Fake::new(fake::tts::Config::default());
                if let Some((spider, _)) = &t.spider_upstream {
                    let at = spider
                        .authority()
                        .map(|a| a.to_string())
                        .unwrap_or_default();
                    let spider_listener =
                        tokio::net::TcpListener::bind(&at).await.map_err(|e| {
                            DemoError::Run(format!("fake spider cannot listen on {at}: {e}"))
                        })?;
                    let mut rx = shutdown_rx.clone();
                    let stop = async move {
                        let _ = rx.wait_for(|s| *s).await;
                    };
                    tokio::spawn(fake.clone().serve_spider(spider_listener, None, stop));
                }
                tokio::spawn(fake.serve(listener, None, stop));
            }
        }
        tracing::info!(route = %route.name, %authority, "fake upstream started");
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

fn curl_lines(cfg: &Config, addr: &str) -> String {
    let mut out = format!("countersign demo: gateway on http://{addr}, fake upstreams behind it.\nPaste these (Ctrl-C stops the demo):\n\n");
    for route in cfg.routes.values() {
        match route.kind {
            KindConfig::Xrtc(_) => {
                let r = &route.name;
                let _ = writeln!(
                    out,
                    "# XRTC: store an item (countersign logs in and holds the cookies)"
                );
                let _ = writeln!(out, "curl -s http://{addr}/{r}/v1/item/set -d '{{items:[{{\"portalid\":\"demo\",\"payload\":\"hello\"}}]}}'");
                let _ = writeln!(out, "# XRTC: read it back");
                let _ = writeln!(out, "curl -s http://{addr}/{r}/v1/item/get -d '{{portals:[{{\"portalid\":\"demo\"}}]}}'");
                let _ = writeln!(out, "# XRTC: stream for 5 s; set more items from another shell and watch them arrive");
                let _ = writeln!(out, "curl -sN http://{addr}/{r}/v1/item/get -d '{{portals:[{{\"portalid\":\"demo\"}}],\"mode\":\"stream\"}}'");
                let _ = writeln!(out, "# a countersign error: no such route");
                let _ = writeln!(out, "curl -si http://{addr}/nope/v1/item/get\n");
            }
            KindConfig::Utilsio(_) => {
                let r = &route.name;
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
            KindConfig::Tts(_) => {
                let r = &route.name;
                let id = fake::tts::DEMO_IDENTIFIER;
                let _ = writeln!(out, "# TTS: countersign logs in, holds the session, fills the body and adds the checksum");
                let _ = writeln!(out, "curl -s http://{addr}/{r}/{id} -H 'content-type: application/json' -d '{{\"action\":\"fetchStats\",\"month\":\"2025-01\",\"output\":\"json\"}}'");
                let _ = writeln!(
                    out,
                    "curl -s http://{addr}/{r}/{id}/customers/get_users -d ''"
                );
                let _ = writeln!(out, "# TTS spider: a cache purge (POST) and a health check (HEAD, to the spider host)");
                let _ = writeln!(
                    out,
                    "curl -s http://{addr}/{r}/https://{id} --data-urlencode action=purge"
                );
                let _ = writeln!(out, "curl -sI http://{addr}/{r}/https://{id}/products\n");
            }
            KindConfig::Teamdrive(_) => {
                let r = &route.name;
                let _ = writeln!(out, "# TeamDrive: countersign sets <requesttime>, adds <distributor> and the checksum");
                let _ = writeln!(out, "curl -s http://{addr}/{r}/yvva/api/api.xml -d \"<?xml version='1.0' encoding='UTF-8' ?><teamdrive><command>getuserdata</command><username>demo</username></teamdrive>\"\n");
            }
        }
    }
    out
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
            r.kind.name(),
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

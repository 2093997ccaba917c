//! The admin listener: `/healthz` (alive), `/readyz` (config loaded, secrets
//! resolved, per-route session and limit state as JSON, no secrets) and
//! `/metrics` (Prometheus/OpenMetrics text). Kept off the proxy port so that
//! callers of the gateway cannot read it unless the operator exposes it.

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::gateway::Gateway;

/// Serves the admin endpoints until `shutdown` resolves.
pub async fn serve(
    gateway: Arc<Gateway>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => return,
        };
        let gw = gateway.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let gw = gw.clone();
                async move { Ok::<_, Infallible>(answer(&gw, req).await) }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn answer(gw: &Gateway, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n", "text/plain");
    }
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n", "text/plain"),
        "/readyz" => text(
            StatusCode::OK,
            &readiness(gw).await.to_string(),
            "application/json",
        ),
        "/metrics" => {
            refresh_gauges(gw).await;
            text(
                StatusCode::OK,
                &gw.metrics.encode(),
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "try /healthz, /readyz or /metrics\n",
            "text/plain",
        ),
    }
}

fn text(status: StatusCode, body: &str, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    r
}

/// Per-route state: what an operator checks first when calls fail.
pub async fn readiness(gw: &Gateway) -> serde_json::Value {
    let snap = gw.snapshot.load_full();
    let mut routes = serde_json::Map::new();
    let mut names: Vec<_> = snap.routes.keys().collect();
    names.sort();
    for name in names {
        let r = &snap.routes[name];
        let session = r.session.as_ref().map(|s| {
            let last = s.last_login_ms.load(Ordering::Relaxed);
            serde_json::json!({
                "held": s.is_held(),
                "last_login_ms": (last > 0).then_some(last),
                "logins_ok": s.logins_ok.load(Ordering::Relaxed),
                "logins_failed": s.logins_failed.load(Ordering::Relaxed),
                // A token's or temporary credential's remaining life (never the value).
                "expires_in_s": s.expires_in().map(|d| d.as_secs()),
            })
        });
        let quota = match r.limits.quota_used().await {
            Some(used) => {
                serde_json::json!({ "used": used, "per_month": r.config.quota_per_month })
            }
            None => serde_json::Value::Null,
        };
        let rate = r.config.rate_limit.map(|l| {
            serde_json::json!({ "per_second": l.per_second, "burst": l.burst, "wait_ms": l.wait.as_millis() as u64 })
        });
        routes.insert(
            name.clone(),
            serde_json::json!({
                "kind": r.config.kind_name,
                "session": session,
                "quota": quota,
                "rate_limit": rate,
            }),
        );
    }
    // Redis down is "degraded", not "not ready": for a sidecar, failing
    // readiness would take the whole pod (the service too) out of rotation,
    // while `on_state_failure` already decides what requests get.
    let (state, status) = match &gw.registry.shared {
        Some(st) => (st.describe(), if st.is_up() { "ready" } else { "degraded" }),
        None => (
            serde_json::json!({ "store": "file", "dir": snap.config.server.state_dir }),
            "ready",
        ),
    };
    serde_json::json!({ "status": status, "state": state, "routes": routes })
}

async fn refresh_gauges(gw: &Gateway) {
    let snap = gw.snapshot.load_full();
    for (name, r) in &snap.routes {
        if let Some(used) = r.limits.quota_used().await {
            let used = i64::try_from(used).unwrap_or(i64::MAX);
            gw.metrics
                .quota_used
                .get_or_create(&crate::metrics::route(name))
                .set(used);
        }
        if let Some(limit) = r.config.quota_per_month {
            gw.metrics
                .quota_limit
                .get_or_create(&crate::metrics::route(name))
                .set(i64::try_from(limit).unwrap_or(i64::MAX));
        }
    }
}

//! Listeners and the accept loop: HTTP/1.1 and h2c from callers, a header
//! read timeout against slow callers, and a graceful drain on shutdown.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::gateway::Gateway;
use crate::proxy::GatewayService;
use crate::state::{FileStore, StateStore};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    State(String),
    #[error("{0}")]
    Upstream(#[from] crate::upstream::UpstreamError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Unsupported(String),
}

/// Builds the gateway for `config` with the embedded state store.
pub fn gateway(config: Config) -> Result<Arc<Gateway>, RunError> {
    let store: Arc<dyn StateStore> = Arc::new(
        FileStore::open(Path::new(&config.server.state_dir)).map_err(|e| RunError::State(e.0))?,
    );
    Ok(Arc::new(Gateway::new(config, store)?))
}

/// Serves `gateway` on `listener` until `shutdown` resolves, then lets
/// in-flight requests finish for up to the configured `shutdown_grace`.
pub async fn serve(
    gateway: Arc<Gateway>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) {
    let (grace, header_timeout) = {
        let snap = gateway.snapshot.load();
        (
            snap.config.server.shutdown_grace,
            snap.config.server.header_read_timeout,
        )
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(GatewayService(gateway.clone()));
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn.into_owned());
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!(grace_s = grace.as_secs_f64(), "draining in-flight requests");
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown_grace elapsed with requests still in flight");
    }
    gateway.flush().await;
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

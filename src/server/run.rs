//! `countersign run`: the production wiring. Builds the gateway, binds the
//! listeners (worker threads for TCP, two per core, one runtime for a unix
//! socket) and the admin listener, reloads on SIGHUP and on file changes,
//! and on `shutdown` drains in-flight requests and writes state.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use super::RunError;
use crate::config::Listen;
use crate::kinds::Config;

/// Runs the gateway for `config` (loaded from `path`, which reloads read
/// again) until `shutdown` resolves, then drains for `shutdown_grace`.
pub async fn run(
    config: Config,
    path: PathBuf,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let listen = config.server.listen.clone();
    let admin = config.server.admin;
    let workers = config.server.workers;
    let gateway = super::gateway(config)?;
    super::migrate_shared_state(&gateway).await;
    let listen_err = |source| RunError::Listen {
        addr: listen.to_string(),
        source,
    };
    // One signal stops every listener.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let tcp = match &listen {
        Listen::Tcp(addr) => Some(super::bind_reuseport(*addr, workers).map_err(listen_err)?),
        Listen::Unix(_) => None,
    };
    #[cfg(unix)]
    let unix = match &listen {
        Listen::Unix(p) => Some(super::bind_unix(p).map_err(listen_err)?),
        Listen::Tcp(_) => None,
    };
    #[cfg(not(unix))]
    if matches!(listen, Listen::Unix(_)) {
        return Err(RunError::Unsupported(
            "unix sockets need a unix system".into(),
        ));
    }
    tracing::info!(listen = %listen, workers, "countersign listening");
    if let Some(addr) = admin {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| RunError::Listen {
                addr: format!("admin {addr}"),
                source,
            })?;
        tracing::info!(admin_addr = %addr, "admin listening: /healthz /readyz /metrics");
        let mut rx = stop_rx.clone();
        tokio::spawn(crate::admin::serve(gateway.clone(), l, async move {
            let _ = rx.wait_for(|s| *s).await;
        }));
    }
    let watchers = [
        #[cfg(unix)]
        tokio::spawn(super::reload_on_sighup(gateway.clone(), path.clone())),
        tokio::spawn(super::reload_on_file_change(
            gateway.clone(),
            path,
            Duration::from_secs(2),
        )),
    ];
    let signal = async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    };
    match tcp {
        Some(tcp) => {
            let threads = super::serve_workers(gateway, tcp, stop_rx)
                .map_err(|e| RunError::Unsupported(format!("cannot start worker threads: {e}")))?;
            signal.await;
            // Each worker drains its own connections, then flushes state.
            let joined =
                tokio::task::spawn_blocking(move || threads.into_iter().all(|t| t.join().is_ok()))
                    .await;
            if !matches!(joined, Ok(true)) {
                super::access_log::flush();
                return Err(RunError::Unsupported(
                    "a worker thread failed while draining".into(),
                ));
            }
        }
        None =>
        {
            #[cfg(unix)]
            if let Some(unix) = unix {
                super::serve(gateway, unix, signal).await;
            }
        }
    }
    for w in watchers {
        w.abort();
    }
    // Every request has had its line by now: none is left in a buffer.
    super::access_log::flush();
    Ok(())
}

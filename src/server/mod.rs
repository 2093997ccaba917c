//! Listeners and the accept loop: HTTP/1.1 and h2c from callers, bounds
//! against slow and hostile callers (a header and a body read timeout, at
//! most `max_connections` at once), and a graceful drain on shutdown.
//! Each connection starts on the HTTP/1.1 fast path (`h1`); whatever that
//! does not take is served by hyper (`service`).

pub mod access_log;
mod conns;
mod h1;
mod prefixed;
mod run;
mod service;

pub use run::run;

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use self::conns::Connections;
use crate::gateway::Gateway;
use crate::kinds::Config;
use crate::metrics::Cutoff;
use crate::state::{FileStore, RedisState, StateStore};

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

/// Builds the gateway for `config` with its state store: Redis when
/// `server.state` names one, else the embedded store in `state_dir`.
pub fn gateway(config: Config) -> Result<Arc<Gateway>, RunError> {
    if let Some(sc) = &config.server.state {
        let shared = Arc::new(RedisState::connect(sc).map_err(|e| RunError::State(e.to_string()))?);
        tracing::info!(state = %sc.display, on_state_failure = sc.on_failure.as_str(), "shared state store: Redis");
        let store: Arc<dyn StateStore> = shared.clone();
        return Ok(Arc::new(Gateway::new(config, store, Some(shared))?));
    }
    let files = Arc::new(
        FileStore::open(Path::new(&config.server.state_dir))
            .map_err(|e| RunError::State(e.to_string()))?,
    );
    let store: Arc<dyn StateStore> = files.clone();
    let gateway = Gateway::new(config, store, None)?;
    // Before any request reads state: 0.1's names move to 0.2's identities.
    crate::state::migrate::files(&files, &gateway.state_claims());
    Ok(Arc::new(gateway))
}

/// Moves the Redis keys 0.1 wrote to 0.2's identities (quota counters,
/// login times, rotated keys); `run` calls it before serving. With Redis
/// down, it tries again in the background until Redis answers: a counter
/// moved late is added to the new one, so no count is lost.
pub async fn migrate_shared_state(gateway: &Arc<Gateway>) {
    let Some(st) = gateway.registry.shared.clone() else {
        return;
    };
    let claims = gateway.state_claims();
    let now = || time::OffsetDateTime::now_utc();
    if !crate::state::migrate::redis(&st, &claims, now())
        .await
        .retry
    {
        return;
    }
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            if !crate::state::migrate::redis(&st, &claims, now())
                .await
                .retry
            {
                break;
            }
        }
    });
}

/// A socket the gateway accepts callers on: TCP, or a unix socket for
/// sidecars that share a volume instead of a port.
pub trait Listener: Send {
    type Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static;
    fn accept(&self) -> impl Future<Output = std::io::Result<(Self::Io, String)>> + Send;
}

impl Listener for TcpListener {
    type Io = tokio::net::TcpStream;
    async fn accept(&self) -> std::io::Result<(Self::Io, String)> {
        let (s, peer) = TcpListener::accept(self).await?;
        let _ = s.set_nodelay(true);
        Ok((s, peer.to_string()))
    }
}

#[cfg(unix)]
impl Listener for tokio::net::UnixListener {
    type Io = tokio::net::UnixStream;
    async fn accept(&self) -> std::io::Result<(Self::Io, String)> {
        let (s, _) = tokio::net::UnixListener::accept(self).await?;
        Ok((s, "unix".to_string()))
    }
}

/// Binds a unix socket at `path` with mode 0660 (owner and group may connect),
/// replacing a stale socket file left by a previous run.
#[cfg(unix)]
pub fn bind_unix(path: &Path) -> std::io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_socket() {
            std::fs::remove_file(path)?;
        }
    }
    let listener = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(listener)
}

/// Binds `n` listening sockets on `addr` with SO_REUSEPORT, so the kernel
/// spreads new connections over them; with port 0 all get the first one's port.
pub fn bind_reuseport(addr: SocketAddr, n: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    use socket2::{Domain, Protocol, Socket, Type};
    let mut addr = addr;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        s.set_reuse_address(true)?;
        s.set_reuse_port(true)?;
        s.set_nonblocking(true)?;
        s.bind(&addr.into())?;
        s.listen(1024)?;
        let l: std::net::TcpListener = s.into();
        addr = l.local_addr()?;
        out.push(l);
    }
    Ok(out)
}

/// One thread per listener (two per core by default), each running a
/// single-threaded runtime that accepts, proxies and drives its own upstream
/// connections, so a request never waits on another thread (no work
/// stealing, no cross-thread wake-ups). The threads share the gateway (sessions, limits, config) and
/// each drains for `shutdown_grace` once `stop` turns true.
pub fn serve_workers(
    gateway: Arc<Gateway>,
    listeners: Vec<std::net::TcpListener>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<Vec<std::thread::JoinHandle<()>>> {
    let mut threads = Vec::with_capacity(listeners.len());
    // One count for the process: `max_connections` is shared by the workers.
    let conns = connections(&gateway);
    for (i, listener) in listeners.into_iter().enumerate() {
        let gateway = gateway.clone();
        let conns = conns.clone();
        let mut stop = stop.clone();
        let worker = move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(worker = i, error = %e, "cannot start a worker runtime");
                    return;
                }
            };
            runtime.block_on(async move {
                match TcpListener::from_std(listener) {
                    Ok(l) => {
                        serve_counted(gateway, l, conns, async move {
                            let _ = stop.wait_for(|s| *s).await;
                        })
                        .await
                    }
                    Err(e) => {
                        tracing::error!(worker = i, error = %e, "worker cannot use its listener")
                    }
                }
            });
        };
        threads.push(
            std::thread::Builder::new()
                .name(format!("countersign-w{i}"))
                .spawn(worker)?,
        );
    }
    Ok(threads)
}

/// The process's connection count, at the configured `max_connections`.
fn connections(gateway: &Gateway) -> Arc<Connections> {
    let max = gateway.snapshot.load().config.server.max_connections;
    gateway
        .metrics
        .connections_max
        .set(i64::try_from(max).unwrap_or(i64::MAX));
    Connections::new(
        max,
        gateway.metrics.connections_open.clone(),
        gateway.metrics.connections_evicted.clone(),
    )
}

/// Serves `gateway` on `listener` until `shutdown` resolves, then lets
/// in-flight requests finish for up to the configured `shutdown_grace`.
pub async fn serve<L: Listener>(
    gateway: Arc<Gateway>,
    listener: L,
    shutdown: impl Future<Output = ()>,
) {
    let conns = connections(&gateway);
    serve_counted(gateway, listener, conns, shutdown).await
}

/// [`serve`], counting connections in `conns` (shared by a process's workers).
async fn serve_counted<L: Listener>(
    gateway: Arc<Gateway>,
    listener: L,
    conns: Arc<Connections>,
    shutdown: impl Future<Output = ()>,
) {
    let (grace, bounds) = {
        let snap = gateway.snapshot.load();
        let server = &snap.config.server;
        (
            server.shutdown_grace,
            h1::Bounds {
                header: server.header_read_timeout,
                body: server.body_read_timeout,
            },
        )
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Request heads are bounded: 100 headers and 64 KiB in all (hyper answers
    // 431 past that); h2 header lists the same.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(bounds.header)
        .max_headers(100)
        .max_buf_size(64 * 1024);
    builder.http2().max_header_list_size(64 * 1024);
    let builder = Arc::new(builder);
    // Every connection holds a receiver: `closed()` waits for them all.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
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
        // At `max_connections` this waits (and accepts nothing more) until
        // an idle connection closed for this one, or any closed.
        let admitted = tokio::select! {
            a = conns.admit() => a,
            _ = &mut shutdown => break,
        };
        let gateway = gateway.clone();
        let builder = builder.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let slot = admitted.slot.clone();
            let (io, read) = match h1::run(stream, &gateway, bounds, &slot, &mut stop).await {
                h1::End::Closed => return,
                h1::End::HandOff { io, read } => (io, read),
            };
            let service = service::ConnService {
                gateway: gateway.clone(),
                slot: slot.clone(),
                body_timeout: bounds.body,
            };
            let io = TokioIo::new(prefixed::Prefixed::new(read, io, slot.clone()));
            let conn = builder.serve_connection(io, service).into_owned();
            tokio::pin!(conn);
            let ended = tokio::select! {
                ended = conn.as_mut() => ended,
                _ = stopped(&mut stop) => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
                _ = slot.evicted() => {
                    // Only an idle connection is chosen; hyper still lets
                    // a request that raced the choice finish.
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = ended {
                count_hyper_cutoff(&gateway, &slot, e.as_ref());
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(admitted);
        });
    }
    drop(listener);
    drop(stop_rx);
    tracing::info!(grace_s = grace.as_secs_f64(), "draining in-flight requests");
    let _ = stop_tx.send(true);
    if tokio::time::timeout(grace, stop_tx.closed()).await.is_err() {
        tracing::warn!("shutdown_grace elapsed with requests still in flight");
    }
    gateway.flush().await;
}

async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// hyper ends a connection with an error for a head it refused (400, 431:
/// framing) or one not whole within `header_read_timeout`; an idle
/// keep-alive connection timing out is no cut-off.
fn count_hyper_cutoff(
    gateway: &Gateway,
    slot: &conns::Slot,
    e: &(dyn std::error::Error + 'static),
) {
    let Some(e) = e.downcast_ref::<hyper::Error>() else {
        return;
    };
    let cutoff = if e.is_timeout() {
        slot.head_started
            .load(std::sync::atomic::Ordering::Relaxed)
            .then_some(Cutoff::HeaderTimeout)
    } else if e.is_parse() || e.is_parse_too_large() {
        Some(Cutoff::BadFraming)
    } else {
        None
    };
    if let Some(c) = cutoff {
        gateway.metrics.cutoff(c);
    }
}

/// Reloads `path` into `gateway` on every SIGHUP, for as long as it runs.
/// A config with problems is rejected whole (logged, counted) and the old one
/// keeps serving.
#[cfg(unix)]
pub async fn reload_on_sighup(gateway: Arc<Gateway>, path: std::path::PathBuf) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; config reload is off");
        return;
    };
    while hup.recv().await.is_some() {
        reload(&gateway, &path);
    }
}

/// One reload attempt; returns whether the new config is now serving.
pub fn reload(gateway: &Gateway, path: &Path) -> bool {
    use crate::metrics::ReloadResult;
    let outcome = crate::kinds::load(path)
        .map_err(|problems| {
            problems
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        })
        .and_then(|cfg| gateway.reload(cfg).map_err(|e| e.to_string()));
    let result = match &outcome {
        Ok(()) => {
            tracing::info!(config = %path.display(), "config reloaded");
            "ok"
        }
        Err(problems) => {
            tracing::error!(config = %path.display(), %problems, "config reload rejected; the previous config keeps serving");
            "rejected"
        }
    };
    gateway
        .metrics
        .reloads
        .get_or_create(&ReloadResult { result })
        .inc();
    outcome.is_ok()
}

/// Reloads when the config file or any `{ file = … }` secret it uses changes
/// (checked every `every`): Kubernetes rotates mounted secrets by swapping
/// the file, which polling sees whatever the filesystem's notification story.
pub async fn reload_on_file_change(
    gateway: Arc<Gateway>,
    path: std::path::PathBuf,
    every: Duration,
) {
    let files = |gw: &Gateway| {
        let snap = gw.snapshot.load();
        let mut f = snap.config.secret_files.clone();
        f.push(path.clone());
        f
    };
    let mut seen = fingerprint(&files(&gateway));
    loop {
        tokio::time::sleep(every).await;
        let now = fingerprint(&files(&gateway));
        if now != seen {
            tracing::info!("config or secret file changed; reloading");
            reload(&gateway, &path);
            // Whatever the outcome, wait for the next change before trying again.
            seen = fingerprint(&files(&gateway));
        }
    }
}

/// Size, modification time and a content digest of each file (absent files
/// count too). The files hold secrets and are read every 2 s: each buffer
/// is zeroed before it is freed.
fn fingerprint(
    files: &[std::path::PathBuf],
) -> Vec<Option<(u64, std::time::SystemTime, [u8; 32])>> {
    use sha2::Digest;
    files
        .iter()
        .map(|p| {
            let meta = std::fs::metadata(p).ok()?;
            let content = zeroize::Zeroizing::new(std::fs::read(p).ok()?);
            Some((
                meta.len(),
                meta.modified().ok()?,
                sha2::Sha256::digest(&*content).into(),
            ))
        })
        .collect()
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

//! The held login session of one credential.
//!
//! Invariants, each relied on by a test:
//! - single flight: one login at a time per credential; requests that need a
//!   session while a login is pending wait for it, and one failed login fails
//!   its waiters too instead of each of them trying again;
//! - spacing: two logins are never closer than `login_interval` *as the
//!   upstream sees them*. The upstream measures from when a login arrives,
//!   which we only know to be before its answer came back, so the interval
//!   runs from the previous login's completion. The time is also recorded
//!   (durably, in the state store) *before* a login is sent, so a restart or a
//!   crash mid-login still spaces the next one;
//! - no request is sent with an empty or known-dead session: a session unused
//!   for most of `session_idle` is treated as dead, and one the upstream
//!   rejected is dropped by generation, so the many requests that saw the same
//!   rejection cause exactly one new login.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method};
use tokio::time::Instant;

use crate::error::ProxyError;
use crate::kinds::{now_ms, Buffered, Kind, Outgoing};
use crate::limits::Limits;
use crate::secret::Secret;
use crate::state::StateStore;
use crate::upstream::Upstream;

/// A held session as handed to one request.
#[derive(Clone, Debug)]
pub struct Session {
    pub generation: u64,
    pub value: Secret,
}

struct Held {
    session: Session,
    last_used: Instant,
}

/// Whether `ensure` sent a login for this request, and how it went (for metrics and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginAttempt {
    None,
    Ok,
    Failed,
}

impl LoginAttempt {
    pub fn as_str(self) -> &'static str {
        match self {
            LoginAttempt::None => "none",
            LoginAttempt::Ok => "ok",
            LoginAttempt::Failed => "failed",
        }
    }
}

/// What the last finished login attempt left behind, for requests that waited on it.
#[derive(Default)]
struct LoginRecord {
    last_failure: Option<ProxyError>,
}

pub struct SessionSlot {
    /// Credential identity: state keys and log lines use it, never the secret.
    id: String,
    login_interval: Duration,
    session_idle: Duration,
    store: Arc<dyn StateStore>,
    current: Mutex<Option<Held>>,
    generations: AtomicU64,
    /// Held for the whole of a login (spacing wait included): the single flight.
    login_lock: tokio::sync::Mutex<LoginRecord>,
    /// Bumped when a login attempt finishes, so waiters can tell one happened.
    attempts: AtomicU64,
    /// When the last login was sent (monotonic); loaded once from the store.
    last_login: Mutex<Option<Instant>>,
    loaded: tokio::sync::OnceCell<()>,
    /// Counters for /readyz and metrics.
    pub logins_ok: AtomicU64,
    pub logins_failed: AtomicU64,
    pub last_login_ms: AtomicU64,
}

impl SessionSlot {
    pub fn new(
        id: String,
        login_interval: Duration,
        session_idle: Duration,
        store: Arc<dyn StateStore>,
    ) -> Self {
        SessionSlot {
            id,
            login_interval,
            session_idle,
            store,
            current: Mutex::new(None),
            generations: AtomicU64::new(0),
            login_lock: tokio::sync::Mutex::new(LoginRecord::default()),
            attempts: AtomicU64::new(0),
            last_login: Mutex::new(None),
            loaded: tokio::sync::OnceCell::new(),
            logins_ok: AtomicU64::new(0),
            logins_failed: AtomicU64::new(0),
            last_login_ms: AtomicU64::new(0),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    fn store_key(&self) -> String {
        format!("login.{}", self.id)
    }

    /// A session is dead a little before the upstream's idle limit: our clock
    /// starts when we send, the upstream's when it receives, and a request may
    /// still queue for a rate permit after this check.
    fn idle_limit(&self) -> Duration {
        self.session_idle - self.session_idle / 10
    }

    /// The held session if it is alive now.
    pub fn alive(&self) -> Option<Session> {
        let cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        cur.as_ref()
            .filter(|h| h.last_used.elapsed() < self.idle_limit())
            .map(|h| h.session.clone())
    }

    pub fn is_held(&self) -> bool {
        self.alive().is_some()
    }

    /// Records a use of the session (a request carrying it is being sent).
    pub fn touch(&self, generation: u64) {
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = cur.as_mut().filter(|h| h.session.generation == generation) {
            h.last_used = Instant::now();
        }
    }

    /// The upstream rejected this generation: drop it unless a newer one replaced it.
    pub fn invalidate(&self, generation: u64) {
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if cur
            .as_ref()
            .is_some_and(|h| h.session.generation == generation)
        {
            *cur = None;
        }
    }

    /// The upstream refreshed the session's value (e.g. a re-issued cookie).
    pub fn update(&self, generation: u64, value: Secret) {
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = cur.as_mut().filter(|h| h.session.generation == generation) {
            h.session.value = value;
        }
    }

    /// Drops the held session (the caller logged out).
    pub fn clear(&self) {
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// The held session, logging in first if there is none (single flight, spaced).
    pub async fn ensure(
        &self,
        deadline: Instant,
        kind: &dyn Kind,
        upstream: &Upstream,
        limits: &Limits,
        attempt: &mut LoginAttempt,
    ) -> Result<Session, ProxyError> {
        if let Some(s) = self.alive() {
            return Ok(s);
        }
        let attempts_before = self.attempts.load(Ordering::Acquire);
        let mut record = tokio::time::timeout_at(deadline, self.login_lock.lock())
            .await
            .map_err(|_| ProxyError::LoginThrottled(self.login_interval))?;
        if let Some(s) = self.alive() {
            return Ok(s);
        }
        if self.attempts.load(Ordering::Acquire) != attempts_before {
            if let Some(e) = &record.last_failure {
                return Err(e.clone());
            }
        }
        self.space(deadline).await?;
        let ctx = LoginCtx {
            slot: self,
            upstream,
            limits,
            deadline,
        };
        let result = kind.login(&ctx).await;
        // Whatever the outcome, the next login is spaced from now.
        self.login_finished().await;
        *attempt = if result.is_ok() {
            LoginAttempt::Ok
        } else {
            LoginAttempt::Failed
        };
        self.attempts.fetch_add(1, Ordering::AcqRel);
        match result {
            Ok(value) => {
                let generation = self.generations.fetch_add(1, Ordering::AcqRel) + 1;
                let session = Session { generation, value };
                *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(Held {
                    session: session.clone(),
                    last_used: Instant::now(),
                });
                record.last_failure = None;
                self.logins_ok.fetch_add(1, Ordering::Relaxed);
                tracing::info!(credential = %self.id, generation, "logged in upstream");
                Ok(session)
            }
            Err(e) => {
                tracing::warn!(credential = %self.id, error = %e, "upstream login failed");
                self.logins_failed.fetch_add(1, Ordering::Relaxed);
                record.last_failure = Some(e.clone());
                Err(e)
            }
        }
    }

    /// Waits until a login is allowed, then records one as sent now (durably).
    /// Called with the login lock held.
    async fn space(&self, deadline: Instant) -> Result<(), ProxyError> {
        self.loaded
            .get_or_try_init(|| self.load_last_login())
            .await?;
        let last = *self.last_login.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(last) = last {
            let earliest = last + self.login_interval;
            let now = Instant::now();
            if earliest > deadline {
                return Err(ProxyError::LoginThrottled(earliest - now));
            }
            tokio::time::sleep_until(earliest).await;
        }
        *self.last_login.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        let ms = now_ms();
        self.last_login_ms.store(ms, Ordering::Relaxed);
        self.store
            .put(&self.store_key(), ms.to_string())
            .await
            .map_err(|e| ProxyError::State(e.to_string()))
    }

    /// A login just completed (its answer, or its failure, is in): the next
    /// one is spaced from now. A failed write is logged, not fatal: the
    /// in-memory time still spaces logins in this process.
    async fn login_finished(&self) {
        *self.last_login.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        let ms = now_ms();
        self.last_login_ms.store(ms, Ordering::Relaxed);
        if let Err(e) = self.store.put(&self.store_key(), ms.to_string()).await {
            tracing::error!(credential = %self.id, error = %e, "cannot record the login time");
        }
    }

    async fn load_last_login(&self) -> Result<(), ProxyError> {
        let stored = self
            .store
            .get(&self.store_key())
            .await
            .map_err(|e| ProxyError::State(e.to_string()))?;
        let Some(ms) = stored.and_then(|v| v.trim().parse::<u64>().ok()) else {
            return Ok(());
        };
        self.last_login_ms.store(ms, Ordering::Relaxed);
        // A stored time in the future (clock stepped back) counts as "just now".
        let ago = Duration::from_millis(now_ms().saturating_sub(ms));
        if ago < self.login_interval {
            let then = Instant::now().checked_sub(ago).unwrap_or_else(Instant::now);
            *self.last_login.lock().unwrap_or_else(|p| p.into_inner()) = Some(then);
        }
        Ok(())
    }
}

/// What a kind's login may do: send requests through the route's limits, and
/// wait for spacing before a second login in the same attempt (TTS's
/// terminate-then-login).
pub struct LoginCtx<'a> {
    slot: &'a SessionSlot,
    upstream: &'a Upstream,
    limits: &'a Limits,
    deadline: Instant,
}

/// Login answers are small; a bigger one is refused rather than held.
const LOGIN_BODY_MAX: usize = 256 * 1024;

impl LoginCtx<'_> {
    /// Sends one request (taking a rate permit and a quota unit) and reads its answer.
    pub async fn send(&self, out: Outgoing) -> Result<Buffered, ProxyError> {
        self.limits.acquire(self.deadline).await?;
        let answer = self
            .upstream
            .send_buffered(out, self.deadline, LOGIN_BODY_MAX)
            .await?;
        self.limits.hold.observe(answer.status, &answer.headers);
        Ok(answer)
    }

    /// For a second login in one attempt: spaces it `login_interval` after
    /// the previous one's completion (now) and records it.
    pub async fn space_next_login(&self) -> Result<(), ProxyError> {
        self.slot.login_finished().await;
        self.slot.space(self.deadline).await
    }

    /// A POST with a body and headers, for login hooks.
    pub fn post(path: &str, headers: HeaderMap, body: impl Into<Bytes>) -> Outgoing {
        Outgoing {
            method: Method::POST,
            path_and_query: path.to_string(),
            headers,
            body: Some(body.into()),
        }
    }
}

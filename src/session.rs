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

use futures_util::future::BoxFuture;
use tokio::time::Instant;

use crate::config::OnStateFailure;
use crate::error::ProxyError;
use crate::secret::Secret;
use crate::state::StateError;
use crate::state::{RedisState, SharedTimes, StateStore};
use crate::vocab::{now_ms, Buffered, Credential, Kind, LoginChannel, Outgoing, Transport};

/// Why no session could be had for a request.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LoginError {
    /// The next login is not allowed this soon, and the request cannot wait.
    #[error("the next login is not allowed for {}s (login_interval)", .0.as_secs_f64())]
    Throttled(Duration),
    #[error(transparent)]
    State(#[from] StateError),
    /// The kind's login failed (the upstream refused it, or could not be reached).
    #[error(transparent)]
    Failed(ProxyError),
}

impl From<LoginError> for ProxyError {
    fn from(e: LoginError) -> Self {
        match e {
            LoginError::Throttled(d) => ProxyError::LoginThrottled(d),
            LoginError::State(e) => ProxyError::from(e),
            LoginError::Failed(e) => e,
        }
    }
}

/// A held session as handed to one request.
#[derive(Clone, Debug)]
pub struct Session {
    pub generation: u64,
    pub value: Secret,
}

struct Held {
    session: Session,
    last_used: Instant,
    /// The upstream stops taking it then (a token's `expires_in`).
    expires_at: Option<Instant>,
    /// The first request from then on renews it; others keep using it.
    renew_at: Option<Instant>,
}

/// The held session as a request finds it.
enum Found {
    None,
    Fresh(Session),
    /// Still valid, but due for renewal.
    Due(Session),
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
    last_failure: Option<LoginError>,
}

pub struct SessionSlot {
    /// Credential identity: state keys and log lines use it, never the secret.
    id: String,
    login_interval: Duration,
    session_idle: Duration,
    /// 0.9 x `session_idle`, computed once: read on every request.
    idle_limit: Duration,
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
    /// With Redis: spacing, single flight and (TTS) the session itself,
    /// across replicas.
    shared: Option<SharedLogin>,
    /// The newest shared generation this replica saw rejected: never adopted again.
    dead: AtomicU64,
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
        shared: Option<SharedLogin>,
    ) -> Self {
        SessionSlot {
            shared,
            dead: AtomicU64::new(0),
            id,
            login_interval,
            session_idle,
            idle_limit: session_idle - session_idle / 10,
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
        self.idle_limit
    }

    /// The held session if it is alive now (whether or not due for renewal).
    pub fn alive(&self) -> Option<Session> {
        match self.found() {
            Found::Fresh(s) | Found::Due(s) => Some(s),
            Found::None => None,
        }
    }

    fn found(&self) -> Found {
        let cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let Some(h) = cur.as_ref() else {
            return Found::None;
        };
        let now = Instant::now();
        if now.saturating_duration_since(h.last_used) >= self.idle_limit()
            || h.expires_at.is_some_and(|at| now >= at)
        {
            return Found::None;
        }
        if h.renew_at.is_some_and(|at| now >= at) {
            return Found::Due(h.session.clone());
        }
        Found::Fresh(h.session.clone())
    }

    /// How long the held session stays valid, when it expires (for /readyz).
    pub fn expires_in(&self) -> Option<Duration> {
        let cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        cur.as_ref()
            .and_then(|h| h.expires_at)
            .map(|at| at.saturating_duration_since(Instant::now()))
    }

    fn install(&self, held: Held) {
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(held);
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

    /// The upstream rejected this generation: drop it unless a newer one
    /// replaced it (here, and in Redis when the session is shared).
    pub async fn invalidate(&self, generation: u64) {
        {
            let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
            if cur
                .as_ref()
                .is_some_and(|h| h.session.generation == generation)
            {
                *cur = None;
            }
        }
        if let Some((sh, key)) = self.shared_session() {
            self.dead.fetch_max(generation, Ordering::AcqRel);
            if let Err(e) = sh.state.session_drop(key, Some(generation)).await {
                tracing::warn!(credential = %self.id, error = %e, "could not drop the rejected shared session");
            }
        }
    }

    /// The upstream refreshed the session's value (e.g. a re-issued cookie).
    pub fn update(&self, generation: u64, value: Secret) {
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = cur.as_mut().filter(|h| h.session.generation == generation) {
            h.session.value = value;
        }
    }

    /// Drops the held session (the caller logged out), for every replica.
    pub async fn clear(&self) {
        let held = self
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some((sh, key)) = self.shared_session() {
            if let Some(h) = held {
                self.dead.fetch_max(h.session.generation, Ordering::AcqRel);
            }
            if let Err(e) = sh.state.session_drop(key, None).await {
                tracing::warn!(credential = %self.id, error = %e, "could not drop the shared session");
            }
        }
    }

    /// The held session, logging in first if there is none (single flight, spaced).
    pub async fn ensure(
        &self,
        deadline: Instant,
        kind: &dyn Kind,
        transport: &dyn Transport,
        attempt: &mut LoginAttempt,
    ) -> Result<Session, LoginError> {
        match self.found() {
            Found::Fresh(s) => Ok(s),
            // Boxed: logins are rare, and their futures are large; every
            // request's future would otherwise carry their size.
            Found::Due(s) => Ok(Box::pin(self.renew(s, deadline, kind, transport, attempt)).await),
            Found::None => Box::pin(self.log_in_or_adopt(deadline, kind, transport, attempt)).await,
        }
    }

    /// No session is held: adopt a shared one, or log in (single flight, spaced).
    async fn log_in_or_adopt(
        &self,
        deadline: Instant,
        kind: &dyn Kind,
        transport: &dyn Transport,
        attempt: &mut LoginAttempt,
    ) -> Result<Session, LoginError> {
        if let Some(s) = self.adopt().await? {
            return Ok(s);
        }
        let attempts_before = self.attempts.load(Ordering::Acquire);
        let mut record = tokio::time::timeout_at(deadline, self.login_lock.lock())
            .await
            .map_err(|_| LoginError::Throttled(self.login_interval))?;
        if let Some(s) = self.alive() {
            return Ok(s);
        }
        if self.attempts.load(Ordering::Acquire) != attempts_before {
            if let Some(e) = &record.last_failure {
                return Err(e.clone());
            }
        }
        let lease = match self.lease(deadline).await? {
            Leased::Adopted(s) => return Ok(s),
            Leased::Token(t) => Some(t),
            Leased::NotShared => None,
        };
        let result = self.log_in(deadline, deadline, kind, transport).await;
        let result = match result {
            Ok(credential) => Ok(self.publish(credential).await),
            Err(e) => Err(e),
        };
        if let (Some(token), Some(sh)) = (lease, &self.shared) {
            if let Err(e) = sh.state.unlock(&sh.lock_key, &token).await {
                tracing::warn!(credential = %self.id, error = %e, "could not release the login lease; it expires by itself");
            }
        }
        if !matches!(
            result,
            Err(LoginError::Throttled(_)) | Err(LoginError::State(_))
        ) {
            *attempt = if result.is_ok() {
                LoginAttempt::Ok
            } else {
                LoginAttempt::Failed
            };
            self.attempts.fetch_add(1, Ordering::AcqRel);
        }
        match result {
            Ok(held) => {
                let session = held.session.clone();
                self.install(held);
                record.last_failure = None;
                self.logins_ok.fetch_add(1, Ordering::Relaxed);
                tracing::info!(credential = %self.id, generation = session.generation, "logged in upstream");
                Ok(session)
            }
            Err(e @ (LoginError::Throttled(_) | LoginError::State(_))) => Err(e),
            Err(e) => {
                tracing::warn!(credential = %self.id, error = %e, "upstream login failed");
                self.logins_failed.fetch_add(1, Ordering::Relaxed);
                record.last_failure = Some(e.clone());
                Err(e)
            }
        }
    }

    /// Renews a session that is still valid but due: one renewal at a
    /// time, and only when a login is allowed now; whoever does not renew,
    /// and whoever's renewal fails, keeps using the current one until it
    /// expires (a token endpoint that is down must not fail requests a
    /// valid token could serve).
    async fn renew(
        &self,
        current: Session,
        deadline: Instant,
        kind: &dyn Kind,
        transport: &dyn Transport,
        attempt: &mut LoginAttempt,
    ) -> Session {
        let Ok(_one_at_a_time) = self.login_lock.try_lock() else {
            return current;
        };
        match self.found() {
            Found::Fresh(s) => return s,
            Found::None => return current,
            Found::Due(_) => {}
        }
        // Another replica may have renewed it already.
        if let Ok(Some(s)) = self.adopt().await {
            if s.generation != current.generation {
                return s;
            }
        }
        let lease = match self.lease_now().await {
            Some(lease) => lease,
            None => return current,
        };
        // Spaced like any login, but never waited for: the current one serves.
        let result = self.log_in(Instant::now(), deadline, kind, transport).await;
        if let (Some(token), Some(sh)) = (lease, &self.shared) {
            let _ = sh.state.unlock(&sh.lock_key, &token).await;
        }
        match result {
            Ok(credential) => {
                let held = self.publish(credential).await;
                let session = held.session.clone();
                self.install(held);
                *attempt = LoginAttempt::Ok;
                self.logins_ok.fetch_add(1, Ordering::Relaxed);
                tracing::info!(credential = %self.id, generation = session.generation, "renewed the held session before it expired");
                session
            }
            Err(LoginError::Throttled(_)) => current,
            Err(e) => {
                if !matches!(e, LoginError::State(_)) {
                    *attempt = LoginAttempt::Failed;
                    self.logins_failed.fetch_add(1, Ordering::Relaxed);
                }
                tracing::error!(
                    credential = %self.id,
                    error = %e,
                    valid_for_s = self.expires_in().map(|d| d.as_secs()),
                    "COULD NOT RENEW THE HELD SESSION; using the current one until it expires"
                );
                current
            }
        }
    }

    /// Spacing (waiting until `space_by` at most), then the kind's login;
    /// the next login is spaced from its end.
    async fn log_in(
        &self,
        space_by: Instant,
        deadline: Instant,
        kind: &dyn Kind,
        transport: &dyn Transport,
    ) -> Result<Credential, LoginError> {
        self.space(space_by).await?;
        let channel = LoginCtx {
            slot: self,
            transport,
            deadline,
        };
        let result = kind.login(&channel).await.map_err(LoginError::Failed);
        self.login_finished().await;
        result
    }

    /// Gives a new session its generation: from Redis when the session is
    /// shared (every replica adopts it from there, with its expiry), else a
    /// local count.
    async fn publish(&self, credential: Credential) -> Held {
        let now = Instant::now();
        let wall = now_ms();
        let Credential {
            value,
            expires_in,
            renew_in,
        } = credential;
        let held = |generation| Held {
            session: Session {
                generation,
                value: value.clone(),
            },
            last_used: now,
            expires_at: expires_in.map(|d| now + d),
            renew_at: renew_in.map(|d| now + d),
        };
        if let Some((sh, key)) = self.shared_session() {
            let times = SharedTimes {
                ttl: expires_in.unwrap_or(self.session_idle),
                expires_at_ms: expires_in.map(|d| wall + d.as_millis() as u64),
                renew_at_ms: renew_in.map(|d| wall + d.as_millis() as u64),
            };
            match sh
                .state
                .session_put(key, &sh.generation_key, &value, &times)
                .await
            {
                Ok(generation) => {
                    // The counter went backwards only if Redis lost its data.
                    if generation <= self.dead.load(Ordering::Acquire) {
                        self.dead.store(0, Ordering::Release);
                    }
                    self.generations.fetch_max(generation, Ordering::AcqRel);
                    return held(generation);
                }
                Err(e) => {
                    tracing::error!(credential = %self.id, error = %e, "could not share the new session; other replicas will not see it")
                }
            }
        }
        let generation = self.generations.fetch_add(1, Ordering::AcqRel) + 1;
        held(generation)
    }

    fn shared_session(&self) -> Option<(&SharedLogin, &str)> {
        let sh = self.shared.as_ref()?;
        sh.session_key.as_deref().map(|k| (sh, k))
    }

    /// A session another replica logged in and shared, if there is a live one.
    async fn adopt(&self) -> Result<Option<Session>, LoginError> {
        let Some((sh, key)) = self.shared_session() else {
            return Ok(None);
        };
        let found = match sh.state.session_get(key).await {
            Ok(found) => found,
            Err(e) => return sh.on_failure(e).map(|_| None),
        };
        let Some(shared) = found else {
            return Ok(None);
        };
        let generation = shared.generation;
        if generation <= self.dead.load(Ordering::Acquire) {
            return Ok(None);
        }
        // Its times, by the wall clock all replicas share, as local instants.
        let now = Instant::now();
        let wall = now_ms();
        let at = |ms: u64| now + Duration::from_millis(ms.saturating_sub(wall));
        let expires_at = shared.expires_at_ms.map(at);
        if expires_at.is_some_and(|t| t <= now) {
            return Ok(None);
        }
        self.generations.fetch_max(generation, Ordering::AcqRel);
        let session = Session {
            generation,
            value: shared.value,
        };
        self.install(Held {
            session: session.clone(),
            last_used: now,
            expires_at,
            renew_at: shared.renew_at_ms.map(at),
        });
        tracing::debug!(credential = %self.id, generation, "using the session another replica shared");
        Ok(Some(session))
    }

    /// The login lease for a renewal: taken at once or not at all (another
    /// replica renewing is as good). `Some(None)`: not shared, go ahead.
    async fn lease_now(&self) -> Option<Option<String>> {
        let Some(sh) = &self.shared else {
            return Some(None);
        };
        let token = format!("{:032x}", rand::random::<u128>());
        match sh
            .state
            .try_lock(&sh.lock_key, &token, LEASE_RENEW_TTL)
            .await
        {
            Ok(true) => Some(Some(token)),
            Ok(false) => None,
            // Redis down: renew locally if the policy allows going on alone.
            Err(e) => sh.on_failure(e).ok().map(|_| None),
        }
    }

    /// The login lease across replicas: waits while another replica holds it
    /// (adopting the session it shares, when it does).
    async fn lease(&self, deadline: Instant) -> Result<Leased, LoginError> {
        let Some(sh) = &self.shared else {
            return Ok(Leased::NotShared);
        };
        let token = format!("{:032x}", rand::random::<u128>());
        // Longer than a login can take: the login ends by this request's deadline.
        let ttl = deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(2);
        loop {
            match sh.state.try_lock(&sh.lock_key, &token, ttl).await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => return sh.on_failure(e).map(|_| Leased::NotShared),
            }
            if let Some(s) = self.adopt().await? {
                return Ok(Leased::Adopted(s));
            }
            let now = Instant::now();
            if now + LEASE_POLL > deadline {
                return Err(LoginError::Throttled(self.login_interval));
            }
            tokio::time::sleep(LEASE_POLL).await;
        }
        // Waiting for the lease may have let another replica log in.
        match self.adopt().await {
            Ok(Some(s)) => {
                let _ = sh.state.unlock(&sh.lock_key, &token).await;
                Ok(Leased::Adopted(s))
            }
            Ok(None) => Ok(Leased::Token(token)),
            Err(e) => {
                let _ = sh.state.unlock(&sh.lock_key, &token).await;
                Err(e)
            }
        }
    }

    /// Waits until a login is allowed, then records one as sent now (durably).
    /// Called with the login lock held. With Redis, by Redis's clock for
    /// every replica; while Redis is down under the `local` policy, this
    /// replica spaces its own logins `expected_replicas` times wider.
    async fn space(&self, deadline: Instant) -> Result<(), LoginError> {
        if let Some(sh) = &self.shared {
            loop {
                match sh
                    .state
                    .login_gate(&sh.gate_key, self.login_interval, false)
                    .await
                {
                    Ok(wait) if wait.is_zero() => {
                        self.record_local_login();
                        return Ok(());
                    }
                    Ok(wait) => {
                        let earliest = Instant::now() + wait;
                        if earliest > deadline {
                            return Err(LoginError::Throttled(wait));
                        }
                        tokio::time::sleep_until(earliest).await;
                    }
                    Err(e) => {
                        sh.on_failure(e)?;
                        let wider = self.login_interval * sh.state.expected_replicas.max(1);
                        return self.space_local(deadline, wider).await;
                    }
                }
            }
        }
        self.loaded
            .get_or_try_init(|| self.load_last_login())
            .await?;
        self.space_local(deadline, self.login_interval).await?;
        self.store
            .put(
                &self.store_key(),
                self.last_login_ms.load(Ordering::Relaxed).to_string(),
            )
            .await
            .map_err(LoginError::from)
    }

    /// Spacing by this process's own record of its last login.
    async fn space_local(&self, deadline: Instant, interval: Duration) -> Result<(), LoginError> {
        let last = *self.last_login.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(last) = last {
            let earliest = last + interval;
            let now = Instant::now();
            if earliest > deadline {
                return Err(LoginError::Throttled(earliest - now));
            }
            tokio::time::sleep_until(earliest).await;
        }
        self.record_local_login();
        Ok(())
    }

    fn record_local_login(&self) {
        *self.last_login.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        self.last_login_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// A login just completed (its answer, or its failure, is in): the next
    /// one is spaced from now. A failed write is logged, not fatal: the
    /// in-memory time still spaces logins in this process.
    async fn login_finished(&self) {
        self.record_local_login();
        let written = match &self.shared {
            Some(sh) => sh
                .state
                .login_gate(&sh.gate_key, self.login_interval, true)
                .await
                .map(|_| ()),
            None => {
                let ms = self.last_login_ms.load(Ordering::Relaxed);
                self.store.put(&self.store_key(), ms.to_string()).await
            }
        };
        if let Err(e) = written {
            tracing::error!(credential = %self.id, error = %e, "cannot record the login time");
        }
    }

    async fn load_last_login(&self) -> Result<(), LoginError> {
        let stored = self
            .store
            .get(&self.store_key())
            .await
            .map_err(LoginError::from)?;
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

/// How long a renewal's lease lasts at most (a renewal ends by its request's
/// deadline; the lease expires by itself if the replica dies).
const LEASE_RENEW_TTL: Duration = Duration::from_secs(60);

/// How often a replica waiting for another's login lease asks again.
const LEASE_POLL: Duration = Duration::from_millis(50);

enum Leased {
    /// No shared store (or Redis down under the `local` policy): local single flight only.
    NotShared,
    /// This replica holds the lease: it logs in.
    Token(String),
    /// Another replica logged in meanwhile and shared its session.
    Adopted(Session),
}

/// Where replicas sharing a credential coordinate its logins (Redis).
pub struct SharedLogin {
    state: Arc<RedisState>,
    /// The login lease: one replica logs in at a time.
    lock_key: String,
    /// The last login's time, by Redis's clock.
    gate_key: String,
    /// The shared session (TTS: one session per member serves every replica).
    session_key: Option<String>,
    /// Generation counter of the shared session, never reset.
    generation_key: String,
}

impl SharedLogin {
    /// `share_session`: every replica uses one session (TTS); otherwise each
    /// holds its own (XRTC binds sessions to the client's address) and only
    /// logins are coordinated.
    pub fn new(state: Arc<RedisState>, credential: &str, share_session: bool) -> Self {
        SharedLogin {
            lock_key: state.key("login-lock", credential),
            gate_key: state.key("login-time", credential),
            session_key: share_session.then(|| state.key("session", credential)),
            generation_key: state.key("session-generation", credential),
            state,
        }
    }

    /// Redis failed: under `fail_closed` the request fails with 503
    /// `state_unavailable`; under `local` the caller goes on alone.
    fn on_failure(&self, e: StateError) -> Result<(), LoginError> {
        match self.state.policy {
            OnStateFailure::FailClosed => Err(LoginError::State(e)),
            OnStateFailure::Local => Ok(()),
        }
    }
}

/// What a kind's login may do ([`LoginChannel`]): send through the route's
/// transport, and space a second login of the same attempt.
struct LoginCtx<'a> {
    slot: &'a SessionSlot,
    transport: &'a dyn Transport,
    deadline: Instant,
}

impl LoginChannel for LoginCtx<'_> {
    fn send(&self, out: Outgoing) -> BoxFuture<'_, Result<Buffered, ProxyError>> {
        self.transport.send(out, self.deadline)
    }

    fn space_next_login(&self) -> BoxFuture<'_, Result<(), ProxyError>> {
        Box::pin(async move {
            self.slot.login_finished().await;
            Ok(self.slot.space(self.deadline).await?)
        })
    }

    fn deadline(&self) -> Instant {
        self.deadline
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;

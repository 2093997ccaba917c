//! The shared state store: Redis, for replicas that use one upstream
//! credential and must enforce its limits together.
//!
//! Everything that must be decided by all replicas at once runs as one Lua
//! script (atomic in Redis, one round trip) against Redis's own clock, so
//! replicas with skewed clocks still agree: the rate permit and quota unit
//! ([`RedisState::permit`]), login spacing ([`RedisState::login_gate`]), the
//! login lease ([`RedisState::try_lock`] / [`RedisState::unlock`]) and the
//! shared session ([`RedisState::session_put`] / [`RedisState::session_drop`]).
//!
//! Keys: `<prefix>:<what>:<credential identity>`; identities are built from
//! non-secret fields and short hashes (`xrtc-AC0987654321012345-1a2b3c4d5e6f`),
//! never from a secret. Values that are secrets (a shared TTS session id, a
//! rotated key) are stored as Redis holds any value: protect Redis with a
//! password, TLS and network policy.
//!
//! Failures: every call has a deadline (`state_timeout`). After a failure
//! the store is marked down and calls fail at once for a second (a circuit
//! breaker, so a dead Redis does not add its timeout to every request); then
//! one call probes again. Callers apply `on_state_failure`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use futures_util::future::BoxFuture;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo, Script};
use tokio::time::Instant;

use super::{StateError, StateStore};
use crate::config::{OnStateFailure, StateConfig};
use crate::metrics::StateMetrics;
use crate::secret::Secret;

/// How long calls fail fast after a failure before one probes Redis again.
const PROBE_EVERY: Duration = Duration::from_secs(1);

const PERMIT: &str = r"
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local limit = tonumber(ARGV[4])
local expire_at = tonumber(ARGV[5])
local pending = tonumber(ARGV[6])
local used = 0
if limit > 0 then
  if pending > 0 then
    used = redis.call('INCRBY', KEYS[2], pending)
    redis.call('EXPIREAT', KEYS[2], expire_at)
  else
    used = tonumber(redis.call('GET', KEYS[2]) or '0')
  end
end
local tat = now
if interval > 0 then
  tat = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now)
end
local at = now
local hold = tonumber(redis.call('GET', KEYS[3]) or '0')
if hold > now then
  at = hold
  if interval > 0 then tat = math.max(tat, hold + tolerance) end
end
if interval > 0 then at = math.max(tat - tolerance, at) end
if at - now > max_wait then return {1, at - now, used} end
if limit > 0 then
  if used >= limit then return {2, 0, used} end
  used = redis.call('INCR', KEYS[2])
  if used == 1 then redis.call('EXPIREAT', KEYS[2], expire_at) end
end
if interval > 0 then
  local nxt = tat + interval
  redis.call('SET', KEYS[1], string.format('%d', nxt), 'PX', math.floor((nxt - now) / 1000) + 1000)
end
return {0, at - now, used}
";

const HOLD: &str = r"
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local untl = now + tonumber(ARGV[1])
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if untl > cur then
  redis.call('SET', KEYS[1], string.format('%d', untl), 'PX', math.floor(tonumber(ARGV[1]) / 1000) + 1000)
end
return 0
";

const LOGIN_GATE: &str = r"
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
if ARGV[2] == 'check' and last + interval > now then return last + interval - now end
redis.call('SET', KEYS[1], string.format('%d', now), 'PX', math.floor(interval / 1000) + 60000)
return 0
";

const UNLOCK: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

const SESSION_PUT: &str = r"
local g = redis.call('INCR', KEYS[2])
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'gen', g, 'value', ARGV[1], 'exp', ARGV[3], 'renew', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return g
";

const SESSION_DROP: &str = r"
if ARGV[1] == '' or redis.call('HGET', KEYS[1], 'gen') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// Moves a key an earlier version wrote (`state::migrate`): a counter is
/// added to the new one (no count is lost) with the later expiry; a time
/// keeps the later one; a value is renamed only when the new name is free.
const ADOPT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[1] == 'add' then
  redis.call('INCRBY', KEYS[2], redis.call('GET', KEYS[1]))
  local ttl = redis.call('PTTL', KEYS[1])
  local cur = redis.call('PTTL', KEYS[2])
  if ttl > 0 and (cur < 0 or ttl > cur) then redis.call('PEXPIRE', KEYS[2], ttl) end
  redis.call('DEL', KEYS[1])
  return 1
end
if ARGV[1] == 'max' then
  local a = tonumber(redis.call('GET', KEYS[1])) or 0
  local b = tonumber(redis.call('GET', KEYS[2])) or 0
  if a > b then redis.call('SET', KEYS[2], string.format('%d', a)) end
  redis.call('DEL', KEYS[1])
  return 1
end
if redis.call('EXISTS', KEYS[2]) == 1 then return 2 end
redis.call('RENAME', KEYS[1], KEYS[2])
return 1
";

/// A session one replica logged in and shared with the others.
pub struct SharedSession {
    pub generation: u64,
    pub value: Secret,
    /// Unix ms when it stops working, if it expires.
    pub expires_at_ms: Option<u64>,
    /// Unix ms from when it is renewed.
    pub renew_at_ms: Option<u64>,
}

/// How long a shared session is kept, and its times (Unix ms).
pub struct SharedTimes {
    /// Redis drops it after this.
    pub ttl: Duration,
    pub expires_at_ms: Option<u64>,
    pub renew_at_ms: Option<u64>,
}

/// The answer to a permit request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// Send after this wait (zero: now). `used`: the month's count, this request included.
    Granted { wait: Duration, used: u64 },
    /// The slot (or the upstream's hold) is further away than the allowed wait.
    RateLimited(Duration),
    /// The month's quota is used up (`used` units).
    QuotaExhausted { used: u64 },
}

/// What a permit asks for. Zero interval: no rate limit; zero limit: no quota.
pub struct PermitRequest<'a> {
    pub rate_key: &'a str,
    pub quota_key: &'a str,
    pub hold_key: &'a str,
    pub interval: Duration,
    pub tolerance: Duration,
    pub max_wait: Duration,
    pub limit: u64,
    /// Unix seconds when the quota key may expire (after its month).
    pub expire_at: i64,
    /// Units sent while Redis was unreachable, to add to the count now.
    pub pending: u64,
}

pub struct RedisState {
    conn: ConnectionManager,
    /// The URL without its password, for messages.
    display: String,
    prefix: String,
    timeout: Duration,
    pub policy: OnStateFailure,
    pub expected_replicas: u32,
    /// False from a failure until a call succeeds again (logged once each way).
    up: AtomicBool,
    /// Until when calls fail fast without asking Redis (the breaker).
    retry_at: Mutex<Option<Instant>>,
    /// Health counters, registered in the gateway's /metrics.
    pub metrics: StateMetrics,
    scripts: Scripts,
}

struct Scripts {
    permit: Script,
    hold: Script,
    login_gate: Script,
    unlock: Script,
    session_put: Script,
    session_drop: Script,
}

/// Why one Redis call failed.
enum Failure {
    Redis(redis::RedisError),
    Timeout,
}

impl RedisState {
    /// Sets up the connection; nothing is sent until the first call, so a
    /// gateway starts (and reports not ready) while Redis is still down.
    pub fn connect(cfg: &StateConfig) -> Result<Self, StateError> {
        let bad =
            |e: redis::RedisError| StateError::caused(format!("server.state {}", cfg.display), e);
        let mut info = cfg.url.expose().into_connection_info().map_err(bad)?;
        if let Some(pw) = &cfg.password {
            let settings = info.redis_settings().clone().set_password(pw.expose());
            info = info.set_redis_settings(settings);
        }
        let client = match &cfg.ca_file {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| {
                    StateError::caused(format!("server.state_ca_file {}", path.display()), e)
                })?;
                redis::Client::build_with_tls(
                    info,
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(pem),
                    },
                )
            }
            None => redis::Client::open(info),
        }
        .map_err(bad)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(cfg.timeout))
            .set_response_timeout(Some(cfg.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client, config).map_err(bad)?;
        Ok(RedisState {
            conn,
            display: cfg.display.clone(),
            prefix: cfg.prefix.clone(),
            timeout: cfg.timeout,
            policy: cfg.on_failure,
            expected_replicas: cfg.expected_replicas,
            up: AtomicBool::new(true),
            retry_at: Mutex::new(None),
            metrics: {
                let m = StateMetrics::default();
                m.up.set(1);
                m
            },
            scripts: Scripts {
                permit: Script::new(PERMIT),
                hold: Script::new(HOLD),
                login_gate: Script::new(LOGIN_GATE),
                unlock: Script::new(UNLOCK),
                session_put: Script::new(SESSION_PUT),
                session_drop: Script::new(SESSION_DROP),
            },
        })
    }

    /// `<prefix>:<what>:<id>`.
    pub fn key(&self, what: &str, id: &str) -> String {
        format!("{}:{what}:{id}", self.prefix)
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// For /readyz: where the state is and whether it answers (no secrets).
    pub fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "store": "redis",
            "url": self.display,
            "prefix": self.prefix,
            "up": self.is_up(),
            "on_state_failure": self.policy.as_str(),
            "expected_replicas": self.expected_replicas,
        })
    }

    /// Runs one Redis call under the breaker and the timeout.
    async fn run<T>(
        &self,
        what: &'static str,
        call: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StateError> {
        let open = *self.retry_at.lock().unwrap_or_else(|p| p.into_inner());
        if open.is_some_and(|at| Instant::now() < at) {
            return Err(StateError::new(format!(
                "Redis state store {} is unreachable (retrying every {}s)",
                self.display,
                PROBE_EVERY.as_secs()
            )));
        }
        let result = match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(Failure::Redis(e)),
            Err(_) => Err(Failure::Timeout),
        };
        match result {
            Ok(v) => {
                *self.retry_at.lock().unwrap_or_else(|p| p.into_inner()) = None;
                if !self.up.swap(true, Ordering::Relaxed) {
                    self.metrics.up.set(1);
                    tracing::warn!(state = %self.display, "Redis state store reachable again: shared limits, logins and sessions resume");
                }
                Ok(v)
            }
            Err(failure) => {
                let why = match &failure {
                    Failure::Redis(e) => e.to_string(),
                    Failure::Timeout => format!(
                        "no answer within state_timeout ({} ms)",
                        self.timeout.as_millis()
                    ),
                };
                self.metrics.failures.inc();
                *self.retry_at.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(Instant::now() + PROBE_EVERY);
                if self.up.swap(false, Ordering::Relaxed) {
                    self.metrics.up.set(0);
                    tracing::error!(
                        state = %self.display,
                        op = what,
                        error = %why,
                        policy = self.policy.as_str(),
                        "REDIS STATE STORE UNAVAILABLE: {}",
                        match self.policy {
                            OnStateFailure::FailClosed => "requests that need shared state get 503 state_unavailable until it is back",
                            OnStateFailure::Local => "serving with local limits divided by expected_replicas until it is back",
                        }
                    );
                }
                let what = format!("Redis state store {} failed ({what})", self.display);
                Err(match failure {
                    Failure::Redis(e) => StateError::caused(what, e),
                    Failure::Timeout => StateError::new(format!("{what}: {why}")),
                })
            }
        }
    }

    /// One rate permit and quota unit, decided for every replica at once.
    pub async fn permit(&self, r: &PermitRequest<'_>) -> Result<Permit, StateError> {
        let mut conn = self.conn.clone();
        let mut call = self.scripts.permit.prepare_invoke();
        call.key(r.rate_key)
            .key(r.quota_key)
            .key(r.hold_key)
            .arg(r.interval.as_micros() as u64)
            .arg(r.tolerance.as_micros() as u64)
            .arg(r.max_wait.as_micros() as u64)
            .arg(r.limit)
            .arg(r.expire_at)
            .arg(r.pending);
        let (code, micros, used): (i64, i64, i64) =
            self.run("permit", call.invoke_async(&mut conn)).await?;
        let d = Duration::from_micros(micros.max(0) as u64);
        let used = used.max(0) as u64;
        Ok(match code {
            0 => Permit::Granted { wait: d, used },
            1 => Permit::RateLimited(d),
            _ => Permit::QuotaExhausted { used },
        })
    }

    /// The upstream said "not before `d` from now": every replica holds.
    pub async fn hold(&self, key: &str, d: Duration) -> Result<(), StateError> {
        let mut conn = self.conn.clone();
        let mut call = self.scripts.hold.prepare_invoke();
        call.key(key).arg(d.as_micros() as u64);
        self.run("hold", call.invoke_async::<i64>(&mut conn))
            .await
            .map(|_| ())
    }

    /// Login spacing by Redis's clock. `mark = false`: how long until a login
    /// is allowed (zero: allowed, and recorded as sent now). `mark = true`:
    /// record a login (its completion) as now, unconditionally.
    pub async fn login_gate(
        &self,
        key: &str,
        interval: Duration,
        mark: bool,
    ) -> Result<Duration, StateError> {
        let mut conn = self.conn.clone();
        let mut call = self.scripts.login_gate.prepare_invoke();
        call.key(key)
            .arg(interval.as_micros() as u64)
            .arg(if mark { "mark" } else { "check" });
        let wait: i64 = self.run("login_gate", call.invoke_async(&mut conn)).await?;
        Ok(Duration::from_micros(wait.max(0) as u64))
    }

    /// Takes the lease `key` for `ttl` if nobody holds it.
    pub async fn try_lock(
        &self,
        key: &str,
        token: &str,
        ttl: Duration,
    ) -> Result<bool, StateError> {
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("SET");
        cmd.arg(key)
            .arg(token)
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64);
        let set: Option<String> = self.run("lock", cmd.query_async(&mut conn)).await?;
        Ok(set.is_some())
    }

    /// Releases the lease if `token` still owns it (a lease that expired and
    /// was taken by another replica is left alone).
    pub async fn unlock(&self, key: &str, token: &str) -> Result<(), StateError> {
        let mut conn = self.conn.clone();
        let mut call = self.scripts.unlock.prepare_invoke();
        call.key(key).arg(token);
        self.run("unlock", call.invoke_async::<i64>(&mut conn))
            .await
            .map(|_| ())
    }

    /// The shared session, if there is one.
    pub async fn session_get(&self, key: &str) -> Result<Option<SharedSession>, StateError> {
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(key).arg("gen").arg("value").arg("exp").arg("renew");
        type Row = (Option<u64>, Option<String>, Option<u64>, Option<u64>);
        let (generation, value, exp, renew): Row =
            self.run("session_get", cmd.query_async(&mut conn)).await?;
        let nonzero = |v: Option<u64>| v.filter(|ms| *ms > 0);
        Ok(generation
            .zip(value)
            .map(|(generation, value)| SharedSession {
                generation,
                value: Secret::new(value),
                expires_at_ms: nonzero(exp),
                renew_at_ms: nonzero(renew),
            }))
    }

    /// Publishes a new session; returns its generation (unique per credential, forever).
    pub async fn session_put(
        &self,
        key: &str,
        gen_key: &str,
        value: &Secret,
        times: &SharedTimes,
    ) -> Result<u64, StateError> {
        let mut conn = self.conn.clone();
        let mut call = self.scripts.session_put.prepare_invoke();
        call.key(key)
            .key(gen_key)
            .arg(value.expose())
            .arg(times.ttl.as_millis().max(1) as u64)
            .arg(times.expires_at_ms.unwrap_or(0))
            .arg(times.renew_at_ms.unwrap_or(0));
        self.run("session_put", call.invoke_async(&mut conn)).await
    }

    /// Drops the shared session if it is still `generation` (`None`: whatever it is).
    pub async fn session_drop(&self, key: &str, generation: Option<u64>) -> Result<(), StateError> {
        let mut conn = self.conn.clone();
        let mut call = self.scripts.session_drop.prepare_invoke();
        call.key(key)
            .arg(generation.map(|g| g.to_string()).unwrap_or_default());
        self.run("session_drop", call.invoke_async::<i64>(&mut conn))
            .await
            .map(|_| ())
    }

    /// A counter's value (0 when absent).
    pub async fn counter(&self, key: &str) -> Result<u64, StateError> {
        let mut conn = self.conn.clone();
        let v: Option<u64> = self
            .run("get", redis::cmd("GET").arg(key).query_async(&mut conn))
            .await?;
        Ok(v.unwrap_or(0))
    }

    /// Increments a counter; returns the new value.
    pub async fn bump(&self, key: &str) -> Result<u64, StateError> {
        let mut conn = self.conn.clone();
        self.run("incr", redis::cmd("INCR").arg(key).query_async(&mut conn))
            .await
    }
}

/// For `state::migrate`, the move of 0.1 keys to 0.2 identities.
impl RedisState {
    /// Every key countersign writes starts with `<prefix>:`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Moves `from` to `to` in one script (atomic against other replicas).
    pub async fn adopt(
        &self,
        from: &str,
        to: &str,
        merge: super::migrate::Merge,
    ) -> Result<super::migrate::Adopted, StateError> {
        use super::migrate::{Adopted, Merge};
        let mut conn = self.conn.clone();
        let script = Script::new(ADOPT);
        let mut call = script.prepare_invoke();
        call.key(from).key(to).arg(match merge {
            Merge::Add => "add",
            Merge::Later => "max",
            Merge::IfFree => "value",
        });
        let done: i64 = self.run("adopt", call.invoke_async(&mut conn)).await?;
        Ok(match done {
            0 => Adopted::Nothing,
            1 => Adopted::Moved,
            _ => Adopted::Conflict,
        })
    }
}

impl StateStore for RedisState {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<String>, StateError>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let k = self.key("kv", key);
            self.run("get", redis::cmd("GET").arg(&k).query_async(&mut conn))
                .await
        })
    }

    /// SET: durable as Redis is configured to be (`appendonly yes` with
    /// `appendfsync always` for the guarantee the file store gives).
    fn put<'a>(&'a self, key: &'a str, value: String) -> BoxFuture<'a, Result<(), StateError>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let k = self.key("kv", key);
            self.run(
                "put",
                redis::cmd("SET")
                    .arg(&k)
                    .arg(value)
                    .query_async::<()>(&mut conn),
            )
            .await
        })
    }
}

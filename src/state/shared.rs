//! The shared state store: Redis, for replicas that use one upstream
//! credential and must enforce its limits together.
//!
//! Everything that must be decided by all replicas at once runs as one Lua
//! script (atomic in Redis, one round trip) against Redis's own clock, so
//! replicas with skewed clocks still agree: a batch of rate slots
//! ([`RedisState::rate_batch`]), a block of quota units
//! ([`RedisState::quota_block`]), login spacing ([`RedisState::login_gate`]),
//! the login lease ([`RedisState::try_lock`] / [`RedisState::unlock`]) and the
//! shared session ([`RedisState::session_put`] / [`RedisState::session_drop`]).
//!
//! Keys: `<prefix>:<what>:<credential identity>`; identities are built from
//! non-secret fields and short hashes (`xrtc-AC0987654321012345-1a2b3c4d5e6f`),
//! never from a secret. On a Redis Cluster (`redis+cluster://h1:p1,h2:p2`)
//! the identity is a hash tag (`<prefix>:rate:{<identity>}`), so every key
//! of one credential lives in one slot and each script touches one slot. A
//! single Redis keeps the untagged names, so replicas of the previous
//! version and this one share their state during a rolling upgrade. Values
//! that are secrets (a shared TTS session id, a rotated key) are stored as
//! Redis holds any value: protect Redis with a password, TLS and network
//! policy.
//!
//! Failures: every call has a deadline (`state_timeout`). After a failure
//! the store is marked down and calls fail at once for a second (a circuit
//! breaker, so a dead Redis does not add its timeout to every request); then
//! one call probes again. Callers apply `on_state_failure`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use futures_util::future::BoxFuture;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, IntoConnectionInfo, Pipeline, RedisFuture, Script, Value};
use tokio::time::Instant;

use super::{StateError, StateStore};
use crate::config::{OnStateFailure, StateConfig};
use crate::metrics::StateMetrics;
use crate::secret::Secret;

/// How long calls fail fast after a failure before one probes Redis again.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// Reserves up to `want` consecutive slots of a credential's GCRA schedule
/// (KEYS[1], its theoretical arrival time in µs of Redis's clock), after the
/// upstream's hold (KEYS[2]), and only slots within `max_wait`. Before that
/// it gives back the unused tail of this replica's previous batch, if nobody
/// reserved after it (the schedule still ends where that batch ended).
/// Returns `{0, tat - now, floor - now, n, end}`: slot i's arrival time is
/// `tat + i * interval`, it may be sent from `max(that - tolerance, floor)`;
/// or `{1, wait}` when even the first slot is further than `max_wait` (then
/// nothing is reserved). `want = 0` only gives back.
const RATE_BATCH: &str = r"
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local want = tonumber(ARGV[4])
local back_end = tonumber(ARGV[5])
local back_n = tonumber(ARGV[6])
local stored = tonumber(redis.call('GET', KEYS[1]) or '0')
local tat = stored
if back_n > 0 and stored == back_end then tat = back_end - back_n * interval end
tat = math.max(tat, now)
local floor = now
local hold = tonumber(redis.call('GET', KEYS[2]) or '0')
if hold > now then
  floor = hold
  tat = math.max(tat, hold + tolerance)
end
local first = math.max(tat - tolerance, floor)
local n = 0
if want > 0 and first - now <= max_wait then
  n = math.max(1, math.min(want, math.floor((now + max_wait + tolerance - tat) / interval) + 1))
end
local nxt = tat + n * interval
if nxt ~= stored then
  redis.call('SET', KEYS[1], string.format('%d', nxt), 'PX', math.floor((nxt - now) / 1000) + 1000)
end
if n == 0 and want > 0 then return {1, first - now, 0, 0, 0} end
return {0, tat - now, floor - now, n, nxt}
";

/// Reserves up to `want` units of a month's quota (KEYS[1], the count
/// reserved by every replica), never past `limit`; one at a time once no
/// more than `exact_below` are left, so the last units go to whichever
/// replica needs them. First adds `pending` (units sent while Redis was
/// unreachable) and subtracts `back` (units a replica reserved and did not
/// use). Returns `{granted, count}`.
const QUOTA_BLOCK: &str = r"
local limit = tonumber(ARGV[1])
local want = tonumber(ARGV[2])
local exact_below = tonumber(ARGV[3])
local expire_at = tonumber(ARGV[4])
local pending = tonumber(ARGV[5])
local back = tonumber(ARGV[6])
local stored = tonumber(redis.call('GET', KEYS[1]) or '0')
local count = stored + pending - math.min(back, stored)
if limit - count <= exact_below then want = math.min(want, 1) end
local granted = math.max(0, math.min(want, limit - count))
count = count + granted
if count ~= stored then
  redis.call('SET', KEYS[1], string.format('%d', count))
  redis.call('EXPIREAT', KEYS[1], expire_at)
end
return {granted, count}
";

/// Extends the upstream's hold (KEYS[1], Unix µs of Redis's clock) to
/// `ARGV[1]` µs from now, if that is later; returns the µs left of it (so
/// `0` only reads it).
const HOLD: &str = r"
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local d = tonumber(ARGV[1])
local untl = now + d
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if d > 0 and untl > cur then
  redis.call('SET', KEYS[1], string.format('%d', untl), 'PX', math.floor(tonumber(ARGV[1]) / 1000) + 1000)
  cur = untl
end
return math.max(cur - now, 0)
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

const MONOTONIC: &str = r"
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local v = math.max(last + 1, tonumber(ARGV[1]))
redis.call('SET', KEYS[1], v)
return v
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

/// A batch of consecutive slots of a credential's shared GCRA schedule,
/// in µs from Redis's clock at the moment it decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateBatch {
    /// `count` slots: slot i's theoretical arrival time is `tat + i *
    /// interval`, it may be sent from `max(that - tolerance, floor)`. `end`
    /// is the schedule's end after the batch (Redis's absolute µs), which
    /// a give-back must name.
    Granted {
        tat: Duration,
        floor: Duration,
        count: u32,
        end: i64,
    },
    /// Even the first slot (or the upstream's hold) is further than the wait.
    TooFar(Duration),
}

/// What a rate batch asks for: up to `want` slots within `max_wait`, after
/// giving back the `back_count` last slots of the batch that ended the
/// schedule at `back_end` (if none was reserved after it).
pub struct RateRequest<'a> {
    pub rate_key: &'a str,
    pub hold_key: &'a str,
    pub interval: Duration,
    pub tolerance: Duration,
    pub max_wait: Duration,
    pub want: u32,
    pub back_end: i64,
    pub back_count: u32,
}

/// What a quota block asks for: up to `want` units of `limit`.
pub struct QuotaRequest<'a> {
    pub key: &'a str,
    pub limit: u64,
    pub want: u64,
    /// At most this many left in the month: grant one unit at a time.
    pub exact_below: u64,
    /// Unix seconds when the key may expire (after its month).
    pub expire_at: i64,
    /// Units sent while Redis was unreachable, to add to the count now.
    pub pending: u64,
    /// Units reserved earlier and not used, to take off the count now.
    pub back: u64,
}

/// The connection: one Redis (reconnecting, multiplexed), or a cluster
/// (one multiplexed connection per node, commands routed by key slot).
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

pub struct RedisState {
    conn: Conn,
    /// A Redis Cluster: credential identities become hash tags in keys.
    cluster: bool,
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
    rate_batch: Script,
    quota_block: Script,
    hold: Script,
    login_gate: Script,
    unlock: Script,
    session_put: Script,
    session_drop: Script,
    monotonic: Script,
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
        let ca = match &cfg.ca_file {
            Some(path) => Some(std::fs::read(path).map_err(|e| {
                StateError::caused(format!("server.state_ca_file {}", path.display()), e)
            })?),
            None => None,
        };
        let certs = |pem: Vec<u8>| redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pem),
        };
        let (conn, cluster) = match cluster_nodes(cfg.url.expose()) {
            Some(nodes) => {
                let mut builder = redis::cluster::ClusterClient::builder(nodes)
                    // A redirect (MOVED, ASK) or a failed node costs a retry:
                    // a few, quickly; `state_timeout` bounds the whole call.
                    .retries(3)
                    .min_retry_wait(10)
                    .max_retry_wait(100);
                if let Some(pw) = &cfg.password {
                    builder = builder.password(pw.expose());
                }
                if let Some(pem) = ca {
                    builder = builder.certs(certs(pem));
                }
                let config = redis::cluster::ClusterConfig::new()
                    .set_connection_timeout(cfg.timeout)
                    .set_response_timeout(cfg.timeout);
                // Connects in the background: a gateway starts (and reports
                // not ready) while the cluster is still down.
                let client = builder.build().map_err(bad)?;
                (
                    Conn::Cluster(client.get_pending_async_connection_with_config(config)),
                    true,
                )
            }
            None => {
                let mut info = cfg.url.expose().into_connection_info().map_err(bad)?;
                if let Some(pw) = &cfg.password {
                    let settings = info.redis_settings().clone().set_password(pw.expose());
                    info = info.set_redis_settings(settings);
                }
                let client = match ca {
                    Some(pem) => redis::Client::build_with_tls(info, certs(pem)),
                    None => redis::Client::open(info),
                }
                .map_err(bad)?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(cfg.timeout))
                    .set_response_timeout(Some(cfg.timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(500));
                let conn = ConnectionManager::new_lazy_with_config(client, config).map_err(bad)?;
                (Conn::Single(conn), false)
            }
        };
        Ok(RedisState {
            conn,
            cluster,
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
                rate_batch: Script::new(RATE_BATCH),
                quota_block: Script::new(QUOTA_BLOCK),
                hold: Script::new(HOLD),
                login_gate: Script::new(LOGIN_GATE),
                unlock: Script::new(UNLOCK),
                session_put: Script::new(SESSION_PUT),
                session_drop: Script::new(SESSION_DROP),
                monotonic: Script::new(MONOTONIC),
            },
        })
    }

    /// `<prefix>:<what>:<id>`; on a cluster `<prefix>:<what>:{<id>}`, so
    /// every key of one identity hashes to one slot.
    pub fn key(&self, what: &str, id: &str) -> String {
        if self.cluster {
            format!("{}:{what}:{{{id}}}", self.prefix)
        } else {
            format!("{}:{what}:{id}", self.prefix)
        }
    }

    /// Whether the store is a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.cluster
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// For /readyz: where the state is and whether it answers (no secrets).
    pub fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "store": if self.cluster { "redis-cluster" } else { "redis" },
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

    /// Reserves a batch of rate slots for this replica (see [`RATE_BATCH`]).
    pub async fn rate_batch(&self, r: &RateRequest<'_>) -> Result<RateBatch, StateError> {
        let mut conn = self.conn.clone();
        let mut call = self.scripts.rate_batch.prepare_invoke();
        call.key(r.rate_key)
            .key(r.hold_key)
            .arg(r.interval.as_micros() as u64)
            .arg(r.tolerance.as_micros() as u64)
            .arg(r.max_wait.as_micros() as u64)
            .arg(r.want)
            .arg(r.back_end)
            .arg(r.back_count);
        let (code, tat, floor, count, end): (i64, i64, i64, i64, i64) =
            self.run("rate_batch", call.invoke_async(&mut conn)).await?;
        let micros = |v: i64| Duration::from_micros(v.max(0) as u64);
        Ok(match code {
            0 => RateBatch::Granted {
                tat: micros(tat),
                floor: micros(floor),
                count: count.clamp(0, i64::from(u32::MAX)) as u32,
                end,
            },
            _ => RateBatch::TooFar(micros(tat)),
        })
    }

    /// Reserves a block of quota units (see [`QUOTA_BLOCK`]): `(granted, count)`.
    pub async fn quota_block(&self, r: &QuotaRequest<'_>) -> Result<(u64, u64), StateError> {
        let mut conn = self.conn.clone();
        let mut call = self.scripts.quota_block.prepare_invoke();
        call.key(r.key)
            .arg(r.limit)
            .arg(r.want)
            .arg(r.exact_below)
            .arg(r.expire_at)
            .arg(r.pending)
            .arg(r.back);
        let (granted, count): (i64, i64) = self
            .run("quota_block", call.invoke_async(&mut conn))
            .await?;
        Ok((granted.max(0) as u64, count.max(0) as u64))
    }

    /// What is left of the upstream's hold another replica shared (zero:
    /// none), for routes with no rate batch to bring it.
    pub async fn hold_remaining(&self, key: &str) -> Result<Duration, StateError> {
        let mut conn = self.conn.clone();
        let mut call = self.scripts.hold.prepare_invoke();
        call.key(key).arg(0);
        let left: i64 = self.run("hold", call.invoke_async(&mut conn)).await?;
        Ok(Duration::from_micros(left.max(0) as u64))
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

    /// The next value of a monotonic counter: above every value it gave
    /// before, and at least `floor` (a recipe's `monotonic_ms()`: the time in
    /// milliseconds, bumped past the last one issued by any replica).
    pub async fn monotonic_next(&self, key: &str, floor: u64) -> Result<u64, StateError> {
        let mut conn = self.conn.clone();
        let mut call = self.scripts.monotonic.prepare_invoke();
        call.key(key).arg(floor);
        self.run("monotonic", call.invoke_async(&mut conn)).await
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
            let k = format!("{}:kv:{key}", self.prefix);
            self.run("get", redis::cmd("GET").arg(&k).query_async(&mut conn))
                .await
        })
    }

    /// SET: durable as Redis is configured to be (`appendonly yes` with
    /// `appendfsync always` for the guarantee the file store gives).
    fn put<'a>(&'a self, key: &'a str, value: String) -> BoxFuture<'a, Result<(), StateError>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let k = format!("{}:kv:{key}", self.prefix);
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

/// The seed nodes of a cluster URL, `redis+cluster://[user:pw@]h1:p1,h2:p2`
/// (`rediss+cluster://` for TLS), each as a plain node URL carrying the
/// same credentials; `None` for any other URL. The client learns the rest
/// of the cluster from whichever seed answers.
fn cluster_nodes(url: &str) -> Option<Vec<String>> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = match scheme {
        "redis+cluster" => "redis",
        "rediss+cluster" => "rediss",
        _ => return None,
    };
    // A cluster has one database: a `/0` is allowed and meaningless.
    let authority = rest.split('/').next().unwrap_or(rest);
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((u, h)) => (format!("{u}@"), h),
        None => (String::new(), authority),
    };
    Some(
        hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(|h| format!("{scheme}://{userinfo}{h}"))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_name_their_seed_nodes() {
        assert_eq!(cluster_nodes("redis://127.0.0.1:6379/0"), None);
        assert_eq!(cluster_nodes("rediss://cache:6380"), None);
        assert_eq!(
            cluster_nodes("redis+cluster://10.0.0.1:7000,10.0.0.2:7001").unwrap(),
            ["redis://10.0.0.1:7000", "redis://10.0.0.2:7001"]
        );
        assert_eq!(
            cluster_nodes("rediss+cluster://app:pw@cfg.cache.amazonaws.com:6379/0").unwrap(),
            ["rediss://app:pw@cfg.cache.amazonaws.com:6379"]
        );
    }
}

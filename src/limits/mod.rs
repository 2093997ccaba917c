//! Rate limits and monthly quotas: what the upstream receives never exceeds
//! them. Every request sent upstream (logins and replays included) takes a
//! rate permit and a quota unit just before it is signed and sent.
//!
//! The rate limit is GCRA with reservations: a request that cannot go now is
//! given the exact instant it may go, and waits for it if that is within the
//! route's `wait`, else it is refused at once with Retry-After. (governor's
//! GCRA only answers "not until T"; waiters that all sleep until T then race,
//! and a queue of them can overrun `wait`. Reserving the slot makes the queue
//! fair and the bound exact; the Redis store will run this same algorithm.)
//!
//! The quota is counted in the state store. To keep an fsync off most
//! requests, it reserves blocks: the stored value is the count *reserved*, at
//! most a block and a half ahead of the count used, so a crash can only
//! over-count (by less than that), never let the upstream's quota be
//! exceeded. The next block is reserved in the background when half of the
//! current one is left, so under steady load no request waits for an fsync.
//! A clean shutdown writes the exact count.
//!
//! With a shared state store (Redis), [`shared::SharedLimits`] takes the
//! place of both, for every replica at once: the same GCRA schedule and
//! quota count in Redis, taken from in batches of slots and blocks of units.

mod shared;
mod shared_quota;
mod shared_rate;

pub use shared::SharedLimits;

use crate::error::ProxyError;
use crate::state::StateError;

/// Why a request may not go upstream now.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LimitError {
    #[error("the next rate permit is {}s away, past the route's wait", .0.as_secs_f64())]
    RateLimited(Duration),
    #[error("the monthly quota of {limit} requests is used up")]
    QuotaExhausted { limit: u64, retry_after: Duration },
    #[error(transparent)]
    State(#[from] StateError),
}

impl From<LimitError> for ProxyError {
    fn from(e: LimitError) -> Self {
        match e {
            LimitError::RateLimited(d) => ProxyError::RateLimited(d),
            LimitError::QuotaExhausted { limit, retry_after } => {
                ProxyError::QuotaExhausted { limit, retry_after }
            }
            LimitError::State(e) => ProxyError::from(e),
        }
    }
}

use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::time::Instant;

use crate::config::RateLimit;
use crate::state::StateStore;
use crate::vocab::{Clock, SystemClock};

/// Generic cell rate algorithm with reservations.
pub struct Gcra {
    /// Emission interval: 1 / rate.
    pub(crate) interval: Duration,
    /// How far ahead of schedule a burst may run: (burst - 1) * interval.
    pub(crate) tolerance: Duration,
    /// Theoretical arrival time of the next request.
    tat: Mutex<Option<Instant>>,
}

impl Gcra {
    pub fn new(limit: &RateLimit) -> Self {
        let interval = Duration::from_secs_f64(1.0 / limit.per_second);
        Gcra {
            interval,
            tolerance: interval * limit.burst.saturating_sub(1),
            tat: Mutex::new(None),
        }
    }

    /// Reserves the next slot. `Ok(at)`: the request may be sent at `at` (<= now + max_wait).
    /// `Err(d)`: the slot is more than `max_wait` away; it comes in about `d`.
    pub fn reserve(&self, now: Instant, max_wait: Duration) -> Result<Instant, Duration> {
        let mut tat = self.tat.lock().unwrap_or_else(|p| p.into_inner());
        let current = tat.unwrap_or(now).max(now);
        let earliest = current
            .checked_sub(self.tolerance)
            .map_or(now, |t| t.max(now));
        let wait = earliest - now;
        if wait > max_wait {
            return Err(wait);
        }
        *tat = Some(current + self.interval);
        Ok(earliest)
    }

    /// Pushes every later permit to at least `until` (the upstream said "slow down").
    pub fn block_until(&self, until: Instant) {
        let mut tat = self.tat.lock().unwrap_or_else(|p| p.into_inner());
        let floor = until + self.tolerance;
        if tat.is_none_or(|t| t < floor) {
            *tat = Some(floor);
        }
    }
}

/// A monthly request quota kept in the state store.
pub struct Quota {
    /// Requests allowed per UTC month.
    limit: u64,
    /// `quota.<id>.`: the month (`YYYY-MM`) completes the state key.
    key_prefix: String,
    /// Where the reserved count is kept durably.
    store: Arc<dyn StateStore>,
    /// The UTC clock that decides the month (injectable for tests).
    clock: Arc<dyn Clock>,
    /// The counters. A plain mutex, never held across an await: most
    /// requests only count within the reservation and never wait on I/O.
    state: std::sync::Mutex<QuotaState>,
    /// Serialises the slow path (loading a month, writing a reservation).
    persist: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct QuotaState {
    /// `YYYY-MM` of the counters below; empty before the first load.
    month: String,
    /// Unix seconds when that month ends: the fast path's only clock check.
    month_end: i64,
    used: u64,
    /// The value in the store: `used` rounded up to the next reserved block.
    reserved: u64,
    /// A background reservation of the next block is under way.
    refilling: bool,
}

impl Quota {
    pub fn new(limit: u64, id: &str, store: Arc<dyn StateStore>) -> Self {
        Quota {
            limit,
            key_prefix: format!("quota.{id}."),
            store,
            clock: Arc::new(SystemClock),
            state: std::sync::Mutex::new(QuotaState::default()),
            persist: tokio::sync::Mutex::new(()),
        }
    }

    /// The same quota judged by another clock (tests cross a month boundary).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    fn now_utc(&self) -> OffsetDateTime {
        OffsetDateTime::from(self.clock.now())
    }

    /// A block is 0.01 % of the month's quota (at most 10,000 units): a crash
    /// over-counts by at most 0.015 % of it, and at XRTC's 1,000,000 a month
    /// (blocks of 100) one fsync covers five seconds at its 20 requests/s.
    fn block(&self) -> u64 {
        (self.limit / 10_000).clamp(1, 10_000)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QuotaState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes one unit, or says when the quota renews.
    pub async fn take(self: &Arc<Self>) -> Result<(), LimitError> {
        {
            // Unix seconds straight from the clock: building a date here
            // cost ~200 instructions per request, for one comparison.
            let now = self.clock.unix_seconds();
            let mut st = self.lock();
            if now < st.month_end && st.used < st.reserved {
                st.used += 1;
                // Half the block left: reserve the next one before the fast path closes.
                if !st.refilling
                    && st.reserved - st.used <= self.block() / 2
                    && st.reserved < self.limit
                {
                    st.refilling = true;
                    let q = Arc::clone(self);
                    tokio::spawn(async move { q.refill().await });
                }
                return Ok(());
            }
        }
        self.take_slow().await
    }

    /// Extends the reservation by a block, durably, in the background.
    async fn refill(&self) {
        let _one_at_a_time = self.persist.lock().await;
        let (month, reserved, live) = {
            let st = self.lock();
            (st.month.clone(), st.reserved, st.used < st.reserved)
        };
        let next = (reserved + self.block()).min(self.limit);
        // Not live: the slow path is reserving (the block ran out first), or
        // a flush released the reservation; neither needs this one.
        if live && next > reserved && !month.is_empty() {
            match self
                .store
                .put(&format!("{}{month}", self.key_prefix), next.to_string())
                .await
            {
                Ok(()) => {
                    let mut st = self.lock();
                    if st.month == month && st.reserved == reserved {
                        st.reserved = next;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot reserve the next quota block; requests will retry it")
                }
            }
        }
        self.lock().refilling = false;
    }

    /// A new month to load, the quota used up, or a new block to reserve durably.
    async fn take_slow(&self) -> Result<(), LimitError> {
        let _one_at_a_time = self.persist.lock().await;
        let now = self.now_utc();
        let month = month_key(now);
        if self.lock().month != month {
            let key = format!("{}{month}", self.key_prefix);
            let stored = self.store.get(&key).await.map_err(LimitError::from)?;
            let used = stored.and_then(|v| v.trim().parse().ok()).unwrap_or(0);
            let month_end = now.unix_timestamp() + until_next_month(now).as_secs() as i64;
            *self.lock() = QuotaState {
                month,
                month_end,
                used,
                reserved: used,
                refilling: false,
            };
        }
        // Decide under the lock: fast-path takers may have moved `used`.
        let (used, month) = {
            let mut st = self.lock();
            if st.used >= self.limit {
                return Err(LimitError::QuotaExhausted {
                    limit: self.limit,
                    retry_after: until_next_month(now),
                });
            }
            if st.used < st.reserved {
                st.used += 1;
                return Ok(());
            }
            (st.used, st.month.clone())
        };
        // used == reserved: the fast path is closed until the new block is
        // stored, and only this (serialised) path raises `reserved`.
        let reserved = (used + self.block()).min(self.limit);
        self.store
            .put(&format!("{}{month}", self.key_prefix), reserved.to_string())
            .await
            .map_err(LimitError::from)?;
        let mut st = self.lock();
        st.reserved = reserved;
        st.used += 1;
        Ok(())
    }

    /// Units used this month (for /readyz and metrics).
    pub async fn used(&self) -> u64 {
        let now = self.clock.unix_seconds();
        let st = self.lock();
        if now < st.month_end {
            st.used
        } else {
            0
        }
    }

    /// Writes the exact count (clean shutdown), releasing the unused reservation.
    pub async fn flush(&self) -> Result<(), LimitError> {
        let _one_at_a_time = self.persist.lock().await;
        let (used, reserved, month) = {
            let st = self.lock();
            (st.used, st.reserved, st.month.clone())
        };
        if month.is_empty() || reserved == used {
            return Ok(());
        }
        self.store
            .put(&format!("{}{month}", self.key_prefix), used.to_string())
            .await
            .map_err(LimitError::from)?;
        self.lock().reserved = used;
        Ok(())
    }
}

/// "Not before this instant", set by the upstream itself: a 429's
/// `Retry-After`, or `X-RateLimit-Remaining: 0` with `X-RateLimit-Reset`.
/// Until then no request of the credential is sent; callers get 429
/// `rate_limited` at once (or wait, within the route's `wait`).
#[derive(Default)]
pub struct UpstreamHold {
    until: Mutex<Option<Instant>>,
}

/// The longest hold an upstream header can impose: a broken or hostile
/// header must not take a route down for days.
const MAX_HOLD: Duration = Duration::from_secs(3600);

impl UpstreamHold {
    /// The remaining hold, if any.
    pub fn remaining(&self, now: Instant) -> Option<Duration> {
        let until = *self.until.lock().unwrap_or_else(|p| p.into_inner());
        until.filter(|u| *u > now).map(|u| u - now)
    }

    pub fn hold_for(&self, d: Duration) {
        let until = Instant::now() + d.min(MAX_HOLD);
        let mut cur = self.until.lock().unwrap_or_else(|p| p.into_inner());
        if cur.is_none_or(|c| c < until) {
            *cur = Some(until);
        }
    }

    /// Reads the upstream's rate-limit headers. Returns the hold it imposed.
    pub fn heed(&self, status: http::StatusCode, headers: &http::HeaderMap) -> Option<Duration> {
        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
        };
        let limited = status == http::StatusCode::TOO_MANY_REQUESTS;
        // The common answer: not a 429, no exhausted window. Nothing to read.
        if !limited && text("x-ratelimit-remaining") != Some("0") {
            return None;
        }
        let now_unix = OffsetDateTime::now_utc().unix_timestamp();
        // X-RateLimit-Reset: Unix seconds (as the TTS document shows), or
        // seconds from now when the number is too small to be a date.
        let reset = text("x-ratelimit-reset")
            .and_then(|t| t.parse::<i64>().ok())
            .map(|n| {
                let secs = if n > 1_000_000_000 { n - now_unix } else { n };
                Duration::from_secs(secs.max(0) as u64)
            });
        let hold = if limited {
            let retry_after = text("retry-after").and_then(|t| {
                t.parse::<u64>().map(Duration::from_secs).ok().or_else(|| {
                    let at = httpdate::parse_http_date(t).ok()?;
                    Some(
                        at.duration_since(std::time::SystemTime::now())
                            .unwrap_or_default(),
                    )
                })
            });
            // A 429 without either header still means "not now": one second.
            Some(retry_after.or(reset).unwrap_or(Duration::from_secs(1)))
        } else if text("x-ratelimit-remaining") == Some("0") {
            reset
        } else {
            None
        };
        let hold = hold.filter(|d| !d.is_zero())?;
        self.hold_for(hold);
        Some(hold.min(MAX_HOLD))
    }
}

/// The rate limit and quota of one route's credential.
pub struct Limits {
    /// The rate limiter and how long a request may queue for a permit.
    pub rate: Option<(Arc<Gcra>, Duration)>,
    /// The monthly quota, counted durably.
    pub quota: Option<Arc<Quota>>,
    /// The upstream's own "not before" (429 Retry-After, exhausted windows).
    pub hold: Arc<UpstreamHold>,
    /// With Redis: the rate, quota and hold of every replica (`rate` and
    /// `quota` are then `None`).
    pub shared: Option<Arc<SharedLimits>>,
}

impl Limits {
    /// Takes a rate permit and a quota unit, waiting for the permit up to the
    /// route's `wait` and the request's deadline.
    pub async fn acquire(&self, deadline: Instant) -> Result<(), LimitError> {
        if let Some(shared) = &self.shared {
            // Boxed: the Redis future is large, and the local path is the
            // common one (every request's future would carry its size).
            return Box::pin(shared.acquire(deadline, &self.hold)).await;
        }
        let mut now = Instant::now();
        if let Some(held) = self.hold.remaining(now) {
            let budget = self
                .rate
                .as_ref()
                .map_or(Duration::ZERO, |(_, wait)| *wait)
                .min(deadline.saturating_duration_since(now));
            if held > budget {
                return Err(LimitError::RateLimited(held));
            }
            if let Some((gcra, _)) = &self.rate {
                gcra.block_until(now + held);
            }
            tokio::time::sleep(held).await;
            now = Instant::now();
        }
        let send_at = match &self.rate {
            Some((gcra, wait)) => {
                let max_wait = (*wait).min(deadline.saturating_duration_since(now));
                Some(
                    gcra.reserve(now, max_wait)
                        .map_err(LimitError::RateLimited)?,
                )
            }
            None => None,
        };
        if let Some(q) = &self.quota {
            q.take().await?;
        }
        // Most permits are for now: skip the timer wheel for them.
        if let Some(at) = send_at.filter(|at| *at > now) {
            tokio::time::sleep_until(at).await;
        }
        Ok(())
    }
}

impl Limits {
    /// Reads the upstream's rate-limit headers; a hold it imposes applies to
    /// this replica at once and, with Redis, to every other one too.
    pub async fn heed(
        &self,
        status: http::StatusCode,
        headers: &http::HeaderMap,
    ) -> Option<Duration> {
        let hold = self.hold.heed(status, headers)?;
        if let Some(shared) = &self.shared {
            Box::pin(shared.share_hold(hold)).await;
        }
        Some(hold)
    }

    /// Units of the monthly quota used, when there is one.
    pub async fn quota_used(&self) -> Option<u64> {
        match (&self.quota, &self.shared) {
            (Some(q), _) => Some(q.used().await),
            (None, Some(s)) => s.used_if_quota(),
            (None, None) => None,
        }
    }
}

fn month_key(t: OffsetDateTime) -> String {
    format!("{:04}-{:02}", t.year(), u8::from(t.month()))
}

fn until_next_month(now: OffsetDateTime) -> Duration {
    let (y, m) = match now.month() {
        time::Month::December => (now.year() + 1, time::Month::January),
        m => (now.year(), m.next()),
    };
    let next = time::Date::from_calendar_date(y, m, 1)
        .map(|d| d.midnight().assume_utc())
        .unwrap_or(now);
    let secs = (next - now).whole_seconds().max(1);
    Duration::from_secs(secs as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::FileStore;

    #[tokio::test]
    async fn upstream_429_and_exhausted_windows_hold_the_route() {
        let headers = |pairs: &[(&'static str, String)]| {
            let mut h = http::HeaderMap::new();
            for (n, v) in pairs {
                h.insert(*n, v.parse().unwrap());
            }
            h
        };
        let hold = UpstreamHold::default();
        let ok = http::StatusCode::OK;
        let many = http::StatusCode::TOO_MANY_REQUESTS;
        assert_eq!(
            hold.heed(ok, &headers(&[("x-ratelimit-remaining", "5".into())])),
            None
        );
        assert_eq!(hold.remaining(Instant::now()), None);
        // 429 with Retry-After in seconds.
        assert_eq!(
            hold.heed(many, &headers(&[("retry-after", "7".into())])),
            Some(Duration::from_secs(7))
        );
        let left = hold.remaining(Instant::now()).unwrap();
        assert!(left > Duration::from_secs(6) && left <= Duration::from_secs(7));
        // Remaining 0 with a reset as Unix seconds (the TTS document's form).
        let hold = UpstreamHold::default();
        let reset = OffsetDateTime::now_utc().unix_timestamp() + 30;
        let got = hold.heed(
            ok,
            &headers(&[
                ("x-ratelimit-remaining", "0".into()),
                ("x-ratelimit-reset", reset.to_string()),
            ]),
        );
        assert!(got.is_some_and(|d| d > Duration::from_secs(28)), "{got:?}");
        // A 429 with nothing to go by still waits a second; absurd values are capped.
        let hold = UpstreamHold::default();
        assert_eq!(hold.heed(many, &headers(&[])), Some(Duration::from_secs(1)));
        assert_eq!(
            hold.heed(many, &headers(&[("retry-after", "999999999".into())])),
            Some(MAX_HOLD)
        );
        // Requests are refused with the hold as Retry-After when they cannot wait.
        let limits = Limits {
            rate: None,
            quota: None,
            hold: Arc::new(hold),
            shared: None,
        };
        let err = limits
            .acquire(Instant::now() + Duration::from_secs(30))
            .await
            .unwrap_err();
        let err = crate::error::ProxyError::from(err);
        assert_eq!(err.code(), "rate_limited");
        assert!(err.retry_after().unwrap() > Duration::from_secs(3000));
    }

    fn limit(per_second: f64, burst: u32) -> RateLimit {
        RateLimit {
            per_second,
            burst,
            wait: Duration::from_secs(5),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn burst_then_one_per_interval() {
        let g = Gcra::new(&limit(20.0, 20));
        let t0 = Instant::now();
        for _ in 0..20 {
            assert_eq!(g.reserve(t0, Duration::ZERO), Ok(t0));
        }
        // The 21st must wait one interval; with no wait allowed it is refused.
        assert_eq!(
            g.reserve(t0, Duration::ZERO),
            Err(Duration::from_millis(50))
        );
        assert_eq!(
            g.reserve(t0, Duration::from_secs(1)),
            Ok(t0 + Duration::from_millis(50))
        );
        assert_eq!(
            g.reserve(t0, Duration::from_secs(1)),
            Ok(t0 + Duration::from_millis(100))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn queue_never_exceeds_wait_and_refusal_reserves_nothing() {
        let g = Gcra::new(&limit(10.0, 1));
        let t0 = Instant::now();
        let wait = Duration::from_millis(250);
        let granted: Vec<_> = (0..5).map(|_| g.reserve(t0, wait)).collect();
        assert_eq!(granted.iter().filter(|r| r.is_ok()).count(), 3); // 0, 100, 200 ms
        assert!(granted[3].is_err());
        // Refusals did not push the schedule: the next slot after 300 ms is 300 ms.
        let later = t0 + Duration::from_millis(300);
        assert_eq!(g.reserve(later, Duration::ZERO), Ok(later));
    }

    #[tokio::test(start_paused = true)]
    async fn block_until_delays_everything() {
        let g = Gcra::new(&limit(20.0, 20));
        let t0 = Instant::now();
        g.block_until(t0 + Duration::from_secs(2));
        assert_eq!(
            g.reserve(t0, Duration::from_secs(1)),
            Err(Duration::from_secs(2))
        );
        assert_eq!(
            g.reserve(t0, Duration::from_secs(3)),
            Ok(t0 + Duration::from_secs(2))
        );
    }

    #[tokio::test]
    async fn quota_survives_restart_and_renews_monthly() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn StateStore> = Arc::new(FileStore::open(dir.path()).unwrap());
        let q = Arc::new(Quota::new(3, "acct", store.clone()));
        for _ in 0..3 {
            q.take().await.unwrap();
        }
        let code = |e: LimitError| crate::error::ProxyError::from(e).code();
        assert_eq!(code(q.take().await.unwrap_err()), "quota_exhausted");
        let q2 = Arc::new(Quota::new(3, "acct", store.clone()));
        assert_eq!(code(q2.take().await.unwrap_err()), "quota_exhausted");
    }

    #[tokio::test]
    async fn crash_over_counts_at_most_a_block_and_a_half_and_flush_is_exact() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn StateStore> = Arc::new(FileStore::open(dir.path()).unwrap());
        let q = Arc::new(Quota::new(1_000_000, "acct", store.clone()));
        for _ in 0..150 {
            q.take().await.unwrap();
        }
        // Without flush (a crash), a restart sees the reservation: more than
        // was used (150), by at most a block and a half (blocks of 100).
        let crashed = Arc::new(Quota::new(1_000_000, "acct", store.clone()));
        crashed.take().await.unwrap();
        let seen = crashed.used().await;
        assert!((151..=301).contains(&seen), "{seen}");
        q.flush().await.unwrap();
        let clean = Arc::new(Quota::new(1_000_000, "acct", store.clone()));
        clean.take().await.unwrap();
        assert_eq!(clean.used().await, 151);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_takers_never_pass_the_stored_reservation_or_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn StateStore> = Arc::new(FileStore::open(dir.path()).unwrap());
        // 20,000 a month: blocks of 2; 4 tasks race for 1,000 units.
        let q = Arc::new(Quota::new(20_000, "race", store.clone()));
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let q = q.clone();
                tokio::spawn(async move {
                    for _ in 0..250 {
                        q.take().await.unwrap();
                        let st = q.lock();
                        assert!(
                            st.used <= st.reserved,
                            "used {} past reserved {}",
                            st.used,
                            st.reserved
                        );
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(q.used().await, 1000);
        let month = month_key(OffsetDateTime::now_utc());
        let stored: u64 = store
            .get(&format!("quota.race.{month}"))
            .await
            .unwrap()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            stored >= 1000,
            "the store never holds less than was used: {stored}"
        );
        // A tight limit under contention: exactly the limit is granted.
        let tight = Arc::new(Quota::new(50, "tight", store));
        let granted: usize = futures_util::future::join_all((0..80).map(|_| {
            let q = tight.clone();
            async move { q.take().await.is_ok() as usize }
        }))
        .await
        .into_iter()
        .sum();
        assert_eq!(granted, 50);
    }

    #[tokio::test]
    async fn the_quota_renews_when_the_utc_month_turns() {
        use crate::vocab::ManualClock;
        let store: Arc<dyn StateStore> = Arc::new(crate::state::MemoryStore::default());
        let eve = time::macros::datetime!(2026-12-31 23:59:58 UTC);
        let clock = Arc::new(ManualClock::at(eve.into()));
        let q = Arc::new(Quota::new(3, "acct", store.clone()).with_clock(clock.clone()));
        for _ in 0..3 {
            q.take().await.unwrap();
        }
        match q.take().await {
            Err(LimitError::QuotaExhausted { retry_after, .. }) => {
                assert_eq!(retry_after, Duration::from_secs(2))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(q.used().await, 3);
        // Three seconds later it is January: a new count, in a new key.
        clock.advance(Duration::from_secs(3));
        assert_eq!(q.used().await, 0, "December's count is not January's");
        q.take().await.unwrap();
        assert_eq!(q.used().await, 1);
        let stored = |m: &str| {
            let store = store.clone();
            let key = format!("quota.acct.{m}");
            async move { store.get(&key).await.unwrap() }
        };
        assert_eq!(stored("2026-12").await.as_deref(), Some("3"));
        assert!(stored("2027-01").await.is_some());
        // Back on the same day a restart reads January's count, not December's.
        q.flush().await.unwrap();
        let again = Arc::new(Quota::new(3, "acct", store.clone()).with_clock(clock.clone()));
        again.take().await.unwrap();
        assert_eq!(again.used().await, 2);
    }

    #[test]
    fn next_month_boundaries() {
        let t = time::macros::datetime!(2026-12-31 23:59:30 UTC);
        assert_eq!(until_next_month(t), Duration::from_secs(30));
        assert_eq!(month_key(t), "2026-12");
        let t = time::macros::datetime!(2026-02-01 00:00:00 UTC);
        assert_eq!(until_next_month(t), Duration::from_secs(28 * 86400));
    }
}

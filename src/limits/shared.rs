//! Rate limit, quota and upstream hold shared by every replica through
//! Redis: one Lua script per request takes the rate permit and the quota
//! unit together (GCRA with reservations, as the local limiter, on Redis's
//! clock), so N replicas together send what one would.
//!
//! When Redis fails, `on_state_failure` decides: `fail_closed` refuses with
//! 503 `state_unavailable`; `local` goes on with this replica's share (the
//! limits divided by `expected_replicas`): a local GCRA at the divided rate
//! and, for the quota, the divided remainder of the last count Redis gave.
//! Units sent meanwhile are added to the shared count when Redis is back,
//! so nothing sent upstream goes uncounted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::time::Instant;

use super::LimitError;
use super::{month_key, until_next_month, Gcra, UpstreamHold};
use crate::config::{OnStateFailure, RateLimit};
use crate::state::{Permit, PermitRequest, RedisState};

pub struct SharedLimits {
    state: Arc<RedisState>,
    rate_key: String,
    hold_key: String,
    /// `<prefix>:quota:<id>:` + `YYYY-MM`.
    quota_prefix: String,
    rate: Option<RateLimit>,
    /// The rate as GCRA parameters (interval, tolerance); zero without a rate.
    gcra: (Duration, Duration),
    quota: Option<u64>,
    /// This replica's share of the rate, used only while Redis is unreachable
    /// and the policy is `local`.
    fallback_rate: Option<Gcra>,
    /// The month's count as Redis last gave it.
    last_used: AtomicU64,
    /// Units sent while Redis was unreachable, not yet in the shared count.
    pending: AtomicU64,
}

impl SharedLimits {
    pub fn new(
        state: Arc<RedisState>,
        credential: &str,
        quota_id: &str,
        rate: Option<RateLimit>,
        quota: Option<u64>,
    ) -> Self {
        let n = f64::from(state.expected_replicas.max(1));
        let fallback_rate = rate.map(|r| {
            Gcra::new(&RateLimit {
                per_second: r.per_second / n,
                burst: ((f64::from(r.burst) / n).floor() as u32).max(1),
                wait: r.wait,
            })
        });
        SharedLimits {
            rate_key: state.key("rate", credential),
            hold_key: state.key("hold", credential),
            quota_prefix: state.key("quota", quota_id) + ":",
            state,
            rate,
            gcra: rate.map_or((Duration::ZERO, Duration::ZERO), |r| {
                let g = Gcra::new(&r);
                (g.interval, g.tolerance)
            }),
            quota,
            fallback_rate,
            last_used: AtomicU64::new(0),
            pending: AtomicU64::new(0),
        }
    }

    /// The month's count as last seen (for /readyz and metrics), when there is a quota.
    pub fn used_if_quota(&self) -> Option<u64> {
        self.quota
            .map(|_| self.last_used.load(Ordering::Relaxed) + self.pending.load(Ordering::Relaxed))
    }

    /// Takes a rate permit and a quota unit for every replica at once,
    /// waiting for the permit up to the route's `wait` and the deadline.
    pub async fn acquire(&self, deadline: Instant, hold: &UpstreamHold) -> Result<(), LimitError> {
        let now = Instant::now();
        let wait = self.rate.map_or(Duration::ZERO, |r| r.wait);
        let max_wait = wait.min(deadline.saturating_duration_since(now));
        let (interval, tolerance) = self.gcra;
        let utc = OffsetDateTime::now_utc();
        let pending = self.pending.load(Ordering::Acquire);
        let quota_key = format!("{}{}", self.quota_prefix, month_key(utc));
        let request = PermitRequest {
            rate_key: &self.rate_key,
            quota_key: &quota_key,
            hold_key: &self.hold_key,
            interval,
            tolerance,
            max_wait,
            limit: self.quota.unwrap_or(0),
            // The counter outlives its month by a day, then Redis drops it.
            expire_at: utc.unix_timestamp() + until_next_month(utc).as_secs() as i64 + 86_400,
            pending: if self.quota.is_some() { pending } else { 0 },
        };
        let answer = match self.state.permit(&request).await {
            Ok(a) => a,
            Err(e) => {
                return match self.state.policy {
                    OnStateFailure::FailClosed => Err(LimitError::from(e)),
                    OnStateFailure::Local => self.acquire_local(deadline, hold).await,
                }
            }
        };
        if request.pending > 0 {
            self.pending.fetch_sub(request.pending, Ordering::AcqRel);
        }
        match answer {
            Permit::Granted { wait, used } => {
                self.last_used.store(used, Ordering::Relaxed);
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                Ok(())
            }
            Permit::RateLimited(d) => Err(LimitError::RateLimited(d)),
            Permit::QuotaExhausted { used } => {
                self.last_used.store(used, Ordering::Relaxed);
                Err(LimitError::QuotaExhausted {
                    limit: self.quota.unwrap_or(0),
                    retry_after: until_next_month(utc),
                })
            }
        }
    }

    /// This replica's share of the limits, while Redis is unreachable.
    async fn acquire_local(
        &self,
        deadline: Instant,
        hold: &UpstreamHold,
    ) -> Result<(), LimitError> {
        self.state.metrics.fallbacks.inc();
        let now = Instant::now();
        let wait = self.rate.map_or(Duration::ZERO, |r| r.wait);
        let max_wait = wait.min(deadline.saturating_duration_since(now));
        if let Some(held) = hold.remaining(now) {
            if held > max_wait {
                return Err(LimitError::RateLimited(held));
            }
            if let Some(g) = &self.fallback_rate {
                g.block_until(now + held);
            }
        }
        let send_at = match &self.fallback_rate {
            Some(g) => Some(g.reserve(now, max_wait).map_err(LimitError::RateLimited)?),
            None => hold.remaining(now).map(|h| now + h),
        };
        if let Some(limit) = self.quota {
            let replicas = u64::from(self.state.expected_replicas.max(1));
            let share = limit.saturating_sub(self.last_used.load(Ordering::Relaxed)) / replicas;
            let took = self
                .pending
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| {
                    (p < share).then_some(p + 1)
                });
            if took.is_err() {
                return Err(LimitError::QuotaExhausted {
                    limit,
                    retry_after: until_next_month(OffsetDateTime::now_utc()),
                });
            }
        }
        if let Some(at) = send_at.filter(|at| *at > Instant::now()) {
            tokio::time::sleep_until(at).await;
        }
        Ok(())
    }

    /// The upstream asked every replica to slow down for `d`.
    pub async fn share_hold(&self, d: Duration) {
        if let Err(e) = self.state.hold(&self.hold_key, d).await {
            tracing::warn!(error = %e, "could not share the upstream's hold with other replicas");
        }
    }
}

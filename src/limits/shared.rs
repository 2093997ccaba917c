//! Rate limit, quota and upstream hold shared by every replica through
//! Redis, at local speed: a replica reserves rate slots in batches
//! ([`shared_rate`](super::shared_rate): consecutive slots of the one GCRA
//! schedule, handed out locally at their times) and quota units in blocks
//! ([`shared_quota`](super::shared_quota)), so N replicas together send what
//! one would while most requests never wait for Redis. When both run out
//! at once, both are asked for together.
//!
//! The upstream's hold (429 Retry-After) holds the replica that saw it at
//! once, and every other replica from its next batch (within one batch's
//! span, [`HORIZON`]): Redis keeps it, each batch answer brings it along,
//! and routes without a rate read it every [`HORIZON`].
//!
//! When Redis fails, `on_state_failure` decides: `fail_closed` refuses with
//! 503 `state_unavailable` once the slots and units in hand are used;
//! `local` goes on with this replica's share (the limits divided by
//! `expected_replicas`): a local GCRA at the divided rate and, for the
//! quota, the divided remainder of the last count Redis gave. Units sent
//! meanwhile are added to the shared count with the next block Redis
//! grants, so nothing sent upstream goes uncounted.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::shared_quota::{QuotaError, SharedQuota};
use super::shared_rate::{RateError, SharedRate, HORIZON};
use super::{Gcra, LimitError, UpstreamHold};
use crate::config::{OnStateFailure, RateLimit};
use crate::state::{RedisState, StateError};

pub struct SharedLimits {
    state: Arc<RedisState>,
    /// The rate's slots in hand; `None` without a rate (or one over a million a second).
    rate: Option<SharedRate>,
    /// The quota's units in hand.
    quota: Option<Arc<SharedQuota>>,
    /// How long a request may wait for its slot (the route's `wait`).
    wait: Duration,
    hold_key: String,
    /// This replica's share of the rate, used only while Redis is unreachable
    /// and the policy is `local`.
    fallback_rate: Option<Gcra>,
    /// Without a rate: when this replica last read the shared hold.
    hold_read: Mutex<Option<Instant>>,
}

/// How a request got its quota unit, to put it back if it is not sent.
enum Unit {
    None,
    Held,
    Share,
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
            rate: rate.and_then(|r| SharedRate::new(state.clone(), credential, &r)),
            quota: quota.map(|limit| Arc::new(SharedQuota::new(state.clone(), quota_id, limit))),
            wait: rate.map_or(Duration::ZERO, |r| r.wait),
            hold_key: state.key("hold", credential),
            fallback_rate,
            hold_read: Mutex::new(None),
            state,
        }
    }

    /// The month's count as this replica knows it (for /readyz and metrics), when there is a quota.
    pub fn used_if_quota(&self) -> Option<u64> {
        self.quota.as_ref().map(|q| q.used())
    }

    /// Takes a rate slot and a quota unit for every replica at once,
    /// waiting for the slot up to the route's `wait` and the deadline.
    pub async fn acquire(&self, deadline: Instant, hold: &UpstreamHold) -> Result<(), LimitError> {
        let now = Instant::now();
        let until = now + self.wait.min(deadline.saturating_duration_since(now));
        if self.rate.is_none() {
            self.read_hold(now, hold).await?;
        }
        if let Some(held) = hold.remaining(now) {
            if now + held > until {
                return Err(LimitError::RateLimited(held));
            }
            tokio::time::sleep(held).await;
        }
        // The quota's unit first, so the slot is taken just before sending.
        let in_hand = self.quota.as_ref().is_none_or(|q| q.take_local());
        let (unit, send_at) = match &self.rate {
            Some(rate) if !in_hand && rate.is_empty(Instant::now()) => {
                // Both need Redis: ask for both at once.
                let (unit, slot) = tokio::join!(self.take_unit(), rate.take(until, hold));
                (unit, self.slot_or_fallback(slot, until))
            }
            _ => {
                let unit = if in_hand {
                    Ok(if self.quota.is_some() {
                        Unit::Held
                    } else {
                        Unit::None
                    })
                } else {
                    self.take_unit().await
                };
                let slot = match (&unit, &self.rate) {
                    (Ok(_), Some(rate)) => {
                        self.slot_or_fallback(rate.take(until, hold).await, until)
                    }
                    _ => Ok(None),
                };
                (unit, slot)
            }
        };
        let unit = unit?;
        let send_at = match send_at {
            Ok(at) => at,
            Err(e) => {
                self.untake(unit);
                return Err(e);
            }
        };
        if let Some(at) = send_at.filter(|at| *at > Instant::now()) {
            tokio::time::sleep_until(at).await;
        }
        Ok(())
    }

    /// A quota unit: in hand, from a new block, or (Redis down, `local`)
    /// from this replica's share.
    async fn take_unit(&self) -> Result<Unit, LimitError> {
        let Some(quota) = &self.quota else {
            return Ok(Unit::None);
        };
        match quota.take().await {
            Ok(()) => Ok(Unit::Held),
            Err(QuotaError::Exhausted(retry_after)) => Err(LimitError::QuotaExhausted {
                limit: quota.limit(),
                retry_after,
            }),
            Err(QuotaError::State(e)) => {
                self.on_failure(e)?;
                quota
                    .take_share(self.state.expected_replicas)
                    .map(|()| Unit::Share)
                    .map_err(|_| LimitError::QuotaExhausted {
                        limit: quota.limit(),
                        retry_after: super::until_next_month(time::OffsetDateTime::now_utc()),
                    })
            }
        }
    }

    fn untake(&self, unit: Unit) {
        if let Some(q) = &self.quota {
            match unit {
                Unit::Held => q.untake(),
                Unit::Share => q.untake_share(),
                Unit::None => {}
            }
        }
    }

    /// The slot Redis's schedule gave, or (Redis down, `local`) one of this
    /// replica's share of the rate.
    fn slot_or_fallback(
        &self,
        slot: Result<Instant, RateError>,
        until: Instant,
    ) -> Result<Option<Instant>, LimitError> {
        match slot {
            Ok(at) => Ok(Some(at)),
            Err(RateError::TooFar(d)) => Err(LimitError::RateLimited(d)),
            Err(RateError::State(e)) => {
                self.on_failure(e)?;
                let now = Instant::now();
                match &self.fallback_rate {
                    Some(g) => g
                        .reserve(now, until.saturating_duration_since(now))
                        .map(Some)
                        .map_err(LimitError::RateLimited),
                    None => Ok(None),
                }
            }
        }
    }

    /// Redis failed: an error under `fail_closed`; under `local`, counted
    /// and let through to the replica's share.
    fn on_failure(&self, e: StateError) -> Result<(), LimitError> {
        match self.state.policy {
            OnStateFailure::FailClosed => Err(LimitError::from(e)),
            OnStateFailure::Local => {
                self.state.metrics.fallbacks.inc();
                Ok(())
            }
        }
    }

    /// Without rate batches to bring it, reads the hold other replicas
    /// shared, at most once every [`HORIZON`] (the other requests go on
    /// with what this replica knows).
    async fn read_hold(&self, now: Instant, hold: &UpstreamHold) -> Result<(), LimitError> {
        {
            let mut last = self.hold_read.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|t| now < t + HORIZON) {
                return Ok(());
            }
            *last = Some(now);
        }
        match self.state.hold_remaining(&self.hold_key).await {
            Ok(left) if !left.is_zero() => hold.hold_for(left),
            Ok(_) => {}
            Err(e) => {
                // Not known: the next request asks again.
                *self.hold_read.lock().unwrap_or_else(|p| p.into_inner()) = None;
                if self.state.policy == OnStateFailure::FailClosed {
                    return Err(LimitError::from(e));
                }
            }
        }
        Ok(())
    }

    /// The upstream asked every replica to slow down for `d`.
    pub async fn share_hold(&self, d: Duration) {
        if let Err(e) = self.state.hold(&self.hold_key, d).await {
            tracing::warn!(error = %e, "could not share the upstream's hold with other replicas");
        }
    }

    /// Gives back what this replica reserved and did not use: the quota's
    /// units in hand and the tail of its rate batch (clean shutdown).
    pub async fn flush(&self) -> Result<(), StateError> {
        let rate = match &self.rate {
            Some(r) => r.flush().await,
            None => Ok(()),
        };
        let quota = match &self.quota {
            Some(q) => q.flush().await,
            None => Ok(()),
        };
        rate.and(quota)
    }
}

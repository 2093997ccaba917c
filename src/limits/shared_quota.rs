//! A replica's part of a shared monthly quota: blocks of units reserved in
//! Redis and counted out locally, as the file store's quota reserves blocks
//! on disk.
//!
//! Redis holds the count every replica reserved, never more than the limit,
//! so the upstream never gets more than its quota whichever replica sends.
//! A replica holds at most a block and a half unused (the next block is
//! reserved in the background when half of the current one is left): a
//! crash over-counts by at most that; a clean shutdown gives the unused
//! units back. Near the end of the month (16 blocks left) Redis grants one
//! unit at a time, so the last units go to whichever replica has requests
//! rather than sit in another's block.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;

use super::{month_key, until_next_month};
use crate::state::{QuotaRequest, RedisState, StateError};
use crate::vocab::{Clock, SystemClock};

/// Why no unit was taken.
#[derive(Debug)]
pub(super) enum QuotaError {
    /// The month's quota is used up; it renews after this.
    Exhausted(Duration),
    /// Redis could not be asked for a block.
    State(StateError),
}

pub(super) struct SharedQuota {
    state: Arc<RedisState>,
    limit: u64,
    /// `<prefix>:quota:<id>:`; the month (`YYYY-MM`) completes the key.
    key_prefix: String,
    /// Units per reservation (the file store's block).
    block: u64,
    /// The UTC clock that decides the month (injectable for tests).
    clock: Arc<dyn Clock>,
    /// The units in hand. A plain mutex, never held across an await.
    held: Mutex<Held>,
    /// One reservation at a time.
    fetching: tokio::sync::Mutex<()>,
    /// A background reservation of the next block is under way.
    refilling: AtomicBool,
    /// Units sent while Redis was unreachable, not yet in the shared count.
    pending: AtomicU64,
}

#[derive(Default)]
struct Held {
    /// `YYYY-MM` of the units below; empty before the first reservation.
    month: String,
    /// Unix seconds when that month ends: the fast path's only clock check.
    month_end: i64,
    /// Units reserved in Redis and not used yet.
    left: u64,
    /// The count Redis last reported (every replica's reservations).
    count: u64,
}

impl SharedQuota {
    pub(super) fn new(state: Arc<RedisState>, quota_id: &str, limit: u64) -> Self {
        SharedQuota {
            key_prefix: state.key("quota", quota_id) + ":",
            state,
            limit,
            block: (limit / 10_000).clamp(1, 10_000),
            clock: Arc::new(SystemClock),
            held: Mutex::new(Held::default()),
            fetching: tokio::sync::Mutex::new(()),
            refilling: AtomicBool::new(false),
            pending: AtomicU64::new(0),
        }
    }

    pub(super) fn limit(&self) -> u64 {
        self.limit
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a unit in hand, if there is one (no I/O).
    pub(super) fn take_local(self: &Arc<Self>) -> bool {
        let now = self.clock.unix_seconds();
        let mut held = self.lock();
        if now >= held.month_end || held.left == 0 {
            return false;
        }
        held.left -= 1;
        // Half a block left: reserve the next one before the hand is empty.
        // (Blocks of one are reserved as used: nothing is held ahead.)
        if self.block > 1
            && held.left <= self.block / 2
            && !self.refilling.swap(true, Ordering::AcqRel)
        {
            let q = Arc::clone(self);
            tokio::spawn(async move {
                let _one_at_a_time = q.fetching.lock().await;
                if q.lock().left <= q.block / 2 {
                    if let Err(e) = q.reserve(false).await {
                        tracing::debug!(error = ?e, "the next quota block was not reserved ahead; a request will ask");
                    }
                }
                q.refilling.store(false, Ordering::Release);
            });
        }
        true
    }

    /// A unit taken for a request that was not sent after all.
    pub(super) fn untake(&self) {
        self.lock().left += 1;
    }

    /// Takes a unit, reserving a block in Redis when none is in hand.
    pub(super) async fn take(self: &Arc<Self>) -> Result<(), QuotaError> {
        if self.take_local() {
            return Ok(());
        }
        let _one_at_a_time = self.fetching.lock().await;
        if self.take_local() {
            return Ok(());
        }
        self.reserve(true).await
    }

    /// Reserves a block (`take`: and takes one unit of it). The caller holds `fetching`.
    async fn reserve(&self, take: bool) -> Result<(), QuotaError> {
        let utc = OffsetDateTime::from(self.clock.now());
        let month = month_key(utc);
        let until_next = until_next_month(utc);
        if self.lock().month != month {
            // A new month: last month's units are of no use any more.
            *self.lock() = Held {
                month: month.clone(),
                month_end: utc.unix_timestamp() + until_next.as_secs() as i64,
                left: 0,
                count: 0,
            };
        }
        let pending = self.pending.load(Ordering::Acquire);
        let (granted, count) = self
            .state
            .quota_block(&QuotaRequest {
                key: &format!("{}{month}", self.key_prefix),
                limit: self.limit,
                want: self.block,
                exact_below: 16 * self.block,
                // The counter outlives its month by a day, then Redis drops it.
                expire_at: utc.unix_timestamp() + until_next.as_secs() as i64 + 86_400,
                pending,
                back: 0,
            })
            .await
            .map_err(QuotaError::State)?;
        if pending > 0 {
            self.pending.fetch_sub(pending, Ordering::AcqRel);
        }
        let mut held = self.lock();
        held.count = count;
        if held.month == month {
            held.left += granted;
        }
        if !take {
            return Ok(());
        }
        if held.left == 0 {
            return Err(QuotaError::Exhausted(until_next));
        }
        held.left -= 1;
        Ok(())
    }

    /// Gives the units in hand back to the shared count (clean shutdown).
    pub(super) async fn flush(&self) -> Result<(), StateError> {
        let _one_at_a_time = self.fetching.lock().await;
        let (month, back) = {
            let mut held = self.lock();
            (held.month.clone(), std::mem::take(&mut held.left))
        };
        let pending = self.pending.load(Ordering::Acquire);
        if month.is_empty() || (back == 0 && pending == 0) {
            return Ok(());
        }
        let result = self
            .state
            .quota_block(&QuotaRequest {
                key: &format!("{}{month}", self.key_prefix),
                limit: self.limit,
                want: 0,
                exact_below: 0,
                expire_at: {
                    let utc = OffsetDateTime::from(self.clock.now());
                    utc.unix_timestamp() + until_next_month(utc).as_secs() as i64 + 86_400
                },
                pending,
                back,
            })
            .await;
        match result {
            Ok((_, count)) => {
                self.pending.fetch_sub(pending, Ordering::AcqRel);
                self.lock().count = count;
                Ok(())
            }
            Err(e) => {
                // Still reserved in Redis: keep using them.
                self.lock().left += back;
                Err(e)
            }
        }
    }

    /// While Redis is unreachable (`on_state_failure = "local"`): a unit of
    /// this replica's share of what Redis last said was left, counted as
    /// pending until Redis hears of it.
    pub(super) fn take_share(&self, replicas: u32) -> Result<(), QuotaError> {
        let share = self.limit.saturating_sub(self.lock().count) / u64::from(replicas.max(1));
        self.pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| {
                (p < share).then_some(p + 1)
            })
            .map(|_| ())
            .map_err(|_| {
                QuotaError::Exhausted(until_next_month(OffsetDateTime::from(self.clock.now())))
            })
    }

    /// A unit of the share taken for a request that was not sent after all.
    pub(super) fn untake_share(&self) {
        let _ = self
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| p.checked_sub(1));
    }

    /// Units used this month as far as this replica knows: the shared count
    /// less its own unused units, plus those Redis has not heard of yet.
    pub(super) fn used(&self) -> u64 {
        let now = self.clock.unix_seconds();
        let held = self.lock();
        let pending = self.pending.load(Ordering::Relaxed);
        if now < held.month_end {
            held.count.saturating_sub(held.left) + pending
        } else {
            pending
        }
    }
}

//! A replica's part of a credential's shared rate limit: slots of the one
//! GCRA schedule every replica reserves from in Redis, taken in batches so
//! most requests need no round trip.
//!
//! A batch is `n` consecutive slots of the schedule: Redis moves its
//! theoretical arrival time (TAT) on by `n × interval` at once, exactly as
//! `n` single permits would, so however the slots are spread across
//! replicas the schedule itself never holds more than GCRA allows. The
//! replica hands its slots out in order, each at its own time, to its own
//! requests; a slot nobody took in time is wasted (or given back, when it
//! is the batch's tail and nobody reserved after it), never used late.
//!
//! "In time" is what makes the bound exact. A slot whose TAT is `T` may be
//! sent from `T - τ'` and must be taken by `T + g/2` (the grace `g` is half
//! the route's burst tolerance `τ`, at most [`GRACE`]; the other half of it
//! is left for signing and sending), where Redis schedules with
//! `τ' = τ - g`: the burst lends the batches their slack. Any
//! window of length `L` then holds sends of slots whose TATs lie in an
//! interval of `L + τ' + g = L + τ`: at most `L / interval + burst`, GCRA's
//! own bound. (A slot used later than that could pile onto the slots of
//! other replicas sent at their times: the burst would grow by every slot
//! held back.) Times Redis gives are mapped conservatively: a slot's
//! earliest send from the moment its answer arrived (never early), its
//! deadline from the moment the request left (never late).
//!
//! Batches adapt: a batch asks for as many slots as the last one used (twice
//! as many when it ran out, at least the requests queued for it), at most
//! the rate × [`HORIZON`], so a 20/s route takes one slot at a time and a
//! replica never sits on more of the schedule than it serves in 50 ms per
//! batch.
//!
//! Fetched ahead: when three quarters of the batch in hand are handed out,
//! or less than a quarter of the time its last slot may be taken in is
//! left, the next request asks Redis for the next batch *before* it takes
//! its own slot (so no slot is held across the round trip and none goes
//! late), while the others keep taking from the batch in hand. Without it
//! every request arriving while a batch was fetched waited for the round
//! trip (p99 1.47x that of local limits in `scripts/bench-proxy.sh`). At
//! most one batch is held ahead; batches of one slot (20/s and less) are
//! not fetched ahead.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::{Gcra, UpstreamHold};
use crate::config::RateLimit;
use crate::state::{RateBatch, RateRequest, RedisState, StateError};

/// How much of the schedule one batch may cover: the rate times this.
pub(super) const HORIZON: Duration = Duration::from_millis(50);
/// The most slots in one batch, whatever the rate.
const MAX_BATCH: u32 = 1_000;
/// The most a slot may be sent after its theoretical arrival time (at most
/// half the route's burst tolerance, which it is taken from).
const GRACE: Duration = Duration::from_millis(50);

/// Why no slot was taken.
#[derive(Debug)]
pub(super) enum RateError {
    /// The next slot is further than the request may wait (by this much).
    TooFar(Duration),
    /// Redis could not be asked for a batch.
    State(StateError),
}

pub(super) struct SharedRate {
    state: Arc<RedisState>,
    rate_key: String,
    hold_key: String,
    /// 1 / rate.
    interval: Duration,
    /// The tolerance Redis schedules with: the route's, less the grace.
    tolerance: Duration,
    /// How long after its TAT a slot may still be taken (half the grace).
    late: Duration,
    /// The largest batch: rate × HORIZON, within [1, MAX_BATCH].
    cap: u32,
    /// The slots in hand. A plain mutex, never held across an await.
    slots: Mutex<Slots>,
    /// One batch request at a time; requests wait here in order.
    fetching: tokio::sync::Mutex<()>,
    /// Requests queued for the next batch: it asks for at least as many.
    queued: AtomicU32,
}

impl SharedRate {
    /// `None` when the rate is too high to schedule in Redis's µs (over a
    /// million a second): it never binds.
    pub(super) fn new(state: Arc<RedisState>, credential: &str, limit: &RateLimit) -> Option<Self> {
        let g = Gcra::new(limit);
        if g.interval.as_micros() == 0 {
            return None;
        }
        let cap = ((limit.per_second * HORIZON.as_secs_f64()).ceil() as u32).clamp(1, MAX_BATCH);
        // One slot at a time goes to the request that asked for it, as a
        // single permit did: no slot waits in hand, so no grace is needed.
        let grace = if cap > 1 {
            (g.tolerance / 2).min(GRACE)
        } else {
            Duration::ZERO
        };
        Some(SharedRate {
            rate_key: state.key("rate", credential),
            hold_key: state.key("hold", credential),
            state,
            interval: g.interval,
            tolerance: g.tolerance - grace,
            late: grace / 2,
            cap,
            slots: Mutex::new(Slots {
                cap,
                ..Slots::default()
            }),
            fetching: tokio::sync::Mutex::new(()),
            queued: AtomicU32::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take_local(&self, now: Instant, until: Instant) -> Take {
        self.lock()
            .take(now, until, self.interval, self.tolerance, self.late)
    }

    /// Whether a request would need Redis for its slot now.
    pub(super) fn is_empty(&self, now: Instant) -> bool {
        matches!(
            self.lock()
                .take_dry(now, self.interval, self.tolerance, self.late),
            Take::Empty
        )
    }

    /// A slot: the instant the request may be sent (not after `until`). A
    /// hold Redis reports is applied to `hold` too, for this replica's
    /// requests that do not ask Redis.
    pub(super) async fn take(
        &self,
        until: Instant,
        hold: &UpstreamHold,
    ) -> Result<Instant, RateError> {
        // The request that sees the batch in hand nearly gone fetches the
        // next one before it takes a slot (none is held across the round
        // trip, so no slot goes late); the others go on taking from the
        // batch in hand meanwhile instead of all waiting when it is gone.
        if self.cap > 1 && self.wants_ahead() {
            if let Ok(_one_at_a_time) = self.fetching.try_lock() {
                if self.wants_ahead() {
                    self.fetch_ahead(until, hold).await;
                }
            }
        }
        match self.take_local(Instant::now(), until) {
            Take::Slot(at) => return Ok(at),
            Take::TooFar(d) => return Err(RateError::TooFar(d)),
            Take::Empty => {}
        }
        self.queued.fetch_add(1, Ordering::Relaxed);
        let _one_at_a_time = self.fetching.lock().await;
        self.queued.fetch_sub(1, Ordering::Relaxed);
        // A batch may have come while this request waited its turn.
        let (want, back) = {
            let mut slots = self.lock();
            match slots.take(
                Instant::now(),
                until,
                self.interval,
                self.tolerance,
                self.late,
            ) {
                Take::Slot(at) => return Ok(at),
                Take::TooFar(d) => return Err(RateError::TooFar(d)),
                Take::Empty => {}
            }
            let back = slots.retire(self.cap);
            let want = slots
                .size
                .max(self.queued.load(Ordering::Relaxed) + 1)
                .min(self.cap);
            (want, back)
        };
        match self
            .reserve(until, want, back, hold)
            .await
            .map_err(RateError::State)?
        {
            Err(d) => Err(RateError::TooFar(d)),
            Ok((mut batch, arrived)) => {
                // The first slot is this request's, whatever the round trip took.
                (batch.next, batch.taken, batch.tail) = (1, 1, 1);
                let first = batch.earliest(0, self.interval, self.tolerance);
                self.lock().batch = Some(batch);
                Ok(first.max(arrived))
            }
        }
    }

    /// Asks Redis for `want` slots that can go by `until`, giving `back`
    /// (the schedule's end, slots) back, and applies the upstream hold the
    /// answer brings. A grant comes as a batch in local time with no slot
    /// handed out yet, and when it arrived; `Err` is how far the next slot
    /// is when it is further than `until`.
    async fn reserve(
        &self,
        until: Instant,
        want: u32,
        (back_end, back_count): (i64, u32),
        hold: &UpstreamHold,
    ) -> Result<Result<(Batch, Instant), Duration>, StateError> {
        let sent = Instant::now();
        let answer = self
            .state
            .rate_batch(&RateRequest {
                rate_key: &self.rate_key,
                hold_key: &self.hold_key,
                interval: self.interval,
                tolerance: self.tolerance,
                max_wait: until.saturating_duration_since(sent),
                want,
                back_end,
                back_count,
            })
            .await?;
        let arrived = Instant::now();
        Ok(match answer {
            RateBatch::TooFar(d) => Err(d),
            RateBatch::Granted {
                tat,
                floor,
                count,
                end,
            } => {
                if !floor.is_zero() {
                    // Another replica saw the upstream say "slow down".
                    hold.hold_for(floor);
                }
                let batch = Batch {
                    tat: arrived + tat,
                    tat_sent: sent + tat,
                    floor: arrived + floor,
                    count,
                    next: 0,
                    taken: 0,
                    tail: 0,
                    end,
                };
                Ok((batch, arrived))
            }
        })
    }

    fn wants_ahead(&self) -> bool {
        self.lock()
            .wants_ahead(Instant::now(), self.interval, self.late)
    }

    /// Reserves the next batch while the one in hand still serves; on a
    /// failure or a full schedule, tries no more for a while (the request
    /// that finds the batch in hand gone asks Redis itself, as always).
    async fn fetch_ahead(&self, until: Instant, hold: &UpstreamHold) {
        let want = self.lock().size.clamp(1, self.cap);
        let answer = self.reserve(until, want, (0, 0), hold).await;
        let mut slots = self.lock();
        match answer {
            Ok(Ok((batch, _))) if batch.count > 0 => slots.ahead = Some(batch),
            _ => slots.no_ahead_until = Some(Instant::now() + self.late),
        }
    }

    /// Gives the unused tail of the last batch reserved back to the
    /// schedule (clean shutdown), if nobody reserved after it.
    pub(super) async fn flush(&self) -> Result<(), StateError> {
        let _one_at_a_time = self.fetching.lock().await;
        let (back_end, back_count) = {
            let mut slots = self.lock();
            let in_hand = slots.retire(self.cap);
            match slots.ahead.take() {
                // Reserved after the one in hand: only its tail can go back.
                Some(b) => (b.end, b.count - b.tail),
                None => in_hand,
            }
        };
        if back_count == 0 {
            return Ok(());
        }
        self.state
            .rate_batch(&RateRequest {
                rate_key: &self.rate_key,
                hold_key: &self.hold_key,
                interval: self.interval,
                tolerance: self.tolerance,
                max_wait: Duration::ZERO,
                want: 0,
                back_end,
                back_count,
            })
            .await
            .map(|_| ())
    }
}

/// What the slots in hand offer a request.
#[derive(Debug, PartialEq, Eq)]
enum Take {
    /// Send at this instant.
    Slot(Instant),
    /// The next usable slot is further than the request may wait.
    TooFar(Duration),
    /// No usable slot: ask Redis.
    Empty,
}

/// The batch in hand and how large the next one should be.
#[derive(Default)]
struct Slots {
    batch: Option<Batch>,
    /// The next batch, fetched before the one in hand expires or runs out
    /// ([`SharedRate::fetch_ahead`]); its slots come after all of `batch`'s.
    ahead: Option<Batch>,
    /// No fetch ahead before this (one failed or found the schedule full).
    no_ahead_until: Option<Instant>,
    /// Slots the next batch asks for, adapted to what the last ones served.
    size: u32,
    /// The largest batch ([`SharedRate::cap`]).
    cap: u32,
}

/// Consecutive slots of the shared schedule, in local time.
struct Batch {
    /// Slot 0's TAT, from when the answer arrived: sends are never early.
    tat: Instant,
    /// Slot 0's TAT, from when the request left: deadlines are never late.
    tat_sent: Instant,
    /// Nothing before this (the upstream's hold, or Redis's now).
    floor: Instant,
    count: u32,
    /// The next slot to look at.
    next: u32,
    /// Slots handed to requests.
    taken: u32,
    /// One past the last slot handed out: the unused tail starts here.
    tail: u32,
    /// The schedule's end after this batch (Redis's µs), for a give-back.
    end: i64,
}

impl Batch {
    fn earliest(&self, i: u32, interval: Duration, tolerance: Duration) -> Instant {
        (self.tat + interval * i)
            .checked_sub(tolerance)
            .map_or(self.floor, |t| t.max(self.floor))
    }

    fn deadline(&self, i: u32, interval: Duration, late: Duration) -> Instant {
        self.tat_sent + interval * i + late
    }
}

impl Slots {
    /// Hands out the next slot that can still be sent in time, skipping
    /// (wasting) those whose deadline passed.
    fn take(
        &mut self,
        now: Instant,
        until: Instant,
        interval: Duration,
        tolerance: Duration,
        late: Duration,
    ) -> Take {
        loop {
            let Some(b) = &mut self.batch else {
                return Take::Empty;
            };
            while b.next < b.count {
                let i = b.next;
                if now > b.deadline(i, interval, late) {
                    b.next += 1;
                    continue;
                }
                let at = b.earliest(i, interval, tolerance);
                if at > until {
                    return Take::TooFar(at - now);
                }
                b.next += 1;
                b.taken += 1;
                b.tail = b.next;
                return Take::Slot(at.max(now));
            }
            // Used up or expired: the batch fetched ahead, if any, takes over
            // (the tail left here cannot go back: `ahead` was reserved after it).
            let Some(next) = self.ahead.take() else {
                return Take::Empty;
            };
            self.retire(self.cap);
            self.batch = Some(next);
        }
    }

    /// What [`Slots::take`] would find, taking nothing.
    fn take_dry(
        &self,
        now: Instant,
        interval: Duration,
        tolerance: Duration,
        late: Duration,
    ) -> Take {
        [&self.batch, &self.ahead]
            .into_iter()
            .flatten()
            .find_map(|b| {
                (b.next..b.count)
                    .find(|i| now <= b.deadline(*i, interval, late))
                    .map(|i| Take::Slot(b.earliest(i, interval, tolerance).max(now)))
            })
            .unwrap_or(Take::Empty)
    }

    /// Whether to fetch the next batch now, before the one in hand is
    /// gone: three quarters of it handed out, or less than a quarter of
    /// the time its last slot may be taken in left. Never with a batch
    /// already fetched ahead, nor after a failed try (until it may retry).
    fn wants_ahead(&self, now: Instant, interval: Duration, late: Duration) -> bool {
        let Some(b) = &self.batch else {
            return false;
        };
        if self.ahead.is_some() || self.no_ahead_until.is_some_and(|t| now < t) {
            return false;
        }
        let last = b.deadline(b.count.saturating_sub(1), interval, late);
        b.count - b.next.min(b.count) <= b.count / 4 || now + late / 4 >= last
    }

    /// Drops the batch in hand; returns its end and unused tail for a
    /// give-back, and sizes the next batch by what this one served.
    fn retire(&mut self, cap: u32) -> (i64, u32) {
        let Some(b) = self.batch.take() else {
            self.size = self.size.max(1);
            return (0, 0);
        };
        self.size = if b.taken >= b.count {
            // All used: demand may be higher.
            (b.count.max(self.size) * 2).min(cap)
        } else {
            b.taken.max(1)
        };
        (b.end, b.count - b.tail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn batch(now: Instant, count: u32) -> Slots {
        // `count` slots at 1 ms intervals from now (slot 0 already taken).
        Slots {
            batch: Some(Batch {
                tat: now,
                tat_sent: now,
                floor: now,
                count,
                next: 1,
                taken: 1,
                tail: 1,
                end: 1_000,
            }),
            size: 1,
            cap: 100,
            ..Slots::default()
        }
    }

    /// `count` slots at 1 ms intervals from `tat`, none taken: a batch
    /// fetched ahead.
    fn ahead(tat: Instant, count: u32) -> Batch {
        Batch {
            tat,
            tat_sent: tat,
            floor: tat,
            count,
            next: 0,
            taken: 0,
            tail: 0,
            end: 2_000,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_fetched_ahead_takes_over_when_the_one_in_hand_is_gone() {
        let t0 = Instant::now();
        let far = t0 + Duration::from_secs(1);
        let mut s = batch(t0, 3);
        s.ahead = Some(ahead(t0 + 3 * MS, 2));
        // The batch in hand first (slots 1 and 2), then the one fetched
        // ahead, each slot at its own time (tolerance 0: at its TAT).
        assert_eq!(s.take(t0, far, MS, Duration::ZERO, MS), Take::Slot(t0 + MS));
        assert_eq!(
            s.take(t0, far, MS, Duration::ZERO, MS),
            Take::Slot(t0 + 2 * MS)
        );
        assert_eq!(
            s.take(t0, far, MS, Duration::ZERO, MS),
            Take::Slot(t0 + 3 * MS)
        );
        assert!(s.ahead.is_none(), "it became the batch in hand");
        assert_eq!(s.size, 6, "the one used up doubled the next size");
        assert_eq!(
            s.take(t0, far, MS, Duration::ZERO, MS),
            Take::Slot(t0 + 4 * MS)
        );
        assert_eq!(s.take(t0, far, MS, Duration::ZERO, MS), Take::Empty);
        // Expired slots are skipped in the batch fetched ahead as well.
        let mut s = batch(t0, 2);
        s.ahead = Some(ahead(t0, 3));
        // 2.5 ms on: the slot in hand (TAT 1 ms) and the ahead batch's
        // first two (TAT 0 and 1 ms) are past their 1 ms of lateness.
        let later = t0 + Duration::from_micros(2_500);
        assert_eq!(
            s.take_dry(later, MS, Duration::ZERO, MS),
            Take::Slot(later),
            "a dry look sees the ahead batch's third slot still in time"
        );
        assert_eq!(
            s.take(later, far, MS, Duration::ZERO, MS),
            Take::Slot(later)
        );
        assert_eq!(s.batch.as_ref().map(|b| (b.next, b.taken)), Some((3, 1)));
    }

    #[tokio::test(start_paused = true)]
    async fn the_next_batch_is_wanted_when_three_quarters_are_gone_or_time_runs_out() {
        let t0 = Instant::now();
        let late = 8 * MS;
        let mut s = batch(t0, 8);
        assert!(!s.wants_ahead(t0, MS, late), "7 of 8 slots left");
        s.batch.as_mut().unwrap().next = 6;
        assert!(s.wants_ahead(t0, MS, late), "2 of 8 left");
        s.ahead = Some(ahead(t0, 4));
        assert!(!s.wants_ahead(t0, MS, late), "one batch ahead at most");
        s.ahead = None;
        s.no_ahead_until = Some(t0 + MS);
        assert!(
            !s.wants_ahead(t0, MS, late),
            "not again right after a failure"
        );
        assert!(s.wants_ahead(t0 + MS, MS, late));
        // 100 slots: the last may be taken until 99 + 8 ms; wanted from
        // a quarter of `late` before that, however many are left.
        let s = batch(t0, 100);
        assert!(!s.wants_ahead(t0 + 104 * MS, MS, late));
        assert!(s.wants_ahead(t0 + 105 * MS, MS, late));
        assert!(
            !Slots::default().wants_ahead(t0, MS, late),
            "nothing in hand"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn slots_go_in_order_at_their_times_and_never_late() {
        let t0 = Instant::now();
        let mut s = batch(t0, 10);
        let far = t0 + Duration::from_secs(1);
        // Slot 1's TAT is t0 + 1 ms; with a tolerance of 2 ms it may go now.
        assert_eq!(s.take(t0, far, MS, 2 * MS, MS), Take::Slot(t0));
        assert_eq!(s.take(t0, far, MS, 2 * MS, MS), Take::Slot(t0));
        // Slot 3: TAT 3 ms, from 1 ms.
        assert_eq!(s.take(t0, far, MS, 2 * MS, MS), Take::Slot(t0 + MS));
        // A request that may not wait that long is refused, taking nothing.
        assert_eq!(s.take(t0, t0, MS, 2 * MS, MS), Take::TooFar(2 * MS));
        // 7 ms later slots 4..=5 are past their deadline (TAT + 1 ms): wasted.
        let later = t0 + 7 * MS;
        assert_eq!(s.take(later, far, MS, 2 * MS, MS), Take::Slot(later));
        let b = s.batch.as_ref().unwrap();
        assert_eq!((b.next, b.taken, b.tail), (7, 5, 7));
        // The rest is unused: the tail (3 slots) can be given back, and the
        // next batch asks for what this one served.
        assert_eq!(s.retire(100), (1_000, 3));
        assert_eq!(s.size, 5);
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_used_up_doubles_the_next_up_to_the_cap() {
        let t0 = Instant::now();
        let mut s = batch(t0, 4);
        let far = t0 + Duration::from_secs(1);
        for _ in 1..4 {
            assert!(matches!(s.take(t0, far, MS, 10 * MS, MS), Take::Slot(_)));
        }
        assert_eq!(s.take(t0, far, MS, 10 * MS, MS), Take::Empty);
        assert_eq!(s.retire(6), (1_000, 0));
        assert_eq!(s.size, 6, "doubled, capped");
        assert_eq!(s.retire(6), (0, 0), "nothing in hand: nothing to give");
    }

    #[tokio::test(start_paused = true)]
    async fn a_dry_look_takes_nothing() {
        let t0 = Instant::now();
        let s = batch(t0, 3);
        assert_eq!(s.take_dry(t0, MS, Duration::ZERO, MS), Take::Slot(t0 + MS));
        assert_eq!(
            s.take_dry(t0 + 10 * MS, MS, Duration::ZERO, MS),
            Take::Empty
        );
        assert_eq!(s.batch.as_ref().unwrap().next, 1);
    }
}

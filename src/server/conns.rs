//! `server.max_connections`: how many caller connections the process
//! serves at once, shared by every worker thread.
//!
//! At the cap, a new connection (already accepted) waits while the
//! longest-idle keep-alive connection is closed for it, as nginx reuses
//! connections; with none idle, the accept loop stops, so further callers
//! wait in the listen backlog until a connection closes. A connection with
//! a request in flight is never closed to make room: only one waiting for
//! its next request head (or for its first) is idle.
//!
//! Each connection holds a [`Slot`] whose state says whether it is busy or
//! since when (in a process-wide sequence, so "longest idle" needs no
//! clock) it has been idle; closing one for the cap is a compare-and-swap
//! from the idle value it was seen with, so a connection that just became
//! busy is never taken. A connection that has not sent a request yet goes
//! before every keep-alive one: a flood of silent connections makes room
//! among itself before it costs a caller its kept-alive connection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::Notify;

/// A slot's state: busy, idle since a sequence number, or closed for the cap.
const BUSY: u64 = 0;
const EVICTED: u64 = u64::MAX;
/// Set in the idle value of a connection that has carried a request, so
/// that connections which never did sort first.
const KEPT_ALIVE: u64 = 1 << 62;

/// How often a connection waiting at the cap looks again for an idle one
/// (a connection going idle does not wake it; a connection closing does).
const RECHECK: Duration = Duration::from_millis(100);

/// The process's caller connections.
pub struct Connections {
    max: usize,
    open: AtomicUsize,
    /// Every open connection's slot, for finding the longest idle.
    slots: Mutex<HashMap<u64, Arc<Slot>>>,
    next_id: AtomicU64,
    /// The idle order: each connection going idle takes the next number.
    sequence: AtomicU64,
    /// Woken when a connection closes, for an accept loop waiting at the cap.
    closed: Notify,
    gauge: Gauge,
    evicted: Counter,
}

/// One connection's idle/busy state and its "close for the cap" signal.
pub struct Slot {
    state: AtomicU64,
    /// The idle connection waiting for its next head, woken to close.
    /// (A waker, not a `Notify`: registering it costs no lock per wait.)
    evict: AtomicWaker,
    /// hyper's path: requests in flight (h2 has several); idle at zero.
    in_flight: AtomicUsize,
    /// hyper's path: bytes came since the last request started, so a
    /// header timeout cut a head short rather than an idle connection.
    pub head_started: AtomicBool,
    conns: Arc<Connections>,
}

/// A connection counted against the cap; dropping it frees the place.
pub struct Admitted {
    id: u64,
    pub slot: Arc<Slot>,
}

impl Connections {
    pub fn new(max: usize, gauge: Gauge, evicted: Counter) -> Arc<Self> {
        Arc::new(Connections {
            max: max.max(1),
            open: AtomicUsize::new(0),
            slots: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            sequence: AtomicU64::new(1),
            closed: Notify::new(),
            gauge,
            evicted,
        })
    }

    /// A place for a connection just accepted: at once below the cap;
    /// at it, once the longest-idle connection closed for it, or any
    /// connection closed. Until then the accept loop does not accept.
    pub async fn admit(self: &Arc<Self>) -> Admitted {
        loop {
            let closed = self.closed.notified();
            tokio::pin!(closed);
            closed.as_mut().enable();
            if let Some(a) = self.try_admit() {
                return a;
            }
            if self.evict_longest_idle() {
                self.evicted.inc();
            }
            let _ = tokio::time::timeout(RECHECK, closed).await;
        }
    }

    fn try_admit(self: &Arc<Self>) -> Option<Admitted> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()?;
        self.gauge.inc();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot {
            // A new connection waits for its first head: idle from now.
            state: AtomicU64::new(self.sequence.fetch_add(1, Ordering::Relaxed)),
            evict: AtomicWaker::new(),
            in_flight: AtomicUsize::new(0),
            head_started: AtomicBool::new(false),
            conns: self.clone(),
        });
        if let Ok(mut slots) = self.slots.lock() {
            slots.insert(id, slot.clone());
        }
        Some(Admitted { id, slot })
    }

    /// Signals the longest-idle connection to close; false when none is idle.
    fn evict_longest_idle(&self) -> bool {
        let Ok(slots) = self.slots.lock() else {
            return false;
        };
        // A slot may turn busy between the scan and the swap: look again.
        for _ in 0..3 {
            let oldest = slots
                .values()
                .map(|s| (s.state.load(Ordering::Acquire), s))
                .filter(|(st, _)| *st != BUSY && *st != EVICTED)
                .min_by_key(|(st, _)| *st);
            let Some((seen, slot)) = oldest else {
                return false;
            };
            if slot
                .state
                .compare_exchange(seen, EVICTED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                slot.evict.wake();
                return true;
            }
        }
        false
    }

    #[cfg(test)]
    fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let conns = &self.slot.conns;
        if let Ok(mut slots) = conns.slots.lock() {
            slots.remove(&self.id);
        }
        conns.open.fetch_sub(1, Ordering::AcqRel);
        conns.gauge.dec();
        conns.closed.notify_waiters();
    }
}

impl Slot {
    /// The connection waits for its next request head. False when it was
    /// closed for the cap: it must close now.
    pub fn idle(&self) -> bool {
        let next = self.conns.sequence.fetch_add(1, Ordering::Relaxed) | KEPT_ALIVE;
        self.state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                (s != EVICTED).then_some(next)
            })
            .is_ok()
    }

    /// A request started. True when the connection was meanwhile chosen
    /// to close for the cap: it answers this request, then closes.
    pub fn busy(&self) -> bool {
        self.state.swap(BUSY, Ordering::AcqRel) == EVICTED
    }

    /// Resolves once the connection is chosen to close for the cap.
    pub async fn evicted(&self) {
        std::future::poll_fn(|cx| {
            self.evict.register(cx.waker());
            if self.state.load(Ordering::Acquire) == EVICTED {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
        .await
    }

    /// hyper's path: a request is dispatched.
    pub fn request_started(&self) {
        self.head_started.store(false, Ordering::Relaxed);
        if self.in_flight.fetch_add(1, Ordering::AcqRel) == 0 {
            self.busy();
        }
    }

    /// hyper's path: a request's answer is written (or dropped).
    pub fn request_ended(&self) {
        if self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conns(max: usize) -> Arc<Connections> {
        Connections::new(max, Gauge::default(), Counter::default())
    }

    #[tokio::test]
    async fn the_cap_holds_and_a_close_frees_a_place() {
        let c = conns(2);
        let a = c.try_admit().unwrap();
        let _b = c.try_admit().unwrap();
        assert!(c.try_admit().is_none());
        assert_eq!(c.open(), 2);
        drop(a);
        assert_eq!(c.open(), 1);
        assert!(c.try_admit().is_some());
    }

    #[tokio::test]
    async fn the_longest_idle_is_closed_and_a_busy_one_never() {
        let c = conns(3);
        let old = c.try_admit().unwrap();
        let busy = c.try_admit().unwrap();
        let young = c.try_admit().unwrap();
        assert!(!busy.slot.busy());
        // Re-marking keeps the order: `young` went idle after `old`.
        assert!(young.slot.idle());
        assert!(c.evict_longest_idle());
        assert!(!old.slot.idle(), "the oldest idle one was chosen");
        assert!(young.slot.idle(), "the younger one was not");
        // The chosen one hears it.
        tokio::time::timeout(Duration::from_secs(1), old.slot.evicted())
            .await
            .unwrap();
        // Busy and already-chosen slots are not candidates: only `young`.
        assert!(c.evict_longest_idle());
        assert!(young.slot.busy(), "a request racing the close learns of it");
        assert!(!c.evict_longest_idle(), "nothing idle is left");
        drop(busy);
    }

    #[tokio::test]
    async fn a_connection_that_never_sent_a_request_goes_before_a_kept_alive_one() {
        let c = conns(2);
        let kept = c.try_admit().unwrap();
        kept.slot.busy();
        assert!(kept.slot.idle(), "one request served, idle again");
        let silent = c.try_admit().unwrap(); // younger, but never used
        assert!(c.evict_longest_idle());
        assert!(silent.slot.busy(), "the silent one was chosen");
        assert!(kept.slot.idle(), "the kept-alive one was not");
    }

    #[tokio::test]
    async fn admit_waits_at_the_cap_until_an_idle_connection_closes() {
        let c = conns(1);
        let first = c.try_admit().unwrap();
        let c2 = c.clone();
        let waiter = tokio::spawn(async move { c2.admit().await });
        // The idle first connection is told to close; it does.
        tokio::time::timeout(Duration::from_secs(2), first.slot.evicted())
            .await
            .unwrap();
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(2), waiter)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(c.open(), 1);
        drop(second);
    }
}

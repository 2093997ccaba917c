//! The session invariants, under tokio's paused clock: a stub kind counts
//! its logins, an in-memory store stands for the state store, and nothing
//! is sent anywhere. Time only moves when every task waits.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use http::{HeaderMap, HeaderName, Method};
use tokio::time::Instant;

use super::*;
use crate::state::MemoryStore;
use crate::vocab::{Buffered, Credential, Kind, LoginChannel, Outgoing, Plan, Transport};

/// A kind whose login takes `takes` and returns `s1`, `s2`, … in turn
/// (valid for `lifetime` when set), or fails while `failing` is set.
struct Counting {
    logins: AtomicUsize,
    takes: Duration,
    lifetime: Option<(Duration, Duration)>,
    failing: std::sync::atomic::AtomicBool,
    /// When each login started, as the paused clock says.
    started: std::sync::Mutex<Vec<Instant>>,
}

impl Counting {
    fn new(takes: Duration) -> Arc<Self> {
        Arc::new(Counting {
            logins: AtomicUsize::new(0),
            takes,
            lifetime: None,
            failing: false.into(),
            started: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// Tokens that expire in `expires_in`, renewed `refresh_before` ahead.
    fn tokens(takes: Duration, expires_in: Duration, refresh_before: Duration) -> Arc<Self> {
        Arc::new(Counting {
            logins: AtomicUsize::new(0),
            takes,
            lifetime: Some((expires_in, refresh_before)),
            failing: false.into(),
            started: std::sync::Mutex::new(Vec::new()),
        })
    }

    fn count(&self) -> usize {
        self.logins.load(Ordering::SeqCst)
    }
}

impl Kind for Counting {
    fn credential_id(&self) -> String {
        "stub".into()
    }

    fn owned_headers(&self) -> &[HeaderName] {
        &[]
    }

    fn plan(&self, _: &Method, _: &str, _: &HeaderMap) -> Result<Plan, ProxyError> {
        Ok(Plan::forward(true, true))
    }

    fn login<'a>(
        &'a self,
        _: &'a dyn LoginChannel,
    ) -> BoxFuture<'a, Result<Credential, ProxyError>> {
        Box::pin(async move {
            self.started.lock().unwrap().push(Instant::now());
            tokio::time::sleep(self.takes).await;
            if self.failing.load(Ordering::SeqCst) {
                return Err(ProxyError::LoginFailed("the token endpoint is down".into()));
            }
            let n = self.logins.fetch_add(1, Ordering::SeqCst) + 1;
            let value = Secret::new(format!("s{n}"));
            Ok(match self.lifetime {
                Some((expires_in, before)) => Credential::expiring(value, expires_in, before),
                None => Credential::held(value),
            })
        })
    }

    fn sign(&self, _: &mut Outgoing, _: Option<&Secret>) -> Result<(), ProxyError> {
        Ok(())
    }
}

/// The stub kind sends nothing.
struct Nowhere;

impl Transport for Nowhere {
    fn send(&self, _: Outgoing, _: Instant) -> BoxFuture<'_, Result<Buffered, ProxyError>> {
        Box::pin(async { Err(ProxyError::Internal("the stub sends nothing".into())) })
    }
}

const INTERVAL: Duration = Duration::from_secs(5);
const IDLE: Duration = Duration::from_secs(60);

fn slot() -> Arc<SessionSlot> {
    Arc::new(SessionSlot::new(
        "stub".into(),
        INTERVAL,
        IDLE,
        Arc::new(MemoryStore::default()),
        None,
    ))
}

async fn ensure(slot: &SessionSlot, kind: &Counting) -> Result<Session, LoginError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut attempt = LoginAttempt::None;
    slot.ensure(deadline, kind, &Nowhere, &mut attempt).await
}

#[tokio::test(start_paused = true)]
async fn fifty_concurrent_callers_cause_one_login() {
    let slot = slot();
    let kind = Counting::new(Duration::from_millis(300));
    let calls = (0..50).map(|_| {
        let (slot, kind) = (slot.clone(), kind.clone());
        tokio::spawn(async move {
            ensure(&slot, &kind)
                .await
                .map(|s| s.value.expose().to_string())
        })
    });
    let got = futures_util::future::join_all(calls).await;
    assert_eq!(kind.count(), 1);
    for g in got {
        assert_eq!(g.unwrap().unwrap(), "s1");
    }
}

#[tokio::test(start_paused = true)]
async fn the_second_login_comes_exactly_login_interval_after_the_first_ended() {
    let slot = slot();
    let kind = Counting::new(Duration::from_millis(200));
    let first = ensure(&slot, &kind).await.unwrap();
    let first_done = Instant::now();
    slot.invalidate(first.generation).await;
    let second = ensure(&slot, &kind).await.unwrap();
    assert_eq!(second.value.expose(), "s2");
    let started = kind.started.lock().unwrap().clone();
    assert_eq!(started.len(), 2);
    // Spaced from the first login's completion, to the millisecond.
    assert_eq!(started[1] - first_done, INTERVAL);
}

#[tokio::test(start_paused = true)]
async fn a_session_is_renewed_at_nine_tenths_of_session_idle() {
    let slot = slot();
    let kind = Counting::new(Duration::ZERO);
    let s = ensure(&slot, &kind).await.unwrap();
    slot.touch(s.generation);
    let renew_at = IDLE - IDLE / 10;
    tokio::time::advance(renew_at - Duration::from_millis(1)).await;
    assert_eq!(ensure(&slot, &kind).await.unwrap().value.expose(), "s1");
    // Unused until 0.9 x session_idle (from the last touch): a new login.
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(ensure(&slot, &kind).await.unwrap().value.expose(), "s2");
    assert_eq!(kind.count(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_rejected_generation_causes_one_relogin_for_all_who_saw_it() {
    let slot = slot();
    let kind = Counting::new(Duration::from_millis(100));
    let s1 = ensure(&slot, &kind).await.unwrap();
    // Twenty requests carried generation 1 and were all rejected.
    let retries = (0..20).map(|_| {
        let (slot, kind) = (slot.clone(), kind.clone());
        let generation = s1.generation;
        tokio::spawn(async move {
            slot.invalidate(generation).await;
            ensure(&slot, &kind)
                .await
                .map(|s| s.value.expose().to_string())
        })
    });
    for r in futures_util::future::join_all(retries).await {
        assert_eq!(r.unwrap().unwrap(), "s2");
    }
    assert_eq!(kind.count(), 2, "one relogin");
    // A stale rejection of generation 1 does not drop generation 2.
    slot.invalidate(s1.generation).await;
    assert_eq!(ensure(&slot, &kind).await.unwrap().value.expose(), "s2");
}

#[tokio::test(start_paused = true)]
async fn a_login_that_cannot_be_spaced_within_the_deadline_is_throttled_not_sent() {
    let slot = slot();
    let kind = Counting::new(Duration::ZERO);
    let s = ensure(&slot, &kind).await.unwrap();
    slot.invalidate(s.generation).await;
    let deadline = Instant::now() + INTERVAL / 2;
    let mut attempt = LoginAttempt::None;
    let e = slot
        .ensure(deadline, kind.as_ref(), &Nowhere, &mut attempt)
        .await;
    assert!(matches!(e, Err(LoginError::Throttled(_))), "{e:?}");
    assert_eq!(kind.count(), 1);
}

fn token_slot() -> Arc<SessionSlot> {
    // Tokens never go idle; login spacing of 1 s, as for oauth2.
    Arc::new(SessionSlot::new(
        "stub".into(),
        Duration::from_secs(1),
        Duration::from_secs(365 * 86_400),
        Arc::new(MemoryStore::default()),
        None,
    ))
}

#[tokio::test(start_paused = true)]
async fn a_token_is_renewed_ahead_of_expiry_by_one_request_while_the_others_use_it() {
    let slot = token_slot();
    let expires_in = Duration::from_secs(100);
    let kind = Counting::tokens(
        Duration::from_millis(300),
        expires_in,
        Duration::from_secs(60),
    );
    assert_eq!(ensure(&slot, &kind).await.unwrap().value.expose(), "s1");
    assert_eq!(slot.expires_in(), Some(expires_in));
    tokio::time::advance(Duration::from_secs(39)).await;
    assert_eq!(ensure(&slot, &kind).await.unwrap().value.expose(), "s1");
    // 40 s in, 60 s before expiry: the first request renews (its login takes
    // 300 ms); ten more arriving meanwhile use s1 at once, without waiting.
    tokio::time::advance(Duration::from_secs(1)).await;
    let renewing = {
        let (slot, kind) = (slot.clone(), kind.clone());
        tokio::spawn(async move {
            ensure(&slot, &kind)
                .await
                .unwrap()
                .value
                .expose()
                .to_string()
        })
    };
    tokio::task::yield_now().await;
    let before = Instant::now();
    for _ in 0..10 {
        assert_eq!(ensure(&slot, &kind).await.unwrap().value.expose(), "s1");
    }
    assert_eq!(Instant::now(), before, "nobody waited for the renewal");
    assert_eq!(renewing.await.unwrap(), "s2");
    assert_eq!(kind.count(), 2);
    assert_eq!(ensure(&slot, &kind).await.unwrap().value.expose(), "s2");
}

#[tokio::test(start_paused = true)]
async fn a_failed_renewal_keeps_the_valid_token_until_it_expires() {
    let slot = token_slot();
    let kind = Counting::tokens(
        Duration::ZERO,
        Duration::from_secs(100),
        Duration::from_secs(60),
    );
    assert_eq!(ensure(&slot, &kind).await.unwrap().value.expose(), "s1");
    kind.failing.store(true, Ordering::SeqCst);
    tokio::time::advance(Duration::from_secs(50)).await;
    // Due, the endpoint is down: the held token still serves.
    assert_eq!(ensure(&slot, &kind).await.unwrap().value.expose(), "s1");
    tokio::time::advance(Duration::from_secs(49)).await;
    assert_eq!(ensure(&slot, &kind).await.unwrap().value.expose(), "s1");
    // Expired, still down: now the caller hears it.
    tokio::time::advance(Duration::from_secs(1)).await;
    let e = ensure(&slot, &kind).await.unwrap_err();
    assert!(
        matches!(e, LoginError::Failed(ProxyError::LoginFailed(_))),
        "{e:?}"
    );
    kind.failing.store(false, Ordering::SeqCst);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(ensure(&slot, &kind).await.unwrap().value.expose(), "s2");
}

#[tokio::test(start_paused = true)]
async fn a_short_lived_token_is_renewed_at_half_its_life() {
    let slot = token_slot();
    let kind = Counting::tokens(
        Duration::ZERO,
        Duration::from_secs(30),
        Duration::from_secs(60),
    );
    assert_eq!(ensure(&slot, &kind).await.unwrap().value.expose(), "s1");
    tokio::time::advance(Duration::from_millis(14_999)).await;
    assert_eq!(ensure(&slot, &kind).await.unwrap().value.expose(), "s1");
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(ensure(&slot, &kind).await.unwrap().value.expose(), "s2");
}

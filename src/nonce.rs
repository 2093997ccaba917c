//! A counter that never repeats and never goes back, for nonces an API
//! refuses when they do (a recipe's `monotonic_ms()`): milliseconds since
//! the epoch, bumped past the last value issued, across concurrent
//! requests, restarts and (with Redis) replicas.
//!
//! Local store: values are handed out from memory under a high-water mark
//! kept in the state store a window ahead ([`WINDOW_MS`]): a value above
//! the stored mark is issued only once a new mark is durably written, so a
//! restart (even after a crash) starts above every value issued before, at
//! the cost of one write per window. Redis: one atomic script per value,
//! so every replica's values are ordered.

use std::sync::Arc;

use crate::config::OnStateFailure;
use crate::state::{RedisState, StateError, StateStore};
use crate::vocab::now_ms;

/// How far ahead of the last value the stored mark is written.
pub const WINDOW_MS: u64 = 10_000;

pub struct Monotonic {
    /// `monotonic.<credential id>` in the store.
    key: String,
    /// Where the high-water mark is kept; `None`: memory only (`explain`).
    store: Option<Arc<dyn StateStore>>,
    /// With Redis, the counter itself lives there.
    shared: Option<Arc<RedisState>>,
    state: tokio::sync::Mutex<Local>,
}

#[derive(Default)]
struct Local {
    last: u64,
    /// The stored mark: no value above it is issued before a new one is written.
    reserved: u64,
    loaded: bool,
}

impl Monotonic {
    pub fn new(
        id: &str,
        store: Option<Arc<dyn StateStore>>,
        shared: Option<Arc<RedisState>>,
    ) -> Self {
        Monotonic {
            key: format!("monotonic.{id}"),
            store,
            shared,
            state: tokio::sync::Mutex::new(Local::default()),
        }
    }

    /// The next value: above every one issued before, at least now in ms.
    pub async fn next(&self) -> Result<u64, StateError> {
        let now = now_ms();
        if let Some(sh) = &self.shared {
            let key = sh.key("monotonic", &self.key);
            match sh.monotonic_next(&key, now).await {
                Ok(v) => return Ok(v),
                // Redis down under `local`: this replica goes on alone.
                Err(e) if sh.policy == OnStateFailure::Local => {
                    tracing::warn!(error = %e, "monotonic counter: Redis unreachable; values are ordered on this replica only");
                }
                Err(e) => return Err(e),
            }
        }
        let mut st = self.state.lock().await;
        if !st.loaded {
            if let Some(store) = self.store.as_ref().filter(|_| self.shared.is_none()) {
                let stored = store.get(&self.key).await?;
                if let Some(mark) = stored.and_then(|v| v.trim().parse::<u64>().ok()) {
                    st.last = mark;
                    st.reserved = mark;
                }
            }
            st.loaded = true;
        }
        let v = now.max(st.last + 1);
        if v > st.reserved {
            match self.store.as_ref().filter(|_| self.shared.is_none()) {
                Some(store) => {
                    let mark = v + WINDOW_MS;
                    store.put(&self.key, mark.to_string()).await?;
                    st.reserved = mark;
                }
                None => st.reserved = u64::MAX,
            }
        }
        st.last = v;
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::MemoryStore;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn values_never_repeat_or_go_back_across_tasks_and_restarts() {
        let store: Arc<dyn StateStore> = Arc::new(MemoryStore::default());
        let m = Arc::new(Monotonic::new("r", Some(store.clone()), None));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let m = m.clone();
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    for _ in 0..500 {
                        seen.push(m.next().await.unwrap());
                    }
                    seen
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            let seen = t.await.unwrap();
            assert!(
                seen.windows(2).all(|w| w[0] < w[1]),
                "one task's values go up"
            );
            all.extend(seen);
        }
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n, "no value issued twice");
        let highest = *all.last().unwrap();
        // A restart (a new counter on the same store) starts above them all,
        // even if the clock went back.
        let again = Monotonic::new("r", Some(store.clone()), None);
        let first = again.next().await.unwrap();
        assert!(first > highest, "{first} <= {highest}");
        let stored: u64 = store
            .get("monotonic.r")
            .await
            .unwrap()
            .unwrap()
            .parse()
            .unwrap();
        assert!(stored >= first);
    }
}

//! Where state that must outlive the process lives: the time of each
//! credential's last login, quota counters, rotated keys; and, with Redis,
//! what replicas sharing a credential must agree on ([`RedisState`]).
//!
//! The pipeline talks to a [`StateStore`] only through `session`, `limits` and
//! the kinds' key handling, never directly from a kind, so a shared store for
//! several replicas (Redis, [`RedisState`]) sits beside [`FileStore`] without
//! touching the kinds. Keys are short ASCII names built from credential identities
//! (never secrets), e.g. `login.xrtc-5f0c…` (`vocab::credential_at`: the
//! kind's credential at the route's upstream, hashed); [`migrate`] moves the
//! state of the identities 0.1 used.

mod file;
mod memory;
pub mod migrate;
mod shared;

pub use file::FileStore;
pub use memory::MemoryStore;
pub use shared::{QuotaRequest, RateBatch, RateRequest, RedisState, SharedSession, SharedTimes};

use futures_util::future::BoxFuture;

/// A state store failed: what it was doing, and why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{what}")]
pub struct StateError {
    what: String,
    #[source]
    source: Option<crate::error::Source>,
}

impl StateError {
    pub fn new(what: impl Into<String>) -> Self {
        StateError {
            what: what.into(),
            source: None,
        }
    }

    /// `what` failed because of `source` (kept, and named in the message).
    pub fn caused(
        what: impl std::fmt::Display,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        StateError {
            what: format!("{what}: {source}"),
            source: Some(std::sync::Arc::new(source)),
        }
    }
}

impl From<StateError> for crate::error::ProxyError {
    fn from(e: StateError) -> Self {
        crate::error::ProxyError::State(std::sync::Arc::new(e))
    }
}

/// A durable key-value store. `put` returns only once the value would survive a
/// crash of the process or the machine.
pub trait StateStore: Send + Sync + 'static {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<String>, StateError>>;
    fn put<'a>(&'a self, key: &'a str, value: String) -> BoxFuture<'a, Result<(), StateError>>;
}

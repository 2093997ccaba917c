//! The shared vocabulary, below all the machinery: what a kind is
//! ([`Kind`]), what a request needs ([`Plan`]), the request as it will be
//! sent ([`Outgoing`]), a whole answer ([`Buffered`]), countersign's own
//! answers ([`local_json`]), and identities and time ([`fingerprint`],
//! [`identity`], [`now_ms`], [`Clock`]).
//!
//! Kinds are above the machinery; the machinery (sessions, limits,
//! upstreams, keys) is below them and knows a kind only through these
//! types, so an arrow never points up. A kind reaches the login machinery
//! through [`LoginChannel`], and the session machinery sends through a
//! [`Transport`] the pipeline hands it.

mod ids;
mod kind;
mod plan;
mod wire;

pub use crate::config::KindDefaults;
pub use ids::{
    credential_at, fingerprint, identity, now_ms, origin_of, quota_at, safe_id, Clock, ManualClock,
    SystemClock,
};
pub use kind::{Kind, LoginChannel, Transport};
pub use plan::{Forward, Need, Plan, Then};
pub use wire::{local_json, BodyOverLimit, BodyTimedOut, Buffered, Credential, Outgoing};

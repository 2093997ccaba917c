//! countersign: a signing sidecar. Internal services send it plain HTTP; it
//! forwards each call to a third-party API with what that API demands added
//! (credentials, login sessions, signatures), within the API's rate limits and
//! quotas. Secrets live only here.
//!
//! # Layout
//! Layers that only point down (`tests/layers.rs` keeps them so;
//! `docs/architecture.md` walks them):
//!
//! | layer | modules | |
//! |---|---|---|
//! | commands | `main.rs` | arguments, logging, exit codes; calls the library |
//! | edges | [`server`], [`admin`], [`demo`], [`explain`] | listeners, the HTTP/1 fast path, drain, reload ([`server::run`]); `/healthz` `/readyz` `/metrics`; the demo; `explain` |
//! | pipeline | [`proxy`], [`gateway`] | a request's phases (admit, plan, read_body, attempt, classify, finish); the hot-swapped snapshot of routes |
//! | kinds | [`kinds`], [`recipe`] | one file per API, one row each in [`kinds::REGISTRY`]; the CEL recipe engine the `recipe` kind runs |
//! | machinery | [`upstream`], [`session`], [`limits`], [`keys`], [`nonce`], [`state`] | the way out (h1 client, pools, TLS); held logins; rate limits and quotas; rotated keys; monotonic nonces; the file and Redis stores |
//! | vocabulary | [`vocab`] | the [`vocab::Kind`] trait, the plan, the outgoing request, local answers, identities, the clock |
//! | foundations | [`secret`], [`error`], [`config`], [`headers`], [`canonical`], [`metrics`] | one `Secret` type; the one place errors become responses; config with key paths; header and path hygiene; pure body transformations; metric families |
//! | beside | [`fake`] | strict fakes of the upstream APIs, sharing no code with `kinds` |

pub mod admin;
pub mod canonical;
pub mod config;
pub mod demo;
pub mod error;
pub mod explain;
pub mod fake;
pub mod gateway;
pub mod headers;
pub mod keys;
pub mod kinds;
pub mod limits;
pub mod metrics;
pub mod nonce;
pub mod proxy;
pub mod recipe;
pub mod secret;
pub mod server;
pub mod session;
pub mod state;
pub mod upstream;
pub mod vocab;

/// Sent as `User-Agent` on requests countersign makes itself (logins).
pub const USER_AGENT: &str = concat!("countersign/", env!("CARGO_PKG_VERSION"));

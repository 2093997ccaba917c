//! countersign: a signing sidecar. Internal services send it plain HTTP; it
//! forwards each call to a third-party API with what that API demands added
//! (credentials, login sessions, signatures), within the API's rate limits and
//! quotas. Secrets live only here.
//!
//! # Layout
//! - `config`: figment (TOML + `COUNTERSIGN_` env) into a validated [`config::Config`];
//!   every problem reported with its key path.
//! - `secret`: the one [`secret::Secret`] type (redacted, zeroized) and `{env|file}` references.
//! - `server`: listener, accept loop, graceful drain; `server::h1` serves
//!   plain HTTP/1.1 requests itself and hands the rest to hyper.
//! - `gateway`: the hot-swappable snapshot of routes, and per-credential state kept across it.
//! - `proxy`: the request pipeline, top to bottom.
//! - `headers`: header and path hygiene.
//! - `upstream`: the way out: `upstream::h1` (HTTP/1.1 on per-thread idle
//!   connections) or hyper-util's pooled client (streamed bodies, HTTP/2);
//!   rustls, timeouts, error classes.
//! - `session`: single-flight, spaced logins; the held session per credential
//!   (with Redis: a login lease and spacing across replicas, the TTS session shared).
//! - `limits`: rate limits (GCRA with reservations) and durable monthly quotas;
//!   `limits::shared` takes both (and upstream holds) for every replica through Redis.
//! - `keys`: keys an upstream rotates at runtime, stored durably before use.
//! - `state`: the [`state::StateStore`] trait, the embedded file store and the
//!   Redis store with its Lua scripts ([`state::RedisState`]).
//! - `kinds`: one file per upstream API (`xrtc`, …): the hooks of [`kinds::Kind`].
//! - `admin`: `/healthz`, `/readyz`, `/metrics` on the admin listener.
//! - `metrics`: the Prometheus metrics, owned by the gateway.
//! - `canonical`: pure body transformations (TeamDrive XML edits), property-tested.
//! - `error`: the one place where errors become responses.
//! - `fake`: strict fakes of the upstream APIs, sharing no code with `kinds`.
//! - `explain`: the request countersign would send, secrets redacted, nothing sent.
//! - `demo`: the fakes plus a gateway in front of them, for `countersign demo`.

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
pub mod proxy;
pub mod recipe;
pub mod secret;
pub mod server;
pub mod session;
pub mod state;
pub mod upstream;

/// Sent as `User-Agent` on requests countersign makes itself (logins).
pub const USER_AGENT: &str = concat!("countersign/", env!("CARGO_PKG_VERSION"));

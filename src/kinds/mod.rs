//! The upstream kinds: one file per API, one row each in [`REGISTRY`].
//!
//! A kind is data (its parsed settings, [`KindSettings`]) plus the hooks of
//! [`crate::vocab::Kind`] that the pipeline calls; everything shared
//! (sessions, limits, forwarding, errors) lives in the layers below, which
//! know a kind only through `vocab`.
//!
//! # Adding a kind
//! 1. One file here, `src/kinds/NAME.rs`, holding:
//!    - `Settings` with `fn parse(s: &mut Section) -> Option<Settings>` that
//!      reads the kind's own keys (every problem reported on `s` with its
//!      key; keys nobody reads are reported as unknown),
//!    - `impl KindSettings for Settings` whose `build` makes the kind
//!      (derive keys, open its own endpoints),
//!    - the kind itself, `impl Kind`,
//!    - `pub const ROW: KindRow` with its name, defaults and parser.
//! 2. One line in [`REGISTRY`].
//! 3. Its strict fake in `src/fake/NAME.rs`, sharing no code with the kind,
//!    and its line in `demo.rs`'s fake table (a test checks every row has one).
//! 4. Its tests: known answers for the signature in the kind's file,
//!    end to end through the gateway against the fake in `tests/NAME.rs`.

pub mod aws;
pub mod oauth1;
pub mod oauth2;
pub mod recipe;
pub mod teamdrive;
pub mod tts;
pub mod tts_body;
pub mod utilsio;
pub mod xrtc;

use std::path::Path;
use std::sync::Arc;

use crate::config::{self, KindCatalog, KindDefaults, Problem, Section};
use crate::keys::Keyring;
use crate::vocab::Kind;

/// One kind: its name as written in `kind = "..."`, what it implies when the
/// route does not say otherwise, and how it reads its own keys.
pub struct KindRow {
    pub name: &'static str,
    pub defaults: KindDefaults,
    pub parse: fn(&mut Section<'_>) -> Option<KindRef>,
}

/// Every kind countersign knows.
pub const REGISTRY: &[KindRow] = &[
    xrtc::ROW,
    tts::ROW,
    utilsio::ROW,
    teamdrive::ROW,
    oauth2::ROW,
    oauth1::ROW,
    aws::ROW,
    recipe::ROW,
];

/// A kind's parsed settings, which make the kind for a route.
pub trait KindSettings: std::fmt::Debug + Send + Sync {
    /// The kind's hooks for a route. Fails only where startup work can (a
    /// key derivation). Rotatable keys come from `env.keyring`, so they
    /// outlive reloads.
    fn build(&self, env: &BuildEnv<'_>) -> Result<Arc<dyn Kind>, String>;
}

/// Shared, parsed kind settings, as a route holds them.
pub type KindRef = Arc<dyn KindSettings>;
/// The configuration with every route's kind settings read.
pub type Config = config::Config<KindRef>;
pub type RouteConfig = config::RouteConfig<KindRef>;

/// What building a kind may use.
pub struct BuildEnv<'a> {
    /// Keys an upstream rotates, kept across reloads.
    pub keyring: &'a Keyring,
    /// The route the kind serves (its upstream, timeouts, trust roots).
    pub route: &'a RouteConfig,
}

impl BuildEnv<'_> {
    /// The identity of `credential` (a kind's [`Kind::credential_id`]) at
    /// this route's upstream: what the gateway keys the credential's
    /// session, limits and rotated keys by.
    pub fn identity(&self, credential: &str) -> String {
        crate::vocab::credential_at(credential, &self.route.upstream, &self.route.base_path)
    }
}

/// The registry as the config reads it.
pub struct Catalog;

impl Catalog {
    fn row(kind: &str) -> Option<&'static KindRow> {
        REGISTRY.iter().find(|r| r.name == kind)
    }
}

impl KindCatalog for Catalog {
    type Settings = KindRef;

    fn names(&self) -> Vec<&'static str> {
        REGISTRY.iter().map(|r| r.name).collect()
    }

    fn defaults(&self, kind: &str) -> Option<KindDefaults> {
        Catalog::row(kind).map(|r| r.defaults)
    }

    fn parse(&self, kind: &str, s: &mut Section<'_>) -> Option<KindRef> {
        Catalog::row(kind).and_then(|r| (r.parse)(s))
    }
}

/// Loads and validates `path` (and the `COUNTERSIGN_*` environment over
/// it), every route's kind keys included; every problem at once.
pub fn load(path: &Path) -> Result<Config, Vec<Problem>> {
    config::load(path, &Catalog).and_then(one_upstream_per_credential)
}

/// As [`load`], from TOML text (tests, `demo`).
pub fn from_toml(text: &str) -> Result<Config, Vec<Problem>> {
    config::from_toml(text, &Catalog).and_then(one_upstream_per_credential)
}

/// Refuses two routes whose kinds name one credential that logs in (one
/// session, one login spacing, one set of rotated keys) at two upstreams:
/// 0.1 shared the session between them, sending it to a host that never
/// issued it; kept apart, the two logins would end each other's sessions
/// where the API allows one per member. Any kind, through
/// [`Kind::credential_id`] and the route's upstream.
fn one_upstream_per_credential(config: Config) -> Result<Config, Vec<Problem>> {
    let keyring = Keyring::detached();
    // credential -> (first route, its identity at its upstream)
    let mut seen: std::collections::HashMap<String, (&str, String)> = Default::default();
    let mut problems = Vec::new();
    for (name, rc) in config
        .routes
        .iter()
        .filter(|(_, rc)| rc.defaults.has_session)
    {
        let env = BuildEnv {
            keyring: &keyring,
            route: rc,
        };
        // A kind that cannot be built is reported where the gateway builds it.
        let Ok(kind) = rc.kind.build(&env) else {
            continue;
        };
        let credential = kind.credential_id();
        let at = env.identity(&credential);
        match seen.get(&credential) {
            Some((first, first_at)) if *first_at != at => problems.push(Problem::new(
                format!("routes.{name}.upstream"),
                format!(
                    "differs from route {first}'s, which holds the same {} credential: they would share one login session, login spacing and rotated keys across two upstreams; use one route, or give each upstream its own credential",
                    rc.kind_name
                ),
            )),
            Some(_) => {}
            None => {
                seen.insert(credential, (name, at));
            }
        }
    }
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
#[path = "load_tests.rs"]
mod load_tests;

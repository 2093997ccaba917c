//! The recipe engine: an API's request signing described in the config, in
//! CEL, with no code (DESIGN §4 "recipe"; the language is in
//! `docs/recipes.md`).
//!
//! A [`RecipeSpec`] (named secrets, plain vars, ordered steps of
//! `TARGET.NAME = "CEL expression"`) is compiled once per config load into
//! a [`Recipe`]: every expression parsed, every name it reads checked,
//! every `scrypt` whose arguments don't depend on the request computed.
//! [`Recipe::apply`] then signs one request: it strips from the caller's
//! request whatever the recipe sets, and runs the steps in order, each
//! seeing the request as the earlier ones left it.
//!
//! ```
//! use countersign::recipe::{MemoryEnv, Recipe, RecipeRequest, RecipeSpec};
//! use countersign::secret::Secret;
//!
//! let spec = RecipeSpec {
//!     secrets: vec![("secret".into(), Secret::new("k"))],
//!     vars: vec![],
//!     steps: vec![
//!         vec![("query.timestamp".into(), "now_ms()".into())],
//!         vec![("query.signature".into(),
//!               "hex(hmac_sha256(secrets.secret, request.query))".into())],
//!     ],
//! };
//! let recipe = Recipe::compile("ex", &spec).unwrap();
//! let mut req = RecipeRequest::new(http::Method::GET, "/api/v3/order", "symbol=LTCBTC");
//! let env = MemoryEnv::fixed(std::time::UNIX_EPOCH + std::time::Duration::from_millis(1499827319559));
//! recipe.apply(&mut req, &env).unwrap();
//! assert!(req.query.starts_with("symbol=LTCBTC&timestamp=1499827319559&signature="));
//! ```
//!
//! The engine is pure: no I/O, no clock of its own. The request's instant
//! and the route's monotonic value come from an [`Env`], read once per
//! request before step 0.

mod compile;
mod encode;
mod eval;
mod functions;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, Method};

use crate::secret::Secret;

/// A recipe as written in the config, before it is compiled.
#[derive(Clone, Debug, Default)]
pub struct RecipeSpec {
    /// `secrets.NAME`: resolved secret values.
    pub secrets: Vec<(String, Secret)>,
    /// `vars.NAME`: plain strings.
    pub vars: Vec<(String, String)>,
    /// `sign[i]`: each step's `(target, CEL source)` pairs, the target as
    /// `KIND.NAME` with the name unquoted (`header.X-EX-APIKEY`,
    /// `query.signature`, `var.ts`).
    pub steps: Vec<Vec<(String, String)>>,
}

/// A problem found while compiling a recipe: `path` is the key path inside
/// the route (`sign[2].query.signature`), ready for a `routes.NAME.` prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for CompileError {}

/// Why a request could not be signed. Messages never hold a secret.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// An expression failed on this request (`fail(…)`, `request.json.x`
    /// on a body that is not JSON, a value of the wrong type), or the body
    /// is not what a `form.`/`json.` target needs: the caller's request
    /// cannot be signed (400 `bad_request_body`). Nothing is to be sent.
    #[error("sign[{step}].{target}: {message}")]
    Step {
        step: usize,
        target: String,
        message: String,
    },
    /// The [`Env`] could not give the route's monotonic value, or the clock
    /// is before 1970 (503 `state_unavailable`).
    #[error("{0}")]
    State(String),
}

/// The request a recipe signs, as it will be sent.
#[derive(Clone, Debug)]
pub struct RecipeRequest {
    pub method: Method,
    /// As sent: percent-encoded, the upstream's base path included.
    pub path: String,
    /// As sent: raw, without the `?`; empty for none.
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl RecipeRequest {
    /// A request without headers or body.
    pub fn new(method: Method, path: impl Into<String>, query: impl Into<String>) -> Self {
        RecipeRequest {
            method,
            path: path.into(),
            query: query.into(),
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }

    /// The request target: the path, plus `?` and the query when there is one.
    pub fn target(&self) -> String {
        if self.query.is_empty() {
            self.path.clone()
        } else {
            format!("{}?{}", self.path, self.query)
        }
    }
}

/// What a recipe reads from outside the request: the clock and the route's
/// monotonic counter. [`Recipe::apply`] calls [`Env::now`] once per request
/// and [`Env::monotonic_ms`] at most once (only when
/// [`Recipe::uses_monotonic_ms`]), both before step 0, so every `now_*()`
/// of one request reads the same instant and every `monotonic_ms()` the
/// same value. Evaluation itself never blocks: a value that needs I/O (the
/// state store) can be fetched before `apply` and handed in through an
/// `Env` that merely returns it.
pub trait Env {
    /// The request's instant, read after any rate-limit wait.
    fn now(&self) -> SystemTime;

    /// The route's next monotonic value, in milliseconds. It must never
    /// repeat and never go back for the route: across concurrent requests,
    /// across replicas sharing the route's credentials, and across restarts.
    /// The expected rule is `max(now_ms, high_water + 1)`, with the new
    /// high-water mark stored durably (the state store; Redis for replicas)
    /// before the value is returned. `Err` is a message without secrets.
    fn monotonic_ms(&self) -> Result<u64, String>;
}

/// An [`Env`] in memory: the system clock or a fixed instant, and a
/// high-water mark that holds for this process only (tests, benches, a
/// single-process gateway before its state store is wired).
#[derive(Debug)]
pub struct MemoryEnv {
    fixed: Option<SystemTime>,
    high_water: AtomicU64,
}

impl MemoryEnv {
    pub fn system() -> Self {
        MemoryEnv {
            fixed: None,
            high_water: AtomicU64::new(0),
        }
    }

    /// Always `at`: the monotonic values still never repeat (they climb
    /// past `at` one millisecond per call).
    pub fn fixed(at: SystemTime) -> Self {
        MemoryEnv {
            fixed: Some(at),
            high_water: AtomicU64::new(0),
        }
    }
}

impl Env for MemoryEnv {
    fn now(&self) -> SystemTime {
        self.fixed.unwrap_or_else(SystemTime::now)
    }

    fn monotonic_ms(&self) -> Result<u64, String> {
        let now_ms = self
            .now()
            .duration_since(UNIX_EPOCH)
            .map_err(|_| "the clock is before 1970".to_string())?
            .as_millis() as u64;
        let mut last = self.high_water.load(Ordering::Relaxed);
        loop {
            let next = now_ms.max(last + 1);
            match self.high_water.compare_exchange_weak(
                last,
                next,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(next),
                Err(seen) => last = seen,
            }
        }
    }
}

/// What one target of one step came to, for `explain`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shown {
    /// The value as sent (`header.`, `query.`, `form.`: the text before
    /// percent-encoding; `json.`: the member's JSON text), or for a `var.`
    /// the value written as a CEL literal (`"text"`, `42`,
    /// `hex_decode("0aff")`).
    Value(String),
    /// A secret, or computed from one without a digest in between.
    Redacted,
    /// The expression evaluated to `null`: the target was removed or left out.
    Removed,
}

impl fmt::Display for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shown::Value(v) => f.write_str(v),
            Shown::Redacted => f.write_str("[redacted]"),
            Shown::Removed => f.write_str("(removed)"),
        }
    }
}

/// Each step's results, in the order they were applied (by target).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub steps: Vec<Vec<(String, Shown)>>,
}

/// A compiled recipe. `Send + Sync`: share one per route (in an `Arc`) and
/// call [`Recipe::apply`] from any number of threads at once.
pub struct Recipe {
    route: String,
    secrets: Vec<(String, Secret)>,
    vars: Vec<(String, String)>,
    /// The functions and `route`; each request evaluates in a child scope.
    root: cel::Context<'static, 'static>,
    steps: Vec<compile::Step>,
    owned_headers: Vec<HeaderName>,
    /// Sorted, unique.
    owned_query: Vec<String>,
    /// Sorted, unique.
    owned_form: Vec<String>,
    /// The body kind the recipe edits, and its first target (for errors).
    body: Option<(compile::BodyKind, usize, String)>,
    uses_monotonic: bool,
}

impl fmt::Debug for Recipe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recipe")
            .field("route", &self.route)
            .field(
                "secrets",
                &self.secrets.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("vars", &self.vars)
            .field("steps", &self.steps)
            .field("owned_headers", &self.owned_headers)
            .field("owned_query", &self.owned_query)
            .field("owned_form", &self.owned_form)
            .finish_non_exhaustive()
    }
}

impl Recipe {
    /// Compiles every expression of `spec`; `route` is the value of `route`
    /// in expressions. Returns every problem found, each with its path.
    ///
    /// Runs on a thread of its own with a large stack: cel-rust's ANTLR
    /// parser recurses deeply (a dozen nested parentheses overflow a
    /// debug build's 2 MiB test thread), and a stack overflow cannot be
    /// caught. Expressions are also bounded (see `compile::MAX_SOURCE`).
    pub fn compile(route: &str, spec: &RecipeSpec) -> Result<Recipe, Vec<CompileError>> {
        let on_thread = std::thread::scope(|s| {
            std::thread::Builder::new()
                .name("recipe-compile".into())
                .stack_size(compile::COMPILE_STACK)
                .spawn_scoped(s, || compile::compile(route, spec))
                .map(|handle| handle.join())
        });
        match on_thread {
            Ok(Ok(result)) => result,
            // A panic outside the parser (caught there): report, don't spread.
            Ok(Err(_)) => Err(vec![CompileError {
                path: "sign".into(),
                message: "internal error while compiling the recipe".into(),
            }]),
            Err(e) => Err(vec![CompileError {
                path: "sign".into(),
                message: format!("cannot start the recipe compiler thread: {e}"),
            }]),
        }
    }

    /// Every header any step sets: removed from the caller's request before
    /// step 0 (by [`Recipe::apply`] too).
    pub fn owned_headers(&self) -> &[HeaderName] {
        &self.owned_headers
    }

    /// Every query parameter any step sets (sorted): removed likewise.
    pub fn owned_query(&self) -> &[String] {
        &self.owned_query
    }

    /// Every form field any step sets (sorted): removed likewise.
    pub fn owned_form(&self) -> &[String] {
        &self.owned_form
    }

    /// Whether an expression calls `monotonic_ms()`: only then does
    /// [`Recipe::apply`] ask the [`Env`] for a value.
    pub fn uses_monotonic_ms(&self) -> bool {
        self.uses_monotonic
    }

    /// Whether the recipe sets `form.` or `json.` targets, or reads
    /// `request.body`, `request.json` or `request.form`: the gateway must
    /// buffer the body for it.
    pub fn needs_body(&self) -> bool {
        self.body.is_some() || self.steps.iter().any(|s| s.needs.body())
    }

    /// Signs `req` in place: strips what the recipe sets, then runs every
    /// step. On error `req` is half-done and must not be sent.
    pub fn apply(&self, req: &mut RecipeRequest, env: &dyn Env) -> Result<Applied, ApplyError> {
        eval::apply(self, req, env, true)
    }

    /// [`apply`](Self::apply) without the record of what each step set:
    /// the proxy path, which only sends the request.
    pub fn sign(&self, req: &mut RecipeRequest, env: &dyn Env) -> Result<(), ApplyError> {
        eval::apply(self, req, env, false).map(|_| ())
    }
}

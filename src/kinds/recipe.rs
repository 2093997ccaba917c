//! Recipes: any HMAC-style API described in the config, in CEL, with no
//! code (`docs/recipes.md`). The engine (`crate::recipe`) compiles the
//! route's `sign` steps once per load and applies them per request; this
//! kind reads the config, hands the engine the request as it will be sent,
//! and gives it the route's clock and monotonic nonce
//! ([`monotonic::Monotonic`]: never repeats, never goes back, across
//! concurrent requests, restarts and replicas).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use futures_util::future::BoxFuture;
use http::{HeaderMap, HeaderName, Method};

use super::{BuildEnv, KindRef, KindRow, KindSettings};
use crate::config::{KindDefaults, Section};
use crate::error::ProxyError;
use crate::nonce::Monotonic;
use crate::recipe::{ApplyError, Env, MemoryEnv, Recipe, RecipeRequest, RecipeSpec, Shown};
use crate::secret::Secret;
use crate::vocab::{fingerprint, identity, Kind, Outgoing, Plan};

pub const ROW: KindRow = KindRow {
    name: "recipe",
    defaults: KindDefaults::PLAIN,
    parse: |s| Settings::parse(s).map(|k| Arc::new(k) as KindRef),
};

#[derive(Debug, Clone)]
pub struct Settings {
    /// The compiled steps.
    pub recipe: Arc<Recipe>,
    /// The secrets by name, for `explain`'s redaction and the identity.
    pub secrets: Vec<(String, Secret)>,
}

impl Settings {
    pub fn parse(s: &mut Section<'_>) -> Option<Settings> {
        let route = s.path().rsplit('.').next().unwrap_or_default().to_string();
        let mut secrets = Vec::new();
        if let Some(table) = s.table("secrets") {
            let names: Vec<String> = table.keys().cloned().collect();
            s.child("secrets", table, |cs| {
                for name in &names {
                    if let Some(secret) = cs.secret(name, true) {
                        secrets.push((name.clone(), secret));
                    }
                }
            });
        }
        let vars: BTreeMap<String, String> = s.get("vars").unwrap_or_default();
        type Step = BTreeMap<String, BTreeMap<String, String>>;
        let steps: Option<Vec<Step>> = s.required("sign");
        let steps = steps?;
        if steps.is_empty() {
            s.problem("sign", "needs at least one step ([[routes.NAME.sign]])");
            return None;
        }
        let spec = RecipeSpec {
            secrets: secrets.clone(),
            vars: vars.into_iter().collect(),
            steps: steps
                .into_iter()
                .map(|step| {
                    step.into_iter()
                        .flat_map(|(target, names)| {
                            names
                                .into_iter()
                                .map(move |(name, source)| (format!("{target}.{name}"), source))
                        })
                        .collect()
                })
                .collect(),
        };
        match Recipe::compile(&route, &spec) {
            Ok(recipe) => Some(Settings {
                recipe: Arc::new(recipe),
                secrets,
            }),
            Err(errors) => {
                for e in errors {
                    s.problem(&e.path, e.message);
                }
                None
            }
        }
    }
}

impl KindSettings for Settings {
    fn build(&self, env: &BuildEnv<'_>) -> Result<Arc<dyn Kind>, String> {
        let mut parts: Vec<String> =
            vec![env.route.upstream.to_string(), env.route.base_path.clone()];
        for (name, secret) in &self.secrets {
            parts.push(format!("{name}={}", fingerprint(secret)));
        }
        let parts_ref: Vec<&str> = parts.iter().map(String::as_str).collect();
        let id = identity("recipe", &parts_ref);
        Ok(Arc::new(RecipeKind {
            monotonic: env.keyring.monotonic(&id),
            id,
            recipe: self.recipe.clone(),
            secrets: self.secrets.clone(),
            base_path: env.route.base_path.clone(),
        }))
    }
}

pub struct RecipeKind {
    /// The credential: upstream and secrets, never a secret itself.
    id: String,
    recipe: Arc<Recipe>,
    secrets: Vec<(String, Secret)>,
    /// The upstream URL's own path: part of `request.path` as sent.
    base_path: String,
    /// `monotonic_ms()`'s high-water mark, kept in the state store.
    monotonic: Arc<Monotonic>,
}

/// The clock, and one monotonic value taken for this request (or none).
struct RequestEnv {
    now: SystemTime,
    monotonic: Option<u64>,
}

impl Env for RequestEnv {
    fn now(&self) -> SystemTime {
        self.now
    }

    fn monotonic_ms(&self) -> Result<u64, String> {
        self.monotonic
            .ok_or_else(|| "no monotonic value was taken for this request".into())
    }
}

impl RecipeKind {
    /// Applies the recipe to `out` with `env`; on error nothing is to be
    /// sent. `show`: record what each step set (for `explain`).
    fn apply(
        &self,
        out: &mut Outgoing,
        env: &dyn Env,
        show: bool,
    ) -> Result<crate::recipe::Applied, ProxyError> {
        let (path, query) = match out.path_and_query.split_once('?') {
            Some((p, q)) => (p, q),
            None => (out.path_and_query.as_str(), ""),
        };
        let mut req = RecipeRequest {
            method: out.method.clone(),
            path: format!("{}{path}", self.base_path),
            query: query.to_string(),
            headers: std::mem::take(&mut out.headers),
            body: out.body.clone().unwrap_or_default(),
        };
        let applied = if show {
            self.recipe.apply(&mut req, env)
        } else {
            self.recipe
                .sign(&mut req, env)
                .map(|()| crate::recipe::Applied::default())
        };
        let applied = applied.map_err(|e| match e {
            ApplyError::Step { .. } => ProxyError::BadRequestBody(format!(
                "the route's recipe cannot sign this request: {e}"
            )),
            ApplyError::State(what) => ProxyError::from(crate::state::StateError::new(what)),
        })?;
        let path = req
            .path
            .strip_prefix(self.base_path.as_str())
            .unwrap_or(&req.path);
        out.path_and_query = if req.query.is_empty() {
            path.to_string()
        } else {
            format!("{path}?{}", req.query)
        };
        out.headers = req.headers;
        if out.body.is_some() || !req.body.is_empty() {
            out.body = Some(req.body);
        }
        Ok(applied)
    }
}

impl Kind for RecipeKind {
    fn credential_id(&self) -> String {
        self.id.clone()
    }

    fn owned_headers(&self) -> &[HeaderName] {
        self.recipe.owned_headers()
    }

    fn plan(&self, _: &Method, _: &str, _: &HeaderMap) -> Result<Plan, ProxyError> {
        // The body is buffered only where a step reads or edits it.
        Ok(Plan::forward(false, self.recipe.needs_body()))
    }

    fn sign(&self, out: &mut Outgoing, _: Option<&Secret>) -> Result<(), ProxyError> {
        // Without I/O: `monotonic_ms()` from a counter of this call's own
        // (requests that use it are signed by `sign_async`).
        self.apply(out, &MemoryEnv::system(), false).map(|_| ())
    }

    fn signs_async(&self) -> bool {
        self.recipe.uses_monotonic_ms()
    }

    fn sign_async<'a>(
        &'a self,
        out: &'a mut Outgoing,
        _: Option<&'a Secret>,
    ) -> BoxFuture<'a, Result<(), ProxyError>> {
        Box::pin(async move {
            let value = self.monotonic.next().await.map_err(ProxyError::from)?;
            let env = RequestEnv {
                now: SystemTime::now(),
                monotonic: Some(value),
            };
            self.apply(out, &env, false).map(|_| ())
        })
    }

    fn sign_explained(
        &self,
        out: &mut Outgoing,
        _: Option<&Secret>,
    ) -> Result<Vec<(String, String)>, ProxyError> {
        let applied = self.apply(out, &MemoryEnv::system(), true)?;
        let mut inputs = Vec::new();
        for (i, step) in applied.steps.iter().enumerate() {
            for (target, shown) in step {
                let shown = match shown {
                    Shown::Value(v) => v.clone(),
                    other => other.to_string(),
                };
                inputs.push((format!("sign[{i}].{target}"), shown));
            }
        }
        Ok(inputs)
    }

    fn secrets(&self) -> Vec<(&'static str, Secret)> {
        // `explain` names a redaction by its key; a recipe's secrets are
        // named by the config, so they all show as "secret".
        self.secrets
            .iter()
            .map(|(_, s)| ("secret", s.clone()))
            .collect()
    }
}

//! Signing one request with a compiled [`Recipe`]: hygiene, then each step
//! evaluated in a child scope of the recipe's root context and applied.
//!
//! The root context (functions, `route`) is shared by every request. Each
//! step evaluates in a child scope whose names (`request`, `secrets`,
//! `vars`, the instant) are answered by a [`StepScope`] on the stack, a
//! `VariableResolver`: values borrow the request and the recipe rather
//! than copying them, and a map (`request.params`, …) is only built when an
//! expression reads it. Nothing per request allocates in the root.

use std::collections::HashMap;
use std::time::UNIX_EPOCH;

use cel::common::types::{CelBytes, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString};
use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;
use cel::{ExecutionError, Value};
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue};

use super::compile::{secrets_map, BodyKind, Kind, Needs, Step, REQUEST_FIELDS};
use super::encode::{self, PairStyle};
use super::functions::{MONOTONIC_VAR, NOW_VAR};
use super::{Applied, ApplyError, Env, Recipe, RecipeRequest, Shown};

/// A `var.` set by an earlier step.
struct SetVar<'r> {
    name: &'r str,
    /// The value, converted once for CEL; `None`: set to `null`, so absent
    /// (a config var of that name too).
    val: Option<Box<dyn Val>>,
}

/// Everything a step's expressions read besides `route` and the functions,
/// resolved by name when an expression asks (cel-rust asks for the longest
/// dotted name first: `request.query` is answered without building a
/// `request` map, `vars.ts` without a `vars` map).
struct StepScope<'a> {
    recipe: &'a Recipe,
    req: &'a RecipeRequest,
    needs: Needs,
    set_vars: &'a [SetVar<'a>],
    now_ms: CelInt,
    monotonic: Option<CelInt>,
    /// Maps built on first use within the step.
    cache: [std::sync::OnceLock<Box<dyn Val + 'a>>; 6],
}

impl<'a> StepScope<'a> {
    /// A value built at most once per step.
    fn cached<'b>(
        &'b self,
        slot: usize,
        build: impl FnOnce() -> Box<dyn Val + 'a>,
    ) -> CowVal<'b, 'b> {
        CowVal::Borrowed(self.cache[slot].get_or_init(build).as_ref())
    }

    fn request_field<'b>(&'b self, field: &str) -> Option<CowVal<'b, 'b>> {
        let req = self.req;
        Some(match field {
            "method" => CowVal::owned(CelString::from(req.method.as_str())),
            "path" => CowVal::owned(CelString::from(req.path.as_str())),
            "query" => CowVal::owned(CelString::from(req.query.as_str())),
            "target" => CowVal::owned(CelString::from(req.target())),
            "body" => CowVal::owned(CelBytes::from(&req.body[..])),
            "params" => self.cached(0, || Box::new(decoded_pairs(req.query.as_bytes()))),
            "headers" => self.cached(1, || Box::new(headers_map(&req.headers))),
            "json" => self.cached(2, || json_val(&req.body)),
            "form" => self.cached(3, || Box::new(form_map(req))),
            _ => return None,
        })
    }

    fn var<'b>(&'b self, name: &str) -> Option<CowVal<'b, 'b>> {
        if let Some(v) = self.set_vars.iter().rev().find(|v| v.name == name) {
            return v.val.as_deref().map(CowVal::Borrowed);
        }
        self.recipe
            .vars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| CowVal::owned(CelString::from(v.as_str())))
    }
}

impl VariableResolver for StepScope<'_> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        let (root, rest) = variable.split_once('.').unwrap_or((variable, ""));
        match (root, rest) {
            ("request", "") if self.needs.request != 0 => {
                Some(self.cached(4, || Box::new(request_map(self.req, self.needs))))
            }
            ("request", field) if !field.contains('.') => self.request_field(field),
            ("vars", "") => {
                Some(self.cached(5, || Box::new(vars_map(&self.recipe.vars, self.set_vars))))
            }
            ("vars", name) if !name.contains('.') => self.var(name),
            ("secrets", "") => Some(CowVal::owned(secrets_map(&self.recipe.secrets))),
            ("secrets", name) if !name.contains('.') => self
                .recipe
                .secrets
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, s)| CowVal::owned(CelString::from(s.expose()))),
            (NOW_VAR, "") => Some(CowVal::Borrowed(&self.now_ms)),
            (MONOTONIC_VAR, "") => self
                .monotonic
                .as_ref()
                .map(|m| CowVal::Borrowed(m as &dyn Val)),
            _ => None,
        }
    }
}

/// `show`: record what each step set (for `explain`); the proxy path
/// signs without the record.
pub(super) fn apply(
    recipe: &Recipe,
    req: &mut RecipeRequest,
    env: &dyn Env,
    show: bool,
) -> Result<Applied, ApplyError> {
    hygiene(recipe, req)?;

    let now_ms = env
        .now()
        .duration_since(UNIX_EPOCH)
        .map_err(|_| ApplyError::State("the clock is before 1970".into()))?
        .as_millis();
    let now_ms = i64::try_from(now_ms)
        .map_err(|_| ApplyError::State("the clock is past the year 292 million".into()))?;
    let monotonic = if recipe.uses_monotonic {
        let m = env
            .monotonic_ms()
            .map_err(|e| ApplyError::State(format!("monotonic_ms: {e}")))?;
        let m = i64::try_from(m)
            .map_err(|_| ApplyError::State("monotonic_ms: the value exceeds an int".into()))?;
        Some(m)
    } else {
        None
    };

    let mut progress = Progress {
        hidden: recipe
            .secrets
            .iter()
            .map(|(_, s)| Hidden::Secret(s.expose().as_bytes()))
            .collect(),
        set_vars: Vec::new(),
        present: Present {
            query: vec![false; recipe.owned_query.len()],
            form: vec![false; recipe.owned_form.len()],
        },
    };
    // Room for the parameters the steps add, so that appending them does
    // not copy the query again and again.
    req.query.reserve(96 * recipe.owned_query.len());
    let mut applied = Applied {
        steps: Vec::with_capacity(if show { recipe.steps.len() } else { 0 }),
    };
    let instant = (CelInt::from(now_ms), monotonic.map(CelInt::from));
    for (i, step) in recipe.steps.iter().enumerate() {
        let results = evaluate(recipe, i, step, req, &progress, &instant)?;
        let shown = apply_step(recipe, i, step, results, req, &mut progress, show)?;
        if show {
            applied.steps.push(shown);
        }
    }
    Ok(applied)
}

/// What the steps so far have left besides the request.
struct Progress<'r> {
    /// Values no message or shown value may contain: the secrets, then the
    /// value of each secret `var.` as it is set.
    hidden: Vec<Hidden<'r>>,
    set_vars: Vec<SetVar<'r>>,
    /// Which of the recipe's query parameters and form fields the request
    /// holds: none after hygiene, then as the steps set and remove them, so
    /// that a new one is appended without scanning the query or body.
    present: Present,
}

/// Evaluates every expression of a step against the request as it is now.
fn evaluate(
    recipe: &Recipe,
    i: usize,
    step: &Step,
    req: &RecipeRequest,
    progress: &Progress<'_>,
    (now_ms, monotonic): &(CelInt, Option<CelInt>),
) -> Result<Vec<Value>, ApplyError> {
    let names = StepScope {
        recipe,
        req,
        needs: step.needs,
        set_vars: &progress.set_vars,
        now_ms: *now_ms,
        monotonic: *monotonic,
        cache: Default::default(),
    };
    let mut scope = recipe.root.new_inner_scope();
    scope.set_variable_resolver(&names);
    let mut results = Vec::with_capacity(step.targets.len());
    for target in &step.targets {
        // A panic inside the interpreter fails this request, not the
        // worker thread that runs it.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            target.program.execute(&scope)
        }));
        let fail = |message: String| ApplyError::Step {
            step: i,
            target: target.label.clone(),
            message,
        };
        match outcome {
            Ok(Ok(value)) => results.push(value),
            Ok(Err(e)) => return Err(fail(redact(describe(&e), &progress.hidden))),
            Err(_) => return Err(fail("the CEL interpreter failed on this expression".into())),
        }
    }
    Ok(results)
}

/// Removes from the caller's request what any step sets; puts a JSON body
/// in its compact form when a `json.` target is used.
fn hygiene(recipe: &Recipe, req: &mut RecipeRequest) -> Result<(), ApplyError> {
    for name in &recipe.owned_headers {
        req.headers.remove(name);
    }
    let edits: Vec<(&str, Option<&[u8]>)> = recipe
        .owned_query
        .iter()
        .map(|n| (n.as_str(), None))
        .collect();
    encode::edit_pairs(&mut req.query, &edits, PairStyle::Query);
    let Some((kind, step, label)) = &recipe.body else {
        return Ok(());
    };
    if req.body.is_empty() {
        return Ok(());
    }
    let fail = |message: &str| ApplyError::Step {
        step: *step,
        target: label.clone(),
        message: message.into(),
    };
    match kind {
        BodyKind::Form => {
            if !is_form(&req.headers) {
                return Err(fail(
                    "the request body is not application/x-www-form-urlencoded",
                ));
            }
            let mut text = std::str::from_utf8(&req.body)
                .map_err(|_| fail("the form body is not valid UTF-8"))?
                .to_string();
            let edits: Vec<(&str, Option<&[u8]>)> = recipe
                .owned_form
                .iter()
                .map(|n| (n.as_str(), None))
                .collect();
            encode::edit_pairs(&mut text, &edits, PairStyle::Form);
            if text.len() != req.body.len() {
                req.body = text.into();
            }
        }
        BodyKind::Json => {
            if serde_json::from_slice::<serde::de::IgnoredAny>(&req.body).is_err() {
                return Err(fail("the request body is not JSON"));
            }
            let compact = encode::json_compact(&req.body);
            if !compact.starts_with(b"{") {
                return Err(fail("the request body is not a JSON object"));
            }
            req.body = compact.into();
        }
    }
    Ok(())
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .is_some_and(|v| encode::is_form_content_type(v.as_bytes()))
}

/// `request`, with the fields the step reads.
fn request_map(req: &RecipeRequest, needs: Needs) -> CelMap<'_> {
    let mut map: HashMap<CelMapKey<'_>, Box<dyn Val + '_>> = HashMap::with_capacity(9);
    for (bit, field) in REQUEST_FIELDS.iter().enumerate() {
        if !needs.field(bit) {
            continue;
        }
        let value: Box<dyn Val + '_> = match *field {
            "method" => Box::new(CelString::from(req.method.as_str())),
            "path" => Box::new(CelString::from(req.path.as_str())),
            "query" => Box::new(CelString::from(req.query.as_str())),
            "target" => Box::new(CelString::from(req.target())),
            "params" => Box::new(decoded_pairs(req.query.as_bytes())),
            "headers" => Box::new(headers_map(&req.headers)),
            "body" => Box::new(CelBytes::from(&req.body[..])),
            "json" => json_val(&req.body),
            _ => Box::new(form_map(req)),
        };
        map.insert(CelMapKey::from(*field), value);
    }
    map.into()
}

/// `request.form`: the body's fields when it is a form, else an empty map.
fn form_map(req: &RecipeRequest) -> CelMap<'static> {
    if is_form(&req.headers) {
        decoded_pairs(&req.body)
    } else {
        CelMap::from(HashMap::new())
    }
}

/// Name → last value, decoded with the form rules.
fn decoded_pairs(raw: &[u8]) -> CelMap<'static> {
    let mut map: HashMap<CelMapKey<'static>, Box<dyn Val>> = HashMap::new();
    for (n, v) in form_urlencoded::parse(raw) {
        map.insert(
            CelMapKey::from(n.into_owned()),
            Box::new(CelString::from(v.into_owned())),
        );
    }
    map.into()
}

/// Lower-case name → value; a repeated header's values joined by `, `
/// (RFC 9110 §5.3); bytes that are not UTF-8 as U+FFFD.
fn headers_map(headers: &HeaderMap) -> CelMap<'_> {
    let mut map: HashMap<CelMapKey<'_>, Box<dyn Val + '_>> =
        HashMap::with_capacity(headers.keys_len());
    for name in headers.keys() {
        let mut values = headers.get_all(name).iter();
        let text = match (values.next(), values.next()) {
            (Some(v), None) => match v.to_str() {
                Ok(s) => CelString::from(s),
                Err(_) => CelString::from(String::from_utf8_lossy(v.as_bytes()).into_owned()),
            },
            _ => CelString::from(
                headers
                    .get_all(name)
                    .iter()
                    .map(|v| String::from_utf8_lossy(v.as_bytes()))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
        };
        map.insert(CelMapKey::from(name.as_str()), Box::new(text));
    }
    map.into()
}

/// The body parsed as JSON when it parses, else `null`.
fn json_val(body: &[u8]) -> Box<dyn Val + 'static> {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) => json_to_val(v),
        Err(_) => Box::new(CelNull),
    }
}

fn json_to_val(v: serde_json::Value) -> Box<dyn Val + 'static> {
    use serde_json::Value as J;
    match v {
        J::Null => Box::new(CelNull),
        J::Bool(b) => Box::new(cel::common::types::CelBool::from(b)),
        J::Number(n) => {
            if let Some(i) = n.as_i64() {
                Box::new(CelInt::from(i))
            } else if let Some(u) = n.as_u64() {
                Box::new(cel::common::types::CelUInt::from(u))
            } else {
                Box::new(cel::common::types::CelDouble::from(
                    n.as_f64().unwrap_or(f64::NAN),
                ))
            }
        }
        J::String(s) => Box::new(CelString::from(s)),
        J::Array(items) => Box::new(CelList::from(
            items.into_iter().map(json_to_val).collect::<Vec<_>>(),
        )),
        J::Object(members) => {
            let map: HashMap<CelMapKey<'static>, Box<dyn Val>> = members
                .into_iter()
                .map(|(k, v)| (CelMapKey::from(k), json_to_val(v)))
                .collect();
            Box::new(CelMap::from(map))
        }
    }
}

/// `vars`: the config vars, then the `var.` targets of earlier steps
/// (a later one wins).
fn vars_map<'a>(config: &'a [(String, String)], set: &'a [SetVar<'a>]) -> CelMap<'a> {
    let mut map: HashMap<CelMapKey<'a>, Box<dyn Val + 'a>> =
        HashMap::with_capacity(config.len() + set.len());
    for (n, v) in config {
        map.insert(
            CelMapKey::from(n.as_str()),
            Box::new(CelString::from(v.as_str())),
        );
    }
    for v in set {
        match &v.val {
            Some(val) => {
                map.insert(CelMapKey::from(v.name), val.clone());
            }
            None => {
                map.remove(&CelMapKey::from(v.name));
            }
        }
    }
    map.into()
}

/// Which owned query parameters and form fields the request holds, by
/// their index in `Recipe::owned_query` / `owned_form`.
struct Present {
    query: Vec<bool>,
    form: Vec<bool>,
}

impl Present {
    /// Whether any name of `edits` is held; then records the edits.
    fn update(held: &mut [bool], owned: &[String], edits: &[(&str, Option<&[u8]>)]) -> bool {
        let mut any = false;
        for (name, value) in edits {
            if let Ok(i) = owned.binary_search_by(|o| o.as_str().cmp(name)) {
                any |= held[i];
                held[i] = value.is_some();
            }
        }
        any
    }
}

/// Applies a step's results to the request, in target order.
fn apply_step<'r>(
    recipe: &Recipe,
    i: usize,
    step: &'r Step,
    results: Vec<Value>,
    req: &mut RecipeRequest,
    progress: &mut Progress<'r>,
    show: bool,
) -> Result<Vec<(String, Shown)>, ApplyError> {
    let Progress {
        hidden,
        set_vars,
        present,
    } = progress;
    let mut shown = Vec::with_capacity(if show { step.targets.len() } else { 0 });
    let mut query: Vec<(&str, Option<String>)> = Vec::new();
    let mut body: Vec<(&str, Option<String>)> = Vec::new();
    let mut body_kind = None;
    let mut new_vars = Vec::new();
    for (target, value) in step.targets.iter().zip(results) {
        let fail = |message: String| ApplyError::Step {
            step: i,
            target: target.label.clone(),
            message,
        };
        if let Kind::Var = target.kind {
            if show {
                let seen = match (&value, target.secret) {
                    (Value::Null, _) => Shown::Removed,
                    (_, true) => Shown::Redacted,
                    (v, false) => Shown::Value(redact(literal(v), hidden)),
                };
                shown.push((target.label.clone(), seen));
            }
            // Hidden either way: error messages are redacted with it.
            if target.secret {
                hide(&value, hidden);
            }
            let val = match value {
                Value::Null => None,
                v => Box::<dyn Val>::try_from(v).ok(),
            };
            new_vars.push(SetVar {
                name: &target.name,
                val,
            });
            continue;
        }
        let json = matches!(target.kind, Kind::Json);
        let text = wire_text(&value, json).map_err(&fail)?;
        if show {
            let seen = match &text {
                None => Shown::Removed,
                Some(t) if target.secret || contains_any(t.as_bytes(), hidden) => Shown::Redacted,
                Some(t) => Shown::Value(t.clone()),
            };
            shown.push((target.label.clone(), seen));
        }
        match &target.kind {
            Kind::Header(name) => match text {
                None => {
                    req.headers.remove(name);
                }
                Some(t) => {
                    if let Some(b) = t
                        .bytes()
                        .find(|&b| b != b'\t' && !(b' '..=b'~').contains(&b))
                    {
                        return Err(fail(format!(
                            "a header value may hold visible ASCII, spaces and tabs only, not byte 0x{b:02x}"
                        )));
                    }
                    let v = HeaderValue::from_str(&t)
                        .map_err(|_| fail("not a valid header value".into()))?;
                    req.headers.insert(name.clone(), v);
                }
            },
            Kind::Query => query.push((&target.name, text)),
            Kind::Form => {
                body_kind = Some((BodyKind::Form, target.label.as_str()));
                body.push((&target.name, text));
            }
            Kind::Json => {
                body_kind = Some((BodyKind::Json, target.label.as_str()));
                body.push((&target.name, text));
            }
            Kind::Var => {}
        }
    }
    if !query.is_empty() {
        let edits: Vec<(&str, Option<&[u8]>)> = query
            .iter()
            .map(|(n, v)| (*n, v.as_deref().map(str::as_bytes)))
            .collect();
        if Present::update(&mut present.query, &recipe.owned_query, &edits) {
            encode::edit_pairs(&mut req.query, &edits, PairStyle::Query);
        } else {
            encode::append_pairs(&mut req.query, &edits, PairStyle::Query);
        }
    }
    if let Some((kind, label)) = body_kind {
        edit_body(kind, &body, req, present, recipe).map_err(|message| ApplyError::Step {
            step: i,
            target: label.to_string(),
            message,
        })?;
    }
    for v in new_vars {
        set_vars.retain(|s| s.name != v.name);
        set_vars.push(v);
    }
    Ok(shown)
}

fn edit_body(
    kind: BodyKind,
    fields: &[(&str, Option<String>)],
    req: &mut RecipeRequest,
    present: &mut Present,
    recipe: &Recipe,
) -> Result<(), String> {
    let edits: Vec<(&str, Option<&[u8]>)> = fields
        .iter()
        .map(|(n, v)| (*n, v.as_deref().map(str::as_bytes)))
        .collect();
    let starting = req.body.is_empty();
    if starting && edits.iter().all(|(_, v)| v.is_none()) {
        return Ok(());
    }
    match kind {
        BodyKind::Form => {
            if starting {
                req.headers.insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/x-www-form-urlencoded"),
                );
            } else if !is_form(&req.headers) {
                return Err("the request body is not application/x-www-form-urlencoded".into());
            }
            let mut text = std::str::from_utf8(&req.body)
                .map_err(|_| "the form body is not valid UTF-8")?
                .to_string();
            if Present::update(&mut present.form, &recipe.owned_form, &edits) {
                encode::edit_pairs(&mut text, &edits, PairStyle::Form);
            } else {
                encode::append_pairs(&mut text, &edits, PairStyle::Form);
            }
            req.body = text.into();
        }
        BodyKind::Json => {
            let members = if starting {
                req.headers
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                Vec::new()
            } else {
                encode::json_members(&req.body).ok_or("the request body is not a JSON object")?
            };
            req.body = encode::edit_json(&members, &edits).into();
        }
    }
    Ok(())
}

/// The text a `header.`/`query.`/`form.` value is sent as (before
/// percent-encoding), or a `json.` member's JSON text; `None` for `null`.
fn wire_text(value: &Value, json: bool) -> Result<Option<String>, String> {
    let text = match value {
        Value::Null => return Ok(None),
        Value::Int(n) => return Ok(Some(n.to_string())),
        Value::UInt(n) => return Ok(Some(n.to_string())),
        Value::String(s) => s.as_str(),
        Value::Bytes(b) => std::str::from_utf8(b)
            .map_err(|_| "the value is bytes that are not valid UTF-8".to_string())?,
        other => {
            return Err(format!(
                "the value must be a string, an int or bytes, not {}",
                other.type_of()
            ))
        }
    };
    if json {
        let mut out = Vec::with_capacity(text.len() + 2);
        encode::json_string_into(text, &mut out);
        Ok(Some(String::from_utf8_lossy(&out).into_owned()))
    } else {
        Ok(Some(text.to_string()))
    }
}

/// A `var.` value written as a CEL literal, for `explain`.
fn literal(v: &Value) -> String {
    match v {
        Value::String(s) => {
            let mut out = Vec::new();
            encode::json_string_into(s, &mut out);
            String::from_utf8_lossy(&out).into_owned()
        }
        Value::Bytes(b) => format!("hex_decode(\"{}\")", hex::encode(&**b)),
        Value::Int(n) => n.to_string(),
        Value::UInt(n) => format!("{n}u"),
        Value::Float(f) => format!("{f:?}"),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".into(),
        Value::List(items) => format!(
            "[{}]",
            items.iter().map(literal).collect::<Vec<_>>().join(", ")
        ),
        Value::Map(m) => {
            let mut entries: Vec<String> = m
                .map
                .iter()
                .map(|(k, v)| format!("{}: {}", literal(&Value::from(k.clone())), literal(v)))
                .collect();
            entries.sort();
            format!("{{{}}}", entries.join(", "))
        }
        other => format!("<{}>", other.type_of()),
    }
}

/// A value no message or shown value may contain. Borrowed or shared, never
/// copied: secret material is not duplicated for the sake of hiding it.
pub(super) enum Hidden<'a> {
    Secret(&'a [u8]),
    String(std::sync::Arc<String>),
    Bytes(std::sync::Arc<Vec<u8>>),
}

impl Hidden<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            Hidden::Secret(b) => b,
            Hidden::String(s) => s.as_bytes(),
            Hidden::Bytes(b) => b,
        }
    }
}

/// Adds the strings and bytes inside a secret `var.` value to `hidden`.
fn hide(v: &Value, hidden: &mut Vec<Hidden<'_>>) {
    match v {
        Value::String(s) => hidden.push(Hidden::String(std::sync::Arc::clone(s))),
        Value::Bytes(b) => hidden.push(Hidden::Bytes(std::sync::Arc::clone(b))),
        Value::List(items) => items.iter().for_each(|i| hide(i, hidden)),
        Value::Map(m) => m.map.values().for_each(|i| hide(i, hidden)),
        _ => {}
    }
}

fn contains_any(text: &[u8], hidden: &[Hidden<'_>]) -> bool {
    hidden.iter().map(Hidden::bytes).any(|h| match h.len() {
        0 => false,
        n if n > text.len() => false,
        // A short text (a signature, a header): no searcher to build.
        _ if text.len() <= 256 => text.windows(h.len()).any(|w| w == h),
        _ => memchr::memmem::find(text, h).is_some(),
    })
}

/// `message` with every hidden value in it replaced by `[redacted]`.
pub(super) fn redact(message: String, hidden: &[Hidden<'_>]) -> String {
    if !contains_any(message.as_bytes(), hidden) {
        return message;
    }
    let mut out = message.into_bytes();
    for h in hidden.iter().map(Hidden::bytes).filter(|h| !h.is_empty()) {
        while let Some(at) = memchr::memmem::find(&out, h) {
            out.splice(at..at + h.len(), b"[redacted]".iter().copied());
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An evaluation error as a sentence that names types, never values (a
/// value may be a secret; cel-rust's own messages print values).
pub(super) fn describe(e: &ExecutionError) -> String {
    use ExecutionError as E;
    let t = |v: &Value| v.type_of().to_string();
    match e {
        E::FunctionError { function, message } if function == "fail" => message.clone(),
        E::FunctionError { function, message } => format!("{function}(): {message}"),
        E::NoSuchKey(key) => format!("no such key: '{key}'"),
        E::UndeclaredReference(name) => format!("undeclared reference to '{name}'"),
        E::NoSuchOverload(o) => o.to_string(),
        E::InvalidArgumentCount { expected, actual } => {
            format!("expected {expected} arguments, got {actual}")
        }
        E::UnsupportedTargetType { target } => format!("unsupported argument type {}", t(target)),
        E::NotSupportedAsMethod { method, target } => {
            format!("'{method}' is not a method of {}", t(target))
        }
        E::UnsupportedKeyType(v) => format!("a {} cannot be a map key", t(v)),
        E::UnexpectedType { want, .. } => format!("unexpected type (wanted {want})"),
        E::ValuesNotComparable(a, b) => format!("{} and {} cannot be compared", t(a), t(b)),
        E::UnsupportedBinaryOperator(op, a, b) => {
            format!("operator '{op}' does not apply to {} and {}", t(a), t(b))
        }
        E::UnsupportedIndex(a, b) => format!("a {} cannot be indexed by a {}", t(b), t(a)),
        E::DivisionByZero(_) => "division by zero".into(),
        E::RemainderByZero(_) => "remainder by zero".into(),
        E::Overflow(op, ..) => format!("integer overflow in '{op}'"),
        E::IndexOutOfBounds(_) => "index out of bounds".into(),
        E::DuplicateKey(_) => "repeated key in a map literal".into(),
        E::MissingArgumentOrTarget => "missing argument or target".into(),
        _ => "the expression failed".into(),
    }
}

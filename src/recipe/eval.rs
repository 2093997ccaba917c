//! Signing one request with a compiled [`Recipe`]: hygiene, then each step
//! evaluated in a child scope of the recipe's root context and applied.
//!
//! Scopes: the recipe's root (functions, `route`), shared by every
//! request; a request scope (`secrets`, the instant, the monotonic value);
//! and one scope per step (`request` as the earlier steps left it, `vars`).
//! A scope is a small map on the stack; values borrow the request and the
//! recipe rather than copying them.

use std::collections::HashMap;
use std::time::UNIX_EPOCH;

use cel::common::types::{CelBytes, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString};
use cel::common::value::Val;
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
    /// `None`: set to `null`, so absent (a config var of that name too).
    value: Option<Value>,
}

pub(super) fn apply(
    recipe: &Recipe,
    req: &mut RecipeRequest,
    env: &dyn Env,
) -> Result<Applied, ApplyError> {
    hygiene(recipe, req)?;

    let now_ms = env
        .now()
        .duration_since(UNIX_EPOCH)
        .map_err(|_| ApplyError::State("the clock is before 1970".into()))?
        .as_millis();
    let now_ms = i64::try_from(now_ms)
        .map_err(|_| ApplyError::State("the clock is past the year 292 million".into()))?;
    let mut scope = recipe.root.new_inner_scope();
    scope.add_variable_as_val(NOW_VAR, Box::new(CelInt::from(now_ms)));
    if recipe.uses_monotonic {
        let m = env
            .monotonic_ms()
            .map_err(|e| ApplyError::State(format!("monotonic_ms: {e}")))?;
        let m = i64::try_from(m)
            .map_err(|_| ApplyError::State("monotonic_ms: the value exceeds an int".into()))?;
        scope.add_variable_as_val(MONOTONIC_VAR, Box::new(CelInt::from(m)));
    }
    if recipe.uses_secrets {
        scope.add_variable_as_val("secrets", Box::new(secrets_map(&recipe.secrets)));
    }

    // Values no message or shown value may contain: the secrets, then the
    // value of each secret `var.` as it is set.
    let mut hidden: Vec<Hidden<'_>> = recipe
        .secrets
        .iter()
        .map(|(_, s)| Hidden::Secret(s.expose().as_bytes()))
        .collect();
    let mut set_vars: Vec<SetVar<'_>> = Vec::new();
    let mut applied = Applied {
        steps: Vec::with_capacity(recipe.steps.len()),
    };

    for (i, step) in recipe.steps.iter().enumerate() {
        // Every expression of the step sees the request as it is now.
        let results: Vec<Value> = {
            let mut step_scope = scope.new_inner_scope();
            step_scope.add_variable_as_val("request", Box::new(request_map(req, step.needs)));
            if step.needs.vars {
                step_scope.add_variable_as_val("vars", Box::new(vars_map(&recipe.vars, &set_vars)));
            }
            let mut results = Vec::with_capacity(step.targets.len());
            for target in &step.targets {
                let value = target
                    .program
                    .execute(&step_scope)
                    .map_err(|e| ApplyError::Step {
                        step: i,
                        target: target.label.clone(),
                        message: redact(describe(&e), &hidden),
                    })?;
                results.push(value);
            }
            results
        };
        let shown = apply_step(i, step, results, req, &mut set_vars, &mut hidden)?;
        applied.steps.push(shown);
    }
    Ok(applied)
}

/// Removes from the caller's request what any step sets; puts a JSON body
/// in its compact form when a `json.` target is used.
fn hygiene(recipe: &Recipe, req: &mut RecipeRequest) -> Result<(), ApplyError> {
    for name in &recipe.owned_headers {
        req.headers.remove(name);
    }
    let names: Vec<&str> = recipe.owned_query.iter().map(String::as_str).collect();
    if encode::has_any_pair(&req.query, &names) {
        let edits: Vec<(&str, Option<&[u8]>)> = names.iter().map(|n| (*n, None)).collect();
        req.query = encode::edit_pairs(&req.query, &edits, PairStyle::Query);
    }
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
            let text = std::str::from_utf8(&req.body)
                .map_err(|_| fail("the form body is not valid UTF-8"))?;
            let names: Vec<&str> = recipe.owned_form.iter().map(String::as_str).collect();
            if encode::has_any_pair(text, &names) {
                let edits: Vec<(&str, Option<&[u8]>)> = names.iter().map(|n| (*n, None)).collect();
                req.body = encode::edit_pairs(text, &edits, PairStyle::Form).into();
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
            _ => {
                if is_form(&req.headers) {
                    Box::new(decoded_pairs(&req.body))
                } else {
                    Box::new(CelMap::from(HashMap::new()))
                }
            }
        };
        map.insert(CelMapKey::from(*field), value);
    }
    map.into()
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
        match v.value.clone().map(Box::<dyn Val>::try_from) {
            Some(Ok(val)) => {
                map.insert(CelMapKey::from(v.name), val);
            }
            _ => {
                map.remove(&CelMapKey::from(v.name));
            }
        }
    }
    map.into()
}

/// Applies a step's results to the request, in target order.
fn apply_step<'r>(
    i: usize,
    step: &'r Step,
    results: Vec<Value>,
    req: &mut RecipeRequest,
    set_vars: &mut Vec<SetVar<'r>>,
    hidden: &mut Vec<Hidden<'r>>,
) -> Result<Vec<(String, Shown)>, ApplyError> {
    let mut shown = Vec::with_capacity(step.targets.len());
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
            let show = match (&value, target.secret) {
                (Value::Null, _) => Shown::Removed,
                (_, true) => Shown::Redacted,
                (v, false) => Shown::Value(redact(literal(v), hidden)),
            };
            if target.secret {
                hide(&value, hidden);
            }
            shown.push((target.label.clone(), show));
            new_vars.push(SetVar {
                name: &target.name,
                value: (!matches!(value, Value::Null)).then_some(value),
            });
            continue;
        }
        let json = matches!(target.kind, Kind::Json);
        let text = wire_text(&value, json).map_err(&fail)?;
        let show = match &text {
            None => Shown::Removed,
            Some(t) if target.secret || contains_any(t.as_bytes(), hidden) => Shown::Redacted,
            Some(t) => Shown::Value(t.clone()),
        };
        shown.push((target.label.clone(), show));
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
        req.query = encode::edit_pairs(&req.query, &edits, PairStyle::Query);
    }
    if let Some((kind, label)) = body_kind {
        edit_body(kind, &body, req).map_err(|message| ApplyError::Step {
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
            let text =
                std::str::from_utf8(&req.body).map_err(|_| "the form body is not valid UTF-8")?;
            req.body = encode::edit_pairs(text, &edits, PairStyle::Form).into();
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
    hidden
        .iter()
        .map(Hidden::bytes)
        .any(|h| !h.is_empty() && memchr::memmem::find(text, h).is_some())
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

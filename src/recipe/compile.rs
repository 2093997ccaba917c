//! From a [`RecipeSpec`] to a [`Recipe`]: targets parsed, expressions
//! compiled and checked (every name read, every function called), the
//! secrecy of each result decided, and `scrypt` computed ahead where its
//! arguments allow.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use cel::common::ast::{EntryExpr, Expr, LiteralValue};
use cel::common::types::{CelMap, CelMapKey, CelString};
use cel::common::value::Val;
use cel::{Context, IdedExpr, Program, Value};
use http::HeaderName;
use zeroize::Zeroizing;

use super::functions::{self, Class, ScryptArgs, ScryptCache};
use super::{CompileError, Recipe, RecipeSpec};

/// What `request.*` fields a step reads: one bit per field.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Needs {
    pub(super) request: u16,
    pub(super) vars: bool,
}

/// The fields of `request`, in the order of their bits in [`Needs`].
pub(super) const REQUEST_FIELDS: [&str; 9] = [
    "method", "path", "query", "target", "params", "headers", "body", "json", "form",
];
const BODY_FIELDS: u16 = (1 << 6) | (1 << 7) | (1 << 8);
const ALL_FIELDS: u16 = (1 << REQUEST_FIELDS.len()) - 1;

impl Needs {
    pub(super) fn field(&self, i: usize) -> bool {
        self.request & (1 << i) != 0
    }

    pub(super) fn body(&self) -> bool {
        self.request & BODY_FIELDS != 0
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BodyKind {
    Form,
    Json,
}

#[derive(Debug)]
pub(super) enum Kind {
    Header(HeaderName),
    Query,
    Form,
    Json,
    Var,
}

pub(super) struct Target {
    /// As written: `query.signature`.
    pub(super) label: String,
    pub(super) kind: Kind,
    pub(super) name: String,
    pub(super) program: Program,
    /// Shown as `[redacted]`: a `var.` that reads a secret, or a value
    /// computed from a secret without a digest in between.
    pub(super) secret: bool,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}{}",
            self.label,
            if self.secret { " (secret)" } else { "" }
        )
    }
}

#[derive(Debug)]
pub(super) struct Step {
    /// Sorted by label, so by name within a kind.
    pub(super) targets: Vec<Target>,
    pub(super) needs: Needs,
}

/// The stack of the thread that compiles a recipe (virtual memory: only
/// what the parser touches is used).
pub(super) const COMPILE_STACK: usize = 256 << 20;
/// Longest expression, in bytes. Signing expressions are a few hundred.
pub(super) const MAX_SOURCE: usize = 4096;
/// Deepest nesting of brackets, longest run of unary operators, most
/// conditionals, in the source: the parser recurses on each.
const MAX_NESTING: usize = 32;
/// Deepest expression tree: evaluation recurses on it, on the request's
/// thread and its ordinary stack.
const MAX_DEPTH: usize = 32;

/// Refuses a source the parser would recurse on too deeply, before parsing.
fn precheck(source: &str) -> Result<(), String> {
    if source.len() > MAX_SOURCE {
        return Err(format!("the expression is longer than {MAX_SOURCE} bytes"));
    }
    let (mut depth, mut deepest, mut unary, mut questions) = (0usize, 0usize, 0usize, 0usize);
    let mut quote: Option<u8> = None;
    let mut escaped = false;
    for &b in source.as_bytes() {
        if let Some(q) = quote {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b) if b == q => quote = None,
                _ => {}
            }
            continue;
        }
        match b {
            b'\'' | b'"' => quote = Some(b),
            b'(' | b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            b'?' => questions += 1,
            _ => {}
        }
        match b {
            b'!' | b'-' => unary += 1,
            b' ' | b'\t' | b'\n' | b'\r' => {}
            _ => unary = 0,
        }
        if deepest > MAX_NESTING || unary > MAX_NESTING || questions > MAX_NESTING {
            return Err(format!("the expression nests more than {MAX_NESTING} deep"));
        }
    }
    Ok(())
}

/// The depth of an expression tree.
fn depth(e: &IdedExpr) -> usize {
    let entries = |entries: &[cel::common::ast::IdedEntryExpr]| -> usize {
        entries
            .iter()
            .map(|entry| match &entry.expr {
                EntryExpr::MapEntry(m) => depth(&m.key).max(depth(&m.value)),
                EntryExpr::StructField(s) => depth(&s.value),
            })
            .max()
            .unwrap_or(0)
    };
    let deepest = match &e.expr {
        Expr::Unspecified | Expr::Literal(_) | Expr::Ident(_) => 0,
        Expr::Select(s) => depth(&s.operand),
        Expr::Call(c) => c
            .target
            .iter()
            .map(|t| depth(t))
            .chain(c.args.iter().map(depth))
            .max()
            .unwrap_or(0),
        Expr::Comprehension(c) => [
            &c.iter_range,
            &c.accu_init,
            &c.loop_cond,
            &c.loop_step,
            &c.result,
        ]
        .into_iter()
        .map(depth)
        .max()
        .unwrap_or(0),
        Expr::List(l) => l.elements.iter().map(depth).max().unwrap_or(0),
        Expr::Map(m) => entries(&m.entries),
        Expr::Struct(s) => entries(&s.entries),
    };
    1 + deepest
}

/// Headers a recipe may not set: the connection's and the message framing's.
const RESERVED_HEADERS: &[&str] = &[
    "connection",
    "content-length",
    "host",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn parse_target(label: &str) -> Result<(Kind, String), String> {
    let bad = || {
        format!(
            "unknown target '{label}': a target is header.NAME, query.NAME, form.NAME, json.NAME or var.NAME"
        )
    };
    let (kind, name) = label.split_once('.').ok_or_else(bad)?;
    if name.is_empty() {
        return Err(format!("target '{label}' has no name"));
    }
    let kind = match kind {
        "header" => {
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("'{name}' is not a valid header name"))?;
            if RESERVED_HEADERS.contains(&header.as_str()) {
                return Err(format!(
                    "the header '{header}' is countersign's to set, not a recipe's"
                ));
            }
            Kind::Header(header)
        }
        "query" => Kind::Query,
        "form" => Kind::Form,
        "json" => Kind::Json,
        "var" => Kind::Var,
        _ => return Err(bad()),
    };
    Ok((kind, name.to_string()))
}

/// What is known of a `vars.NAME` while compiling a step.
#[derive(Clone, Copy, Debug)]
struct VarInfo {
    /// Set by a `var.` target (not a config var): its value depends on the request.
    computed: bool,
    /// Its expression reads a secret.
    secret: bool,
}

pub(super) fn compile(route: &str, spec: &RecipeSpec) -> Result<Recipe, Vec<CompileError>> {
    let mut errors = Vec::new();
    let env = Arc::new(cel::Env::stdlib().with_optional_support(false));
    let cache = Arc::new(ScryptCache::default());
    let mut root = Context::with_env(Arc::clone(&env));
    if let Err(e) = functions::register(&mut root, Arc::clone(&cache)) {
        return Err(vec![CompileError {
            path: "sign".into(),
            message: format!("internal error: {e}"),
        }]);
    }
    root.add_variable_as_val("route", Box::new(CelString::from(route.to_string())));

    let mut compiler = Compiler::new(Arc::clone(&env), spec);
    let mut steps = Vec::with_capacity(spec.steps.len());
    let mut scrypt_calls: Vec<(String, Vec<IdedExpr>)> = Vec::new();
    let mut uses_monotonic = false;
    let mut owned_headers: Vec<HeaderName> = Vec::new();
    let (mut owned_query, mut owned_form) = (Vec::new(), Vec::new());

    for (i, step) in spec.steps.iter().enumerate() {
        let mut targets = Vec::with_capacity(step.len());
        let mut needs = Needs::default();
        let mut seen: HashSet<(u8, String)> = HashSet::new();
        let mut new_vars = Vec::new();
        for (label, source) in step {
            let path = format!("sign[{i}].{label}");
            let c = match compiler.target(i, label, source, &mut seen) {
                Ok(c) => c,
                Err(messages) => {
                    errors.extend(messages.into_iter().map(|message| CompileError {
                        path: path.clone(),
                        message,
                    }));
                    continue;
                }
            };
            needs.request |= c.needs.request;
            needs.vars |= c.needs.vars;
            uses_monotonic |= c.uses_monotonic;
            scrypt_calls.extend(c.scrypt.into_iter().map(|args| (path.clone(), args)));
            match &c.target.kind {
                Kind::Header(h) => owned_headers.push(h.clone()),
                Kind::Query => owned_query.push(c.target.name.clone()),
                Kind::Form => owned_form.push(c.target.name.clone()),
                Kind::Json => {}
                Kind::Var => new_vars.push((c.target.name.clone(), c.target.secret)),
            }
            targets.push(c.target);
        }
        // A step's vars are for the steps after it.
        for (name, secret) in new_vars {
            compiler.vars.insert(
                name,
                VarInfo {
                    computed: true,
                    secret,
                },
            );
        }
        targets.sort_by(|a, b| a.label.cmp(&b.label));
        steps.push(Step { targets, needs });
    }

    // The first form./json. target in application order: body errors found
    // before step 0 are reported at it.
    let body = steps.iter().enumerate().find_map(|(i, step)| {
        step.targets.iter().find_map(|t| match t.kind {
            Kind::Form => Some((BodyKind::Form, i, t.label.clone())),
            Kind::Json => Some((BodyKind::Json, i, t.label.clone())),
            _ => None,
        })
    });
    let entries = precompute_scrypt(&root, spec, scrypt_calls, &mut errors);
    cache.fill(entries);
    if !errors.is_empty() {
        return Err(errors);
    }
    owned_headers.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    owned_headers.dedup();
    owned_query.sort();
    owned_query.dedup();
    owned_form.sort();
    owned_form.dedup();
    Ok(Recipe {
        route: route.to_string(),
        secrets: spec.secrets.clone(),
        vars: spec.vars.clone(),
        root,
        steps,
        owned_headers,
        owned_query,
        owned_form,
        body,
        uses_monotonic,
    })
}

/// What compiling a target needs to know of the recipe so far.
struct Compiler<'s> {
    env: Arc<cel::Env>,
    secret_names: HashSet<&'s str>,
    /// `vars.NAME` visible to the step being compiled.
    vars: HashMap<String, VarInfo>,
    /// The first step that sets each `var.`, for "read before it is set".
    var_set_at: HashMap<&'s str, usize>,
    /// `form.` or `json.`, once a target of either is seen.
    body_kind: Option<BodyKind>,
}

/// One compiled target and what it brings to its step and recipe.
struct Compiled {
    target: Target,
    needs: Needs,
    uses_monotonic: bool,
    /// The arguments of its `scrypt` calls that can be computed at load.
    scrypt: Vec<Vec<IdedExpr>>,
}

impl<'s> Compiler<'s> {
    fn new(env: Arc<cel::Env>, spec: &'s RecipeSpec) -> Self {
        let config_var = VarInfo {
            computed: false,
            secret: false,
        };
        let mut var_set_at = HashMap::new();
        for (i, step) in spec.steps.iter().enumerate() {
            for (label, _) in step {
                if let Some(name) = label.strip_prefix("var.") {
                    var_set_at.entry(name).or_insert(i);
                }
            }
        }
        Compiler {
            env,
            secret_names: spec.secrets.iter().map(|(n, _)| n.as_str()).collect(),
            vars: spec
                .vars
                .iter()
                .map(|(n, _)| (n.clone(), config_var))
                .collect(),
            var_set_at,
            body_kind: None,
        }
    }

    /// Parses and checks `label = source` of step `step`; `seen` holds the
    /// step's targets so far. Errs with every problem found.
    fn target(
        &mut self,
        step: usize,
        label: &str,
        source: &str,
        seen: &mut HashSet<(u8, String)>,
    ) -> Result<Compiled, Vec<String>> {
        let (kind, name) = parse_target(label).map_err(|m| vec![m])?;
        let key = match &kind {
            Kind::Header(h) => (0, h.as_str().to_string()),
            Kind::Query => (1, name.clone()),
            Kind::Form => (2, name.clone()),
            Kind::Json => (3, name.clone()),
            Kind::Var => (4, name.clone()),
        };
        if !seen.insert(key) {
            return Err(vec!["set twice in this step".into()]);
        }
        let body_kind = match kind {
            Kind::Form => Some(BodyKind::Form),
            Kind::Json => Some(BodyKind::Json),
            _ => None,
        };
        match (body_kind, self.body_kind) {
            (Some(k), Some(other)) if k != other => {
                return Err(vec![
                    "a recipe sets form. fields or json. members, not both".into(),
                ]);
            }
            (Some(k), None) => self.body_kind = Some(k),
            _ => {}
        }
        precheck(source).map_err(|m| vec![m])?;
        let parsed =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.env.compile(source)));
        let program = match parsed {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => return Err(vec![syntax_error(&e)]),
            Err(_) => return Err(vec!["the CEL parser failed on this expression".into()]),
        };
        if depth(program.expression()) > MAX_DEPTH {
            return Err(vec![format!(
                "the expression nests more than {MAX_DEPTH} deep"
            )]);
        }
        let mut checker = Checker {
            secrets: &self.secret_names,
            vars: &self.vars,
            var_set_at: &self.var_set_at,
            step,
            locals: Vec::new(),
            errors: Vec::new(),
            needs: Needs::default(),
            scrypt: Vec::new(),
            uses_monotonic: false,
        };
        let flow = checker.walk(program.expression());
        if !checker.errors.is_empty() {
            checker.errors.dedup();
            return Err(checker.errors);
        }
        // DESIGN: a `var.` that reads a secret is secret; another value
        // only when the secret reaches it other than through a digest.
        let secret = match kind {
            Kind::Var => flow.reads,
            _ => flow.exposed,
        };
        Ok(Compiled {
            needs: checker.needs,
            uses_monotonic: checker.uses_monotonic,
            scrypt: checker.scrypt,
            target: Target {
                label: label.to_string(),
                kind,
                name,
                program,
                secret,
            },
        })
    }
}

fn syntax_error(e: &cel::ParseErrors) -> String {
    let parts: Vec<String> = e
        .errors
        .iter()
        .map(|e| {
            let msg = e.msg.strip_prefix("Syntax error: ").unwrap_or(&e.msg);
            format!("syntax error at {}:{}: {msg}", e.pos.0, e.pos.1)
        })
        .collect();
    if parts.is_empty() {
        "syntax error".into()
    } else {
        parts.join("; ")
    }
}

/// What flows from a sub-expression to its value.
#[derive(Clone, Copy, Debug, Default)]
struct Flow {
    /// It reads a secret (or a secret `var.`), anywhere.
    reads: bool,
    /// It reads one other than through a digest or HMAC.
    exposed: bool,
    /// It depends on the request: `request`, a computed `var.`, the clock,
    /// randomness.
    per_request: bool,
}

impl Flow {
    fn join(self, other: Flow) -> Flow {
        Flow {
            reads: self.reads || other.reads,
            exposed: self.exposed || other.exposed,
            per_request: self.per_request || other.per_request,
        }
    }

    const SECRET: Flow = Flow {
        reads: true,
        exposed: true,
        per_request: false,
    };
    const PER_REQUEST: Flow = Flow {
        reads: false,
        exposed: false,
        per_request: true,
    };
}

/// Walks one expression: checks every name and call, and gathers its
/// [`Flow`], the request fields it reads, and its constant `scrypt` calls.
struct Checker<'a> {
    secrets: &'a HashSet<&'a str>,
    vars: &'a HashMap<String, VarInfo>,
    var_set_at: &'a HashMap<&'a str, usize>,
    step: usize,
    /// Comprehension variables in scope.
    locals: Vec<String>,
    errors: Vec<String>,
    needs: Needs,
    /// The argument expressions of each `scrypt` call that does not depend
    /// on the request.
    scrypt: Vec<Vec<IdedExpr>>,
    uses_monotonic: bool,
}

impl Checker<'_> {
    fn walk(&mut self, e: &IdedExpr) -> Flow {
        match &e.expr {
            Expr::Unspecified | Expr::Literal(_) => Flow::default(),
            Expr::Ident(name) => self.ident(name),
            Expr::Select(select) => match self.root_of(&select.operand) {
                Some(root) => self.member(root, &select.field),
                None => self.walk(&select.operand),
            },
            Expr::Call(call) => {
                if call.func_name == "_[_]" && call.target.is_none() && call.args.len() == 2 {
                    if let (Some(root), Expr::Literal(LiteralValue::String(field))) =
                        (self.root_of(&call.args[0]), &call.args[1].expr)
                    {
                        return self.member(root, field.inner());
                    }
                }
                self.call(call)
            }
            Expr::Comprehension(c) => {
                let mut flow = self.walk(&c.iter_range).join(self.walk(&c.accu_init));
                let depth = self.locals.len();
                self.locals.push(c.iter_var.clone());
                self.locals.extend(c.iter_var2.clone());
                self.locals.push(c.accu_var.clone());
                for part in [&c.loop_cond, &c.loop_step, &c.result] {
                    flow = flow.join(self.walk(part));
                }
                self.locals.truncate(depth);
                flow
            }
            Expr::List(list) => list
                .elements
                .iter()
                .fold(Flow::default(), |f, e| f.join(self.walk(e))),
            Expr::Map(map) => {
                map.entries
                    .iter()
                    .fold(Flow::default(), |f, entry| match &entry.expr {
                        EntryExpr::MapEntry(m) => {
                            f.join(self.walk(&m.key)).join(self.walk(&m.value))
                        }
                        EntryExpr::StructField(s) => f.join(self.walk(&s.value)),
                    })
            }
            Expr::Struct(s) => {
                self.errors.push(format!(
                    "message literals ('{}{{…}}') are not supported",
                    s.type_name
                ));
                Flow::default()
            }
        }
    }

    /// `request`, `secrets` or `vars` when `e` names one of them (not
    /// shadowed by a comprehension variable).
    fn root_of<'e>(&self, e: &'e IdedExpr) -> Option<&'e str> {
        match &e.expr {
            Expr::Ident(name)
                if matches!(name.as_str(), "request" | "secrets" | "vars")
                    && !self.locals.contains(name) =>
            {
                Some(name)
            }
            _ => None,
        }
    }

    fn ident(&mut self, name: &str) -> Flow {
        if self.locals.iter().any(|l| l == name) {
            return Flow::default();
        }
        match name {
            "route" => Flow::default(),
            // CEL's type names, for `type(x) == int`
            "bool" | "bytes" | "double" | "int" | "list" | "map" | "null_type" | "string"
            | "type" | "uint" => Flow::default(),
            "request" => {
                self.needs.request = ALL_FIELDS;
                Flow::PER_REQUEST
            }
            "secrets" => Flow::SECRET,
            "vars" => {
                self.needs.vars = true;
                let secret = self.vars.values().any(|v| v.secret);
                Flow {
                    reads: secret,
                    exposed: secret,
                    per_request: self.vars.values().any(|v| v.computed),
                }
            }
            _ => {
                self.errors
                    .push(format!("undeclared reference to '{name}'"));
                Flow::default()
            }
        }
    }

    /// `root.field` or `root["field"]`.
    fn member(&mut self, root: &str, field: &str) -> Flow {
        match root {
            "request" => match REQUEST_FIELDS.iter().position(|f| *f == field) {
                Some(bit) => {
                    self.needs.request |= 1 << bit;
                    Flow::PER_REQUEST
                }
                None => {
                    self.errors.push(format!(
                        "undeclared reference to 'request.{field}' (request has {})",
                        REQUEST_FIELDS.join(", ")
                    ));
                    Flow::default()
                }
            },
            "secrets" => {
                if !self.secrets.contains(field) {
                    self.errors
                        .push(format!("undeclared reference to 'secrets.{field}'"));
                }
                Flow::SECRET
            }
            _ => {
                self.needs.vars = true;
                match self.vars.get(field) {
                    Some(v) => Flow {
                        reads: v.secret,
                        exposed: v.secret,
                        per_request: v.computed,
                    },
                    None => {
                        let when = match self.var_set_at.get(field) {
                            Some(&s) if s == self.step => {
                                " (it is set by this step: a step sees the vars of earlier steps only)"
                            }
                            Some(_) => " (it is set by a later step)",
                            None => "",
                        };
                        self.errors
                            .push(format!("undeclared reference to 'vars.{field}'{when}"));
                        Flow::default()
                    }
                }
            }
        }
    }

    fn call(&mut self, call: &cel::common::ast::CallExpr) -> Flow {
        let name = call.func_name.as_str();
        let argc = call.args.len() + usize::from(call.target.is_some());
        let operator =
            name.starts_with('_') || name.starts_with('@') || name == "!_" || name == "-_";
        let class = if operator || functions::STANDARD.contains(&name) {
            Some(Class::Pure)
        } else if let Some((min, max, class)) = functions::lookup(name) {
            if argc < min || argc > max {
                let takes = match (min, max) {
                    (1, 1) => "1 argument".to_string(),
                    (min, max) if min == max => format!("{min} arguments"),
                    (min, max) => format!("{min} to {max} arguments"),
                };
                self.errors
                    .push(format!("{name}() takes {takes}, not {argc}"));
            }
            Some(class)
        } else {
            self.errors.push(format!("unknown function '{name}'"));
            None
        };
        let mut flow = Flow::default();
        for part in call.target.iter().map(|t| &**t).chain(call.args.iter()) {
            flow = flow.join(self.walk(part));
        }
        match class {
            Some(Class::Digest) => flow.exposed = false,
            Some(Class::PerRequest) => {
                flow.per_request = true;
                self.uses_monotonic |= name == "monotonic_ms";
            }
            Some(Class::Scrypt) if !flow.per_request && argc == 6 => {
                self.scrypt.push(
                    call.target
                        .iter()
                        .map(|t| (**t).clone())
                        .chain(call.args.iter().cloned())
                        .collect(),
                );
            }
            _ => {}
        }
        flow
    }
}

/// Computes each `scrypt` call whose arguments don't depend on the request,
/// in a scope holding the secrets and the config vars.
fn precompute_scrypt(
    root: &Context<'static, 'static>,
    spec: &RecipeSpec,
    calls: Vec<(String, Vec<IdedExpr>)>,
    errors: &mut Vec<CompileError>,
) -> HashMap<[u8; 32], Zeroizing<Vec<u8>>> {
    let mut entries = HashMap::new();
    if calls.is_empty() {
        return entries;
    }
    let mut scope = root.new_inner_scope();
    scope.add_variable_as_val("secrets", Box::new(secrets_map(&spec.secrets)));
    scope.add_variable_as_val("vars", Box::new(string_map(&spec.vars)));
    for (path, args) in calls {
        let values: Result<Vec<Value>, _> =
            args.iter().map(|a| Value::resolve(a, &scope)).collect();
        let result = match values {
            Err(e) => {
                let hidden: Vec<_> = spec
                    .secrets
                    .iter()
                    .map(|(_, s)| super::eval::Hidden::Secret(s.expose().as_bytes()))
                    .collect();
                Err(super::eval::redact(super::eval::describe(&e), &hidden))
            }
            Ok(v) => match (&v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) {
                (pw, salt, Value::Int(n), Value::Int(r), Value::Int(p), Value::Int(len)) => {
                    match (byte_like(pw), byte_like(salt)) {
                        (Some(pw), Some(salt)) => ScryptArgs::new(pw, salt, *n, *r, *p, *len)
                            .map(|a| {
                                entries.entry(a.key()).or_insert_with(|| a.derive());
                            })
                            .map_err(|m| format!("scrypt: {m}")),
                        _ => Err("scrypt: the password and salt must be strings or bytes".into()),
                    }
                }
                _ => Err("scrypt: N, r, p and the length must be ints".into()),
            },
        };
        if let Err(message) = result {
            errors.push(CompileError { path, message });
        }
    }
    entries
}

fn byte_like(v: &Value) -> Option<&[u8]> {
    match v {
        Value::String(s) => Some(s.as_bytes()),
        Value::Bytes(b) => Some(b),
        _ => None,
    }
}

/// `secrets` as a CEL map whose strings borrow the secret values (no copy).
pub(super) fn secrets_map(secrets: &[(String, crate::secret::Secret)]) -> CelMap<'_> {
    secrets
        .iter()
        .map(|(n, s)| {
            (
                CelMapKey::from(n.as_str()),
                Box::new(CelString::from(s.expose())) as Box<dyn Val + '_>,
            )
        })
        .collect::<HashMap<_, _>>()
        .into()
}

pub(super) fn string_map(pairs: &[(String, String)]) -> CelMap<'_> {
    pairs
        .iter()
        .map(|(n, v)| {
            (
                CelMapKey::from(n.as_str()),
                Box::new(CelString::from(v.as_str())) as Box<dyn Val + '_>,
            )
        })
        .collect::<HashMap<_, _>>()
        .into()
}

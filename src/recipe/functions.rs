//! The functions a recipe may call beyond CEL's standard ones (DESIGN §4
//! "recipe"), registered on the recipe's root [`cel::Context`].
//!
//! Every function takes its receiver as its first argument, so each can be
//! called either way: `sha256(request.body)` or `request.body.sha256()`,
//! `join(list, ",")` or `list.join(",")`. Error messages name the function
//! and the types involved, never a value: an argument may be a secret.
//!
//! The functions are closures registered once per recipe on its root
//! context; per-request inputs reach them through the evaluation context
//! they are handed (`FunctionContext::ptx`), as variables no expression
//! can name (their names start with a NUL): the instant of the request
//! ([`NOW_VAR`], Unix milliseconds) and the route's monotonic value
//! ([`MONOTONIC_VAR`]). Randomness comes from the thread's CSPRNG
//! (`rand::rng()`).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use cel::common::types::{CelBytes, CelInt, CelList, CelString, CelUInt};
use cel::common::value::Val;
use cel::{Context, ExecutionError, FunctionContext, Value};
use hmac::{Hmac, Mac};
use md5::Md5;
use rand::RngCore as _;
use sha1::Sha1;
use sha2::{Digest as _, Sha256, Sha512};
use zeroize::Zeroizing;

use super::encode;

/// The instant of the request, Unix milliseconds (an `int`).
pub(super) const NOW_VAR: &str = "\u{0}now_ms";
/// The route's monotonic value for this request (an `int`).
pub(super) const MONOTONIC_VAR: &str = "\u{0}monotonic_ms";

/// What a function means for the checks made when a recipe is compiled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Class {
    /// A digest or HMAC: its result reveals nothing of its inputs, so a
    /// value computed from a secret through it is shown in `explain`.
    Digest,
    /// Depends on its arguments alone.
    Pure,
    /// Reads the request's instant or monotonic value, or randomness: never
    /// computed ahead of a request.
    PerRequest,
    /// `scrypt`: computed once per load when its arguments allow it.
    Scrypt,
}

/// `(name, fewest arguments, most arguments, class)`; a receiver counts as
/// the first argument.
pub(super) const FUNCTIONS: &[(&str, usize, usize, Class)] = &[
    ("md5", 1, 1, Class::Digest),
    ("sha1", 1, 1, Class::Digest),
    ("sha256", 1, 1, Class::Digest),
    ("sha512", 1, 1, Class::Digest),
    ("hmac_md5", 2, 2, Class::Digest),
    ("hmac_sha1", 2, 2, Class::Digest),
    ("hmac_sha256", 2, 2, Class::Digest),
    ("hmac_sha512", 2, 2, Class::Digest),
    ("hex", 1, 1, Class::Pure),
    ("hex_upper", 1, 1, Class::Pure),
    ("base64", 1, 1, Class::Pure),
    ("base64url", 1, 1, Class::Pure),
    ("hex_decode", 1, 1, Class::Pure),
    ("base64_decode", 1, 1, Class::Pure),
    ("url_encode", 1, 1, Class::Pure),
    ("canonical_query", 1, 1, Class::Pure),
    ("now_s", 0, 0, Class::PerRequest),
    ("now_ms", 0, 0, Class::PerRequest),
    ("now_rfc3339", 0, 0, Class::PerRequest),
    ("now_iso8601_basic", 0, 0, Class::PerRequest),
    ("monotonic_ms", 0, 0, Class::PerRequest),
    ("nonce_hex", 1, 1, Class::PerRequest),
    ("uuid4", 0, 0, Class::PerRequest),
    ("sorted", 1, 1, Class::Pure),
    ("join", 1, 2, Class::Pure),
    ("scrypt", 6, 6, Class::Scrypt),
    // `fail` stops the request: never worth computing ahead.
    ("fail", 1, 1, Class::PerRequest),
];

/// CEL's standard functions this crate's build of cel-rust provides (no
/// `chrono`: no `timestamp`/`duration`; optional values disabled), global
/// or as methods. The macros (`has`, `all`, `exists`, `exists_one`, `map`,
/// `filter`) are expanded by the parser and never reach a call.
pub(super) const STANDARD: &[&str] = &[
    "size",
    "int",
    "uint",
    "double",
    "string",
    "bytes",
    "bool",
    "type",
    "dyn",
    "contains",
    "startsWith",
    "endsWith",
    "matches",
];

pub(super) fn lookup(name: &str) -> Option<(usize, usize, Class)> {
    FUNCTIONS
        .iter()
        .find(|(n, ..)| *n == name)
        .map(|&(_, min, max, class)| (min, max, class))
}

/// Derived keys of the `scrypt` calls computed when the recipe was
/// compiled, by a digest of their arguments (so the map holds no password).
#[derive(Default)]
pub(super) struct ScryptCache(OnceLock<HashMap<[u8; 32], Zeroizing<Vec<u8>>>>);

impl ScryptCache {
    pub(super) fn fill(&self, entries: HashMap<[u8; 32], Zeroizing<Vec<u8>>>) {
        let _ = self.0.set(entries);
    }
}

type FnResult = Result<Value, ExecutionError>;

/// Adds every function of [`FUNCTIONS`] to `ctx`.
pub(super) fn register(
    ctx: &mut Context<'static, 'static>,
    scrypt_cache: Arc<ScryptCache>,
) -> Result<(), cel::DeclarationError> {
    ctx.add_function("md5", |f: &FunctionContext<'_, '_>| digest::<Md5>(f))?;
    ctx.add_function("sha1", |f: &FunctionContext<'_, '_>| digest::<Sha1>(f))?;
    ctx.add_function("sha256", |f: &FunctionContext<'_, '_>| digest::<Sha256>(f))?;
    ctx.add_function("sha512", |f: &FunctionContext<'_, '_>| digest::<Sha512>(f))?;
    ctx.add_function("hmac_md5", |f: &FunctionContext<'_, '_>| {
        hmac::<Hmac<Md5>>(f)
    })?;
    ctx.add_function("hmac_sha1", |f: &FunctionContext<'_, '_>| {
        hmac::<Hmac<Sha1>>(f)
    })?;
    ctx.add_function("hmac_sha256", |f: &FunctionContext<'_, '_>| {
        hmac::<Hmac<Sha256>>(f)
    })?;
    ctx.add_function("hmac_sha512", |f: &FunctionContext<'_, '_>| {
        hmac::<Hmac<Sha512>>(f)
    })?;
    ctx.add_function("hex", |f: &FunctionContext<'_, '_>| {
        Ok(string(encode::hex(bytes_arg(f, 0)?, false)))
    })?;
    ctx.add_function("hex_upper", |f: &FunctionContext<'_, '_>| {
        Ok(string(encode::hex(bytes_arg(f, 0)?, true)))
    })?;
    ctx.add_function("base64", |f: &FunctionContext<'_, '_>| {
        Ok(string(
            base64::engine::general_purpose::STANDARD.encode(bytes_arg(f, 0)?),
        ))
    })?;
    ctx.add_function("base64url", |f: &FunctionContext<'_, '_>| {
        Ok(string(
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes_arg(f, 0)?),
        ))
    })?;
    ctx.add_function("hex_decode", hex_decode)?;
    ctx.add_function("base64_decode", base64_decode)?;
    ctx.add_function("url_encode", |f: &FunctionContext<'_, '_>| {
        Ok(string(encode::rfc3986(bytes_arg(f, 0)?)))
    })?;
    ctx.add_function("canonical_query", |f: &FunctionContext<'_, '_>| {
        Ok(string(encode::canonical_query(str_arg(f, 0)?)))
    })?;
    ctx.add_function("now_s", |f: &FunctionContext<'_, '_>| {
        Ok(Value::Int(now_ms(f)?.div_euclid(1000)))
    })?;
    ctx.add_function("now_ms", |f: &FunctionContext<'_, '_>| {
        Ok(Value::Int(now_ms(f)?))
    })?;
    ctx.add_function("now_rfc3339", |f: &FunctionContext<'_, '_>| {
        Ok(string(encode::rfc3339_ms(now_ms(f)?)))
    })?;
    ctx.add_function("now_iso8601_basic", |f: &FunctionContext<'_, '_>| {
        Ok(string(encode::iso8601_basic(now_ms(f)?)))
    })?;
    ctx.add_function("monotonic_ms", |f: &FunctionContext<'_, '_>| {
        int_var(f, MONOTONIC_VAR).map(Value::Int)
    })?;
    ctx.add_function("nonce_hex", nonce_hex)?;
    ctx.add_function("uuid4", |f: &FunctionContext<'_, '_>| {
        arity(f, 0)?;
        Ok(string(uuid4()))
    })?;
    ctx.add_function("sorted", sorted)?;
    ctx.add_function("join", join)?;
    ctx.add_function("scrypt", move |f: &FunctionContext<'_, '_>| {
        scrypt(f, &scrypt_cache)
    })?;
    ctx.add_function("fail", |f: &FunctionContext<'_, '_>| -> FnResult {
        Err(ExecutionError::function_error("fail", str_arg(f, 0)?))
    })?;
    Ok(())
}

fn string(s: String) -> Value {
    Value::String(Arc::new(s))
}

fn bytes(b: Vec<u8>) -> Value {
    Value::Bytes(Arc::new(b))
}

fn err(f: &FunctionContext<'_, '_>, message: impl ToString) -> ExecutionError {
    ExecutionError::function_error(f.name, message)
}

fn argc(f: &FunctionContext<'_, '_>) -> usize {
    f.args.len() + usize::from(f.this.is_some())
}

/// Argument `i`, the receiver being argument 0 of a method call.
fn arg<'a, 'v>(
    f: &'a FunctionContext<'_, 'v>,
    i: usize,
) -> Result<&'a (dyn Val + 'v), ExecutionError> {
    let value = match &f.this {
        Some(this) if i == 0 => Some(this),
        Some(_) => f.args.get(i - 1),
        None => f.args.get(i),
    };
    value.map(|v| v.as_ref()).ok_or_else(|| {
        err(
            f,
            format!("takes more arguments than the {} given", argc(f)),
        )
    })
}

fn arity(f: &FunctionContext<'_, '_>, n: usize) -> Result<(), ExecutionError> {
    if argc(f) == n {
        Ok(())
    } else {
        Err(err(f, format!("takes {n} arguments, not {}", argc(f))))
    }
}

fn type_name(v: &dyn Val) -> &str {
    v.get_type().name()
}

/// A `string` (as its UTF-8 bytes) or `bytes` argument.
fn bytes_arg<'a>(f: &'a FunctionContext<'_, '_>, i: usize) -> Result<&'a [u8], ExecutionError> {
    let v = arg(f, i)?;
    if let Some(s) = v.downcast_ref::<CelString<'_>>() {
        Ok(s.inner().as_bytes())
    } else if let Some(b) = v.downcast_ref::<CelBytes<'_>>() {
        Ok(b.inner())
    } else {
        Err(err(
            f,
            format!(
                "argument {} must be a string or bytes, not {}",
                i + 1,
                type_name(v)
            ),
        ))
    }
}

fn str_arg<'a>(f: &'a FunctionContext<'_, '_>, i: usize) -> Result<&'a str, ExecutionError> {
    let v = arg(f, i)?;
    v.downcast_ref::<CelString<'_>>()
        .map(|s| s.inner())
        .ok_or_else(|| {
            err(
                f,
                format!("argument {} must be a string, not {}", i + 1, type_name(v)),
            )
        })
}

fn int_arg(f: &FunctionContext<'_, '_>, i: usize) -> Result<i64, ExecutionError> {
    let v = arg(f, i)?;
    if let Some(n) = v.downcast_ref::<CelInt>() {
        Ok(*n.inner())
    } else if let Some(n) = v.downcast_ref::<CelUInt>() {
        i64::try_from(*n.inner()).map_err(|_| err(f, format!("argument {} is too large", i + 1)))
    } else {
        Err(err(
            f,
            format!("argument {} must be an int, not {}", i + 1, type_name(v)),
        ))
    }
}

fn int_var(f: &FunctionContext<'_, '_>, name: &str) -> Result<i64, ExecutionError> {
    arity(f, 0)?;
    f.ptx
        .get_variable(name)
        .and_then(|v| v.downcast_ref::<CelInt>().map(|n| *n.inner()))
        .ok_or_else(|| err(f, "is only available while a request is signed"))
}

fn now_ms(f: &FunctionContext<'_, '_>) -> Result<i64, ExecutionError> {
    int_var(f, NOW_VAR)
}

fn digest<D: sha2::Digest>(f: &FunctionContext<'_, '_>) -> FnResult {
    arity(f, 1)?;
    Ok(bytes(D::digest(bytes_arg(f, 0)?).to_vec()))
}

fn hmac<M: Mac + hmac::digest::KeyInit>(f: &FunctionContext<'_, '_>) -> FnResult {
    arity(f, 2)?;
    let mut mac = <M as Mac>::new_from_slice(bytes_arg(f, 0)?)
        // HMAC takes keys of any length.
        .map_err(|_| err(f, "invalid key length"))?;
    mac.update(bytes_arg(f, 1)?);
    Ok(bytes(mac.finalize().into_bytes().to_vec()))
}

fn hex_decode(f: &FunctionContext<'_, '_>) -> FnResult {
    arity(f, 1)?;
    hex::decode(str_arg(f, 0)?)
        .map(bytes)
        .map_err(|_| err(f, "the argument is not an even number of hex digits"))
}

fn base64_decode(f: &FunctionContext<'_, '_>) -> FnResult {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const STANDARD_ANY_PADDING: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    arity(f, 1)?;
    STANDARD_ANY_PADDING
        .decode(str_arg(f, 0)?)
        .map(bytes)
        .map_err(|_| err(f, "the argument is not base64 (standard alphabet)"))
}

/// Most bytes `nonce_hex` draws.
const NONCE_MAX: i64 = 1024;

fn nonce_hex(f: &FunctionContext<'_, '_>) -> FnResult {
    arity(f, 1)?;
    let n = int_arg(f, 0)?;
    if !(1..=NONCE_MAX).contains(&n) {
        return Err(err(
            f,
            format!("takes a number of bytes from 1 to {NONCE_MAX}"),
        ));
    }
    let mut buf = vec![0u8; n as usize];
    rand::rng().fill_bytes(&mut buf);
    Ok(string(hex::encode(buf)))
}

/// A random (version 4) UUID, RFC 9562 §5.4, lower-case hyphenated.
pub(super) fn uuid4() -> String {
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn list_arg<'a, 'v>(
    f: &'a FunctionContext<'_, 'v>,
    i: usize,
) -> Result<&'a [Box<dyn Val + 'v>], ExecutionError> {
    let v = arg(f, i)?;
    v.downcast_ref::<CelList<'_>>()
        .map(|l| l.inner())
        .ok_or_else(|| {
            err(
                f,
                format!("argument {} must be a list, not {}", i + 1, type_name(v)),
            )
        })
}

/// `sorted(list)`: a list of strings (by code point), ints, uints or bytes
/// (by byte), in ascending order.
fn sorted(f: &FunctionContext<'_, '_>) -> FnResult {
    arity(f, 1)?;
    let items = list_arg(f, 0)?;
    let mut values: Vec<Value> = items
        .iter()
        .map(|v| Value::try_from(v.as_ref()))
        .collect::<Result<_, _>>()?;
    let same = |pred: fn(&Value) -> bool| values.iter().all(pred);
    if !(same(|v| matches!(v, Value::String(_)))
        || same(|v| matches!(v, Value::Int(_)))
        || same(|v| matches!(v, Value::UInt(_)))
        || same(|v| matches!(v, Value::Bytes(_))))
    {
        return Err(err(
            f,
            "takes a list of strings, of ints, of uints or of bytes (one type)",
        ));
    }
    values.sort_by(|a, b| match (a, b) {
        (Value::String(a), Value::String(b)) => a.cmp(b),
        (Value::Int(a), Value::Int(b)) => a.cmp(b),
        (Value::UInt(a), Value::UInt(b)) => a.cmp(b),
        (Value::Bytes(a), Value::Bytes(b)) => a.cmp(b),
        _ => std::cmp::Ordering::Equal,
    });
    Ok(Value::List(Arc::new(values)))
}

/// `list.join(sep)`, `list.join()`: a list of strings joined by `sep` (or nothing).
fn join(f: &FunctionContext<'_, '_>) -> FnResult {
    let n = argc(f);
    if !(1..=2).contains(&n) {
        return Err(err(
            f,
            format!("takes a list and a separator, not {n} arguments"),
        ));
    }
    let items = list_arg(f, 0)?;
    let sep = if n == 2 { str_arg(f, 1)? } else { "" };
    let mut out = String::new();
    for (i, item) in items.iter().enumerate() {
        let s = item.downcast_ref::<CelString<'_>>().ok_or_else(|| {
            err(
                f,
                format!(
                    "takes a list of strings, not of {}",
                    type_name(item.as_ref())
                ),
            )
        })?;
        if i > 0 {
            out.push_str(sep);
        }
        out.push_str(s.inner());
    }
    Ok(string(out))
}

#[cfg(test)]
thread_local! {
    /// How many scrypt derivations this thread ran (tests: "once per load").
    pub(super) static DERIVATIONS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Most memory one `scrypt` call may take (`128 · N · r` bytes).
const SCRYPT_MAX_MEMORY: u64 = 1 << 30;

/// The arguments of a `scrypt` call, checked.
pub(super) struct ScryptArgs<'a> {
    password: &'a [u8],
    salt: &'a [u8],
    log_n: u8,
    r: u32,
    p: u32,
    len: usize,
}

impl ScryptArgs<'_> {
    /// The cache key: a digest of every argument, lengths included.
    pub(super) fn key(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        for part in [self.password, self.salt] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        h.update([self.log_n]);
        h.update(self.r.to_be_bytes());
        h.update(self.p.to_be_bytes());
        h.update((self.len as u64).to_be_bytes());
        h.finalize().into()
    }

    pub(super) fn derive(&self) -> Zeroizing<Vec<u8>> {
        #[cfg(test)]
        DERIVATIONS.with(|d| d.set(d.get() + 1));
        let mut out = Zeroizing::new(vec![0u8; self.len]);
        // Checked in `scrypt_args`: valid parameters, 1 to 1024 bytes out.
        if let Ok(params) =
            scrypt::Params::new(self.log_n, self.r, self.p, scrypt::Params::RECOMMENDED_LEN)
        {
            let _ = scrypt::scrypt(self.password, self.salt, &params, &mut out);
        }
        out
    }
}

fn scrypt_args<'a>(f: &'a FunctionContext<'_, '_>) -> Result<ScryptArgs<'a>, ExecutionError> {
    arity(f, 6)?;
    let (password, salt) = (bytes_arg(f, 0)?, bytes_arg(f, 1)?);
    let (n, r, p, len) = (
        int_arg(f, 2)?,
        int_arg(f, 3)?,
        int_arg(f, 4)?,
        int_arg(f, 5)?,
    );
    ScryptArgs::new(password, salt, n, r, p, len).map_err(|m| err(f, m))
}

impl<'a> ScryptArgs<'a> {
    /// Checks the arguments of `scrypt(password, salt, N, r, p, len)`.
    pub(super) fn new(
        password: &'a [u8],
        salt: &'a [u8],
        n: i64,
        r: i64,
        p: i64,
        len: i64,
    ) -> Result<Self, &'static str> {
        if n < 2 || n.count_ones() != 1 {
            return Err("N (argument 3) must be a power of two, at least 2");
        }
        let log_n = n.trailing_zeros() as u8;
        let r = u32::try_from(r)
            .ok()
            .filter(|&r| r > 0)
            .ok_or("r (argument 4) must be at least 1")?;
        let p = u32::try_from(p)
            .ok()
            .filter(|&p| p > 0)
            .ok_or("p (argument 5) must be at least 1")?;
        if !(1..=1024).contains(&len) {
            return Err("the length (argument 6) must be from 1 to 1024 bytes");
        }
        if 128u64.saturating_mul(n as u64).saturating_mul(u64::from(r)) > SCRYPT_MAX_MEMORY {
            return Err("128·N·r exceeds 1 GiB");
        }
        if scrypt::Params::new(log_n, r, p, scrypt::Params::RECOMMENDED_LEN).is_err() {
            return Err("invalid parameters (RFC 7914: N < 2^(16·r), p·r < 2^30)");
        }
        Ok(ScryptArgs {
            password,
            salt,
            log_n,
            r,
            p,
            len: len as usize,
        })
    }
}

fn scrypt(f: &FunctionContext<'_, '_>, cache: &ScryptCache) -> FnResult {
    let args = scrypt_args(f)?;
    if let Some(found) = cache.0.get().and_then(|m| m.get(&args.key())) {
        return Ok(bytes(found.to_vec()));
    }
    Ok(bytes(args.derive().to_vec()))
}

//! `countersign explain`: the request countersign would send upstream for a
//! given call (and the login it would need first), with every header, the
//! body and each signature's input string, secrets redacted, nothing sent.
//! It runs the same hygiene, plan and signing code as the proxy.

use std::fmt::Write as _;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};

use crate::keys::Keyring;
use crate::kinds::{BuildEnv, Config};
use crate::secret::Secret;
use crate::vocab::{Need, Outgoing, Plan};

#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("no route is named \"{0}\" in the config")]
    UnknownRoute(String),
    #[error("\"{0}\" is not an HTTP method")]
    Method(String),
    #[error("header \"{0}\" must be written as 'Name: value'")]
    Header(String),
    #[error("{0}")]
    Refused(String),
}

/// What the session value looks like in the explanation: it only exists after a real login.
const SESSION_PLACEHOLDER: &str = "<session from login>";

pub fn explain(
    config: &Config,
    route: &str,
    method: &str,
    path: &str,
    data: Option<&str>,
    headers: &[String],
) -> Result<String, ExplainError> {
    let rc = config
        .routes
        .get(route)
        .ok_or_else(|| ExplainError::UnknownRoute(route.to_string()))?;
    let keyring = Keyring::detached();
    let kind = rc
        .kind
        .build(&BuildEnv {
            keyring: &keyring,
            route: rc,
        })
        .map_err(ExplainError::Refused)?;
    let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes())
        .map_err(|_| ExplainError::Method(method.to_string()))?;
    let mut caller = HeaderMap::new();
    for h in headers {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| ExplainError::Header(h.clone()))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| ExplainError::Header(h.clone()))?;
        let value =
            HeaderValue::from_str(value.trim()).map_err(|_| ExplainError::Header(h.clone()))?;
        caller.append(name, value);
    }
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    let (raw_rest, query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path.as_str(), None),
    };
    let rest = crate::headers::canonical_path(raw_rest, kind.embeds_urls())
        .map_err(|e| ExplainError::Refused(e.to_string()))?
        .into_owned();
    let path = match query {
        Some(q) => format!("{rest}?{q}"),
        None => rest.clone(),
    };
    let rest = rest.as_str();
    let mut base = format!(
        "{}{}",
        rc.upstream.to_string().trim_end_matches('/'),
        rc.base_path
    );
    let secrets = kind.secrets();
    let mut out = format!("route {route} (kind {}) -> {base}\n", rc.kind_name);

    let plan = kind
        .plan(&method, rest, &caller)
        .map_err(|e| ExplainError::Refused(e.to_string()))?;
    let needs_session = match plan {
        Plan::Local(resp) => {
            let _ = writeln!(
                out,
                "\ncountersign answers this call itself ({}); nothing goes upstream.",
                resp.status()
            );
            return Ok(out);
        }
        Plan::LocalWithSession => {
            let _ = writeln!(
                out,
                "\ncountersign answers this call itself from the session it holds (logging in first if needed); the session is never revealed."
            );
            return Ok(out);
        }
        Plan::Forward(f) => {
            if f.endpoint > 0 {
                if let Some((origin, base_path)) = kind.endpoints().get(f.endpoint - 1) {
                    let alt = format!("{}{base_path}", origin.to_string().trim_end_matches('/'));
                    let _ = writeln!(out, "this call goes to the kind's endpoint {alt}");
                    base = alt;
                }
            }
            !matches!(f.session, Need::Nothing)
        }
    };
    if needs_session {
        if let Some(login) = kind.login_request() {
            out.push_str(
                "\n1. when no session is held (or it expired), countersign first logs in:\n",
            );
            let inputs = kind.signature_inputs(&login);
            let login_base = kind.login_origin().unwrap_or_else(|| base.clone());
            show(&mut out, &login_base, &login, &secrets, &inputs);
            out.push_str("\n2. then sends the call:\n");
        }
    } else {
        out.push_str("\nthe call, sent without a session:\n");
    }
    let mut call = Outgoing {
        method,
        path_and_query: path.clone(),
        headers: crate::headers::outgoing(
            &caller,
            kind.owned_headers(),
            !config.clients.is_empty(),
        ),
        body: data.map(|d| Bytes::from(d.to_string())),
    };
    let placeholder = Secret::new(SESSION_PLACEHOLDER);
    let inputs = kind
        .sign_explained(&mut call, needs_session.then_some(&placeholder))
        .map_err(|e| ExplainError::Refused(e.to_string()))?;
    show(&mut out, &base, &call, &secrets, &inputs);
    Ok(out)
}

/// Every form a secret takes in a request, longest first: as it is,
/// JSON-escaped (serde's and Python's ASCII-only escapes, as the TTS body
/// writes it), percent-encoded (RFC 3986, and forms' `+` for space). A
/// kind lists what it derives from its secrets (a Basic credential) itself.
fn secret_forms(secrets: &[(&'static str, Secret)]) -> Vec<(String, &'static str)> {
    let mut forms = Vec::new();
    for (name, s) in secrets {
        let raw = s.expose();
        if raw.is_empty() {
            continue;
        }
        let unquote = |q: String| q[1..q.len() - 1].to_string();
        let py = crate::canonical::pyjson::dumps_sorted(&crate::canonical::pyjson::Value::Str(
            raw.to_string(),
        ));
        let candidates = [
            raw.to_string(),
            unquote(serde_json::Value::String(raw.to_string()).to_string()),
            unquote(py),
            crate::canonical::pct::encode(raw.as_bytes()),
            form_urlencoded::byte_serialize(raw.as_bytes()).collect(),
        ];
        for c in candidates {
            if !c.is_empty() && !forms.iter().any(|(f, _)| *f == c) {
                forms.push((c, *name));
            }
        }
    }
    forms.sort_by_key(|(f, _)| std::cmp::Reverse(f.len()));
    forms
}

fn show(
    out: &mut String,
    base: &str,
    req: &Outgoing,
    secrets: &[(&'static str, Secret)],
    inputs: &[(String, String)],
) {
    let forms = secret_forms(secrets);
    let redact = |text: &str| {
        let mut t = text.to_string();
        for (form, name) in &forms {
            t = t.replace(form.as_str(), &format!("[{name} redacted]"));
        }
        t
    };
    let _ = writeln!(
        out,
        "   {} {}",
        req.method,
        redact(&format!("{base}{}", req.path_and_query))
    );
    for (name, value) in &req.headers {
        let _ = writeln!(
            out,
            "   {name}: {}",
            redact(&String::from_utf8_lossy(value.as_bytes()))
        );
    }
    if let Some(body) = &req.body {
        let _ = writeln!(out, "\n   {}", redact(&String::from_utf8_lossy(body)));
    }
    if inputs.is_empty() {
        let _ = writeln!(
            out,
            "   (no signature: the credential is the session / key shown above)"
        );
    }
    for (what, input) in inputs.iter() {
        let _ = writeln!(out, "   signature input ({what}): {}", redact(input));
    }
}

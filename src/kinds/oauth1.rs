//! OAuth 1.0a (RFC 5849): every request signed with the consumer's (and the
//! token's) secret in an `Authorization: OAuth …` header (§3.5.1), with a
//! fresh nonce and timestamp. HMAC-SHA1 (§3.4.2), HMAC-SHA256 (the same
//! construction with SHA-256) or PLAINTEXT (§3.4.4).

use std::sync::Arc;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use rand::distr::{Alphanumeric, SampleString};

use super::{BuildEnv, KindRef, KindRow, KindSettings};
use crate::canonical::pct;
use crate::config::{KindDefaults, Section};
use crate::error::ProxyError;
use crate::secret::Secret;
use crate::vocab::{fingerprint, identity, Kind, Outgoing, Plan};

pub const ROW: KindRow = KindRow {
    name: "oauth1",
    defaults: KindDefaults::PLAIN,
    parse: |s| Settings::parse(s).map(|k| Arc::new(k) as KindRef),
};

const OWNED: &[HeaderName] = &[AUTHORIZATION];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method1 {
    HmacSha1,
    HmacSha256,
    Plaintext,
}

impl Method1 {
    fn as_str(self) -> &'static str {
        match self {
            Method1::HmacSha1 => "HMAC-SHA1",
            Method1::HmacSha256 => "HMAC-SHA256",
            Method1::Plaintext => "PLAINTEXT",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub consumer_key: String,
    pub consumer_secret: Secret,
    /// The access token and its secret, when requests are made on a user's behalf.
    pub token: Option<(String, Secret)>,
    pub method: Method1,
    pub realm: Option<String>,
}

impl Settings {
    pub fn parse(s: &mut Section<'_>) -> Option<Settings> {
        let consumer_key: Option<String> = s.required("consumer_key");
        let consumer_secret = s.secret("consumer_secret", true);
        let token: Option<String> = s.get("token");
        let token_secret = s.secret("token_secret", false);
        let token = match (token, token_secret) {
            (Some(t), Some(ts)) => Some((t, ts)),
            (None, None) => None,
            (Some(_), None) => {
                s.problem("token_secret", "is required with token");
                None
            }
            (None, Some(_)) => {
                s.problem("token", "is required with token_secret");
                None
            }
        };
        let method = match s.get::<String>("signature_method").as_deref() {
            None | Some("HMAC-SHA1") => Method1::HmacSha1,
            Some("HMAC-SHA256") => Method1::HmacSha256,
            Some("PLAINTEXT") => Method1::Plaintext,
            Some(_) => {
                s.problem(
                    "signature_method",
                    "must be HMAC-SHA1, HMAC-SHA256 or PLAINTEXT",
                );
                Method1::HmacSha1
            }
        };
        let realm: Option<String> = s.get("realm");
        for (key, value) in [("consumer_key", &consumer_key), ("realm", &realm)] {
            if value
                .as_deref()
                .is_some_and(|v| v.contains(['"', '\r', '\n']))
            {
                s.problem(key, "must not contain quotes or line breaks");
            }
        }
        Some(Settings {
            consumer_key: consumer_key?,
            consumer_secret: consumer_secret?,
            token,
            method,
            realm,
        })
    }
}

impl KindSettings for Settings {
    fn build(&self, env: &BuildEnv<'_>) -> Result<Arc<dyn Kind>, String> {
        if self.method == Method1::Plaintext && env.route.upstream.scheme_str() == Some("http") {
            tracing::warn!(route = %env.route.name, "signature_method PLAINTEXT over http:// sends the consumer secret in clear to anyone on the path");
        }
        Ok(Arc::new(OAuth1 {
            settings: self.clone(),
            base_uri: base_uri(&env.route.upstream, &env.route.base_path),
        }))
    }
}

/// §3.4.1.2: scheme and host in lower case, the default port left out, the
/// upstream's base path; the request's path is appended per request.
fn base_uri(origin: &Uri, base_path: &str) -> String {
    let scheme = origin.scheme_str().unwrap_or("https").to_ascii_lowercase();
    let host = origin.host().unwrap_or("").to_ascii_lowercase();
    let default = if scheme == "https" { 443 } else { 80 };
    match origin.port_u16() {
        Some(p) if p != default => format!("{scheme}://{host}:{p}{base_path}"),
        _ => format!("{scheme}://{host}{base_path}"),
    }
}

pub struct OAuth1 {
    settings: Settings,
    /// `scheme://host[:port]/base`, as the base string writes it.
    base_uri: String,
}

/// The oauth parameters of one signature, in the order they are written.
struct OAuthParams {
    pairs: Vec<(&'static str, String)>,
}

impl OAuth1 {
    fn oauth_params(&self, timestamp: u64, nonce: &str) -> OAuthParams {
        let s = &self.settings;
        let mut pairs = vec![("oauth_consumer_key", s.consumer_key.clone())];
        if let Some((token, _)) = &s.token {
            pairs.push(("oauth_token", token.clone()));
        }
        pairs.push(("oauth_signature_method", s.method.as_str().into()));
        pairs.push(("oauth_timestamp", timestamp.to_string()));
        pairs.push(("oauth_nonce", nonce.to_string()));
        pairs.push(("oauth_version", "1.0".into()));
        OAuthParams { pairs }
    }

    /// §3.4.2's key: both secrets encoded, joined by '&' (empty token secret
    /// without a token).
    fn key(&self) -> String {
        let s = &self.settings;
        let mut key = pct::encode(s.consumer_secret.expose().as_bytes());
        key.push('&');
        if let Some((_, ts)) = &s.token {
            pct::push_encoded(&mut key, ts.expose().as_bytes());
        }
        key
    }

    /// §3.4.1: method, base string URI and normalised parameters.
    fn base_string(&self, out: &Outgoing, oauth: &OAuthParams) -> String {
        let (path, query) = match out.path_and_query.split_once('?') {
            Some((p, q)) => (p, q),
            None => (out.path_and_query.as_str(), ""),
        };
        let mut params: Vec<(String, String)> = Vec::new();
        let mut add = |raw: &[u8]| {
            for (n, v) in form_urlencoded::parse(raw) {
                params.push((pct::encode(n.as_bytes()), pct::encode(v.as_bytes())));
            }
        };
        add(query.as_bytes());
        if let Some(body) = out.body.as_ref().filter(|_| is_form(&out.headers)) {
            add(body);
        }
        for (n, v) in &oauth.pairs {
            params.push((pct::encode(n.as_bytes()), pct::encode(v.as_bytes())));
        }
        params.sort_unstable();
        let mut normalised =
            String::with_capacity(params.iter().map(|(n, v)| n.len() + v.len() + 2).sum());
        for (i, (n, v)) in params.iter().enumerate() {
            if i > 0 {
                normalised.push('&');
            }
            normalised.push_str(n);
            normalised.push('=');
            normalised.push_str(v);
        }
        let mut base =
            String::with_capacity(16 + 3 * (self.base_uri.len() + path.len() + normalised.len()));
        base.push_str(&out.method.as_str().to_ascii_uppercase());
        base.push('&');
        pct::push_encoded(&mut base, self.base_uri.as_bytes());
        pct::push_encoded(&mut base, path.as_bytes());
        base.push('&');
        pct::push_encoded(&mut base, normalised.as_bytes());
        base
    }

    fn signature(&self, base: &str) -> String {
        let key = self.key();
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        match self.settings.method {
            Method1::Plaintext => key,
            Method1::HmacSha1 => {
                // HMAC takes keys of any length: this cannot fail.
                let mut mac = <Hmac<sha1::Sha1> as Mac>::new_from_slice(key.as_bytes())
                    .unwrap_or_else(|_| unreachable!());
                mac.update(base.as_bytes());
                b64(&mac.finalize().into_bytes())
            }
            Method1::HmacSha256 => {
                let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key.as_bytes())
                    .unwrap_or_else(|_| unreachable!());
                mac.update(base.as_bytes());
                b64(&mac.finalize().into_bytes())
            }
        }
    }

    /// Signs `out` with this timestamp and nonce (tests pin both).
    fn sign_with(&self, out: &mut Outgoing, timestamp: u64, nonce: &str) -> Result<(), ProxyError> {
        let oauth = self.oauth_params(timestamp, nonce);
        let signature = self.signature(&self.base_string(out, &oauth));
        // §3.5.1: realm first (not signed), then each parameter encoded and quoted.
        let mut header = String::from("OAuth ");
        if let Some(realm) = &self.settings.realm {
            header.push_str(&format!("realm=\"{realm}\", "));
        }
        for (n, v) in oauth
            .pairs
            .iter()
            .map(|(n, v)| (*n, v.as_str()))
            .chain([("oauth_signature", signature.as_str())])
        {
            header.push_str(n);
            header.push_str("=\"");
            pct::push_encoded(&mut header, v.as_bytes());
            header.push_str("\", ");
        }
        header.truncate(header.len() - 2);
        let value = HeaderValue::from_str(&header)
            .map_err(|_| ProxyError::Internal("the OAuth header is not a valid header".into()))?;
        out.headers.insert(AUTHORIZATION, value);
        Ok(())
    }
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// `text` (a query or form body) without its `oauth_*` parameters: only
/// countersign signs (a caller's own would be signed over, or conflict).
fn without_oauth(text: &[u8]) -> Option<Vec<u8>> {
    // Nearly always neither an `oauth_` nor an escape that could spell one.
    if memchr::memmem::find(text, b"oauth_").is_none() && !text.contains(&b'%') {
        return None;
    }
    let is_oauth = |pair: &[u8]| {
        let name = pair.split(|b| *b == b'=').next().unwrap_or(pair);
        form_urlencoded::parse(name)
            .next()
            .is_some_and(|(n, _)| n.starts_with("oauth_"))
            || name.starts_with(b"oauth_")
    };
    if !text.split(|b| *b == b'&').any(is_oauth) {
        return None;
    }
    let kept: Vec<&[u8]> = text
        .split(|b| *b == b'&')
        .filter(|p| !p.is_empty() && !is_oauth(p))
        .collect();
    Some(kept.join(&b'&'))
}

impl Kind for OAuth1 {
    fn credential_id(&self) -> String {
        let s = &self.settings;
        let token = s.token.as_ref().map(|(t, _)| t.as_str()).unwrap_or("");
        identity(
            "oauth1",
            &[
                &self.base_uri,
                &s.consumer_key,
                token,
                &fingerprint(&s.consumer_secret),
            ],
        )
    }

    /// 0.1 used the same identity, without the route's upstream.
    fn legacy_credential_id(&self) -> Option<String> {
        Some(self.credential_id())
    }

    fn owned_headers(&self) -> &[HeaderName] {
        OWNED
    }

    fn plan(&self, _: &Method, _: &str, headers: &HeaderMap) -> Result<Plan, ProxyError> {
        // A form body's parameters are signed: it is read whole; others stream.
        Ok(Plan::forward(false, is_form(headers)))
    }

    fn sign(&self, out: &mut Outgoing, _: Option<&Secret>) -> Result<(), ProxyError> {
        if let Some((path, query)) = out.path_and_query.split_once('?') {
            if let Some(kept) = without_oauth(query.as_bytes()) {
                let kept = String::from_utf8_lossy(&kept).into_owned();
                out.path_and_query = if kept.is_empty() {
                    path.to_string()
                } else {
                    format!("{path}?{kept}")
                };
            }
        }
        if is_form(&out.headers) {
            if let Some(kept) = out.body.as_deref().and_then(without_oauth) {
                out.body = Some(kept.into());
            }
        }
        let timestamp = crate::vocab::now_ms() / 1000;
        // 24 letters and digits: oauthlib (a common verifier) wants 20 to 30.
        let nonce = Alphanumeric.sample_string(&mut rand::rng(), 24);
        self.sign_with(out, timestamp, &nonce)
    }

    fn secrets(&self) -> Vec<(&'static str, Secret)> {
        let mut all = vec![("consumer_secret", self.settings.consumer_secret.clone())];
        if let Some((_, ts)) = &self.settings.token {
            all.push(("token_secret", ts.clone()));
        }
        all
    }

    fn signature_inputs(&self, out: &Outgoing) -> Vec<(String, String)> {
        // The oauth parameters as signed, read back from the header.
        let Some(header) = out.headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
            return Vec::new();
        };
        let field = |name: &str| {
            header.split(", ").find_map(|p| {
                let v = p.trim_start_matches("OAuth ").strip_prefix(name)?;
                let v = v.strip_prefix("=\"")?.strip_suffix('"')?;
                pct::decode(v).map(|b| String::from_utf8_lossy(&b).into_owned())
            })
        };
        let (Some(ts), Some(nonce)) = (field("oauth_timestamp"), field("oauth_nonce")) else {
            return Vec::new();
        };
        let ts = ts.parse().unwrap_or(0);
        let oauth = self.oauth_params(ts, &nonce);
        let what = match self.settings.method {
            Method1::Plaintext => "PLAINTEXT: the signature is the key; base string (not used)",
            _ => "signature base string (RFC 5849 §3.4.1)",
        };
        vec![(what.into(), self.base_string(out, &oauth))]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(method: Method1, with_token: bool, realm: Option<&str>, upstream: &str) -> OAuth1 {
        let (origin, base) = crate::config::parse_upstream(upstream).unwrap();
        OAuth1 {
            settings: Settings {
                consumer_key: "dpf43f3p2l4k3l03".into(),
                consumer_secret: Secret::new("kd94hf93k423kf44"),
                token: with_token
                    .then(|| ("nnch734d00sl2jdk".into(), Secret::new("pfkkdhi9sl3r4s00"))),
                method,
                realm: realm.map(str::to_string),
            },
            base_uri: base_uri(&origin, &base),
        }
    }

    fn header(out: &Outgoing) -> String {
        out.headers[AUTHORIZATION].to_str().unwrap().to_string()
    }

    /// RFC 5849 §1.2: the photos example, signature `MdpQcU8iPSUjWoN/UDMsK2sui9I=`.
    /// (Its oauth parameters carry no oauth_version, so the parameters are
    /// built here as the RFC lists them.)
    #[test]
    fn rfc_5849_1_2_photos_example() {
        let k = kind(Method1::HmacSha1, true, None, "http://photos.example.net");
        let out = Outgoing {
            method: Method::GET,
            path_and_query: "/photos?file=vacation.jpg&size=original".into(),
            headers: HeaderMap::new(),
            body: None,
        };
        let mut oauth = k.oauth_params(137131202, "chapoH");
        oauth.pairs.retain(|(n, _)| *n != "oauth_version");
        let base = k.base_string(&out, &oauth);
        assert_eq!(
            base,
            "GET&http%3A%2F%2Fphotos.example.net%2Fphotos&file%3Dvacation.jpg%26oauth_consumer_key%3Ddpf43f3p2l4k3l03%26oauth_nonce%3DchapoH%26oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D137131202%26oauth_token%3Dnnch734d00sl2jdk%26size%3Doriginal"
        );
        assert_eq!(k.signature(&base), "MdpQcU8iPSUjWoN/UDMsK2sui9I=");
    }

    /// RFC 5849 §3.4.1.1: the full base string of its example request
    /// (query, form body, and the oauth parameters of its header).
    #[test]
    fn rfc_5849_3_4_1_1_base_string() {
        let k = kind(
            Method1::HmacSha1,
            true,
            Some("Example"),
            "http://example.com",
        );
        let mut k = k;
        k.settings.consumer_key = "9djdj82h48djs9d2".into();
        k.settings.token = Some(("kkk9d7dh3k39sjv7".into(), Secret::new("x")));
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        let out = Outgoing {
            method: Method::POST,
            path_and_query: "/request?b5=%3D%253D&a3=a&c%40=&a2=r%20b".into(),
            headers,
            body: Some(bytes::Bytes::from_static(b"c2&a3=2+q")),
        };
        let mut oauth = k.oauth_params(137131201, "7d8f3e4a");
        oauth.pairs.retain(|(n, _)| *n != "oauth_version");
        assert_eq!(
            k.base_string(&out, &oauth),
            "POST&http%3A%2F%2Fexample.com%2Frequest&a2%3Dr%2520b%26a3%3D2%2520q%26a3%3Da%26b5%3D%253D%25253D%26c%2540%3D%26c2%3D%26oauth_consumer_key%3D9djdj82h48djs9d2%26oauth_nonce%3D7d8f3e4a%26oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D137131201%26oauth_token%3Dkkk9d7dh3k39sjv7"
        );
    }

    /// HMAC-SHA256 and PLAINTEXT of the §1.2 request; the HMAC value from
    /// Python: base64(hmac.new(b"kd94hf93k423kf44&pfkkdhi9sl3r4s00",
    /// <the base string below>, sha256).digest()).
    #[test]
    fn hmac_sha256_and_plaintext() {
        let k = kind(Method1::HmacSha256, true, None, "http://photos.example.net");
        let base = "GET&http%3A%2F%2Fphotos.example.net%2Fphotos&file%3Dvacation.jpg%26oauth_consumer_key%3Ddpf43f3p2l4k3l03%26oauth_nonce%3DchapoH%26oauth_signature_method%3DHMAC-SHA256%26oauth_timestamp%3D137131202%26oauth_token%3Dnnch734d00sl2jdk%26size%3Doriginal";
        assert_eq!(k.signature(base), PY_SHA256);
        let k = kind(Method1::Plaintext, true, None, "http://photos.example.net");
        assert_eq!(k.signature("ignored"), "kd94hf93k423kf44&pfkkdhi9sl3r4s00");
        let k = kind(Method1::Plaintext, false, None, "http://photos.example.net");
        assert_eq!(k.signature("ignored"), "kd94hf93k423kf44&");
    }

    const PY_SHA256: &str = "HtMwoX2zenlFjgGg/SNEoKEQmL7CzxYFEKzs7er044Y=";

    #[test]
    fn the_header_is_3_5_1_and_a_callers_oauth_params_are_dropped() {
        let k = kind(
            Method1::HmacSha1,
            true,
            Some("Photos"),
            "https://Photos.Example.net:443/v1",
        );
        let mut out = Outgoing {
            method: Method::GET,
            path_and_query: "/photos?oauth_signature=forged&size=original&oauth_token=x".into(),
            headers: HeaderMap::new(),
            body: None,
        };
        k.sign(&mut out, None).unwrap();
        assert_eq!(out.path_and_query, "/photos?size=original");
        let h = header(&out);
        assert!(h.starts_with("OAuth realm=\"Photos\", oauth_consumer_key=\"dpf43f3p2l4k3l03\", oauth_token=\"nnch734d00sl2jdk\", oauth_signature_method=\"HMAC-SHA1\", oauth_timestamp=\""), "{h}");
        assert!(
            h.contains("oauth_version=\"1.0\", oauth_signature=\""),
            "{h}"
        );
        // The base string URI: lower case, default port dropped, base path kept.
        let inputs = k.signature_inputs(&out);
        assert!(
            inputs[0]
                .1
                .starts_with("GET&https%3A%2F%2Fphotos.example.net%2Fv1%2Fphotos&"),
            "{:?}",
            inputs
        );
        // Fresh nonce and timestamp per signature.
        let mut again = Outgoing {
            method: Method::GET,
            path_and_query: "/photos".into(),
            headers: HeaderMap::new(),
            body: None,
        };
        k.sign(&mut again, None).unwrap();
        let nonce = |h: &str| h.split("oauth_nonce=\"").nth(1).unwrap()[..24].to_string();
        assert_ne!(nonce(&h), nonce(&header(&again)));
    }
}

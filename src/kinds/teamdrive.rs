//! TeamDrive Registration Server API
//! (`teamdrive-registration-server-api.txt`): XML over POST only;
//! `<requesttime>` set to now, `<distributor>` added when configured; the
//! `checksum` query parameter is the lowercase hex md5(body ‖ key) or
//! HMAC-SHA1(key, body) over exactly the bytes sent.

use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName, Method};
use md5::{Digest, Md5};
use sha1::Sha1;

use super::{BuildEnv, KindRef, KindRow, KindSettings};
use crate::canonical::xml;
use crate::config::{KindDefaults, Section};
use crate::error::ProxyError;
use crate::secret::Secret;
use crate::vocab::{fingerprint, identity, now_ms, Kind, Outgoing, Plan};

pub const ROW: KindRow = KindRow {
    name: "teamdrive",
    defaults: KindDefaults::PLAIN,
    parse: |s| Settings::parse(s).map(|k| std::sync::Arc::new(k) as KindRef),
};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Auth {
    Md5,
    HmacSha1,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub auth: Auth,
    pub key: Secret,
    pub distributor: Option<String>,
    /// `requesttime = "set"` (default) puts the current time in every body.
    pub set_requesttime: bool,
}

impl Settings {
    pub fn parse(s: &mut Section<'_>) -> Option<Settings> {
        let auth = match s.required::<String>("auth").as_deref() {
            Some("md5") => Some(Auth::Md5),
            Some("hmac-sha1") => Some(Auth::HmacSha1),
            Some(_) => {
                s.problem("auth", "must be \"md5\" or \"hmac-sha1\"");
                None
            }
            None => None,
        };
        let key = s.secret("key", true);
        let distributor = s.get::<String>("distributor");
        let set_requesttime = match s.get::<String>("requesttime").as_deref() {
            None | Some("set") => true,
            Some("keep") => false,
            Some(_) => {
                s.problem("requesttime", "must be \"set\" or \"keep\"");
                true
            }
        };
        Some(Settings {
            auth: auth?,
            key: key?,
            distributor,
            set_requesttime,
        })
    }
}

impl KindSettings for Settings {
    fn build(&self, _: &BuildEnv<'_>) -> Result<std::sync::Arc<dyn Kind>, String> {
        Ok(std::sync::Arc::new(Teamdrive::new(self.clone())))
    }
}

pub struct Teamdrive {
    settings: Settings,
}

impl Teamdrive {
    pub fn new(settings: Settings) -> Self {
        Teamdrive { settings }
    }
}

/// The authorisation hash of the API document, lowercase hex.
pub fn checksum(auth: Auth, key: &[u8], body: &[u8]) -> String {
    let mut out = String::with_capacity(40);
    push_checksum(&mut out, auth, key, body);
    out
}

/// [`checksum`], appended to `out`.
fn push_checksum(out: &mut String, auth: Auth, key: &[u8], body: &[u8]) {
    match auth {
        Auth::Md5 => {
            let mut h = Md5::new();
            h.update(body);
            h.update(key);
            crate::canonical::push_hex(out, &h.finalize());
        }
        Auth::HmacSha1 => {
            // HMAC accepts keys of any length; this cannot fail.
            let mut mac =
                <Hmac<Sha1> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
            mac.update(body);
            crate::canonical::push_hex(out, &mac.finalize().into_bytes());
        }
    }
}

/// Appends `pq` to `out` without any `checksum` parameter the caller sent.
fn push_without_checksum(out: &mut String, pq: &str) {
    let Some((path, query)) = pq.split_once('?') else {
        out.push_str(pq);
        return;
    };
    if !query.contains("checksum") {
        out.push_str(pq);
        return;
    }
    out.push_str(path);
    let kept = query
        .split('&')
        .filter(|p| !p.is_empty() && p.split('=').next() != Some("checksum"));
    for (i, part) in kept.enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(part);
    }
}

impl Kind for Teamdrive {
    fn credential_id(&self) -> String {
        identity("teamdrive", &[&fingerprint(&self.settings.key)])
    }

    fn legacy_credential_id(&self) -> Option<String> {
        Some(format!("teamdrive-{}", fingerprint(&self.settings.key)))
    }

    fn owned_headers(&self) -> &[HeaderName] {
        &[]
    }

    fn plan(&self, method: &Method, _: &str, _: &HeaderMap) -> Result<Plan, ProxyError> {
        if method != Method::POST {
            return Err(ProxyError::MethodNotAllowed(
                "the TeamDrive API accepts POST only".into(),
            ));
        }
        Ok(Plan::forward(false, true))
    }

    fn secrets(&self) -> Vec<(&'static str, Secret)> {
        vec![("key", self.settings.key.clone())]
    }

    fn sign(&self, out: &mut Outgoing, _: Option<&Secret>) -> Result<(), ProxyError> {
        let body = out.body.take().unwrap_or_default();
        let now = self.settings.set_requesttime.then(|| now_ms() / 1000);
        let (edited, _) = xml::edit(&body, now, self.settings.distributor.as_deref())
            .map_err(|e| ProxyError::BadRequestBody(e.to_string()))?;
        // One string, sized once: the path, the caller's other parameters, the checksum.
        let mut pq = String::with_capacity(out.path_and_query.len() + 50);
        push_without_checksum(&mut pq, &out.path_and_query);
        pq.push(if pq.contains('?') { '&' } else { '?' });
        pq.push_str("checksum=");
        push_checksum(
            &mut pq,
            self.settings.auth,
            self.settings.key.expose().as_bytes(),
            &edited,
        );
        out.path_and_query = pq;
        out.body = Some(edited.into());
        Ok(())
    }

    fn signature_inputs(&self, out: &Outgoing) -> Vec<(String, String)> {
        let body = out
            .body
            .as_deref()
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        let what = match self.settings.auth {
            Auth::Md5 => "md5 over the body followed by the key",
            Auth::HmacSha1 => "HMAC-SHA1 with the key over the body",
        };
        vec![(what.into(), body.into_owned())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Known answers from the API document's own recipe, run once:
    //   REQUEST="<?xml version='1.0' encoding='UTF-8' ?><teamdrive><command>loginuser</command><requesttime>1700000000</requesttime><username>YourUserName</username><password>YourPassword</password></teamdrive>"
    //   KEY="APIChecksumSalt-demo"
    //   echo -n "$REQUEST$KEY" | md5sum                    -> f9c61fe22f8d25a501fa9c3b23179b2c
    //   echo -n "$REQUEST" | openssl dgst -sha1 -hmac "$KEY" -> 37d25e7ed925e1f1a0ad2ddb7e29d12809849a9b
    const REQUEST: &str = "<?xml version='1.0' encoding='UTF-8' ?><teamdrive><command>loginuser</command><requesttime>1700000000</requesttime><username>YourUserName</username><password>YourPassword</password></teamdrive>";
    const KEY: &str = "APIChecksumSalt-demo";

    #[test]
    fn checksums_match_the_documents_recipe() {
        assert_eq!(
            checksum(Auth::Md5, KEY.as_bytes(), REQUEST.as_bytes()),
            "f9c61fe22f8d25a501fa9c3b23179b2c"
        );
        assert_eq!(
            checksum(Auth::HmacSha1, KEY.as_bytes(), REQUEST.as_bytes()),
            "37d25e7ed925e1f1a0ad2ddb7e29d12809849a9b"
        );
    }

    #[test]
    fn sign_keeps_the_body_and_replaces_the_callers_checksum() {
        let k = Teamdrive::new(Settings {
            auth: Auth::Md5,
            key: Secret::new(KEY),
            distributor: None,
            set_requesttime: false,
        });
        let mut out = Outgoing {
            method: Method::POST,
            path_and_query: "/yvva/api/api.xml?checksum=forged&x=1".into(),
            headers: HeaderMap::new(),
            body: Some(REQUEST.into()),
        };
        k.sign(&mut out, None).unwrap();
        assert_eq!(out.body.as_deref(), Some(REQUEST.as_bytes()));
        assert_eq!(
            out.path_and_query,
            "/yvva/api/api.xml?x=1&checksum=f9c61fe22f8d25a501fa9c3b23179b2c"
        );
    }

    #[test]
    fn only_the_callers_checksum_parameters_are_dropped() {
        for (pq, want) in [
            ("/a", "/a"),
            ("/a?x=1", "/a?x=1"),
            ("/a?checksum=f", "/a"),
            ("/a?checksum", "/a"),
            ("/a?x=1&checksum=f&y=2&checksum=g", "/a?x=1&y=2"),
            ("/a?checksums=1&&x=checksum", "/a?checksums=1&x=checksum"),
        ] {
            let mut out = String::new();
            push_without_checksum(&mut out, pq);
            assert_eq!(out, want, "{pq}");
        }
    }

    #[test]
    fn only_post() {
        let k = Teamdrive::new(Settings {
            auth: Auth::Md5,
            key: Secret::new("k"),
            distributor: None,
            set_requesttime: true,
        });
        assert_eq!(
            k.plan(&Method::GET, "/", &HeaderMap::new())
                .err()
                .map(|e| e.code()),
            Some("method_not_allowed")
        );
    }
}

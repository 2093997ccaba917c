//! The fake's policy around the SigV4 arithmetic of `sigv4.rs`: which
//! credential, which scope, which clock, which headers must be signed, which
//! payload hashes are acceptable. Every refusal is a [`Denial`]; `s3.rs` and
//! `dynamo.rs` turn it into the error AWS would send.

use std::time::{Duration, SystemTime};

use super::codec;
use super::sigv4::{self, Authorization, Computed, Received, Unbuildable, UriRule};

/// What the fake knows of an access key.
#[derive(Clone)]
pub struct Entry {
    pub secret: String,
    /// Temporary credentials: the `x-amz-security-token` they must carry.
    pub token: Option<String>,
    /// Issued credentials stop working at this instant.
    pub expires: Option<SystemTime>,
}

/// The expectations of one route of the fake.
pub struct Policy<'a> {
    pub region: &'a str,
    /// The signing name this route belongs to.
    pub service: &'a str,
    /// [`UriRule::for_service`] of `service`, except in the suite's tests of
    /// unnormalised paths under a non-S3 name.
    pub rule: UriRule,
    pub skew: Duration,
    pub now: SystemTime,
    /// AWS IoT-style: the session token may be added after signing
    /// (aws-c-auth's `omit_session_token`; suite case post-sts-header-after).
    pub allow_unsigned_token: bool,
}

impl Policy<'_> {
    fn is_s3(&self) -> bool {
        self.service == "s3"
    }
}

#[derive(Clone, Debug)]
pub enum Denial {
    MissingAuthorization,
    /// Query-string (presigned) authentication: not implemented by the fake.
    Presigned,
    Malformed(String),
    WrongRegion {
        got: String,
        want: String,
    },
    WrongService {
        got: String,
        want: String,
    },
    NoDate,
    BadDate(String),
    DateNotScope {
        scope: String,
        amz_date: String,
    },
    /// Headers the request carries that had to be signed and were not.
    NotSigned(Vec<String>),
    UnknownKey(String),
    Expired(String),
    MissingToken(String),
    BadToken(String),
    Skewed {
        request: SystemTime,
        server: SystemTime,
        skew: Duration,
    },
    NoContentSha,
    BadContentSha(String),
    /// `STREAMING-…` payloads (aws-chunked): refused, as the DESIGN's S3 does.
    Streaming(String),
    ContentShaMismatch {
        client: String,
        computed: String,
    },
    BadEscape(&'static str),
    Signature {
        access_key_id: String,
        provided: String,
        computed: Box<Computed>,
    },
}

impl Denial {
    /// One line naming exactly what failed, for `stats().last_rejection`.
    pub fn reason(&self) -> String {
        match self {
            Denial::MissingAuthorization => "no Authorization header".into(),
            Denial::Presigned => "query-string authentication is not implemented".into(),
            Denial::Malformed(m) => format!("malformed Authorization: {m}"),
            Denial::WrongRegion { got, want } => {
                format!("credential scope region {got:?}, expected {want:?}")
            }
            Denial::WrongService { got, want } => {
                format!("credential scope service {got:?}, expected {want:?}")
            }
            Denial::NoDate => "no x-amz-date header".into(),
            Denial::BadDate(d) => format!("x-amz-date {d:?} is not YYYYMMDDTHHMMSSZ"),
            Denial::DateNotScope { scope, amz_date } => {
                format!("credential scope date {scope} is not the date of x-amz-date {amz_date}")
            }
            Denial::NotSigned(h) => format!("headers present but not signed: {}", h.join(", ")),
            Denial::UnknownKey(k) => format!("unknown access key id {k:?}"),
            Denial::Expired(k) => format!("credentials of {k:?} have expired"),
            Denial::MissingToken(k) => {
                format!("temporary credentials {k:?} need an x-amz-security-token header")
            }
            Denial::BadToken(k) => format!("x-amz-security-token is not the one issued with {k:?}"),
            Denial::Skewed {
                request, server, ..
            } => format!(
                "x-amz-date {} is too far from the fake's clock {}",
                codec::amz_date(*request),
                codec::amz_date(*server)
            ),
            Denial::NoContentSha => "no x-amz-content-sha256 header (required by S3)".into(),
            Denial::BadContentSha(v) => format!("x-amz-content-sha256 {v:?} is not a SHA-256"),
            Denial::Streaming(v) => {
                format!("x-amz-content-sha256 {v:?}: aws-chunked uploads are refused")
            }
            Denial::ContentShaMismatch { client, computed } => {
                format!("x-amz-content-sha256 {client} but the body's SHA-256 is {computed}")
            }
            Denial::BadEscape(w) => format!("malformed percent-escape in the {w}"),
            Denial::Signature { computed, .. } => format!(
                "signature does not match; canonical request was {:?}",
                String::from_utf8_lossy(&computed.canonical_request)
            ),
        }
    }
}

impl From<Unbuildable> for Denial {
    fn from(u: Unbuildable) -> Self {
        match u {
            Unbuildable::BadEscape(w) => Denial::BadEscape(w),
            Unbuildable::MissingHeader(h) => {
                Denial::Malformed(format!("signed header {h:?} is not in the request"))
            }
        }
    }
}

/// Headers that must be signed and are not: `host` and `x-amz-date` always,
/// and every `x-amz-*` header the request carries (S3's HeadersNotSigned rule).
fn unsigned(req: &Received<'_>, auth: &Authorization, policy: &Policy<'_>) -> Vec<String> {
    let signed = |n: &str| auth.signed_headers.iter().any(|s| s == n);
    let mut missing: Vec<String> = ["host", "x-amz-date"]
        .into_iter()
        .filter(|n| !signed(n))
        .map(String::from)
        .collect();
    for (name, _) in req.headers {
        let exempt = policy.allow_unsigned_token && name == "x-amz-security-token";
        if name.starts_with("x-amz-") && !signed(name) && !exempt && !missing.contains(name) {
            missing.push(name.clone());
        }
    }
    missing
}

/// The payload hash the canonical request ends with, after checking the
/// `x-amz-content-sha256` header: required for S3 (a body hash or
/// `UNSIGNED-PAYLOAD`); elsewhere the body's own hash, and the header, when
/// present, must be that hash.
fn payload_hash(req: &Received<'_>, policy: &Policy<'_>) -> Result<String, Denial> {
    let computed = sigv4::sha256_hex(req.body);
    let Some(claimed) = req.header("x-amz-content-sha256") else {
        if req.values("x-amz-content-sha256").next().is_some() {
            return Err(Denial::BadContentSha("(repeated)".into()));
        }
        return if policy.is_s3() {
            Err(Denial::NoContentSha)
        } else {
            Ok(computed)
        };
    };
    if policy.is_s3() && claimed == "UNSIGNED-PAYLOAD" {
        return Ok(claimed.into());
    }
    if claimed.starts_with("STREAMING-") {
        return Err(Denial::Streaming(claimed.into()));
    }
    let is_hash = claimed.len() == 64
        && claimed
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !is_hash {
        return Err(Denial::BadContentSha(claimed.into()));
    }
    if claimed != computed {
        return Err(Denial::ContentShaMismatch {
            client: claimed.into(),
            computed,
        });
    }
    Ok(computed)
}

fn check_token(req: &Received<'_>, akid: &str, entry: &Entry) -> Result<(), Denial> {
    let sent: Vec<&[u8]> = req.values("x-amz-security-token").collect();
    match (&entry.token, sent.as_slice()) {
        (None, []) => Ok(()),
        (Some(_), []) => Err(Denial::MissingToken(akid.into())),
        (Some(want), [got]) if sigv4::constant_time_eq(want.as_bytes(), got) => Ok(()),
        _ => Err(Denial::BadToken(akid.into())),
    }
}

/// Checks one request against the policy and the credential table (`lookup`).
pub fn authenticate(
    req: &Received<'_>,
    policy: &Policy<'_>,
    lookup: impl Fn(&str) -> Option<Entry>,
) -> Result<(), Denial> {
    let value = match req.header("authorization") {
        Some(v) => v,
        None if req.values("authorization").next().is_some() => {
            return Err(Denial::Malformed(
                "repeated or non-UTF-8 Authorization".into(),
            ))
        }
        None => {
            let presigned = codec::decode(req.query)
                .is_some_and(|q| q.windows(16).any(|w| w == b"X-Amz-Credential"));
            return Err(if presigned {
                Denial::Presigned
            } else {
                Denial::MissingAuthorization
            });
        }
    };
    let auth = sigv4::parse_authorization(value).map_err(Denial::Malformed)?;
    if auth.region != policy.region {
        return Err(Denial::WrongRegion {
            got: auth.region,
            want: policy.region.into(),
        });
    }
    if auth.service != policy.service {
        return Err(Denial::WrongService {
            got: auth.service,
            want: policy.service.into(),
        });
    }
    let amz_date = match req.header("x-amz-date") {
        Some(d) => d,
        None if req.values("x-amz-date").next().is_some() => {
            return Err(Denial::BadDate("(repeated)".into()))
        }
        None => return Err(Denial::NoDate),
    };
    let Some(when) = codec::parse_amz_date(amz_date) else {
        return Err(Denial::BadDate(amz_date.into()));
    };
    if !amz_date.starts_with(&auth.date) {
        return Err(Denial::DateNotScope {
            scope: auth.date,
            amz_date: amz_date.into(),
        });
    }
    let drift = match when.duration_since(policy.now) {
        Ok(ahead) => ahead,
        Err(behind) => behind.duration(),
    };
    if drift > policy.skew {
        return Err(Denial::Skewed {
            request: when,
            server: policy.now,
            skew: policy.skew,
        });
    }
    let missing = unsigned(req, &auth, policy);
    if !missing.is_empty() {
        return Err(Denial::NotSigned(missing));
    }
    let Some(entry) = lookup(&auth.access_key_id) else {
        return Err(Denial::UnknownKey(auth.access_key_id));
    };
    if entry.expires.is_some_and(|e| policy.now >= e) {
        return Err(Denial::Expired(auth.access_key_id));
    }
    check_token(req, &auth.access_key_id, &entry)?;
    let payload = payload_hash(req, policy)?;
    let computed = sigv4::compute(req, &auth, policy.rule, amz_date, &payload, &entry.secret)?;
    if !sigv4::constant_time_eq(computed.signature.as_bytes(), auth.signature.as_bytes()) {
        return Err(Denial::Signature {
            access_key_id: auth.access_key_id,
            provided: auth.signature,
            computed: Box::new(computed),
        });
    }
    Ok(())
}

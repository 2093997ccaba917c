//! STS `AssumeRoleWithWebIdentity` (API version 2011-06-15), the call
//! Kubernetes IRSA-style credentials start from: a POST form body or a GET
//! query, unsigned. Only configured (role ARN, token) pairs are accepted; the
//! answer and the errors are STS's XML.

use std::time::SystemTime;

use http::StatusCode;
use rand::distr::{Distribution, SampleString, Uniform};
use rand::RngCore;

use super::codec::{base64, iso8601, xml};
use super::sigv4::Received;
use super::{request_id, response, Body, WebIdentity};

const NS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

/// The parameters of an STS call, or `None` when the request is not one:
/// `/`, no `X-Amz-Target`, an `Action` in the query or in a form body.
pub fn params(req: &Received<'_>) -> Option<Vec<(String, String)>> {
    let method_ok = req.method == "GET" || req.method == "POST";
    if !method_ok || req.path != b"/" || req.values("x-amz-target").next().is_some() {
        return None;
    }
    let mut all: Vec<(String, String)> = form_urlencoded::parse(req.query)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let form = req
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    if req.method == "POST" && form {
        all.extend(form_urlencoded::parse(req.body).map(|(k, v)| (k.into_owned(), v.into_owned())));
    }
    all.iter().any(|(k, _)| k == "Action").then_some(all)
}

pub struct StsError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

fn invalid(code: &'static str, message: String) -> StsError {
    StsError {
        status: StatusCode::BAD_REQUEST,
        code,
        message,
    }
}

/// An accepted call.
pub struct Call {
    pub role_arn: String,
    pub session_name: String,
}

fn one<'p>(params: &'p [(String, String)], name: &str) -> Option<&'p str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// STS's own validation message for a missing member.
fn null(member: &str) -> StsError {
    invalid(
        "ValidationError",
        format!("1 validation error detected: Value null at '{member}' failed to satisfy constraint: Member must not be null"),
    )
}

pub fn validate(params: &[(String, String)], identities: &[WebIdentity]) -> Result<Call, StsError> {
    let action = one(params, "Action").unwrap_or_default();
    let version = one(params, "Version").unwrap_or_default();
    if action != "AssumeRoleWithWebIdentity" || version != "2011-06-15" {
        return Err(invalid(
            "InvalidAction",
            format!("Could not find operation {action} for version {version}"),
        ));
    }
    let role_arn = one(params, "RoleArn").ok_or_else(|| null("roleArn"))?;
    let session_name = one(params, "RoleSessionName").ok_or_else(|| null("roleSessionName"))?;
    let token = one(params, "WebIdentityToken").ok_or_else(|| null("webIdentityToken"))?;
    let name_ok = (2..=64).contains(&session_name.len())
        && session_name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b));
    if !name_ok {
        return Err(invalid(
            "ValidationError",
            format!("1 validation error detected: Value '{session_name}' at 'roleSessionName' failed to satisfy constraint: Member must have length between 2 and 64 and match [\\w+=,.@-]*"),
        ));
    }
    if let Some(d) = one(params, "DurationSeconds") {
        if !d.parse::<u32>().is_ok_and(|d| (900..=43200).contains(&d)) {
            return Err(invalid(
                "ValidationError",
                format!("1 validation error detected: Value '{d}' at 'durationSeconds' failed to satisfy constraint: Member must have value between 900 and 43200"),
            ));
        }
    }
    let same = |a: &str, b: &str| super::sigv4::constant_time_eq(a.as_bytes(), b.as_bytes());
    if !identities.iter().any(|w| same(&w.token, token)) {
        return Err(invalid(
            "InvalidIdentityToken",
            "The ID Token provided is not a valid JWT. (You may see this error if you sent an Access Token)".into(),
        ));
    }
    if !identities
        .iter()
        .any(|w| same(&w.token, token) && w.role_arn == role_arn)
    {
        return Err(StsError {
            status: StatusCode::FORBIDDEN,
            code: "AccessDenied",
            message: "Not authorized to perform sts:AssumeRoleWithWebIdentity".into(),
        });
    }
    Ok(Call {
        role_arn: role_arn.into(),
        session_name: session_name.into(),
    })
}

/// Temporary credentials as STS shapes them: `ASIA` + 16, a 40-character
/// secret, a long base64 token (with the `+`, `/` and `=` real ones carry).
pub struct Issued {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    pub expiration: SystemTime,
}

impl Issued {
    pub fn new(expiration: SystemTime) -> Self {
        let mut rng = rand::rng();
        let upper = Uniform::new(0, 32).unwrap_or_else(|_| unreachable!("0..32 is not empty"));
        let id: String = (0..16)
            .map(|_| char::from(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"[upper.sample(&mut rng)]))
            .collect();
        let mut raw = [0u8; 30];
        rng.fill_bytes(&mut raw);
        let mut token = [0u8; 180];
        rng.fill_bytes(&mut token);
        Issued {
            access_key_id: format!("ASIA{id}"),
            secret_access_key: base64(&raw),
            session_token: format!(
                "FwoGZXIvYXdzE{}{}",
                rand::distr::Alphanumeric.sample_string(&mut rng, 4),
                base64(&token)
            ),
            expiration,
        }
    }
}

/// The account of `arn:aws:iam::<account>:role/<name>`, and the role name.
fn role_parts(arn: &str) -> (&str, &str) {
    let account = arn.split(':').nth(4).unwrap_or("123456789012");
    let name = arn.rsplit('/').next().unwrap_or(arn);
    (account, name)
}

pub fn success(call: &Call, issued: &Issued) -> http::Response<Body> {
    let (account, role) = role_parts(&call.role_arn);
    let session = &call.session_name;
    let body = format!(
        "<AssumeRoleWithWebIdentityResponse xmlns=\"{NS}\">\n\
         <AssumeRoleWithWebIdentityResult>\n\
         <SubjectFromWebIdentityToken>system:serviceaccount:default:countersign</SubjectFromWebIdentityToken>\n\
         <Audience>sts.amazonaws.com</Audience>\n\
         <AssumedRoleUser>\n\
         <Arn>arn:aws:sts::{account}:assumed-role/{role}/{session}</Arn>\n\
         <AssumedRoleId>AROACOUNTERSIGNFAKE00:{session}</AssumedRoleId>\n\
         </AssumedRoleUser>\n\
         <Credentials>\n\
         <AccessKeyId>{akid}</AccessKeyId>\n\
         <SecretAccessKey>{secret}</SecretAccessKey>\n\
         <SessionToken>{token}</SessionToken>\n\
         <Expiration>{exp}</Expiration>\n\
         </Credentials>\n\
         <Provider>oidc.countersign.fake</Provider>\n\
         </AssumeRoleWithWebIdentityResult>\n\
         <ResponseMetadata>\n<RequestId>{rid}</RequestId>\n</ResponseMetadata>\n\
         </AssumeRoleWithWebIdentityResponse>\n",
        account = xml(account),
        role = xml(role),
        session = xml(session),
        akid = issued.access_key_id,
        secret = xml(&issued.secret_access_key),
        token = xml(&issued.session_token),
        exp = iso8601(issued.expiration),
        rid = request_id(),
    );
    response(StatusCode::OK, "text/xml", body)
}

pub fn error(e: &StsError) -> http::Response<Body> {
    let body = format!(
        "<ErrorResponse xmlns=\"{NS}\">\n<Error>\n<Type>Sender</Type>\n<Code>{}</Code>\n<Message>{}</Message>\n</Error>\n<RequestId>{}</RequestId>\n</ErrorResponse>\n",
        e.code,
        xml(&e.message),
        request_id()
    );
    response(e.status, "text/xml", body)
}

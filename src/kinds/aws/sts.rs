//! STS `AssumeRoleWithWebIdentity`: the web identity token (re-read from
//! its file at each fetch, as Kubernetes rotates it) exchanged for
//! temporary credentials. The request is unsigned, as AWS defines it.

use std::path::Path;
use std::time::Duration;

use http::header::{ACCEPT, CONTENT_TYPE, USER_AGENT};
use http::{HeaderMap, HeaderValue};
use tokio::time::Instant;
use zeroize::Zeroize;

use super::Keys;
use crate::error::ProxyError;
use crate::secret::Secret;
use crate::upstream::Upstream;
use crate::vocab::Outgoing;

/// STS answers are small.
const ANSWER_MAX: usize = 64 * 1024;

/// Temporary credentials, packed into one held value, and their lifetime.
pub struct Fetched {
    pub value: Secret,
    pub expires_in: Duration,
}

/// The request, with `token` in its form body.
pub fn request(role_arn: &str, session_name: &str, token: &str) -> Outgoing {
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("Action", "AssumeRoleWithWebIdentity")
        .append_pair("Version", "2011-06-15")
        .append_pair("RoleArn", role_arn)
        .append_pair("RoleSessionName", session_name)
        .append_pair("WebIdentityToken", token)
        .finish();
    let mut headers = HeaderMap::new();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    headers.insert(ACCEPT, HeaderValue::from_static("application/xml"));
    headers.insert(USER_AGENT, HeaderValue::from_static(crate::USER_AGENT));
    Outgoing::post("/", headers, body)
}

pub async fn assume_role_with_web_identity(
    sts: &Upstream,
    role_arn: &str,
    token_file: &Path,
    session_name: &str,
    deadline: Instant,
) -> Result<Fetched, ProxyError> {
    let mut token = tokio::fs::read_to_string(token_file).await.map_err(|e| {
        ProxyError::LoginFailed(format!(
            "the web identity token file {} cannot be read: {e}",
            token_file.display()
        ))
    })?;
    let req = request(role_arn, session_name, token.trim());
    token.zeroize();
    let answer = sts
        .send_buffered(req, deadline, ANSWER_MAX)
        .await
        .map_err(|e| ProxyError::LoginFailed(format!("STS cannot be reached: {e}")))?;
    let body = String::from_utf8_lossy(&answer.body);
    if !answer.status.is_success() {
        let code = element(&body, "Code").unwrap_or_default();
        let message = element(&body, "Message").unwrap_or_default();
        return Err(ProxyError::LoginFailed(format!(
            "STS AssumeRoleWithWebIdentity answered {}: {code} ({message})",
            answer.status.as_u16()
        )));
    }
    let field = |name: &str| {
        element(&body, name)
            .ok_or_else(|| ProxyError::LoginFailed(format!("STS's answer has no {name}")))
    };
    let (id, secret, token) = (
        field("AccessKeyId")?,
        field("SecretAccessKey")?,
        field("SessionToken")?,
    );
    let expiration = field("Expiration")?;
    let expires_at = unix_seconds(&expiration).ok_or_else(|| {
        ProxyError::LoginFailed(format!("STS's Expiration {expiration:?} is not a date"))
    })?;
    let now = crate::vocab::now_ms() / 1000;
    let expires_in = Duration::from_secs(expires_at.saturating_sub(now));
    for (name, v) in [
        ("AccessKeyId", &id),
        ("SecretAccessKey", &secret),
        ("SessionToken", &token),
    ] {
        if v.is_empty() || v.contains('\n') || HeaderValue::from_str(v).is_err() {
            return Err(ProxyError::LoginFailed(format!(
                "STS's {name} is not usable in a header"
            )));
        }
    }
    Ok(Fetched {
        value: Secret::new(format!("{id}\n{secret}\n{token}")),
        expires_in,
    })
}

/// The three parts of a held value.
pub fn unpack(value: &str) -> Option<Keys<'_>> {
    let mut parts = value.splitn(3, '\n');
    Some(Keys {
        access_key_id: parts.next()?,
        secret: parts.next()?,
        token: Some(parts.next()?),
    })
}

/// The text of the first `<name>…</name>`, XML entities decoded.
fn element(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&close)?;
    let text = xml[start..end].trim();
    Some(
        text.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

/// Unix seconds of an ISO-8601 UTC time (`2026-12-02T06:00:00Z`, fractions allowed).
fn unix_seconds(text: &str) -> Option<u64> {
    let t = text.trim().strip_suffix('Z')?;
    let (date, clock) = t.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i32>().ok());
    let (y, mo, da) = (d.next()??, d.next()??, d.next()??);
    let clock = clock.split('.').next()?;
    let mut c = clock.split(':').map(|p| p.parse::<u8>().ok());
    let (h, mi, s) = (c.next()??, c.next()??, c.next()??);
    let month = time::Month::try_from(u8::try_from(mo).ok()?).ok()?;
    let date = time::Date::from_calendar_date(y, month, u8::try_from(da).ok()?).ok()?;
    let time = time::Time::from_hms(h, mi, s).ok()?;
    u64::try_from(date.with_time(time).assume_utc().unix_timestamp()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The answer's shape, from the AssumeRoleWithWebIdentity API reference.
    const ANSWER: &str = r#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>amzn1.account.AF6RHO7KZU5XRVQJGXK6HB56KR2A</SubjectFromWebIdentityToken>
    <Credentials>
      <SessionToken>AQoDYXdzEE0a8ANXXXXXXXXNO1ewxE5TijQyp+IEXAMPLE</SessionToken>
      <SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY</SecretAccessKey>
      <Expiration>2014-10-24T23:00:23Z</Expiration>
      <AccessKeyId>ASgeIAIOSFODNN7EXAMPLE</AccessKeyId>
    </Credentials>
  </AssumeRoleWithWebIdentityResult>
</AssumeRoleWithWebIdentityResponse>"#;

    #[test]
    fn the_answer_is_read() {
        assert_eq!(
            element(ANSWER, "AccessKeyId").as_deref(),
            Some("ASgeIAIOSFODNN7EXAMPLE")
        );
        assert_eq!(
            element(ANSWER, "SecretAccessKey").as_deref(),
            Some("wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY")
        );
        assert_eq!(unix_seconds("2014-10-24T23:00:23Z"), Some(1_414_191_623));
        assert_eq!(
            unix_seconds("2014-10-24T23:00:23.123Z"),
            Some(1_414_191_623)
        );
        assert_eq!(unix_seconds("yesterday"), None);
        assert_eq!(element("<a>x &amp; y</a>", "a").as_deref(), Some("x & y"));
    }

    #[test]
    fn the_request_is_the_documented_form() {
        let r = request("arn:aws:iam::123456789012:role/demo", "app", "tok en");
        assert_eq!(
            r.body.as_deref().unwrap(),
            b"Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fdemo&RoleSessionName=app&WebIdentityToken=tok+en"
        );
        let keys = unpack("AKID\nsecret/x\ntok").unwrap();
        assert_eq!(
            (keys.access_key_id, keys.secret, keys.token),
            ("AKID", "secret/x", Some("tok"))
        );
        assert!(unpack("<session from login>").is_none());
    }
}

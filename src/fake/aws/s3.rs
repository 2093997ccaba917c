//! S3 in path style (`/bucket/key`), in memory, enough for boto3:
//! ListBuckets, CreateBucket, HeadBucket, DeleteBucket, GetBucketLocation,
//! PutObject, GetObject (one range at most), HeadObject, DeleteObject and
//! ListObjectsV2. The key is the path after the bucket decoded once (`+` is
//! a plus). What the fake does not implement (multipart, copies, ListObjects
//! v1, subresources) answers 501 `NotImplemented` rather than something wrong.
//! Checksums sent with a PUT (`Content-MD5`, `x-amz-checksum-*`) are verified.

use std::collections::BTreeMap;
use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Response, StatusCode};
use md5::{Digest, Md5};
use sha1::Sha1;
use sha2::Sha256;

use super::auth::Denial;
use super::codec::{self, base64, decode, encode, is_unreserved, iso8601_ms, xml};
use super::sigv4::Received;
use super::{request_id, response, Body, Config, Reply};

const NS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";
const XML_DECL: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";

#[derive(Default)]
pub struct Store {
    buckets: BTreeMap<String, Bucket>,
}

struct Bucket {
    created: SystemTime,
    /// Sorted by UTF-8 bytes, the order S3 lists keys in.
    objects: BTreeMap<String, Object>,
}

struct Object {
    data: Bytes,
    /// Quoted hex MD5 of the data.
    etag: String,
    modified: SystemTime,
    /// Content-Type and the other representation headers, `x-amz-meta-*`.
    headers: Vec<(HeaderName, HeaderValue)>,
    /// The `x-amz-checksum-<algorithm>` sent with the PUT and verified.
    checksum: Option<(String, String)>,
}

/// An S3 error document; `extra` elements follow `Message`.
pub fn error(
    status: StatusCode,
    code: &str,
    message: &str,
    extra: &[(&str, String)],
) -> Response<Body> {
    let mut body = format!(
        "{XML_DECL}<Error><Code>{code}</Code><Message>{}</Message>",
        xml(message)
    );
    for (name, value) in extra {
        body.push_str(&format!("<{name}>{}</{name}>", xml(value)));
    }
    body.push_str(&format!(
        "<RequestId>{}</RequestId><HostId>{}</HostId></Error>",
        request_id(),
        base64(request_id().as_bytes())
    ));
    with_ids(response(status, "application/xml", body))
}

fn with_ids(mut r: Response<Body>) -> Response<Body> {
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id()) {
        h.insert("x-amz-request-id", v);
    }
    h.insert("server", HeaderValue::from_static("AmazonS3"));
    r
}

/// Answers about state (a missing key, a non-empty bucket): not refusals.
fn state_answer(r: Response<Body>) -> Reply {
    Reply::ok(r)
}

fn refuse(status: StatusCode, code: &str, message: &str, extra: &[(&str, String)]) -> Reply {
    Reply::refused(
        error(status, code, message, extra),
        format!("{code}: {message}"),
    )
}

fn not_implemented(what: &str) -> Reply {
    refuse(
        StatusCode::NOT_IMPLEMENTED,
        "NotImplemented",
        &format!(
            "A header or query you provided implies functionality that is not implemented: {what}"
        ),
        &[],
    )
}

fn bytes_hex(data: &[u8]) -> String {
    let words: Vec<String> = data.iter().map(|b| format!("{b:02x}")).collect();
    words.join(" ")
}

/// The error S3 sends for each authentication failure.
pub fn denial(d: &Denial, req: &Received<'_>) -> Response<Body> {
    use StatusCode as S;
    let headers_not_signed = "There were headers present in the request which were not signed";
    let (status, code, message, extra): (StatusCode, &str, String, Vec<(&str, String)>) = match d {
        Denial::MissingAuthorization => (S::FORBIDDEN, "AccessDenied", "Access Denied".into(), vec![]),
        Denial::Presigned => (
            S::NOT_IMPLEMENTED,
            "NotImplemented",
            "Query-string authentication is not implemented by this fake; sign the Authorization header".into(),
            vec![],
        ),
        Denial::Malformed(m) => (
            S::BAD_REQUEST,
            "AuthorizationHeaderMalformed",
            format!("The authorization header is malformed; {m}"),
            vec![],
        ),
        Denial::WrongRegion { got, want } => (
            S::BAD_REQUEST,
            "AuthorizationHeaderMalformed",
            format!("The authorization header is malformed; the region '{got}' is wrong; expecting '{want}'"),
            vec![("Region", want.clone())],
        ),
        Denial::WrongService { got, want } => (
            S::BAD_REQUEST,
            "AuthorizationHeaderMalformed",
            format!("The authorization header is malformed; incorrect service \"{got}\". This endpoint belongs to \"{want}\"."),
            vec![],
        ),
        Denial::NoDate | Denial::BadDate(_) => (
            S::FORBIDDEN,
            "AccessDenied",
            "AWS authentication requires a valid Date or x-amz-date header".into(),
            vec![],
        ),
        Denial::DateNotScope { .. } => (
            S::BAD_REQUEST,
            "AuthorizationHeaderMalformed",
            "The authorization header is malformed; Invalid credential date. Date is not the same as X-Amz-Date.".into(),
            vec![],
        ),
        Denial::NotSigned(h) => (
            S::FORBIDDEN,
            "AccessDenied",
            headers_not_signed.into(),
            vec![("HeadersNotSigned", h.join(", "))],
        ),
        Denial::UnknownKey(k) | Denial::MissingToken(k) => (
            S::FORBIDDEN,
            "InvalidAccessKeyId",
            "The AWS Access Key Id you provided does not exist in our records.".into(),
            vec![("AWSAccessKeyId", k.clone())],
        ),
        Denial::Expired(_) => (
            S::BAD_REQUEST,
            "ExpiredToken",
            "The provided token has expired.".into(),
            vec![("Token-0", req.header("x-amz-security-token").unwrap_or_default().into())],
        ),
        Denial::BadToken(_) => (
            S::BAD_REQUEST,
            "InvalidToken",
            "The provided token is malformed or otherwise invalid.".into(),
            vec![("Token-0", req.header("x-amz-security-token").unwrap_or_default().into())],
        ),
        Denial::Skewed { request, server, skew } => (
            S::FORBIDDEN,
            "RequestTimeTooSkewed",
            "The difference between the request time and the current time is too large.".into(),
            vec![
                ("RequestTime", codec::amz_date(*request)),
                ("ServerTime", codec::iso8601(*server)),
                ("MaxAllowedSkewMilliseconds", skew.as_millis().to_string()),
            ],
        ),
        Denial::NoContentSha => (
            S::BAD_REQUEST,
            "InvalidRequest",
            "Missing required header for this request: x-amz-content-sha256".into(),
            vec![],
        ),
        Denial::BadContentSha(_) => (
            S::BAD_REQUEST,
            "InvalidArgument",
            "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER, STREAMING-AWS4-HMAC-SHA256-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER, STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD, STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD-TRAILER or a valid sha256 value.".into(),
            vec![("ArgumentName", "x-amz-content-sha256".into())],
        ),
        Denial::Streaming(v) => (
            S::NOT_IMPLEMENTED,
            "NotImplemented",
            format!("A header you provided implies functionality that is not implemented: x-amz-content-sha256: {v} (aws-chunked uploads; send a Content-Length body)"),
            vec![],
        ),
        Denial::ContentShaMismatch { client, computed } => (
            S::BAD_REQUEST,
            "XAmzContentSHA256Mismatch",
            "The provided 'x-amz-content-sha256' header does not match what was computed.".into(),
            vec![
                ("ClientComputedContentSHA256", client.clone()),
                ("S3ComputedContentSHA256", computed.clone()),
            ],
        ),
        Denial::BadEscape(_) => (S::BAD_REQUEST, "InvalidURI", "Couldn't parse the specified URI.".into(), vec![]),
        Denial::Signature { access_key_id, provided, computed } => (
            S::FORBIDDEN,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. Check your key and signing method.".into(),
            vec![
                ("AWSAccessKeyId", access_key_id.clone()),
                ("StringToSign", computed.string_to_sign.clone()),
                ("SignatureProvided", provided.clone()),
                ("StringToSignBytes", bytes_hex(computed.string_to_sign.as_bytes())),
                ("CanonicalRequest", String::from_utf8_lossy(&computed.canonical_request).into_owned()),
                ("CanonicalRequestBytes", bytes_hex(&computed.canonical_request)),
            ],
        ),
    };
    error(status, code, &message, &extra)
}

/// Query parameters decoded once (`+` a plus); `None` on a bad escape or non-UTF-8.
fn query_params(query: &[u8]) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    for param in query.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        let (n, v) = match param.iter().position(|&b| b == b'=') {
            Some(i) => (&param[..i], &param[i + 1..]),
            None => (param, &b""[..]),
        };
        out.push((
            String::from_utf8(decode(n)?).ok()?,
            String::from_utf8(decode(v)?).ok()?,
        ));
    }
    Some(out)
}

fn valid_bucket_name(name: &str) -> bool {
    let b = name.as_bytes();
    (3..=63).contains(&b.len())
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && !name.contains("..")
        && !name.split('.').all(|p| p.parse::<u8>().is_ok())
}

/// Parameters an operation understands; anything else is a subresource the
/// fake does not implement.
fn only(params: &[(String, String)], allowed: &[&str]) -> Result<(), Box<Reply>> {
    match params
        .iter()
        .find(|(k, _)| !allowed.contains(&k.as_str()) && !k.starts_with("response-"))
    {
        Some((k, _)) => Err(Box::new(not_implemented(&format!("?{k}")))),
        None => Ok(()),
    }
}

pub fn handle(store: &mut Store, req: &Received<'_>, cfg: &Config, now: SystemTime) -> Reply {
    let Some(params) = query_params(req.query) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "InvalidURI",
            "Couldn't parse the specified URI.",
            &[],
        );
    };
    let path = req.path.strip_prefix(b"/").unwrap_or(req.path);
    if path.is_empty() {
        return match req.method {
            "GET" => match only(&params, &["x-id", "max-buckets", "prefix", "bucket-region"]) {
                Ok(()) => list_buckets(store),
                Err(r) => *r,
            },
            m => method_not_allowed(m),
        };
    }
    let (bucket_raw, key_raw) = match path.iter().position(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (path, &b""[..]),
    };
    let bucket = match decode(bucket_raw).map(String::from_utf8) {
        Some(Ok(b)) => b,
        _ => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "InvalidURI",
                "Couldn't parse the specified URI.",
                &[],
            )
        }
    };
    if key_raw.is_empty() {
        return bucket_call(store, req, &bucket, &params, cfg, now);
    }
    let key = match decode(key_raw).map(String::from_utf8) {
        Some(Ok(k)) => k,
        _ => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "InvalidURI",
                "Couldn't parse the specified URI.",
                &[],
            )
        }
    };
    if key.len() > 1024 {
        return refuse(
            StatusCode::BAD_REQUEST,
            "KeyTooLongError",
            "Your key is too long",
            &[],
        );
    }
    object_call(store, req, &bucket, &key, &params, now)
}

fn method_not_allowed(method: &str) -> Reply {
    refuse(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        "The specified method is not allowed against this resource.",
        &[("Method", method.into()), ("ResourceType", "OBJECT".into())],
    )
}

fn no_such_bucket(name: &str) -> Reply {
    state_answer(error(
        StatusCode::NOT_FOUND,
        "NoSuchBucket",
        "The specified bucket does not exist",
        &[("BucketName", name.into())],
    ))
}

fn xml_ok(body: String) -> Reply {
    Reply::ok(with_ids(response(StatusCode::OK, "application/xml", body)))
}

fn empty(status: StatusCode) -> Response<Body> {
    with_ids(response(status, "application/xml", Bytes::new()))
}

fn list_buckets(store: &Store) -> Reply {
    let mut body = format!(
        "{XML_DECL}<ListAllMyBucketsResult xmlns=\"{NS}\"><Owner><ID>countersign-fake</ID><DisplayName>fake</DisplayName></Owner><Buckets>"
    );
    for (name, b) in &store.buckets {
        body.push_str(&format!(
            "<Bucket><Name>{}</Name><CreationDate>{}</CreationDate></Bucket>",
            xml(name),
            iso8601_ms(b.created)
        ));
    }
    body.push_str("</Buckets></ListAllMyBucketsResult>");
    xml_ok(body)
}

/// `<LocationConstraint>` of a CreateBucketConfiguration body, if any.
fn location_constraint(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let start = text.find("<LocationConstraint>")? + "<LocationConstraint>".len();
    let end = start + text[start..].find("</LocationConstraint>")?;
    Some(text[start..end].trim().to_string())
}

fn bucket_call(
    store: &mut Store,
    req: &Received<'_>,
    name: &str,
    params: &[(String, String)],
    cfg: &Config,
    now: SystemTime,
) -> Reply {
    match req.method {
        "PUT" => {
            if let Err(r) = only(params, &["x-id"]) {
                return *r;
            }
            if !valid_bucket_name(name) {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    "InvalidBucketName",
                    "The specified bucket is not valid.",
                    &[("BucketName", name.into())],
                );
            }
            let constraint = location_constraint(req.body).filter(|c| !c.is_empty());
            let expected = (cfg.region != "us-east-1").then_some(cfg.region.as_str());
            if constraint.as_deref() != expected {
                let shown = constraint.unwrap_or_else(|| "unspecified".into());
                return refuse(
                    StatusCode::BAD_REQUEST,
                    "IllegalLocationConstraintException",
                    &format!("The {shown} location constraint is incompatible for the region specific endpoint this request was sent to."),
                    &[],
                );
            }
            if store.buckets.contains_key(name) && cfg.region != "us-east-1" {
                return state_answer(error(
                    StatusCode::CONFLICT,
                    "BucketAlreadyOwnedByYou",
                    "Your previous request to create the named bucket succeeded and you already own it.",
                    &[("BucketName", name.into())],
                ));
            }
            store.buckets.entry(name.into()).or_insert_with(|| Bucket {
                created: now,
                objects: BTreeMap::new(),
            });
            let mut r = empty(StatusCode::OK);
            if let Ok(v) = HeaderValue::from_str(&format!("/{name}")) {
                r.headers_mut().insert(http::header::LOCATION, v);
            }
            Reply::ok(r)
        }
        "HEAD" => {
            if !store.buckets.contains_key(name) {
                return state_answer(empty(StatusCode::NOT_FOUND));
            }
            let mut r = empty(StatusCode::OK);
            if let Ok(v) = HeaderValue::from_str(&cfg.region) {
                r.headers_mut().insert("x-amz-bucket-region", v);
            }
            Reply::ok(r)
        }
        "DELETE" => {
            if let Err(r) = only(params, &["x-id"]) {
                return *r;
            }
            match store.buckets.get(name) {
                None => no_such_bucket(name),
                Some(b) if !b.objects.is_empty() => state_answer(error(
                    StatusCode::CONFLICT,
                    "BucketNotEmpty",
                    "The bucket you tried to delete is not empty",
                    &[("BucketName", name.into())],
                )),
                Some(_) => {
                    store.buckets.remove(name);
                    Reply::ok(empty(StatusCode::NO_CONTENT))
                }
            }
        }
        "GET" => {
            let Some(bucket) = store.buckets.get(name) else {
                return no_such_bucket(name);
            };
            if params.iter().any(|(k, _)| k == "location") {
                let region = if cfg.region == "us-east-1" {
                    ""
                } else {
                    cfg.region.as_str()
                };
                return xml_ok(format!(
                    "{XML_DECL}<LocationConstraint xmlns=\"{NS}\">{region}</LocationConstraint>"
                ));
            }
            if !params.iter().any(|(k, v)| k == "list-type" && v == "2") {
                return not_implemented(
                    "ListObjects (v1) or a bucket subresource; use list-type=2",
                );
            }
            list_objects_v2(name, bucket, params)
        }
        m => method_not_allowed(m),
    }
}

/// `encoding-type=url` as S3 applies it: space as `+`, `/` and unreserved
/// bytes kept, everything else `%XX` (botocore decodes with `unquote_plus`).
fn url_encode_key(s: &str) -> String {
    encode(s.as_bytes(), |b| is_unreserved(b) || b == b'/' || b == b' ').replace(' ', "+")
}

fn list_objects_v2(name: &str, bucket: &Bucket, params: &[(String, String)]) -> Reply {
    let allowed = [
        "list-type",
        "prefix",
        "delimiter",
        "encoding-type",
        "max-keys",
        "continuation-token",
        "start-after",
        "fetch-owner",
        "x-id",
    ];
    if let Err(r) = only(params, &allowed) {
        return *r;
    }
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let prefix = get("prefix").unwrap_or("");
    let delimiter = get("delimiter").unwrap_or("");
    let url = match get("encoding-type") {
        None => false,
        Some("url") => true,
        Some(_) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "InvalidArgument",
                "Invalid Encoding Method specified in Request",
                &[("ArgumentName", "encoding-type".into())],
            )
        }
    };
    let max_keys = match get("max-keys").map(str::parse::<u32>) {
        None => 1000,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "InvalidArgument",
                "Provided max-keys not an integer or within integer range",
                &[("ArgumentName", "max-keys".into())],
            )
        }
    };
    let token = get("continuation-token");
    // The token is the hex of the last key or common prefix returned.
    let resume = match token {
        None => None,
        Some(t) => match hex::decode(t).ok().and_then(|b| String::from_utf8(b).ok()) {
            Some(marker) => Some(marker),
            None => {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    "InvalidArgument",
                    "The continuation token provided is incorrect",
                    &[("ArgumentName", "continuation-token".into())],
                )
            }
        },
    };
    let start_after = get("start-after").filter(|_| resume.is_none());
    let after = resume.as_deref().or(start_after).unwrap_or("");
    let enc = |s: &str| {
        if url {
            url_encode_key(s)
        } else {
            s.to_string()
        }
    };

    let mut contents = String::new();
    let mut prefixes: Vec<String> = Vec::new();
    let mut count = 0u32;
    let mut last = None;
    let mut truncated = false;
    let limit = max_keys.min(1000);
    for (key, obj) in bucket
        .objects
        .range::<str, _>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
    {
        if !key.starts_with(prefix) {
            continue;
        }
        // Keys under a common prefix already returned are skipped as a whole.
        if !delimiter.is_empty() && after.ends_with(delimiter) && key.starts_with(after) {
            continue;
        }
        let rolled = if delimiter.is_empty() {
            None
        } else {
            key[prefix.len()..]
                .find(delimiter)
                .map(|i| &key[..prefix.len() + i + delimiter.len()])
        };
        if rolled.is_some_and(|p| prefixes.last().map(String::as_str) == Some(p)) {
            continue;
        }
        if count == limit {
            truncated = true;
            break;
        }
        count += 1;
        match rolled {
            Some(p) => {
                prefixes.push(p.to_string());
                last = Some(p.to_string());
            }
            None => {
                contents.push_str(&format!(
                    "<Contents><Key>{}</Key><LastModified>{}</LastModified><ETag>{}</ETag><Size>{}</Size><StorageClass>STANDARD</StorageClass></Contents>",
                    xml(&enc(key)),
                    iso8601_ms(obj.modified),
                    xml(&obj.etag),
                    obj.data.len()
                ));
                last = Some(key.clone());
            }
        }
    }
    let mut body = format!(
        "{XML_DECL}<ListBucketResult xmlns=\"{NS}\"><Name>{}</Name><Prefix>{}</Prefix>",
        xml(name),
        xml(&enc(prefix))
    );
    if !delimiter.is_empty() {
        body.push_str(&format!("<Delimiter>{}</Delimiter>", xml(&enc(delimiter))));
    }
    body.push_str(&format!(
        "<MaxKeys>{max_keys}</MaxKeys><KeyCount>{count}</KeyCount><IsTruncated>{truncated}</IsTruncated>"
    ));
    if url {
        body.push_str("<EncodingType>url</EncodingType>");
    }
    if let Some(t) = token {
        body.push_str(&format!(
            "<ContinuationToken>{}</ContinuationToken>",
            xml(t)
        ));
    }
    if let Some(s) = start_after {
        body.push_str(&format!("<StartAfter>{}</StartAfter>", xml(&enc(s))));
    }
    if truncated {
        if let Some(l) = last {
            body.push_str(&format!(
                "<NextContinuationToken>{}</NextContinuationToken>",
                hex::encode(l)
            ));
        }
    }
    body.push_str(&contents);
    for p in &prefixes {
        body.push_str(&format!(
            "<CommonPrefixes><Prefix>{}</Prefix></CommonPrefixes>",
            xml(&enc(p))
        ));
    }
    body.push_str("</ListBucketResult>");
    xml_ok(body)
}

/// Headers of a PUT kept with the object and returned by GET and HEAD.
fn kept_header(name: &str) -> bool {
    matches!(
        name,
        "content-type"
            | "content-encoding"
            | "content-disposition"
            | "content-language"
            | "cache-control"
            | "expires"
    ) || name.starts_with("x-amz-meta-")
}

const CHECKSUMS: [&str; 5] = ["crc32", "crc32c", "crc64nvme", "sha1", "sha256"];

fn checksum(algorithm: &str, data: &[u8]) -> String {
    match algorithm {
        "crc32" => base64(&codec::crc32(data).to_be_bytes()),
        "crc32c" => base64(&codec::crc32c(data).to_be_bytes()),
        "crc64nvme" => base64(&codec::crc64nvme(data).to_be_bytes()),
        "sha1" => base64(&Sha1::digest(data)),
        _ => base64(&Sha256::digest(data)),
    }
}

/// Verifies `Content-MD5` and `x-amz-checksum-*`; the checksum to keep.
fn verify_digests(req: &Received<'_>) -> Result<Option<(String, String)>, Box<Reply>> {
    if let Some(md5) = req.header("content-md5") {
        if md5 != base64(&Md5::digest(req.body)) {
            return Err(Box::new(refuse(
                StatusCode::BAD_REQUEST,
                "BadDigest",
                "The Content-MD5 you specified did not match what we received.",
                &[("ExpectedDigest", md5.into())],
            )));
        }
    }
    let mut kept = None;
    for algorithm in CHECKSUMS {
        let Some(claimed) = req.header(&format!("x-amz-checksum-{algorithm}")) else {
            continue;
        };
        if kept.is_some() {
            return Err(Box::new(refuse(
                StatusCode::BAD_REQUEST,
                "InvalidRequest",
                "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.",
                &[],
            )));
        }
        if claimed != checksum(algorithm, req.body) {
            let name = algorithm.to_ascii_uppercase();
            return Err(Box::new(refuse(
                StatusCode::BAD_REQUEST,
                "BadDigest",
                &format!("The {name} you specified did not match the calculated checksum."),
                &[],
            )));
        }
        kept = Some((algorithm.to_string(), claimed.to_string()));
    }
    Ok(kept)
}

fn object_call(
    store: &mut Store,
    req: &Received<'_>,
    bucket_name: &str,
    key: &str,
    params: &[(String, String)],
    now: SystemTime,
) -> Reply {
    if !matches!(req.method, "GET" | "HEAD" | "PUT" | "DELETE") {
        return if req.method == "POST" {
            not_implemented("POST on an object (multipart uploads)")
        } else {
            method_not_allowed(req.method)
        };
    }
    if let Err(r) = only(params, &["x-id"]) {
        return *r;
    }
    let Some(bucket) = store.buckets.get_mut(bucket_name) else {
        return if req.method == "HEAD" {
            state_answer(empty(StatusCode::NOT_FOUND))
        } else {
            no_such_bucket(bucket_name)
        };
    };
    match req.method {
        "PUT" => put_object(bucket, key, req, now),
        "DELETE" => {
            bucket.objects.remove(key);
            Reply::ok(empty(StatusCode::NO_CONTENT))
        }
        _ => match bucket.objects.get(key) {
            None if req.method == "HEAD" => state_answer(empty(StatusCode::NOT_FOUND)),
            None => state_answer(error(
                StatusCode::NOT_FOUND,
                "NoSuchKey",
                "The specified key does not exist.",
                &[("Key", key.into())],
            )),
            Some(obj) => get_object(obj, req, params),
        },
    }
}

fn put_object(bucket: &mut Bucket, key: &str, req: &Received<'_>, now: SystemTime) -> Reply {
    if req.values("x-amz-copy-source").next().is_some() {
        return not_implemented("x-amz-copy-source (CopyObject)");
    }
    if req.header("content-length").is_none() {
        return refuse(
            StatusCode::LENGTH_REQUIRED,
            "MissingContentLength",
            "You must provide the Content-Length HTTP header.",
            &[],
        );
    }
    let checksum = match verify_digests(req) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let mut headers = Vec::new();
    for (name, value) in req.headers {
        if kept_header(name) {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_bytes(value),
            ) {
                headers.push((n, v));
            }
        }
    }
    let etag = format!("\"{}\"", hex::encode(Md5::digest(req.body)));
    let mut r = empty(StatusCode::OK);
    if let Ok(v) = HeaderValue::from_str(&etag) {
        r.headers_mut().insert(http::header::ETAG, v);
    }
    if let Some((algorithm, value)) = &checksum {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(format!("x-amz-checksum-{algorithm}").as_bytes()),
            HeaderValue::from_str(value),
        ) {
            r.headers_mut().insert(n, v);
        }
    }
    let object = Object {
        data: Bytes::copy_from_slice(req.body),
        etag,
        modified: now,
        headers,
        checksum,
    };
    bucket.objects.insert(key.into(), object);
    Reply::ok(r)
}

/// A single `bytes=` range as (first, last) inclusive; `Ok(None)`: the
/// whole object (no header, or several ranges, which S3 ignores).
fn range(header: Option<&str>, len: usize) -> Result<Option<(usize, usize)>, ()> {
    let Some(spec) = header.and_then(|h| h.strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (first, last) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: usize = n.parse().map_err(|_| ())?;
            if n == 0 {
                return Err(());
            }
            (len.saturating_sub(n), len.checked_sub(1).ok_or(())?)
        }
        (f, "") => (f.parse().map_err(|_| ())?, len.checked_sub(1).ok_or(())?),
        (f, l) => {
            let (f, l): (usize, usize) = (f.parse().map_err(|_| ())?, l.parse().map_err(|_| ())?);
            if l < f {
                return Ok(None);
            }
            (f, l.min(len.saturating_sub(1)))
        }
    };
    if first >= len {
        return Err(());
    }
    Ok(Some((first, last)))
}

fn get_object(obj: &Object, req: &Received<'_>, params: &[(String, String)]) -> Reply {
    let len = obj.data.len();
    let span = match range(req.header("range"), len) {
        Ok(s) => s,
        Err(()) => {
            return refuse(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "InvalidRange",
                "The requested range is not satisfiable",
                &[
                    (
                        "RangeRequested",
                        req.header("range").unwrap_or_default().into(),
                    ),
                    ("ActualObjectSize", len.to_string()),
                ],
            )
        }
    };
    let (status, data) = match span {
        Some((f, l)) => (StatusCode::PARTIAL_CONTENT, obj.data.slice(f..=l)),
        None => (StatusCode::OK, obj.data.clone()),
    };
    let shown = data.len();
    let head = req.method == "HEAD";
    let mut r = with_ids(response(
        status,
        "binary/octet-stream",
        if head { Bytes::new() } else { data },
    ));
    let h = r.headers_mut();
    for (n, v) in &obj.headers {
        h.insert(n.clone(), v.clone());
    }
    let mut set = |name: &str, value: &str| {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            h.insert(n, v);
        }
    };
    set("etag", &obj.etag);
    set("last-modified", &httpdate::fmt_http_date(obj.modified));
    set("accept-ranges", "bytes");
    set("content-length", &shown.to_string());
    if let Some((f, l)) = span {
        set("content-range", &format!("bytes {f}-{l}/{len}"));
    }
    // Full-object checksums only on full answers, and only when asked for.
    if let (None, Some((algorithm, value)), Some("ENABLED")) =
        (span, &obj.checksum, req.header("x-amz-checksum-mode"))
    {
        set(&format!("x-amz-checksum-{algorithm}"), value);
        set("x-amz-checksum-type", "FULL_OBJECT");
    }
    for (k, v) in params {
        if let Some(name) = k.strip_prefix("response-") {
            set(name, v);
        }
    }
    Reply::ok(r)
}

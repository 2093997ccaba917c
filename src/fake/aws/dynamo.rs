//! A DynamoDB-style JSON API (awsJson1_0): `POST /`, `X-Amz-Target:
//! DynamoDB_20120810.<Op>`, `Content-Type: application/x-amz-json-1.0`.
//! CreateTable, DescribeTable, PutItem, GetItem and ListTables over tables in
//! memory, keyed by the table's HASH (and RANGE) attributes. Errors are
//! `{"__type":…,"message":…}` with 400, as DynamoDB answers (it prefixes the
//! type with a namespace, `com.amazon.coral.service#`, which botocore strips;
//! the fake sends the bare name). Answers carry `x-amz-crc32`, which botocore
//! checks.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use http::{HeaderValue, Response, StatusCode};
use serde_json::{json, Map, Value};

use super::auth::Denial;
use super::codec;
use super::sigv4::Received;
use super::{request_id, response, Body, Reply};

const CONTENT_TYPE: &str = "application/x-amz-json-1.0";
const TARGET_PREFIX: &str = "DynamoDB_20120810.";

#[derive(Default)]
pub struct Tables {
    tables: BTreeMap<String, Table>,
}

struct Table {
    /// The HASH attribute, then the RANGE one if any.
    key: Vec<String>,
    /// CreateTable's KeySchema and AttributeDefinitions, echoed by DescribeTable.
    key_schema: Value,
    attributes: Value,
    created: SystemTime,
    /// By the JSON of the item's key attributes.
    items: BTreeMap<String, Map<String, Value>>,
}

fn answer(status: StatusCode, body: &Value) -> Response<Body> {
    let text = body.to_string();
    let crc = codec::crc32(text.as_bytes());
    let mut r = response(status, CONTENT_TYPE, text);
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id()) {
        h.insert("x-amzn-requestid", v);
    }
    h.insert("x-amz-crc32", HeaderValue::from(crc));
    r
}

pub fn error(code: &str, message: &str) -> Response<Body> {
    answer(
        StatusCode::BAD_REQUEST,
        &json!({ "__type": code, "message": message }),
    )
}

fn refuse(code: &str, message: &str) -> Reply {
    Reply::refused(error(code, message), format!("{code}: {message}"))
}

/// The error DynamoDB sends for each authentication failure.
pub fn denial(d: &Denial) -> Response<Body> {
    let invalid_token = "The security token included in the request is invalid.";
    let (code, message): (&str, String) = match d {
        Denial::MissingAuthorization => (
            "MissingAuthenticationTokenException",
            "Request is missing Authentication Token".into(),
        ),
        Denial::Presigned => (
            "IncompleteSignatureException",
            "Query-string authentication is not implemented by this fake".into(),
        ),
        Denial::Malformed(m) => ("IncompleteSignatureException", m.clone()),
        Denial::WrongRegion { .. } => (
            "InvalidSignatureException",
            "Credential should be scoped to a valid region. ".into(),
        ),
        Denial::WrongService { want, .. } => (
            "InvalidSignatureException",
            format!("Credential should be scoped to correct service: '{want}'. "),
        ),
        Denial::NoDate | Denial::BadDate(_) => (
            "IncompleteSignatureException",
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.".into(),
        ),
        Denial::DateNotScope { scope, amz_date } => (
            "InvalidSignatureException",
            format!("Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{scope}' != '{}', from '{amz_date}'.", &amz_date[..8.min(amz_date.len())]),
        ),
        Denial::NotSigned(h) => (
            "InvalidSignatureException",
            format!("These headers must be signed: {}", h.join(", ")),
        ),
        Denial::UnknownKey(_) | Denial::MissingToken(_) | Denial::BadToken(_) => {
            ("UnrecognizedClientException", invalid_token.into())
        }
        Denial::Expired(_) => (
            "ExpiredTokenException",
            "The security token included in the request is expired".into(),
        ),
        Denial::Skewed { request, server, skew } => {
            let minutes = skew.as_secs() / 60;
            let (req, now) = (codec::amz_date(*request), codec::amz_date(*server));
            let message = if request < server {
                format!("Signature expired: {req} is now earlier than {now} ({now} - {minutes} min.)")
            } else {
                format!("Signature not yet current: {req} is still later than {now} ({now} + {minutes} min.)")
            };
            ("InvalidSignatureException", message)
        }
        Denial::NoContentSha | Denial::BadContentSha(_) | Denial::Streaming(_) => {
            ("InvalidSignatureException", d.reason())
        }
        Denial::ContentShaMismatch { .. } => ("InvalidSignatureException", d.reason()),
        Denial::BadEscape(_) => ("InvalidSignatureException", d.reason()),
        Denial::Signature { computed, .. } => (
            "InvalidSignatureException",
            format!(
                "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.\n\nThe Canonical String for this request should have been\n'{}'\n\nThe String-to-Sign should have been\n'{}'\n",
                String::from_utf8_lossy(&computed.canonical_request),
                computed.string_to_sign
            ),
        ),
    };
    error(code, &message)
}

/// An operation's error: a refusal, or an answer about state.
struct Fault {
    code: &'static str,
    message: String,
    refusal: bool,
}

impl Fault {
    fn reply(self) -> Reply {
        if self.refusal {
            refuse(self.code, &self.message)
        } else {
            Reply::ok(error(self.code, &self.message))
        }
    }
}

fn validation(message: impl Into<String>) -> Fault {
    Fault {
        code: "ValidationException",
        message: message.into(),
        refusal: true,
    }
}

fn not_found() -> Fault {
    Fault {
        code: "ResourceNotFoundException",
        message: "Requested resource not found".into(),
        refusal: false,
    }
}

pub fn handle(tables: &mut Tables, req: &Received<'_>, now: SystemTime) -> Reply {
    if req.method != "POST" || req.path != b"/" {
        return refuse(
            "UnknownOperationException",
            "The JSON API takes POST / only",
        );
    }
    let op = match req
        .header("x-amz-target")
        .map(|t| t.strip_prefix(TARGET_PREFIX))
    {
        Some(Some(op)) => op,
        _ => return refuse("UnknownOperationException", ""),
    };
    if req.header("content-type") != Some(CONTENT_TYPE) {
        return refuse(
            "SerializationException",
            &format!("Content-Type must be {CONTENT_TYPE}"),
        );
    }
    let Ok(Value::Object(input)) = serde_json::from_slice::<Value>(req.body) else {
        return refuse(
            "SerializationException",
            "Start of structure or map found where not expected.",
        );
    };
    let result = match op {
        "CreateTable" => tables.create(&input, now),
        "DescribeTable" => tables.describe(&input),
        "PutItem" => tables.put(&input),
        "GetItem" => tables.get(&input),
        "ListTables" => tables.list(&input),
        _ => return refuse("UnknownOperationException", ""),
    };
    match result {
        Ok(out) => Reply::ok(answer(StatusCode::OK, &out)),
        Err(fault) => fault.reply(),
    }
}

fn table_name(input: &Map<String, Value>) -> Result<&str, Fault> {
    let name = input.get("TableName").and_then(Value::as_str).ok_or_else(|| {
        validation("1 validation error detected: Value null at 'tableName' failed to satisfy constraint: Member must not be null")
    })?;
    let ok = (3..=255).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if !ok {
        return Err(validation(format!(
            "1 validation error detected: Value '{name}' at 'tableName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"
        )));
    }
    Ok(name)
}

/// Exactly one scalar attribute value: `{"S": …}`, `{"N": …}` or `{"B": …}`.
fn is_scalar(v: &Value) -> bool {
    v.as_object()
        .is_some_and(|m| m.len() == 1 && m.keys().all(|k| k == "S" || k == "N" || k == "B"))
}

impl Table {
    fn description(&self, name: &str) -> Value {
        let created = self
            .created
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        json!({
            "TableName": name,
            "TableStatus": "ACTIVE",
            "KeySchema": self.key_schema,
            "AttributeDefinitions": self.attributes,
            "CreationDateTime": created,
            "ItemCount": self.items.len(),
            "TableSizeBytes": 0,
            "TableArn": format!("arn:aws:dynamodb:fake:123456789012:table/{name}"),
            "BillingModeSummary": { "BillingMode": "PAY_PER_REQUEST" },
        })
    }

    /// The item's key as stored, or why it does not fit the schema.
    fn key_of(&self, attrs: &Map<String, Value>, exact: bool) -> Result<String, Fault> {
        let mut parts = Vec::new();
        for name in &self.key {
            match attrs.get(name) {
                Some(v) if is_scalar(v) => parts.push(v.clone()),
                _ => {
                    return Err(validation(format!(
                    "One or more parameter values were invalid: Missing the key {name} in the item"
                )))
                }
            }
        }
        if exact && attrs.len() != self.key.len() {
            return Err(validation(
                "The provided key element does not match the schema",
            ));
        }
        Ok(Value::Array(parts).to_string())
    }
}

impl Tables {
    fn table(&mut self, input: &Map<String, Value>) -> Result<&mut Table, Fault> {
        let name = table_name(input)?;
        self.tables.get_mut(name).ok_or_else(not_found)
    }

    fn create(&mut self, input: &Map<String, Value>, now: SystemTime) -> Result<Value, Fault> {
        let name = table_name(input)?.to_string();
        let schema = input
            .get("KeySchema")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let attributes = input
            .get("AttributeDefinitions")
            .cloned()
            .unwrap_or(Value::Null);
        let key_of_type = |t: &str| {
            schema
                .iter()
                .filter(|k| k["KeyType"] == t)
                .filter_map(|k| k["AttributeName"].as_str().map(String::from))
                .collect::<Vec<_>>()
        };
        let (hash, range) = (key_of_type("HASH"), key_of_type("RANGE"));
        if hash.len() != 1 || range.len() > 1 || schema.len() != 1 + range.len() {
            return Err(validation("1 validation error detected: Value at 'keySchema' failed to satisfy constraint: one HASH key and at most one RANGE key"));
        }
        let key: Vec<String> = hash.into_iter().chain(range).collect();
        let defined = |n: &str| {
            attributes
                .as_array()
                .is_some_and(|a| a.iter().any(|d| d["AttributeName"] == n))
        };
        if let Some(missing) = key.iter().find(|k| !defined(k)) {
            return Err(validation(format!(
                "One or more parameter values were invalid: Some index key attributes are not defined in AttributeDefinitions. Keys: [{missing}]"
            )));
        }
        if self.tables.contains_key(&name) {
            return Err(Fault {
                code: "ResourceInUseException",
                message: format!("Table already exists: {name}"),
                refusal: false,
            });
        }
        let table = Table {
            key,
            key_schema: Value::Array(schema),
            attributes,
            created: now,
            items: BTreeMap::new(),
        };
        let description = table.description(&name);
        self.tables.insert(name, table);
        Ok(json!({ "TableDescription": description }))
    }

    fn describe(&mut self, input: &Map<String, Value>) -> Result<Value, Fault> {
        let name = table_name(input)?.to_string();
        let table = self.table(input)?;
        Ok(json!({ "Table": table.description(&name) }))
    }

    fn put(&mut self, input: &Map<String, Value>) -> Result<Value, Fault> {
        let table = self.table(input)?;
        let Some(item) = input.get("Item").and_then(Value::as_object) else {
            return Err(validation("1 validation error detected: Value null at 'item' failed to satisfy constraint: Member must not be null"));
        };
        let key = table.key_of(item, false)?;
        let old = table.items.insert(key, item.clone());
        match input.get("ReturnValues").and_then(Value::as_str) {
            None | Some("NONE") => Ok(json!({})),
            Some("ALL_OLD") => Ok(old.map_or(json!({}), |o| json!({ "Attributes": o }))),
            Some(other) => Err(validation(format!(
                "ReturnValues can only be ALL_OLD or NONE, not {other}"
            ))),
        }
    }

    fn get(&mut self, input: &Map<String, Value>) -> Result<Value, Fault> {
        let table = self.table(input)?;
        let Some(key) = input.get("Key").and_then(Value::as_object) else {
            return Err(validation("1 validation error detected: Value null at 'key' failed to satisfy constraint: Member must not be null"));
        };
        let key = table.key_of(key, true)?;
        Ok(match table.items.get(&key) {
            Some(item) => json!({ "Item": item }),
            None => json!({}),
        })
    }

    fn list(&mut self, input: &Map<String, Value>) -> Result<Value, Fault> {
        let start = input.get("ExclusiveStartTableName").and_then(Value::as_str);
        let limit = match input.get("Limit") {
            None => 100,
            Some(v) => match v.as_u64() {
                Some(n @ 1..=100) => n as usize,
                _ => return Err(validation("1 validation error detected: Value at 'limit' failed to satisfy constraint: Member must have value between 1 and 100")),
            },
        };
        let names: Vec<&String> = self
            .tables
            .keys()
            .filter(|n| start.is_none_or(|s| n.as_str() > s))
            .collect();
        let page: Vec<&String> = names.iter().take(limit).copied().collect();
        let mut out = json!({ "TableNames": page });
        if names.len() > limit {
            out["LastEvaluatedTableName"] = json!(page.last());
        }
        Ok(out)
    }
}

//! Strict fakes of four exchange APIs whose private endpoints are signed with
//! an HMAC over parts of the request, each written from that API's public
//! authentication document (cited in its file): [`binance`] (Spot REST,
//! `SIGNED` endpoints), [`coinbase`] (Exchange REST, API-key auth),
//! [`kraken`] (Spot REST private endpoints) and [`okx`] (v5 REST).
//!
//! They exist to prove the `recipe` kind's worked recipes (`docs/recipes.md`):
//! a recipe is tested against the API as its document describes it, not
//! against the recipe. So every fake verifies over the bytes as they arrived
//! (the raw query string, the raw body), exactly as its document says, and
//! refuses with the document's errors.
//!
//! Each fake has the shape of [`super::utilsio`]: a `Config` (credentials,
//! with the `DEMO_*` ones as `Default`; a [`Clock`]; its windows), `Fake::new`,
//! `serve(listener, tls, shutdown)`, `stats()` (also `GET /_fake/stats`) and
//! `respond(request)` for in-process tests. A successful answer is a small,
//! plausible JSON body of the API's shape; where that body is an object it
//! also carries `received` (method, path, query, body as they arrived), so a
//! test sees what the fake saw.
//!
//! What the four share lives here: the clock, the counters, the answer type,
//! ISO 8601 dates. Nothing is shared with `src/kinds/` or `src/recipe/`.

pub mod binance;
pub mod coinbase;
pub mod kraken;
pub mod okx;

use std::future::Future;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use serde_json::Value;

use tokio::net::TcpListener;

use super::{serve_with, Body, Journal, Recorded};

/// The fake's idea of now, against which request timestamps are judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    /// The system clock moved by `offset_ms` (positive: the fake runs ahead
    /// of its callers), to test a caller's clock skew.
    System { offset_ms: i64 },
    /// Always this instant, in Unix milliseconds: the known-answer tests set
    /// it to the document's example timestamp.
    Fixed { unix_ms: i64 },
}

impl Default for Clock {
    fn default() -> Self {
        Clock::System { offset_ms: 0 }
    }
}

impl Clock {
    /// Microseconds since the Unix epoch (Binance accepts microsecond timestamps).
    pub fn now_micros(&self) -> i64 {
        match *self {
            Clock::Fixed { unix_ms } => unix_ms.saturating_mul(1000),
            Clock::System { offset_ms } => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_micros() as i64)
                    .unwrap_or(0);
                now.saturating_add(offset_ms.saturating_mul(1000))
            }
        }
    }

    pub fn now_ms(&self) -> i64 {
        self.now_micros().div_euclid(1000)
    }
}

/// What a fake received and how it answered, for tests and `/_fake/stats`.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Stats {
    /// The last 200 requests as they arrived, with the raw counts.
    pub journal: Journal,
    /// Requests answered with success.
    pub accepted: u64,
    /// Requests answered with an error: key, timestamp, signature, nonce,
    /// parameters, unknown path, body too large.
    pub refused: u64,
    /// Why the last refused request was refused, in the API's own words
    /// (`-1022 Signature for this request is not valid.`, `EAPI:Invalid nonce`).
    pub last_refusal: Option<String>,
}

impl Stats {
    fn record(&mut self, rec: Recorded, answer: &Answer) {
        let refused = answer.refusal.is_some();
        self.journal.record(rec, refused);
        if let Some(why) = &answer.refusal {
            self.refused += 1;
            self.last_refusal = Some(why.clone());
        } else {
            self.accepted += 1;
        }
    }
}

/// A fake's answer before it becomes a response: a refusal says why, for [`Stats`].
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    body: Value,
    refusal: Option<String>,
}

impl Answer {
    fn ok(body: Value) -> Self {
        Answer {
            status: StatusCode::OK,
            body,
            refusal: None,
        }
    }

    fn refuse(status: StatusCode, body: Value, why: impl Into<String>) -> Self {
        Answer {
            status,
            body,
            refusal: Some(why.into()),
        }
    }

    fn response(&self) -> Response<Body> {
        json_response(self.status, &self.body)
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())).boxed_unsync());
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// What differs between the four fakes; the request loop ([`respond`],
/// [`serve`]) is the same for all.
trait Exchange: Clone + Send + Sync + 'static {
    fn max_body(&self) -> usize;
    /// The counters, for `GET /_fake/stats`.
    fn stats_json(&self) -> Value;
    /// The API's own refusal of a body over `max_body`.
    fn too_large(&self) -> Answer;
    /// Verifies one request as the API's document says, and answers it.
    fn answer(&self, parts: &http::request::Parts, body: &[u8]) -> Answer;
    fn record(&self, rec: Recorded, answer: &Answer);
}

/// One request: the stats page, or the body read (at most `max_body`),
/// verified, answered and recorded.
async fn respond<E: Exchange, B>(fake: &E, req: Request<B>) -> Response<Body>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (parts, body) = req.into_parts();
    if parts.method == Method::GET && parts.uri.path() == "/_fake/stats" {
        return json_response(StatusCode::OK, &fake.stats_json());
    }
    let (body, answer) = match read_body(body, fake.max_body()).await {
        Some(body) => {
            let answer = fake.answer(&parts, &body);
            (body, answer)
        }
        None => (Bytes::new(), fake.too_large()),
    };
    fake.record(
        Recorded::new(&parts, &body, answer.status.as_u16()),
        &answer,
    );
    answer.response()
}

/// Serves `fake` on `listener` until `shutdown`.
async fn serve<E: Exchange>(
    fake: E,
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, tls, shutdown, move |_, req| {
        let fake = fake.clone();
        async move { respond(&fake, req).await }
    })
    .await
}

/// The body, whole, if it is at most `max` bytes.
async fn read_body<B>(body: B, max: usize) -> Option<Bytes>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    Limited::new(body, max)
        .collect()
        .await
        .ok()
        .map(|b| b.to_bytes())
}

/// What arrived, for the `received` member of a successful answer.
fn received(parts: &http::request::Parts, body: &[u8]) -> Value {
    serde_json::json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query().unwrap_or(""),
        "body": String::from_utf8_lossy(body),
    })
}

/// A request header as text; `None` when absent or not visible ASCII.
fn header_text<'a>(parts: &'a http::request::Parts, name: &str) -> Option<&'a str> {
    parts.headers.get(name).and_then(|v| v.to_str().ok())
}

/// Equality of a secret-derived value (a passphrase) in time independent of where it differs.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `2020-12-08T09:08:57.715Z` for a Unix time in milliseconds.
fn iso8601_ms(unix_ms: i64) -> String {
    let (days, ms) = (
        unix_ms.div_euclid(86_400_000),
        unix_ms.rem_euclid(86_400_000),
    );
    let (y, m, d) = civil_from_days(days);
    let (h, min, s, milli) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}.{milli:03}Z")
}

/// The Unix time in milliseconds of exactly `YYYY-MM-DDTHH:MM:SS.sssZ`
/// (UTC, three fraction digits); anything else is `None`.
fn parse_iso8601_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 24 {
        return None;
    }
    for (i, want) in [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (23, b'Z'),
    ] {
        if b[i] != want {
            return None;
        }
    }
    let num = |from: usize, to: usize| -> Option<i64> {
        let digits = &b[from..to];
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(
            digits
                .iter()
                .fold(0i64, |n, d| n * 10 + i64::from(d - b'0')),
        )
    };
    let (y, m, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (h, min, sec, ms) = (num(11, 13)?, num(14, 16)?, num(17, 19)?, num(20, 23)?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&m)
        || d < 1
        || d > month_days[(m - 1) as usize]
        || h > 23
        || min > 59
        || sec > 59
    {
        return None;
    }
    Some(days_from_civil(y, m, d) * 86_400_000 + ((h * 60 + min) * 60 + sec) * 1000 + ms)
}

#[cfg(test)]
mod testing {
    //! In-process calls for the four fakes' tests.
    use super::*;
    use http::Request;

    pub struct Reply {
        pub status: StatusCode,
        pub json: Value,
    }

    pub fn request(
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Request<Full<Bytes>> {
        let mut b = Request::builder().method(method).uri(uri);
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        b.body(Full::new(Bytes::from(body.to_string()))).unwrap()
    }

    pub async fn reply(resp: Response<Body>) -> Reply {
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply { status, json }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_round_trips_and_matches_known_instants() {
        // Python: datetime(2020,12,8,9,8,57,715000,tzinfo=timezone.utc).timestamp()*1000
        assert_eq!(
            parse_iso8601_ms("2020-12-08T09:08:57.715Z"),
            Some(1_607_418_537_715)
        );
        assert_eq!(iso8601_ms(1_607_418_537_715), "2020-12-08T09:08:57.715Z");
        assert_eq!(parse_iso8601_ms("1970-01-01T00:00:00.000Z"), Some(0));
        assert_eq!(
            parse_iso8601_ms("2024-02-29T23:59:59.999Z"),
            Some(1_709_251_199_999)
        );
        for ms in [0, 951_782_400_000, 1_709_251_199_999, 4_102_444_800_000] {
            assert_eq!(parse_iso8601_ms(&iso8601_ms(ms)), Some(ms));
        }
        for bad in [
            "2020-12-08T09:08:57Z",
            "2020-12-08T09:08:57.71Z",
            "2020-12-08 09:08:57.715Z",
            "2020-12-08T09:08:57.715+00:00",
            "2023-02-29T00:00:00.000Z",
            "2020-13-08T09:08:57.715Z",
            "2020-12-08T24:08:57.715Z",
            "2020-12-08T09:08:60.715Z",
            "+020-12-08T09:08:57.715Z",
        ] {
            assert_eq!(parse_iso8601_ms(bad), None, "{bad}");
        }
    }

    /// `serve` answers over loopback, `/_fake/stats` included, and stops on shutdown.
    async fn over_loopback<F, Fut>(serve: F, request: &str) -> String
    where
        F: FnOnce(tokio::net::TcpListener, tokio::sync::oneshot::Receiver<()>) -> Fut,
        Fut: std::future::Future<Output = std::io::Result<()>> + Send + 'static,
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let at = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(serve(listener, stopped));
        let mut conn = tokio::net::TcpStream::connect(at).await.unwrap();
        conn.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        conn.read_to_string(&mut out).await.unwrap();
        stop.send(()).unwrap();
        task.await.unwrap().unwrap();
        out
    }

    #[tokio::test]
    async fn each_fake_serves_over_loopback() {
        let stats = "GET /_fake/stats HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";
        let unsigned = |m: &str, p: &str| {
            format!("{m} {p} HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        };
        let f = binance::Fake::new(binance::Config::default());
        let out = over_loopback(
            |l, s| {
                f.clone().serve(l, None, async {
                    s.await.ok();
                })
            },
            &unsigned("GET", "/api/v3/account"),
        )
        .await;
        assert!(
            out.starts_with("HTTP/1.1 401") && out.contains("-2014"),
            "{out}"
        );
        let out = over_loopback(
            |l, s| {
                f.serve(l, None, async {
                    s.await.ok();
                })
            },
            stats,
        )
        .await;
        assert!(
            out.starts_with("HTTP/1.1 200") && out.contains("\"refused\":1"),
            "{out}"
        );

        let f = coinbase::Fake::new(coinbase::Config::default());
        let out = over_loopback(
            |l, s| {
                f.serve(l, None, async {
                    s.await.ok();
                })
            },
            &unsigned("GET", "/accounts"),
        )
        .await;
        assert!(
            out.starts_with("HTTP/1.1 400") && out.contains("CB-ACCESS-KEY header is required"),
            "{out}"
        );

        let f = kraken::Fake::new(kraken::Config::default());
        let out = over_loopback(
            |l, s| {
                f.clone().serve(l, None, async {
                    s.await.ok();
                })
            },
            &unsigned("POST", "/0/private/Balance"),
        )
        .await;
        assert!(
            out.starts_with("HTTP/1.1 200") && out.contains("EAPI:Invalid key"),
            "{out}"
        );
        let out = over_loopback(
            |l, s| {
                f.serve(l, None, async {
                    s.await.ok();
                })
            },
            stats,
        )
        .await;
        assert!(
            out.contains("\"nonce_refusals\":0")
                && out.contains("\"last_refusal\":\"EAPI:Invalid key\""),
            "{out}"
        );

        let f = okx::Fake::new(okx::Config::default());
        let out = over_loopback(
            |l, s| {
                f.serve(l, None, async {
                    s.await.ok();
                })
            },
            &unsigned("GET", "/api/v5/account/balance"),
        )
        .await;
        assert!(
            out.starts_with("HTTP/1.1 401") && out.contains("50103"),
            "{out}"
        );
    }

    #[test]
    fn fixed_clock_is_fixed_and_offset_moves_the_system_clock() {
        let fixed = Clock::Fixed {
            unix_ms: 1_499_827_319_559,
        };
        assert_eq!(fixed.now_ms(), 1_499_827_319_559);
        assert_eq!(fixed.now_micros(), 1_499_827_319_559_000);
        let ahead = Clock::System { offset_ms: 60_000 }.now_ms();
        let now = Clock::default().now_ms();
        assert!((ahead - now - 60_000).abs() < 5_000, "{ahead} vs {now}");
    }
}

//! The callers' HTTP/1.1 fast path.
//!
//! Nearly every call a service makes is a small request with a
//! `Content-Length` body on a keep-alive connection. For those, this loop
//! reads the head (httparse, hyper's parser), reads the body whole, runs the
//! pipeline and writes the answer, in the connection's own task with no
//! body channel or dispatcher between the socket and the pipeline: about a
//! third of the instructions hyper's server spends per request
//! (docs/performance.md). Anything else, from the first byte that is not
//! plain (a head that does not parse, too many headers, `Transfer-Encoding`,
//! `Expect`, `Upgrade`, `CONNECT`, a large body, the HTTP/2 preface), hands
//! the connection with the bytes read so far to hyper, which answers it as
//! it always has: 400, 431, 100-continue, h2c, streaming uploads.

use std::io;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use http::{HeaderName, Method, Request, StatusCode, Uri, Version};
use http_body::Body as _;
use http_body_util::{BodyExt, Either, Full};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;

use super::conns::Slot;
use crate::gateway::Gateway;
use crate::metrics::Cutoff;
use crate::proxy::RespBody;

/// Heads are bounded as hyper bounds them: 100 headers, 64 KiB (hyper
/// answers 431 past that, so those go to it).
const MAX_HEADERS: usize = 100;
const MAX_HEAD: usize = 64 * 1024;
/// Bodies up to this size are read whole here; larger ones stream through hyper.
const MAX_BODY: u64 = 1024 * 1024;
/// Answer bodies up to this size are copied behind the head: one write.
const COPY_MAX: usize = 16 * 1024;

/// How a connection left the fast path.
pub enum End<I> {
    Closed,
    /// For hyper, with the bytes already read from it.
    HandOff {
        io: I,
        read: Bytes,
    },
}

/// A request head the fast path takes, and its body's length.
struct Head {
    req: Request<()>,
    body_len: usize,
    keep_alive: bool,
}

// Returned once per request and matched at once: boxing would cost an
// allocation per request for nothing.
#[allow(clippy::large_enum_variant)]
enum Parsed {
    Complete(Head),
    Partial,
    NotPlain,
}

/// How long a caller may take: its request head (and an idle keep-alive
/// connection its next one), and its body once the head is in.
#[derive(Clone, Copy)]
pub struct Bounds {
    pub header: Duration,
    pub body: Duration,
}

/// Serves requests on `io` until the caller closes, asks to close, goes
/// quiet past the header bound while a head is awaited, is chosen to close
/// for `max_connections` while idle, `stop` turns true, or sends something
/// for hyper. A body not whole within the body bound gets a 408 and the
/// connection closes.
pub async fn run<I>(
    mut io: I,
    gw: &Gateway,
    bounds: Bounds,
    slot: &Slot,
    stop: &mut watch::Receiver<bool>,
) -> End<I>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let max_body = gw.snapshot.load().max_body.min(MAX_BODY);
    let mut buf = BytesMut::with_capacity(8 * 1024);
    let mut out = Vec::with_capacity(8 * 1024);
    let mut timer = Box::pin(tokio::time::sleep(Duration::ZERO));
    // A new connection is idle until its first bytes (`Slot` starts so).
    let mut idle_marked = true;
    loop {
        // The head, within the header bound of starting to wait for it.
        let mut deadline = None;
        let mut close_after = false;
        let head = loop {
            if !buf.is_empty() {
                match parse(&mut buf, max_body) {
                    Parsed::Complete(h) => break h,
                    Parsed::NotPlain => return hand_off(io, buf),
                    Parsed::Partial if buf.len() >= MAX_HEAD => return hand_off(io, buf),
                    Parsed::Partial => {}
                }
            }
            let at = *deadline.get_or_insert_with(|| Instant::now() + bounds.header);
            if timer.deadline() != at {
                timer.as_mut().reset(at);
            }
            if buf.capacity() - buf.len() < 1024 {
                buf.reserve(8 * 1024);
            }
            let idle = buf.is_empty();
            if idle && !idle_marked {
                if !slot.idle() {
                    return End::Closed;
                }
                idle_marked = true;
            }
            tokio::select! {
                biased;
                read = io.read_buf(&mut buf) => match read {
                    Ok(0) | Err(_) => return End::Closed,
                    Ok(_) => if idle_marked {
                        idle_marked = false;
                        // Chosen to close for the cap as this request came:
                        // it is answered, then the connection closes.
                        close_after = slot.busy();
                    },
                },
                _ = &mut timer => {
                    if !idle {
                        gw.metrics.cutoff(Cutoff::HeaderTimeout);
                        tracing::debug!(cutoff = Cutoff::HeaderTimeout.as_str(), "caller sent no complete request head within header_read_timeout");
                    }
                    return End::Closed;
                }
                _ = stop.wait_for(|s| *s), if idle => return End::Closed,
                _ = slot.evicted(), if idle => {
                    tracing::debug!("idle connection closed for max_connections");
                    return End::Closed;
                }
            }
        };
        let method = head.req.method().clone();
        let version = head.req.version();
        // The body, whole (its size is bounded above), within the body bound.
        let req = match read_body(&mut io, &mut buf, head.body_len, bounds.body).await {
            Ok(body) => head.req.map(|()| Full::new(body)),
            Err(BodyEnd::Closed) => return End::Closed,
            Err(BodyEnd::TimedOut) => {
                // The pipeline answers it (408, logged, counted); the rest
                // of the body is never read, so the connection closes.
                close_after = true;
                let mut req = head.req.map(|()| Full::new(Bytes::new()));
                req.extensions_mut().insert(crate::proxy::Refused(
                    crate::error::ProxyError::BodyTimeout(bounds.body),
                ));
                req
            }
        };
        let resp = crate::proxy::handle(gw, req).await;
        let keep_alive = head.keep_alive && !close_after && !*stop.borrow();
        match write_answer(&mut io, &mut out, resp, &method, version, keep_alive).await {
            Ok(true) => {}
            Ok(false) | Err(_) => {
                let _ = io.shutdown().await;
                return End::Closed;
            }
        }
    }
}

enum BodyEnd {
    Closed,
    TimedOut,
}

/// The next `len` bytes of `io` after what `buf` holds, by `limit` from now.
async fn read_body<I>(
    io: &mut I,
    buf: &mut BytesMut,
    len: usize,
    limit: Duration,
) -> Result<Bytes, BodyEnd>
where
    I: AsyncRead + Unpin,
{
    if buf.len() < len {
        // Only a body that is not all here yet arms a timer.
        let read = async {
            while buf.len() < len {
                buf.reserve(len - buf.len());
                match io.read_buf(buf).await {
                    Ok(0) | Err(_) => return Err(BodyEnd::Closed),
                    Ok(_) => {}
                }
            }
            Ok(())
        };
        tokio::time::timeout(limit, read)
            .await
            .map_err(|_| BodyEnd::TimedOut)??;
    }
    Ok(buf.split_to(len).freeze())
}

fn hand_off<I>(io: I, buf: BytesMut) -> End<I> {
    End::HandOff {
        io,
        read: buf.freeze(),
    }
}

/// Parses a request head at the start of `buf`, removing it when complete.
fn parse(buf: &mut BytesMut, max_body: u64) -> Parsed {
    // Uninitialised slots: no 3 KiB of zeroes per request.
    let mut slots = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut []);
    let len = match parsed.parse_with_uninit_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::NotPlain,
    };
    let version = match parsed.version {
        Some(1) => Version::HTTP_11,
        Some(0) => Version::HTTP_10,
        _ => return Parsed::NotPlain,
    };
    let Ok(method) = Method::from_bytes(parsed.method.unwrap_or("").as_bytes()) else {
        return Parsed::NotPlain;
    };
    if method == Method::CONNECT {
        return Parsed::NotPlain;
    }
    let base = buf.as_ptr() as usize;
    let path = parsed.path.unwrap_or("");
    let path_span = (path.as_ptr() as usize - base, path.len());
    let mut body_len = None;
    let mut hosts = 0u32;
    let (mut close, mut keep) = (false, false);
    let mut spans = Vec::with_capacity(parsed.headers.len());
    for h in parsed.headers.iter() {
        let name = h.name.as_bytes();
        // `Host`, the length and this connection's options are read here
        // and stay out of the map: `headers::outgoing` would drop them, and
        // nothing before it reads them.
        if name.eq_ignore_ascii_case(b"content-length") {
            // A body over `max_body` goes to hyper, which answers 413
            // without waiting for it.
            match (crate::headers::digits(h.value), body_len) {
                (Some(n), None) if n <= max_body => body_len = Some(n as usize),
                _ => return Parsed::NotPlain,
            }
            continue;
        } else if name.eq_ignore_ascii_case(b"host") {
            // One Host, of plain host[:port] bytes; anything else is
            // refused on hyper's path (RFC 9112 §3.2), with its message.
            hosts += 1;
            if hosts > 1 || !h.value.iter().all(|b| is_host_byte(*b)) {
                return Parsed::NotPlain;
            }
            continue;
        } else if name.eq_ignore_ascii_case(b"keep-alive") {
            continue;
        } else if name.eq_ignore_ascii_case(b"transfer-encoding")
            || name.eq_ignore_ascii_case(b"expect")
            || name.eq_ignore_ascii_case(b"upgrade")
        {
            return Parsed::NotPlain;
        } else if name.eq_ignore_ascii_case(b"connection") {
            let mut others = false;
            for t in crate::headers::tokens(h.value) {
                let (c, k) = (
                    t.eq_ignore_ascii_case(b"close"),
                    t.eq_ignore_ascii_case(b"keep-alive"),
                );
                close |= c;
                keep |= k;
                others |= !c && !k && !t.is_empty();
            }
            // Names it lists are hop-by-hop too: `outgoing` drops them by it.
            if !others {
                continue;
            }
        }
        let Ok(name) = HeaderName::from_bytes(name) else {
            return Parsed::NotPlain;
        };
        let start = h.value.as_ptr() as usize - base;
        spans.push((name, start, start + h.value.len()));
    }
    // HTTP/1.1 requires a Host (HTTP/1.0 predates it).
    if hosts == 0 && version == Version::HTTP_11 {
        return Parsed::NotPlain;
    }
    let bytes = buf.split_to(len).freeze();
    let Ok(uri) = Uri::from_maybe_shared(bytes.slice(path_span.0..path_span.0 + path_span.1))
    else {
        return Parsed::NotPlain;
    };
    let Ok(headers) = crate::headers::shared_map(&bytes, spans) else {
        return Parsed::NotPlain;
    };
    let mut req = Request::new(());
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = version;
    *req.headers_mut() = headers;
    Parsed::Complete(Head {
        req,
        body_len: body_len.unwrap_or(0),
        keep_alive: if version == Version::HTTP_11 {
            !close
        } else {
            keep && !close
        },
    })
}

/// A byte of a `Host` value as RFC 3986 writes `host[:port]`: reg-name
/// (unreserved, pct-encoded, sub-delims), IP literals in brackets, a port.
fn is_host_byte(b: u8) -> bool {
    HOST_BYTES[b as usize]
}

/// [`is_host_byte`] as a table: one load per byte of every request's Host.
const HOST_BYTES: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'%'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'['
                    | b']'
            );
        i += 1;
    }
    t
};

/// Writes one answer; `Ok(true)` when the connection stays open for the next.
async fn write_answer<I>(
    io: &mut I,
    out: &mut Vec<u8>,
    resp: http::Response<RespBody>,
    method: &Method,
    version: Version,
    mut keep_alive: bool,
) -> io::Result<bool>
where
    I: AsyncWrite + Unpin,
{
    let (mut parts, mut body) = resp.into_parts();
    let status = parts.status;
    let bodiless = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let head_only = bodiless || method == Method::HEAD;
    // Header lines kept as the upstream sent them go out as they are, less
    // the framing; a HEAD answer keeps its length, which the map's loop knows.
    let raw = match &mut body {
        Either::Right(up) if head_only => {
            crate::upstream::headers_into_map(&mut parts.headers, up);
            None
        }
        Either::Right(up) => up.take_raw(),
        Either::Left(_) => None,
    };
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut has_date = false;
    if let Some(raw) = &raw {
        raw.write_to(out);
        has_date = raw.has_date;
    }
    for (name, value) in &parts.headers {
        // The framing is this connection's; a HEAD answer keeps the length
        // its GET would have.
        if name == http::header::TRANSFER_ENCODING
            || name == http::header::CONNECTION
            || (name == http::header::CONTENT_LENGTH && (bodiless || method != Method::HEAD))
        {
            continue;
        }
        has_date |= name == http::header::DATE;
        header(out, name.as_str().as_bytes(), value.as_bytes());
    }
    if !has_date {
        date::with(|d| header(out, b"date", d));
    }
    let chunked = match (head_only, body.size_hint().exact()) {
        (true, _) => false,
        (false, Some(n)) => {
            out.extend_from_slice(b"content-length: ");
            crate::headers::decimal(out, n);
            out.extend_from_slice(b"\r\n");
            false
        }
        (false, None) if version == Version::HTTP_11 => {
            header(out, b"transfer-encoding", b"chunked");
            true
        }
        // An HTTP/1.0 caller reads an unsized body to the connection's close.
        (false, None) => {
            keep_alive = false;
            false
        }
    };
    match (keep_alive, version) {
        (false, Version::HTTP_11) => header(out, b"connection", b"close"),
        (true, Version::HTTP_10) => header(out, b"connection", b"keep-alive"),
        _ => {}
    }
    out.extend_from_slice(b"\r\n");
    if head_only {
        io.write_all(out).await?;
        return Ok(keep_alive);
    }
    loop {
        // What is ready goes out with the head; wait only with nothing buffered.
        let frame = match body.frame().now_or_never() {
            Some(f) => f,
            None => {
                io.write_all(out).await?;
                out.clear();
                body.frame().await
            }
        };
        match frame {
            None => break,
            Some(Err(e)) => {
                // Cut short: the caller must see an incomplete answer, not an end.
                tracing::debug!(error = %e, "upstream answer failed mid-body; closing the caller's connection");
                io.write_all(out).await?;
                return Ok(false);
            }
            Some(Ok(frame)) => {
                let Ok(data) = frame.into_data() else {
                    continue; // trailers are not passed on
                };
                if data.is_empty() {
                    continue;
                }
                if chunked {
                    out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
                }
                if data.len() <= COPY_MAX {
                    out.extend_from_slice(&data);
                } else {
                    io.write_all(out).await?;
                    out.clear();
                    io.write_all(&data).await?;
                }
                if chunked {
                    out.extend_from_slice(b"\r\n");
                }
                if out.len() >= 64 * 1024 {
                    io.write_all(out).await?;
                    out.clear();
                }
            }
        }
    }
    if chunked {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    io.write_all(out).await?;
    Ok(keep_alive)
}

fn header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The `Date` header, formatted once a second per thread.
mod date {
    use std::cell::RefCell;
    use std::time::{SystemTime, UNIX_EPOCH};

    thread_local! {
        static CACHE: RefCell<(u64, Vec<u8>)> = const { RefCell::new((0, Vec::new())) };
    }

    pub fn with(f: impl FnOnce(&[u8])) {
        let now = SystemTime::now();
        let secs = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        CACHE.with(|c| {
            let mut c = c.borrow_mut();
            if c.0 != secs || c.1.is_empty() {
                c.0 = secs;
                c.1 = httpdate::fmt_http_date(now).into_bytes();
            }
            f(&c.1);
        });
    }
}

#[cfg(test)]
#[path = "h1_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "h1_diff_tests.rs"]
mod diff_tests;

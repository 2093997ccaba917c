//! HTTP/1.1 to the upstream, driven by the task that sends the request.
//!
//! hyper-util's pooled client runs every upstream connection as a task of
//! its own and talks to it through channels: each request crosses two task
//! switches and a pool checkout future, about half of countersign's
//! instructions per request (docs/performance.md). Here the sending task
//! writes the request and parses the answer's head itself (httparse, the
//! parser hyper uses), and the answer's body reads straight from the socket
//! as the caller's connection polls it; at its end the connection goes back
//! to this thread's idle list. Requests whose body streams, and upstreams
//! that choose HTTP/2 by ALPN, keep going through hyper-util.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, Method, Response, StatusCode, Version};
use http_body::{Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::{BoxError, IdleConns};
use crate::vocab::Outgoing;

/// Answer heads are bounded like callers' heads: 100 headers, 64 KiB.
const MAX_HEADERS: usize = 100;
const MAX_HEAD: usize = 64 * 1024;
/// Bodies up to this size are copied behind the head: one write, not two.
const COPY_BODY_MAX: usize = 16 * 1024;

/// A connection to the upstream: plain TCP or rustls over TCP.
pub enum Stream {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, b),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, b),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// One upstream connection and the bytes read from it but not yet used.
pub struct Conn {
    io: Stream,
    buf: BytesMut,
    /// When it went back to the idle list; `None` while fresh from connect.
    pub idle_since: Option<Instant>,
}

impl Conn {
    pub fn new(io: Stream) -> Self {
        Conn {
            io,
            buf: BytesMut::with_capacity(8 * 1024),
            idle_since: None,
        }
    }

    /// Whether an idle connection can still carry a request: the upstream
    /// has neither closed it nor sent anything unasked. Never waits: a
    /// socket with nothing to read is alive.
    pub fn is_usable(&mut self) -> bool {
        let waker = futures_util::task::noop_waker_ref();
        let mut cx = Context::from_waker(waker);
        let mut probe = [0u8; 1];
        let mut rb = ReadBuf::new(&mut probe);
        matches!(
            Pin::new(&mut self.io).poll_read(&mut cx, &mut rb),
            Poll::Pending
        )
    }
}

/// Why an exchange failed, and whether resending on a new connection is safe.
#[derive(Debug)]
pub struct ExchangeError {
    pub message: String,
    /// Nothing was written, or the upstream closed before answering a
    /// request that may be repeated.
    pub retryable: bool,
    /// Which bound ran out, when one did.
    pub timeout: Option<Bound>,
}

/// The bounds of one exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// The request's deadline (`request_timeout`).
    Deadline,
    /// The upstream's silence once the request was written (`read_timeout`).
    Silence,
}

/// When an exchange must be over: the request's deadline, and the longest
/// silence from the upstream once the request is written.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub deadline: Instant,
    pub silence: std::time::Duration,
}

impl ExchangeError {
    fn timed_out(bound: Bound, what: &str) -> Self {
        ExchangeError {
            message: what.to_string(),
            retryable: false,
            timeout: Some(bound),
        }
    }
}

/// The request as bytes: the head (and a small body) in one buffer, a large
/// body beside it. Encoded once, so a retry resends the same bytes.
pub struct Encoded {
    head: Vec<u8>,
    body: Bytes,
    method: Method,
}

pub fn encode(out: &Outgoing, authority: &str, path_and_query: &str) -> Encoded {
    let body = out.body.clone().unwrap_or_default();
    let inline = if body.len() <= COPY_BODY_MAX {
        body.len()
    } else {
        0
    };
    let mut head = Vec::with_capacity(256 + path_and_query.len() + out.headers.len() * 64 + inline);
    head.extend_from_slice(out.method.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(path_and_query.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\n");
    if !out.headers.contains_key(http::header::HOST) {
        head.extend_from_slice(b"host: ");
        head.extend_from_slice(authority.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    for (name, value) in &out.headers {
        // The framing is this connection's: the length of the body as sent.
        if name == http::header::CONTENT_LENGTH || name == http::header::TRANSFER_ENCODING {
            continue;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    let wants_length = matches!(out.method, Method::POST | Method::PUT | Method::PATCH);
    if !body.is_empty() || wants_length {
        head.extend_from_slice(b"content-length: ");
        crate::headers::decimal(&mut head, body.len() as u64);
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    let body = if body.len() <= COPY_BODY_MAX {
        head.extend_from_slice(&body);
        Bytes::new()
    } else {
        body
    };
    Encoded {
        head,
        body,
        method: out.method.clone(),
    }
}

/// How the answer's body ends.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Framing {
    Length(u64),
    Chunked(Chunk),
    /// Until the upstream closes: the connection cannot be reused.
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk's data, this many bytes left.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines up to an empty one.
    Trailers,
}

/// Sends `req` on `conn` and reads the answer's head. The body is left to
/// the returned `WireBody`, which gives the connection back to `idle` at its
/// end when the upstream keeps it open.
pub async fn exchange(
    mut conn: Conn,
    req: &Encoded,
    idle: IdleConns,
    limits: Limits,
) -> Result<Response<WireBody>, ExchangeError> {
    let reused = conn.idle_since.is_some();
    // The request goes out at the end of this round of the worker's event
    // loop, after the other requests the round reads and signs: the round's
    // writes reach the upstream back to back, and an upstream on the same
    // machine wakes once for them, not once each. Under load this took tts
    // from 59.9k to 65.0k requests/s (xrtc 77.8k -> 80.9k) with less kernel
    // time on both sides; alone on a connection it costs one `epoll_wait`
    // that does not block (docs/performance.md, "One wake-up per round").
    tokio::task::yield_now().await;
    let write = async {
        conn.io.write_all(&req.head).await?;
        if !req.body.is_empty() {
            conn.io.write_all(&req.body).await?;
        }
        conn.io.flush().await
    };
    // The common write completes on its first poll: only one that has to
    // wait (an upstream that does not read) gets a timer.
    let mut write = std::pin::pin!(write);
    let written = match futures_util::FutureExt::now_or_never(write.as_mut()) {
        Some(done) => Ok(done),
        None => tokio::time::timeout_at(limits.deadline, write).await,
    };
    match written {
        Err(_) => {
            return Err(ExchangeError::timed_out(
                Bound::Deadline,
                "the upstream did not take the request",
            ))
        }
        Ok(Err(e)) => {
            return Err(ExchangeError {
                message: format!("sending the request: {e}"),
                retryable: reused,
                timeout: None,
            })
        }
        Ok(Ok(())) => {}
    }
    tracing::trace!(
        reused,
        bytes = req.head.len() + req.body.len(),
        "request written upstream"
    );
    // The head must come within `read_timeout` of the request's end, and
    // by the request's deadline: whichever is first.
    let silent_by = Instant::now() + limits.silence;
    let (by, bound) = if silent_by < limits.deadline {
        (silent_by, Bound::Silence)
    } else {
        (limits.deadline, Bound::Deadline)
    };
    let repeatable = req.method.is_idempotent();
    let read = async {
        loop {
            let head = read_head(&mut conn).await?;
            // Interim answers (100 Continue, 103 Early Hints) precede the real one.
            if head.status.is_informational() && head.status != StatusCode::SWITCHING_PROTOCOLS {
                continue;
            }
            break Ok::<_, io::Error>(head);
        }
    };
    let head = match tokio::time::timeout_at(by, read).await {
        Err(_) => {
            return Err(ExchangeError::timed_out(
                bound,
                "the upstream sent no answer head in time",
            ))
        }
        Ok(Err(e)) => {
            let nothing = e.kind() == io::ErrorKind::UnexpectedEof
                || e.kind() == io::ErrorKind::ConnectionReset;
            return Err(ExchangeError {
                message: e.to_string(),
                retryable: reused && repeatable && nothing,
                timeout: None,
            });
        }
        Ok(Ok(head)) => head,
    };
    if let Some(why) = head.faulty(&req.method) {
        return Err(ExchangeError {
            message: why.to_string(),
            retryable: false,
            timeout: None,
        });
    }
    let framing = head.framing(&req.method);
    let keep_alive = framing != Framing::Close && head.keeps_alive();
    let status = head.status;
    tracing::trace!(
        status = status.as_u16(),
        ?framing,
        keep_alive,
        "answer head from upstream"
    );
    let mut body = WireBody::new(conn, framing, keep_alive, idle);
    body.raw = head.raw;
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    *resp.version_mut() = head.version;
    *resp.headers_mut() = head.headers;
    Ok(resp)
}

/// Reads and parses one answer head; the bytes after it stay in `conn.buf`.
async fn read_head(conn: &mut Conn) -> io::Result<Head> {
    let mut received = !conn.buf.is_empty();
    loop {
        if !conn.buf.is_empty() {
            if let Some(head) = parse_head(&mut conn.buf)? {
                return Ok(head);
            }
            if conn.buf.len() >= MAX_HEAD {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the upstream's answer head is over 64 KiB",
                ));
            }
        }
        conn.buf.reserve(8 * 1024);
        let n = conn.io.read_buf(&mut conn.buf).await?;
        if n == 0 {
            let msg = if received {
                "the upstream closed the connection in the middle of its answer"
            } else {
                "the upstream closed the connection without answering"
            };
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, msg));
        }
        received = true;
    }
}

/// An answer head, with what its framing headers said.
struct Head {
    status: StatusCode,
    version: Version,
    /// The end-to-end headers; the framing ones are consumed here. Empty
    /// when the head is plain and `raw` holds its lines.
    headers: HeaderMap,
    raw: Option<RawHeaders>,
    /// `Transfer-Encoding` was sent: whether its last coding is chunked.
    chunked: Option<bool>,
    length: Option<u64>,
    close: bool,
    keep_alive: bool,
}

impl Head {
    fn framing(&self, method: &Method) -> Framing {
        let s = self.status;
        if method == Method::HEAD
            || s.is_informational()
            || s == StatusCode::NO_CONTENT
            || s == StatusCode::NOT_MODIFIED
        {
            return Framing::Length(0);
        }
        match (self.chunked, self.length) {
            (Some(true), _) => Framing::Chunked(Chunk::Size),
            (Some(false), _) | (None, None) => Framing::Close,
            (None, Some(n)) => Framing::Length(n),
        }
    }

    /// RFC 9112 §6.1: an HTTP/1.0 answer whose body is framed by
    /// `Transfer-Encoding` has faulty framing (hyper's client refuses it
    /// too; the differential test found ours reading it as chunked).
    fn faulty(&self, method: &Method) -> Option<&'static str> {
        let framed = self.framing(method) != Framing::Length(0);
        (self.version == Version::HTTP_10 && self.chunked.is_some() && framed)
            .then_some("the upstream sent Transfer-Encoding in an HTTP/1.0 answer")
    }

    fn keeps_alive(&self) -> bool {
        // Both framings at once smells of response splitting (RFC 9112
        // §6.3): read it as chunked, then do not trust the connection. A
        // 101 hands the connection to another protocol.
        if (self.chunked.is_some() && self.length.is_some())
            || self.status == StatusCode::SWITCHING_PROTOCOLS
        {
            return false;
        }
        if self.version == Version::HTTP_10 {
            self.keep_alive && !self.close
        } else {
            !self.close
        }
    }
}

/// Parses a complete head out of `buf` (removing it), or `None` for more bytes.
fn parse_head(buf: &mut BytesMut) -> io::Result<Option<Head>> {
    let bad = |m: String| io::Error::new(io::ErrorKind::InvalidData, m);
    // Uninitialised slots: no 3 KiB of zeroes per answer.
    let mut slots = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut parsed,
        buf,
        &mut slots,
    ) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(bad(format!("the upstream's answer is not HTTP/1: {e}"))),
    };
    let code = parsed.code.unwrap_or(0);
    let mut head = Head {
        status: StatusCode::from_u16(code)
            .map_err(|_| bad(format!("the upstream answered with status {code}")))?,
        version: if parsed.version == Some(0) {
            Version::HTTP_10
        } else {
            Version::HTTP_11
        },
        headers: HeaderMap::new(),
        raw: None,
        chunked: None,
        length: None,
        close: false,
        keep_alive: false,
    };
    let base = buf.as_ptr() as usize;
    // Where the header lines start: the blank line's, when there are none.
    let start = parsed
        .headers
        .first()
        .map_or(len.saturating_sub(2), |h| h.name.as_ptr() as usize - base);
    let mut lines = Lines {
        last: start,
        at: start,
        plain: true,
        skip: [(0, 0); MAX_SKIP],
        skips: 0,
        has_date: false,
    };
    for h in parsed.headers.iter() {
        let (name, value) = (h.name.as_bytes(), h.value);
        lines.line(buf, base, name, value);
        if name.eq_ignore_ascii_case(b"content-length") {
            for part in crate::headers::tokens(value) {
                let n = crate::headers::digits(part).ok_or_else(|| {
                    bad("the upstream sent a Content-Length that is not a number".into())
                })?;
                if head.length.is_some_and(|l| l != n) {
                    return Err(bad(
                        "the upstream sent conflicting Content-Length values".into()
                    ));
                }
                head.length = Some(n);
            }
            // The caller's connection writes its own length.
            lines.leave_out();
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            let last = crate::headers::tokens(value).next_back().unwrap_or(b"");
            head.chunked = Some(last.eq_ignore_ascii_case(b"chunked"));
            lines.leave_out();
        } else if name.eq_ignore_ascii_case(b"connection") {
            for t in crate::headers::tokens(value) {
                if t.eq_ignore_ascii_case(b"close") {
                    head.close = true;
                } else if t.eq_ignore_ascii_case(b"keep-alive") {
                    head.keep_alive = true;
                }
            }
            lines.leave_out();
            // Other names listed are hop-by-hop too: the map's path removes them.
            lines.plain &= !names_others(value);
        } else if name.eq_ignore_ascii_case(b"keep-alive") {
            lines.leave_out();
        } else if name.eq_ignore_ascii_case(b"date") {
            lines.has_date = true;
        } else if NOTABLE
            .iter()
            .any(|n| n.len() == name.len() && n.eq_ignore_ascii_case(name))
        {
            lines.plain = false;
        }
    }
    // The lines must run up to the blank line, CRLF throughout.
    lines.plain &= lines.at + 2 == len && buf.get(len - 2..len) == Some(b"\r\n");
    let spans = if lines.plain {
        None
    } else {
        Some(spans_of(parsed.headers, base)?)
    };
    let bytes = buf.split_to(len).freeze();
    match spans {
        Some(spans) => {
            head.headers = crate::headers::shared_map(&bytes, spans)
                .map_err(|name| bad(format!("the upstream sent a bad value for {name}")))?;
        }
        None => {
            for s in &mut lines.skip[..lines.skips] {
                *s = (s.0 - start, s.1 - start);
            }
            head.raw = Some(RawHeaders {
                bytes: bytes.slice(start..),
                skip: lines.skip,
                skips: lines.skips,
                has_date: lines.has_date,
            });
        }
    }
    Ok(Some(head))
}

/// A `Connection` value naming headers other than its own options.
fn names_others(value: &[u8]) -> bool {
    // The common values, without splitting.
    if value.eq_ignore_ascii_case(b"keep-alive") || value.eq_ignore_ascii_case(b"close") {
        return false;
    }
    crate::headers::tokens(value).any(|t| {
        !t.is_empty() && !t.eq_ignore_ascii_case(b"close") && !t.eq_ignore_ascii_case(b"keep-alive")
    })
}

/// The end-to-end headers of a parsed head, as names and where each value
/// lies from `base`: the framing ones are this hop's and stay out. A
/// `Connection` naming other headers stays, for `headers::strip_response`
/// to remove those with it.
fn spans_of(
    headers: &[httparse::Header<'_>],
    base: usize,
) -> io::Result<Vec<(HeaderName, usize, usize)>> {
    let mut spans = Vec::with_capacity(headers.len());
    for h in headers {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"transfer-encoding")
            || name.eq_ignore_ascii_case(b"keep-alive")
            || (name.eq_ignore_ascii_case(b"connection") && !names_others(h.value))
        {
            continue;
        }
        let name = HeaderName::from_bytes(name).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the upstream sent a bad header name {:?}", h.name),
            )
        })?;
        // An empty value's slice may not point into the head.
        let start = if h.value.is_empty() {
            0
        } else {
            h.value.as_ptr() as usize - base
        };
        spans.push((name, start, start + h.value.len()));
    }
    Ok(spans)
}

/// An answer's header lines as the upstream sent them, kept when nothing
/// on the way back needs them as a map (a plain head: see `NOTABLE`). The
/// caller's HTTP/1 connection writes them as they are, less the framing
/// lines; anything else asks for `into_map`. Building the map costs more
/// than the rest of the answer's way back (docs/performance.md).
pub struct RawHeaders {
    /// The header lines and the blank line after them.
    bytes: Bytes,
    /// The framing lines (`Content-Length`, `Transfer-Encoding`,
    /// `Connection`, `Keep-Alive`), as ranges of `bytes`.
    skip: [(usize, usize); MAX_SKIP],
    skips: usize,
    /// A `Date` line is among them.
    pub has_date: bool,
}

impl RawHeaders {
    /// Appends the lines that go on to the caller, each ending in CRLF.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let mut at = 0;
        for &(start, end) in &self.skip[..self.skips] {
            out.extend_from_slice(&self.bytes[at..start]);
            at = end;
        }
        out.extend_from_slice(&self.bytes[at..self.bytes.len() - 2]);
    }

    /// The same headers as a map, as a head that is not plain gets them.
    pub fn into_map(self) -> HeaderMap {
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let spans = match httparse::parse_headers(&self.bytes, &mut slots) {
            Ok(httparse::Status::Complete((_, headers))) => {
                spans_of(headers, self.bytes.as_ptr() as usize)
            }
            _ => Err(io::Error::other("unparsable")),
        };
        // These lines parsed once already: a failure here is a bug, and the
        // answer goes on without them rather than not at all.
        match spans.map(|s| crate::headers::shared_map(&self.bytes, s)) {
            Ok(Ok(map)) => map,
            _ => {
                tracing::error!("an upstream answer's headers did not parse a second time");
                HeaderMap::new()
            }
        }
    }
}

/// Names whose presence means something on the way back reads or removes
/// headers from the answer: the rate-limit hold (`Limits::observe`), a
/// session's cookies (`Kind::observe`), the hop-by-hop ones
/// (`headers::strip_response`). Such an answer's headers go into a map.
const NOTABLE: &[&[u8]] = &[
    b"set-cookie",
    b"x-ratelimit-remaining",
    b"proxy-connection",
    b"proxy-authenticate",
    b"proxy-authorization",
    b"te",
    b"trailer",
    b"upgrade",
];

/// Lines left out of a plain head when it is passed on: at most this many.
const MAX_SKIP: usize = 4;

/// While parsing: whether the header lines can be passed on as they came.
struct Lines {
    /// Where the last line read starts, and where the next should.
    last: usize,
    at: usize,
    plain: bool,
    skip: [(usize, usize); MAX_SKIP],
    skips: usize,
    has_date: bool,
}

impl Lines {
    /// Notes the line holding `name: value`. A line that does not start
    /// where the last one ended, or does not end in CRLF right after its
    /// value, makes the head not plain.
    fn line(&mut self, buf: &[u8], base: usize, name: &[u8], value: &[u8]) {
        let start = name.as_ptr() as usize - base;
        // An empty value's slice may not point into the buffer.
        let end = if value.is_empty() {
            usize::MAX
        } else {
            value.as_ptr() as usize - base + value.len()
        };
        if start != self.at || buf.get(end..end.saturating_add(2)) != Some(b"\r\n") {
            self.plain = false;
            return;
        }
        self.last = start;
        self.at = end + 2;
    }

    /// Leaves out the line just read.
    fn leave_out(&mut self) {
        if !self.plain {
            return;
        }
        if self.skips == MAX_SKIP {
            self.plain = false;
            return;
        }
        self.skip[self.skips] = (self.last, self.at);
        self.skips += 1;
    }
}
/// The answer's body, read from the upstream connection as it is polled.
pub struct WireBody {
    conn: Option<Conn>,
    framing: Framing,
    keep_alive: bool,
    idle: Option<IdleConns>,
    /// The head's lines, when it was plain and nobody has asked for a map.
    raw: Option<RawHeaders>,
}

impl WireBody {
    fn new(conn: Conn, framing: Framing, keep_alive: bool, idle: IdleConns) -> Self {
        let mut body = WireBody {
            conn: Some(conn),
            framing,
            keep_alive,
            idle: Some(idle),
            raw: None,
        };
        if framing == Framing::Length(0) {
            body.finish();
        }
        body
    }

    /// A body already over, holding no connection: what a cut answer
    /// leaves in place of its wire.
    pub fn ended() -> Self {
        WireBody {
            conn: None,
            framing: Framing::Length(0),
            keep_alive: false,
            idle: None,
            raw: None,
        }
    }

    /// The answer's header lines, if they were kept as they came.
    pub fn take_raw(&mut self) -> Option<RawHeaders> {
        self.raw.take()
    }

    /// The body ended as framed: the connection may carry the next request.
    fn finish(&mut self) {
        self.framing = Framing::Length(0);
        if let (Some(conn), Some(idle)) = (self.conn.take(), self.idle.take()) {
            if self.keep_alive && conn.buf.is_empty() {
                idle.put_back(conn);
            }
        }
    }

    fn fail(&mut self, message: &str) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.conn = None;
        self.framing = Framing::Length(0);
        Poll::Ready(Some(Err(Box::new(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            message.to_string(),
        )))))
    }
}

/// Reads more from the connection into its buffer; `Ready(Ok(0))` at EOF.
fn poll_fill(conn: &mut Conn, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
    if conn.buf.capacity() - conn.buf.len() < 4096 {
        conn.buf.reserve(16 * 1024);
    }
    tokio_util::io::poll_read_buf(Pin::new(&mut conn.io), cx, &mut conn.buf)
}

impl http_body::Body for WireBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match this.framing {
                Framing::Length(0) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Framing::Length(left) | Framing::Chunked(Chunk::Data(left))
                    if !conn.buf.is_empty() =>
                {
                    let n = (conn.buf.len() as u64).min(left) as usize;
                    let data = conn.buf.split_to(n).freeze();
                    this.framing = match this.framing {
                        Framing::Length(_) => Framing::Length(left - n as u64),
                        _ if left == n as u64 => Framing::Chunked(Chunk::DataEnd),
                        _ => Framing::Chunked(Chunk::Data(left - n as u64)),
                    };
                    if this.framing == Framing::Length(0) {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Framing::Close if !conn.buf.is_empty() => {
                    let data = conn.buf.split().freeze();
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Framing::Chunked(state) if !conn.buf.is_empty() => {
                    match step_chunk(state, &mut conn.buf) {
                        Ok(Some(Some(next))) => {
                            this.framing = Framing::Chunked(next);
                            continue;
                        }
                        Ok(Some(None)) => {
                            this.finish();
                            return Poll::Ready(None);
                        }
                        Ok(None) => {} // needs more bytes
                        Err(m) => return this.fail(m),
                    }
                }
                _ => {}
            }
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match poll_fill(conn, cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return this.fail(&format!("reading the answer: {e}")),
                Poll::Ready(Ok(0)) => {
                    if this.framing == Framing::Close {
                        this.keep_alive = false;
                        this.finish();
                        return Poll::Ready(None);
                    }
                    return this.fail("the upstream closed the connection before the answer's end");
                }
                Poll::Ready(Ok(_)) => {}
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.conn.is_none() || self.framing == Framing::Length(0)
    }

    fn size_hint(&self) -> SizeHint {
        match (self.conn.is_some(), self.framing) {
            (false, _) => SizeHint::with_exact(0),
            (true, Framing::Length(n)) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

/// Moves the chunked decoder past framing bytes in `buf`: `Ok(None)` needs
/// more bytes, `Ok(Some(None))` is the body's end, else the next state.
fn step_chunk(state: Chunk, buf: &mut BytesMut) -> Result<Option<Option<Chunk>>, &'static str> {
    const BAD: &str = "the upstream's chunked body is malformed";
    match state {
        Chunk::Size => match httparse::parse_chunk_size(buf) {
            Ok(httparse::Status::Complete((used, size))) => {
                buf.advance(used);
                Ok(Some(Some(if size == 0 {
                    Chunk::Trailers
                } else {
                    Chunk::Data(size)
                })))
            }
            Ok(httparse::Status::Partial) if buf.len() < 4096 => Ok(None),
            _ => Err(BAD),
        },
        Chunk::DataEnd => {
            if buf.len() < 2 {
                return Ok(None);
            }
            if &buf[..2] != b"\r\n" {
                return Err(BAD);
            }
            buf.advance(2);
            Ok(Some(Some(Chunk::Size)))
        }
        Chunk::Trailers => match buf.iter().position(|b| *b == b'\n') {
            // An empty line ends the trailers (and the body).
            Some(i) => {
                let empty = i == 0 || (i == 1 && buf[0] == b'\r');
                buf.advance(i + 1);
                Ok(Some(if empty { None } else { Some(Chunk::Trailers) }))
            }
            None if buf.len() < MAX_HEAD => Ok(None),
            None => Err(BAD),
        },
        Chunk::Data(_) => Ok(Some(Some(state))),
    }
}

#[cfg(test)]
#[path = "h1_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "h1_diff_tests.rs"]
mod diff_tests;

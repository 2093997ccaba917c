//! The service hyper drives for the connections the fast path hands over:
//! the pipeline's, plus what the edge owes every request there. Its body
//! must arrive within `body_read_timeout` of its head ([`Deadline`]); a head
//! whose framing RFC 9112 says to refuse (which hyper lets through) is
//! refused; and the connection's [`Slot`] knows when a request is in flight,
//! so that `max_connections` never closes it mid-request.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{Request, Response, Version};
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use super::conns::Slot;
use crate::error::ProxyError;
use crate::gateway::Gateway;
use crate::proxy::{GatewayService, Refused, RespBody};
use crate::upstream::BoxError;
use crate::vocab::BodyTimedOut;

pub struct ConnService {
    pub gateway: Arc<Gateway>,
    pub slot: Arc<Slot>,
    pub body_timeout: Duration,
}

impl<B> hyper::service::Service<Request<B>> for ConnService
where
    B: Body<Data = Bytes, Error: Into<BoxError>> + Unpin + Send + Sync + 'static,
{
    type Response = Response<Tracked<RespBody>>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn call(&self, req: Request<B>) -> Self::Future {
        let in_flight = InFlight::new(self.slot.clone());
        let by = Instant::now() + self.body_timeout;
        let limit = self.body_timeout;
        let mut req = req.map(|b| Deadline::new(b, by, limit));
        if let Some(e) = refusal(&req) {
            req.extensions_mut().insert(Refused(e));
        }
        let mut service = GatewayService(self.gateway.clone());
        let answer = tower::Service::call(&mut service, req);
        Box::pin(async move {
            let Ok(resp) = answer.await;
            Ok(resp.map(|body| Tracked {
                body,
                _in_flight: in_flight,
            }))
        })
    }
}

/// RFC 9112's framing rules hyper does not apply: an HTTP/1.1 request
/// without `Host`, any HTTP/1 request with two `Host` fields or an invalid
/// one (§3.2), and `chunked` applied more than once (§6.1) are refused.
/// (The fast path hands every such head here.)
pub fn refusal<B>(req: &Request<B>) -> Option<ProxyError> {
    let version = req.version();
    if version >= Version::HTTP_2 {
        return None;
    }
    let bad = |m: &str| Some(ProxyError::BadFraming(m.to_string()));
    let mut hosts = req.headers().get_all(http::header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (None, _) if version == Version::HTTP_11 => {
            return bad("an HTTP/1.1 request must carry one Host field (RFC 9112 §3.2)")
        }
        (Some(_), Some(_)) => {
            return bad("a request must not carry two Host fields (RFC 9112 §3.2)")
        }
        (Some(v), None)
            if !v.is_empty() && http::uri::Authority::try_from(v.as_bytes()).is_err() =>
        {
            return bad("the Host field is not a host[:port] (RFC 9112 §3.2)")
        }
        _ => {}
    }
    let chunked = req
        .headers()
        .get_all(http::header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .filter(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"))
        .count();
    if chunked > 1 {
        return bad("chunked must not be applied to a body twice (RFC 9112 §6.1)");
    }
    None
}

/// A caller's body that must be whole by a deadline: past it, the next
/// read fails with [`BodyTimedOut`], whoever reads it (a buffered body, or
/// one streaming upstream). Its timer is made only if a read has to wait.
pub struct Deadline<B> {
    inner: B,
    by: Instant,
    limit: Duration,
    timer: Option<Pin<Box<Sleep>>>,
    expired: bool,
}

impl<B> Deadline<B> {
    pub fn new(inner: B, by: Instant, limit: Duration) -> Self {
        Deadline {
            inner,
            by,
            limit,
            timer: None,
            expired: false,
        }
    }
}

impl<B> Body for Deadline<B>
where
    B: Body<Data = Bytes, Error: Into<BoxError>> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.expired {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(f) => Poll::Ready(f.map(|r| r.map_err(Into::into))),
            Poll::Pending => {
                let by = this.by;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(by)));
                if timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.expired = true;
                Poll::Ready(Some(Err(Box::new(BodyTimedOut(this.limit)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.expired || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request in flight on its connection, until its answer is written.
pub struct InFlight(Arc<Slot>);

impl InFlight {
    fn new(slot: Arc<Slot>) -> Self {
        slot.request_started();
        InFlight(slot)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

/// An answer body that holds its request's [`InFlight`] until it is dropped.
pub struct Tracked<B> {
    body: B,
    _in_flight: InFlight,
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(version: Version, headers: &[(&str, &str)]) -> Request<()> {
        let mut r = Request::new(());
        *r.version_mut() = version;
        for (n, v) in headers {
            r.headers_mut().append(
                http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                http::HeaderValue::from_str(v).unwrap(),
            );
        }
        r
    }

    #[test]
    fn rfc_9112_framing_is_enforced_where_hyper_does_not() {
        const HTTP_10: Version = Version::HTTP_10;
        const HTTP_11: Version = Version::HTTP_11;
        const HTTP_2: Version = Version::HTTP_2;
        let refused = |v, h: &[(&str, &str)]| refusal(&req(v, h)).is_some();
        assert!(!refused(HTTP_11, &[("host", "g")]));
        assert!(!refused(HTTP_11, &[("host", "")]), "empty Host is allowed");
        assert!(!refused(HTTP_11, &[("host", "[::1]:8080")]));
        assert!(!refused(HTTP_10, &[]), "HTTP/1.0 predates Host");
        assert!(!refused(HTTP_2, &[]), "h2 carries :authority");
        assert!(refused(HTTP_11, &[]));
        assert!(refused(HTTP_11, &[("host", "a"), ("host", "a")]));
        assert!(refused(HTTP_10, &[("host", "a"), ("host", "b")]));
        assert!(refused(HTTP_11, &[("host", "a b")]));
        assert!(refused(
            HTTP_11,
            &[("host", "g"), ("transfer-encoding", "chunked, chunked")]
        ));
        assert!(refused(
            HTTP_11,
            &[
                ("host", "g"),
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "Chunked")
            ]
        ));
        assert!(!refused(
            HTTP_11,
            &[("host", "g"), ("transfer-encoding", "gzip, chunked")]
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stalls_fails_at_its_deadline_and_one_that_came_never_arms_a_timer() {
        use http_body_util::BodyExt;
        let limit = Duration::from_secs(30);
        let whole = http_body_util::Full::new(Bytes::from_static(b"abc"));
        let mut d = Deadline::new(whole, Instant::now() + limit, limit);
        assert_eq!(
            d.frame().await.unwrap().unwrap().into_data().unwrap(),
            "abc"
        );
        assert!(d.timer.is_none());
        let (_tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(1);
        let stalled = http_body_util::StreamBody::new(tokio_stream_of(rx));
        let started = Instant::now();
        let mut d = Deadline::new(stalled, started + limit, limit);
        let e = d.frame().await.unwrap().unwrap_err();
        assert!(e.is::<BodyTimedOut>(), "{e}");
        assert_eq!(started.elapsed(), limit);
    }

    fn tokio_stream_of<T: Send + 'static>(
        mut rx: tokio::sync::mpsc::Receiver<T>,
    ) -> impl futures_util::Stream<Item = T> + Unpin {
        Box::pin(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)))
    }
}

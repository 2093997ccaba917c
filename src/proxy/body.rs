//! Bodies in the pipeline: the caller's, read whole where a signature
//! covers it; an upstream answer's, read whole where it must be looked at.

use bytes::Bytes;
use http_body::Body as _;
use http_body_util::{BodyExt, Limited};
use tokio::time::Instant;

use crate::error::ProxyError;
use crate::upstream::UpBody;

/// A caller's request body: hyper's stream, or one read whole by the
/// server's HTTP/1 fast path.
pub trait CallerBody:
    http_body::Body<Data = Bytes, Error: Into<crate::upstream::BoxError>> + Send + Sync + 'static
{
}

impl<B> CallerBody for B where
    B: http_body::Body<Data = Bytes, Error: Into<crate::upstream::BoxError>>
        + Send
        + Sync
        + 'static
{
}

/// An upstream answer's body, whole, up to `max` bytes, by `deadline`.
pub(super) async fn read_all(
    body: Option<UpBody>,
    deadline: Instant,
    timeout: std::time::Duration,
    max: usize,
) -> Result<Bytes, ProxyError> {
    let Some(body) = body else {
        return Ok(Bytes::new());
    };
    Ok(
        tokio::time::timeout_at(deadline, Limited::new(body, max).collect())
            .await
            .map_err(|_| ProxyError::UpstreamTimeout(timeout))?
            .map_err(|e| match e.downcast_ref::<crate::upstream::ReadTimeout>() {
                Some(t) => ProxyError::UpstreamReadTimeout(t.0),
                None => ProxyError::unreachable("reading the answer", e),
            })?
            .to_bytes(),
    )
}

/// The caller's body, whole, up to `max` bytes. The fast path's body is one
/// buffer already: it is taken as it is, with no list to collect it into.
pub(super) async fn whole<B: CallerBody>(body: B, max: u64) -> Result<Bytes, ProxyError> {
    let mut body = std::pin::pin!(Limited::new(body, max as usize));
    let mut first = Bytes::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| body_error(e, max))?;
        if let Ok(data) = frame.into_data() {
            if !data.is_empty() {
                first = data;
                break;
            }
        }
    }
    if body.is_end_stream() {
        return Ok(first);
    }
    let rest = body
        .collect()
        .await
        .map_err(|e| body_error(e, max))?
        .to_bytes();
    if first.is_empty() {
        return Ok(rest);
    }
    let mut all = bytes::BytesMut::with_capacity(first.len() + rest.len());
    all.extend_from_slice(&first);
    all.extend_from_slice(&rest);
    Ok(all.freeze())
}

fn body_error(e: Box<dyn std::error::Error + Send + Sync>, max: u64) -> ProxyError {
    if e.is::<http_body_util::LengthLimitError>() {
        ProxyError::BodyTooLarge(max)
    } else if let Some(t) = e.downcast_ref::<crate::vocab::BodyTimedOut>() {
        ProxyError::BodyTimeout(t.0)
    } else {
        ProxyError::BadRequestBody(format!("the request body could not be read: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;
    use http_body_util::Full;

    #[tokio::test]
    async fn a_body_is_read_whole_however_it_is_framed() {
        use http_body::Frame;
        type Chunks = Vec<Result<Frame<Bytes>, std::io::Error>>;
        let stream =
            |frames: Chunks| http_body_util::StreamBody::new(futures_util::stream::iter(frames));
        let data = |s: &'static str| Ok(Frame::data(Bytes::from_static(s.as_bytes())));
        // One buffer, as the fast path hands it: the same bytes, not a copy.
        let one = Bytes::from_static(b"hello");
        let got = whole(Full::new(one.clone()), 100).await.unwrap();
        assert_eq!(got.as_ptr(), one.as_ptr());
        // Several frames, empty ones and trailers among them.
        let frames = vec![
            data(""),
            data("he"),
            data("ll"),
            Ok(Frame::trailers(HeaderMap::new())),
            data("o"),
        ];
        assert_eq!(whole(stream(frames), 100).await.unwrap(), "hello");
        assert_eq!(whole(Full::new(Bytes::new()), 100).await.unwrap(), "");
        // Over the limit, in one frame or in several.
        let e = whole(Full::new(Bytes::from_static(b"0123456789")), 4).await;
        assert_eq!(e.err().map(|e| e.code()), Some("body_too_large"));
        let e = whole(stream(vec![data("012"), data("345")]), 4).await;
        assert_eq!(e.err().map(|e| e.code()), Some("body_too_large"));
        // A body that fails is the caller's error, not a hang or a panic.
        let broken = stream(vec![data("a"), Err(std::io::Error::other("reset"))]);
        let e = whole(broken, 100).await;
        assert_eq!(e.err().map(|e| e.code()), Some("bad_request_body"));
    }
}

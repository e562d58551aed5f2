//! gRPC's `snappy` message compression, as Thanos registers it (`pkg/extgrpc/snappy`: the
//! snappy framing format, `grpc-encoding: snappy`). Thanos routers forward with it by default
//! (`--receive.grpc-compression=snappy`) and tonic knows only gzip, deflate and zstd, so both
//! directions are done here, around tonic: [`SnappyLayer`] decompresses requests before the
//! server sees them, [`SnappyChannel`] compresses requests after the client made them and
//! decompresses answers before it reads them. Unary calls only: a message is whole in memory
//! either way, and these calls carry one.

use std::io::{Read as _, Write as _};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{BufMut as _, Bytes, BytesMut};
use http::{HeaderValue, Request, Response};
use http_body_util::{BodyExt as _, Full, Limited};
use tonic::body::Body;
use tonic::Status;
use tower::{Layer, Service};

const ENCODING_HEADER: &str = "grpc-encoding";
const SNAPPY: &str = "snappy";
/// A gRPC message frame: a compressed flag byte and a big-endian u32 length.
const FRAME_HEADER: usize = 5;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("gRPC message frame is truncated")]
    Truncated,
    #[error("snappy decode error: {0}")]
    Snappy(std::io::Error),
    #[error("decompressed message is over the limit of {0} bytes")]
    TooLarge(usize),
}

/// Rewrites each message frame of `body`: compressed ones are decompressed (at most `limit`
/// bytes each) when `compress` is false, uncompressed ones compressed when it is true.
fn rewrite_frames(mut body: &[u8], compress: bool, limit: usize) -> Result<Bytes, FrameError> {
    let mut out = BytesMut::with_capacity(body.len());
    while !body.is_empty() {
        if body.len() < FRAME_HEADER {
            return Err(FrameError::Truncated);
        }
        let compressed = body[0] == 1;
        let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
        let message = body.get(FRAME_HEADER..FRAME_HEADER + len).ok_or(FrameError::Truncated)?;
        body = &body[FRAME_HEADER + len..];
        let (flag, data) = match (compressed, compress) {
            (false, true) => {
                let mut enc = snap::write::FrameEncoder::new(Vec::with_capacity(len / 2 + 64));
                enc.write_all(message).map_err(FrameError::Snappy)?;
                (1u8, enc.into_inner().map_err(|e| FrameError::Snappy(e.into_error()))?)
            }
            (true, false) => {
                let mut data = Vec::with_capacity(len.saturating_mul(2).min(limit));
                let mut dec = snap::read::FrameDecoder::new(message).take(limit as u64 + 1);
                dec.read_to_end(&mut data).map_err(FrameError::Snappy)?;
                if data.len() > limit {
                    return Err(FrameError::TooLarge(limit));
                }
                (0u8, data)
            }
            (c, _) => (u8::from(c), message.to_vec()),
        };
        out.put_u8(flag);
        out.put_u32(u32::try_from(data.len()).map_err(|_| FrameError::TooLarge(u32::MAX as usize))?);
        out.put_slice(&data);
    }
    Ok(out.freeze())
}

fn is_snappy(headers: &http::HeaderMap) -> bool {
    headers.get(ENCODING_HEADER).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(SNAPPY.as_bytes()))
}

/// Server side: requests sent with `grpc-encoding: snappy` reach the service decompressed, as
/// if sent uncompressed. Answers go out uncompressed, which every gRPC client accepts.
#[derive(Debug, Clone, Copy)]
pub struct SnappyLayer {
    /// Largest request body taken, compressed or not, and largest decompressed message.
    pub max_message_bytes: usize,
}

impl<S> Layer<S> for SnappyLayer {
    type Service = SnappyServer<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SnappyServer { inner, max: self.max_message_bytes }
    }
}

#[derive(Debug, Clone)]
pub struct SnappyServer<S> {
    inner: S,
    max: usize,
}

impl<S> Service<Request<Body>> for SnappyServer<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = BoxFuture<Result<Response<Body>, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        // The clone that was polled ready serves this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if !is_snappy(req.headers()) {
            return Box::pin(async move { inner.call(req).await.map_err(Into::into) });
        }
        let max = self.max;
        Box::pin(async move {
            let (mut parts, body) = req.into_parts();
            let bytes = match Limited::new(body, max.saturating_add(FRAME_HEADER)).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(e) => {
                    let status = Status::resource_exhausted(format!("reading snappy-compressed request: {e}"));
                    return Ok(status.into_http());
                }
            };
            let plain = match rewrite_frames(&bytes, false, max) {
                Ok(plain) => plain,
                Err(e @ FrameError::TooLarge(_)) => return Ok(Status::resource_exhausted(e.to_string()).into_http()),
                Err(e) => {
                    return Ok(
                        Status::internal(format!("grpc: failed to decompress the received message: {e}")).into_http()
                    )
                }
            };
            parts.headers.remove(ENCODING_HEADER);
            inner.call(Request::from_parts(parts, Body::new(Full::new(plain)))).await.map_err(Into::into)
        })
    }
}

/// Client side: a channel whose requests go out snappy-compressed (when `compress` is on) and
/// whose snappy-compressed answers are decompressed before the client reads them.
#[derive(Debug, Clone)]
pub struct SnappyChannel<S> {
    inner: S,
    /// Largest decompressed answer.
    max: usize,
    compress: bool,
}

impl<S> SnappyChannel<S> {
    pub fn new(inner: S, max_message_bytes: usize, compress: bool) -> Self {
        SnappyChannel { inner, max: max_message_bytes, compress }
    }
}

impl<S, B> Service<Request<Body>> for SnappyChannel<S>
where
    S: Service<Request<Body>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = BoxFuture<Result<Response<Body>, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let max = self.max;
        if !self.compress {
            return Box::pin(async move { Ok(inner.call(req).await.map_err(Into::into)?.map(Body::new)) });
        }
        Box::pin(async move {
            let (mut parts, body) = req.into_parts();
            let plain = body.collect().await?.to_bytes();
            let compressed = rewrite_frames(&plain, true, max)?;
            parts.headers.insert(ENCODING_HEADER, HeaderValue::from_static(SNAPPY));
            let resp =
                inner.call(Request::from_parts(parts, Body::new(Full::new(compressed)))).await.map_err(Into::into)?;
            if !is_snappy(resp.headers()) {
                return Ok(resp.map(Body::new));
            }
            let (mut parts, body) = resp.into_parts();
            let collected = body.collect().await.map_err(Into::into)?;
            let trailers = collected.trailers().cloned();
            let plain = rewrite_frames(&collected.to_bytes(), false, max)?;
            parts.headers.remove(ENCODING_HEADER);
            let body = Full::new(plain).with_trailers(async move { trailers.map(Ok::<_, std::convert::Infallible>) });
            Ok(Response::from_parts(parts, Body::new(body)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(flag: u8, data: &[u8]) -> Vec<u8> {
        let mut v = vec![flag];
        v.extend_from_slice(&(data.len() as u32).to_be_bytes());
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn frames_round_trip() {
        let message = b"a message that is long enough, long enough, long enough to compress".repeat(10);
        let plain = [frame(0, &message), frame(0, b"")].concat();
        let compressed = rewrite_frames(&plain, true, 1 << 20).unwrap();
        assert_eq!(compressed[0], 1);
        assert!(compressed.len() < plain.len());
        // The snappy framing format: it starts with the stream identifier chunk.
        assert_eq!(&compressed[FRAME_HEADER..FRAME_HEADER + 10], b"\xff\x06\x00\x00sNaPpY");
        assert_eq!(rewrite_frames(&compressed, false, 1 << 20).unwrap(), plain);
    }

    #[test]
    fn bad_frames_are_errors() {
        let compressed = rewrite_frames(&frame(0, &[7; 1000]), true, 1 << 20).unwrap();
        assert!(matches!(rewrite_frames(&compressed, false, 999), Err(FrameError::TooLarge(999))));
        assert!(matches!(
            rewrite_frames(&compressed[..compressed.len() - 1], false, 1 << 20),
            Err(FrameError::Truncated)
        ));
        assert!(matches!(rewrite_frames(&frame(1, b"not snappy"), false, 1 << 20), Err(FrameError::Snappy(_))));
        assert!(matches!(rewrite_frames(&[0, 0, 0], false, 1 << 20), Err(FrameError::Truncated)));
    }
}

//! A request body the gateway answered without reading is read to its end and
//! thrown away, so that the client finishes sending and reads the answer.
//!
//! The gateway often answers before the body is in: a `413` from the body
//! limit as soon as `content-length` says too much, or once a streamed body
//! crosses it; a `401` before a body is worth reading. What happens to the rest
//! of the upload then depends on the HTTP version:
//! - over HTTP/2, dropping the unread body makes the server reset the stream
//!   (`RST_STREAM`, `NO_ERROR`, as RFC 9113 §8.1 allows). Many clients (curl,
//!   and others) take a reset while they are still sending as a failed
//!   request and never show the `413` problem that arrived just before it;
//! - over HTTP/1.1, the server closes the connection, and a client still
//!   writing a streamed body may see the close before the answer.
//!
//! So every request body is wrapped ([`read_unread_bodies`], the router's
//! outermost layer): dropped before its end, what is left of it is read on a
//! task of its own and discarded — it is never buffered — and the stream (or
//! the keep-alive connection) ends as if the handler had read it. Reading stops,
//! and the old reset or close happens, after [`DISCARD_MAX_BYTES`] or
//! [`DISCARD_MAX_TIME`]: an endless upload cannot keep a task reading forever.
//! A stream being read this way still counts against HTTP/2's limit on
//! concurrent streams, and an HTTP/1.1 connection serves nothing else
//! meanwhile, so a client cannot pile them up.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use futures_util::StreamExt as _;
use hyper::body::{Body as HttpBody, Bytes, Frame, SizeHint};

/// The most of an unread body read and discarded: a generous multiple of the
/// default `server.request_body_limit_bytes` (1 MiB), so that an ordinary
/// oversize upload ends cleanly and an endless one is cut off.
pub const DISCARD_MAX_BYTES: usize = 16 << 20;
/// How long reading an unread body may take.
pub const DISCARD_MAX_TIME: Duration = Duration::from_secs(10);

/// Middleware: wraps the request's body so that, dropped unread, its rest is
/// read and discarded.
pub(super) async fn read_unread_bodies(request: Request) -> Request {
    request.map(|body| {
        Body::new(ReadToEndOnDrop {
            body: Some(body),
            ended: false,
        })
    })
}

/// The request body, with what to do with its rest when it is dropped.
struct ReadToEndOnDrop {
    /// `None` only once dropped.
    body: Option<Body>,
    /// Whether the body ended (or failed) while it was read: then there is
    /// nothing left to read.
    ended: bool,
}

impl HttpBody for ReadToEndOnDrop {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let Some(body) = this.body.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(body).poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            this.ended = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.body.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.body
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), HttpBody::size_hint)
    }
}

impl Drop for ReadToEndOnDrop {
    fn drop(&mut self) {
        let Some(body) = self.body.take() else {
            return;
        };
        if self.ended || body.is_end_stream() {
            return;
        }
        // Requests are served on the runtime; outside it (a test calling the
        // router by hand, say) the body is simply dropped.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(discard(body));
        }
    }
}

/// Reads `body` to its end, or up to the limits, keeping nothing.
async fn discard(body: Body) {
    let mut chunks = body.into_data_stream();
    let mut left = DISCARD_MAX_BYTES;
    let read_to_end = async {
        while let Some(Ok(chunk)) = chunks.next().await {
            left = left.saturating_sub(chunk.len());
            if left == 0 {
                return false;
            }
        }
        true
    };
    if !matches!(
        tokio::time::timeout(DISCARD_MAX_TIME, read_to_end).await,
        Ok(true)
    ) {
        tracing::debug!("an unread request body was too long or too slow to discard; dropped");
    }
}

//! The HTTP/1.1 accept loop: a connection cap, timeouts for slow or silent clients, and a
//! shutdown that stops accepting at once and never waits past its deadline.
//!
//! `axum::serve` has none of these, and one idle socket per file descriptor was enough to
//! starve `/healthz`. Every connection here gets:
//! - **headers**: a request's headers must arrive within [`Timeouts::header`] of its first
//!   byte (and a new connection must send one within that time);
//! - **body idle**: the request body may pause for at most [`Timeouts::body_idle`]; the
//!   handler's answer is then replaced by 408 `body_timeout`;
//! - **keep-alive idle**: a connection with no request in progress closes after
//!   [`Timeouts::keep_alive`] without traffic (a response the client stops reading counts
//!   as no traffic).
//!
//! A handler that is working (a synchronous transcription) has no time limit: the client is
//! waiting for it. Over [`Limits::max_connections`], a new connection is answered 503
//! `too_many_connections` and closed, so the process never runs out of descriptors; a
//! liveness probe (`GET /healthz`) over the cap is still answered 200, so a busy process is
//! not mistaken for a dead one.
//!
//! A request hyper cannot parse gets the JSON error shape too: the connection's IO wrapper
//! ([`Watched`]) replaces hyper's own bare error response. (Just over 500 lines: about 60
//! are tests.)

use crate::error::ErrorCode;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use axum::Router;
use http_body::{Body as HttpBody, Frame};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::Service;

/// Seconds a client has to send a request's headers, by default.
pub const HEADER_TIMEOUT_S: u64 = 30;
/// Seconds a request body may pause, by default.
pub const BODY_IDLE_TIMEOUT_S: u64 = 60;
/// Seconds an idle keep-alive connection stays open, by default.
pub const KEEP_ALIVE_TIMEOUT_S: u64 = 75;
/// Open connections at most, by default.
pub const MAX_CONNECTIONS: usize = 1024;

/// Per-connection time limits.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub header: Duration,
    pub body_idle: Duration,
    pub keep_alive: Duration,
}

/// What the accept loop enforces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub timeouts: Timeouts,
    pub max_connections: usize,
}

/// Milliseconds since `epoch`, as stored in the atomics below.
fn ms_since(epoch: Instant) -> u64 {
    epoch.elapsed().as_millis() as u64
}

/// What the watchdog of one connection reads.
struct ConnState {
    epoch: Instant,
    /// Last byte read or written.
    last_activity: AtomicU64,
    /// When the current request's first byte arrived (0: none in progress).
    head_started: AtomicU64,
    /// Requests handed to the router and not yet answered.
    in_flight: AtomicUsize,
    /// Whether a response was sent on this connection.
    served: AtomicBool,
    /// Responses the router made on this connection, and response heads written: a head
    /// written when every response of the router's is already out is hyper's own (a request
    /// it could not parse), and is given the JSON error shape ([`Watched`]).
    answered: AtomicUsize,
    heads: AtomicUsize,
}

impl ConnState {
    fn touch(&self) {
        self.last_activity
            .store(ms_since(self.epoch).max(1), Ordering::Relaxed);
    }

    /// Why this connection should be closed now, if it should.
    fn expired(&self, t: &Timeouts) -> Option<&'static str> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let now = ms_since(self.epoch);
        let head = self.head_started.load(Ordering::SeqCst);
        let over =
            |since: u64, limit: Duration| now.saturating_sub(since) > limit.as_millis() as u64;
        if head != 0 {
            over(head, t.header).then_some("request headers not received in time")
        } else if !self.served.load(Ordering::SeqCst) {
            over(0, t.header).then_some("no request sent in time")
        } else {
            over(self.last_activity.load(Ordering::Relaxed), t.keep_alive)
                .then_some("idle keep-alive connection")
        }
    }
}

/// A socket that tells its [`ConnState`] when bytes move.
struct Watched<S> {
    inner: S,
    state: Arc<ConnState>,
    /// A JSON error response standing in for one hyper wrote, still to be sent.
    pending: Vec<u8>,
}

/// The response that replaces hyper's own bare error response `head` (malformed HTTP: a bad
/// request line, `Content-Length: abc`, headers too large), in the shape every other error
/// has (issue #40, item 12). The connection closes after it, as hyper's would.
fn json_for_bare(head: &[u8]) -> Vec<u8> {
    let code = std::str::from_utf8(head.get(9..12).unwrap_or_default())
        .ok()
        .and_then(|c| c.parse::<u16>().ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
        .unwrap_or(StatusCode::BAD_REQUEST);
    let (error, message) = match code {
        StatusCode::BAD_REQUEST => (
            ErrorCode::InvalidRequest,
            "the request is not valid HTTP/1.1 (its request line or a header, such as Content-Length, does not parse)",
        ),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => {
            (ErrorCode::HttpError, "the request's headers are too large")
        }
        StatusCode::URI_TOO_LONG => (ErrorCode::HttpError, "the request's URI is too long"),
        _ => (ErrorCode::HttpError, "the request could not be served"),
    };
    let body = crate::error::error_body(code.as_u16(), error, message, None).to_string();
    format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        code.as_u16(),
        code.canonical_reason().unwrap_or(""),
        body.len()
    )
    .into_bytes()
}

impl<S: AsyncWrite + Unpin> Watched<S> {
    /// Send what is pending; ready once nothing is.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while !self.pending.is_empty() {
            match Pin::new(&mut self.inner).poll_write(cx, &self.pending) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()))
                }
                Poll::Ready(Ok(n)) => {
                    self.pending.drain(..n);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            let st = &self.state;
            st.touch();
            if st.in_flight.load(Ordering::SeqCst) == 0
                && st.head_started.load(Ordering::SeqCst) == 0
            {
                st.head_started
                    .store(ms_since(st.epoch).max(1), Ordering::SeqCst);
            }
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        std::task::ready!(self.drain(cx))?;
        // An interim `100 Continue` (hyper's, to `Expect: 100-continue`) is neither the
        // router's response nor an error: it passes, uncounted.
        if buf.starts_with(b"HTTP/1.1 ") && !buf.starts_with(b"HTTP/1.1 1") {
            let st = &self.state;
            let error = buf.starts_with(b"HTTP/1.1 4") || buf.starts_with(b"HTTP/1.1 5");
            if error && st.heads.load(Ordering::SeqCst) >= st.answered.load(Ordering::SeqCst) {
                // hyper's own answer to a request it could not parse: ours instead.
                let replacement = json_for_bare(buf);
                self.pending = replacement;
                self.state.touch();
                let _ = self.drain(cx)?;
                return Poll::Ready(Ok(buf.len()));
            }
            st.heads.fetch_add(1, Ordering::SeqCst);
        }
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.state.touch();
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        std::task::ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        std::task::ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A request body whose frames must each arrive within `idle`; sets `timed_out` if not.
struct IdleBody {
    inner: hyper::body::Incoming,
    idle: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
    timed_out: Arc<AtomicBool>,
}

impl HttpBody for IdleBody {
    type Data = bytes::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(f) => {
                let deadline = tokio::time::Instant::now() + self.idle;
                self.sleep.as_mut().reset(deadline);
                Poll::Ready(f.map(|r| r.map_err(std::io::Error::other)))
            }
            Poll::Pending => {
                if self.sleep.as_mut().poll(cx).is_ready() {
                    self.timed_out.store(true, Ordering::SeqCst);
                    return Poll::Ready(Some(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!(
                            "the request body sent nothing for {} s",
                            self.idle.as_secs()
                        ),
                    ))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// `{"error":…}` with `status` and `code`, for answers the router never sees.
pub fn error_response(status: StatusCode, code: ErrorCode, message: &str) -> Response<Body> {
    let body = crate::error::error_body(status.as_u16(), code, message, None);
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("static response parts are valid")
}

/// Serve `app` on `listener` until `shutdown` resolves; then stop accepting, ask every
/// connection to finish its current request, and return once they have or `grace` is over
/// (remaining connections are dropped).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
    grace: impl Fn() -> Duration,
) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let open = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    // EMFILE and friends: wait for descriptors to come back, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        while tasks.try_join_next().is_some() {}
        if open.load(Ordering::SeqCst) >= limits.max_connections {
            tracing::warn!(%peer, max = limits.max_connections, "connection refused: too many open connections");
            tasks.spawn(refuse(stream, app.clone()));
            continue;
        }
        open.fetch_add(1, Ordering::SeqCst);
        let (app, open, mut stop_rx) = (app.clone(), open.clone(), stop_rx.clone());
        tasks.spawn(async move {
            connection(stream, app, limits.timeouts, &mut stop_rx).await;
            open.fetch_sub(1, Ordering::SeqCst);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let deadline = tokio::time::Instant::now() + grace();
    while !tasks.is_empty() {
        match tokio::time::timeout_at(deadline, tasks.join_next()).await {
            Ok(_) => {}
            Err(_) => {
                tracing::warn!(
                    open = tasks.len(),
                    "shutdown deadline: closing the connections still open"
                );
                tasks.abort_all();
                break;
            }
        }
    }
}

/// Over the cap: a 503 `too_many_connections` and close, within 3 s in all. A liveness
/// probe (`GET /healthz`) is answered by the service as usual instead: the process is alive,
/// only busy, and a probe that failed here would have it restarted with its work in flight.
/// One request is served, without keep-alive; its headers get half a second (a probe sends
/// them at once; a silent client over the cap should not hold a descriptor long).
async fn refuse(stream: tokio::net::TcpStream, app: Router) {
    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let mut app = app.clone();
        async move {
            if req.method() == axum::http::Method::GET && req.uri().path() == "/healthz" {
                return app.call(req.map(Body::new)).await;
            }
            let mut r = error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::TooManyConnections,
                "too many open connections; retry shortly",
            );
            r.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
            Ok(r)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(false)
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_millis(500))
        .serve_connection(TokioIo::new(stream), service);
    let _ = tokio::time::timeout(Duration::from_secs(3), conn).await;
}

async fn connection(
    stream: tokio::net::TcpStream,
    app: Router,
    t: Timeouts,
    stop: &mut watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let state = Arc::new(ConnState {
        epoch: Instant::now(),
        last_activity: AtomicU64::new(1),
        head_started: AtomicU64::new(0),
        in_flight: AtomicUsize::new(0),
        served: AtomicBool::new(false),
        answered: AtomicUsize::new(0),
        heads: AtomicUsize::new(0),
    });
    let io = TokioIo::new(Watched {
        inner: stream,
        state: state.clone(),
        pending: Vec::new(),
    });
    let st = state.clone();
    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let st = st.clone();
        let mut app = app.clone();
        async move {
            st.in_flight.fetch_add(1, Ordering::SeqCst);
            st.head_started.store(0, Ordering::SeqCst);
            let timed_out = Arc::new(AtomicBool::new(false));
            let req = req.map(|inner| {
                Body::new(IdleBody {
                    inner,
                    idle: t.body_idle,
                    sleep: Box::pin(tokio::time::sleep(t.body_idle)),
                    timed_out: timed_out.clone(),
                })
            });
            let resp = app.call(req).await;
            st.answered.fetch_add(1, Ordering::SeqCst);
            st.served.store(true, Ordering::SeqCst);
            st.touch();
            st.in_flight.fetch_sub(1, Ordering::SeqCst);
            let resp = match resp {
                Ok(r) if timed_out.load(Ordering::SeqCst) => {
                    drop(r);
                    error_response(
                        StatusCode::REQUEST_TIMEOUT,
                        ErrorCode::BodyTimeout,
                        &format!(
                            "the request body stalled for more than {} s; send it again",
                            t.body_idle.as_secs()
                        ),
                    )
                }
                Ok(r) => r,
                Err(e) => match e {},
            };
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let mut stopping = *stop.borrow();
    if stopping {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = stop.changed(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                if let Some(why) = state.expired(&t) {
                    tracing::debug!(why, "closing connection");
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> ConnState {
        ConnState {
            epoch: Instant::now() - Duration::from_secs(100),
            last_activity: AtomicU64::new(1),
            head_started: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            answered: AtomicUsize::new(0),
            heads: AtomicUsize::new(0),
        }
    }

    #[test]
    fn which_timeout_applies() {
        let t = Timeouts {
            header: Duration::from_secs(30),
            body_idle: Duration::from_secs(60),
            keep_alive: Duration::from_secs(75),
        };
        // 100 s after accept, nothing sent: the header limit.
        let s = state();
        assert_eq!(s.expired(&t), Some("no request sent in time"));
        // Headers started 10 s ago: not yet.
        s.head_started.store(90_000, Ordering::SeqCst);
        assert_eq!(s.expired(&t), None);
        s.head_started.store(60_000, Ordering::SeqCst);
        assert_eq!(s.expired(&t), Some("request headers not received in time"));
        // A handler at work is never cut by the connection.
        s.in_flight.store(1, Ordering::SeqCst);
        assert_eq!(s.expired(&t), None);
        // After a response: keep-alive idle from the last byte.
        s.in_flight.store(0, Ordering::SeqCst);
        s.head_started.store(0, Ordering::SeqCst);
        s.served.store(true, Ordering::SeqCst);
        s.last_activity.store(40_000, Ordering::SeqCst);
        assert_eq!(s.expired(&t), None);
        s.last_activity.store(20_000, Ordering::SeqCst);
        assert_eq!(s.expired(&t), Some("idle keep-alive connection"));
    }
}

//! Serving one connection. A proxy's keep-alive connection to the decision
//! endpoints carries one simple request shape, thousands of times a second: a
//! bodiless HTTP/1.1 request to `/authz/forward` or `/authz/nginx`. Those are
//! read in one pass by [`head`](crate::http::head) (a strict subset of what
//! `httparse`, the parser hyper uses, reads the same way), decided, and
//! answered from one reusable buffer: no `HeaderMap`, no per-request task
//! machinery. Anything else — another path, a body, an upgrade,
//! HTTP/1.0, `Expect`, a head that does not parse — hands the connection, with
//! the bytes already read, to hyper and axum for the rest of its life, and hyper
//! answers as it always would (the decision endpoints there give the same
//! [`Verdict`](crate::http::authz::Verdict); `tests/wire.rs` compares the two).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::app::AppState;
use crate::http::authz::{answer, Seen};
use crate::http::head::{self, Head};

/// How long a connection may wait for, or take to send, a request's headers
/// (on the fast path: a connection that answered nothing for a whole period of
/// this length is closed, so between one and two periods). Longer than the
/// proxies' idle keep-alive (nginx 60 s, Traefik 90 s, Caddy 2 min), so the proxy
/// closes first and never reuses a connection we are closing.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(300);

const READ_CHUNK: usize = 4096;

/// What to do with the bytes read so far.
enum Step {
    /// Answered (the response is in `out`); `len` bytes of the buffer were used.
    Answered {
        len: usize,
        close: bool,
    },
    NeedMore,
    HandOff,
}

/// What woke a connection waiting for bytes.
enum Wake {
    Stop,
    Read(io::Result<usize>),
    Tick,
}

/// Serves one accepted connection until it closes, `stop` fires while it is
/// idle, or it is handed to hyper (which then takes `stop` over).
pub async fn serve_connection<S>(
    mut stream: S,
    peer: SocketAddr,
    st: AppState,
    app: Router,
    builder: hyper::server::conn::http1::Builder,
    mut stop: tokio::sync::watch::Receiver<()>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    st.metrics.connections.fetch_add(1, Ordering::Relaxed);
    let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut out: Vec<u8> = Vec::with_capacity(512);
    // One timer and one stop registration per connection, not per request. The
    // timer is re-armed only when it fires: a connection that answered nothing
    // since the last firing has been idle (or stuck in a head) for a whole period.
    let mut answered: u64 = 0;
    let mut answered_at_last_tick: u64 = 0;
    let timer = tokio::time::sleep(HEADER_READ_TIMEOUT);
    tokio::pin!(timer);
    // Read without borrowing `stop` (whose `changed()` future below does).
    let stop_seen = stop.clone();
    let stopped = stop.changed();
    tokio::pin!(stopped);
    let mut stopping = false;
    // The stop signal and the timer are polled once (which registers this
    // task to be woken by them) and afterwards only looked at: a poll of each
    // on every request cost more than the decision's own bookkeeping.
    let mut stop_registered = false;
    let mut timer_registered = false;
    loop {
        let step = if buf.is_empty() {
            Step::NeedMore
        } else {
            let mut seen = Seen::default();
            match head::read(&buf, &mut seen) {
                Head::Decision {
                    len,
                    flavour,
                    close,
                } => {
                    let verdict = answer(&st, flavour, peer.ip(), &seen).await;
                    out.clear();
                    verdict.encode(&mut out, &http_date(verdict.wall), close || stopping);
                    Step::Answered { len, close }
                }
                Head::Partial => Step::NeedMore,
                // Another request, a body, a head too long or malformed:
                // hyper answers those.
                Head::Other => Step::HandOff,
            }
        };
        match step {
            Step::Answered { len, close } => {
                if stream.write_all(&out).await.is_err() {
                    return;
                }
                if close || stopping {
                    let _ = stream.shutdown().await;
                    return;
                }
                buf.drain(..len);
                answered += 1;
                // A pipelined request may already be in the buffer.
            }
            Step::HandOff => break,
            Step::NeedMore => {
                if buf.capacity() - buf.len() < READ_CHUNK / 4 {
                    buf.reserve(READ_CHUNK);
                }
                let wake = std::future::poll_fn(|cx| {
                    if !stopping {
                        if !stop_registered {
                            if stopped.as_mut().poll(cx).is_ready() {
                                return Poll::Ready(Wake::Stop);
                            }
                            stop_registered = true;
                        } else if stop_seen.has_changed().unwrap_or(true) {
                            return Poll::Ready(Wake::Stop);
                        }
                    }
                    if let Poll::Ready(r) = std::pin::pin!(stream.read_buf(&mut buf)).poll(cx) {
                        return Poll::Ready(Wake::Read(r));
                    }
                    if !timer_registered {
                        if timer.as_mut().poll(cx).is_ready() {
                            return Poll::Ready(Wake::Tick);
                        }
                        timer_registered = true;
                    } else if timer.is_elapsed() {
                        return Poll::Ready(Wake::Tick);
                    }
                    Poll::Pending
                })
                .await;
                match wake {
                    Wake::Stop => {
                        stopping = true;
                        if buf.is_empty() {
                            return;
                        }
                    }
                    // The client is done; a partial head is hyper's to answer.
                    Wake::Read(Ok(0)) if !buf.is_empty() => break,
                    Wake::Read(Ok(0) | Err(_)) => return,
                    Wake::Read(Ok(_)) => {}
                    Wake::Tick => {
                        if answered == answered_at_last_tick {
                            return;
                        }
                        answered_at_last_tick = answered;
                        timer
                            .as_mut()
                            .reset(tokio::time::Instant::now() + HEADER_READ_TIMEOUT);
                        timer_registered = false;
                    }
                }
            }
        }
    }
    // Hyper from here on, starting with the bytes already read.
    st.metrics
        .connections_general
        .fetch_add(1, Ordering::Relaxed);
    let io = TokioIo::new(Rewind {
        pre: buf,
        pos: 0,
        inner: stream,
    });
    let service =
        hyper::service::service_fn(move |req| dispatch(st.clone(), app.clone(), peer, req));
    let conn = builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(conn);
    let result = if stopping {
        conn.as_mut().graceful_shutdown();
        conn.await
    } else {
        tokio::select! {
            r = conn.as_mut() => r,
            _ = &mut stopped => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// What the fast path makes of one request head, without answering (for the
/// fuzz targets): `None` when the head is incomplete or goes to the general
/// server, else the target the decision would be about (or why there is none).
pub fn read_head<'b>(
    buf: &'b [u8],
    trusted: &[ipnet::IpNet],
    peer: std::net::IpAddr,
    now: i64,
) -> Option<Result<crate::decision::Target<'b>, crate::decision::target::TargetError>> {
    let mut seen = Seen::default();
    match head::read(buf, &mut seen) {
        Head::Decision { flavour, .. } => Some(crate::http::authz::parse_target(
            flavour, trusted, peer, &seen, now,
        )),
        Head::Partial | Head::Other => None,
    }
}

/// Routes a request that hyper parsed: the decision endpoints directly, the
/// rest through axum's router with the peer address.
pub async fn dispatch(
    st: AppState,
    app: Router,
    peer: SocketAddr,
    req: axum::http::Request<hyper::body::Incoming>,
) -> Result<axum::response::Response, std::convert::Infallible> {
    match head::decision_endpoint(req.uri().path().as_bytes()) {
        Some(flavour) => {
            let seen = Seen::from_map(req.headers());
            Ok(answer(&st, flavour, peer.ip(), &seen).await.into_response())
        }
        None => {
            let mut req = req.map(axum::body::Body::new);
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            use tower::ServiceExt;
            app.oneshot(req).await
        }
    }
}

/// The `Date` header value for a second of the wall clock (the decision's:
/// no clock reading of its own), formatted once a second per thread.
fn http_date(wall: i64) -> [u8; 29] {
    use std::cell::Cell;
    thread_local! {
        static CACHED: Cell<(i64, [u8; 29])> = const { Cell::new((i64::MIN, [0; 29])) };
    }
    CACHED.with(|c| {
        let (at, date) = c.get();
        if at == wall {
            return date;
        }
        let mut fresh = [0u8; 29];
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(wall.max(0).unsigned_abs());
        let text = httpdate::fmt_http_date(t);
        if text.len() == fresh.len() {
            fresh.copy_from_slice(text.as_bytes());
        }
        c.set((wall, fresh));
        fresh
    })
}

/// A stream that first yields bytes already read from it.
struct Rewind<S> {
    pre: Vec<u8>,
    pos: usize,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.pos < this.pre.len() {
            let n = buf.remaining().min(this.pre.len() - this.pos);
            buf.put_slice(&this.pre[this.pos..this.pos + n]);
            this.pos += n;
            if this.pos == this.pre.len() {
                this.pre = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

//! The single listener: accept loop, optional TLS, HTTP/1.1 + HTTP/2 per connection, graceful
//! shutdown.
//!
//! Each accepted socket gets its own task. The protocol is detected from the first bytes
//! (hyper-util's auto builder), so one port serves HTTP/1.1 (Connect over plaintext, browsers,
//! curl), h2c with prior knowledge (grpcio over plaintext) and, behind TLS with ALPN
//! `h2`/`http/1.1`, both again. Per-connection failures are logged at debug and never stop the
//! loop. Requests carry the peer address as axum's `ConnectInfo<SocketAddr>` extension.

use std::error::Error as StdError;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::{Service, ServiceExt as _};

/// Connection-level limits and timeouts of [`serve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeOptions {
    /// Time a connection may take to deliver its first request, and an HTTP/1.1 request its
    /// headers (flyteadmin's `server.readHeaderTimeoutSeconds`). Connections that never send a
    /// request are closed after it, so idle sockets cannot pin connection slots.
    pub read_header_timeout: Duration,
    /// Time allowed for the TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// Upper bound on open connections; further clients wait in the kernel's accept backlog.
    /// `None` means unbounded.
    pub max_connections: Option<usize>,
    /// After shutdown starts, how long in-flight requests may take before connections are cut.
    pub shutdown_grace: Duration,
    /// Interval of HTTP/2 keep-alive pings, which detect dead peers on idle gRPC channels.
    pub http2_keep_alive_interval: Option<Duration>,
    /// A pinged HTTP/2 peer that does not answer within this is disconnected.
    pub http2_keep_alive_timeout: Duration,
    /// Requests one HTTP/2 connection may have in flight (`SETTINGS_MAX_CONCURRENT_STREAMS`).
    pub http2_max_concurrent_streams: u32,
    /// Largest request header block: HTTP/1.1's read buffer and HTTP/2's `SETTINGS_MAX_HEADER_LIST_SIZE`.
    /// Values under 8 KiB are raised to 8 KiB, hyper's smallest HTTP/1.1 buffer.
    pub max_header_bytes: usize,
    /// Time from a request's headers to the end of its body; past it, reading the body fails, so a client
    /// trickling a body cannot hold a handler (and its connection slot) for long. `None` means unbounded.
    /// Only unary and server-streaming calls are served, so every legitimate body ends soon after it starts.
    pub request_body_timeout: Option<Duration>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            read_header_timeout: Duration::from_secs(32),
            tls_handshake_timeout: Duration::from_secs(10),
            max_connections: None,
            // Under Kubernetes' default 30 s termination grace period.
            shutdown_grace: Duration::from_secs(25),
            http2_keep_alive_interval: Some(Duration::from_secs(60)),
            http2_keep_alive_timeout: Duration::from_secs(20),
            http2_max_concurrent_streams: 100,
            max_header_bytes: 32 * 1024,
            request_body_timeout: Some(Duration::from_secs(30)),
        }
    }
}

/// Serves `service` on `listener` until `shutdown` resolves, then drains.
///
/// With `tls`, every connection first completes a TLS handshake (ALPN comes from the config, see
/// [`crate::tls::server_config`]). On shutdown the listener is closed, idle connections are
/// closed, HTTP/2 connections get GOAWAY, and in-flight requests may finish within
/// [`ServeOptions::shutdown_grace`]; connections still open after that are aborted.
///
/// Accept errors (e.g. file-descriptor exhaustion) are logged and retried with a short pause, so
/// this only returns once shutdown has completed.
pub async fn serve<S, B>(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    service: S,
    shutdown: impl Future<Output = ()>,
    opts: ServeOptions,
) -> io::Result<()>
where
    S: Service<Request<DeadlineBody>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let acceptor = tls.map(TlsAcceptor::from);
    let builder = http_builder(&opts);
    let limiter = opts
        .max_connections
        .map(|n| Arc::new(Semaphore::new(n.max(1))));
    // Not hyper-util's GracefulShutdown: that takes ownership of the connection, and a
    // connection closed for idling also needs `graceful_shutdown` (GOAWAY rather than a reset).
    let (stopping, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, tls = acceptor.is_some(), "listening");
    }

    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                if let Err(err) = joined
                    && err.is_panic()
                {
                    tracing::error!("a connection task panicked");
                }
            }
            (permit, accepted) = accept(&listener, limiter.as_ref()) => {
                let (tcp, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        accept_error(err).await;
                        continue;
                    }
                };
                let conn = Conn {
                    peer,
                    acceptor: acceptor.clone(),
                    builder: builder.clone(),
                    service: service.clone(),
                    stop: stop_rx.clone(),
                    opts,
                    _permit: permit,
                };
                tasks.spawn(conn.run(tcp));
            }
        }
    }

    drop(listener);
    tracing::info!(
        connections = tasks.len(),
        grace = ?opts.shutdown_grace,
        "shutting down: no longer accepting, draining connections"
    );
    stopping.send_replace(true);
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(opts.shutdown_grace, drain)
        .await
        .is_err()
    {
        tracing::warn!(
            connections = tasks.len(),
            "shutdown grace period over; closing the remaining connections"
        );
    }
    tasks.shutdown().await;
    tracing::info!("listener stopped");
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT), whichever comes first.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("received Ctrl-C"),
        () = terminate => tracing::info!("received SIGTERM"),
    }
}

fn http_builder(opts: &ServeOptions) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    let header_bytes = opts.max_header_bytes.max(MIN_HTTP1_BUFFER);
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(opts.read_header_timeout)
        .max_buf_size(header_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(opts.http2_keep_alive_interval)
        .keep_alive_timeout(opts.http2_keep_alive_timeout)
        .max_concurrent_streams(opts.http2_max_concurrent_streams.max(1))
        .max_header_list_size(u32::try_from(header_bytes).unwrap_or(u32::MAX));
    builder
}

/// Waits for a connection slot (if limited), then for a connection. Cancel-safe: dropping it
/// releases the slot, and `TcpListener::accept` loses no connection.
async fn accept(
    listener: &TcpListener,
    limiter: Option<&Arc<Semaphore>>,
) -> (
    Option<OwnedSemaphorePermit>,
    io::Result<(TcpStream, SocketAddr)>,
) {
    let permit = match limiter {
        // The semaphore is never closed, so acquiring cannot fail.
        Some(limiter) => Arc::clone(limiter).acquire_owned().await.ok(),
        None => None,
    };
    (permit, listener.accept().await)
}

async fn accept_error(err: io::Error) {
    match err.kind() {
        // The peer gave up between SYN and accept: nothing to do.
        io::ErrorKind::ConnectionAborted
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::Interrupted => {
            tracing::debug!(error = %err, "accept failed");
        }
        // Typically EMFILE/ENFILE: pause instead of spinning until descriptors free up.
        _ => {
            tracing::warn!(error = %err, "accept failed; retrying shortly");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Everything one connection task owns.
struct Conn<S> {
    peer: SocketAddr,
    acceptor: Option<TlsAcceptor>,
    builder: auto::Builder<TokioExecutor>,
    service: S,
    stop: watch::Receiver<bool>,
    opts: ServeOptions,
    _permit: Option<OwnedSemaphorePermit>,
}

impl<S, B> Conn<S>
where
    S: Service<Request<DeadlineBody>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    async fn run(self, tcp: TcpStream) {
        let peer = self.peer;
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(%peer, error = %err, "set_nodelay failed");
        }
        match self.acceptor.clone() {
            None => self.serve_io(TokioIo::new(tcp)).await,
            Some(acceptor) => {
                let handshake = acceptor.accept(tcp);
                match tokio::time::timeout(self.opts.tls_handshake_timeout, handshake).await {
                    Ok(Ok(stream)) => self.serve_io(TokioIo::new(stream)).await,
                    Ok(Err(err)) => tracing::debug!(%peer, error = %err, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            }
        }
    }

    async fn serve_io<I>(self, io: I)
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let Self {
            peer,
            builder,
            service,
            mut stop,
            opts,
            ..
        } = self;
        let started = Arc::new(AtomicBool::new(false));
        let seen = Arc::clone(&started);
        let body_timeout = opts.request_body_timeout;
        let svc = hyper::service::service_fn(move |request: Request<Incoming>| {
            seen.store(true, Ordering::Relaxed);
            let mut request = request.map(|body| DeadlineBody::new(body, body_timeout));
            request.extensions_mut().insert(ConnectInfo(peer));
            service.clone().oneshot(request)
        });
        let mut conn = std::pin::pin!(builder.serve_connection(io, svc));
        let mut idle = std::pin::pin!(first_request_deadline(&started, opts.read_header_timeout));
        let mut shutdown = std::pin::pin!(stop.wait_for(|stopping| *stopping));
        // Armed once the connection is told to close: a peer that ignores GOAWAY cannot keep it.
        let mut give_up = std::pin::pin!(tokio::time::sleep(Duration::MAX));
        let mut closing = false;
        loop {
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(err) = result {
                        tracing::debug!(%peer, error = %err, "connection ended with an error");
                    }
                    break;
                }
                () = &mut idle, if !closing => {
                    tracing::debug!(%peer, "no request before the read-header timeout; closing");
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                    give_up.as_mut().reset(tokio::time::Instant::now() + IDLE_CLOSE_GRACE);
                }
                _ = &mut shutdown, if !closing => {
                    // In-flight requests finish; `serve` bounds the wait with `shutdown_grace`.
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
                () = &mut give_up => {
                    tracing::debug!(%peer, "peer did not close after GOAWAY; dropping");
                    break;
                }
            }
        }
    }
}

/// hyper refuses an HTTP/1.1 read buffer smaller than this (and panics on one).
const MIN_HTTP1_BUFFER: usize = 8 * 1024;

/// A request body that fails once its deadline passes before its end.
///
/// The deadline starts when the request's headers are in; the timer is only set for bodies that are not
/// already complete, so bodiless requests cost nothing.
pub struct DeadlineBody {
    inner: Incoming,
    deadline: Option<(Duration, Pin<Box<tokio::time::Sleep>>)>,
}

impl DeadlineBody {
    fn new(inner: Incoming, timeout: Option<Duration>) -> Self {
        use http_body::Body as _;
        let deadline = timeout
            .filter(|_| !inner.is_end_stream())
            .map(|t| (t, Box::pin(tokio::time::sleep(t))));
        Self { inner, deadline }
    }
}

impl std::fmt::Debug for DeadlineBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadlineBody")
            .field("timeout", &self.deadline.as_ref().map(|(t, _)| t))
            .finish_non_exhaustive()
    }
}

/// The request body did not arrive within [`ServeOptions::request_body_timeout`].
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
pub struct BodyTimeout(Duration);

impl BodyTimeout {
    /// Whether `err`, or an error it wraps, is a [`BodyTimeout`]: how a handler that failed to read its body
    /// tells a client that was too slow (answered 408) from a broken or oversized body.
    pub fn is_cause_of(err: &(dyn StdError + 'static)) -> bool {
        let mut next = Some(err);
        while let Some(err) = next {
            if err.is::<BodyTimeout>() {
                return true;
            }
            next = err.source();
        }
        false
    }
}

impl http_body::Body for DeadlineBody {
    type Data = bytes::Bytes;
    type Error = Box<dyn StdError + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if let Some((timeout, sleep)) = &mut this.deadline
            && sleep.as_mut().poll(cx).is_ready()
        {
            let timeout = *timeout;
            this.deadline = None;
            return Poll::Ready(Some(Err(Box::new(BodyTimeout(timeout)))));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(None) => {
                this.deadline = None;
                Poll::Ready(None)
            }
            Poll::Ready(Some(frame)) => Poll::Ready(Some(frame.map_err(Into::into))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// How long a connection closed for idling may take to wind down.
const IDLE_CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Resolves after `timeout` unless a request has started by then, in which case it never does.
async fn first_request_deadline(started: &AtomicBool, timeout: Duration) {
    tokio::time::sleep(timeout).await;
    if started.load(Ordering::Relaxed) {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_bounded() {
        let opts = ServeOptions::default();
        assert_eq!(opts.read_header_timeout, Duration::from_secs(32));
        assert!(opts.shutdown_grace < Duration::from_secs(30));
        assert!(opts.tls_handshake_timeout <= Duration::from_secs(10));
    }
}

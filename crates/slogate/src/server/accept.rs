//! The accept loop the three listeners share, and what every connection carries from it.
//!
//! - A cap on open connections per listener: a permit is taken *before* `accept`, so past the
//!   cap new connections wait in the kernel's accept queue instead of costing a descriptor. The
//!   permit lives in the connection's IO type ([`Tracked`]) and is released when the connection
//!   is dropped, however it ends.
//! - Back-off when `accept` fails (EMFILE, ENFILE, ENOBUFS...): 10 ms doubling to 1 s, reset by
//!   the next success, so a process out of descriptors neither spins nor floods its log. Failures
//!   are counted (`slogate_accept_errors_total`) and logged at most once per listener every
//!   [`WARN_INTERVAL`], each warning carrying how many were not logged since the previous one.
//! - Two deadlines, enforced in the IO type so they hold under hyper and tonic alike: a
//!   connection must start its first request within `first_request_timeout` of being accepted
//!   (TLS handshake and HTTP/2 preface included), and a connection with no request in flight for
//!   `idle_timeout` is closed. "In flight" is counted per connection by [`Activity::begin`],
//!   which the HTTP listeners call around each request and the gRPC listener through
//!   [`TrackRequestsLayer`]; HTTP/2 keep-alive pings are not requests, so they keep nothing
//!   open. A connection is closed by ending its reads (EOF): with no request in flight nothing is
//!   lost, and the client opens a new connection for its next request. (No HTTP/2 GOAWAY is sent
//!   first — tonic owns the gRPC connections — so a request sent at that very instant fails as
//!   on any dropped connection.)

use crate::auth::Listener;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// The accept queue asked of the kernel (capped by `net.core.somaxconn`): where connections
/// past a listener's cap wait, and what absorbs a burst of connects. The standard library's
/// 128 fills in a moment, after which the kernel drops SYNs and clients retry a second later.
const BACKLOG: u32 = 4096;
/// At most one warning about failed accepts per listener this often.
pub const WARN_INTERVAL: Duration = Duration::from_secs(10);
/// The first back-off after a failed accept, doubled on each failure in a row up to
/// [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The connection limits of one listener.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Connections open at once; more wait in the kernel's accept queue.
    pub max_connections: usize,
    /// A connection that has not started a request this long after it was accepted is closed.
    pub first_request_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
}

/// Why the server closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closed {
    /// No request started within `first_request_timeout` of the accept.
    FirstRequest = 0,
    /// No request in flight for `idle_timeout`.
    Idle = 1,
}

impl Closed {
    const ALL: [Closed; 2] = [Closed::FirstRequest, Closed::Idle];
    fn label(self) -> &'static str {
        match self {
            Closed::FirstRequest => "no_request",
            Closed::Idle => "idle",
        }
    }
}

/// One listener's counters.
#[derive(Default)]
struct ListenerStats {
    limit: AtomicU64,
    open: AtomicU64,
    accept_errors: AtomicU64,
    closed: [AtomicU64; 2],
}

/// The connection counters of the three listeners, for `/metrics`.
#[derive(Default)]
pub struct ConnStats {
    listeners: [ListenerStats; 3],
}

impl ConnStats {
    fn of(&self, l: Listener) -> &ListenerStats {
        &self.listeners[l as usize]
    }

    /// Connections open on `l` now.
    #[cfg(test)]
    fn open(&self, l: Listener) -> u64 {
        self.of(l).open.load(Ordering::Relaxed)
    }

    /// `slogate_open_connections`, `slogate_max_connections`, `slogate_accept_errors_total`
    /// and `slogate_connections_closed_total`.
    pub fn render_metrics(&self, out: &mut String) {
        use slogate_core::prom::{Kind, family};
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut f = family(
            out,
            "slogate_open_connections",
            Kind::Gauge,
            "Connections open on the listener (accepted, not yet closed).",
        );
        for l in Listener::ALL {
            f.sample(&[("listener", &l.label())], load(&self.of(l).open));
        }
        let mut f = family(
            out,
            "slogate_max_connections",
            Kind::Gauge,
            "Connections the listener serves at once (server.max_connections, server.grpc_max_connections); more wait in the accept queue.",
        );
        for l in Listener::ALL {
            f.sample(&[("listener", &l.label())], load(&self.of(l).limit));
        }
        let mut f = family(
            out,
            "slogate_accept_errors_total",
            Kind::Counter,
            "Failed accepts (e.g. out of file descriptors); the listener backs off and retries.",
        );
        for l in Listener::ALL {
            f.sample(&[("listener", &l.label())], load(&self.of(l).accept_errors));
        }
        let mut f = family(
            out,
            "slogate_connections_closed_total",
            Kind::Counter,
            "Connections the server closed: no request started within server.header_read_timeout (no_request), or none in flight for server.idle_timeout (idle).",
        );
        for l in Listener::ALL {
            for c in Closed::ALL {
                f.sample(
                    &[("listener", &l.label()), ("reason", &c.label())],
                    load(&self.of(l).closed[c as usize]),
                );
            }
        }
    }
}

/// Binds a listener on `addr` with a [`BACKLOG`]-long accept queue.
pub fn bind(addr: std::net::SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As `TcpListener::bind` does: a restarted server can bind while old connections linger.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Accepts connections on `listener` until `stop` resolves, at most `limits.max_connections`
/// open at once, and hands each to `on_conn` with the [`ConnGuard`] that holds its place.
/// `on_conn` must not block: it spawns what serves the connection.
pub async fn run(
    listener: TcpListener,
    which: Listener,
    limits: ConnLimits,
    stats: Arc<ConnStats>,
    stop: impl Future<Output = ()>,
    mut on_conn: impl FnMut(TcpStream, ConnGuard),
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    stats
        .of(which)
        .limit
        .store(limits.max_connections as u64, Ordering::Relaxed);
    let mut failures = Failures::new(which);
    let mut held = None;
    tokio::pin!(stop);
    loop {
        let permit = match held.take() {
            Some(p) => p,
            None => tokio::select! {
                p = permits.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => return,
                },
                () = &mut stop => return,
            },
        };
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = &mut stop => return,
        };
        match accepted {
            Ok((stream, _peer)) => {
                failures.succeeded();
                let _ = stream.set_nodelay(true);
                on_conn(stream, ConnGuard::new(permit, which, limits, stats.clone()));
            }
            Err(e) => {
                held = Some(permit);
                stats
                    .of(which)
                    .accept_errors
                    .fetch_add(1, Ordering::Relaxed);
                // The client gave up between SYN and accept: nothing to wait for.
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::ConnectionRefused
                        | io::ErrorKind::Interrupted
                ) {
                    tracing::debug!(listener = which.label(), error = %e, "a connection ended before it was accepted");
                    continue;
                }
                let delay = failures.failed(&e);
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = &mut stop => return,
                }
            }
        }
    }
}

/// Failed accepts in a row on one listener: the back-off, and the rate-limited warning.
struct Failures {
    which: Listener,
    backoff: Duration,
    last_warning: Option<Instant>,
    /// Failures since the last warning that were not logged.
    unlogged: u64,
}

impl Failures {
    fn new(which: Listener) -> Failures {
        Failures {
            which,
            backoff: BACKOFF_MIN,
            last_warning: None,
            unlogged: 0,
        }
    }

    /// Counts a failure, warns if the last warning is [`WARN_INTERVAL`] old, and returns how
    /// long to wait before the next accept.
    fn failed(&mut self, e: &io::Error) -> Duration {
        let delay = self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        let now = Instant::now();
        if self
            .last_warning
            .is_none_or(|t| now.duration_since(t) >= WARN_INTERVAL)
        {
            tracing::warn!(
                listener = self.which.label(),
                error = %e,
                not_logged_since_last_warning = self.unlogged,
                retry_in = ?delay,
                "accepting a connection failed; backing off (at most one such warning per listener every 10s; all are counted in slogate_accept_errors_total)"
            );
            self.last_warning = Some(now);
            self.unlogged = 0;
        } else {
            self.unlogged += 1;
        }
        delay
    }

    /// An accept succeeded: the back-off starts over. Failures not logged yet are reported now
    /// if a warning is due, so an episode's count is not lost when it ends.
    fn succeeded(&mut self) {
        self.backoff = BACKOFF_MIN;
        if self.unlogged == 0 {
            return;
        }
        let now = Instant::now();
        if self
            .last_warning
            .is_some_and(|t| now.duration_since(t) >= WARN_INTERVAL)
        {
            tracing::warn!(
                listener = self.which.label(),
                not_logged_since_last_warning = self.unlogged,
                "accepting connections again after failures"
            );
            self.last_warning = Some(now);
            self.unlogged = 0;
        }
    }
}

/// What an accepted connection holds until it closes: its place under the listener's cap, its
/// count in `slogate_open_connections`, and its [`Activity`].
pub struct ConnGuard {
    _permit: OwnedSemaphorePermit,
    which: Listener,
    stats: Arc<ConnStats>,
    activity: Arc<Activity>,
}

impl ConnGuard {
    fn new(
        permit: OwnedSemaphorePermit,
        which: Listener,
        limits: ConnLimits,
        stats: Arc<ConnStats>,
    ) -> ConnGuard {
        stats.of(which).open.fetch_add(1, Ordering::Relaxed);
        ConnGuard {
            _permit: permit,
            which,
            stats,
            activity: Arc::new(Activity {
                accepted: Instant::now(),
                first_request_timeout: limits.first_request_timeout,
                idle_timeout: limits.idle_timeout,
                in_flight: AtomicU32::new(0),
                started: AtomicU32::new(0),
                last_end_ms: AtomicU64::new(0),
            }),
        }
    }

    /// The connection's IO (after the TLS handshake, if any), with the deadlines enforced and
    /// this guard inside: dropping it closes the connection and frees its place.
    pub fn wrap<IO>(self, io: IO) -> Tracked<IO> {
        let first = self.activity.accepted + self.activity.first_request_timeout;
        Tracked {
            io,
            timer: Box::pin(tokio::time::sleep_until(first)),
            closed: false,
            guard: self,
        }
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.stats
            .of(self.which)
            .open
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// The requests of one connection: whether one has started, how many are in flight, when the
/// last one ended.
pub struct Activity {
    accepted: Instant,
    first_request_timeout: Duration,
    idle_timeout: Duration,
    in_flight: AtomicU32,
    started: AtomicU32,
    /// Milliseconds from `accepted` to the end of the last request.
    last_end_ms: AtomicU64,
}

impl Activity {
    /// A request starts; it is in flight until the returned guard is dropped.
    pub fn begin(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.started.store(1, Ordering::Release);
        RequestGuard(self.clone())
    }

    /// When the connection is due to close if nothing happens until then; `None` while a
    /// request is in flight.
    fn deadline(&self) -> Option<(Instant, Closed)> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        if self.started.load(Ordering::Acquire) == 0 {
            return Some((
                self.accepted + self.first_request_timeout,
                Closed::FirstRequest,
            ));
        }
        let end = Duration::from_millis(self.last_end_ms.load(Ordering::Acquire));
        Some((self.accepted + end + self.idle_timeout, Closed::Idle))
    }
}

/// A request in flight on a connection (see [`Activity::begin`]).
pub struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let a = &self.0;
        let ms = a.accepted.elapsed().as_millis() as u64;
        a.last_end_ms.fetch_max(ms, Ordering::AcqRel);
        a.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection's IO with its [`ConnGuard`] inside: reads end (EOF) once the connection is past
/// its first-request or idle deadline while waiting for the client.
pub struct Tracked<IO> {
    io: IO,
    /// Fires at the earliest moment the connection could be due; re-armed when it fires early.
    timer: Pin<Box<Sleep>>,
    closed: bool,
    guard: ConnGuard,
}

impl<IO> Tracked<IO> {
    /// The connection's requests, for [`Activity::begin`].
    pub fn activity(&self) -> Arc<Activity> {
        self.guard.activity.clone()
    }

    /// Whether the connection is past its deadline. Polls (and so arms) the timer; called only
    /// when a read is pending, so a busy connection never touches it.
    fn due(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            if self.timer.as_mut().poll(cx).is_pending() {
                return false;
            }
            let now = Instant::now();
            match self.guard.activity.deadline() {
                // A request is in flight: look again one idle period from now.
                None => {
                    let next = now + self.guard.activity.idle_timeout;
                    self.timer.as_mut().reset(next);
                }
                Some((at, why)) if at <= now => {
                    let stats = self.guard.stats.of(self.guard.which);
                    stats.closed[why as usize].fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(
                        listener = self.guard.which.label(),
                        reason = why.label(),
                        "closing a connection"
                    );
                    return true;
                }
                Some((at, _)) => self.timer.as_mut().reset(at),
            }
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Tracked<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.closed {
            return Poll::Ready(Ok(()));
        }
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Pending if this.due(cx) => {
                this.closed = true;
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Tracked<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// What tonic puts in each request's extensions: the connection's [`Activity`].
#[derive(Clone)]
pub struct ConnInfo(pub Arc<Activity>);

impl<IO> tonic::transport::server::Connected for Tracked<IO> {
    type ConnectInfo = ConnInfo;
    fn connect_info(&self) -> ConnInfo {
        ConnInfo(self.activity())
    }
}

/// A tower layer for the gRPC server: counts each request as in flight on its connection (from
/// the [`ConnInfo`] tonic puts in the extensions) until its response is ready.
#[derive(Clone, Copy)]
pub struct TrackRequestsLayer;

impl<S> tower::Layer<S> for TrackRequestsLayer {
    type Service = TrackRequests<S>;
    fn layer(&self, inner: S) -> TrackRequests<S> {
        TrackRequests(inner)
    }
}

#[derive(Clone)]
pub struct TrackRequests<S>(S);

impl<S, B> tower::Service<http::Request<B>> for TrackRequests<S>
where
    S: tower::Service<http::Request<B>>,
    S::Future: Unpin,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = InFlight<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let guard = req.extensions().get::<ConnInfo>().map(|c| c.0.begin());
        InFlight {
            inner: self.0.call(req),
            _guard: guard,
        }
    }
}

/// A request's response future, holding the request's [`RequestGuard`] until it completes or
/// is dropped.
pub struct InFlight<F> {
    inner: F,
    _guard: Option<RequestGuard>,
}

impl<F: Future + Unpin> Future for InFlight<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        Pin::new(&mut self.inner).poll(cx)
    }
}

/// Warns at start when the process may open fewer files than the listeners' caps allow
/// connections: then descriptors run out first, and the accept loops back off instead of the
/// caps applying. Reads `/proc/self/limits` (Linux; elsewhere nothing is checked).
pub fn check_descriptor_budget(connections: usize) {
    let Ok(limits) = std::fs::read_to_string("/proc/self/limits") else {
        return;
    };
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<usize>().ok());
    // Files, the history, the runtime's own descriptors: a margin above the connections.
    const MARGIN: usize = 256;
    if let Some(soft) = soft
        && soft < connections + MARGIN
    {
        tracing::warn!(
            open_file_limit = soft,
            connection_caps = connections,
            "the open-file limit is below the listeners' connection caps: when descriptors run out, accepting backs off and new connections wait; raise the limit (ulimit -n, LimitNOFILE=) or lower server.max_connections and server.grpc_max_connections"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_second_and_starts_over_after_a_success() {
        let mut f = Failures::new(Listener::OtlpGrpc);
        let e = io::Error::from_raw_os_error(24);
        let delays: Vec<u64> = (0..9).map(|_| f.failed(&e).as_millis() as u64).collect();
        assert_eq!(delays, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        // One warning for the first failure; the other eight wait for the next one.
        assert_eq!(f.unlogged, 8);
        f.succeeded();
        assert_eq!(f.failed(&e), BACKOFF_MIN);
    }

    #[tokio::test]
    async fn deadlines_follow_the_requests() {
        let limits = ConnLimits {
            max_connections: 1,
            first_request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        };
        let permit = Arc::new(Semaphore::new(1)).acquire_owned().await.unwrap();
        let stats = Arc::new(ConnStats::default());
        let guard = ConnGuard::new(permit, Listener::Api, limits, stats.clone());
        let a = guard.activity.clone();
        let t0 = a.accepted;
        assert_eq!(stats.open(Listener::Api), 1);
        assert_eq!(
            a.deadline(),
            Some((t0 + Duration::from_secs(10), Closed::FirstRequest))
        );
        let (first, second) = (a.begin(), a.begin());
        assert_eq!(a.deadline(), None, "requests in flight keep it open");
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(first);
        assert_eq!(a.deadline(), None, "one request is still in flight");
        drop(second);
        let (at, why) = a.deadline().unwrap();
        assert_eq!(why, Closed::Idle);
        let idle_from = at - Duration::from_secs(60) - t0;
        assert!(
            idle_from >= Duration::from_millis(20) && idle_from < Duration::from_secs(5),
            "the idle period starts when the last request ended: {idle_from:?}"
        );
        drop(guard);
        assert_eq!(stats.open(Listener::Api), 0);
    }

    /// The metric families pass `promtool check metrics` rules: counters end in `_total`, one
    /// sample per listener (and reason).
    #[test]
    fn metrics_name_every_listener() {
        let stats = ConnStats::default();
        stats
            .of(Listener::OtlpGrpc)
            .accept_errors
            .store(3, Ordering::Relaxed);
        let mut out = String::new();
        stats.render_metrics(&mut out);
        assert!(
            out.contains("slogate_accept_errors_total{listener=\"otlp_grpc\"} 3\n"),
            "{out}"
        );
        assert!(
            out.contains("slogate_connections_closed_total{listener=\"api\",reason=\"idle\"} 0\n"),
            "{out}"
        );
        assert_eq!(
            out.lines()
                .filter(|l| l.starts_with("slogate_open_connections{"))
                .count(),
            3
        );
    }
}

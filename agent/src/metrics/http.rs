//! The metrics endpoint: a small HTTP/1.1 server (hyper) for Prometheus' scrapes and the
//! kubelet's probes. Three paths need no router; HTTP/2 and TLS are left to a sidecar or the
//! network policy, as for any node exporter.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use super::families::{Metrics, OPENMETRICS_CONTENT_TYPE, PROMETHEUS_TEXT_CONTENT_TYPE};
use super::health::Health;

/// After shutdown, how long requests in flight get before their connections are cut: the
/// agent must stop promptly (a DaemonSet rollout waits on it), and a scrape takes milliseconds.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(400);
/// Connections served at once: a scraper and the kubelet need a handful; the bound keeps a
/// misbehaving client from costing memory (beyond it, new ones wait in the listen backlog).
const MAX_CONNECTIONS: usize = 64;
/// A client that opens a connection and sends no complete request head in this time is cut.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the metrics address could not be bound, with the fix.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error(
        "cannot listen on {addr}: another process listens on {addr}; pick another with --metrics ADDR"
    )]
    InUse { addr: SocketAddr },
    #[error(
        "cannot listen on {addr}: permission denied (ports below 1024 need CAP_NET_BIND_SERVICE); pick a port of 1024 or above with --metrics ADDR"
    )]
    PermissionDenied { addr: SocketAddr },
    #[error(
        "cannot listen on {addr}: that address is not on this host; use one of its addresses, or 0.0.0.0:{port} for all interfaces, with --metrics ADDR",
        port = addr.port()
    )]
    NotOnThisHost { addr: SocketAddr },
    #[error("cannot listen on {addr}: {source}; pick another with --metrics ADDR")]
    Other { addr: SocketAddr, source: std::io::Error },
}

/// A bound, not yet serving, metrics endpoint.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    addr: SocketAddr,
}

impl Server {
    /// Binds now so the caller reports a bad address before attaching anything.
    pub async fn bind(addr: SocketAddr) -> Result<Self, BindError> {
        let listener = TcpListener::bind(addr).await.map_err(|e| bind_error(addr, e))?;
        let addr = listener.local_addr().map_err(|e| bind_error(addr, e))?;
        Ok(Server { listener, addr })
    }

    /// The bound address (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves GET /metrics, /healthz and /readyz until `shutdown` resolves; then stops
    /// accepting, lets requests in flight finish for up to `SHUTDOWN_GRACE` and cuts the rest
    /// (idle keep-alive connections close at once). Returns Ok after a shutdown; connection
    /// errors are the client's problem and only logged.
    pub async fn run(
        self,
        metrics: Arc<Metrics>,
        health: Health,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let mut builder = http1::Builder::new();
        builder.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
        let graceful = GracefulShutdown::new();
        let mut conns = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                Some(done) = conns.join_next(), if !conns.is_empty() => {
                    if let Err(e) = done {
                        tracing::warn!("metrics: a connection task failed: {e}");
                    }
                }
                accepted = self.listener.accept(), if conns.len() < MAX_CONNECTIONS => {
                    let (stream, peer) = match accepted {
                        Ok(accepted) => accepted,
                        Err(e) => {
                            // Out of file descriptors, mostly: retrying at once would spin.
                            tracing::warn!("metrics: accept on {} failed: {e}", self.addr);
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    let (metrics, health) = (metrics.clone(), health.clone());
                    let service = service_fn(move |req: Request<Incoming>| {
                        let response = respond(&req, &metrics, &health);
                        async move { Ok::<_, Infallible>(response) }
                    });
                    let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
                    conns.spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!("metrics: connection from {peer}: {e}");
                        }
                    });
                }
            }
        }
        drop(self.listener);
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            graceful.shutdown().await;
            while conns.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::debug!(
                "metrics: cutting {} connection(s) still busy at shutdown",
                conns.len()
            );
            conns.abort_all();
            while conns.join_next().await.is_some() {}
        }
        Ok(())
    }
}

fn bind_error(addr: SocketAddr, e: std::io::Error) -> BindError {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::AddrInUse => BindError::InUse { addr },
        ErrorKind::PermissionDenied => BindError::PermissionDenied { addr },
        ErrorKind::AddrNotAvailable => BindError::NotOnThisHost { addr },
        _ => BindError::Other { addr, source: e },
    }
}

/// The response to `req`; a panic while building it is a 500 for this request only.
fn respond(req: &Request<Incoming>, metrics: &Metrics, health: &Health) -> Response<Full<Bytes>> {
    guarded(|| route(req.method(), req.uri().path(), accepts_openmetrics(req), metrics, health))
}

/// Runs `f`, turning a panic into a 500 (the panic hook has already logged it): the hyper
/// connection task would survive it too, but the client would see a reset, not an answer.
pub(crate) fn guarded(f: impl FnOnce() -> Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| {
        text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error while answering; see the agent's log\n",
        )
    })
}

fn route(
    method: &Method,
    path: &str,
    openmetrics: bool,
    metrics: &Metrics,
    health: &Health,
) -> Response<Full<Bytes>> {
    if !matches!(path, "/metrics" | "/healthz" | "/readyz") {
        return text(StatusCode::NOT_FOUND, "not found; try /metrics, /healthz or /readyz\n");
    }
    // HEAD is GET without a body (hyper leaves the body out), which HTTP requires of a server.
    if method != Method::GET && method != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
        r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match path {
        "/metrics" if openmetrics => {
            body(StatusCode::OK, OPENMETRICS_CONTENT_TYPE, metrics.encode())
        }
        "/metrics" => {
            body(StatusCode::OK, PROMETHEUS_TEXT_CONTENT_TYPE, metrics.encode_prometheus_text())
        }
        "/healthz" if health.is_live() => text(StatusCode::OK, "ok\n"),
        "/healthz" => text(StatusCode::SERVICE_UNAVAILABLE, "not live\n"),
        _ if health.is_ready() => text(StatusCode::OK, "ready\n"),
        _ => body(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain; charset=utf-8",
            format!("not ready: {}\n", health.not_ready_reason()),
        ),
    }
}

/// Content negotiation: Prometheus asks for OpenMetrics in its `Accept` header (its default
/// scrape protocols list it first); curl and older scrapers do not, and get the classic text
/// format, which the OpenMetrics text is not (counter TYPE lines name the family without
/// `_total`, and it ends in `# EOF`).
fn accepts_openmetrics(req: &Request<Incoming>) -> bool {
    req.headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"))
}

fn text(status: StatusCode, s: &'static str) -> Response<Full<Bytes>> {
    body(status, "text/plain; charset=utf-8", s.to_owned())
}

fn body(status: StatusCode, content_type: &'static str, s: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(s)));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

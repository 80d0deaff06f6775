//! The server over real sockets on 127.0.0.1, with a raw HTTP/1.1 client (what a scraper or the
//! kubelet sends is simple, and a raw client shows exactly what goes over the wire).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::textparse::{Format, parse};
use super::*;

struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

async fn start(metrics: Arc<Metrics>, health: Health) -> Running {
    let server = Server::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = server.local_addr();
    assert_ne!(addr.port(), 0);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(metrics, health, async move {
        let _ = stopped.await;
    }));
    Running { addr, stop: Some(stop), task }
}

impl Running {
    async fn shutdown(mut self) -> Duration {
        let t = Instant::now();
        if let Some(stop) = self.stop.take() {
            stop.send(()).unwrap();
        }
        let result = tokio::time::timeout(Duration::from_secs(5), self.task).await;
        result.expect("run returns").expect("run does not panic").expect("run is Ok");
        t.elapsed()
    }
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Sends `request` on a fresh connection (closed after the answer) and reads the answer.
async fn send(addr: SocketAddr, request: &str) -> Reply {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut raw)).await.unwrap().unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head");
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .map(|l| l.split_once(": ").unwrap())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    Reply { status, headers, body: body.to_owned() }
}

async fn get(addr: SocketAddr, path: &str, extra: &str) -> Reply {
    send(addr, &format!("GET {path} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n")).await
}

#[tokio::test]
async fn serves_metrics_health_and_readiness_and_refuses_the_rest() {
    let metrics = Arc::new(Metrics::new(MetricsConfig::default()));
    metrics.syn(&Where::netns("host"));
    let health = Health::new();
    let srv = start(metrics.clone(), health.clone()).await;
    let addr = srv.addr;

    // Prometheus asks for OpenMetrics; curl gets the classic format.
    let accept = "Accept: application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1\r\n";
    let om = get(addr, "/metrics", accept).await;
    assert_eq!(om.status, 200);
    assert_eq!(om.header("content-type"), Some(OPENMETRICS_CONTENT_TYPE));
    let p = parse(&om.body, Format::OpenMetrics).unwrap();
    assert_eq!(p["reach_syn"].samples.values().sum::<f64>(), 1.0);
    let classic = get(addr, "/metrics?x=1", "").await;
    assert_eq!(classic.status, 200);
    assert_eq!(classic.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    let p = parse(&classic.body, Format::PrometheusText).unwrap();
    assert_eq!(p["reach_syn_total"].kind, "counter");

    let live = get(addr, "/healthz", "").await;
    assert_eq!((live.status, live.body.as_str()), (200, "ok\n"));
    let not_ready = get(addr, "/readyz", "").await;
    assert_eq!(not_ready.status, 503);
    assert!(not_ready.body.starts_with("not ready: starting"), "{}", not_ready.body);
    health.set_ready(true);
    assert_eq!(get(addr, "/readyz", "").await.status, 200);
    health.set_not_ready("re-attaching");
    assert_eq!(get(addr, "/readyz", "").await.body, "not ready: re-attaching\n");
    health.set_live(false);
    assert_eq!(get(addr, "/healthz", "").await.status, 503);

    assert_eq!(get(addr, "/", "").await.status, 404);
    assert_eq!(get(addr, "/metrics/x", "").await.status, 404);
    let post = send(
        addr,
        "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
    let head = send(addr, "HEAD /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert_eq!((head.status, head.body.as_str()), (503, ""));

    // A malformed request costs its own connection only.
    let garbage = send(addr, "\x01\x02 nonsense\r\n\r\n").await;
    assert_eq!(garbage.status, 400);
    assert_eq!(get(addr, "/metrics", "").await.status, 200);
    srv.shutdown().await;
}

#[tokio::test]
async fn an_address_in_use_names_the_address_and_the_fix() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let err = Server::bind(addr).await.expect_err("in use");
    assert!(matches!(err, BindError::InUse { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&format!("another process listens on {addr}")), "{msg}");
    assert!(msg.contains("--metrics ADDR"), "{msg}");
}

#[tokio::test]
async fn an_address_not_on_this_host_says_so() {
    // 192.0.2.0/24 is TEST-NET-1: never assigned, so bind fails with EADDRNOTAVAIL (no
    // packet is sent).
    let err = Server::bind("192.0.2.1:9464".parse().unwrap()).await.expect_err("not here");
    assert!(matches!(err, BindError::NotOnThisHost { .. }), "{err:?}");
    assert!(err.to_string().contains("0.0.0.0:9464"), "{err}");
}

#[tokio::test]
async fn shutdown_is_prompt_with_an_idle_keep_alive_client_and_a_stuck_one() {
    let srv = start(Arc::new(Metrics::new(MetricsConfig::default())), Health::new()).await;
    // Keep-alive: one answered request, then the connection stays open and idle.
    let mut idle = TcpStream::connect(srv.addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 1024];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", String::from_utf8_lossy(&buf[..n]));
    // Stuck: half a request head, never finished.
    let mut stuck = TcpStream::connect(srv.addr).await.unwrap();
    stuck.write_all(b"GET /metr").await.unwrap();
    // The stuck connection's task must exist before shutdown for the test to mean anything:
    // the idle one answered, so the server is accepting; a second answered request on a third
    // connection proves the stuck one was accepted before it (one accept loop, in order).
    assert_eq!(get(srv.addr, "/healthz", "").await.status, 200);

    let took = srv.shutdown().await;
    assert!(took < Duration::from_secs(2), "shutdown took {took:?}");
    // Both connections were closed by the server, not left hanging.
    let closed = tokio::time::timeout(Duration::from_secs(2), idle.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "idle connection closed: {closed:?}");
    let closed = tokio::time::timeout(Duration::from_secs(2), stuck.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "stuck connection closed: {closed:?}");
}

#[test]
fn a_panic_while_answering_is_a_500() {
    let r = super::http::guarded(|| panic!("boom"));
    assert_eq!(r.status(), hyper::StatusCode::INTERNAL_SERVER_ERROR);
}

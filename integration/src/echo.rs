//! An upstream that echoes each request back as JSON, for Envoy to proxy to.
//!
//! Request headers steer the answer:
//! - `x-echo-status: 503` answers with that status;
//! - `x-echo-delay-ms: 200` waits that long before answering;
//! - `x-echo-body-size: 1000` answers with that many bytes (`x`) instead of the echo;
//! - `x-echo-response-header: name: value` (repeatable) adds a response header.
//!
//! Without those headers, the server's own settings ([`EchoServer::set_status`],
//! [`EchoServer::set_delay`]) apply: so one replica among several can fail or lag
//! while its siblings, sent the same request, answer at once.
//!
//! Every response carries `x-echo-name` so routing tests can tell upstreams apart.
//! The server keeps the last [`KEPT`] requests it saw ([`EchoServer::received`]), so it
//! also stands in for a collector (Zipkin's span reports, for example).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

/// What the echo server saw, as it serialises it into the response body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Echo {
    pub name: String,
    pub method: String,
    /// Path and query as received (after Envoy's rewriting, if any).
    pub path: String,
    /// Names lower-case, repeats kept; hyper groups a repeated name's values together
    /// at its first position, so order across different names is first-seen order.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Echo {
    /// Parses an echo response body.
    pub fn parse(body: &[u8]) -> Result<Echo> {
        serde_json::from_slice(body).with_context(|| {
            format!(
                "not an echo body: {:?}",
                String::from_utf8_lossy(&body[..body.len().min(500)])
            )
        })
    }

    /// The first value of request header `name` as the upstream received it.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// How many of the latest requests an echo server keeps (a long-running `echo` must
/// not grow without bound).
pub const KEPT: usize = 256;

/// The latest requests, oldest first.
type Received = Arc<Mutex<VecDeque<Echo>>>;

/// A running echo server on 127.0.0.1; stops when dropped.
#[derive(Debug)]
pub struct EchoServer {
    port: u16,
    name: String,
    requests: Arc<AtomicU64>,
    received: Received,
    behaviour: Arc<Behaviour>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl EchoServer {
    /// Starts on a free port, named "echo".
    pub fn start() -> Result<EchoServer> {
        EchoServer::start_named("echo")
    }

    /// Starts on a free port with the given name.
    pub fn start_named(name: &str) -> Result<EchoServer> {
        EchoServer::start_on(0, name)
    }

    /// Starts on 127.0.0.1:`port` (0 picks a free port).
    pub fn start_on(port: u16, name: &str) -> Result<EchoServer> {
        // Bind before spawning so the port is known, and errors surface, right here.
        let listener = std::net::TcpListener::bind(("127.0.0.1", port))
            .with_context(|| format!("binding echo server to 127.0.0.1:{port}"))?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("building echo server runtime")?;

        let requests = Arc::new(AtomicU64::new(0));
        let received = Received::default();
        let behaviour = Arc::new(Behaviour::default());
        let (shutdown, stop) = oneshot::channel();
        let state = Arc::new(State {
            name: name.to_string(),
            requests: Arc::clone(&requests),
            received: Arc::clone(&received),
            behaviour: Arc::clone(&behaviour),
        });
        let thread = std::thread::Builder::new()
            .name(format!("echo-{name}"))
            .spawn(move || runtime.block_on(serve(listener, state, stop)))
            .context("spawning echo server thread")?;
        Ok(EchoServer {
            port,
            name: name.to_string(),
            requests,
            received,
            behaviour,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// Requests received so far (counted when the request head arrives).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    /// The latest requests received (up to [`KEPT`]), oldest first, each as it was
    /// echoed; its `name` is this server's.
    pub fn received(&self) -> Vec<Echo> {
        let kept = self.received.lock().unwrap_or_else(PoisonError::into_inner);
        kept.iter().cloned().collect()
    }

    /// Answers every later request without `x-echo-status` with `status` (200 to
    /// answer normally again).
    pub fn set_status(&self, status: u16) {
        self.behaviour.status.store(status, Ordering::SeqCst);
    }

    /// Delays every later request without `x-echo-delay-ms` by `delay`.
    pub fn set_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.behaviour.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Blocks until the server stops (for the `echo` binary).
    pub fn wait(mut self) -> Result<()> {
        match self.thread.take() {
            Some(thread) => thread
                .join()
                .map_err(|_| anyhow!("echo server thread panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct State {
    name: String,
    requests: Arc<AtomicU64>,
    received: Received,
    behaviour: Arc<Behaviour>,
}

/// The server-wide answer, changed while it runs; request headers take precedence.
#[derive(Debug)]
struct Behaviour {
    status: AtomicU16,
    delay_ms: AtomicU64,
}

impl Default for Behaviour {
    fn default() -> Behaviour {
        Behaviour {
            status: AtomicU16::new(200),
            delay_ms: AtomicU64::new(0),
        }
    }
}

async fn serve(
    listener: std::net::TcpListener,
    state: Arc<State>,
    mut stop: oneshot::Receiver<()>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("echo {}: {err}", state.name);
            return;
        }
    };
    loop {
        tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let state = Arc::clone(&state);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let state = Arc::clone(&state);
                        async move { handle(req, &state).await }
                    });
                    // Connection errors (client resets) are routine in tests.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        }
    }
    // Dropping the runtime (when the thread returns) cancels open connections.
}

async fn handle(
    req: Request<Incoming>,
    state: &State,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    state.requests.fetch_add(1, Ordering::SeqCst);
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let status = header("x-echo-status")
        .and_then(|s| s.parse::<u16>().ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .or_else(|| StatusCode::from_u16(state.behaviour.status.load(Ordering::SeqCst)).ok())
        .unwrap_or(StatusCode::OK);
    let delay = header("x-echo-delay-ms")
        .and_then(|s| s.parse::<u64>().ok())
        .or_else(|| Some(state.behaviour.delay_ms.load(Ordering::SeqCst)).filter(|&ms| ms > 0));
    let body_size = header("x-echo-body-size").and_then(|s| s.parse::<usize>().ok());
    let extra_headers: Vec<(String, String)> = req
        .headers()
        .get_all("x-echo-response-header")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();

    let method = req.method().to_string();
    let path = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().to_string(), |pq| pq.to_string());
    let headers = req
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = req.into_body().collect().await?.to_bytes();

    if let Some(ms) = delay {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    let echo = Echo {
        name: state.name.clone(),
        method,
        path,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    let (content_type, body) = match body_size {
        Some(n) => ("text/plain", Bytes::from(vec![b'x'; n])),
        None => (
            "application/json",
            Bytes::from(serde_json::to_vec(&echo).unwrap_or_default()),
        ),
    };
    {
        let mut kept = state
            .received
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if kept.len() == KEPT {
            kept.pop_front();
        }
        kept.push_back(echo);
    }
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        "content-type",
        hyper::header::HeaderValue::from_static(content_type),
    );
    if let Ok(name) = hyper::header::HeaderValue::from_str(&state.name) {
        headers.insert("x-echo-name", name);
    }
    for (name, value) in extra_headers {
        if let (Ok(name), Ok(value)) = (
            hyper::header::HeaderName::from_bytes(name.as_bytes()),
            hyper::header::HeaderValue::from_str(&value),
        ) {
            headers.append(name, value);
        }
    }
    Ok(response)
}

//! Test rig: a fake sidecar outbound listener that routes on `Host` like Envoy's and
//! records what it received, demo servers on free ports, and a tiny HTTP client.
#![allow(dead_code)]

use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::HeaderMap;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use wasmesh_demo::upstream::Upstream;
use wasmesh_demo::{server, App, Config};

/// What the fake sidecar does for one `Host`.
#[derive(Clone)]
pub enum Behaviour {
    Json(u16, Value),
    /// Answer after a delay.
    Slow(Duration, Value),
    /// Forward to a demo server, as a sidecar's outbound route to a cluster would.
    Proxy(SocketAddr),
}

#[derive(Debug, Clone)]
pub struct Seen {
    pub host: String,
    pub path: String,
    pub headers: HeaderMap,
}

#[derive(Clone, Default)]
pub struct FakeSidecar {
    pub addr: Option<SocketAddr>,
    routes: Arc<Mutex<HashMap<String, Behaviour>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl FakeSidecar {
    pub async fn start() -> FakeSidecar {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = FakeSidecar {
            addr: Some(listener.local_addr().unwrap()),
            ..Default::default()
        };
        let shared = fake.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(shared.answer(req).await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        fake
    }

    pub fn outbound(&self) -> String {
        self.addr.unwrap().to_string()
    }

    pub fn route(&self, host: &str, b: Behaviour) {
        self.routes.lock().unwrap().insert(host.to_string(), b);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn seen_for(&self, host: &str) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.host == host).collect()
    }

    async fn answer(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let host = req
            .headers()
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("")
            .to_string();
        let path = req.uri().path().to_string();
        self.seen.lock().unwrap().push(Seen {
            host: host.clone(),
            path: path.clone(),
            headers: req.headers().clone(),
        });
        let behaviour = self.routes.lock().unwrap().get(&host).cloned();
        match behaviour {
            // Envoy answers 404 when no virtual host matches.
            None => respond(404, Value::Null),
            Some(Behaviour::Json(status, v)) => respond(status, v),
            Some(Behaviour::Slow(d, v)) => {
                tokio::time::sleep(d).await;
                respond(200, v)
            }
            Some(Behaviour::Proxy(addr)) => {
                let up = Upstream::new(Some(addr.to_string()), Duration::from_secs(5));
                let mut headers = req.headers().clone();
                headers.remove("host");
                match up.get_json(&host, &path, &headers).await {
                    Ok(v) => respond(200, v),
                    Err(f) => respond(f.status.unwrap_or(503), Value::String(f.reason)),
                }
            }
        }
    }
}

fn respond(status: u16, v: Value) -> Response<Full<Bytes>> {
    let body = if v.is_null() {
        Vec::new()
    } else {
        serde_json::to_vec(&v).unwrap()
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r
}

/// A demo server running in this test's runtime; `stop` triggers graceful shutdown.
pub struct Demo {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<()>,
}

impl Demo {
    pub async fn start(vars: &[(&str, &str)]) -> Demo {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let cfg = Config::from_lookup(|k| map.get(k).cloned()).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel();
        let drain = cfg.drain_timeout;
        let task = tokio::spawn(server::serve(
            listener,
            Arc::new(App::new(cfg)),
            async {
                let _ = rx.await;
            },
            drain,
        ));
        Demo {
            addr,
            stop: Some(tx),
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

pub struct Got {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Got {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// `GET path` on `addr` with the given headers.
pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Got {
    request(addr, "GET", path, headers).await
}

pub async fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Got {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = sender
        .send_request(b.body(Empty::<Bytes>::new()).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Got {
        status,
        headers,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

/// A port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

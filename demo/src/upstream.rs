//! Calls to other services: always through the local sidecar's outbound listener,
//! naming the target in `Host` (the sidecar routes on it, as Istio's does).
//!
//! One connection per call: the sidecar is local, and a fresh connection can never be
//! a stale pooled one that Envoy has just closed, which would show up as a spurious
//! failure in the fault and canary measurements.

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper::header::{HeaderMap, HeaderValue, ACCEPT, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde_json::Value;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// Larger answers are a bug upstream, not something to buffer.
const MAX_BODY: usize = 1 << 20;

/// Why a call gave no usable answer. `status` is the HTTP status when there was one
/// (a fault abort, an authz denial); none for refused connections and timeouts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    pub reason: String,
}

impl Failure {
    fn new(status: Option<u16>, reason: impl Into<String>) -> Failure {
        Failure {
            status,
            reason: reason.into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Upstream {
    outbound: Option<String>,
    timeout: Duration,
}

/// Drives a client connection; aborted when the call ends or is abandoned on timeout.
struct ConnTask(JoinHandle<()>);

impl Drop for ConnTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Upstream {
    pub fn new(outbound: Option<String>, timeout: Duration) -> Upstream {
        Upstream { outbound, timeout }
    }

    /// `GET path` on the service named by `authority` (`reviews:9080`), expecting a
    /// 200 with a JSON body.
    pub async fn get_json(
        &self,
        authority: &str,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<Value, Failure> {
        match tokio::time::timeout(self.timeout, self.call(authority, path, headers)).await {
            Ok(r) => r,
            Err(_) => Err(Failure::new(
                None,
                format!("no answer within {} ms", self.timeout.as_millis()),
            )),
        }
    }

    async fn call(
        &self,
        authority: &str,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<Value, Failure> {
        let addr = self.outbound.as_deref().unwrap_or(authority);
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| Failure::new(None, format!("connect {addr}: {e}")))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| Failure::new(None, format!("handshake with {addr}: {e}")))?;
        let _conn = ConnTask(tokio::spawn(async move {
            // Errors surface through send_request; nothing to add here.
            let _ = conn.await;
        }));
        let mut req = Request::new(Empty::<Bytes>::new());
        *req.method_mut() = Method::GET;
        *req.uri_mut() = path
            .parse()
            .map_err(|e| Failure::new(None, format!("bad path {path:?}: {e}")))?;
        let h = req.headers_mut();
        h.extend(headers.clone());
        let host = HeaderValue::from_str(authority)
            .map_err(|e| Failure::new(None, format!("bad authority {authority:?}: {e}")))?;
        h.insert(HOST, host);
        h.insert(ACCEPT, HeaderValue::from_static("application/json"));
        if !h.contains_key(hyper::header::USER_AGENT) {
            h.insert(
                hyper::header::USER_AGENT,
                HeaderValue::from_static("wasmesh-demo"),
            );
        }
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| Failure::new(None, format!("request to {authority}: {e}")))?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| Failure::new(Some(status.as_u16()), format!("reading body: {e}")))?
            .to_bytes();
        if status != hyper::StatusCode::OK {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            return Err(Failure::new(Some(status.as_u16()), text.trim().to_string()));
        }
        serde_json::from_slice(&body)
            .map_err(|e| Failure::new(Some(status.as_u16()), format!("answer is not JSON: {e}")))
    }
}

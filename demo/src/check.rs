//! Health-check mode: `wasmesh-demo --check URL` (or the binary invoked as
//! `wasmesh-healthcheck URL`) exits 0 when `GET URL` answers 2xx. The images are FROM
//! scratch, with no shell or curl, so compose health checks run this instead.

use anyhow::{bail, Context, Result};
use http_body_util::Empty;
use hyper::body::Bytes;
use hyper::header::{HeaderValue, HOST};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use std::time::Duration;
use tokio::net::TcpStream;

pub async fn check(url: &str, timeout: Duration) -> Result<u16> {
    tokio::time::timeout(timeout, get(url))
        .await
        .with_context(|| format!("{url}: no answer within {} ms", timeout.as_millis()))?
}

async fn get(url: &str) -> Result<u16> {
    let uri: Uri = url
        .parse()
        .with_context(|| format!("{url:?} is not a URL"))?;
    if uri.scheme_str() != Some("http") {
        bail!("{url}: only http:// URLs are checked");
    }
    let authority = uri
        .authority()
        .with_context(|| format!("{url}: no host"))?
        .clone();
    let addr = format!(
        "{}:{}",
        authority.host(),
        authority.port_u16().unwrap_or(80)
    );
    let stream = TcpStream::connect(&addr)
        .await
        .with_context(|| format!("{url}: connect {addr}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .with_context(|| format!("{url}: handshake"))?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut req = Request::new(Empty::<Bytes>::new());
    *req.uri_mut() = path.parse().with_context(|| format!("{url}: bad path"))?;
    req.headers_mut()
        .insert(HOST, HeaderValue::from_str(authority.as_str())?);
    let resp = sender.send_request(req).await;
    driver.abort();
    let status = resp.with_context(|| format!("{url}: request"))?.status();
    if !status.is_success() {
        bail!("{url}: HTTP {status}");
    }
    Ok(status.as_u16())
}

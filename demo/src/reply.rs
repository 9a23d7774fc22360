//! Response builders. Every JSON answer names the service, version and instance that
//! produced it, so tests can see routing from outside.

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde::Serialize;

pub type Body = Full<Bytes>;

pub fn json(status: StatusCode, value: &impl Serialize) -> Response<Body> {
    // Serialising our own plain structs cannot fail; fall back to an empty object
    // rather than panic if it ever did.
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    with_type(status, body, "application/json")
}

pub fn html(status: StatusCode, page: String) -> Response<Body> {
    with_type(status, page.into_bytes(), "text/html; charset=utf-8")
}

fn with_type(status: StatusCode, body: Vec<u8>, content_type: &'static str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

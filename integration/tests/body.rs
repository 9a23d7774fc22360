//! The body filter in real Envoy 1.40 with a real upstream (the echo server): the
//! harness's scenarios (filters/body/tests/harness.rs) give the same outcomes here:
//! 413 by content-length with nothing sent upstream, the exact limit passing, 413
//! mid-stream for a chunked body, JSON rewrites with the content-length the upstream
//! sees fixed, the content-type guard, malformed JSON in both modes, the size cap, and
//! a response over its limit answered 502.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{json, Value};
use wasmesh_harness::build::wasm_module;
use wasmesh_integration::bootstrap::{self, admin, http_listener, static_cluster, WasmFilter};
use wasmesh_integration::bootstrap::{INGRESS, UPSTREAM};
use wasmesh_integration::echo::{Echo, EchoServer};
use wasmesh_integration::envoy::Envoy;
use wasmesh_integration::http;

fn config() -> Value {
    let rewrite = json!({
        "remove": ["/password"],
        "rename": [{"from": "/user_name", "to": "/user/name"}],
        "set": [{"pointer": "/source", "value": "mesh"}],
    });
    json!({"rules": [
        {"match": {"path": {"prefix": "/limit"}}, "limit": {"maxRequestBytes": 10, "maxResponseBytes": 64}},
        {"match": {"path": {"prefix": "/json"}}, "json": {"request": rewrite, "maxBytes": 64}},
        {"match": {"path": {"prefix": "/strict"}}, "json": {"request": rewrite, "maxBytes": 64, "malformed": "REJECT", "overMaxBytes": "REJECT"}},
        {"match": {"path": {"prefix": "/out"}}, "json": {"response": {"remove": ["/headers"], "set": [{"pointer": "/rewritten", "value": true}]}, "maxBytes": 65536}},
    ]})
}

fn start() -> (EchoServer, Envoy) {
    let echo = EchoServer::start().unwrap();
    let filter = WasmFilter::new("wasmesh.body", wasm_module("wasmesh-body")).config(config());
    let route = json!({"name": "all", "match": {"prefix": "/"}, "route": {"cluster": UPSTREAM}});
    let bootstrap = json!({
        "admin": admin(),
        "static_resources": {
            "listeners": [http_listener(INGRESS, bootstrap::wasm_filters(&[filter]), vec![route])],
            "clusters": [static_cluster(UPSTREAM, echo.port())],
        },
    });
    let envoy = Envoy::start(&bootstrap).unwrap();
    (echo, envoy)
}

fn post(envoy: &Envoy, path: &str, headers: &[(&str, &str)], body: &[u8]) -> http::Response {
    let url = format!("{}{path}", envoy.listener_url(INGRESS).unwrap());
    http::request("POST", &url, headers, body)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", envoy.log_tail(40)))
}

/// A chunked request written by hand: each chunk in its own frame.
fn chunked(envoy: &Envoy, path: &str, content_type: &str, chunks: &[&[u8]]) -> http::Response {
    let mut bytes = format!(
        "POST {path} HTTP/1.1\r\nhost: test\r\ncontent-type: {content_type}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    )
    .into_bytes();
    for chunk in chunks {
        bytes.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        bytes.extend_from_slice(chunk);
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(b"0\r\n\r\n");
    http::raw_request(envoy.listener_addr(INGRESS).unwrap(), &bytes).unwrap()
}

fn seen(resp: &http::Response) -> Echo {
    Echo::parse(&resp.body).unwrap()
}

#[test]
fn limits_hold_in_envoy_as_in_the_harness() {
    let (echo, envoy) = start();
    // Over by content-length: answered at the headers, nothing reaches the upstream.
    let resp = post(&envoy, "/limit", &[], b"0123456789A");
    assert_eq!(resp.status, 413, "{}", resp.text());
    assert_eq!(resp.text(), "Payload Too Large");
    assert_eq!(echo.requests(), 0);
    // Exactly the limit passes.
    let resp = post(
        &envoy,
        "/limit",
        &[("x-echo-body-size", "8")],
        b"0123456789",
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(echo.received().last().unwrap().body, "0123456789");
    // Chunked: counted as it streams, refused on the chunk that passes the limit.
    let resp = chunked(&envoy, "/limit", "text/plain", &[b"0123", b"4567", b"89AB"]);
    assert_eq!(resp.status, 413, "{}", resp.text());
    // A response over its limit (by its content-length) becomes 502.
    let resp = post(&envoy, "/limit", &[("x-echo-body-size", "65")], b"");
    assert_eq!(resp.status, 502, "{}", resp.text());
    let resp = post(&envoy, "/limit", &[("x-echo-body-size", "64")], b"");
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.body.len(), 64);
}

#[test]
fn json_rewrites_reach_the_upstream_without_a_stale_length() {
    let (_echo, envoy) = start();
    let body = br#"{"user_name":"ann","password":"x","n":1}"#;
    let resp = post(
        &envoy,
        "/json",
        &[("content-type", "application/json")],
        body,
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    let echo = seen(&resp);
    let want = r#"{"n":1,"source":"mesh","user":{"name":"ann"}}"#;
    assert_eq!(echo.body, want);
    // The headers went on before the body (Envoy gives a Wasm filter holding its
    // headers no body), so without their length: the upstream read it chunked.
    assert_eq!(echo.header("content-length"), None);
    // Chunked: rewritten too, and still without a length.
    let resp = chunked(
        &envoy,
        "/json",
        "application/json",
        &[br#"{"password":"#, br#"1,"n":2}"#],
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(seen(&resp).body, r#"{"n":2,"source":"mesh"}"#);
    // Not JSON by content-type: untouched.
    let resp = post(&envoy, "/json", &[("content-type", "text/plain")], body);
    assert_eq!(seen(&resp).body.as_bytes(), body);
    // Malformed, PASS: untouched.
    let resp = post(
        &envoy,
        "/json",
        &[("content-type", "application/json")],
        b"{\"a\":",
    );
    assert_eq!(resp.status, 200);
    assert_eq!(seen(&resp).body, "{\"a\":");
    // Over the cap, PASS: untouched.
    let big = format!(r#"{{"password":"{}"}}"#, "x".repeat(80));
    let resp = post(
        &envoy,
        "/json",
        &[("content-type", "application/json")],
        big.as_bytes(),
    );
    assert_eq!(seen(&resp).body, big);
    let resp = chunked(
        &envoy,
        "/json",
        "application/json",
        &[&big.as_bytes()[..40], &big.as_bytes()[40..]],
    );
    assert_eq!(seen(&resp).body, big);
}

#[test]
fn refusals_are_the_harness_refusals() {
    let (echo, envoy) = start();
    // Over the cap by content-length: refused at the headers, nothing goes upstream.
    let big = format!(r#"{{"password":"{}"}}"#, "x".repeat(80));
    let resp = post(
        &envoy,
        "/strict",
        &[("content-type", "application/json")],
        big.as_bytes(),
    );
    assert_eq!(resp.status, 413, "{}", resp.text());
    assert_eq!(
        echo.requests(),
        0,
        "refused at the headers: nothing went upstream"
    );
    // The body-phase refusals come after the headers went on (Envoy gives a Wasm
    // filter holding its headers no body); the upstream request is reset.
    let resp = post(
        &envoy,
        "/strict",
        &[("content-type", "application/json")],
        b"{\"a\":",
    );
    assert_eq!(resp.status, 400, "{}", resp.text());
    let resp = chunked(
        &envoy,
        "/strict",
        "application/json",
        &[&big.as_bytes()[..40], &big.as_bytes()[40..]],
    );
    assert_eq!(resp.status, 413, "{}", resp.text());
}

#[test]
fn a_json_response_is_rewritten_and_sent_without_a_stale_length() {
    let (_echo, envoy) = start();
    let resp = post(&envoy, "/out", &[("content-type", "text/plain")], b"hi");
    assert_eq!(resp.status, 200, "{}", resp.text());
    let doc: Value = serde_json::from_slice(&resp.body).unwrap();
    assert!(doc.get("headers").is_none(), "{doc}");
    assert_eq!(doc["rewritten"], json!(true));
    assert_eq!(doc["body"], json!("hi"));
    assert_eq!(resp.header("content-length"), None);
}

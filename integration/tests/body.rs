//! The body filter in real Envoy 1.40 with a real upstream (the echo server): the
//! harness's scenarios (filters/body/tests/harness.rs) give the same outcomes here:
//! 413 by content-length with nothing sent upstream, the exact limit passing, 413
//! mid-stream for a chunked body, JSON rewrites with the content-length the upstream
//! sees fixed, the content-type guard, malformed JSON in both modes, the size cap, and
//! a response over its limit answered 502. The checks are shared with the native
//! module's build of the stage (`scenarios::body`, filters/native/tests/envoy.rs).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;
use wasmesh_harness::build::wasm_module;
use wasmesh_integration::bootstrap::{self, admin, http_listener, static_cluster, WasmFilter};
use wasmesh_integration::bootstrap::{INGRESS, UPSTREAM};
use wasmesh_integration::echo::EchoServer;
use wasmesh_integration::envoy::Envoy;
use wasmesh_integration::scenarios::body;

fn start() -> (EchoServer, Envoy) {
    let echo = EchoServer::start().unwrap();
    let filter =
        WasmFilter::new("wasmesh.body", wasm_module("wasmesh-body")).config(body::config());
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

#[test]
fn limits_hold_in_envoy_as_in_the_harness() {
    let (echo, envoy) = start();
    body::check_limits(&envoy, &echo).unwrap();
}

#[test]
fn json_rewrites_reach_the_upstream_without_a_stale_length() {
    let (_echo, envoy) = start();
    body::check_json_rewrites(&envoy).unwrap();
}

#[test]
fn refusals_are_the_harness_refusals() {
    let (echo, envoy) = start();
    body::check_refusals(&envoy, &echo).unwrap();
}

#[test]
fn a_json_response_is_rewritten_and_sent_without_a_stale_length() {
    let (_echo, envoy) = start();
    body::check_response_rewrite(&envoy).unwrap();
}

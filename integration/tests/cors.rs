//! The cors filter in real Envoy 1.40: the shared scenario gives the same answers as
//! Envoy's own CORS filter with the same policy (what Istio generates for a route's
//! corsPolicy), hostile origins get nothing, a bad config is refused.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;
use wasmesh_harness::build::wasm_module;
use wasmesh_integration::bootstrap::{self, WasmFilter};
use wasmesh_integration::echo::EchoServer;
use wasmesh_integration::envoy::Envoy;
use wasmesh_integration::scenarios::cors;

fn cors_filter(config: serde_json::Value) -> WasmFilter {
    WasmFilter::new("wasmesh.cors", wasm_module("wasmesh-cors")).config(config)
}

#[test]
fn the_wasm_filter_answers_as_envoys_cors_filter_does() {
    let echo = EchoServer::start().unwrap();
    let filters = bootstrap::wasm_filters(&[cors_filter(cors::config())]);
    let envoy = Envoy::start(&cors::bootstrap(echo.port(), filters, false)).unwrap();
    cors::check_policy(&envoy, &echo).unwrap();
}

/// The reference: the very same checks pass against Envoy's CORS filter.
#[test]
fn envoys_own_cors_filter_passes_the_same_scenario() {
    let echo = EchoServer::start().unwrap();
    let filters = vec![cors::envoy_cors_filter()];
    let envoy = Envoy::start(&cors::bootstrap(echo.port(), filters, true)).unwrap();
    cors::check_policy(&envoy, &echo).unwrap();
}

#[test]
fn hostile_origins_get_no_cors_headers_and_never_fail_the_filter() {
    let echo = EchoServer::start().unwrap();
    let filters = bootstrap::wasm_filters(&[cors_filter(cors::config())]);
    let envoy = Envoy::start(&cors::bootstrap(echo.port(), filters, false)).unwrap();
    cors::check_hostile_origins(&envoy).unwrap();
}

#[test]
fn malformed_config_is_refused_naming_the_field() {
    let echo = EchoServer::start().unwrap();
    let filters = bootstrap::wasm_filters(&[cors_filter(json!({
        "corsPolicy": {"allowOrigins": [{"exact": "https://a.example", "prefix": "https://b"}]},
    }))]);
    let err = Envoy::start(&cors::bootstrap(echo.port(), filters, false))
        .expect_err("Envoy must refuse a plugin whose on_configure fails");
    let text = format!("{err:#}");
    assert!(
        text.contains("wasmesh-cors: invalid configuration: corsPolicy.allowOrigins[0]: set exactly one of `exact`, `prefix`, `regex`"),
        "Envoy's log should name the bad field:\n{text}"
    );
}

#[test]
fn example_config_validates() {
    Envoy::validate_example("cors", &wasm_module("wasmesh-cors")).unwrap();
}

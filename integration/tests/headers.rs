//! The headers filter in real Envoy 1.40: edits seen by the upstream and the client,
//! a refused config, and routing that follows a path rewrite.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;
use wasmesh_harness::build::wasm_module;
use wasmesh_integration::bootstrap::{
    self, http_listener, static_cluster, wasm_filters, WasmFilter, INGRESS,
};
use wasmesh_integration::echo::{Echo, EchoServer};
use wasmesh_integration::envoy::Envoy;
use wasmesh_integration::http;
use wasmesh_integration::scenarios;

fn headers_filter(config: serde_json::Value) -> WasmFilter {
    WasmFilter::new("wasmesh.headers", wasm_module("wasmesh-headers")).config(config)
}

#[test]
fn edits_reach_the_upstream_and_the_client() {
    let echo = EchoServer::start().unwrap();
    let filter = headers_filter(scenarios::headers::edits_config());
    let envoy = Envoy::start(&bootstrap::proxy_to(echo.port(), &[filter])).unwrap();
    scenarios::headers::check_edits(&envoy).unwrap();
}

#[test]
fn malformed_config_is_refused_naming_the_field() {
    let echo = EchoServer::start().unwrap();
    let filter = headers_filter(json!({
        "request": {"set": [{"name": "x-ok", "value": "1"}, {"name": "bad name", "value": "2"}]},
    }));
    let err = Envoy::start(&bootstrap::proxy_to(echo.port(), &[filter]))
        .expect_err("Envoy must refuse a plugin whose on_configure fails");
    let text = format!("{err:#}");
    assert!(
        text.contains("wasmesh-headers: invalid configuration: request.set[1].name: `bad name` is not a valid header name"),
        "Envoy's log should name the bad field:\n{text}"
    );
}

#[test]
fn routing_follows_a_path_rewrite() {
    let v1 = EchoServer::start_named("v1").unwrap();
    let v2 = EchoServer::start_named("v2").unwrap();
    let filter = headers_filter(json!({
        "rules": [{
            "match": {"path": {"prefix": "/legacy/"}},
            "request": {"rewrite": {"prefix": {"from": "/legacy/", "to": "/v2/"}}},
        }],
    }));
    let routes = vec![
        json!({"match": {"prefix": "/v2/"}, "route": {"cluster": "v2"}}),
        json!({"match": {"prefix": "/"}, "route": {"cluster": "v1"}}),
    ];
    let config = json!({
        "admin": bootstrap::admin(),
        "static_resources": {
            "listeners": [http_listener(INGRESS, wasm_filters(&[filter]), routes)],
            "clusters": [static_cluster("v1", v1.port()), static_cluster("v2", v2.port())],
        },
    });
    let envoy = Envoy::start(&config).unwrap();
    let base = envoy.listener_url(INGRESS).unwrap();

    let resp = http::get(&format!("{base}/legacy/items?id=7")).unwrap();
    assert_eq!(resp.status, 200, "{}", envoy.log());
    assert_eq!(
        resp.header("x-echo-name"),
        Some("v2"),
        "the rewritten path must be routed to v2"
    );
    assert_eq!(Echo::parse(&resp.body).unwrap().path, "/v2/items?id=7");

    let resp = http::get(&format!("{base}/other")).unwrap();
    assert_eq!(resp.header("x-echo-name"), Some("v1"));
    assert_eq!(v2.requests(), 1);
}

#[test]
fn example_config_validates() {
    Envoy::validate_example("headers", &wasm_module("wasmesh-headers")).unwrap();
}

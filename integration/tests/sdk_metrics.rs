//! The SDK's labelled metrics in a real Envoy: the label encoding plus the SDK's
//! `stats_tags` make `/stats/prometheus` print real Prometheus labels.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;
use wasmesh_harness::build::wasm_module;
use wasmesh_integration::bootstrap::{self, WasmFilter, INGRESS};
use wasmesh_integration::echo::EchoServer;
use wasmesh_integration::envoy::Envoy;
use wasmesh_integration::http;
use wasmesh_sdk::metrics::stats_tags;

#[test]
fn labelled_counter_shows_labels_in_prometheus() {
    let echo = EchoServer::start().unwrap();
    let filter = WasmFilter::new("hello", wasm_module("wasmesh-example-hello")).config(json!({
        "greeting": "hi",
        "block": [{"name": "admin", "match": {"path": {"prefix": "/admin"}}}],
    }));
    let mut config = bootstrap::proxy_to(echo.port(), &[filter]);
    config["stats_config"] = json!({ "stats_tags": stats_tags(["outcome", "rule"]) });
    let envoy = Envoy::start(&config).unwrap();
    let base = envoy.listener_url(INGRESS).unwrap();
    for path in ["/a", "/b", "/admin", "//admin/x", "/c"] {
        http::get(&format!("{base}{path}")).unwrap();
    }
    let text = envoy.admin().prometheus().unwrap();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("wasmesh_hello"))
        .collect();
    assert!(
        lines.contains(&r#"wasmesh_hello_requests_total{outcome="passed",rule=""} 3"#),
        "{lines:#?}"
    );
    assert!(
        lines.contains(&r#"wasmesh_hello_requests_total{outcome="blocked",rule="admin"} 2"#),
        "{lines:#?}"
    );
}

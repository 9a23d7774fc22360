//! The fault filter in real Envoy 1.40: the measured abort ratio over 2000 requests,
//! delays at least as long as configured, header-triggered faults, and the example.

use serde_json::json;
use std::time::{Duration, Instant};
use wasmesh_harness::build::wasm_module;
use wasmesh_integration::bootstrap::{self, WasmFilter, INGRESS};
use wasmesh_integration::envoy::{Envoy, Options};
use wasmesh_integration::http;
use wasmesh_integration::scenarios;

fn fault_filter(config: serde_json::Value) -> WasmFilter {
    WasmFilter::new("wasmesh.fault", wasm_module("wasmesh-fault")).config(config)
}

#[test]
fn abort_ratio_over_2000_requests_is_within_3_points() {
    let filter = fault_filter(scenarios::fault::abort_config(20.0));
    let config = bootstrap::direct_response(200, "ok", &[filter]);
    let envoy = Envoy::start_with(&config, &Options::default().concurrency(2)).unwrap();
    let aborted = scenarios::fault::check_abort_ratio(&envoy, 20.0).unwrap();
    let stats = envoy.admin().stats().unwrap();
    let counted: u64 = stats
        .with_prefix("wasmcustom.wasmesh_fault_aborts_total")
        .map(|(_, v)| v)
        .sum();
    assert_eq!(counted, aborted);
}

#[test]
fn delay_lasts_at_least_the_configured_time() {
    let filter = fault_filter(scenarios::fault::delay_config(300));
    let envoy = Envoy::start(&bootstrap::direct_response(200, "ok", &[filter])).unwrap();
    scenarios::fault::check_delay(&envoy, 300).unwrap();
}

#[test]
fn header_faults_work_only_when_enabled() {
    let off = fault_filter(json!({"abort": {"http_status": 500, "percentage": 0}}));
    let envoy = Envoy::start(&bootstrap::direct_response(200, "ok", &[off])).unwrap();
    let url = format!("{}/x", envoy.listener_url(INGRESS).unwrap());
    let asked = [("x-envoy-fault-abort-request", "418")];
    assert_eq!(http::get_with(&url, &asked).unwrap().status, 200);
    drop(envoy);

    let on = fault_filter(json!({"header_faults": true}));
    let envoy = Envoy::start(&bootstrap::direct_response(200, "ok", &[on])).unwrap();
    let url = format!("{}/x", envoy.listener_url(INGRESS).unwrap());
    let resp = http::get_with(&url, &asked).unwrap();
    assert_eq!(resp.status, 418);
    assert_eq!(resp.text(), "fault filter abort");
    let start = Instant::now();
    let resp = http::get_with(&url, &[("x-envoy-fault-delay-request", "200")]).unwrap();
    assert_eq!(resp.status, 200);
    assert!(start.elapsed() >= Duration::from_millis(200));
}

#[test]
fn malformed_config_is_refused_naming_the_field() {
    let filter = fault_filter(json!({"delay": {"fixed_delay": "soon"}}));
    let err = Envoy::start(&bootstrap::direct_response(200, "ok", &[filter]))
        .expect_err("Envoy must refuse the plugin");
    let text = format!("{err:#}");
    assert!(
        text.contains(
            "wasmesh-fault: invalid configuration: delay.fixed_delay: `soon` is not a duration"
        ),
        "{text}"
    );
}

#[test]
fn example_config_validates() {
    Envoy::validate_example("fault", &wasm_module("wasmesh-fault")).unwrap();
}

//! The fault filter in real Envoy 1.40: the measured abort ratio over 2000 requests,
//! delays at least as long as configured, header-triggered faults, and the example.

use serde_json::json;
use std::time::{Duration, Instant};
use wasmesh_harness::build::wasm_module;
use wasmesh_integration::bootstrap::{self, WasmFilter, INGRESS};
use wasmesh_integration::envoy::{Envoy, Options};
use wasmesh_integration::http;

fn fault_filter(config: serde_json::Value) -> WasmFilter {
    WasmFilter::new("wasmesh.fault", wasm_module("wasmesh-fault")).config(config)
}

#[test]
fn abort_ratio_over_2000_requests_is_within_3_points() {
    let pct = 20.0;
    let filter = fault_filter(json!({"abort": {"http_status": 503, "percentage": pct}}));
    let config = bootstrap::direct_response(200, "ok", &[filter]);
    let envoy = Envoy::start_with(&config, &Options::default().concurrency(2)).unwrap();
    let url = format!("{}/x", envoy.listener_url(INGRESS).unwrap());
    let aborted: usize = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let url = &url;
                scope.spawn(move || {
                    (0..500)
                        .filter(|_| {
                            let resp = http::get(url).unwrap();
                            assert!(matches!(resp.status, 200 | 503), "{}", resp.status);
                            resp.status == 503
                        })
                        .count()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    let measured = aborted as f64 / 20.0;
    eprintln!("fault ratio: {aborted}/2000 = {measured}% (configured {pct}%)");
    assert!((measured - pct).abs() <= 3.0, "{measured}% for {pct}%");
    let stats = envoy.admin().stats().unwrap();
    let counted: u64 = stats
        .with_prefix("wasmcustom.wasmesh_fault_aborts_total")
        .map(|(_, v)| v)
        .sum();
    assert_eq!(counted, aborted as u64);
}

#[test]
fn delay_lasts_at_least_the_configured_time() {
    let filter = fault_filter(json!({"delay": {"fixed_delay": "300ms"}}));
    let envoy = Envoy::start(&bootstrap::direct_response(200, "ok", &[filter])).unwrap();
    let url = format!("{}/x", envoy.listener_url(INGRESS).unwrap());
    let mut took = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        let resp = http::get(&url).unwrap();
        took.push(start.elapsed());
        assert_eq!(resp.status, 200, "{}", envoy.log());
    }
    eprintln!("fault delays (configured 300ms): {took:?}");
    assert!(
        took.iter().all(|t| *t >= Duration::from_millis(300)),
        "{took:?}"
    );
    assert!(
        took.iter().all(|t| *t < Duration::from_millis(1000)),
        "{took:?}"
    );
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

//! Global rate limits in real Envoy 1.40 against the real rate limit service: one
//! limit shared by two Envoys is exact across both, the service going away gives the
//! configured failure mode without a hang, and a changed limit applies on reload.

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use wasmesh_harness::build::wasm_module;
use wasmesh_integration::bootstrap::{self, WasmFilter, INGRESS};
use wasmesh_integration::envoy::Envoy;
use wasmesh_integration::http;
use wasmesh_integration::{ports, rls};

fn limit_yaml(n: u32) -> String {
    format!(
        "domain: mesh\ndescriptors:\n  - key: generic_key\n    value: shared\n    rate_limit: {{unit: hour, requests_per_unit: {n}}}\n"
    )
}

fn filter_config(deny: bool) -> Value {
    json!({
        "domain": "mesh",
        "rate_limit_service": {"cluster": rls::CLUSTER, "timeout": "500ms", "failure_mode_deny": deny},
        "rules": [{"name": "shared", "global": true}],
    })
}

/// An Envoy answering 200 behind the ratelimit filter, with the service's cluster.
fn envoy(rls_port: u16, deny: bool) -> Envoy {
    let filter = WasmFilter::new("wasmesh.ratelimit", wasm_module("wasmesh-ratelimit"))
        .config(filter_config(deny));
    let mut config = bootstrap::direct_response(200, "ok", &[filter]);
    config["static_resources"]["clusters"] = json!([rls::cluster(rls_port)]);
    Envoy::start(&config).unwrap()
}

fn url(e: &Envoy) -> String {
    format!("{}/x", e.listener_url(INGRESS).unwrap())
}

fn dir(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("wasmesh-rlsg-{name}-{}", std::process::id()))
}

fn hour() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 3600
}

#[test]
fn a_limit_shared_by_two_envoys_is_exact_across_both() {
    let dir = dir("shared");
    let server = rls::Server::start(&dir, &limit_yaml(5), 0).unwrap();
    let (a, b) = (envoy(server.port, false), envoy(server.port, false));
    let before = hour();
    let mut codes = Vec::new();
    for i in 0..12 {
        let e = if i % 2 == 0 { &a } else { &b };
        let r = http::get(&url(e)).unwrap();
        if r.status == 429 {
            assert_eq!(r.header("x-ratelimit-limit"), Some("5"));
            assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
            assert_eq!(r.header("x-envoy-ratelimited"), Some("true"));
        } else {
            assert_eq!(r.status, 200, "{}\n{}", a.log_tail(30), server.log());
        }
        codes.push(r.status);
    }
    assert_eq!(before, hour(), "the hour turned over mid-test: rerun");
    assert_eq!(codes.iter().filter(|&&c| c == 200).count(), 5, "{codes:?}");
    assert_eq!(&codes[5..], [429; 7], "{codes:?}");
    // Allowed responses carry the service's numbers.
    let stat = |e: &Envoy, d: &str| {
        e.stat(&format!(
            "wasmcustom.wasmesh_ratelimit_global_decisions_total;rule=shared;decision={d}"
        ))
        .unwrap()
        .unwrap_or(0)
    };
    assert_eq!(stat(&a, "ok") + stat(&b, "ok"), 5);
    assert_eq!(stat(&a, "over_limit") + stat(&b, "over_limit"), 7);
}

#[test]
fn the_service_going_away_gives_the_failure_mode_without_a_hang() {
    let dir = dir("down");
    let server = rls::Server::start(&dir, &limit_yaml(100), 0).unwrap();
    let (open, closed) = (envoy(server.port, false), envoy(server.port, true));
    assert_eq!(http::get(&url(&open)).unwrap().status, 200);
    assert_eq!(http::get(&url(&closed)).unwrap().status, 200);
    server.stop();
    for _ in 0..3 {
        let t = Instant::now();
        assert_eq!(http::get(&url(&open)).unwrap().status, 200, "fail-open");
        let r = http::get(&url(&closed)).unwrap();
        assert_eq!(r.status, 500, "fail-closed: {}", r.text());
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "took {:?}",
            t.elapsed()
        );
    }
    let errors = open
        .stat("wasmcustom.wasmesh_ratelimit_global_decisions_total;rule=shared;decision=error")
        .unwrap();
    assert_eq!(errors, Some(3));
}

#[test]
fn a_service_that_never_answers_times_out_into_the_failure_mode() {
    // A port where something accepts connections and never speaks: the call times out.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let (open, closed) = (envoy(port, false), envoy(port, true));
    let t = Instant::now();
    assert_eq!(http::get(&url(&open)).unwrap().status, 200);
    assert_eq!(http::get(&url(&closed)).unwrap().status, 500);
    // Two timeouts of 500ms, not a hang.
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "took {:?}",
        t.elapsed()
    );
    drop(silent);
    let _ = ports::free_port();
}

#[test]
fn a_changed_limit_applies_on_reload() {
    let dir = dir("reload");
    let server = rls::Server::start(&dir, &limit_yaml(2), 0).unwrap();
    let e = envoy(server.port, false);
    let run = |n: usize| -> Vec<u16> {
        (0..n)
            .map(|_| http::get(&url(&e)).unwrap().status)
            .collect()
    };
    assert_eq!(run(3), [200, 200, 429]);
    server.reload(&dir, &limit_yaml(4)).unwrap();
    // A new limit counts afresh (its counter is named by the limit).
    assert_eq!(run(5), [200, 200, 200, 200, 429]);
}

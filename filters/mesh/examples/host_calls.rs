//! Host calls per request for each filter, with the benchmark's realistic configs
//! (bench/configs/*.json), counted in the harness by wasmtime's call hook.
//!
//! `cargo run -p wasmesh-mesh --example host_calls` prints a Markdown table. Every host
//! call that hands data to the guest costs about a microsecond in Envoy, so this is
//! the first number to look at when a filter is slow.

// A measuring tool: a failure to load a module should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};
use wasmesh_harness::{build, request, response, Host, Module};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(root().join("bench/fixtures").join(name))
        .unwrap()
        .trim()
        .to_string()
}

fn config(name: &str) -> String {
    let text = std::fs::read_to_string(root().join(format!("bench/configs/{name}.json")))
        .unwrap_or_default();
    text.replace(
        "\"$JWKS\"",
        &serde_json::to_string(&fixture("jwks.json")).unwrap(),
    )
}

/// Mean host calls of one full request lifecycle (request headers, response headers,
/// log, done), after a warm-up request that fills caches (metric ids, JWT cache).
fn calls_per_request(module: &Module, config: &str) -> f64 {
    let host = Host::builder(module)
        .plugin_config(config.to_string())
        .start_time(UNIX_EPOCH + Duration::from_secs(1_800_000_000))
        .build()
        .unwrap();
    assert!(host.configured(), "{:?}", host.logs());
    let token = format!("Bearer {}", fixture("token.jwt"));
    let run = || {
        let mut headers = request("GET", "/api/items", "bench");
        headers.push(("authorization".into(), token.clone()));
        let mut s = host.stream();
        s.set_property(&["source", "address"], "10.0.0.7:4000");
        s.request_headers(&headers, true);
        assert!(s.local_response().is_none(), "{:?}", s.local_response());
        s.response_headers(&response(200), true);
        s.finish();
    };
    run();
    let before = host.host_calls();
    let n = 100;
    for _ in 0..n {
        run();
    }
    (host.host_calls() - before) as f64 / f64::from(n)
}

fn main() {
    let mut rows = vec![(
        "noop-wasm".to_string(),
        calls_per_request(
            &Module::load(build::wasm_module("wasmesh-bench-noop")).unwrap(),
            "{}",
        ),
    )];
    for name in ["headers", "ratelimit", "fault", "authz", "telemetry"] {
        let module = Module::load(build::wasm_module(&format!("wasmesh-{name}"))).unwrap();
        rows.push((name.to_string(), calls_per_request(&module, &config(name))));
    }
    let separate: f64 = rows[1..].iter().map(|(_, c)| c).sum();
    rows.push(("chain-separate (sum)".into(), separate));
    let mesh = Module::load(build::wasm_bundle("wasmesh-mesh")).unwrap();
    rows.push((
        "chain-mesh".into(),
        calls_per_request(&mesh, &config("mesh")),
    ));
    println!("| configuration | host calls per request |\n|---|---:|");
    for (name, calls) in rows {
        println!("| {name} | {calls:.1} |");
    }
}

//! Host calls, guest entries and harness time per request for each filter, with the
//! benchmark's realistic configs (bench/configs/*.json), counted in the harness by
//! wasmtime's call hook.
//!
//! `cargo run --release -p wasmesh-mesh --example host_calls` prints a Markdown table;
//! `... host_calls NAME` runs one configuration long enough to profile. Guest entries
//! beyond the six lifecycle callbacks are host calls that hand the guest data, the
//! expensive kind in Envoy (`scripts/bench.sh --host-costs` prices each kind), so
//! they are the first number to look at when a filter is slow.

// A measuring tool: a failure to load a module should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::time::{Duration, Instant, UNIX_EPOCH};
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

#[derive(Debug, Default, Clone, Copy)]
struct Cost {
    calls: f64,
    entries: f64,
    micros: f64,
}

/// Mean host calls of one full request lifecycle (request headers, response headers,
/// log, done), after a warm-up request that fills caches (metric ids, JWT cache).
fn calls_per_request(module: &Module, config: &str, timed: u32) -> Cost {
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
        // The harness binds what Envoy always binds (the code from `:status`, flags,
        // sizes, mTLS), so every read hands a value back as it does in Envoy. The
        // duration, which Envoy sets when the request completes, is set too, for
        // filters that read it (telemetry times the stream with its own clock).
        s.set_property(&["request", "duration"], 1_500_000i64);
        s.finish();
    };
    run();
    let (calls_before, entries_before) = (host.host_calls(), host.guest_entries());
    let n = 100;
    for _ in 0..n {
        run();
    }
    let per_request = |count: u64| count as f64 / f64::from(n);
    let calls = per_request(host.host_calls() - calls_before);
    let entries = per_request(host.guest_entries() - entries_before);
    let start = Instant::now();
    for _ in 0..timed {
        run();
    }
    let micros = start.elapsed().as_secs_f64() * 1e6 / f64::from(timed);
    Cost {
        calls,
        entries,
        micros,
    }
}

/// The module and config of a configuration: `noop-wasm`, a filter's name, or `mesh`.
fn load(name: &str) -> (Module, String) {
    match name {
        "noop-wasm" => (
            Module::load(build::wasm_module("wasmesh-bench-noop")).unwrap(),
            "{}".into(),
        ),
        "mesh" => (
            Module::load(build::wasm_bundle("wasmesh-mesh")).unwrap(),
            config("mesh"),
        ),
        filter => (
            Module::load(build::wasm_module(&format!("wasmesh-{filter}"))).unwrap(),
            config(filter),
        ),
    }
}

/// `host_calls` prints the table; `host_calls NAME` runs one configuration for long
/// enough to profile (`perf record`, with the harness's `perfmap` feature).
fn main() {
    if let Some(name) = std::env::args().nth(1) {
        let (module, config) = load(&name);
        let cost = calls_per_request(&module, &config, 200_000);
        println!(
            "{name}: {:.1} host calls, {:.1} guest entries, {:.2} µs per request",
            cost.calls, cost.entries, cost.micros
        );
        return;
    }
    let mut rows = Vec::new();
    for name in [
        "noop-wasm",
        "headers",
        "ratelimit",
        "fault",
        "authz",
        "telemetry",
    ] {
        let (module, config) = load(name);
        rows.push((
            name.to_string(),
            calls_per_request(&module, &config, 20_000),
        ));
    }
    let separate = rows[1..].iter().fold(Cost::default(), |sum, (_, c)| Cost {
        calls: sum.calls + c.calls,
        entries: sum.entries + c.entries,
        micros: sum.micros + c.micros,
    });
    rows.push(("chain-separate (sum)".into(), separate));
    let (mesh, config) = load("mesh");
    rows.push((
        "chain-mesh".into(),
        calls_per_request(&mesh, &config, 20_000),
    ));
    println!("| configuration | host calls | guest entries | harness µs |\n|---|---:|---:|---:|");
    for (name, c) in rows {
        println!(
            "| {name} | {:.1} | {:.1} | {:.2} |",
            c.calls, c.entries, c.micros
        );
    }
}

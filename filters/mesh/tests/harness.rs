//! The mesh module with all five stages (the benchmark's realistic configs from
//! bench/configs/mesh.json), compiled and run in the harness: each stage's headline
//! behaviour holds inside the one-VM pipeline.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::OnceLock;
use wasmesh_harness::{build, request, response, Action, Host, Level, Module};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn module() -> &'static Module {
    static MODULE: OnceLock<Module> = OnceLock::new();
    MODULE.get_or_init(|| Module::load(build::wasm_bundle("wasmesh-mesh")).unwrap())
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(root().join("bench/fixtures").join(name))
        .unwrap()
        .trim()
        .to_string()
}

fn mesh_config() -> String {
    let text = std::fs::read_to_string(root().join("bench/configs/mesh.json")).unwrap();
    text.replace(
        "\"$JWKS\"",
        &serde_json::to_string(&fixture("jwks.json")).unwrap(),
    )
}

fn host() -> Host {
    let host = Host::builder(module())
        .plugin_config(mesh_config())
        // The benchmark token is valid from 2023 to 2100.
        .start_time(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000))
        .build()
        .unwrap();
    assert!(host.configured(), "{:?}", host.logs_at(Level::Error));
    host
}

fn authed(method: &str, path: &str) -> Vec<(String, String)> {
    let mut h = request(method, path, "bench");
    h.push((
        "authorization".into(),
        format!("Bearer {}", fixture("token.jwt")),
    ));
    h
}

#[test]
fn a_valid_request_passes_every_stage() {
    let host = host();
    let mut s = host.stream();
    s.set_property(&["source", "address"], "10.0.0.7:4000");
    assert_eq!(
        s.request_headers(&authed("GET", "/api/items"), true),
        Action::Continue
    );
    assert!(s.local_response().is_none(), "{:?}", s.local_response());
    assert_eq!(
        s.request_header_map().get("x-tenant"),
        Some("shop"),
        "headers stage"
    );
    s.response_headers(&response(200), true);
    assert_eq!(s.response_header_map().get("x-served-by"), Some("wasmesh"));
    s.finish();
    let counted = host
        .metric_names()
        .into_iter()
        .filter(|n| n.starts_with("istio_requests_total;"))
        .filter_map(|n| host.metric(&n).map(|m| m.value))
        .sum::<u64>();
    assert_eq!(counted, 1, "telemetry stage counted the request");
}

#[test]
fn authz_stage_refuses_missing_tokens_and_admin_paths() {
    let host = host();
    let mut s = host.stream();
    s.request_headers(&request("GET", "/api/items", "bench"), true);
    assert_eq!(s.local_response().unwrap().status, 401);
    let mut s = host.stream();
    s.request_headers(&authed("GET", "//admin/users"), true);
    let reply = s.local_response().unwrap();
    assert_eq!(reply.status, 403);
    assert_eq!(String::from_utf8_lossy(&reply.body), "RBAC: access denied");
}

#[test]
fn ratelimit_stage_limits_logins() {
    let host = host();
    let statuses: Vec<u32> = (0..7)
        .map(|_| {
            let mut s = host.stream();
            s.set_property(&["source", "address"], "10.0.0.9:4000");
            s.request_headers(&authed("POST", "/login"), true);
            s.local_response().map_or(200, |r| r.status)
        })
        .collect();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429]);
}

#[test]
fn fault_stage_aborts_its_share_of_payments() {
    let host = host();
    let aborted = (0..2000)
        .filter(|_| {
            let mut s = host.stream();
            s.request_headers(&authed("GET", "/payments/1"), true);
            s.local_response().is_some_and(|r| r.status == 503)
        })
        .count();
    let percent = aborted as f64 / 20.0;
    assert!(
        (7.0..=13.0).contains(&percent),
        "{percent}% aborted, configured 10%"
    );
}

#[test]
fn a_bad_stage_config_is_refused_with_its_path() {
    let bad = mesh_config().replace("\"max_tokens\": 5", "\"max_tokens\": \"five\"");
    let host = Host::builder(module()).plugin_config(bad).build().unwrap();
    assert!(!host.configured());
    assert!(
        host.logged("stages[2].config.rules[0].token_bucket.max_tokens"),
        "{:?}",
        host.logs_at(Level::Error)
    );
}

/// The budget of host traffic per request that docs/benchmarks.md reports: a change
/// that adds a data-returning host call (the expensive kind in Envoy) fails here.
#[test]
fn a_cached_request_stays_within_its_host_call_budget() {
    let host = host();
    let run = || {
        let mut s = host.stream();
        s.set_property(&["source", "address"], "10.0.0.7:4000");
        s.request_headers(&authed("GET", "/api/items"), true);
        assert!(s.local_response().is_none(), "{:?}", s.local_response());
        s.response_headers(&response(200), true);
        // The harness binds the code, flags, sizes and mTLS itself, as Envoy does;
        // telemetry times the stream with the guest's clock, not a property.
        s.finish();
    };
    run(); // fills the caches: verified token, metric ids
    let (calls, entries) = (host.host_calls(), host.guest_entries());
    run();
    let calls = host.host_calls() - calls;
    let entries = host.guest_entries() - entries;
    // Six lifecycle callbacks; seven data-returning calls: the request header map,
    // ratelimit's bucket and five end-of-stream properties for telemetry. The response
    // phase only writes, so its header map is never fetched. Telemetry reads the
    // clock twice for the duration instead of reading `request.duration`: one call
    // more, but neither hands the guest anything.
    assert!(entries <= 13, "{entries} guest entries per request");
    assert!(calls <= 32, "{calls} host calls per request");
}

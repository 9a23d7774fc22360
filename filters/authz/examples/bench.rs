//! Per-request cost of the authz module in the harness (wasmtime): an RS256 token
//! verified from scratch (token cache disabled) and the same token from the cache,
//! beside a request the policies decide without any token.
//! Run: `cargo run --release -p wasmesh-authz --example bench`

// A bench: failing loudly is the point.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use serde_json::json;
use std::time::{Duration, Instant, UNIX_EPOCH};
use wasmesh_harness::{build, request, Action, Host, Module};
use wasmesh_testkit::mint;

fn host(module: &Module, cache: usize) -> Host {
    let config = json!({
        "tokenCacheSize": cache,
        "jwtRules": [{"issuer": mint::ISSUER, "audiences": [mint::AUDIENCE], "jwks": mint::public_jwks().to_string()}],
        "policies": [
            {"name": "deny-admin", "action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/admin/*"]}}]}]},
            {"name": "jwt-or-public", "rules": [
                {"from": [{"source": {"requestPrincipals": ["*"]}}]},
                {"to": [{"operation": {"paths": ["/public/*"]}}]}]}
        ]
    });
    Host::builder(module)
        .plugin_config(config.to_string())
        .start_time(UNIX_EPOCH + Duration::from_secs(mint::now() as u64))
        .build()
        .expect("host")
}

fn per_request(host: &Host, headers: &[(String, String)], n: u32) -> Duration {
    let started = Instant::now();
    for _ in 0..n {
        let mut s = host.stream();
        assert_eq!(s.request_headers(headers, true), Action::Continue);
        s.finish();
    }
    started.elapsed() / n
}

fn main() {
    let module = Module::load(build::wasm_module("wasmesh-authz")).expect("module");
    let token = mint::token("RS256", mint::now());
    let mut with_token = request("GET", "/api/items", "shop");
    with_token.push(("authorization".into(), format!("Bearer {token}")));
    let public = request("GET", "/public/index.html", "shop");

    let uncached = host(&module, 0);
    let cached = host(&module, 256);
    // Warm up (first-call allocations, metric definitions).
    per_request(&uncached, &with_token, 20);
    per_request(&cached, &with_token, 20);
    per_request(&cached, &public, 20);

    let n = 500;
    let base = per_request(&cached, &public, n * 4);
    let miss = per_request(&uncached, &with_token, n);
    let hit = per_request(&cached, &with_token, n * 4);
    println!(
        "policy only, no token        {:>8.1} us/request",
        base.as_secs_f64() * 1e6
    );
    println!(
        "RS256 uncached (verify)      {:>8.1} us/request",
        miss.as_secs_f64() * 1e6
    );
    println!(
        "RS256 cached (same token)    {:>8.1} us/request",
        hit.as_secs_f64() * 1e6
    );
}

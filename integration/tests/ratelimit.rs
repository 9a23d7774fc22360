//! The ratelimit filter in real Envoy 1.40: one limit across two workers (the
//! invariant, and close to it), the 429 reply, metrics, and the example config.

use serde_json::json;
use wasmesh_harness::build::wasm_module;
use wasmesh_integration::bootstrap::{self, WasmFilter, INGRESS};
use wasmesh_integration::envoy::{Envoy, Options};
use wasmesh_integration::http;
use wasmesh_integration::scenarios;

fn ratelimit_filter(config: serde_json::Value) -> WasmFilter {
    WasmFilter::new("wasmesh.ratelimit", wasm_module("wasmesh-ratelimit")).config(config)
}

#[test]
fn limit_holds_per_envoy_with_two_workers() {
    let filter = ratelimit_filter(scenarios::ratelimit::shared_bucket_config());
    let config = bootstrap::direct_response(200, "ok", &[filter]);
    let envoy = Envoy::start_with(&config, &Options::default().concurrency(2)).unwrap();
    let (allowed, limited) = scenarios::ratelimit::check_exact_across_workers(&envoy).unwrap();
    let stats = envoy.admin().stats().unwrap();
    let stat = |name: &str| {
        stats
            .with_prefix(&format!("wasmcustom.{name}"))
            .map(|(_, v)| v)
            .sum::<u64>()
    };
    assert_eq!(stat("wasmesh_ratelimit_allowed_total"), allowed);
    assert_eq!(stat("wasmesh_ratelimit_limited_total"), limited);
}

#[test]
fn refused_request_gets_429_with_headers() {
    let filter = ratelimit_filter(json!({
        "rules": [{"name": "per_client", "key": ["client_ip"],
                   "token_bucket": {"max_tokens": 1, "fill_interval": "60s"}}],
    }));
    let envoy = Envoy::start(&bootstrap::direct_response(200, "ok", &[filter])).unwrap();
    let url = format!("{}/x", envoy.listener_url(INGRESS).unwrap());
    let first = http::get(&url).unwrap();
    assert_eq!(first.status, 200, "{}", envoy.log());
    assert_eq!(first.header("x-ratelimit-limit"), Some("1"));
    assert_eq!(first.header("x-ratelimit-remaining"), Some("0"));
    let second = http::get(&url).unwrap();
    assert_eq!(second.status, 429);
    assert_eq!(second.text(), "local_rate_limited");
    assert_eq!(second.header("x-envoy-ratelimited"), Some("true"));
    let retry: u64 = second.header("retry-after").unwrap().parse().unwrap();
    assert!((59..=60).contains(&retry), "retry-after {retry}");
    assert_eq!(second.header("x-ratelimit-remaining"), Some("0"));
}

#[test]
fn malformed_config_is_refused_naming_the_field() {
    let filter =
        ratelimit_filter(json!({"token_bucket": {"max_tokens": 0, "fill_interval": "1s"}}));
    let err = Envoy::start(&bootstrap::direct_response(200, "ok", &[filter]))
        .expect_err("Envoy must refuse the plugin");
    let text = format!("{err:#}");
    assert!(
        text.contains(
            "wasmesh-ratelimit: invalid configuration: token_bucket.max_tokens: must be at least 1"
        ),
        "{text}"
    );
}

#[test]
fn example_config_validates() {
    Envoy::validate_example("ratelimit", &wasm_module("wasmesh-ratelimit")).unwrap();
}

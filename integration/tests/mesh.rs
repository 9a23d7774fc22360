//! The one-VM mesh module with all five stages in real Envoy 1.40: the same realistic
//! configs the benchmark uses (bench/configs/mesh.json), each stage's headline
//! behaviour observed from the client (the fault stage's on its flaky `/payments/`).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use wasmesh_harness::build::wasm_bundle;
use wasmesh_integration::bootstrap::{self, WasmFilter, INGRESS};
use wasmesh_integration::echo::{Echo, EchoServer};
use wasmesh_integration::envoy::Envoy;
use wasmesh_integration::http;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(root().join("bench/fixtures").join(name))
        .unwrap()
        .trim()
        .to_string()
}

fn mesh_config() -> serde_json::Value {
    let text = std::fs::read_to_string(root().join("bench/configs/mesh.json")).unwrap();
    let text = text.replace(
        "\"$JWKS\"",
        &serde_json::to_string(&fixture("jwks.json")).unwrap(),
    );
    serde_json::from_str(&text).unwrap()
}

#[test]
fn all_stages_work_in_one_vm() {
    let echo = EchoServer::start().unwrap();
    let filter = WasmFilter::new("wasmesh.mesh", wasm_bundle("wasmesh-mesh")).config(mesh_config());
    let envoy = Envoy::start(&bootstrap::proxy_to(echo.port(), &[filter])).unwrap();
    let base = envoy.listener_url(INGRESS).unwrap();
    let bearer = format!("Bearer {}", fixture("token.jwt"));
    let auth = [("authorization", bearer.as_str())];

    // authz passes a valid token; headers edits both ways; telemetry adds trace context.
    let ok = http::get_with(&format!("{base}/api/items"), &auth).unwrap();
    assert_eq!(ok.status, 200, "{}", envoy.log());
    let seen = Echo::parse(&ok.body).unwrap();
    assert_eq!(seen.header("x-tenant"), Some("shop"));
    assert!(
        seen.header("traceparent").is_some(),
        "telemetry creates a trace context"
    );
    assert_eq!(ok.header("x-served-by"), Some("wasmesh"));

    // authz: no credential is 401, a denied path (behind a path trick) is 403.
    assert_eq!(http::get(&format!("{base}/api/items")).unwrap().status, 401);
    let denied = http::get_with(&format!("{base}/api/../admin"), &auth).unwrap();
    assert_eq!(denied.status, 403);
    assert_eq!(denied.text(), "RBAC: access denied");

    // ratelimit: five logins per client, then 429 with the rate-limit headers.
    let statuses: Vec<u16> = (0..7)
        .map(|_| {
            http::request("POST", &format!("{base}/login"), &auth, b"")
                .unwrap()
                .status
        })
        .collect();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429]);

    // fault: the bench config aborts 10% of /payments/ calls with 503 (and nothing
    // else). 200 calls: the abort count within four binomial standard deviations,
    // every abort the fault stage's own reply, none of them reaching the upstream.
    let calls: u32 = 200;
    let upstream_before = echo.requests();
    let aborted = (0..calls)
        .filter(|_| {
            let r = http::get_with(&format!("{base}/payments/charge"), &auth).unwrap();
            match r.status {
                200 => false,
                503 => {
                    assert_eq!(r.text(), "fault filter abort");
                    true
                }
                other => panic!("/payments/ answered {other}: {}", r.text()),
            }
        })
        .count();
    let allowed = wasmesh_integration::stats::count_tolerance(calls as usize, 0.1);
    #[allow(clippy::cast_precision_loss)] // a count of at most 200
    let off = (aborted as f64 - f64::from(calls) * 0.1).abs();
    assert!(off <= allowed, "{aborted} of {calls} aborted at 10%");
    assert_eq!(
        echo.requests() - upstream_before,
        u64::from(calls) - aborted as u64,
        "aborted calls reached the upstream"
    );

    // telemetry counted what it saw, per response code.
    let stats = envoy.admin().stats().unwrap();
    let count = |code: &str| -> u64 {
        stats
            .with_prefix("wasmcustom.istio_requests_total;")
            .filter(|(name, _)| name.contains(&format!(";response_code={code};")))
            .map(|(_, v)| v)
            .sum()
    };
    let passed: u64 = (calls - u32::try_from(aborted).unwrap()).into();
    assert_eq!(
        [
            count("200"),
            count("401"),
            count("403"),
            count("429"),
            count("503")
        ],
        [6 + passed, 1, 1, 2, aborted as u64]
    );
}

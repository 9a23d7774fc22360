//! No request input makes the ratelimit module trap: 10k random header sets (every key
//! source included: x-forwarded-for, the JWT payload, key headers), paths and bodies.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use serde_json::json;
use std::time::Duration;
use wasmesh_harness::Host;
use wasmesh_testkit::filter_under_test;

fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("x-forwarded-for".to_string()),
        Just("x-jwt-payload".to_string()),
        Just("x-user".to_string()),
        "[a-z][a-z0-9-]{0,20}",
    ]
}

fn header_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9., :a-f]{0,40}",
        "[A-Za-z0-9_=-]{0,80}",
        Just("eyJzdWIiOlsxLHsiYSI6bnVsbH1dfQ".to_string()),
        "[ -~]{0,200}",
        any::<String>(),
    ]
}

#[test]
fn no_request_input_traps_the_ratelimit_filter() {
    let module = filter_under_test("wasmesh-ratelimit");
    let host = Host::builder(&module)
        .plugin_config(
            json!({
                "xff_num_trusted_hops": 2,
                "max_keys": 64,
                "token_bucket": {"max_tokens": 3, "fill_interval": "1s"},
                "rules": [
                    {"name": "all_parts",
                     "key": ["client_ip", "header:x-user", "path", "path_template", "route_name",
                             "method", "host", "jwt_claim:sub"],
                     "path_templates": ["/a/{x}", "/b/{**}"]},
                    {"name": "shadow", "shadow": true, "key": ["header:x-user"]},
                ],
            })
            .to_string(),
        )
        .property(&["source", "address"], "10.0.0.1:5000")
        .build()
        .unwrap();
    assert!(host.configured());
    let cases = std::cell::Cell::new(0u32);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 10_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let input = (
        prop::collection::vec((header_name(), header_value()), 0..8),
        prop_oneof![
            "/[ -~]{0,60}",
            any::<String>(),
            Just("//a/%2e%2e/%5C?q".to_string())
        ],
        "[A-Z]{1,8}",
        any::<String>(),
        prop::collection::vec(any::<u8>(), 0..256),
    );
    runner
        .run(&input, |(headers, path, method, authority, body)| {
            cases.set(cases.get() + 1);
            let mut h = vec![
                (":method".to_string(), method),
                (":path".to_string(), path),
                (":authority".to_string(), authority),
            ];
            h.extend(headers);
            let mut s = host.stream();
            s.request_headers(&h, body.is_empty());
            if !body.is_empty() {
                s.request_body(&body, true);
            }
            s.response_headers(&[(":status", "200")], true);
            host.advance(Duration::from_millis(7));
            prop_assert!(s.failure().is_none(), "stream failed: {:?}", s.failure());
            prop_assert!(host.vm_failure(0).is_none(), "{:?}", host.vm_failure(0));
            Ok(())
        })
        .unwrap();
    assert!(cases.get() >= 10_000);
}

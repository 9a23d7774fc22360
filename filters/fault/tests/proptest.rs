//! No request input makes the fault module trap: 10k random header sets (Envoy's fault
//! headers included, with junk values), paths and bodies through the compiled module.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use serde_json::json;
use std::time::Duration;
use wasmesh_harness::Host;
use wasmesh_testkit::filter_under_test;

fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("x-envoy-fault-abort-request".to_string()),
        Just("x-envoy-fault-abort-request-percentage".to_string()),
        Just("x-envoy-fault-delay-request".to_string()),
        Just("x-envoy-fault-delay-request-percentage".to_string()),
        "[a-z][a-z0-9-]{0,20}",
    ]
}

fn header_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<u64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|n| n.to_string()),
        "[ -~]{0,40}",
        any::<String>(),
    ]
}

#[test]
fn no_request_input_traps_the_fault_filter() {
    let module = filter_under_test("wasmesh-fault");
    let host = Host::builder(&module)
        .plugin_config(
            json!({
                "header_faults": true,
                "max_active_faults": 50,
                "rules": [{"name": "r", "match": {"path": {"template": "/a/{x}/**"}},
                           "abort": {"http_status": 503, "percentage": 50},
                           "delay": {"fixed_delay": "10ms", "percentage": 50}}],
                "abort": {"http_status": 500, "percentage": 10},
            })
            .to_string(),
        )
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
            Just("/a/%2F/..//b?x=1".to_string())
        ],
        "[A-Z]{1,8}",
        prop::collection::vec(any::<u8>(), 0..256),
    );
    runner
        .run(&input, |(headers, path, method, body)| {
            cases.set(cases.get() + 1);
            let mut h = vec![
                (":method".to_string(), method),
                (":path".to_string(), path),
                (":authority".to_string(), "example.com".to_string()),
            ];
            h.extend(headers);
            let mut s = host.stream();
            s.request_headers(&h, body.is_empty());
            if !body.is_empty() {
                s.request_body(&body, true);
            }
            host.advance(Duration::from_millis(11));
            prop_assert!(s.failure().is_none(), "stream failed: {:?}", s.failure());
            prop_assert!(host.vm_failure(0).is_none(), "{:?}", host.vm_failure(0));
            Ok(())
        })
        .unwrap();
    assert!(cases.get() >= 10_000);
}

//! The compiled telemetry filter on the harness: tag overrides, cardinality bounds,
//! custom metrics and the recorded values, read back as the host saw them.
// Test helpers fail loudly by design.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};
use wasmesh_harness::{request, response, Host, Module, PropertyValue};
use wasmesh_testkit::filter_under_test;

fn module() -> Module {
    filter_under_test("wasmesh-telemetry")
}

fn host(config: Value) -> Host {
    let host = Host::builder(&module())
        .plugin_config(config.to_string())
        .build()
        .unwrap();
    assert!(host.configured(), "{:?}", host.logs());
    host
}

fn reviews() -> Value {
    json!({"name": "reviews-v1", "namespace": "default", "app": "reviews", "version": "v1",
           "service": "reviews.default.svc.cluster.local"})
}

/// One request through the filter: headers in, a response with `status`, then log.
fn run(host: &Host, method: &str, path: &str, extra: &[(&str, &str)], status: u16) {
    let mut s = host.stream();
    let mut h = request(method, path, "reviews:9080");
    h.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    s.request_headers(&h, true);
    // The stage times the stream with the guest's monotonic clock.
    host.advance(Duration::from_millis(42));
    s.set_property(&["request", "total_size"], PropertyValue::int(300));
    s.set_property(&["response", "total_size"], PropertyValue::int(1200));
    s.response_headers(&response(status), true);
    s.finish();
}

/// Every series of `metric` the filter defined, as label maps, with its value.
fn series(host: &Host, metric: &str) -> Vec<(BTreeMap<String, String>, u64)> {
    host.metric_names()
        .into_iter()
        .filter(|n| n.split(';').next() == Some(metric))
        .map(|n| {
            let labels = n
                .split(';')
                .skip(1)
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let value = host.metric(&n).unwrap().value;
            (labels, value)
        })
        .collect()
}

#[test]
fn tag_overrides_remove_replace_and_add_labels_per_metric() {
    let host = host(json!({
        "workload": reviews(),
        "metrics": {"overrides": [
            {"match": {"metric": "REQUEST_COUNT"}, "tagOverrides": {
                "request_protocol": {"operation": "REMOVE"},
                "destination_service": {"value": "'reviews'"},
                "request_method": {"value": "request.method", "allow": ["GET", "POST"]},
            }},
            {"match": {"metric": "RESPONSE_SIZE"}, "disabled": true},
            {"match": {"metric": "REQUEST_SIZE", "mode": "CLIENT"}, "disabled": true},
        ]},
    }));
    run(&host, "GET", "/a", &[], 200);
    run(&host, "PURGE", "/a", &[], 200);
    let count = series(&host, "istio_requests_total");
    assert_eq!(count.len(), 2, "{count:#?}");
    for (labels, value) in &count {
        assert!(!labels.contains_key("request_protocol"));
        assert_eq!(labels["destination_service"], "reviews");
        assert_eq!(*value, 1);
    }
    let methods: Vec<&str> = count
        .iter()
        .map(|(l, _)| l["request_method"].as_str())
        .collect();
    assert_eq!(
        methods,
        ["GET", "other"],
        "an unlisted method becomes `other`"
    );
    // Other metrics keep the standard labels.
    let duration = series(&host, "istio_request_duration_milliseconds");
    assert_eq!(duration.len(), 1);
    assert_eq!(duration[0].0["request_protocol"], "http");
    assert_eq!(
        duration[0].0["destination_service"],
        "reviews.default.svc.cluster.local"
    );
    assert!(series(&host, "istio_response_bytes").is_empty(), "disabled");
    assert_eq!(
        series(&host, "istio_request_bytes").len(),
        1,
        "mode CLIENT does not apply at reporter=destination"
    );
}

#[test]
fn measures_are_recorded_in_milliseconds_and_bytes() {
    let host = host(json!({"workload": reviews()}));
    run(&host, "GET", "/a", &[], 200);
    let name = |m: &str| {
        host.metric_names()
            .into_iter()
            .find(|n| n.starts_with(m))
            .unwrap()
    };
    assert_eq!(
        host.metric(&name("istio_request_duration_milliseconds;"))
            .unwrap()
            .samples,
        [42]
    );
    assert_eq!(
        host.metric(&name("istio_request_bytes;")).unwrap().samples,
        [300]
    );
    assert_eq!(
        host.metric(&name("istio_response_bytes;")).unwrap().samples,
        [1200]
    );
}

#[test]
fn unknown_and_hostile_peers_are_reported_as_unknown_and_paths_never_are_labels() {
    let host = host(json!({"workload": reviews()}));
    run(&host, "GET", "/api/users/123", &[], 200);
    let long = "w".repeat(400);
    run(
        &host,
        "GET",
        "/api/users/456",
        &[("x-wasmesh-peer", &format!("w={long};a=evil app;n=ns\"x"))],
        200,
    );
    let count = series(&host, "istio_requests_total");
    assert_eq!(
        count.len(),
        1,
        "both peers are the same `unknown` series: {count:#?}"
    );
    assert_eq!(count[0].1, 2);
    let labels = &count[0].0;
    for l in [
        "source_workload",
        "source_app",
        "source_workload_namespace",
        "source_principal",
    ] {
        assert_eq!(labels[l], "unknown", "{l}");
    }
    assert!(host
        .metric_names()
        .iter()
        .all(|n| !n.contains("/api/users")));
}

#[test]
fn new_peers_beyond_the_series_cap_collapse_to_unknown() {
    let host = host(json!({"workload": reviews(), "metrics": {"maxSeries": 3}}));
    for i in 0..20 {
        run(
            &host,
            "GET",
            "/",
            &[("x-wasmesh-peer", &format!("w=client-{i};n=default"))],
            200,
        );
    }
    let count = series(&host, "istio_requests_total");
    assert_eq!(
        count.len(),
        4,
        "3 real peers plus the collapsed one: {count:#?}"
    );
    assert_eq!(
        count.iter().map(|(_, v)| v).sum::<u64>(),
        20,
        "no request is lost"
    );
    let collapsed: Vec<_> = count
        .iter()
        .filter(|(l, _)| l["source_workload"] == "unknown")
        .collect();
    assert_eq!(collapsed.len(), 1);
    assert_eq!(collapsed[0].1, 17);
    assert_eq!(
        collapsed[0].0["destination_workload"], "reviews-v1",
        "our own labels stay"
    );
    // A known peer keeps its series after the cap.
    run(
        &host,
        "GET",
        "/",
        &[("x-wasmesh-peer", "w=client-0;n=default")],
        200,
    );
    let c0 = series(&host, "istio_requests_total")
        .into_iter()
        .find(|(l, _)| l["source_workload"] == "client-0")
        .unwrap();
    assert_eq!(c0.1, 2);
}

#[test]
fn custom_metrics_take_labels_from_headers_and_codes_through_allow_lists() {
    let host = host(json!({
        "workload": reviews(),
        "metrics": {"enabled": false},
        "customMetrics": [
            {"name": "wasmesh_tenant_requests_total", "type": "COUNTER", "labels": [
                {"name": "tenant", "value": "request.headers[x-tenant]", "allow": ["acme", "globex"]},
                {"name": "code_class", "value": "response.code_class"},
                {"name": "method", "value": "request.method", "allow": ["GET"], "other": "OTHER"},
            ]},
            {"name": "wasmesh_tenant_duration_ms", "type": "HISTOGRAM", "labels": [
                {"name": "tenant", "value": "request.headers[x-tenant]", "allow": ["acme"]},
            ]},
        ],
    }));
    run(&host, "GET", "/", &[("x-tenant", "acme")], 200);
    run(&host, "GET", "/", &[("x-tenant", "acme")], 503);
    run(&host, "POST", "/", &[("x-tenant", "evil-corp-12345")], 404);
    run(&host, "GET", "/", &[], 200);
    assert!(
        series(&host, "istio_requests_total").is_empty(),
        "standard metrics off"
    );
    let mut got: Vec<(String, u64)> = series(&host, "wasmesh_tenant_requests_total")
        .into_iter()
        .map(|(l, v)| {
            (
                format!("{}/{}/{}", l["tenant"], l["code_class"], l["method"]),
                v,
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("acme/2xx/GET".to_string(), 1),
            ("acme/5xx/GET".to_string(), 1),
            ("other/2xx/GET".to_string(), 1),
            ("other/4xx/OTHER".to_string(), 1)
        ]
    );
    let hist = series(&host, "wasmesh_tenant_duration_ms");
    assert_eq!(hist.len(), 2);
    let acme = host
        .metric("wasmesh_tenant_duration_ms;tenant=acme")
        .unwrap();
    assert_eq!(acme.samples, [42, 42]);
}

#[test]
fn client_side_adds_the_exchange_header_and_strips_the_reply() {
    let host = host(
        json!({"reporter": "source", "workload": {"name": "productpage-v1", "app": "productpage"}}),
    );
    let mut s = host.stream();
    let mut h = request("GET", "/", "reviews");
    h.push(("x-wasmesh-peer".into(), "w=forged".into()));
    s.request_headers(&h, true);
    assert_eq!(
        s.request_header_map().get("x-wasmesh-peer"),
        Some("w=productpage-v1;a=productpage;c=productpage;r=latest")
    );
    let mut r = response(200);
    r.push((
        "x-wasmesh-peer".into(),
        "w=reviews-v1;s=reviews.default.svc.cluster.local".into(),
    ));
    s.response_headers(&r, true);
    assert_eq!(s.response_header_map().get("x-wasmesh-peer"), None);
    s.finish();
    let count = series(&host, "istio_requests_total");
    assert_eq!(count[0].0["destination_workload"], "reviews-v1");
    assert_eq!(count[0].0["destination_service_name"], "reviews");
    assert_eq!(count[0].0["source_workload"], "productpage-v1");
    assert_eq!(count[0].0["connection_security_policy"], "unknown");
}

#[test]
fn invalid_config_is_refused_naming_the_field() {
    let host = Host::builder(&module())
        .plugin_config(
            json!({"accessLog": {"enabled": true, "filter": "response_code >>= 5"}}).to_string(),
        )
        .build()
        .unwrap();
    assert!(!host.configured());
    assert!(host.logged("accessLog.filter"), "{:?}", host.logs());
}

#[test]
fn a_configured_mtls_mode_spares_the_per_request_question() {
    // Host calls for one request once the metric ids are cached, and the policy label.
    let measure = |mode: &str| {
        let host = host(json!({"workload": reviews(), "mtls": mode}));
        run(&host, "GET", "/", &[], 200);
        let before = host.host_calls();
        run(&host, "GET", "/", &[], 200);
        let calls = host.host_calls() - before;
        let series = series(&host, "istio_requests_total");
        assert_eq!(series.len(), 1, "{series:?}");
        (calls, series[0].0["connection_security_policy"].clone())
    };
    // The harness's connection is plaintext, as Envoy's would be on such a chain.
    let (asked, policy) = measure("PERMISSIVE");
    assert_eq!(policy, "none");
    let (disabled, policy) = measure("DISABLE");
    assert_eq!(policy, "none");
    assert_eq!(disabled, asked - 1, "DISABLE does not read connection.mtls");
    // STRICT trades that read for the peer certificate's principal.
    let (strict, policy) = measure("STRICT");
    assert_eq!(policy, "mutual_tls");
    assert_eq!(strict, asked);
}

/// As the generator configures it beside Envoy's tracer (`cli/tests/tracing.rs` runs
/// the same in Envoy): no trace header is added or changed, and the access log names
/// the trace the request carries.
#[test]
fn with_its_tracing_off_the_filter_writes_no_trace_headers_and_logs_the_carried_trace() {
    let host = host(json!({
        "workload": reviews(),
        "tracing": {"enabled": false},
        "accessLog": {"enabled": true, "fields": ["trace_id"]},
    }));
    let zipkin = [
        ("x-b3-traceid", "0af7651916cd43dd"),
        ("x-b3-spanid", "b7ad6b7169203331"),
        ("x-b3-sampled", "1"),
    ];
    for (extra, logged) in [(&zipkin[..], "\"0af7651916cd43dd\""), (&[][..], "null")] {
        let mut s = host.stream();
        let mut h = request("GET", "/", "reviews:9080");
        h.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        s.request_headers(&h, true);
        let forwarded = s.request_header_map();
        for name in ["traceparent", "b3", "x-request-id"] {
            assert_eq!(forwarded.get(name), None, "{name} was added");
        }
        for (name, value) in extra {
            assert_eq!(forwarded.get(name), Some(*value));
        }
        s.response_headers(&response(200), true);
        s.finish();
        let line = format!("access_log {{\"trace_id\":{logged}}}");
        assert!(host.logged(&line), "{line} not in {:?}", host.logs());
    }
}

//! The telemetry filter in real Envoy 1.40: Istio's standard metrics in
//! `/stats/prometheus` (labels via the SDK's stats_tags, Istio's buckets), the
//! metadata exchange between two sidecars, trace propagation and the access log.
// Test helpers fail loudly by design.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wasmesh_harness::build::wasm_module;
use wasmesh_integration::bootstrap::{self, WasmFilter, INGRESS};
use wasmesh_integration::echo::{Echo, EchoServer};
use wasmesh_integration::envoy::Envoy;
use wasmesh_integration::http;

fn telemetry(config: &Value) -> WasmFilter {
    WasmFilter::new("wasmesh.telemetry", wasm_module("wasmesh-telemetry")).config(config.clone())
}

/// Adds what the generator adds for this filter: the stats_tags for every label
/// the config can produce, Istio's histogram buckets, and a short flush interval so
/// histograms show up in `/stats/prometheus` quickly.
fn with_stats(mut bootstrap: Value, config: &Value) -> Value {
    let cfg: wasmesh_telemetry::Config = wasmesh_sdk::config::from_value(config).unwrap();
    bootstrap["stats_config"] = json!({
        "stats_tags": wasmesh_telemetry::stats_tags(&cfg).unwrap(),
        "histogram_bucket_settings": wasmesh_telemetry::buckets::histogram_bucket_settings(),
    });
    bootstrap["stats_flush_interval"] = json!("0.1s");
    bootstrap
}

/// One Prometheus sample: name, labels, value.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn parse_prometheus(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let value: f64 = value.parse().ok()?;
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            let mut map = BTreeMap::new();
            // Values here never contain `",` (our label values are clean).
            for pair in labels.split("\",").filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once("=\"")?;
                map.insert(k.to_string(), v.trim_end_matches('"').to_string());
            }
            Some(Sample {
                name: name.to_string(),
                labels: map,
                value,
            })
        })
        .collect()
}

fn find<'s>(samples: &'s [Sample], name: &str, labels: &[(&str, &str)]) -> Vec<&'s Sample> {
    samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect()
}

/// Polls `/stats/prometheus` until `ready` holds (bounded), returning the samples.
fn wait_for_samples(envoy: &Envoy, ready: impl Fn(&[Sample]) -> bool) -> Vec<Sample> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = envoy.admin().prometheus().unwrap();
        let samples = parse_prometheus(&text);
        if ready(&samples) {
            return samples;
        }
        assert!(
            Instant::now() < deadline,
            "timed out; /stats/prometheus:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn reviews() -> Value {
    json!({
        "name": "reviews-v1", "namespace": "default", "app": "reviews", "version": "v1",
        "principal": "spiffe://cluster.local/ns/default/sa/reviews",
        "service": "reviews.default.svc.cluster.local",
    })
}

const PRODUCTPAGE_PEER: &str = "w=productpage-v1;n=default;a=productpage;v=v1;p=spiffe://cluster.local/ns/default/sa/productpage";

#[test]
fn requests_are_counted_per_response_code_with_istio_labels() {
    let echo = EchoServer::start().unwrap();
    let config = json!({ "reporter": "destination", "workload": reviews() });
    let envoy = Envoy::start(&with_stats(
        bootstrap::proxy_to(echo.port(), &[telemetry(&config)]),
        &config,
    ))
    .unwrap();
    let url = format!("{}/api/users/42", envoy.listener_url(INGRESS).unwrap());
    for _ in 0..7 {
        let resp = http::get_with(&url, &[("x-wasmesh-peer", PRODUCTPAGE_PEER)]).unwrap();
        assert_eq!(resp.status, 200, "{}", envoy.log_tail(30));
    }
    for _ in 0..3 {
        let resp = http::get_with(
            &url,
            &[
                ("x-wasmesh-peer", PRODUCTPAGE_PEER),
                ("x-echo-status", "503"),
            ],
        )
        .unwrap();
        assert_eq!(resp.status, 503);
    }
    let samples = wait_for_samples(&envoy, |s| {
        find(s, "istio_request_duration_milliseconds_count", &[])
            .iter()
            .map(|x| x.value)
            .sum::<f64>()
            >= 10.0
    });
    let common = [
        ("reporter", "destination"),
        ("source_workload", "productpage-v1"),
        ("source_workload_namespace", "default"),
        ("source_app", "productpage"),
        (
            "source_principal",
            "spiffe://cluster.local/ns/default/sa/productpage",
        ),
        ("destination_workload", "reviews-v1"),
        ("destination_service", "reviews.default.svc.cluster.local"),
        ("destination_service_name", "reviews"),
        ("destination_version", "v1"),
        ("request_protocol", "http"),
        ("response_flags", "-"),
        ("connection_security_policy", "none"),
    ];
    let with_code = |code: &'static str| {
        let mut l = common.to_vec();
        l.push(("response_code", code));
        l
    };
    let ok = find(&samples, "istio_requests_total", &with_code("200"));
    let failed = find(&samples, "istio_requests_total", &with_code("503"));
    assert_eq!(ok.len(), 1, "{samples:#?}");
    assert_eq!(ok[0].value, 7.0);
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].value, 3.0);
    assert_eq!(
        ok[0].labels.len(),
        wasmesh_telemetry::labels::STANDARD_LABELS.len(),
        "every standard label, nothing left in the name"
    );
    // The duration histogram: milliseconds, Istio's buckets.
    let buckets: Vec<String> = find(
        &samples,
        "istio_request_duration_milliseconds_bucket",
        &with_code("200"),
    )
    .iter()
    .map(|s| s.labels["le"].clone())
    .collect();
    let expected: Vec<String> = wasmesh_telemetry::buckets::DURATION_MS
        .iter()
        .map(|b| b.to_string())
        .chain(["+Inf".to_string()])
        .collect();
    assert_eq!(buckets, expected);
    let count = find(
        &samples,
        "istio_request_duration_milliseconds_count",
        &with_code("200"),
    );
    assert_eq!(count[0].value, 7.0);
    let sizes = find(&samples, "istio_response_bytes_count", &with_code("503"));
    assert_eq!(sizes[0].value, 3.0);
}

fn productpage() -> Value {
    json!({
        "name": "productpage-v1", "namespace": "default", "app": "productpage", "version": "v1",
        "principal": "spiffe://cluster.local/ns/default/sa/productpage",
    })
}

const REVIEWS_CLUSTER: &str = "outbound|9080||reviews.default.svc.cluster.local";

/// client → client sidecar (reporter=source) → server sidecar (reporter=destination) → app.
struct TwoSidecars {
    app: EchoServer,
    server: Envoy,
    client: Envoy,
}

fn two_sidecars(client_extra: Value, server_extra: Value) -> TwoSidecars {
    let merge = |mut base: Value, extra: Value| {
        if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
            b.extend(e);
        }
        base
    };
    let app = EchoServer::start_named("reviews").unwrap();
    let server_cfg = merge(
        json!({ "reporter": "destination", "workload": reviews() }),
        server_extra,
    );
    let server = Envoy::start(&with_stats(
        bootstrap::proxy_to(app.port(), &[telemetry(&server_cfg)]),
        &server_cfg,
    ))
    .unwrap();
    let client_cfg = merge(
        json!({ "reporter": "source", "workload": productpage() }),
        client_extra,
    );
    let route = json!({ "match": { "prefix": "/" }, "route": { "cluster": REVIEWS_CLUSTER } });
    let client_bootstrap = json!({
        "admin": bootstrap::admin(),
        "static_resources": {
            "listeners": [bootstrap::http_listener(INGRESS, bootstrap::wasm_filters(&[telemetry(&client_cfg)]), vec![route])],
            "clusters": [bootstrap::static_cluster(REVIEWS_CLUSTER, server.listener_port(INGRESS).unwrap())],
        },
    });
    let client = Envoy::start(&with_stats(client_bootstrap, &client_cfg)).unwrap();
    TwoSidecars {
        app,
        server,
        client,
    }
}

#[test]
fn metadata_exchange_fills_both_sides_and_never_reaches_the_apps() {
    let mesh = two_sidecars(json!({}), json!({}));
    let url = format!("{}/reviews/1", mesh.client.listener_url(INGRESS).unwrap());
    for _ in 0..4 {
        // A client app trying to forge its identity is overwritten by its sidecar.
        let resp = http::get_with(&url, &[("x-wasmesh-peer", "w=forged")]).unwrap();
        assert_eq!(resp.status, 200, "{}", mesh.client.log_tail(30));
        assert_eq!(
            resp.header("x-wasmesh-peer"),
            None,
            "the reply header must not reach the client app"
        );
        let seen = Echo::parse(&resp.body).unwrap();
        assert_eq!(
            seen.header("x-wasmesh-peer"),
            None,
            "the request header must not reach the server app"
        );
    }
    assert_eq!(mesh.app.requests(), 4);
    let identity = [
        ("source_workload", "productpage-v1"),
        ("source_app", "productpage"),
        ("source_version", "v1"),
        ("source_workload_namespace", "default"),
        (
            "source_principal",
            "spiffe://cluster.local/ns/default/sa/productpage",
        ),
        ("destination_workload", "reviews-v1"),
        ("destination_app", "reviews"),
        ("destination_version", "v1"),
        ("destination_workload_namespace", "default"),
        (
            "destination_principal",
            "spiffe://cluster.local/ns/default/sa/reviews",
        ),
        ("destination_service", "reviews.default.svc.cluster.local"),
        ("destination_service_name", "reviews"),
        ("response_code", "200"),
    ];
    for (envoy, reporter) in [(&mesh.client, "source"), (&mesh.server, "destination")] {
        let mut labels = identity.to_vec();
        labels.push(("reporter", reporter));
        let samples = wait_for_samples(envoy, |s| {
            !find(s, "istio_requests_total", &labels).is_empty()
        });
        let hits = find(&samples, "istio_requests_total", &labels);
        assert_eq!(hits.len(), 1, "{reporter}: {hits:#?}");
        assert_eq!(hits[0].value, 4.0, "{reporter}");
        assert!(
            find(
                &samples,
                "istio_requests_total",
                &[("source_workload", "forged")]
            )
            .is_empty(),
            "{reporter}: a forged identity must not be reported"
        );
    }
}

#[test]
fn a_peer_without_a_sidecar_is_unknown_and_learns_nothing() {
    let echo = EchoServer::start().unwrap();
    let config = json!({ "reporter": "destination", "workload": reviews() });
    let envoy = Envoy::start(&with_stats(
        bootstrap::proxy_to(echo.port(), &[telemetry(&config)]),
        &config,
    ))
    .unwrap();
    let resp = http::get(&format!("{}/x", envoy.listener_url(INGRESS).unwrap())).unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header("x-wasmesh-peer"),
        None,
        "no identity for a client that announced none"
    );
    let labels = [
        ("reporter", "destination"),
        ("source_workload", "unknown"),
        ("source_app", "unknown"),
        ("destination_workload", "reviews-v1"),
    ];
    let samples = wait_for_samples(&envoy, |s| {
        !find(s, "istio_requests_total", &labels).is_empty()
    });
    assert_eq!(
        find(&samples, "istio_requests_total", &labels)[0].value,
        1.0
    );
}

fn traceparent_parts(v: &str) -> Vec<String> {
    v.split('-').map(str::to_string).collect()
}

#[test]
fn trace_context_is_created_once_and_propagated_through_both_sidecars() {
    let mesh = two_sidecars(json!({}), json!({}));
    let url = format!("{}/reviews/1", mesh.client.listener_url(INGRESS).unwrap());

    // No context: the client sidecar starts one; the server sidecar keeps it.
    let seen = Echo::parse(&http::get(&url).unwrap().body).unwrap();
    let tp = traceparent_parts(seen.header("traceparent").expect("traceparent created"));
    assert_eq!(
        (tp[0].as_str(), tp[1].len(), tp[2].len(), tp[3].as_str()),
        ("00", 32, 16, "01")
    );
    assert_eq!(seen.header("x-b3-traceid"), Some(tp[1].as_str()));
    assert_eq!(seen.header("x-b3-spanid"), Some(tp[2].as_str()));
    assert_eq!(seen.header("x-b3-sampled"), Some("1"));
    assert_eq!(
        seen.header("b3"),
        Some(format!("{}-{}-1", tp[1], tp[2]).as_str())
    );
    assert_eq!(seen.header_all("traceparent").len(), 1);
    assert!(
        seen.header("x-request-id").is_some_and(|r| r.len() == 36),
        "{seen:?}"
    );

    // W3C in, unsampled: kept verbatim with its tracestate, copied to B3, still unsampled.
    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
    let seen = Echo::parse(
        &http::get_with(
            &url,
            &[("traceparent", incoming), ("tracestate", "vendor=opaque")],
        )
        .unwrap()
        .body,
    )
    .unwrap();
    assert_eq!(seen.header("traceparent"), Some(incoming));
    assert_eq!(seen.header("tracestate"), Some("vendor=opaque"));
    assert_eq!(
        seen.header("x-b3-traceid"),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
    assert_eq!(seen.header("x-b3-sampled"), Some("0"));
    assert_eq!(
        seen.header("b3"),
        Some("4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0")
    );

    // B3 multi in (64-bit id, debug): W3C derived, sampled; B3 kept as sent.
    let seen = Echo::parse(
        &http::get_with(
            &url,
            &[
                ("x-b3-traceid", "a3ce929d0e0e4736"),
                ("x-b3-spanid", "00f067aa0ba902b7"),
                ("x-b3-flags", "1"),
            ],
        )
        .unwrap()
        .body,
    )
    .unwrap();
    assert_eq!(
        seen.header("traceparent"),
        Some("00-0000000000000000a3ce929d0e0e4736-00f067aa0ba902b7-01")
    );
    assert_eq!(seen.header("x-b3-traceid"), Some("a3ce929d0e0e4736"));
    assert_eq!(
        seen.header("b3"),
        Some("a3ce929d0e0e4736-00f067aa0ba902b7-d")
    );
}

/// The JSON of every access-log line in Envoy's log so far.
fn access_logs(envoy: &Envoy) -> Vec<Value> {
    let marker = "wasmesh-telemetry: access_log ";
    envoy
        .log()
        .lines()
        .filter_map(|l| l.split_once(marker))
        .map(|(_, json)| serde_json::from_str(json.trim()).unwrap())
        .collect()
}

#[test]
fn access_log_has_istio_fields_with_request_values() {
    let echo = EchoServer::start().unwrap();
    let config = json!({ "reporter": "destination", "workload": reviews(), "accessLog": { "enabled": true } });
    let envoy = Envoy::start(&bootstrap::proxy_to(echo.port(), &[telemetry(&config)])).unwrap();
    let listener = envoy.listener_url(INGRESS).unwrap();
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let resp = http::get_with(
        &format!("{listener}/api/items?id=7"),
        &[
            ("user-agent", "wasmesh-test/1.0"),
            ("x-forwarded-for", "203.0.113.9"),
            ("traceparent", tp),
            ("x-wasmesh-peer", PRODUCTPAGE_PEER),
        ],
    )
    .unwrap();
    assert_eq!(resp.status, 200);
    let seen = Echo::parse(&resp.body).unwrap();
    envoy
        .wait_for_log("access_log ", Duration::from_secs(10))
        .unwrap();
    let logs = access_logs(&envoy);
    assert_eq!(logs.len(), 1, "{logs:#?}");
    let l = &logs[0];
    let keys: Vec<&str> = l.as_object().unwrap().keys().map(String::as_str).collect();
    let expected: Vec<&str> = wasmesh_telemetry::accesslog::Field::ALL
        .iter()
        .map(|f| f.name())
        .collect();
    assert_eq!(keys.len(), expected.len());
    let start = l["start_time"].as_str().unwrap();
    assert!(
        start.len() == 24 && start.ends_with('Z') && start.as_bytes()[10] == b'T',
        "{start}"
    );
    assert_eq!(l["method"], "GET");
    assert_eq!(l["path"], "/api/items?id=7");
    assert_eq!(l["protocol"], "HTTP/1.1");
    assert_eq!(l["response_code"], 200);
    assert_eq!(l["response_flags"], "-");
    assert_eq!(l["response_code_details"], "via_upstream");
    assert_eq!(l["bytes_received"], 0);
    assert_eq!(l["bytes_sent"], resp.body.len());
    assert!(l["duration"].as_u64().is_some());
    assert!(l["upstream_service_time"].as_u64().is_some());
    assert_eq!(l["x_forwarded_for"], "203.0.113.9");
    assert_eq!(l["user_agent"], "wasmesh-test/1.0");
    assert_eq!(l["request_id"].as_str(), seen.header("x-request-id"));
    assert_eq!(l["authority"], listener.trim_start_matches("http://"));
    assert_eq!(l["upstream_host"], format!("127.0.0.1:{}", echo.port()));
    assert_eq!(l["upstream_cluster"], "upstream");
    // Envoy takes the client address from x-forwarded-for (use_remote_address is off).
    assert_eq!(l["downstream_remote_address"], "203.0.113.9:0", "{l}");
    assert_eq!(l["route_name"], Value::Null, "the test route has no name");
    assert_eq!(l["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(l["reporter"], "destination");
    assert_eq!(l["source_workload"], "productpage-v1");
    assert_eq!(l["source_namespace"], "default");
    assert_eq!(
        l["source_principal"],
        "spiffe://cluster.local/ns/default/sa/productpage"
    );
    assert_eq!(l["destination_workload"], "reviews-v1");
    assert_eq!(l["destination_namespace"], "default");
    assert_eq!(
        l["destination_service"],
        "reviews.default.svc.cluster.local"
    );
    assert_eq!(l["connection_security_policy"], "none");
}

#[test]
fn access_log_filter_and_field_selection() {
    let echo = EchoServer::start().unwrap();
    let config = json!({
        "workload": reviews(),
        "accessLog": { "enabled": true, "fields": ["response_code", "method", "path"], "filter": "response_code >= 500" },
    });
    let envoy = Envoy::start(&bootstrap::proxy_to(echo.port(), &[telemetry(&config)])).unwrap();
    let url = format!("{}/ok", envoy.listener_url(INGRESS).unwrap());
    assert_eq!(http::get(&url).unwrap().status, 200);
    assert_eq!(
        http::get_with(&url, &[("x-echo-status", "503")])
            .unwrap()
            .status,
        503
    );
    envoy
        .wait_for_log("access_log ", Duration::from_secs(10))
        .unwrap();
    let logs = access_logs(&envoy);
    assert_eq!(
        logs,
        [json!({"response_code": 503, "method": "GET", "path": "/ok"})]
    );
    let line = envoy
        .log()
        .lines()
        .find(|l| l.contains("access_log "))
        .unwrap()
        .to_string();
    assert!(
        line.ends_with(r#"access_log {"response_code":503,"method":"GET","path":"/ok"}"#),
        "{line}"
    );
}

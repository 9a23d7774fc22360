//! The telemetry filter in real Envoy 1.40: Istio's standard metrics in
//! `/stats/prometheus` (labels via the SDK's stats_tags, Istio's buckets), the
//! metadata exchange between two sidecars, trace propagation and the access log.

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
    let cfg: wasmesh_telemetry::Config = serde_json::from_value(config.clone()).unwrap();
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

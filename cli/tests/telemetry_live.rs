//! Generated sidecars on real Envoy with the real telemetry filter: the bootstrap's
//! stats tags cut every label the filter emits out of the metric names, so the
//! sidecar's Prometheus listener prints plain `istio_requests_total{...}` and Istio's
//! histograms, with no label left inside any metric name.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests fail loudly.

mod common;

use serde_json::Value;
use std::time::{Duration, Instant};
use wasmesh::{certs, generate, topology, GenerateOptions};
use wasmesh_integration::{http, EchoServer, Envoy};

/// The only metric names our filters may print here: any other `istio_`/`wasmesh_`
/// name is a label left inside the name (`istio_request_bytes_source_cluster_..`).
const NAMES: [&str; 12] = [
    "istio_requests_total",
    "istio_request_duration_milliseconds_bucket",
    "istio_request_duration_milliseconds_sum",
    "istio_request_duration_milliseconds_count",
    "istio_request_bytes_bucket",
    "istio_request_bytes_sum",
    "istio_request_bytes_count",
    "istio_response_bytes_bucket",
    "istio_response_bytes_sum",
    "istio_response_bytes_count",
    "wasmesh_authz_decisions_total",
    // The SDK's per-filter VM memory gauge.
    "wasmesh_wasm_memory_bytes",
];

fn series_name(line: &str) -> &str {
    line.split(['{', ' ']).next().unwrap_or("")
}

#[test]
fn generated_sidecar_prints_istio_metrics_with_labels_not_in_names() {
    let mesh = common::bookinfo();
    let dir = common::scratch("telemetry-live");
    let certs_dir = dir.join("certs");
    certs::ensure(&mesh, &certs_dir).unwrap();
    let base = common::free_port_base(7);
    let mut opts = GenerateOptions::process("out", base);
    opts.filters_dir = common::filters_dir().display().to_string();
    opts.certs_dir = certs_dir.display().to_string();
    let files = generate(&mesh, &opts).unwrap();
    let config = |name: &str| -> Value {
        let (_, b) = files
            .iter()
            .find(|(p, _)| p.display().to_string() == format!("{name}.json"))
            .unwrap();
        serde_json::from_slice(b).unwrap()
    };
    let instances =
        topology::instances(&mesh, topology::Target::Process { port_base: base }).unwrap();
    let ports = |name: &str| instances.iter().find(|i| i.name == name).unwrap().ports;
    let (pp, details) = (ports("productpage-v1-0"), ports("details-v1-0"));
    let _details_app = EchoServer::start_on(details.app, "details").unwrap();
    let _pp_app = EchoServer::start_on(pp.app, "productpage").unwrap();
    let details_sidecar = Envoy::start(&config("details-v1-0")).unwrap();
    let _pp_sidecar = Envoy::start(&config("productpage-v1-0")).unwrap();

    // productpage's app calls details through its outbound listener (mTLS hop).
    let url = format!("http://127.0.0.1:{}/details/0", pp.outbound);
    for _ in 0..5 {
        let r = http::get_with(&url, &[("host", "details:9080")]).unwrap();
        assert_eq!(
            r.status,
            200,
            "{}\n{}",
            r.text(),
            details_sidecar.log_tail(30)
        );
    }

    // The histogram appears at the next stats flush: poll, bounded.
    let prom = format!("http://127.0.0.1:{}/stats/prometheus", details.prometheus);
    let deadline = Instant::now() + Duration::from_secs(20);
    let text = loop {
        let text = http::get(&prom).unwrap().text();
        let ready = text.lines().any(|l| {
            l.starts_with("istio_requests_total{") && l.contains("reporter=\"destination\"")
        }) && text
            .lines()
            .any(|l| l.starts_with("istio_request_duration_milliseconds_bucket{"));
        if ready {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "no istio metrics at {prom}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };

    let requests: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("istio_requests_total{"))
        .filter(|l| l.contains("reporter=\"destination\""))
        .collect();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let line = requests[0];
    for want in [
        "response_code=\"200\"",
        "source_workload=\"productpage-v1\"",
        "destination_workload=\"details-v1\"",
        "source_cluster=\"Kubernetes\"",
        "destination_cluster=\"Kubernetes\"",
        "connection_security_policy=\"mutual_tls\"",
        "source_principal=\"spiffe://cluster.local/ns/default/sa/productpage\"",
    ] {
        assert!(line.contains(want), "{want} not in {line}");
    }
    assert!(line.ends_with(" 5"), "{line}");
    // Istio's millisecond buckets, not Envoy's defaults.
    assert!(
        text.lines().any(
            |l| l.starts_with("istio_request_duration_milliseconds_bucket{")
                && l.contains("le=\"0.5\"")
        ),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("wasmesh_authz_decisions_total{")
                && l.contains("decision=\"allowed\"")),
        "{text}"
    );

    // No label left in any metric name.
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let name = series_name(l);
        assert!(!name.contains(';'), "encoded name leaked: {l}");
        if name.starts_with("istio_") || name.starts_with("wasmesh_") {
            assert!(NAMES.contains(&name), "a label left in the name: {l}");
        }
    }
}

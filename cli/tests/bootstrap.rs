//! What the generated bootstraps contain: Istio's layout, filter order, names, stats
//! tags; and a mesh using every option (PERMISSIVE, tracing, egress TLS, mirror, HTTP/2,
//! gateway TLS, circuit breaking) passes `envoy --mode validate`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests fail loudly.

mod common;

use serde_json::{json, Value};
use std::path::Path;
use wasmesh::{certs, generate, topology, GenerateOptions};
use wasmesh_integration::Envoy;

fn bootstrap(files: &[wasmesh::OutputFile], name: &str) -> Value {
    common::generated_bootstrap(files, name)
}

fn listener<'a>(b: &'a Value, name: &str) -> &'a Value {
    common::resource(b, "listeners", name)
}

fn http_filter_names(l: &Value, chain: usize) -> Vec<String> {
    l["filter_chains"][chain]["filters"][0]["typed_config"]["http_filters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn sidecars_follow_istio_layout_names_and_phase_order() {
    let mesh = common::bookinfo();
    let files = generate(&mesh, &GenerateOptions::compose(".")).unwrap();
    let b = bootstrap(&files, "productpage-v1-0");
    assert_eq!(
        b["admin"]["address"]["socket_address"]["address"],
        "127.0.0.1"
    );
    assert_eq!(b["admin"]["address"]["socket_address"]["port_value"], 15000);
    for (name, port) in [
        ("virtualInbound", 15006),
        ("virtualOutbound", 15001),
        ("health", 15021),
        ("prometheus", 15090),
    ] {
        assert_eq!(
            listener(&b, name)["address"]["socket_address"]["port_value"],
            port,
            "{name}"
        );
    }
    // The file lists telemetry after authz anyway; the chain is in phase order.
    assert_eq!(
        http_filter_names(listener(&b, "virtualInbound"), 0),
        [
            "wasmesh.authz",
            "wasmesh.telemetry",
            "envoy.filters.http.router"
        ]
    );
    // Health and Prometheus answer one path each, from admin.
    let health = &listener(&b, "health")["filter_chains"][0]["filters"][0]["typed_config"]
        ["route_config"]["virtual_hosts"][0]["routes"];
    assert_eq!(health[0]["match"]["path"], "/healthz/ready");
    assert_eq!(health[0]["route"]["prefix_rewrite"], "/ready");
    let prom = &listener(&b, "prometheus")["filter_chains"][0]["filters"][0]["typed_config"]
        ["route_config"]["virtual_hosts"][0]["routes"];
    assert_eq!(prom.as_array().unwrap().len(), 1);
    assert_eq!(prom[0]["match"]["path"], "/stats/prometheus");
    // Clusters: Istio's names, only for the services productpage calls.
    let clusters: Vec<&str> = b["static_resources"]["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(clusters.contains(&"outbound|9080|v2|reviews.default.svc.cluster.local"));
    assert!(clusters.contains(&"outbound|9080||details.default.svc.cluster.local"));
    assert!(clusters.contains(&"inbound|9080||"));
    assert!(
        !clusters.iter().any(|c| c.contains("ratings")),
        "{clusters:?}"
    );
    // Stats tags from the SDK, for Istio's labels and ours.
    let tags: Vec<&str> = b["stats_config"]["stats_tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tag_name"].as_str().unwrap())
        .collect();
    for label in [
        "reporter",
        "destination_workload",
        "response_code",
        "source_cluster",
        "destination_cluster",
        "decision",
        "policy",
    ] {
        assert!(tags.contains(&label), "{label}");
    }
    // Only the labels of the filters this Envoy runs: productpage has no fault or
    // ratelimit filter; reviews, which calls ratings, has the fault made from ratings'
    // route fault, and ratings itself does not.
    assert!(!tags.contains(&"rule"), "{tags:?}");
    let has_rule_tag = |name: &str| {
        bootstrap(&files, name)["stats_config"]["stats_tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["tag_name"] == "rule")
    };
    assert!(has_rule_tag("reviews-v2-0"));
    assert!(!has_rule_tag("ratings-v1-0"));
    assert_eq!(b["stats_flush_interval"], "1s");
    assert_eq!(
        b["stats_config"]["histogram_bucket_settings"][0]["match"]["prefix"],
        "wasmcustom.istio_request_duration_milliseconds"
    );
    assert_eq!(
        wasmesh_sdk::metrics::stats_tag("reporter").regex,
        b["stats_config"]["stats_tags"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["tag_name"] == "reporter")
            .unwrap()["regex"]
    );
}

#[test]
fn routes_carry_the_canary_the_test_user_and_the_fault_rule() {
    let mesh = common::bookinfo();
    let files = generate(&mesh, &GenerateOptions::process("out", 20000)).unwrap();
    let pp = bootstrap(&files, "productpage-v1-0");
    let vhosts = &listener(&pp, "virtualOutbound")["filter_chains"][0]["filters"][0]
        ["typed_config"]["route_config"]["virtual_hosts"];
    let reviews = vhosts
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "reviews.default.svc.cluster.local:9080")
        .unwrap();
    assert!(reviews["domains"]
        .as_array()
        .unwrap()
        .contains(&Value::from("reviews:9080")));
    let routes = reviews["routes"].as_array().unwrap();
    assert_eq!(routes[0]["match"]["headers"][0]["name"], "end-user");
    assert_eq!(
        routes[0]["route"]["cluster"],
        "outbound|9080|v2|reviews.default.svc.cluster.local"
    );
    let weighted = &routes[1]["route"]["weighted_clusters"]["clusters"];
    assert_eq!(weighted[0]["weight"], 80);
    assert_eq!(
        weighted[1]["name"],
        "outbound|9080|v3|reviews.default.svc.cluster.local"
    );
    assert_eq!(routes[1]["route"]["retry_policy"]["num_retries"], 3);
    // The ratings fault is a rule of the fault filter on the caller's outbound side
    // (reviews), before its router, so reviews' retries never see an injected abort.
    let reviews = bootstrap(&files, "reviews-v2-0");
    let outbound = listener(&reviews, "virtualOutbound");
    assert_eq!(
        http_filter_names(outbound, 0),
        [
            "wasmesh.fault",
            "wasmesh.telemetry",
            "envoy.filters.http.router"
        ]
    );
    let fault = outbound["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"][0]
        ["typed_config"]["config"]["configuration"]["value"]
        .as_str()
        .unwrap();
    let fault: Value = serde_json::from_str(fault).unwrap();
    assert_eq!(fault["rules"].as_array().unwrap().len(), 1);
    let rule = &fault["rules"][0];
    assert_eq!(rule["name"], "ratings.flaky");
    assert_eq!(rule["abort"]["http_status"], 503);
    assert_eq!(rule["abort"]["percentage"], 10.0);
    // Only calls to ratings, by any of the names the outbound listener routes (the SDK
    // drops the port, so `ratings:9080` matches `ratings`).
    assert_eq!(
        rule["match"]["hosts"],
        serde_json::json!([
            "ratings",
            "ratings.default",
            "ratings.default.svc",
            "ratings.default.svc.cluster.local"
        ])
    );
    // ratings' own inbound chain carries no fault, nor do callers of other services.
    let ratings = bootstrap(&files, "ratings-v1-0");
    assert_eq!(
        http_filter_names(listener(&ratings, "virtualInbound"), 0),
        [
            "wasmesh.authz",
            "wasmesh.telemetry",
            "envoy.filters.http.router"
        ]
    );
    assert!(!http_filter_names(listener(&pp, "virtualOutbound"), 0)
        .contains(&"wasmesh.fault".to_string()));
}

#[test]
fn a_fault_on_a_route_with_several_matches_is_one_rule_per_match_at_each_caller() {
    let mesh = wasmesh::load_str(
        Path::new("mesh.yaml"),
        r#"
mesh: { name: t }
services:
  - name: api
    port: 8080
    calls: []
    routes:
      - name: slow
        match:
          - { path: { prefix: /search }, method: { exact: GET } }
          - headers: { x-slow: { exact: "1" } }
        route: [{ version: v1 }]
        fault: { delay: { fixedDelay: 2s, percentage: 25 } }
  - name: web
    port: 80
    calls: [api]
    filters:
      outbound:
        - name: fault
          config: { rules: [{ name: own, abort: { http_status: 500, percentage: 1 } }] }
"#,
    )
    .unwrap();
    let files = generate(&mesh, &GenerateOptions::process("out", 20000)).unwrap();
    let web = bootstrap(&files, "web-v1-0");
    let outbound = listener(&web, "virtualOutbound");
    assert_eq!(
        http_filter_names(outbound, 0),
        ["wasmesh.fault", "envoy.filters.http.router"]
    );
    let fault = outbound["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"][0]
        ["typed_config"]["config"]["configuration"]["value"]
        .as_str()
        .unwrap();
    let fault: Value = serde_json::from_str(fault).unwrap();
    // The caller's own rule first, then one per match, named as the Envoy routes.
    let names: Vec<&str> = fault["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["own", "api.slow.0", "api.slow.1"]);
    let m0 = &fault["rules"][1]["match"];
    assert_eq!(m0["path"]["prefix"], "/search");
    assert_eq!(m0["methods"], serde_json::json!(["GET"]));
    assert_eq!(m0["hosts"][0], "api");
    let m1 = &fault["rules"][2]["match"];
    assert_eq!(m1["headers"][0]["name"], "x-slow");
    assert_eq!(fault["rules"][2]["delay"]["fixed_delay"], "2s");
    // api's inbound chain has no fault filter.
    let api = bootstrap(&files, "api-v1-0");
    assert_eq!(
        http_filter_names(listener(&api, "virtualInbound"), 0),
        ["envoy.filters.http.router"]
    );
    // The compiled fault filter accepts the merged rules (names unique, `hosts` valid).
    let report = wasmesh::filtercheck::check(Path::new("mesh.yaml"), &mesh, common::filters_dir());
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(report.missing.is_empty(), "{:?}", report.missing);
    assert_eq!(report.accepted, 1, "web's outbound fault filter");
}

const KITCHEN_SINK: &str = r#"
mesh:
  name: sink
  mtls: PERMISSIVE
  tracing: { provider: opentelemetry, address: "otel.example:4317", sampling: 25 }
services:
  - name: api
    port: 8080
    protocol: grpc
    versions: [{ name: v1, replicas: 2 }, { name: v2 }]
    trafficPolicy:
      loadBalancer: RANDOM
      connectionPool: { maxConnections: 10, maxRequests: 20 }
      outlierDetection: { consecutive5xxErrors: 2 }
    routes:
      - name: post
        match: [{ method: { exact: POST }, path: { regex: "/v[0-9]+/.*" } }]
        route: [{ version: v1 }]
        mirror: { version: v2, percentage: 5 }
        timeout: 1500ms
        fault: { delay: { fixedDelay: 100ms, percentage: 1 } }
  - name: web
    port: 80
    appPort: 3000
    filters:
      inbound:
        - name: telemetry
      outbound:
        - name: headers
          config: { request: { set: [{ name: x-from, value: web }] } }
          failurePolicy: FAIL_RELOAD
        - name: telemetry
          config: { reporter: source }
egress:
  - { host: api.github.com, port: 443, tls: true }
  - { host: example.com, port: 80 }
gateway:
  port: 8443
  hosts: [sink.example]
  tls: {}
  routes:
    - route: [{ service: web }]
"#;

#[test]
fn a_mesh_using_every_option_passes_envoy_validate() {
    let mesh = wasmesh::load_str(Path::new("sink.yaml"), KITCHEN_SINK).unwrap();
    let dir = common::scratch("sink");
    let certs_dir = dir.join("certs");
    certs::ensure(&mesh, &certs_dir).unwrap();
    assert!(certs_dir.join("ingressgateway/gateway.sds.yaml").exists());
    let mut opts = GenerateOptions::process("out", topology::DEFAULT_PORT_BASE);
    opts.filters_dir = common::filters_dir().display().to_string();
    opts.certs_dir = certs_dir.display().to_string();
    let files = generate(&mesh, &opts).unwrap();
    let mut n = 0;
    for (p, bytes) in &files {
        let name = p.display().to_string();
        if wasmesh::is_bootstrap(p) {
            let json: Value = serde_json::from_slice(bytes).unwrap();
            if let Err(e) = Envoy::validate(&json) {
                panic!("{name}: {e:#}");
            }
            n += 1;
        }
    }
    assert_eq!(n, 5, "gateway, api x3, web");
    // PERMISSIVE: a TLS chain picked by the TLS inspector, and a plaintext one.
    let api = bootstrap(&files, "api-v1-1");
    let inbound = listener(&api, "virtualInbound");
    assert_eq!(inbound["filter_chains"].as_array().unwrap().len(), 2);
    assert_eq!(
        inbound["filter_chains"][0]["filter_chain_match"]["transport_protocol"],
        "tls"
    );
    // Telemetry on each inbound chain is told that chain's mTLS mode, so it need not
    // ask per request; the outbound (source) side is told nothing.
    let web = bootstrap(&files, "web-v1-0");
    let inbound = listener(&web, "virtualInbound");
    assert_eq!(telemetry_config(inbound, 0)["mtls"], "STRICT");
    assert_eq!(telemetry_config(inbound, 1)["mtls"], "DISABLE");
    let outbound = listener(&web, "virtualOutbound");
    assert!(telemetry_config(outbound, 0).get("mtls").is_none());
    // The mesh's OpenTelemetry tracer owns the trace headers, so telemetry writes none
    // (cli/tests/tracing.rs shows why in Envoy).
    for config in [
        telemetry_config(inbound, 0),
        telemetry_config(inbound, 1),
        telemetry_config(outbound, 0),
    ] {
        assert_eq!(config["tracing"], json!({ "enabled": false }), "{config}");
    }
}

/// The telemetry filter's config on filter chain `chain` of listener `l`.
fn telemetry_config(l: &Value, chain: usize) -> Value {
    let filters = l["filter_chains"][chain]["filters"][0]["typed_config"]["http_filters"]
        .as_array()
        .unwrap();
    let telemetry = filters
        .iter()
        .find(|f| f["name"] == "wasmesh.telemetry")
        .unwrap_or_else(|| panic!("no telemetry filter in {filters:?}"));
    let text = telemetry["typed_config"]["config"]["configuration"]["value"]
        .as_str()
        .unwrap();
    serde_json::from_str(text).unwrap()
}

fn cluster<'a>(b: &'a Value, name: &str) -> &'a Value {
    common::resource(b, "clusters", name)
}

#[test]
fn egress_tls_verifies_the_server_unless_told_not_to() {
    let dir = common::scratch("egress-ca");
    let ca = dir.join("partner-ca.pem");
    let issuer = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["partner-ca".to_string()])
        .unwrap()
        .self_signed(&issuer)
        .unwrap();
    std::fs::write(&ca, cert.pem()).unwrap();
    let yaml = format!(
        r#"
mesh: {{ name: egress }}
services:
  - {{ name: web, port: 80 }}
egress:
  - {{ host: api.github.com, port: 443, tls: true }}
  - {{ host: partner.example, port: 443, tls: true, caCertificates: "{}" }}
  - {{ host: legacy.example, port: 443, tls: true, insecureSkipVerify: true }}
"#,
        ca.display()
    );
    let mesh = wasmesh::load_str(Path::new("egress.yaml"), &yaml).unwrap();
    let mut opts = GenerateOptions::process("out", topology::DEFAULT_PORT_BASE);
    opts.filters_dir = common::filters_dir().display().to_string();
    let certs_dir = dir.join("certs");
    certs::ensure(&mesh, &certs_dir).unwrap();
    opts.certs_dir = certs_dir.display().to_string();
    let files = generate(&mesh, &opts).unwrap();
    let web = bootstrap(&files, "web-v1-0");
    Envoy::validate(&web).unwrap();

    let tls = |host: &str| {
        cluster(&web, &format!("outbound|443||{host}"))["transport_socket"]["typed_config"].clone()
    };
    let github = tls("api.github.com");
    assert_eq!(github["sni"], "api.github.com");
    let v = &github["common_tls_context"]["validation_context"];
    assert_eq!(
        v["trusted_ca"]["filename"],
        "/etc/ssl/certs/ca-certificates.crt"
    );
    assert_eq!(
        v["match_typed_subject_alt_names"],
        serde_json::json!([{"san_type": "DNS", "matcher": {"exact": "api.github.com"}}]),
        "a certificate for another host must not do"
    );
    let partner = tls("partner.example");
    let v = &partner["common_tls_context"]["validation_context"];
    assert_eq!(v["trusted_ca"]["filename"], ca.display().to_string());
    assert_eq!(
        v["match_typed_subject_alt_names"][0]["matcher"]["exact"],
        "partner.example"
    );
    let legacy = tls("legacy.example");
    assert!(legacy["common_tls_context"]["validation_context"].is_null());
    assert_eq!(legacy["sni"], "legacy.example");
}

#[test]
fn egress_verification_settings_are_checked() {
    let errors = |egress: &str| {
        let yaml = format!("mesh: {{ name: e }}\nservices:\n  - {{ name: web, port: 80 }}\negress:\n  - {egress}\n");
        match wasmesh::load_str(Path::new("e.yaml"), &yaml) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
        }
    };
    let e = errors("{ host: a.example, port: 443, caCertificates: /ca.pem }");
    assert!(
        e.iter()
            .any(|m| m.contains("egress[0].tls") && m.contains("tls: true")),
        "{e:?}"
    );
    let e = errors("{ host: a.example, port: 443, tls: true, caCertificates: /ca.pem, insecureSkipVerify: true }");
    assert!(
        e.iter().any(|m| m.contains("egress[0].insecureSkipVerify")),
        "{e:?}"
    );
    let e = errors("{ host: a.example, port: 443, tls: true, caCertificates: \"\" }");
    assert!(
        e.iter().any(|m| m.contains("egress[0].caCertificates")),
        "{e:?}"
    );
    assert!(
        errors("{ host: a.example, port: 443, tls: true, insecureSkipVerify: true }").is_empty()
    );
}

//! `wasmesh generate --bundle`: one mesh-module filter per chain. Bookinfo's bundled
//! bootstraps pass `envoy --mode validate` with the real mesh.wasm, every chain's
//! bundle config loads into the module through the harness, and bundled sidecars
//! serve traffic on real Envoy with authz and telemetry working.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests fail loudly.

mod common;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use wasmesh::{bundlecheck, certs, generate, topology, GenerateOptions, OutputFile};
use wasmesh_integration::{http, EchoServer, Envoy};

/// A directory holding only `mesh.wasm`: bundled bootstraps need nothing else.
fn bundle_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = common::scratch("bundle-filters");
        let wasm = wasmesh_harness::build::wasm_bundle(wasmesh::bundle::CRATE);
        std::fs::copy(wasm, dir.join(wasmesh::bundle::WASM_FILE)).unwrap();
        dir
    })
}

fn bootstrap(files: &[OutputFile], name: &str) -> Value {
    common::generated_bootstrap(files, name)
}

fn http_filters(b: &Value, listener: &str) -> Vec<Value> {
    common::resource(b, "listeners", listener)["filter_chains"][0]["filters"][0]["typed_config"]
        ["http_filters"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn bundled_chains_are_one_mesh_filter_in_phase_order_with_the_strictest_policy() {
    let mesh = common::bookinfo();
    let files = generate(
        &mesh,
        &GenerateOptions::process("out", topology::DEFAULT_PORT_BASE).with_bundle(true),
    )
    .unwrap();
    let pp = bootstrap(&files, "productpage-v1-0");
    let inbound = http_filters(&pp, "virtualInbound");
    let names: Vec<&str> = inbound
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["wasmesh.mesh", "envoy.filters.http.router"]);
    let config = &inbound[0]["typed_config"]["config"];
    assert_eq!(config["vm_config"]["vm_id"], "mesh");
    assert!(config["vm_config"]["code"]["local"]["filename"]
        .as_str()
        .unwrap()
        .ends_with("/mesh.wasm"));
    // authz is FAIL_CLOSED (default), telemetry FAIL_OPEN: the bundle stays closed.
    assert_eq!(config["failure_policy"], "FAIL_CLOSED");
    let stages: Value =
        serde_json::from_str(config["configuration"]["value"].as_str().unwrap()).unwrap();
    let stage_names: Vec<&str> = stages["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(stage_names, ["authz", "telemetry"]);
    // The telemetry stage gets its workload filled in, as the separate filter does.
    assert_eq!(
        stages["stages"][1]["config"]["workload"]["name"],
        "productpage-v1"
    );
    // Outbound: telemetry alone, FAIL_OPEN.
    let outbound = http_filters(&pp, "virtualOutbound");
    assert_eq!(
        outbound[0]["typed_config"]["config"]["failure_policy"],
        "FAIL_OPEN"
    );
    // The gateway's chain in phase order: ratelimit before headers.
    let gw = bootstrap(&files, "ingressgateway");
    let cfg = &http_filters(&gw, "gateway")[0]["typed_config"]["config"]["configuration"]["value"];
    let gw_stages: Value = serde_json::from_str(cfg.as_str().unwrap()).unwrap();
    let gw_names: Vec<&str> = gw_stages["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    let mut sorted = gw_names.clone();
    sorted.sort_by_key(|n| {
        ["authz", "ratelimit", "headers", "fault", "telemetry"]
            .iter()
            .position(|p| p == n)
    });
    assert_eq!(gw_names, sorted);
    // Stats tags still cover every stage's labels.
    let tags: Vec<&str> = pp["stats_config"]["stats_tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tag_name"].as_str().unwrap())
        .collect();
    assert!(tags.contains(&"source_cluster") && tags.contains(&"decision"));
}

#[test]
fn bookinfo_bundled_passes_envoy_validate_with_the_real_mesh_module() {
    let mesh = common::bookinfo();
    let dir = common::scratch("bundle-validate");
    let certs_dir = dir.join("certs");
    certs::ensure(&mesh, &certs_dir).unwrap();
    for compose in [false, true] {
        let mut opts = if compose {
            GenerateOptions::compose(".")
        } else {
            GenerateOptions::process("out", topology::DEFAULT_PORT_BASE)
        }
        .with_bundle(true);
        opts.filters_dir = bundle_dir().display().to_string();
        // Compose bootstraps name one certificate directory; any instance's will do
        // for validation (Envoy reads the files, it does not check whose they are).
        opts.certs_dir = if compose {
            certs_dir.join("details-v1-0").display().to_string()
        } else {
            certs_dir.display().to_string()
        };
        let files = generate(&mesh, &opts).unwrap();
        let out = dir.join(if compose { "compose" } else { "process" });
        let n = common::validate_generated(&files, &out, &[]);
        assert_eq!(n, 7, "compose={compose}");
    }
}

#[test]
fn every_bookinfo_bundle_config_loads_into_the_mesh_module() {
    let mesh = common::bookinfo();
    let report = bundlecheck::check(&common::bookinfo_path(), &mesh, bundle_dir());
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.accepted, bundlecheck::chains(&mesh).len());
    assert!(report.accepted >= 7, "{}", report.accepted);
}

#[test]
fn a_stage_config_the_mesh_module_refuses_is_reported_at_its_field() {
    let yaml = "mesh:\n  name: m\nservices:\n  - name: a\n    port: 9080\n    filters:\n      inbound:\n        - name: telemetry\n          config: {}\n        - name: headers\n          config: {\"rules\":[{\"match\":{\"path\":{\"regex\":\"(\"}}}]}\n";
    let mesh = wasmesh::load_str(Path::new("mesh.yaml"), yaml).unwrap();
    let report = bundlecheck::check(Path::new("mesh.yaml"), &mesh, bundle_dir());
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    let msg = report.errors[0].to_string();
    assert!(
        msg.starts_with("mesh.yaml: services[0].filters.inbound[1].config: the mesh module refused its config: rules[0].match.path.regex: invalid regex"),
        "{msg}"
    );
}

#[test]
fn bundled_sidecars_serve_traffic_with_authz_and_telemetry() {
    let mesh = common::bookinfo();
    let dir = common::scratch("bundle-live");
    let certs_dir = dir.join("certs");
    certs::ensure(&mesh, &certs_dir).unwrap();
    let base = common::free_port_base(7);
    let mut opts = GenerateOptions::process("out", base).with_bundle(true);
    opts.filters_dir = bundle_dir().display().to_string();
    opts.certs_dir = certs_dir.display().to_string();
    let files = generate(&mesh, &opts).unwrap();
    let instances =
        topology::instances(&mesh, topology::Target::Process { port_base: base }).unwrap();
    let ports = |name: &str| instances.iter().find(|i| i.name == name).unwrap().ports;
    let (pp, details) = (ports("productpage-v1-0"), ports("details-v1-0"));
    let _details_app = EchoServer::start_on(details.app, "details").unwrap();
    let _pp_app = EchoServer::start_on(pp.app, "productpage").unwrap();
    let details_sidecar = Envoy::start(&bootstrap(&files, "details-v1-0")).unwrap();
    let _pp_sidecar = Envoy::start(&bootstrap(&files, "productpage-v1-0")).unwrap();

    let url = format!("http://127.0.0.1:{}/details/0", pp.outbound);
    let host = [("host", "details:9080")];
    for _ in 0..3 {
        let r = http::get_with(&url, &host).unwrap();
        assert_eq!(
            r.status,
            200,
            "{}\n{}",
            r.text(),
            details_sidecar.log_tail(30)
        );
    }
    // details' authz stage allows only GET from productpage.
    let r = http::request("POST", &url, &host, b"x").unwrap();
    assert_eq!(r.status, 403, "{}", r.text());

    let prom = format!("http://127.0.0.1:{}/stats/prometheus", details.prometheus);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = http::get(&prom).unwrap().text();
        let ok = text.lines().any(|l| {
            l.starts_with("istio_requests_total{")
                && l.contains("reporter=\"destination\"")
                && l.contains("response_code=\"200\"")
                && l.contains("source_workload=\"productpage-v1\"")
                && l.ends_with(" 3")
        }) && text.lines().any(|l| {
            l.starts_with("wasmesh_authz_decisions_total{") && l.contains("decision=\"denied\"")
        });
        if ok {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "metrics missing at {prom}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

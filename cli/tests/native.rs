//! `--target-filters native`: the generated Envoys load every filter from the native
//! dynamic module, with exactly the configs the Wasm filters get. Bookinfo's native
//! bootstraps pass `envoy --mode validate` with the real module, separate and bundled;
//! the compose target refuses the option. (`wasmesh up --native` runs the end-to-end
//! scenarios: integration/tests/mesh_process.rs.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests fail loudly.

mod common;

use serde_json::Value;
use wasmesh::{certs, generate, topology, FilterTarget, GenerateOptions, OutputFile};

fn process(target: FilterTarget, bundle: bool) -> Vec<OutputFile> {
    let opts = GenerateOptions::process("out", topology::DEFAULT_PORT_BASE)
        .with_bundle(bundle)
        .with_filter_target(target);
    generate(&common::bookinfo(), &opts).unwrap()
}

fn http_filters(files: &[OutputFile], instance: &str, listener: &str) -> Vec<Value> {
    let b = common::generated_bootstrap(files, instance);
    common::resource(&b, "listeners", listener)["filter_chains"][0]["filters"][0]["typed_config"]
        ["http_filters"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn every_filter_is_a_native_stage_with_the_wasm_filters_config() {
    let wasm = process(FilterTarget::Wasm, false);
    let native = process(FilterTarget::Native, false);
    for (instance, listener) in [
        ("productpage-v1-0", "virtualInbound"),
        ("productpage-v1-0", "virtualOutbound"),
        ("ingressgateway", "gateway"),
    ] {
        let w = http_filters(&wasm, instance, listener);
        let n = http_filters(&native, instance, listener);
        assert_eq!(w.len(), n.len(), "{instance} {listener}");
        assert!(n.len() > 1, "{instance} {listener} has filters");
        for (w, n) in w.iter().zip(&n).take(n.len() - 1) {
            assert_eq!(w["name"], n["name"]);
            let t = &n["typed_config"];
            assert_eq!(
                t["@type"],
                "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter"
            );
            assert_eq!(t["dynamic_module_config"]["name"], "wasmesh_native");
            assert_eq!(
                format!("wasmesh.{}", t["filter_name"].as_str().unwrap()),
                n["name"].as_str().unwrap()
            );
            assert_eq!(
                t["filter_config"]["value"], w["typed_config"]["config"]["configuration"]["value"],
                "{instance} {listener} {}: the same config as the Wasm filter",
                n["name"]
            );
        }
        assert_eq!(n.last().unwrap()["name"], "envoy.filters.http.router");
    }
    // Bundled: one `mesh` stage, the pipeline.
    let bundled = process(FilterTarget::Native, true);
    let n = http_filters(&bundled, "productpage-v1-0", "virtualInbound");
    assert_eq!(n[0]["typed_config"]["filter_name"], "mesh");
}

#[test]
fn native_envoys_get_the_module_path_and_the_metric_name_flag() {
    let native = process(FilterTarget::Native, false);
    let b = common::generated_bootstrap(&native, "reviews-v1-0");
    assert_eq!(
        b["layered_runtime"]["layers"][0]["static_layer"]
            ["envoy.reloadable_features.dynamic_modules_strip_custom_stat_prefix"],
        true
    );
    let wasm = process(FilterTarget::Wasm, false);
    assert!(common::generated_bootstrap(&wasm, "reviews-v1-0")
        .get("layered_runtime")
        .is_none());
    let plan: Value = serde_json::from_slice(
        &native
            .iter()
            .find(|(p, _)| p.ends_with("run-plan.json"))
            .unwrap()
            .1,
    )
    .unwrap();
    for p in plan["processes"].as_array().unwrap() {
        let search = &p["env"]["ENVOY_DYNAMIC_MODULES_SEARCH_PATH"];
        if p["kind"] == "app" {
            assert!(search.is_null(), "{p}");
        } else {
            assert_eq!(search, wasmesh::DEFAULT_NATIVE_DIR, "{p}");
        }
    }
}

#[test]
fn the_compose_target_refuses_native_filters() {
    let opts = GenerateOptions::compose(".").with_filter_target(FilterTarget::Native);
    let err = generate(&common::bookinfo(), &opts)
        .unwrap_err()
        .to_string();
    assert!(err.contains("process target only"), "{err}");
}

#[test]
fn native_generation_of_a_global_rule_fills_the_service_and_keeps_its_cluster() {
    // The native module makes the rule's gRPC call over an HTTP/2 callout
    // (filters/native/src/grpc.rs): the filter gets the Wasm filter's config, with the
    // mesh's service filled in, and the gateway keeps the service's cluster.
    let mut mesh = common::bookinfo();
    mesh.mesh.rate_limit_service =
        Some(serde_json::from_value(serde_json::json!({"port": 18099, "domain": "mesh"})).unwrap());
    let filter = mesh
        .gateway
        .as_mut()
        .and_then(|g| {
            g.filters
                .iter_mut()
                .find(|f| f.name == wasmesh::model::FilterName::Ratelimit)
        })
        .expect("bookinfo's gateway has a ratelimit filter");
    filter.config["rules"] = serde_json::json!([{"name": "g", "global": true}]);
    let generate_for = |target| {
        let opts =
            GenerateOptions::process("out", topology::DEFAULT_PORT_BASE).with_filter_target(target);
        generate(&mesh, &opts).unwrap()
    };
    let (wasm, native) = (
        generate_for(FilterTarget::Wasm),
        generate_for(FilterTarget::Native),
    );
    let n = http_filters(&native, "ingressgateway", "gateway");
    let ratelimit = n
        .iter()
        .find(|f| f["name"] == "wasmesh.ratelimit")
        .expect("the gateway's native ratelimit filter");
    let config: Value = serde_json::from_str(
        ratelimit["typed_config"]["filter_config"]["value"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let service = &config["rate_limit_service"];
    assert_eq!(service["cluster"], "wasmesh_ratelimit_service", "{config}");
    assert_eq!(service["domain"], "mesh", "{config}");
    assert_eq!(service["failure_mode_deny"], false, "{config}");
    let w = http_filters(&wasm, "ingressgateway", "gateway");
    let wasm_ratelimit = w.iter().find(|f| f["name"] == "wasmesh.ratelimit").unwrap();
    assert_eq!(
        ratelimit["typed_config"]["filter_config"]["value"],
        wasm_ratelimit["typed_config"]["config"]["configuration"]["value"]
    );
    let b = common::generated_bootstrap(&native, "ingressgateway");
    let cluster = common::resource(&b, "clusters", "wasmesh_ratelimit_service");
    assert!(
        cluster.to_string().contains("http2_protocol_options"),
        "the service's cluster speaks HTTP/2: {cluster}"
    );
}

#[test]
fn bookinfo_native_passes_envoy_validate_with_the_real_module() {
    let mesh = common::bookinfo();
    let dir = common::scratch("native-validate");
    let certs_dir = dir.join("certs");
    certs::ensure(&mesh, &certs_dir).unwrap();
    let module_dir = wasmesh_harness::build::native_module_dir("wasmesh-native");
    for bundle in [false, true] {
        let mut opts = GenerateOptions::process("out", topology::DEFAULT_PORT_BASE)
            .with_bundle(bundle)
            .with_filter_target(FilterTarget::Native);
        opts.certs_dir = certs_dir.display().to_string();
        let files = generate(&mesh, &opts).unwrap();
        let out = dir.join(if bundle { "bundled" } else { "separate" });
        let search_path = (
            "ENVOY_DYNAMIC_MODULES_SEARCH_PATH",
            module_dir.to_str().unwrap(),
        );
        let n = common::validate_generated(&files, &out, &[search_path]);
        assert_eq!(n, 7, "bundle={bundle}");
    }
}

//! The generated `docker-compose.yml` as docker-compose 1.29 and Compose v2 both accept
//! it, with the start-up order and overrides the local mesh relies on; and the run
//! plan's app environment.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests fail loudly.

mod common;

use serde_json::Value;
use wasmesh::{generate, topology, GenerateOptions};

fn compose_file() -> Value {
    let files = generate(&common::bookinfo(), &GenerateOptions::compose(".")).unwrap();
    let (_, bytes) = files
        .iter()
        .find(|(p, _)| p.as_os_str() == "docker-compose.yml")
        .unwrap();
    serde_norway::from_slice(bytes).unwrap()
}

fn healthy_deps(s: &Value) -> Vec<String> {
    s["depends_on"]
        .as_object()
        .map(|m| {
            m.iter()
                .inspect(|(_, d)| assert_eq!(d["condition"], "service_healthy"))
                .map(|(k, _)| k.clone())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn compose_has_no_top_level_name_and_no_fixed_container_names() {
    let c = compose_file();
    let top: Vec<&String> = c.as_object().unwrap().keys().collect();
    assert_eq!(top, ["services"], "docker-compose 1.29 rejects `name:`");
    for (name, s) in c["services"].as_object().unwrap() {
        assert!(
            s.get("container_name").is_none(),
            "{name}: a fixed container name clashes between projects"
        );
    }
}

#[test]
fn apps_have_health_checks_and_instance_and_the_gateway_waits_for_them() {
    let c = compose_file();
    let services = c["services"].as_object().unwrap();
    let app = &services["reviews-v2-0-app"];
    assert_eq!(
        app["healthcheck"]["test"],
        serde_json::json!([
            "CMD",
            "wasmesh-healthcheck",
            "http://127.0.0.1:9080/healthz"
        ])
    );
    assert_eq!(app["environment"]["INSTANCE"], "reviews-v2-0");
    assert_eq!(app["environment"]["VERSION"], "v2");
    assert_eq!(app["network_mode"], "service:reviews-v2-0");
    assert_eq!(healthy_deps(app), ["reviews-v2-0"]);

    let gateway = &services["ingressgateway"];
    let deps = healthy_deps(gateway);
    let apps: Vec<&String> = services.keys().filter(|k| k.ends_with("-app")).collect();
    assert_eq!(apps.len(), 6);
    for a in &apps {
        assert!(deps.contains(a), "gateway must wait for {a}");
        let sidecar = a.trim_end_matches("-app");
        assert!(deps.contains(&sidecar.to_string()), "{sidecar}");
    }
    assert_eq!(healthy_deps(&services["prometheus"]), ["ingressgateway"]);
}

#[test]
fn envoys_run_as_root_images_and_host_ports_are_overridable() {
    let c = compose_file();
    let services = c["services"].as_object().unwrap();
    for (name, s) in services {
        if s["image"] == wasmesh::compose::ENVOY_IMAGE {
            assert_eq!(s["environment"]["ENVOY_UID"], "0", "{name}");
        }
    }
    assert_eq!(
        services["details-v1-0"]["image"],
        "${WASMESH_ENVOY_IMAGE:-wasmesh/envoy:1.40.0}"
    );
    assert_eq!(
        services["ingressgateway"]["ports"],
        serde_json::json!(["${WASMESH_GATEWAY_PORT:-8080}:8080"])
    );
    assert_eq!(
        services["prometheus"]["ports"],
        serde_json::json!(["${WASMESH_PROMETHEUS_PORT:-9090}:9090"])
    );
    assert!(services["prometheus"]["healthcheck"]["test"][2]
        .as_str()
        .unwrap()
        .ends_with("/-/ready"));
}

#[test]
fn run_plan_apps_know_their_instance() {
    let mesh = common::bookinfo();
    let instances = topology::instances(
        &mesh,
        topology::Target::Process {
            port_base: topology::DEFAULT_PORT_BASE,
        },
    )
    .unwrap();
    let plan = wasmesh::runplan::plan(
        &mesh,
        &instances,
        &GenerateOptions::process("out", topology::DEFAULT_PORT_BASE),
    );
    let app = plan
        .processes
        .iter()
        .find(|p| p.kind == wasmesh::runplan::ProcessKind::App && p.name == "reviews-v1-0")
        .unwrap();
    assert_eq!(app.env["INSTANCE"], "reviews-v1-0");
}

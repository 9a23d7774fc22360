//! The local Docker images from scripts/docker-images.sh: Envoy 1.40.0 runs and loads
//! a Wasm filter in its FROM-scratch image, a demo app sharing the sidecar's network
//! namespace (the compose "pod") is served through it, the healthcheck binary works in
//! every image, Prometheus starts, and re-running the script rebuilds nothing.
//!
//! Docker is required: a missing or unreachable Docker fails these tests, it never
//! skips them (a skipped suite would report green while testing nothing).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use wasmesh_harness::build::wasm_module;
use wasmesh_integration::bootstrap::WasmFilter;
use wasmesh_integration::{http, paths};

const ENVOY: &str = "wasmesh/envoy:1.40.0";
const DEMO: &str = "wasmesh/demo:latest";
const PROMETHEUS: &str = "wasmesh/prometheus:latest";

fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run docker ({e}): these tests need Docker"))
}

/// Runs docker and returns its stdout, failing the test with stderr on error.
fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn run_script() -> Output {
    let root = paths::workspace_root();
    Command::new(root.join("scripts/docker-images.sh"))
        .current_dir(&root)
        .output()
        .unwrap()
}

/// Builds the images once per test binary.
fn images() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let info = docker(&["info", "--format", "{{.ServerVersion}}"]);
        assert!(
            info.status.success(),
            "the Docker daemon is not reachable: {}",
            String::from_utf8_lossy(&info.stderr)
        );
        let out = run_script();
        assert!(
            out.status.success(),
            "scripts/docker-images.sh failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// A container removed (with its volumes) when the test ends, pass or fail.
struct Container(String);

impl Container {
    fn run(name: &str, args: &[&str]) -> Container {
        let name = format!("wasmesh-test-{}-{name}", std::process::id());
        let _ = docker(&["rm", "-f", &name]);
        let mut full = vec!["run", "-d", "--name", &name];
        full.extend_from_slice(args);
        docker_ok(&full);
        Container(name)
    }

    /// `wasmesh-healthcheck URL` inside the container, until it passes.
    fn wait_healthy(&self, url: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let out = docker(&["exec", &self.0, "wasmesh-healthcheck", url]);
            if out.status.success() {
                return;
            }
            if Instant::now() > deadline {
                let logs = docker(&["logs", "--tail", "50", &self.0]);
                panic!(
                    "{url} in {} never passed: {}\ncontainer logs:\n{}{}",
                    self.0,
                    String::from_utf8_lossy(&out.stderr),
                    String::from_utf8_lossy(&logs.stdout),
                    String::from_utf8_lossy(&logs.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The host port Docker published for `port`.
    fn host_port(&self, port: u16) -> u16 {
        let out = docker_ok(&["port", &self.0, &format!("{port}/tcp")]);
        let first = out.lines().next().unwrap_or("");
        first.rsplit(':').next().unwrap().parse().unwrap()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", "-v", &self.0]);
    }
}

#[test]
fn envoy_image_is_1_40_0_with_the_healthcheck_binary() {
    images();
    let version = docker_ok(&["run", "--rm", ENVOY, "--version"]);
    assert!(version.contains("/1.40.0/"), "{version}");
    // Check mode fails cleanly (exit 1) against a closed port: the binary and its
    // libraries are all there.
    let out = docker(&[
        "run",
        "--rm",
        "--entrypoint",
        "wasmesh-healthcheck",
        ENVOY,
        "http://127.0.0.1:9/",
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("refused"));
}

/// The compose layout in small: Envoy with a Wasm filter mounted in, the demo app in
/// Envoy's network namespace on loopback, reached from the host only through Envoy.
#[test]
fn a_demo_app_is_served_through_its_sidecar_in_a_shared_network_namespace() {
    images();
    let dir = paths::TempDir::new("docker-pod").unwrap();
    let wasm = wasm_module("wasmesh-headers");
    let filter = WasmFilter::new("wasmesh.headers", "/etc/wasmesh/filters/headers.wasm")
        .config(json!({"response": {"set": [{"name": "x-wasmesh-image", "value": "scratch"}]}}));
    let router = json!({"name": "envoy.filters.http.router", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}});
    let hcm = |prefix: &str, routes: serde_json::Value, filters: Vec<serde_json::Value>| {
        json!({"name": "envoy.filters.network.http_connection_manager", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": prefix,
            "route_config": {"virtual_hosts": [{"name": prefix, "domains": ["*"], "routes": routes}]},
            "http_filters": filters}})
    };
    let listener = |name: &str, port: u16, hcm: serde_json::Value| {
        json!({"name": name,
               "address": {"socket_address": {"address": "0.0.0.0", "port_value": port}},
               "filter_chains": [{"filters": [hcm]}]})
    };
    let bootstrap = json!({
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 15000}}},
        "static_resources": {
            "listeners": [
                listener("inbound", 15006, hcm("inbound",
                    json!([{"match": {"prefix": "/"}, "route": {"cluster": "app"}}]),
                    vec![filter.to_http_filter(), router.clone()])),
                listener("health", 15021, hcm("health",
                    json!([{"match": {"path": "/healthz/ready"},
                            "direct_response": {"status": 200, "body": {"inline_string": "ok"}}}]),
                    vec![router])),
            ],
            "clusters": [{
                "name": "app", "type": "STATIC", "connect_timeout": "1s",
                "load_assignment": {"cluster_name": "app", "endpoints": [{"lb_endpoints": [
                    {"endpoint": {"address": {"socket_address":
                        {"address": "127.0.0.1", "port_value": 9080}}}}]}]}}],
        },
    });
    let config = dir.path().join("bootstrap.json");
    std::fs::write(&config, serde_json::to_vec_pretty(&bootstrap).unwrap()).unwrap();
    let mount = |host: &Path, inside: &str| format!("{}:{inside}:ro", host.display());

    let sidecar = Container::run(
        "sidecar",
        &[
            "-p",
            "127.0.0.1::15006",
            "-v",
            &mount(&config, "/etc/wasmesh/bootstrap.json"),
            "-v",
            &mount(&wasm, "/etc/wasmesh/filters/headers.wasm"),
            ENVOY,
            "-c",
            "/etc/wasmesh/bootstrap.json",
            "--log-level",
            "warning",
        ],
    );
    sidecar.wait_healthy(
        "http://127.0.0.1:15021/healthz/ready",
        Duration::from_secs(30),
    );
    let app = Container::run(
        "app",
        &[
            "--network",
            &format!("container:{}", sidecar.0),
            "-e",
            "SERVICE=details",
            "-e",
            "VERSION=v1",
            "-e",
            "INSTANCE=details-v1-0",
            "-e",
            "PORT=9080",
            "-e",
            "WASMESH_OUTBOUND=127.0.0.1:15001",
            DEMO,
        ],
    );
    app.wait_healthy("http://127.0.0.1:9080/healthz", Duration::from_secs(20));

    let port = sidecar.host_port(15006);
    let got = http::get(&format!("http://127.0.0.1:{port}/details/0")).unwrap();
    assert_eq!(got.status, 200, "{}", got.text());
    let body = got.json().unwrap();
    assert_eq!(body["service"], "details");
    assert_eq!(body["instance"], "details-v1-0");
    assert_eq!(
        got.header("x-wasmesh-image"),
        Some("scratch"),
        "the Wasm filter ran"
    );

    // SIGTERM (docker stop) ends the app cleanly, well before Docker's SIGKILL.
    let started = Instant::now();
    docker_ok(&["stop", "-t", "10", &app.0]);
    assert!(started.elapsed() < Duration::from_secs(5));
    let code = docker_ok(&["inspect", "-f", "{{.State.ExitCode}}", &app.0]);
    assert_eq!(code, "0");
}

#[test]
fn demo_image_serves_on_a_published_port_when_bound_to_all_interfaces() {
    images();
    let demo = Container::run(
        "demo",
        &[
            "-p",
            "127.0.0.1::9080",
            "-e",
            "SERVICE=reviews",
            "-e",
            "VERSION=v1",
            "-e",
            "BIND_ADDRESS=0.0.0.0",
            DEMO,
        ],
    );
    demo.wait_healthy("http://127.0.0.1:9080/health", Duration::from_secs(20));
    let port = demo.host_port(9080);
    let body = http::get(&format!("http://127.0.0.1:{port}/reviews/0"))
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(body["service"], "reviews");
    assert_eq!(body["version"], "v1");
    assert_eq!(body["reviews"].as_array().unwrap().len(), 2);
}

#[test]
fn prometheus_image_starts_and_gets_ready() {
    images();
    let dir = paths::TempDir::new("docker-prometheus").unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: self\n    \
         static_configs:\n      - targets: ['127.0.0.1:9090']\n",
    )
    .unwrap();
    let prom = Container::run(
        "prometheus",
        &[
            "-v",
            &format!("{}:/etc/prometheus/prometheus.yml:ro", config.display()),
            PROMETHEUS,
        ],
    );
    prom.wait_healthy("http://127.0.0.1:9090/-/ready", Duration::from_secs(30));
    let version = docker_ok(&["run", "--rm", PROMETHEUS, "--version"]);
    assert!(version.starts_with("prometheus, version"), "{version}");
}

#[test]
fn rerunning_the_script_rebuilds_nothing() {
    images();
    let out = run_script();
    assert!(out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    for image in [ENVOY, DEMO, PROMETHEUS] {
        assert!(log.contains(&format!("{image} is up to date")), "{log}");
    }
    assert!(!log.contains("building"), "{log}");
}

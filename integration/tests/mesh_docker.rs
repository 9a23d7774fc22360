//! The end-to-end suite against docker compose mode: the generated Bookinfo compose
//! project on the locally built images, checked from outside through the gateway.
//!
//! Opt-in: runs only with `WASMESH_DOCKER_TESTS=1` (CI sets it). Without it the test
//! says loudly that docker-mode e2e was not requested and asserts nothing; with it, a
//! missing Docker or Compose fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../src/localmesh/docker.rs"]
mod docker;

use std::time::{Duration, Instant};
use wasmesh_integration::http;

const GATE: &str = "WASMESH_DOCKER_TESTS";

/// Whether the docker suite was asked for; prints why not when it was not.
fn requested() -> bool {
    if std::env::var(GATE).is_ok_and(|v| v == "1") {
        return true;
    }
    // Straight to stderr, not eprintln!: the test harness captures the print macros
    // of passing tests, and this line must be seen.
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr().lock(),
        "\n*** docker-mode e2e NOT REQUESTED: set {GATE}=1 to run it; nothing was tested here ***\n"
    );
    false
}

#[test]
fn docker_compose_mesh_end_to_end() {
    if !requested() {
        return;
    }
    let mesh = docker::DockerMesh::start().unwrap_or_else(|e| panic!("{e:#}"));
    // What ran is what is checked in (the golden test keeps that file fresh).
    let checked_in = wasmesh_integration::paths::workspace_root().join("docker-compose.yml");
    assert_eq!(
        std::fs::read(mesh.compose_file()).unwrap(),
        std::fs::read(checked_in).unwrap(),
        "the generated compose file differs from the checked-in docker-compose.yml"
    );
    let url = format!("{}/productpage?format=json", mesh.gateway_url());
    let r = http::get(&url).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());

    // Prometheus scrapes the sidecars: istio_requests_total shows up (bounded poll).
    let query = format!(
        "{}/api/v1/query?query=istio_requests_total",
        mesh.prometheus_url()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let body = http::get(&query).map(|r| r.text()).unwrap_or_default();
        if body.contains("\"reporter\":\"destination\"") {
            break;
        }
        assert!(Instant::now() < deadline, "no istio_requests_total: {body}");
        std::thread::sleep(Duration::from_millis(500));
    }

    // mTLS STRICT: a plaintext request straight to a sidecar's inbound is refused.
    let addr = mesh.inbound_addr("details-v1-0").unwrap();
    let plain = http::raw_request(addr, b"GET /details/0 HTTP/1.1\r\nhost: details\r\n\r\n");
    assert!(plain.is_err(), "plaintext got an answer: {plain:?}");

    // Stop and start an instance.
    mesh.stop_instance("reviews-v1-0").unwrap();
    mesh.start_instance("reviews-v1-0").unwrap();
    assert_eq!(http::get(&url).unwrap().status, 200);
}

//! A filter's `failurePolicy` as generated, in real Envoy: a sidecar whose inbound
//! `headers` filter is played by the harness's probe module (it traps on demand,
//! `x-probe-op: trap`). FAIL_RELOAD: the VM is reloaded and later requests succeed.
//! FAIL_CLOSED (the default): later requests keep failing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests fail loudly.

mod common;

use common::{free_port_base, generated_bootstrap, scratch};
use std::path::Path;
use std::time::{Duration, Instant};
use wasmesh::topology;
use wasmesh_integration::{http, EchoServer, Envoy};

/// Envoy's default back-off before reloading a failed VM (`ReloadConfig`).
const RELOAD_BACKOFF: Duration = Duration::from_secs(1);

/// The server's sidecar (its inbound `headers` filter with `policy`, the probe's code)
/// and its app.
struct Sidecar {
    envoy: Envoy,
    app: EchoServer,
    inbound: String,
}

impl Sidecar {
    fn start(label: &str, policy: &str) -> Sidecar {
        let mesh_text = format!(
            r"
mesh:
  name: {label}
  mtls: DISABLE
services:
  - name: server
    port: 9080
    calls: []
    filters:
      inbound:
        - name: headers
          failurePolicy: {policy}
"
        );
        let mesh = wasmesh::load_str(Path::new("mesh.yaml"), &mesh_text).unwrap();
        let dir = scratch(label);
        // The probe stands in for the headers module: same generated filter entry,
        // code that traps when asked.
        let filters = dir.join("filters");
        std::fs::create_dir_all(&filters).unwrap();
        std::fs::copy(
            wasmesh_harness::build::wasm_module("wasmesh-probe"),
            filters.join(wasmesh::model::FilterName::Headers.wasm_file()),
        )
        .unwrap();
        let certs_dir = dir.join("certs");
        wasmesh::certs::ensure(&mesh, &certs_dir).unwrap();
        let base = free_port_base(1);
        let mut opts = wasmesh::GenerateOptions::process("out", base);
        opts.filters_dir = filters.display().to_string();
        opts.certs_dir = certs_dir.display().to_string();
        let files = wasmesh::generate(&mesh, &opts).unwrap();
        let ports = topology::instances(&mesh, topology::Target::Process { port_base: base })
            .unwrap()[0]
            .ports;
        let app = EchoServer::start_on(ports.app, "server").unwrap();
        let envoy = Envoy::start(&generated_bootstrap(&files, "server-v1-0")).unwrap();
        Sidecar {
            envoy,
            app,
            inbound: format!("http://127.0.0.1:{}/hello", ports.inbound),
        }
    }

    fn call(&self) -> http::Response {
        http::get(&self.inbound).unwrap()
    }

    /// A request that makes the filter's VM trap: it fails, whatever the policy.
    fn trap(&self) {
        let r = http::get_with(&self.inbound, &[("x-probe-op", "trap")]).unwrap();
        assert_eq!(r.status, 503, "the trapping request: {}", r.text());
    }
}

#[test]
fn fail_reload_reloads_the_vm_after_a_trap() {
    let sidecar = Sidecar::start("fail-reload", "FAIL_RELOAD");
    assert_eq!(sidecar.call().status, 200);
    sidecar.trap();
    // The next requests find a fresh VM once Envoy's reload back-off has passed.
    let deadline = Instant::now() + 5 * RELOAD_BACKOFF;
    let mut failed_meanwhile = 0;
    loop {
        let r = sidecar.call();
        if r.status == 200 {
            break;
        }
        failed_meanwhile += 1;
        assert!(
            Instant::now() < deadline,
            "still {} after {failed_meanwhile} calls: {}",
            r.status,
            sidecar.envoy.log_tail(20)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let served = sidecar.app.requests();
    for _ in 0..5 {
        assert_eq!(sidecar.call().status, 200);
    }
    assert_eq!(sidecar.app.requests(), served + 5);
}

#[test]
fn fail_closed_keeps_failing_after_a_trap() {
    let sidecar = Sidecar::start("fail-closed", "FAIL_CLOSED");
    assert_eq!(sidecar.call().status, 200);
    sidecar.trap();
    let served = sidecar.app.requests();
    // Three times Envoy's reload back-off (1 s): FAIL_RELOAD would be serving again.
    let until = Instant::now() + 3 * RELOAD_BACKOFF;
    let mut calls = 0;
    while Instant::now() < until {
        let r = sidecar.call();
        assert_eq!(r.status, 503, "call {calls} after the trap: {}", r.text());
        calls += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        sidecar.app.requests(),
        served,
        "a request passed the failed VM"
    );
}

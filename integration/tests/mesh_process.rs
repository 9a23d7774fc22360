//! The local mesh end to end, in process mode: `wasmesh up` on the test mesh
//! (`tests/meshes/bookinfo.yaml`), every scenario of `localmesh::scenarios` from
//! outside (gateway, Prometheus, sidecar ports), then `wasmesh down` leaving no process.
//!
//! One test, one mesh: bringing Bookinfo up takes seconds, and the scenarios must not
//! overlap (they count requests). Every scenario runs even after one fails; the test
//! then fails naming each failure, with the mesh's logs kept.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests fail loudly.

use std::time::Instant;
use wasmesh_integration::localmesh::process::ProcessMesh;
use wasmesh_integration::localmesh::scenarios;
use wasmesh_integration::paths;

#[test]
fn bookinfo_process_mode_end_to_end() {
    let started = Instant::now();
    let mut mesh =
        ProcessMesh::start(&paths::workspace_root().join("integration/tests/meshes/bookinfo.yaml"))
            .unwrap();
    eprintln!("up in {:.1} s", started.elapsed().as_secs_f64());
    mesh.run_scenarios(&scenarios::ALL).unwrap();

    // down stops everything up started: no PID and no process group is left.
    let pids = mesh.pids();
    assert!(pids.len() >= 14, "{pids:?}");
    mesh.down_leaving_nothing().unwrap();
    eprintln!(
        "all scenarios and down in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// The same scenarios with every filter in the native dynamic module (`up --native`):
/// the stages, configs and outcomes are the Wasm filters' (docs/native-target.md).
#[test]
fn bookinfo_native_process_mode_end_to_end() {
    let root = paths::workspace_root();
    // The module `up --native` loads (dist/native), built from this tree now: `up` only
    // builds it when it is missing, and a stale one must not be tested.
    let status = std::process::Command::new(root.join("scripts/build-filters.sh"))
        .arg("native")
        .current_dir(&root)
        .status()
        .unwrap();
    assert!(status.success(), "scripts/build-filters.sh native failed");
    let mut mesh = ProcessMesh::start_with(
        &root.join("integration/tests/meshes/bookinfo.yaml"),
        &["--native"],
    )
    .unwrap();
    let failures = scenarios::run_all(&mut mesh);
    if !failures.is_empty() {
        let logs = mesh.keep_logs();
        panic!(
            "{} scenario(s) failed natively (logs in {}/logs):\n{}",
            failures.len(),
            logs.display(),
            failures.join("\n")
        );
    }
    let out = mesh.down().unwrap();
    assert!(out.contains("is down"), "{out}");
}

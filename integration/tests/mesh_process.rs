//! The local mesh end to end, in process mode: `wasmesh up` on the test mesh
//! (`tests/meshes/bookinfo.yaml`), every scenario of `localmesh::scenarios` from
//! outside (gateway, Prometheus, sidecar ports), then `wasmesh down` leaving no process.
//!
//! One test, one mesh: bringing Bookinfo up takes seconds, and the scenarios must not
//! overlap (they count requests). Every scenario runs even after one fails; the test
//! then fails naming each failure, with the mesh's logs kept.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests fail loudly.

use std::time::Instant;
use wasmesh_integration::localmesh::process::{running, ProcessMesh};
use wasmesh_integration::localmesh::scenarios;
use wasmesh_integration::paths;

fn group_alive(pgid: i32) -> bool {
    std::fs::read_dir("/proc").unwrap().any(|e| {
        let Some(pid) = e
            .ok()
            .and_then(|e| e.file_name().to_str()?.parse::<i32>().ok())
        else {
            return false;
        };
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                let rest = s.rsplit_once(')')?.1.to_string();
                let f: Vec<&str> = rest.split_whitespace().collect();
                Some(f.first()? != &"Z" && f.get(2)?.parse::<i32>().ok()? == pgid)
            })
            .unwrap_or(false)
    })
}

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
    let groups = mesh.process_groups();
    assert!(pids.len() >= 14, "{pids:?}");
    let out = mesh.down().unwrap();
    assert!(out.contains("is down"), "{out}");
    for (name, pid) in &pids {
        assert!(!running(*pid), "{name} (pid {pid}) still runs after down");
    }
    for pgid in groups {
        assert!(
            !group_alive(pgid),
            "process group {pgid} still has members after down"
        );
    }
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

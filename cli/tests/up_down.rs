//! `wasmesh up` and `wasmesh down` as a user runs them: the binary, the Bookinfo
//! example, real Envoy and the demo services. Up returns with the mesh serving through
//! the gateway, with separate filters or (`--bundle`) the one-VM mesh module; down
//! leaves no process behind and is idempotent.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests fail loudly.

mod common;

use std::path::Path;
use std::process::Command;
use wasmesh::state;
use wasmesh_integration::http;

fn wasmesh(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wasmesh"))
        .args(args)
        .current_dir(common::workspace_root())
        .output()
        .unwrap()
}

fn pids_alive(dir: &Path) -> Vec<String> {
    let st = state::load(dir).unwrap().expect("state written by up");
    st.processes
        .iter()
        .filter(|p| p.is_alive() || !state::group_members(p.pgid).is_empty())
        .map(|p| format!("{} (pid {})", p.name, p.pid))
        .collect()
}

#[test]
fn up_serves_bookinfo_and_down_leaves_nothing() {
    let dir = up_serve_down("separate", &[]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The same with every chain as one mesh-module filter: same pages, same faults.
#[test]
fn up_bundled_serves_bookinfo_through_the_mesh_module() {
    let dir = up_serve_down("bundled", &["--bundle"]);
    // Six sidecars and the gateway (its ratelimit), each with its filters in one module.
    common::assert_bundled(&dir.join("config"), 7);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Up (with `extra` flags) on Bookinfo, 20 pages through the gateway, down; returns the
/// state directory, where down leaves the generated configs (`config/`).
fn up_serve_down(label: &str, extra: &[&str]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("wasmesh-up-down-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // Room for Bookinfo's 7 instance blocks plus a gateway port.
    let base = wasmesh_integration::ports::free_range(80).unwrap();
    let gateway = base + 75;
    let dir_s = dir.to_str().unwrap();
    let (certs, base_s, gateway_s) = (
        format!("{dir_s}/certs"),
        base.to_string(),
        gateway.to_string(),
    );
    let mut args = vec![
        "up",
        "--state-dir",
        dir_s,
        "--certs",
        &certs,
        "--port-base",
        &base_s,
        "--gateway-port",
        &gateway_s,
        "--no-prometheus",
    ];
    args.extend_from_slice(extra);
    let out = wasmesh(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("[13/13]"), "progress display: {stdout}");
    assert!(stdout.contains(&format!("curl -s http://127.0.0.1:{gateway}/productpage")));
    // Up has returned; the processes it started stay up (detached).
    let state_before = state::load(&dir).unwrap().unwrap();
    assert_eq!(pids_alive(&dir).len(), state_before.processes.len());

    // Bookinfo's mesh file aborts 10% of ratings calls on purpose, so a page may lose
    // its ratings to that fault, and to nothing else; most pages are whole.
    let mut whole = 0;
    for _ in 0..20 {
        let r = http::get(&format!(
            "http://127.0.0.1:{gateway}/productpage?format=json"
        ))
        .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        let page = r.json().unwrap();
        if page["degraded"] == serde_json::json!([]) {
            whole += 1;
            continue;
        }
        assert_eq!(page["degraded"], serde_json::json!(["ratings"]), "{page}");
        assert_eq!(
            page["reviews"]["ratings"]["reason"], "fault filter abort",
            "{page}"
        );
    }
    assert!(whole >= 10, "only {whole} of 20 pages were whole");

    // A second `up` on the same state directory refuses rather than doubling the mesh.
    let again = wasmesh(&["up", "--state-dir", dir_s, "--no-prometheus"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already up"));

    let out = wasmesh(&["down", "--state-dir", dir_s]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("stopped 13 processes"));
    for p in &state_before.processes {
        assert!(!p.is_alive(), "{} (pid {}) survived down", p.name, p.pid);
        assert!(
            state::group_members(p.pgid).is_empty(),
            "{}'s process group {} survived down",
            p.name,
            p.pgid
        );
    }
    assert!(
        state::load(&dir).unwrap().is_none(),
        "down removes the state"
    );
    let again = wasmesh(&["down", "--state-dir", dir_s]);
    assert!(again.status.success(), "down is idempotent");
    assert!(String::from_utf8_lossy(&again.stdout).contains("no mesh is up"));
    dir
}

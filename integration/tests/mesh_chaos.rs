//! Faults injected into the local mesh in process mode (`wasmesh up` without Docker):
//! what the mesh survives, and what `wasmesh` does when its own state goes wrong.
//! docs/reliability.md has the table.
//!
//! Bringing Bookinfo up costs tens of seconds, so the two faults that need a running
//! mesh (Prometheus down, a sidecar killed) share one, one after the other; the
//! crash of `wasmesh up` needs its own half-started mesh, and the unwritable state
//! directory none at all.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests fail loudly.

use std::net::TcpStream;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use wasmesh_integration::localmesh::process::{
    build_binaries, read_state, running, wasmesh_in, ProcessMesh, UpCommand,
};
use wasmesh_integration::localmesh::scenarios::whole_pages;
use wasmesh_integration::paths::{self, TempDir};

fn bookinfo() -> std::path::PathBuf {
    paths::workspace_root().join("integration/tests/meshes/bookinfo.yaml")
}

/// Live processes whose command line names `dir` (every process a mesh starts reads
/// its config, log or data from its state directory).
fn processes_using(dir: &Path) -> Vec<(i32, String)> {
    let needle = dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| running(*pid) && *pid != std::process::id() as i32)
        .filter_map(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            cmd.contains(&needle).then_some((pid, cmd))
        })
        .collect()
}

fn poll<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn pid_of(mesh: &ProcessMesh, name: &str) -> i32 {
    mesh.pids()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no {name} in {:?}", mesh.pids()))
        .1
}

/// SIGKILL, as a crash or the OOM killer would: no chance to clean up.
fn kill(pid: i32) {
    // SAFETY: kill(2) with a PID the mesh state recorded for this test's own mesh.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0, "kill {pid}");
    poll(
        &format!("pid {pid} to die"),
        Duration::from_secs(10),
        || (!running(pid)).then_some(()),
    );
}

/// Pages through the gateway; at least 99% whole (200, reviews not degraded).
fn pages_stay_whole(mesh: &ProcessMesh, n: usize, while_: &str) -> String {
    let (whole, n) = whole_pages(mesh, n).unwrap();
    // 99% of n: with n = 200 at most 2 pages may degrade.
    assert!(
        whole * 100 >= n * 99,
        "{whole}/{n} pages whole {while_}; want >= 99%"
    );
    format!("{whole}/{n} pages whole {while_}")
}

/// Prometheus killed: it only scrapes, so pages through the mesh stay whole. `wasmesh
/// start prometheus` brings it back (nothing restarts it by itself).
fn prometheus_down_leaves_requests_unaffected(mesh: &mut ProcessMesh) -> String {
    let prometheus = pid_of(mesh, "prometheus");
    kill(prometheus);
    let during = pages_stay_whole(mesh, 200, "with Prometheus killed");
    mesh.run(&["start", "prometheus"]).unwrap();
    mesh.reload_state().unwrap();
    assert!(running(pid_of(mesh, "prometheus")));
    during
}

/// A sidecar killed: the service's other replica takes its calls (retries, outlier
/// detection) so pages stay whole. `wasmesh` has no supervisor: the sidecar stays
/// dead, `status` says so, and `wasmesh start INSTANCE` restarts just that process.
fn killed_sidecar_is_routed_around_and_restarted_by_start(mesh: &mut ProcessMesh) -> String {
    let victim = "reviews-v1-0-sidecar";
    let pid = pid_of(mesh, victim);
    let app = pid_of(mesh, "reviews-v1-0");
    kill(pid);
    let during = pages_stay_whole(mesh, 200, &format!("with {victim} killed"));
    assert!(!running(pid), "{victim} came back by itself");
    // `status` reads each sidecar's admin endpoint: the dead one's instance is `down`.
    let status = mesh.run(&["status", "--interval", "0.5"]).unwrap();
    let line = status
        .lines()
        .find(|l| l.split_whitespace().any(|w| w == "reviews-v1-0"))
        .unwrap_or_else(|| panic!("status does not list reviews-v1-0:\n{status}"));
    assert!(
        line.trim_end().ends_with("down"),
        "status on the dead {victim}: {line}"
    );
    mesh.run(&["start", "reviews-v1-0"]).unwrap();
    mesh.reload_state().unwrap();
    let restarted = pid_of(mesh, victim);
    assert_ne!(restarted, pid);
    assert!(running(restarted));
    assert_eq!(
        pid_of(mesh, "reviews-v1-0"),
        app,
        "the live app was restarted too"
    );
    let inbound = wasmesh_integration::localmesh::LocalMesh::inbound_addr(mesh, "reviews-v1-0");
    poll(
        "the restarted sidecar's inbound port",
        Duration::from_secs(30),
        || TcpStream::connect_timeout(&inbound, Duration::from_secs(1)).ok(),
    );
    let after = pages_stay_whole(mesh, 100, "after `wasmesh start reviews-v1-0`");
    format!("{during}; status line `{}`; {after}", line.trim())
}

#[test]
fn prometheus_down_and_a_killed_sidecar() {
    let started = Instant::now();
    let mut mesh = ProcessMesh::start(&bookinfo()).unwrap();
    eprintln!("up in {:.1} s", started.elapsed().as_secs_f64());
    assert!(
        mesh.pids().iter().any(|(n, _)| n == "prometheus"),
        "Prometheus is not part of this mesh (not on PATH?): {:?}",
        mesh.pids()
    );
    let prometheus = prometheus_down_leaves_requests_unaffected(&mut mesh);
    eprintln!("prometheus_down_leaves_requests_unaffected: {prometheus}");
    let sidecar = killed_sidecar_is_routed_around_and_restarted_by_start(&mut mesh);
    eprintln!("killed_sidecar_is_routed_around_and_restarted_by_start: {sidecar}");
    let out = mesh.down().unwrap();
    assert!(out.contains("is down"), "{out}");
    eprintln!("done in {:.1} s", started.elapsed().as_secs_f64());
}

/// `wasmesh up` SIGKILLed half-way: the processes it started run on (they are
/// detached); `wasmesh down` stops every one recorded in the state file, and one that
/// `up` started but had not recorded yet (found by its log file in the state
/// directory: an earlier run of this test left such a sidecar behind).
#[test]
fn down_after_wasmesh_crashed_stops_what_it_had_started() {
    let wasmesh = build_binaries().unwrap();
    let dir = TempDir::new("chaos-crash").unwrap();
    let mut up = UpCommand::new(&wasmesh, &bookinfo(), dir.path(), &[]).unwrap();
    let mut child = up
        .command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    poll("up to record 4 processes", Duration::from_secs(120), || {
        let st = read_state(dir.path()).ok()?;
        let procs = st["processes"].as_array()?.clone();
        (procs.len() >= 4).then_some(())
    });
    child.kill().unwrap(); // SIGKILL: no clean-up path of `up` runs.
    child.wait().unwrap();
    let st = read_state(dir.path()).unwrap();
    let pids: Vec<(String, i32)> = st["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["pid"].as_i64().unwrap() as i32,
            )
        })
        .collect();
    assert!(
        pids.iter().any(|(_, pid)| running(*pid)),
        "nothing survived the crash of up: {pids:?}"
    );
    let out = wasmesh_in(&wasmesh, dir.path(), &["down"]).unwrap();
    assert!(out.contains("is down"), "{out}");
    eprintln!("{} recorded at the crash; down: {out}", pids.len());
    for (name, pid) in &pids {
        assert!(!running(*pid), "{name} (pid {pid}) still runs after down");
    }
    assert!(
        processes_using(dir.path()).is_empty(),
        "left behind: {:?}",
        processes_using(dir.path())
    );
    assert!(!dir.join("state.json").exists());
}

/// Runs `up` to its end: whether it succeeded, and all it printed.
fn run_up(mut up: UpCommand) -> (bool, String) {
    let out = up.command.output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    (out.status.success(), text)
}

/// A state directory `up` cannot write: a clear error naming it, and no process of the
/// mesh left running. Two ways: the directory cannot be created (its parent is a file),
/// and the state file cannot be written once the first process has started.
#[test]
fn unwritable_state_dir_at_up_is_a_clear_error_and_starts_nothing() {
    let wasmesh = build_binaries().unwrap();
    let scratch = TempDir::new("chaos-unwritable").unwrap();

    let file = scratch.join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let state_dir = file.join("state");
    let (ok, text) = run_up(UpCommand::new(&wasmesh, &bookinfo(), &state_dir, &[]).unwrap());
    assert!(!ok, "up succeeded:\n{text}");
    assert!(
        text.contains(&*state_dir.to_string_lossy()) && text.contains("Not a directory"),
        "{text}"
    );
    assert!(processes_using(&state_dir).is_empty());

    // The state file's temporary name taken by a directory: the first process starts,
    // then recording it fails.
    let state_dir = scratch.join("state");
    std::fs::create_dir_all(state_dir.join("state.json.tmp")).unwrap();
    let (ok, text) = run_up(UpCommand::new(&wasmesh, &bookinfo(), &state_dir, &[]).unwrap());
    assert!(!ok, "up succeeded:\n{text}");
    assert!(
        text.contains("state.json.tmp"),
        "the error does not name the state file:\n{text}"
    );
    assert!(
        processes_using(&state_dir).is_empty(),
        "half-started: {:?}",
        processes_using(&state_dir)
    );
    assert!(!state_dir.join("state.json").exists());
}

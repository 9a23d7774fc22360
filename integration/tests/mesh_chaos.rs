//! Faults injected into the local mesh in process mode (`wasmesh up` without Docker):
//! what the mesh survives, and what `wasmesh` does when its own state goes wrong.
//! docs/reliability.md has the table.
//!
//! Bringing Bookinfo up costs tens of seconds, so Prometheus down and a sidecar killed
//! share one mesh, one after the other; the kill under load has its own (its figure
//! must not mix with other faults), the crash of `wasmesh up` its own half-started one,
//! and the unwritable state directory and the full disk none at all.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests fail loudly.

use std::net::TcpStream;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
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

/// Prometheus killed: it only scrapes, so pages through the mesh stay whole; the
/// supervisor starts it again.
fn prometheus_down_leaves_requests_unaffected(mesh: &mut ProcessMesh) -> String {
    let prometheus = pid_of(mesh, "prometheus");
    kill(prometheus);
    let during = pages_stay_whole(mesh, 200, "with Prometheus killed");
    let back = restarted_by_supervisor(mesh, "prometheus", prometheus);
    format!("{during}; the supervisor restarted it as pid {back}")
}

/// Polls the state file until the supervisor has started `name` again (a live PID
/// other than `old`): the new PID.
fn restarted_by_supervisor(mesh: &mut ProcessMesh, name: &str, old: i32) -> i32 {
    poll(
        &format!("the supervisor to restart {name}"),
        Duration::from_secs(30),
        || {
            mesh.reload_state().ok()?;
            let pid = pid_of(mesh, name);
            (pid != old && running(pid)).then_some(pid)
        },
    )
}

fn supervisor_log(mesh: &ProcessMesh) -> String {
    std::fs::read_to_string(mesh.state_dir().join("logs/supervisor.log")).unwrap_or_default()
}

fn supervisor_pid(mesh: &ProcessMesh) -> i32 {
    let st = read_state(mesh.state_dir()).unwrap();
    st["supervisor"]["pid"]
        .as_i64()
        .expect("no supervisor in the state") as i32
}

/// A sidecar SIGKILLed recovers with no command run: the supervisor `up` left behind
/// restarts it (logged, counted in `status`), its inbound port answers again, and pages
/// stay whole afterwards. An instance stopped on purpose (`wasmesh stop`) is left down
/// until `wasmesh start`.
fn killed_sidecar_recovers_without_manual_action(mesh: &mut ProcessMesh) -> String {
    let victim = "reviews-v1-0-sidecar";
    let pid = pid_of(mesh, victim);
    let app = pid_of(mesh, "reviews-v1-0");
    let killed_at = Instant::now();
    kill(pid);
    let restarted = restarted_by_supervisor(mesh, victim, pid);
    let inbound = wasmesh_integration::localmesh::LocalMesh::inbound_addr(mesh, "reviews-v1-0");
    poll(
        "the restarted sidecar's inbound port",
        Duration::from_secs(30),
        || TcpStream::connect_timeout(&inbound, Duration::from_secs(1)).ok(),
    );
    let recovered_in = killed_at.elapsed();
    assert_eq!(
        pid_of(mesh, "reviews-v1-0"),
        app,
        "the live app was restarted too"
    );
    let log = supervisor_log(mesh);
    let line = log
        .lines()
        .find(|l| l.contains(&format!("restarted {victim}: pid {pid} had exited")))
        .unwrap_or_else(|| panic!("the supervisor logged no restart of {victim}:\n{log}"))
        .to_string();
    let status = mesh.run(&["status", "--interval", "0.5"]).unwrap();
    assert!(
        status.contains(&format!("{victim} (1)")) && status.contains("supervisor: running"),
        "status does not show the restart:\n{status}"
    );
    let after = pages_stay_whole(mesh, 200, "after the supervisor restarted it");

    // Stopped on purpose: left down, and said so in the log.
    mesh.run(&["stop", "reviews-v1-0"]).unwrap();
    poll(
        "the supervisor to leave the stopped instance down",
        Duration::from_secs(10),
        || {
            let log = supervisor_log(mesh);
            (log.contains("leaving reviews-v1-0 down")
                && log.contains(&format!("leaving {victim} down")))
            .then_some(())
        },
    );
    mesh.reload_state().unwrap();
    assert!(!running(pid_of(mesh, victim)) && !running(pid_of(mesh, "reviews-v1-0")));
    mesh.run(&["start", "reviews-v1-0"]).unwrap();
    mesh.reload_state().unwrap();
    assert!(running(pid_of(mesh, victim)) && running(pid_of(mesh, "reviews-v1-0")));
    format!(
        "serving again {:.1} s after the kill (pid {pid} -> {restarted}); log `{}`; {after}; \
         `wasmesh stop` left it down until `start`",
        recovered_in.as_secs_f64(),
        line.trim()
    )
}

#[test]
fn prometheus_down_and_a_killed_sidecar_recovers_by_itself() {
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
    let sidecar = killed_sidecar_recovers_without_manual_action(&mut mesh);
    eprintln!("killed_sidecar_recovers_without_manual_action: {sidecar}");
    let supervisor = supervisor_pid(&mesh);
    let out = mesh.down().unwrap();
    assert!(out.contains("is down"), "{out}");
    assert!(!running(supervisor), "down left the supervisor running");
    eprintln!("done in {:.1} s", started.elapsed().as_secs_f64());
}

/// What one load client saw.
#[derive(Default)]
struct Tally {
    whole: usize,
    failed: Vec<String>,
}

/// A replica killed while a concurrent load runs through the gateway: 4 clients, each
/// at most 20 pages/s (the gateway's rate limit is 100/s per client IP), for 30 s; the
/// reviews-v1-0 sidecar is SIGKILLed at 5 s and the reviews-v1-1 app at 15 s. Every
/// request is counted; at least 99% must be whole (200, reviews not degraded).
#[test]
fn replica_killed_under_load_keeps_99_percent_of_requests() {
    let mut mesh = ProcessMesh::start(&bookinfo()).unwrap();
    let url = format!(
        "{}/productpage?format=json",
        wasmesh_integration::localmesh::LocalMesh::gateway_url(&mesh)
    );
    let stop = AtomicBool::new(false);
    let sidecar = pid_of(&mesh, "reviews-v1-0-sidecar");
    let app = pid_of(&mesh, "reviews-v1-1");
    let tallies: Vec<Tally> = std::thread::scope(|s| {
        let clients: Vec<_> = (0..4)
            .map(|_| s.spawn(|| load_client(&url, &stop)))
            .collect();
        let t0 = Instant::now();
        // The fault schedule of a load test, not a readiness wait.
        std::thread::sleep(Duration::from_secs(5));
        kill(sidecar);
        std::thread::sleep(Duration::from_secs(15).saturating_sub(t0.elapsed()));
        kill(app);
        std::thread::sleep(Duration::from_secs(30).saturating_sub(t0.elapsed()));
        stop.store(true, Ordering::SeqCst);
        clients.into_iter().map(|c| c.join().unwrap()).collect()
    });
    let whole: usize = tallies.iter().map(|t| t.whole).sum();
    let failed: Vec<&String> = tallies.iter().flat_map(|t| &t.failed).collect();
    let n = whole + failed.len();
    eprintln!(
        "replica_killed_under_load: {whole}/{n} requests whole ({:.2}%), {} failed: {:?}",
        100.0 * whole as f64 / n.max(1) as f64,
        failed.len(),
        &failed[..failed.len().min(10)]
    );
    assert!(n >= 400, "only {n} requests in 30 s: the load did not run");
    assert!(
        whole * 100 >= n * 99,
        "{whole}/{n} whole with a replica killed under load; want >= 99%: {failed:?}"
    );
    // Both came back by themselves.
    restarted_by_supervisor(&mut mesh, "reviews-v1-0-sidecar", sidecar);
    restarted_by_supervisor(&mut mesh, "reviews-v1-1", app);
    mesh.down().unwrap();
}

/// One client of the load: pages until `stop`, at most one per 50 ms; every answer
/// counted (a 429 too: the load is paced to stay under the limit).
fn load_client(url: &str, stop: &AtomicBool) -> Tally {
    let mut t = Tally::default();
    while !stop.load(Ordering::SeqCst) {
        let sent = Instant::now();
        match wasmesh_integration::http::get(url) {
            Ok(r) if r.status == 200 => {
                let degraded = r
                    .json()
                    .ok()
                    .and_then(|p| p["degraded"].as_array().cloned())
                    .unwrap_or_default();
                if degraded.iter().any(|d| d == "reviews") {
                    t.failed.push("200 with reviews degraded".into());
                } else {
                    t.whole += 1;
                }
            }
            Ok(r) => t.failed.push(format!(
                "{} {}",
                r.status,
                r.text().chars().take(80).collect::<String>()
            )),
            Err(e) => t.failed.push(format!("error: {e:#}")),
        }
        // Pacing the client, not waiting for readiness.
        std::thread::sleep(Duration::from_millis(50).saturating_sub(sent.elapsed()));
    }
    t
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

/// A size-limited tmpfs mounted on a directory, so the disk really fills (ENOSPC from
/// the kernel, not a simulated error); unmounted on drop. Needs root (or
/// CAP_SYS_ADMIN): without it the test fails saying so.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, options: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir)
            .output()
            .expect("running mount");
        assert!(
            out.status.success(),
            "cannot mount a tmpfs ({options}) on {} to fill the disk: {} \
             (the disk-full test needs root or CAP_SYS_ADMIN, as in CI's container)",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Tmpfs(dir.to_path_buf())
    }

    fn remount(&self, options: &str) {
        let out = std::process::Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.0)
            .output()
            .expect("running mount");
        assert!(
            out.status.success(),
            "remount {options}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Inodes in use (files and directories, the root included).
    fn inodes_used(&self) -> u64 {
        let path = std::ffi::CString::new(self.0.to_string_lossy().as_bytes()).unwrap();
        // SAFETY: statvfs(3) fills the zeroed struct we own from a NUL-terminated path.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::statvfs(path.as_ptr(), &mut st) }, 0);
        st.f_files - st.f_ffree
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a process still holding a file there must not keep the mount busy.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Fills the filesystem holding `file` until the kernel answers ENOSPC.
fn fill(file: &Path) {
    let mut f = std::fs::File::create(file).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    loop {
        if let Err(e) = std::io::Write::write_all(&mut f, &chunk) {
            assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "filling: {e}");
            return;
        }
    }
}

/// The disk full at `up`, two ways, on a real full filesystem (a tmpfs): no byte left
/// (the configs cannot be written), and no inode left once the first process is
/// started (its successor's log file cannot be created). Either way `up` fails with
/// the kernel's "No space left on device" naming the file, and nothing runs after it.
#[test]
fn disk_full_at_up_is_a_clear_error_and_leaves_nothing_started() {
    let wasmesh = build_binaries().unwrap();
    let scratch = TempDir::new("chaos-disk-full").unwrap();

    // No space at all.
    let state_dir = scratch.join("full");
    let fs = Tmpfs::mount(&state_dir, "size=1m");
    fill(&state_dir.join("filler"));
    let (ok, text) = run_up(UpCommand::new(&wasmesh, &bookinfo(), &state_dir, &[]).unwrap());
    assert!(!ok, "up succeeded on a full disk:\n{text}");
    assert!(
        text.contains("No space left on device") && text.contains(&*state_dir.to_string_lossy()),
        "the error does not say the disk is full, or where:\n{text}"
    );
    assert!(processes_using(&state_dir).is_empty());
    assert!(!state_dir.join("state.json").exists());
    let first = text
        .lines()
        .find(|l| l.contains("error"))
        .unwrap_or("")
        .to_string();
    drop(fs);

    // Room for what `up` writes before it starts a process (the configs and their xDS
    // files, the digest-named module copies, the certificates), then for exactly one
    // process: its log and the state file that records it. The second log cannot be
    // created. A first `up` and `down` leave the former in place; their logs go.
    let state_dir = scratch.join("inodes");
    let fs = Tmpfs::mount(&state_dir, "size=64m");
    let (ok, text) = run_up(UpCommand::new(&wasmesh, &bookinfo(), &state_dir, &[]).unwrap());
    assert!(ok, "up on the roomy filesystem:\n{text}");
    let out = wasmesh_in(&wasmesh, &state_dir, &["down"]).unwrap();
    assert!(out.contains("is down"), "{out}");
    std::fs::remove_dir_all(state_dir.join("logs")).unwrap();
    // The logs directory, the first log, the state file's temporary name.
    let budget = fs.inodes_used() + 3;
    fs.remount(&format!("nr_inodes={budget}"));
    let (ok, text) = run_up(UpCommand::new(&wasmesh, &bookinfo(), &state_dir, &[]).unwrap());
    assert!(!ok, "up succeeded with no inode left:\n{text}");
    assert!(
        text.contains("No space left on device") && text.contains(".log"),
        "the error does not say the disk is full, or where:\n{text}"
    );
    assert!(
        processes_using(&state_dir).is_empty(),
        "half-started: {:?}",
        processes_using(&state_dir)
    );
    assert!(!state_dir.join("state.json").exists());
    let second = text
        .lines()
        .find(|l| l.contains("error"))
        .unwrap_or("")
        .to_string();
    eprintln!("disk full: `{first}`; inodes out after the first process: `{second}`");
}

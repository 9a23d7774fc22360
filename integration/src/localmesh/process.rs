//! [`LocalMesh`] in process mode: drives the `wasmesh` binary (`up`, `stop`, `start`,
//! `down`) as a user would, with its own state directory, certificates and free ports,
//! so the suite never collides with a mesh the user has running (`.wasmesh/run`, ports
//! 20000+, 8080, 9090).

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

use super::LocalMesh;
use crate::admin::Admin;
use crate::http::{self, Response};
use crate::paths::{self, TempDir};

/// Ports reserved per mesh: 10 per instance (room for 39 instances), then the
/// gateway's and Prometheus' ports at the end.
const BLOCK_SPAN: u16 = 400;

#[derive(Debug)]
pub struct ProcessMesh {
    wasmesh: PathBuf,
    dir: TempDir,
    gateway: u16,
    prometheus: Option<u16>,
    /// The state `up` wrote (`state.json`): instances, ports, PIDs.
    state: Value,
    /// What `up` printed (progress, table, commands).
    pub up_output: String,
    stopped: bool,
}

impl ProcessMesh {
    /// Builds `wasmesh` and `wasmesh-demo` (a no-op when fresh), then `wasmesh up MESH`.
    pub fn start(mesh: &Path) -> Result<ProcessMesh> {
        Self::start_with(mesh, &[])
    }

    /// As [`ProcessMesh::start`], with more `wasmesh up` flags (`--native`, `--bundle`).
    pub fn start_with(mesh: &Path, up_flags: &[&str]) -> Result<ProcessMesh> {
        let wasmesh = build_binaries()?;
        let mut dir = TempDir::new("localmesh")?;
        let up = UpCommand::new(&wasmesh, mesh, dir.path(), up_flags)?;
        let (gateway, prometheus) = (up.gateway, up.prometheus);
        let dir_s = dir.path().to_string_lossy().into_owned();
        let out = { up }.command.output().context("running wasmesh up")?;
        let up_output = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !out.status.success() {
            dir.keep();
            bail!("wasmesh up failed (logs kept in {dir_s}/logs):\n{up_output}");
        }
        let state = read_state(dir.path())?;
        let prometheus = state["prometheus_url"].as_str().map(|_| prometheus);
        Ok(ProcessMesh {
            wasmesh,
            dir,
            gateway,
            prometheus,
            state,
            up_output,
            stopped: false,
        })
    }

    pub fn state_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Every PID `up` recorded, with the process name.
    pub fn pids(&self) -> Vec<(String, i32)> {
        self.processes()
            .filter_map(|p| {
                Some((
                    p["name"].as_str()?.to_string(),
                    i32::try_from(p["pid"].as_i64()?).ok()?,
                ))
            })
            .collect()
    }

    /// Process groups `up` recorded.
    pub fn process_groups(&self) -> Vec<i32> {
        self.processes()
            .filter_map(|p| i32::try_from(p["pgid"].as_i64()?).ok())
            .collect()
    }

    /// Leaves the state directory (logs) in place, for a failing test.
    pub fn keep_logs(&mut self) -> PathBuf {
        self.dir.keep();
        self.dir.path().to_path_buf()
    }

    /// Runs `list` (see [`super::scenarios::run`]); on any failure keeps the logs and
    /// fails listing the failures and where the logs are. For the end-to-end tests.
    pub fn run_scenarios(&mut self, list: &[(&str, super::scenarios::Scenario)]) -> Result<()> {
        let failures = super::scenarios::run(self, list);
        if !failures.is_empty() {
            let logs = self.keep_logs();
            bail!(
                "{} scenario(s) failed (logs in {}/logs):\n{}",
                failures.len(),
                logs.display(),
                failures.join("\n")
            );
        }
        Ok(())
    }

    /// `wasmesh down`; also run on drop.
    pub fn down(&mut self) -> Result<String> {
        let out = self.wasmesh(&["down"])?;
        self.stopped = true;
        Ok(out)
    }

    /// `wasmesh down`, then fails unless it said the mesh is down and no process `up`
    /// recorded (tools such as the rate limit service included) and no member of their
    /// process groups is left. What `down` printed.
    pub fn down_leaving_nothing(&mut self) -> Result<String> {
        let pids = self.pids();
        let groups = self.process_groups();
        let out = self.down()?;
        if !out.contains("is down") {
            bail!("wasmesh down did not say the mesh is down:\n{out}");
        }
        let left: Vec<String> = pids
            .iter()
            .filter(|(_, pid)| running(*pid))
            .map(|(name, pid)| format!("{name} (pid {pid})"))
            .chain(
                groups
                    .iter()
                    .filter(|g| group_alive(**g))
                    .map(|g| format!("a member of process group {g}")),
            )
            .collect();
        if !left.is_empty() {
            bail!("still running after down: {}", left.join(", "));
        }
        Ok(out)
    }

    /// The admin API of `PROCESS` (`limited-v1-0-sidecar`, `ingressgateway`...).
    pub fn admin(&self, process: &str) -> Result<Admin> {
        let port = self.port(process, "admin")?;
        Ok(Admin::new(SocketAddr::from(([127, 0, 0, 1], port))))
    }

    fn processes(&self) -> impl Iterator<Item = &Value> {
        self.state["processes"].as_array().into_iter().flatten()
    }

    fn process(&self, name: &str) -> Option<&Value> {
        self.processes().find(|p| p["name"] == name)
    }

    fn port(&self, process: &str, role: &str) -> Result<u16> {
        self.process(process)
            .and_then(|p| p["ports"][role].as_u64())
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| anyhow!("no {role} port for {process} in the mesh state"))
    }

    fn wasmesh(&self, args: &[&str]) -> Result<String> {
        wasmesh_in(&self.wasmesh, self.dir.path(), args)
    }

    /// `wasmesh ARGS` on this mesh (`status`, `start reviews-v1-0`...).
    pub fn run(&self, args: &[&str]) -> Result<String> {
        self.wasmesh(args)
    }

    /// Reads the state file again (after `start` changed PIDs).
    pub fn reload_state(&mut self) -> Result<()> {
        self.state = read_state(self.dir.path())?;
        Ok(())
    }
}

impl Drop for ProcessMesh {
    fn drop(&mut self) {
        if !self.stopped {
            // Best effort: a failing test still must not leave a mesh running.
            let _ = self.down();
        }
    }
}

impl LocalMesh for ProcessMesh {
    fn gateway_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.gateway)
    }

    fn prometheus_url(&self) -> Option<String> {
        self.prometheus.map(|p| format!("http://127.0.0.1:{p}"))
    }

    fn stop_instance(&mut self, instance: &str) -> Result<()> {
        self.wasmesh(&["stop", instance]).map(drop)
    }

    fn start_instance(&mut self, instance: &str) -> Result<()> {
        self.wasmesh(&["start", instance]).map(drop)?;
        // PIDs changed.
        self.state = read_state(self.dir.path())?;
        Ok(())
    }

    fn inbound_addr(&self, instance: &str) -> SocketAddr {
        let port = self
            .port(&format!("{instance}-sidecar"), "inbound")
            .unwrap_or_default();
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn call_from(
        &self,
        instance: &str,
        method: &str,
        authority: &str,
        path: &str,
    ) -> Result<Response> {
        let port = self.port(&format!("{instance}-sidecar"), "outbound")?;
        http::request(
            method,
            &format!("http://127.0.0.1:{port}{path}"),
            &[("host", authority)],
            b"",
        )
    }
}

/// Builds `wasmesh` and `wasmesh-demo` (a no-op when fresh); the `wasmesh` binary.
pub fn build_binaries() -> Result<PathBuf> {
    let root = paths::workspace_root();
    // Cargo releases the build lock while tests run, so this nested build does not
    // wait on the `cargo test` that runs us; it keeps the binaries current.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--quiet", "-p", "wasmesh", "-p", "wasmesh-demo"])
        .current_dir(&root)
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build -p wasmesh -p wasmesh-demo failed");
    }
    Ok(root.join("target/debug/wasmesh"))
}

/// `wasmesh up MESH` isolated as the suite wants it: `state_dir` for state and
/// certificates, ports from a free block (the gateway and Prometheus on its last two).
/// Not run yet: a chaos test may spawn it and kill it half-way.
pub struct UpCommand {
    pub command: Command,
    pub gateway: u16,
    pub prometheus: u16,
}

impl UpCommand {
    pub fn new(
        wasmesh: &Path,
        mesh: &Path,
        state_dir: &Path,
        up_flags: &[&str],
    ) -> Result<UpCommand> {
        let root = paths::workspace_root();
        let base = free_block()?;
        // The last two ports of our block: free, and never handed out as ephemeral ports.
        let gateway = base + BLOCK_SPAN - 1;
        let prometheus = base + BLOCK_SPAN - 2;
        let dir_s = state_dir.to_string_lossy().into_owned();
        let mut command = Command::new(wasmesh);
        command
            .arg("up")
            .arg(mesh)
            .args(["--state-dir", &dir_s])
            .args(["--certs", &format!("{dir_s}/certs")])
            .args(["--port-base", &base.to_string()])
            .args(["--gateway-port", &gateway.to_string()])
            .args(["--prometheus-port", &prometheus.to_string()])
            .args(up_flags)
            .current_dir(&root)
            .env("WASMESH_DEMO_BIN", root.join("target/debug/wasmesh-demo"));
        Ok(UpCommand {
            command,
            gateway,
            prometheus,
        })
    }
}

/// Runs `wasmesh ARGS --state-dir DIR` from the workspace root: its output, or an error
/// with it when it fails.
pub fn wasmesh_in(wasmesh: &Path, dir: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(wasmesh)
        .args(args)
        .arg("--state-dir")
        .arg(dir)
        .current_dir(paths::workspace_root())
        .output()
        .with_context(|| format!("running wasmesh {}", args.join(" ")))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        bail!("wasmesh {} failed:\n{text}", args.join(" "));
    }
    Ok(text)
}

/// Whether `pid` is alive and not a zombie (a mesh's processes are not our children,
/// so a dead one may linger as a zombie of its reaper for a moment).
pub fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().to_string())
        })
        .is_some_and(|rest| !rest.starts_with('Z'))
}

/// Whether any live (not zombie) process is in process group `pgid`.
pub fn group_alive(pgid: i32) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .any(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    let f: Vec<&str> = s.rsplit_once(')')?.1.split_whitespace().collect();
                    Some(f.first()? != &"Z" && f.get(2)?.parse::<i32>().ok()? == pgid)
                })
                .unwrap_or(false)
        })
}

/// The mesh state `up` wrote in `dir` (`state.json`).
pub fn read_state(dir: &Path) -> Result<Value> {
    let path = dir.join("state.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// A base port whose next [`BLOCK_SPAN`] ports are free now, below Linux's ephemeral
/// range (32768+) so no outgoing connection takes one meanwhile; from a per-process
/// starting point, so parallel test binaries try different ranges first.
fn free_block() -> Result<u16> {
    const BLOCKS: u16 = 20;
    // Meshes started by parallel tests of one binary would find the same block free
    // (neither has bound it yet): a block handed out here is never handed out again.
    static CLAIMED: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut claimed = CLAIMED
        .lock()
        .map_err(|_| anyhow!("the port-block registry is poisoned"))?;
    let offset = (std::process::id() % u32::from(BLOCKS)) as u16;
    let block = (0..BLOCKS)
        .map(|i| 24000 + ((offset + i) % BLOCKS) * BLOCK_SPAN)
        .filter(|b| !claimed.contains(b))
        .find(|b| (*b..b + BLOCK_SPAN).all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok()))
        .ok_or_else(|| anyhow!("no free block of {BLOCK_SPAN} ports between 24000 and 32000"))?;
    claimed.push(block);
    Ok(block)
}

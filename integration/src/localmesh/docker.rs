//! The local mesh in docker compose mode: the Bookinfo example generated for the
//! compose target, run from the locally built images under a project name of its
//! own, so a test never touches a user's mesh (no fixed container names in the
//! generated file; host ports from `WASMESH_GATEWAY_PORT`/`WASMESH_PROMETHEUS_PORT`).
//!
//! Start: build the filters (harness cache) and the images (`scripts/docker-images.sh`,
//! a no-op when they are up to date), `wasmesh generate --target compose` into a
//! scratch directory, `scripts/compose.sh -p PROJECT up -d`, then poll `docker
//! inspect` until every container is running and healthy (docker-compose 1.29 has no
//! `up --wait`). Drop runs `down -v`.

use anyhow::{bail, Context, Result};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long the whole mesh may take to become healthy.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(240);
/// The sidecar inbound port (Istio's 15006) inside each sidecar container.
const INBOUND_PORT: u16 = 15006;
/// The filters the generated bootstraps load, by crate.
const FILTERS: [&str; 5] = ["authz", "ratelimit", "headers", "fault", "telemetry"];

/// A running compose project of the Bookinfo example.
pub struct DockerMesh {
    project: String,
    dir: PathBuf,
    gateway_port: u16,
    prometheus_port: u16,
    /// Kept on failure for the logs; removed with the project otherwise.
    keep_dir: bool,
}

fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map_or_else(|| manifest.to_path_buf(), Path::to_path_buf)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs a command to completion; an error (with its output) unless it exits 0.
fn run(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {shown}"))?;
    if !out.status.success() {
        bail!("{shown} failed ({}):\n{}", out.status, text(&out));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn docker(args: &[&str]) -> Result<String> {
    run(Command::new("docker").args(args))
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

/// Fails loudly, with what to do, when Docker or Compose is missing.
pub fn require_docker() -> Result<()> {
    docker(&["info", "--format", "{{.ServerVersion}}"]).context(
        "docker-mode e2e was requested (WASMESH_DOCKER_TESTS=1) but the Docker daemon is not reachable",
    )?;
    run(Command::new(workspace_root().join("scripts/compose.sh")).arg("--which")).context(
        "docker-mode e2e was requested but neither `docker compose` nor `docker-compose` is installed",
    )?;
    Ok(())
}

impl DockerMesh {
    /// Generates and starts the Bookinfo example; returns once every container is
    /// healthy.
    pub fn start() -> Result<DockerMesh> {
        require_docker()?;
        let root = workspace_root();
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let project = format!("wasmesh-e2e-{}-{n}", std::process::id());
        let dir = std::env::temp_dir().join(&project);
        std::fs::create_dir_all(dir.join("dist/filters"))?;
        let mut mesh = DockerMesh {
            project,
            dir,
            gateway_port: free_port()?,
            prometheus_port: free_port()?,
            keep_dir: false,
        };
        // On any failure below, Drop still runs `down` and keeps the directory.
        mesh.keep_dir = true;
        mesh.prepare(&root)?;
        mesh.up()?;
        mesh.wait_healthy()?;
        mesh.keep_dir = false;
        Ok(mesh)
    }

    /// Filters, images and the generated compose project in the scratch directory.
    fn prepare(&self, root: &Path) -> Result<()> {
        for name in FILTERS {
            let wasm = wasmesh_harness::build::try_wasm_module(&format!("wasmesh-{name}"))
                .map_err(|e| anyhow::anyhow!("building filter {name}: {e}"))?;
            std::fs::copy(&wasm, self.dir.join(format!("dist/filters/{name}.wasm")))?;
        }
        run(Command::new(root.join("scripts/docker-images.sh")).current_dir(root))?;
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        run(Command::new(cargo)
            .current_dir(root)
            .args(["run", "-q", "-p", "wasmesh", "--", "generate"])
            .arg(root.join("examples/bookinfo/mesh.yaml"))
            .arg("--out")
            .arg(&self.dir)
            .args(["--target", "compose", "--certs"])
            .arg(self.dir.join(".wasmesh/certs")))?;
        Ok(())
    }

    fn compose(&self) -> Command {
        let mut c = Command::new(workspace_root().join("scripts/compose.sh"));
        c.arg("-p")
            .arg(&self.project)
            .arg("-f")
            .arg(self.dir.join("docker-compose.yml"))
            .env("WASMESH_GATEWAY_PORT", self.gateway_port.to_string())
            .env("WASMESH_PROMETHEUS_PORT", self.prometheus_port.to_string());
        c
    }

    fn up(&self) -> Result<()> {
        run(self.compose().args(["up", "-d"])).map(|_| ())
    }

    /// Every container of the project: (name, state, health or `none`).
    fn states(&self) -> Result<Vec<(String, String, String)>> {
        let label = format!("label=com.docker.compose.project={}", self.project);
        let ids = docker(&["ps", "-aq", "--filter", &label])?;
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut args = vec![
            "inspect",
            "-f",
            "{{.Name}}|{{.State.Status}}|{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}",
        ];
        args.extend(ids);
        Ok(docker(&args)?
            .lines()
            .filter_map(|l| {
                let mut p = l.split('|');
                Some((
                    p.next()?.trim_start_matches('/').to_string(),
                    p.next()?.to_string(),
                    p.next()?.to_string(),
                ))
            })
            .collect())
    }

    /// Polls until every container is running and healthy (bounded).
    pub fn wait_healthy(&self) -> Result<()> {
        let expected = self.service_count()?;
        let deadline = Instant::now() + HEALTH_TIMEOUT;
        loop {
            let states = self.states()?;
            let bad: Vec<&(String, String, String)> = states
                .iter()
                .filter(|(_, s, h)| s != "running" || (h != "healthy" && h != "none"))
                .collect();
            if states.len() == expected && bad.is_empty() {
                return Ok(());
            }
            if let Some((name, _, _)) = states
                .iter()
                .find(|(_, s, h)| s == "exited" || s == "dead" || h == "unhealthy")
            {
                bail!("container {name} failed: {states:?}\n{}", self.logs(name));
            }
            if Instant::now() > deadline {
                bail!(
                    "not healthy after {HEALTH_TIMEOUT:?} ({} of {expected} containers): {bad:?}",
                    states.len()
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn service_count(&self) -> Result<usize> {
        Ok(run(self.compose().args(["config", "--services"]))?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .count())
    }

    /// The container id of a compose service.
    fn container(&self, service: &str) -> Result<String> {
        let id = run(self.compose().args(["ps", "-q", service]))?;
        if id.is_empty() {
            bail!("no container for service {service} in {}", self.project);
        }
        Ok(id)
    }

    /// The last lines of a container's log.
    pub fn logs(&self, container: &str) -> String {
        match Command::new("docker")
            .args(["logs", "--tail", "40", container])
            .output()
        {
            Ok(out) => text(&out),
            Err(e) => format!("(no logs: {e})"),
        }
    }

    pub fn gateway_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.gateway_port)
    }

    pub fn prometheus_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.prometheus_port)
    }

    /// Stops an instance (`reviews-v1-0`): its app, then its sidecar, as a node that
    /// goes away takes both; callers see connection failures, as in process mode.
    pub fn stop_instance(&self, instance: &str) -> Result<()> {
        let app = self.container(&format!("{instance}-app"))?;
        let sidecar = self.container(instance)?;
        docker(&["stop", "-t", "2", &app, &sidecar]).map(|_| ())
    }

    /// Starts a stopped instance again (sidecar first: the app joins its network
    /// namespace) and waits until both are healthy.
    pub fn start_instance(&self, instance: &str) -> Result<()> {
        let sidecar = self.container(instance)?;
        docker(&["start", &sidecar])?;
        let app = self.container(&format!("{instance}-app"))?;
        docker(&["start", &app])?;
        self.wait_healthy()
    }

    /// The sidecar's inbound listener, at its container's address on the project
    /// network (reachable from the host on Linux): for direct plaintext requests
    /// that mTLS STRICT must refuse.
    pub fn inbound_addr(&self, instance: &str) -> Result<SocketAddr> {
        let id = self.container(instance)?;
        let ip = docker(&[
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
            &id,
        ])?;
        let ip = ip
            .split_whitespace()
            .next()
            .with_context(|| format!("{instance} has no network address"))?;
        Ok(SocketAddr::new(ip.parse()?, INBOUND_PORT))
    }

    /// The generated compose file this project runs.
    pub fn compose_file(&self) -> PathBuf {
        self.dir.join("docker-compose.yml")
    }
}

impl Drop for DockerMesh {
    fn drop(&mut self) {
        // Best effort in Drop: a failed teardown is printed with the project name so
        // it can be removed by hand.
        let down = self
            .compose()
            .args(["down", "-v", "--remove-orphans", "-t", "2"])
            .stdin(Stdio::null())
            .output();
        match down {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "docker mesh {}: `down -v` failed: {}",
                self.project,
                text(&out)
            ),
            Err(e) => eprintln!("docker mesh {}: cannot run compose: {e}", self.project),
        }
        if self.keep_dir || std::thread::panicking() {
            eprintln!(
                "docker mesh {}: files kept in {}",
                self.project,
                self.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

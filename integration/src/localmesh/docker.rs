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

use super::docker_call;
use crate::http::{self, Response};
use crate::localmesh::LocalMesh;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use wasmesh::backend::command::{docker, output_text, run};

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
    /// Each sidecar's address on the project network, refreshed when it restarts.
    ips: BTreeMap<String, IpAddr>,
    /// Call-from helpers by instance: container id (see `docker_call`).
    helpers: Mutex<BTreeMap<String, String>>,
}

fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map_or_else(|| manifest.to_path_buf(), Path::to_path_buf)
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
    /// Generates `mesh` for compose and starts it; returns once every container is
    /// healthy.
    pub fn start(mesh_file: &Path) -> Result<DockerMesh> {
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
            gateway_port: crate::ports::free_port()?,
            prometheus_port: crate::ports::free_port()?,
            keep_dir: false,
            ips: BTreeMap::new(),
            helpers: Mutex::new(BTreeMap::new()),
        };
        // On any failure below, Drop still runs `down` and keeps the directory.
        mesh.keep_dir = true;
        mesh.prepare(&root, mesh_file)?;
        mesh.up()?;
        mesh.wait_healthy()?;
        mesh.refresh_ips()?;
        mesh.keep_dir = false;
        Ok(mesh)
    }

    /// Filters, images and the generated compose project in the scratch directory.
    fn prepare(&self, root: &Path, mesh_file: &Path) -> Result<()> {
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
            .arg(mesh_file)
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

    /// Polls until every compose service's container is running and healthy (bounded),
    /// judged as `wasmesh up --docker` judges it.
    pub fn wait_healthy(&self) -> Result<()> {
        use wasmesh::backend::docker::{failed, ready, states};
        let expected = self.service_count()?;
        let deadline = Instant::now() + HEALTH_TIMEOUT;
        loop {
            let states = states(&self.project)?;
            let pending: Vec<(&String, &(String, String))> =
                states.iter().filter(|(_, st)| !ready(st)).collect();
            if states.len() == expected && pending.is_empty() {
                return Ok(());
            }
            if let Some((service, _)) = states.iter().find(|(_, st)| failed(st)) {
                let logs = match self.container(service) {
                    Ok(id) => self.logs(&id),
                    Err(e) => e.to_string(),
                };
                bail!("container of {service} failed: {states:?}\n{logs}");
            }
            if Instant::now() > deadline {
                bail!(
                    "not healthy after {HEALTH_TIMEOUT:?} ({} of {expected} containers): {pending:?}",
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
            Ok(out) => output_text(&out),
            Err(e) => format!("(no logs: {e})"),
        }
    }

    /// The sidecar containers' addresses on the project network.
    fn refresh_ips(&mut self) -> Result<()> {
        let sidecars: Vec<String> = run(self.compose().args(["config", "--services"]))?
            .lines()
            .filter(|l| !l.ends_with("-app") && *l != "prometheus")
            .map(str::to_string)
            .collect();
        for s in sidecars {
            let id = self.container(&s)?;
            let ip = docker(&[
                "inspect",
                "-f",
                "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
                &id,
            ])?;
            let ip = ip
                .split_whitespace()
                .next()
                .with_context(|| format!("{s} has no network address"))?;
            self.ips.insert(s, ip.parse()?);
        }
        Ok(())
    }

    /// The helper that forwards to `instance`'s outbound listener, started on first use.
    fn helper_addr(&self, instance: &str) -> Result<SocketAddr> {
        let ip = *self
            .ips
            .get(instance)
            .with_context(|| format!("no sidecar named {instance}"))?;
        let addr = SocketAddr::new(ip, docker_call::HELPER_PORT);
        let mut helpers = self
            .helpers
            .lock()
            .map_err(|_| anyhow::anyhow!("helper table poisoned"))?;
        if !helpers.contains_key(instance) {
            let sidecar = self.container(instance)?;
            let id = docker_call::start_helper(&self.dir, &self.project, &sidecar, addr)?;
            helpers.insert(instance.to_string(), id);
        }
        Ok(addr)
    }

    /// Removes `instance`'s helper: it dies with the namespace it joined.
    fn drop_helper(&mut self, instance: &str) {
        let id = self.helpers.get_mut().ok().and_then(|h| h.remove(instance));
        if let Some(id) = id {
            let _ = docker(&["rm", "-f", &id]);
        }
    }

    /// The compose project name.
    pub fn project(&self) -> &str {
        &self.project
    }

    /// The scratch directory: generated files, certificates, filters.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl LocalMesh for DockerMesh {
    fn gateway_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.gateway_port)
    }

    fn prometheus_url(&self) -> Option<String> {
        Some(format!("http://127.0.0.1:{}", self.prometheus_port))
    }

    /// Its app, then its sidecar, as a pod that dies takes both.
    fn stop_instance(&mut self, instance: &str) -> Result<()> {
        self.drop_helper(instance);
        let app = self.container(&format!("{instance}-app"))?;
        let sidecar = self.container(instance)?;
        docker(&["stop", "-t", "2", &app, &sidecar]).map(drop)
    }

    /// Sidecar first (the app joins its namespace), then the app; waits for health.
    fn start_instance(&mut self, instance: &str) -> Result<()> {
        let sidecar = self.container(instance)?;
        docker(&["start", &sidecar])?;
        let app = self.container(&format!("{instance}-app"))?;
        docker(&["start", &app])?;
        self.wait_healthy()?;
        self.refresh_ips()
    }

    /// The sidecar's inbound listener at its container's address (the host reaches
    /// the project network on Linux). An unknown instance gives port 0, which refuses.
    fn inbound_addr(&self, instance: &str) -> SocketAddr {
        let ip = self
            .ips
            .get(instance)
            .copied()
            .unwrap_or(IpAddr::from([127, 0, 0, 1]));
        let port = if self.ips.contains_key(instance) {
            INBOUND_PORT
        } else {
            0
        };
        SocketAddr::new(ip, port)
    }

    fn call_from(
        &self,
        instance: &str,
        method: &str,
        authority: &str,
        path: &str,
    ) -> Result<Response> {
        let addr = self.helper_addr(instance)?;
        http::request(
            method,
            &format!("http://{addr}{path}"),
            &[("host", authority)],
            b"",
        )
    }
}

impl Drop for DockerMesh {
    fn drop(&mut self) {
        docker_call::remove_helpers(&self.project);
        if self.keep_dir || std::thread::panicking() {
            // `down` deletes the containers and their logs: keep the logs first.
            if let Ok(out) = self.compose().args(["logs", "--no-color"]).output() {
                let _ = std::fs::write(self.dir.join("compose.log"), output_text(&out));
            }
        }
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
                output_text(&out)
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

//! The local mesh (`wasmesh up`, `down`, `status`, `stop`, `start`): one [`Backend`]
//! trait, one module per way of running the mesh ([`process`]: every app and Envoy a
//! detached process; [`docker`]: a compose project), and the pieces they share.
//!
//! `main` picks the backend once: from `--docker` for `up`, from the state file for
//! everything after (a state with a `docker` section was written by the docker
//! backend). A backend never calls another, so a new one (native modules, file-based
//! xDS) is one more module and one more arm in [`for_up`] and [`of_state`].

pub mod apply;
pub mod command;
pub mod docker;
mod filters;
mod grafana;
mod inotify;
mod launch;
pub mod modules;
pub mod process;
mod ratelimit;
pub mod supervise;
mod traces;

use anyhow::{anyhow, bail, Result};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::model::MeshFile;
use crate::state::{self, Running, State};

pub(crate) use filters::build_missing_filters;

pub use grafana::DEFAULT_PORT as GRAFANA_PORT;

/// What `wasmesh up` was asked for; each backend reads the fields that apply to it.
#[derive(Debug, Clone)]
pub struct UpOptions {
    pub mesh: PathBuf,
    /// Generated configs, logs, Prometheus data and `state.json` go here.
    pub state_dir: PathBuf,
    pub certs_dir: PathBuf,
    /// First port of the instances' port blocks (process mode).
    pub port_base: u16,
    /// Overrides the mesh file's gateway port (tests run beside a user's mesh); a host
    /// port in docker mode.
    pub gateway_port: Option<u16>,
    pub prometheus_port: u16,
    /// Start Prometheus when it is installed (process mode; docker mode always runs it).
    pub prometheus: bool,
    /// Grafana's port, when a `grafana` binary is on PATH and Prometheus runs (process
    /// mode): `up` starts it provisioned with the generated dashboards.
    pub grafana_port: u16,
    /// How long everything together may take to become ready.
    pub timeout: Duration,
    /// Each chain as one mesh-module filter (`generate --bundle`).
    pub bundle: bool,
    /// Wasm modules or the native dynamic module (`up --native`).
    pub filter_target: crate::FilterTarget,
    /// Istio input: unsupported fields are dropped with a warning instead of refused.
    pub allow_unsupported: bool,
}

/// One way of running the local mesh.
pub trait Backend {
    /// Generates the mesh into the state directory, starts all of it and waits until
    /// every piece is ready, printing a progress line per piece ([`print_ready`]). The
    /// state is saved as soon as anything runs; on failure what was started is
    /// stopped again.
    fn up(&self, opts: &UpOptions) -> Result<State>;
    /// What became ready, for `mesh NAME is up: ...` (`13 processes ready`).
    fn ready_summary(&self, st: &State) -> String;
    /// Stops everything `st` records and removes the state file; the lines to print.
    fn down(&self, dir: &Path, st: &State) -> Result<String>;
    /// The `wasmesh status` table, sampled `interval` apart.
    fn status(&self, st: &State, interval: Duration) -> Result<String>;
    /// Stops one instance (its app and sidecar, as if its pod died).
    fn stop_instance(&self, dir: &Path, st: &State, instance: &str) -> Result<()>;
    /// Starts an instance `stop_instance` stopped and waits until it is ready.
    fn start_instance(
        &self,
        dir: &Path,
        st: State,
        instance: &str,
        timeout: Duration,
    ) -> Result<()>;
}

/// The backend `up` runs: the compose project `docker_project` when given, else
/// processes.
pub fn for_up(docker_project: Option<String>) -> Box<dyn Backend> {
    match docker_project {
        Some(project) => Box::new(docker::Docker { project }),
        None => Box::new(process::Process),
    }
}

/// The backend that wrote `st`.
pub fn of_state(st: &State) -> Box<dyn Backend> {
    for_up(st.docker.as_ref().map(|d| d.project.clone()))
}

/// The state of the mesh up in `dir`, or an error saying none is (`hint` follows).
pub fn running(dir: &Path, hint: &str) -> Result<State> {
    state::load(dir)?.ok_or_else(|| anyhow!("no mesh is up (no state in {}){hint}", dir.display()))
}

/// Refuses to start a second mesh on a state directory that records a live one; a
/// state whose processes all died is cleared.
fn refuse_if_up(dir: &Path) -> Result<()> {
    let Some(old) = state::load(dir)? else {
        return Ok(());
    };
    // A docker-mode state has no processes to ask: only `down` knows it is gone.
    let supervised = old.supervisor.as_ref().is_some_and(Running::is_alive);
    if old.docker.is_some() || supervised || old.processes.iter().any(Running::is_alive) {
        bail!(
            "a mesh ({}) is already up with state in {}: run `wasmesh down{}` first",
            old.mesh,
            dir.display(),
            state_dir_flag(dir)
        );
    }
    state::remove(dir)
}

/// The checked mesh file (or Istio input), each problem printed.
fn load_mesh(file: &Path, allow_unsupported: bool) -> Result<MeshFile> {
    crate::load_with(file, allow_unsupported)
        .map(|(mesh, dropped)| {
            crate::print_dropped(&dropped);
            mesh
        })
        .map_err(|errors| {
            for e in &errors {
                eprintln!("{e}");
            }
            anyhow!("{} problem(s) in {}", errors.len(), file.display())
        })
}

/// `PORT (label)` of each port that cannot be bound on `host` right now.
fn ports_in_use(host: &str, ports: impl IntoIterator<Item = (String, u16)>) -> Vec<String> {
    ports
        .into_iter()
        .filter(|(_, port)| TcpListener::bind((host, *port)).is_err())
        .map(|(label, port)| format!("{port} ({label})"))
        .collect()
}

/// The progress line of the readiness wait, the same for every backend.
pub fn print_ready(done: usize, total: usize, name: &str, started: Instant) {
    println!(
        "[{done:>2}/{total}] {name:<28} ready  ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
}

/// ` --state-dir DIR` when `dir` is not the default, for messages naming commands.
pub fn state_dir_flag(dir: &Path) -> String {
    if dir == Path::new(state::DEFAULT_STATE_DIR) {
        String::new()
    } else {
        format!(" --state-dir {}", dir.display())
    }
}

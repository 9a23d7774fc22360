//! The docker backend (`wasmesh up --docker`): the mesh as a compose project on the
//! locally built images (docs/docker.md), with the same progress lines, summary and
//! state file as process mode. `status`, `stop` and `start` are process mode only for
//! now and say so, with what works instead.
//!
//! The compose target is always generated into the state directory
//! (`<state-dir>/docker/docker-compose.yml`), even for the Bookinfo example: the
//! checked-in top-level `docker-compose.yml` is a generated golden file, and a mesh of
//! the user's own must not overwrite it. The file mounts the checkout's `dist/filters`
//! and the certificates directory by absolute path, so `certs rotate` and rebuilt
//! filters reach the containers as they do the process-mode Envoys.
//!
//! Compose runs through `scripts/compose.sh` (v2 plugin or Debian's 1.29), so `up`
//! must run from the checkout, as process mode does. 1.29 has no `up --wait`: readiness
//! is `docker inspect` health, polled while `compose up -d` works through the
//! `depends_on` order.

use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::command::{docker, output_text, run};
use super::{
    build_missing_filters, load_mesh, ports_in_use, print_ready, refuse_if_up, Backend, UpOptions,
};
use crate::state::{self, DockerRun, State};
use crate::{certs, compose, GenerateOptions, DEFAULT_FILTERS_DIR};

/// The project name when `--project` is not given.
pub const DEFAULT_PROJECT: &str = "wasmesh";
/// Poll interval of the bounded health wait (not a readiness check in itself).
const POLL: Duration = Duration::from_millis(500);
/// Log lines shown per failed container.
const LOG_TAIL: &str = "40";
/// How long containers get to stop on `down` before Docker kills them.
const STOP_SECS: &str = "5";
const COMPOSE_SH: &str = "scripts/compose.sh";
const IMAGES_SH: &str = "scripts/docker-images.sh";

/// The mesh as compose project `project`. [`UpOptions`]' ports are host ports: the
/// gateway's (default: the mesh file's gateway port) and Prometheus'. Its timeout is
/// for the containers to become healthy (the image build before is not counted: a
/// first build compiles the demo).
pub struct Docker {
    pub project: String,
}

impl Backend for Docker {
    /// On failure prints the failed containers' logs and removes the project again.
    fn up(&self, opts: &UpOptions) -> Result<State> {
        up(&self.project, opts)
    }

    fn ready_summary(&self, st: &State) -> String {
        let containers = st.docker.as_ref().map_or(0, |d| d.services.len());
        format!("{containers} containers healthy")
    }

    /// `compose down -v`; the state goes only once the project is gone (until then it
    /// is what finds it).
    fn down(&self, dir: &Path, st: &State) -> Result<String> {
        let Some(d) = &st.docker else {
            bail!("the state in {} records no compose project", dir.display());
        };
        let removed = down(&st.root, d)?;
        state::remove(dir)?;
        Ok(format!(
            "mesh {} is down: removed compose project {} ({removed} containers)",
            st.mesh, d.project
        ))
    }

    fn status(&self, st: &State, _interval: Duration) -> Result<String> {
        process_mode_only(st, "status")
    }

    fn stop_instance(&self, _dir: &Path, st: &State, _instance: &str) -> Result<()> {
        process_mode_only(st, "stop")
    }

    fn start_instance(
        &self,
        _dir: &Path,
        st: State,
        _instance: &str,
        _timeout: Duration,
    ) -> Result<()> {
        process_mode_only(&st, "start")
    }
}

/// The error of a process-mode-only command, with a pointer to what works.
fn process_mode_only<T>(st: &State, command: &str) -> Result<T> {
    let Some(d) = &st.docker else {
        bail!("mesh {} runs no compose project", st.mesh);
    };
    let mut msg = format!(
        "`wasmesh {command}` is process mode only for now: mesh {} runs as compose project {}",
        st.mesh, d.project
    );
    if command == "status" {
        // The sidecars' admin ports (their /stats/prometheus) are not published.
        msg.push_str(", whose sidecar admin ports are not published. Prometheus scrapes them:");
        if let Some(p) = &st.prometheus_url {
            msg.push_str(&format!(
                "\n  curl -s '{p}/api/v1/query?query=sum(rate(istio_requests_total[1m]))by(destination_service_name,response_code)'"
            ));
        }
        msg.push_str(&format!("\n  {}", compose_hint(d, "ps")));
    } else {
        // An instance is its sidecar's service and the app's, as a pod is both.
        msg.push_str(&format!(
            ". With Compose:\n  {}",
            compose_hint(d, &format!("{command} INSTANCE INSTANCE-app"))
        ));
    }
    bail!(msg)
}

/// The compose command a user would type for `args`, for messages.
fn compose_hint(d: &DockerRun, args: &str) -> String {
    format!(
        "{COMPOSE_SH} -p {} -f {} {args}",
        d.project,
        d.compose_file.display()
    )
}

/// Compose's project names are lower-case letters, digits, `-` and `_` (it silently
/// rewrites others, and the label `down` filters on would then not match).
fn check_project(project: &str) -> Result<()> {
    let ok = project
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && project
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        bail!("project name {project:?}: use lower-case letters, digits, '-' and '_'")
    }
}

/// `scripts/compose.sh -p P -f F` with the host-port variables of the run.
fn compose(root: &Path, d: &DockerRun) -> Command {
    let mut c = Command::new(root.join(COMPOSE_SH));
    c.current_dir(root)
        .arg("-p")
        .arg(&d.project)
        .arg("-f")
        .arg(&d.compose_file)
        .envs(&d.env);
    c
}

fn project_label(project: &str) -> String {
    format!("label=com.docker.compose.project={project}")
}

/// Each container of the compose project by service: (state, health or `none`).
/// An inspect that races a container's removal yields nothing this round. The
/// integration rig's docker mode polls with it too.
pub fn states(project: &str) -> Result<BTreeMap<String, (String, String)>> {
    let ids = docker(&["ps", "-aq", "--filter", &project_label(project)])?;
    let mut args = vec![
        "inspect",
        "-f",
        "{{index .Config.Labels \"com.docker.compose.service\"}}|{{.State.Status}}|{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}",
    ];
    args.extend(ids.split_whitespace());
    if args.len() == 3 {
        return Ok(BTreeMap::new());
    }
    let out = Command::new("docker")
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .context("running docker inspect")?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut p = l.split('|');
            let service = p.next()?.to_string();
            Some((service, (p.next()?.to_string(), p.next()?.to_string())))
        })
        .collect())
}

/// Fails fast, before anything starts, when a host port to publish is taken (Docker
/// binds all interfaces, so that is what is tried).
fn check_ports_free(ports: Vec<(String, u16)>) -> Result<()> {
    let busy = ports_in_use("0.0.0.0", ports);
    if busy.is_empty() {
        return Ok(());
    }
    bail!(
        "host ports in use: {}. Is another mesh up (`wasmesh down`)? Or pick others with --gateway-port / --prometheus-port",
        busy.join(", ")
    )
}

fn up(project: &str, opts: &UpOptions) -> Result<State> {
    check_project(project)?;
    let root = std::env::current_dir().context("reading the current directory")?;
    if !root.join(COMPOSE_SH).is_file() {
        bail!(
            "no {COMPOSE_SH} here: run `wasmesh up --docker` from the wasmesh checkout (it builds the images there)"
        );
    }
    let dir = &opts.state_dir;
    refuse_if_up(dir)?;
    docker(&["info", "--format", "{{.ServerVersion}}"])
        .context("the Docker daemon is not reachable (is Docker installed and running?)")?;
    run(Command::new(root.join(COMPOSE_SH)).arg("--which"))
        .context("neither `docker compose` nor `docker-compose` is installed")?;
    let leftovers = states(project)?;
    if !leftovers.is_empty() {
        bail!(
            "compose project {project} already has {} container(s) (not from this state directory): \
             `wasmesh down --docker --project {project}` removes them, or pick another --project",
            leftovers.len(),
        );
    }

    let mesh = load_mesh(&opts.mesh, opts.allow_unsupported)?;
    let gateway_port = opts
        .gateway_port
        .or_else(|| mesh.gateway.as_ref().map(|g| g.port));
    let mut ports = vec![("prometheus".to_string(), opts.prometheus_port)];
    ports.extend(gateway_port.map(|p| ("gateway".to_string(), p)));
    check_ports_free(ports)?;

    // Generate: bootstraps see container paths; the file mounts host paths absolutely,
    // so it can live in the state directory, away from the checked-in one.
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let out = std::fs::canonicalize(dir)
        .with_context(|| format!("resolving {}", dir.display()))?
        .join("docker");
    std::fs::create_dir_all(&opts.certs_dir)
        .with_context(|| format!("creating {}", opts.certs_dir.display()))?;
    let certs_dir = std::fs::canonicalize(&opts.certs_dir)
        .with_context(|| format!("resolving {}", opts.certs_dir.display()))?;
    let filters_dir = root.join(DEFAULT_FILTERS_DIR);
    let mut gen = GenerateOptions::compose(&out.to_string_lossy())
        .with_bundle(opts.bundle)
        .with_filter_target(opts.filter_target);
    gen.host_filters_dir = filters_dir.to_string_lossy().into_owned();
    gen.host_certs_dir = certs_dir.to_string_lossy().into_owned();
    let files = crate::generate(&mesh, &gen)?;
    // Stale configs of an earlier, different mesh must not linger.
    let _ = std::fs::remove_dir_all(&out);
    crate::write_files(&out, &files).with_context(|| format!("writing into {}", out.display()))?;
    certs::ensure(&mesh, &certs_dir)?;
    build_missing_filters(&root, &files, &|p| {
        filters_dir.join(Path::new(p).file_name().unwrap_or_default())
    })?;

    println!("building images ({IMAGES_SH}; about 30 s the first time, 2 s after)");
    run(Command::new(root.join(IMAGES_SH)).current_dir(&root))?;

    let mut env = BTreeMap::new();
    env.insert(
        compose::PROMETHEUS_PORT_VAR.to_string(),
        opts.prometheus_port.to_string(),
    );
    if let Some(p) = gateway_port {
        env.insert(compose::GATEWAY_PORT_VAR.to_string(), p.to_string());
    }
    let mut run_info = DockerRun {
        project: project.to_string(),
        compose_file: out.join("docker-compose.yml"),
        env,
        services: Vec::new(),
    };
    let services: Vec<String> = run(compose(&root, &run_info).args(["config", "--services"]))?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    let mut st = State {
        version: 1,
        mesh: mesh.mesh.name.clone(),
        mesh_file: opts.mesh.clone(),
        root: root.clone(),
        port_base: 0,
        gateway_url: gateway_port.map(|p| format!("http://127.0.0.1:{p}")),
        prometheus_url: Some(format!("http://127.0.0.1:{}", opts.prometheus_port)),
        processes: Vec::new(),
        docker: Some(run_info.clone()),
        up: None,
        supervisor: None,
    };
    // Saved before anything starts: an interrupted `up` leaves enough for `down`.
    state::save(dir, &st)?;

    let started = Instant::now();
    let result = start_and_wait(&root, &out, &run_info, &services, opts.timeout, started);
    match result {
        Ok(order) => {
            run_info.services = order;
            st.docker = Some(run_info);
            state::save(dir, &st)?;
            Ok(st)
        }
        Err(e) => {
            eprintln!("tearing down compose project {}", run_info.project);
            if let Err(down_err) = down(&root, &run_info) {
                // Keep the state: it is what `wasmesh down` needs to try again.
                eprintln!("{down_err:#}");
                return Err(e);
            }
            let _ = state::remove(dir);
            Err(e)
        }
    }
}

/// Runs `compose up -d` in the background and polls health meanwhile, so each
/// container is reported as it becomes healthy (1.29's `up -d` itself blocks through
/// the `depends_on` chain). Returns the services in the order they became ready.
fn start_and_wait(
    root: &Path,
    out: &Path,
    d: &DockerRun,
    services: &[String],
    timeout: Duration,
    started: Instant,
) -> Result<Vec<String>> {
    let log_path = out.join("compose-up.log");
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let mut child = compose(root, d)
        .args(["up", "-d"])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting compose up")?;
    let result = wait_healthy(&mut child, &log_path, d, services, timeout, started);
    if result.is_err() {
        // Our own child, by handle: a compose still waiting on a dependency.
        let _ = child.kill();
        let _ = child.wait();
        let states = states(&d.project).unwrap_or_default();
        let (created, waiting): (Vec<&String>, Vec<&String>) = services
            .iter()
            .filter(|s| !states.get(*s).is_some_and(ready))
            .partition(|s| states.contains_key(*s));
        if !waiting.is_empty() {
            let names: Vec<&str> = waiting.iter().map(|s| s.as_str()).collect();
            eprintln!(
                "not created (waiting on their dependencies): {}",
                names.join(", ")
            );
        }
        for s in created {
            eprintln!(
                "--- {}",
                compose_hint(d, &format!("logs --tail {LOG_TAIL} {s}"))
            );
            match compose(root, d)
                .args(["logs", "--no-color", "--tail", LOG_TAIL, s])
                .stdin(Stdio::null())
                .output()
            {
                Ok(o) => eprintln!("{}", output_text(&o).trim_end()),
                Err(e) => eprintln!("(no logs: {e})"),
            }
        }
    }
    result
}

/// Running, and healthy where the image has a health check.
pub fn ready((status, health): &(String, String)) -> bool {
    status == "running" && (health == "healthy" || health == "none")
}

/// Exited, dead or unhealthy: waiting longer will not help.
pub fn failed((status, health): &(String, String)) -> bool {
    status == "exited" || status == "dead" || health == "unhealthy"
}

fn wait_healthy(
    child: &mut Child,
    log_path: &Path,
    d: &DockerRun,
    services: &[String],
    timeout: Duration,
    started: Instant,
) -> Result<Vec<String>> {
    let deadline = Instant::now() + timeout;
    let total = services.len();
    let mut done: Vec<String> = Vec::new();
    let mut up_exited = false;
    loop {
        let states = states(&d.project)?;
        for s in services {
            if !done.contains(s) && states.get(s).is_some_and(ready) {
                done.push(s.clone());
                print_ready(done.len(), total, s, started);
            }
        }
        if let Some((s, (status, health))) = states.iter().find(|(_, st)| failed(st)) {
            bail!("container of {s} failed ({status}, health {health})");
        }
        if !up_exited {
            if let Some(status) = child.try_wait().context("waiting for compose up")? {
                if !status.success() {
                    bail!(
                        "compose up failed ({status}):\n{}",
                        std::fs::read_to_string(log_path)
                            .unwrap_or_default()
                            .trim_end()
                    );
                }
                up_exited = true;
            }
        }
        if up_exited && done.len() == total {
            return Ok(done);
        }
        if Instant::now() >= deadline {
            let pending: BTreeSet<&String> =
                services.iter().filter(|s| !done.contains(s)).collect();
            bail!(
                "not healthy after {} s: {}",
                timeout.as_secs(),
                pending
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        std::thread::sleep(POLL);
    }
}

/// Removes the project (`down -v`); returns how many containers it had. Idempotent:
/// a project with no containers left is a success. When the compose file is gone (a
/// deleted state directory), removes by the project label instead.
pub fn down(root: &Path, d: &DockerRun) -> Result<usize> {
    let before = states(&d.project)?.len();
    if d.compose_file.is_file() && root.join(COMPOSE_SH).is_file() {
        run(compose(root, d).args(["down", "-v", "--remove-orphans", "-t", STOP_SECS]))?;
    } else {
        down_by_label(&d.project)?;
    }
    let left = states(&d.project)?;
    if !left.is_empty() {
        bail!(
            "compose project {} still has containers after down: {}",
            d.project,
            left.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    Ok(before)
}

/// `down --docker` with no state file: the project's containers and networks, found
/// by Compose's label. Returns how many containers were removed.
pub fn down_project(project: &str) -> Result<usize> {
    check_project(project)?;
    down_by_label(project)
}

fn down_by_label(project: &str) -> Result<usize> {
    let label = project_label(project);
    let ids = docker(&["ps", "-aq", "--filter", &label])?;
    let ids: Vec<&str> = ids.split_whitespace().collect();
    if !ids.is_empty() {
        let mut args = vec!["rm", "-f", "-v"];
        args.extend(&ids);
        docker(&args)?;
    }
    let nets = docker(&["network", "ls", "-q", "--filter", &label])?;
    let nets: Vec<&str> = nets.split_whitespace().collect();
    if !nets.is_empty() {
        let mut args = vec!["network", "rm"];
        args.extend(&nets);
        docker(&args)?;
    }
    Ok(ids.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_names_compose_keeps_as_given() {
        assert!(check_project("wasmesh").is_ok());
        assert!(check_project("wasmesh-test_2").is_ok());
        assert!(check_project("Wasmesh").is_err());
        assert!(check_project("-x").is_err());
        assert!(check_project("").is_err());
        assert!(check_project("a.b").is_err());
    }

    #[test]
    fn readiness_of_a_container() {
        let s = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert!(ready(&s("running", "healthy")));
        assert!(ready(&s("running", "none")));
        assert!(!ready(&s("running", "starting")));
        assert!(!ready(&s("created", "none")));
        assert!(failed(&s("exited", "none")));
        assert!(failed(&s("running", "unhealthy")));
        assert!(!failed(&s("running", "starting")));
    }
}

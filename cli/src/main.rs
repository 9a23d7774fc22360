//! The `wasmesh` command line: generate, validate, k8s, certs; up, down, status,
//! start and stop for the local mesh.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use wasmesh::backend::{self, UpOptions};
use wasmesh::model::MeshError;
use wasmesh::{certs, filtercheck, topology, GenerateOptions};

#[derive(Parser)]
#[command(
    name = "wasmesh",
    version,
    about = "Istio's mesh features for stock Envoy, from one mesh file"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where a cluster pulls the filter modules from, unless `wasmesh k8s --filter-url`.
const DEFAULT_FILTER_URL: &str = "oci://ghcr.io/wasmesh/filters/";

#[derive(Clone, Copy, ValueEnum)]
enum TargetArg {
    Process,
    Compose,
    /// Kubernetes and Istio manifests, as `wasmesh k8s` writes them with its defaults.
    K8s,
}

/// What the generated Envoys load the filters as.
#[derive(Clone, Copy, ValueEnum)]
enum FilterTargetArg {
    /// `.wasm` modules in Envoy's V8 runtime (portable to Istio, sandboxed).
    Wasm,
    /// The native dynamic module `dist/native/libwasmesh_native.so` (faster; process
    /// target only; docs/native-target.md).
    Native,
}

impl From<FilterTargetArg> for wasmesh::FilterTarget {
    fn from(arg: FilterTargetArg) -> Self {
        match arg {
            FilterTargetArg::Wasm => wasmesh::FilterTarget::Wasm,
            FilterTargetArg::Native => wasmesh::FilterTarget::Native,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum ProxyConfigKind {
    Listeners,
    Routes,
    Clusters,
    Secrets,
    All,
}

impl From<ProxyConfigKind> for wasmesh::proxyconfig::Kind {
    fn from(k: ProxyConfigKind) -> Self {
        use wasmesh::proxyconfig::Kind;
        match k {
            ProxyConfigKind::Listeners => Kind::Listeners,
            ProxyConfigKind::Routes => Kind::Routes,
            ProxyConfigKind::Clusters => Kind::Clusters,
            ProxyConfigKind::Secrets => Kind::Secrets,
            ProxyConfigKind::All => Kind::All,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum OutputArg {
    Table,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum AuthzArg {
    Native,
    Wasm,
}

#[derive(Subcommand)]
enum Command {
    /// Write every sidecar's and the gateway's Envoy bootstrap, prometheus.yml and the
    /// run plan (process) or docker-compose.yml (compose); issue missing certificates.
    Generate {
        /// The mesh file, or Istio resources: a directory or multi-document YAML
        /// (docs/istio-resources.md).
        mesh: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_enum, default_value = "process")]
        target: TargetArg,
        /// First port of the process target's port blocks (10 ports per instance).
        #[arg(long, default_value_t = topology::DEFAULT_PORT_BASE)]
        port_base: u16,
        /// Where certificates are kept (not version-controlled).
        #[arg(long, default_value = wasmesh::DEFAULT_CERTS_DIR)]
        certs: PathBuf,
        /// Skip issuing certificates (for checked-in example output).
        #[arg(long)]
        no_certs: bool,
        /// One mesh-module filter (dist/filters/mesh.wasm) per chain instead of
        /// separate filters: one VM and one context per request.
        #[arg(long)]
        bundle: bool,
        /// Load the filters as Wasm modules or as the native dynamic module.
        #[arg(long, value_enum, default_value = "wasm")]
        target_filters: FilterTargetArg,
        /// Process target: listeners, clusters, routes and filter configs in watched
        /// files under OUT/xds/INSTANCE/, as `wasmesh up` runs them (docs/upgrades.md).
        #[arg(long)]
        xds_files: bool,
        #[command(flatten)]
        input: InputArg,
    },
    /// Check the mesh file (or Istio resources): schema, references, weights, ports;
    /// load every filter config into the compiled filter; run `envoy --mode validate`
    /// when Envoy is found.
    Validate {
        mesh: PathBuf,
        /// Directory of the compiled filters (`<name>.wasm`).
        #[arg(long, default_value = wasmesh::DEFAULT_FILTERS_DIR)]
        filters: PathBuf,
        /// Do not run Envoy even if it is installed.
        #[arg(long)]
        no_envoy: bool,
        /// Check the bundled form (`generate --bundle`): each chain's stages loaded
        /// into mesh.wasm, and the bundled bootstraps validated by Envoy.
        #[arg(long)]
        bundle: bool,
        #[command(flatten)]
        input: InputArg,
    },
    /// Write Kubernetes and Istio manifests of the mesh.
    K8s {
        mesh: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Where the cluster fetches the filter modules from: an OCI reference prefix
        /// (`oci://registry/wasmesh/`) or an HTTPS URL prefix.
        #[arg(long, default_value = DEFAULT_FILTER_URL)]
        filter_url: String,
        #[arg(long, default_value = wasmesh::DEFAULT_FILTERS_DIR)]
        filters: PathBuf,
        /// `native`: plain-Istio authz configs become AuthorizationPolicy and
        /// RequestAuthentication; `wasm`: always our authz filter.
        #[arg(long, value_enum, default_value = "native")]
        authz: AuthzArg,
        #[command(flatten)]
        input: InputArg,
    },
    /// Run the mesh locally (process mode): build what is missing, start every app,
    /// sidecar, the gateway and Prometheus (when installed), wait until all are ready.
    /// With --docker: as a compose project on the local images (docs/docker.md).
    Up {
        #[arg(default_value = "examples/bookinfo/mesh.yaml")]
        mesh: PathBuf,
        #[command(flatten)]
        state: StateDirArg,
        /// First port of the instances' port blocks (10 ports per instance).
        #[arg(long, default_value_t = topology::DEFAULT_PORT_BASE)]
        port_base: u16,
        /// Overrides the gateway port of the mesh file.
        #[arg(long)]
        gateway_port: Option<u16>,
        #[arg(long, default_value_t = wasmesh::runplan::PROMETHEUS_PORT)]
        prometheus_port: u16,
        /// Grafana's port, when `grafana` or `grafana-server` is on PATH (process mode).
        #[arg(long, default_value_t = wasmesh::backend::GRAFANA_PORT)]
        grafana_port: u16,
        /// Do not start Prometheus even if it is installed.
        #[arg(long)]
        no_prometheus: bool,
        #[arg(long, default_value = wasmesh::DEFAULT_CERTS_DIR)]
        certs: PathBuf,
        /// Seconds everything may take to become ready.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
        /// Run as a docker compose project (generated into STATE_DIR/docker) instead
        /// of processes; --gateway-port and --prometheus-port are then host ports.
        #[arg(long, conflicts_with = "no_prometheus")]
        docker: bool,
        /// The compose project name (--docker).
        #[arg(long, default_value = wasmesh::backend::docker::DEFAULT_PROJECT, requires = "docker")]
        project: String,
        /// Each chain as one mesh-module filter (dist/filters/mesh.wasm), as
        /// `generate --bundle` writes it: one VM and one context per request.
        #[arg(long)]
        bundle: bool,
        /// Run the filters in the native dynamic module instead of Wasm
        /// (`generate --target-filters native`; process mode only).
        #[arg(long, conflicts_with = "docker")]
        native: bool,
        #[command(flatten)]
        input: InputArg,
    },
    /// Apply a changed mesh file to the running mesh (process mode) without restarting
    /// any Envoy: routes, policies, filter configs and filter modules change in place.
    /// A config Envoy would refuse is refused before anything changes (docs/upgrades.md).
    Apply {
        /// The mesh file; by default the one `up` read.
        mesh: Option<PathBuf>,
        #[command(flatten)]
        state: StateDirArg,
        /// Seconds each Envoy may take to report a new config as taken.
        #[arg(long, default_value_t = 15)]
        timeout: u64,
    },
    /// Stop everything `wasmesh up` started, processes or compose project, as the state
    /// file records (idempotent).
    Down {
        #[command(flatten)]
        state: StateDirArg,
        /// With no state file: remove the compose project --project by its label.
        #[arg(long)]
        docker: bool,
        /// The compose project --docker removes when no state file names one.
        #[arg(long, default_value = wasmesh::backend::docker::DEFAULT_PROJECT, requires = "docker")]
        project: String,
    },
    /// Requests/s, error rate and p50/p99 latency per service and instance, from the
    /// sidecars' stats (sampled twice, `--interval` apart).
    Status {
        #[command(flatten)]
        state: StateDirArg,
        /// Seconds between the two samples.
        #[arg(long, default_value_t = 2.0)]
        interval: f64,
    },
    /// What one running Envoy holds (listeners, routes, clusters, secrets), read from its
    /// admin /config_dump, as tables; like `istioctl proxy-config` (docs/observability.md).
    ProxyConfig {
        /// A sidecar's instance (`reviews-v2-0`) or the gateway's name.
        instance: String,
        #[arg(value_enum, default_value = "all")]
        kind: ProxyConfigKind,
        /// `json`: the dump's sections of that kind as Envoy gave them.
        #[arg(short, long, value_enum, default_value = "table")]
        output: OutputArg,
        #[command(flatten)]
        state: StateDirArg,
    },
    /// Serve the traffic graph of the running mesh (services, requests/s, errors, p99,
    /// mTLS per edge, from its Prometheus) as a page and as /graph.json.
    Graph {
        /// Address to serve on.
        #[arg(long, default_value = "127.0.0.1:20001")]
        listen: String,
        /// The rate window of the queries (a PromQL duration).
        #[arg(long, default_value = "1m")]
        window: String,
        #[command(flatten)]
        state: StateDirArg,
    },
    /// Run a Zipkin-compatible trace store: takes Envoy's spans at /api/v2/spans,
    /// keeps the newest traces in memory, serves Zipkin's read API and a waterfall page.
    Traces {
        /// Address to serve on (where the mesh file's `tracing.address` points).
        #[arg(long, default_value = wasmesh::traces::DEFAULT_LISTEN)]
        listen: String,
        /// How many traces to keep; the oldest are dropped first.
        #[arg(long, default_value_t = wasmesh::traces::DEFAULT_MAX_TRACES)]
        max_traces: usize,
    },
    /// Stop one instance of the running mesh (its app and sidecar), as if its pod died.
    Stop {
        instance: String,
        #[command(flatten)]
        state: StateDirArg,
    },
    /// Start an instance stopped with `wasmesh stop` again.
    Start {
        instance: String,
        #[command(flatten)]
        state: StateDirArg,
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Restart the processes of the mesh in --state-dir that exit (`up` starts this
    /// detached; `down` stops it). Internal: not meant to be run by hand.
    #[command(hide = true)]
    Supervise {
        #[command(flatten)]
        state: StateDirArg,
    },
    /// Certificates of the mesh.
    Certs {
        #[command(subcommand)]
        action: CertsAction,
    },
}

#[derive(clap::Args)]
struct InputArg {
    /// Istio input: drop the fields wasmesh does not carry, each listed as a warning,
    /// instead of refusing them.
    #[arg(long)]
    allow_unsupported: bool,
}

#[derive(clap::Args)]
struct StateDirArg {
    /// Where `up` keeps generated configs, logs and the state of a running mesh.
    #[arg(long, default_value = wasmesh::state::DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
}

#[derive(Subcommand)]
enum CertsAction {
    /// Re-issue every workload certificate under the mesh CA; running Envoys reload
    /// them through SDS without a restart.
    Rotate {
        mesh: PathBuf,
        #[arg(long, default_value = wasmesh::DEFAULT_CERTS_DIR)]
        certs: PathBuf,
    },
}

fn main() -> ExitCode {
    match run(wasmesh_cli_args::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load(mesh: &Path, allow_unsupported: bool) -> Result<wasmesh::model::MeshFile> {
    let (model, dropped) =
        wasmesh::load_with(mesh, allow_unsupported).map_err(|errors| report_errors(&errors))?;
    wasmesh::print_dropped(&dropped);
    Ok(model)
}

fn report_errors(errors: &[MeshError]) -> anyhow::Error {
    for e in errors {
        eprintln!("{e}");
    }
    anyhow::anyhow!("{} problem(s) in the mesh file", errors.len())
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Generate {
            mesh,
            out,
            target,
            port_base,
            certs,
            no_certs,
            bundle,
            target_filters,
            xds_files,
            input,
        } => {
            if xds_files && !matches!(target, TargetArg::Process) {
                anyhow::bail!("--xds-files is for the process target");
            }
            let model = load(&mesh, input.allow_unsupported)?;
            let out_label = out.to_string_lossy().trim_end_matches('/').to_string();
            let opts = match target {
                TargetArg::Process => GenerateOptions::process(&out_label, port_base),
                TargetArg::Compose => GenerateOptions::compose(&out_label),
                TargetArg::K8s => {
                    // The cluster's Istio issues certificates: none here.
                    let opts = wasmesh::k8s::K8sOptions::new(
                        DEFAULT_FILTER_URL,
                        Path::new(wasmesh::DEFAULT_FILTERS_DIR),
                    );
                    let files = wasmesh::k8s::generate(&model, &opts)?;
                    wasmesh::write_files(&out, &files)
                        .with_context(|| format!("writing into {}", out.display()))?;
                    println!("wrote {} manifests into {}", files.len(), out.display());
                    return Ok(ExitCode::SUCCESS);
                }
            }
            .with_bundle(bundle)
            .with_filter_target(target_filters.into())
            .with_xds_files(xds_files);
            let files = wasmesh::generate(&model, &opts)?;
            wasmesh::write_files(&out, &files)
                .with_context(|| format!("writing into {}", out.display()))?;
            println!("wrote {} files into {}", files.len(), out.display());
            if !no_certs {
                let r = certs::ensure(&model, &certs)?;
                if r.ca_created {
                    println!("created the mesh CA in {}", certs.display());
                }
                if !r.issued.is_empty() {
                    println!("issued {} workload certificates", r.issued.len());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate {
            mesh,
            filters,
            no_envoy,
            bundle,
            input,
        } => validate(&mesh, &filters, no_envoy, bundle, input.allow_unsupported),
        Command::K8s {
            mesh,
            out,
            filter_url,
            filters,
            authz,
            input,
        } => {
            let model = load(&mesh, input.allow_unsupported)?;
            let mut opts = wasmesh::k8s::K8sOptions::new(&filter_url, &filters);
            opts.authz = match authz {
                AuthzArg::Native => wasmesh::k8s::AuthzMode::Native,
                AuthzArg::Wasm => wasmesh::k8s::AuthzMode::Wasm,
            };
            let files = wasmesh::k8s::generate(&model, &opts)?;
            wasmesh::write_files(&out, &files)
                .with_context(|| format!("writing into {}", out.display()))?;
            println!("wrote {} manifests into {}", files.len(), out.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Up {
            mesh,
            state,
            port_base,
            gateway_port,
            prometheus_port,
            grafana_port,
            no_prometheus,
            certs,
            timeout,
            docker,
            project,
            bundle,
            native,
            input,
        } => {
            let backend = backend::for_up(docker.then_some(project));
            let opts = UpOptions {
                mesh,
                state_dir: state.state_dir,
                certs_dir: certs,
                port_base,
                gateway_port,
                prometheus_port,
                prometheus: !no_prometheus,
                grafana_port,
                timeout: std::time::Duration::from_secs(timeout),
                bundle,
                filter_target: if native {
                    wasmesh::FilterTarget::Native
                } else {
                    wasmesh::FilterTarget::Wasm
                },
                allow_unsupported: input.allow_unsupported,
            };
            let started = std::time::Instant::now();
            let st = backend.up(&opts)?;
            println!(
                "\nmesh {} is up: {} in {:.1} s",
                st.mesh,
                backend.ready_summary(&st),
                started.elapsed().as_secs_f64()
            );
            let flags = backend::state_dir_flag(&opts.state_dir);
            let model = wasmesh::load_with(&st.mesh_file, opts.allow_unsupported)
                .ok()
                .map(|(m, _)| m);
            print!(
                "{}",
                wasmesh::summary::render(&st, model.as_ref(), &exe_name(), &flags)
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Down {
            state,
            docker,
            project,
        } => {
            let dir = &state.state_dir;
            match wasmesh::state::load(dir)? {
                Some(st) => println!("{}", backend::of_state(&st).down(dir, &st)?),
                None if docker => {
                    // No state, e.g. after a deleted state directory: go by the label.
                    let n = backend::docker::down_project(&project)?;
                    if n == 0 {
                        println!("no compose project {project} is up");
                    } else {
                        println!("removed compose project {project} ({n} containers)");
                    }
                }
                None => println!("no mesh is up (nothing in {})", dir.display()),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Apply {
            mesh,
            state,
            timeout,
        } => {
            let dir = &state.state_dir;
            let st = backend::running(dir, ": run `wasmesh up` first")?;
            let applied =
                backend::apply::apply(&st, mesh, std::time::Duration::from_secs(timeout))?;
            println!("{}", applied.summary(&st.mesh));
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { state, interval } => {
            let interval = std::time::Duration::from_secs_f64(interval.clamp(0.1, 60.0));
            let st = backend::running(&state.state_dir, ": run `wasmesh up` first")?;
            print!("{}", backend::of_state(&st).status(&st, interval)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::ProxyConfig {
            instance,
            kind,
            output,
            state,
        } => {
            use wasmesh::proxyconfig;
            let st = backend::running(&state.state_dir, ": run `wasmesh up` first")?;
            if st.docker.is_some() {
                anyhow::bail!("proxy-config reads the admin ports of process mode; the compose project does not publish them");
            }
            let envoy = proxyconfig::find(&st, &instance)?;
            let dump = proxyconfig::fetch(envoy)?;
            match output {
                OutputArg::Table => print!("{}", proxyconfig::render(&dump, kind.into())),
                OutputArg::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&proxyconfig::raw(&dump, kind.into()))?
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Graph {
            listen,
            window,
            state,
        } => {
            let st = backend::running(&state.state_dir, ": run `wasmesh up` first")?;
            let prometheus = st.prometheus_url.clone().ok_or_else(|| {
                anyhow::anyhow!("mesh {} runs without Prometheus (install prometheus and `wasmesh up` again): the graph comes from its data", st.mesh)
            })?;
            let listener = std::net::TcpListener::bind(&listen)
                .with_context(|| format!("listening on {listen}"))?;
            println!(
                "graph of mesh {}: http://{}/",
                st.mesh,
                listener.local_addr()?
            );
            wasmesh::graph::serve(listener, &prometheus, &window, &st.mesh)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Traces { listen, max_traces } => {
            let listener = std::net::TcpListener::bind(&listen)
                .with_context(|| format!("listening on {listen}"))?;
            println!(
                "traces: http://{}/ (Zipkin v2 spans at /api/v2/spans, newest {max_traces} traces kept)",
                listener.local_addr()?
            );
            wasmesh::traces::serve(listener, max_traces)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Stop { instance, state } => {
            let st = backend::running(&state.state_dir, "")?;
            backend::of_state(&st).stop_instance(&state.state_dir, &st, &instance)?;
            println!("stopped {instance}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Start {
            instance,
            state,
            timeout,
        } => {
            let st = backend::running(&state.state_dir, "")?;
            backend::of_state(&st).start_instance(
                &state.state_dir,
                st,
                &instance,
                std::time::Duration::from_secs(timeout),
            )?;
            println!("started {instance}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Supervise { state } => {
            backend::supervise::run(&state.state_dir)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Certs {
            action: CertsAction::Rotate { mesh, certs },
        } => {
            let model = load(&mesh, false)?;
            let r = certs::rotate(&model, &certs)?;
            println!(
                "re-issued {} workload certificates in {}",
                r.issued.len(),
                certs.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// How the user ran us, for the commands `up` prints: `wasmesh` when that is what is
/// on PATH, else the path (relative to here when it can be), e.g.
/// `target/release/wasmesh` after `cargo run --release`.
fn exe_name() -> String {
    let Ok(exe) = std::env::current_exe() else {
        return "wasmesh".into();
    };
    let on_path = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join("wasmesh") == exe));
    if on_path {
        return "wasmesh".into();
    }
    let here = std::env::current_dir().ok();
    here.and_then(|h| exe.strip_prefix(h).ok().map(|p| p.display().to_string()))
        .unwrap_or_else(|| exe.display().to_string())
}

fn validate(
    mesh: &Path,
    filters: &Path,
    no_envoy: bool,
    bundle: bool,
    allow_unsupported: bool,
) -> Result<ExitCode> {
    let model = match wasmesh::load_with(mesh, allow_unsupported) {
        Ok((m, dropped)) => {
            for e in &dropped {
                println!("warning: dropped {e}");
            }
            m
        }
        Err(errors) => {
            for e in &errors {
                println!("{e}");
            }
            println!("{}: {} problem(s)", mesh.display(), errors.len());
            return Ok(ExitCode::FAILURE);
        }
    };
    let report = if bundle {
        wasmesh::bundlecheck::check(mesh, &model, filters)
    } else {
        filtercheck::check(mesh, &model, filters)
    };
    for e in &report.errors {
        println!("{e}");
    }
    for (name, path) in &report.missing {
        println!(
            "note: filter {name}: {} is not built, its configs were not checked (scripts/build-filters.sh)",
            path.display()
        );
    }
    if !report.errors.is_empty() {
        println!("{}: {} problem(s)", mesh.display(), report.errors.len());
        return Ok(ExitCode::FAILURE);
    }
    println!(
        "{}: schema and references OK; {} filter config(s) accepted by the compiled filters",
        mesh.display(),
        report.accepted
    );
    if no_envoy {
        return Ok(ExitCode::SUCCESS);
    }
    match envoy_validate(&model, filters, report.missing.is_empty(), bundle)? {
        Some(n) => println!("envoy --mode validate: {n} bootstrap(s) OK"),
        None => println!("note: Envoy not run (not found, or filters missing)"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Generates the process target into a scratch directory with absolute paths and runs
/// `envoy --mode validate` on each bootstrap. `None` when Envoy cannot be run here.
fn envoy_validate(
    model: &wasmesh::model::MeshFile,
    filters: &Path,
    filters_complete: bool,
    bundle: bool,
) -> Result<Option<usize>> {
    let Some(envoy) = wasmesh::envoy_bin() else {
        return Ok(None);
    };
    if !filters_complete {
        return Ok(None);
    }
    let dir = std::env::temp_dir().join(format!("wasmesh-validate-{}", std::process::id()));
    let result = (|| -> Result<usize> {
        let certs_dir = dir.join("certs");
        let filters = std::fs::canonicalize(filters)
            .with_context(|| format!("resolving {}", filters.display()))?;
        let mut opts =
            GenerateOptions::process(&dir.to_string_lossy(), topology::DEFAULT_PORT_BASE)
                .with_bundle(bundle);
        opts.filters_dir = filters.to_string_lossy().into_owned();
        opts.certs_dir = certs_dir.to_string_lossy().into_owned();
        let files = wasmesh::generate(model, &opts)?;
        wasmesh::write_files(&dir, &files)?;
        certs::ensure(model, &certs_dir)?;
        let mut n = 0;
        for (rel, _) in files.iter().filter(|(p, _)| wasmesh::is_bootstrap(p)) {
            wasmesh::envoy_validate_file(&envoy, &dir.join(rel))
                .with_context(|| format!("generated bootstrap {}", rel.display()))?;
            n += 1;
        }
        Ok(n)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result.map(Some)
}

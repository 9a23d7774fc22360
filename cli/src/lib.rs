//! wasmesh: the mesh generator. One `mesh.yaml` in; every sidecar's and the gateway's
//! Envoy bootstrap, the run plan or compose file, `prometheus.yml` and Kubernetes
//! manifests out.
//!
//! [`generate`] is a pure function of the checked model: the same mesh gives the same
//! bytes (typed structs serialise fields in declaration order, maps are BTreeMaps, no
//! timestamps). Writing files, issuing certificates and loading filters into the
//! harness are separate steps around it.

pub mod backend;
pub mod bootstrap;
pub mod bundle;
pub mod bundlecheck;
pub mod certinfo;
pub mod certs;
pub mod chains;
pub mod check;
pub mod compose;
pub mod digest;
pub mod duration;
pub mod envoy;
pub mod filtercheck;
pub mod grafana;
pub mod graph;
pub mod istio;
pub mod istio_input;
pub mod k8s;
pub mod localhttp;
pub mod model;
pub mod names;
pub mod prometheus;
pub mod proxyconfig;
pub mod ratelimit;
pub mod runplan;
pub mod state;
pub mod stats;
pub mod status;
pub mod summary;
pub mod topology;
pub mod traces;
pub mod xds_files;

use model::{MeshError, MeshFile};
use std::path::{Path, PathBuf};
use topology::Target;

/// Where generated configs point, and how the target lays things out.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub target: Target,
    /// The directory of the `.wasm` modules, as Envoy sees it.
    pub filters_dir: String,
    /// The certificates directory, as Envoy sees it.
    pub certs_dir: String,
    /// The output directory relative to the project root (named in the run plan).
    pub out_dir: String,
    /// Compose only: the host directories mounted at `filters_dir` and `certs_dir`,
    /// relative to the compose file.
    pub host_filters_dir: String,
    pub host_certs_dir: String,
    /// One mesh-module filter (`mesh.wasm`) per chain instead of one filter per
    /// wasmesh filter (`wasmesh generate --bundle`, see [`bundle`]).
    pub bundle: bool,
    /// What the filters are built as: Wasm modules (the default) or the native
    /// dynamic module (`--target-filters native`, docs/native-target.md).
    pub filter_target: FilterTarget,
    /// Listeners, clusters, routes and filter configs in watched files under
    /// `xds/INSTANCE/` instead of inline (see [`xds_files`]), so `wasmesh apply`
    /// changes a running mesh in place. Process target only.
    pub xds_files: bool,
    /// Each `.wasm` as a copy named by its digest (`wasmesh up` and `apply`), so a new
    /// build is a new file name, a changed filter config and a new VM in Envoy.
    pub pinned_modules: Option<PinnedModules>,
}

/// Where the digest-named copies of the modules are, and each source's digest.
#[derive(Debug, Clone, Default)]
pub struct PinnedModules {
    /// As Envoy sees it.
    pub dir: String,
    /// Source path (as the config would name it unpinned) to the digest-named copy's
    /// file name.
    pub copies: std::collections::BTreeMap<String, String>,
}

impl PinnedModules {
    /// The path Envoy loads for the module at `source`: its digest-named copy when
    /// there is one.
    pub fn resolve(&self, source: &str) -> String {
        match self.copies.get(source) {
            Some(copy) => format!("{}/{copy}", self.dir),
            None => source.to_string(),
        }
    }
}

/// The build of the filters a generated Envoy loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FilterTarget {
    /// `.wasm` modules in Envoy's V8 runtime.
    #[default]
    Wasm,
    /// The stages in `libwasmesh_native.so`, an Envoy dynamic module.
    Native,
}

/// Where `scripts/build-filters.sh native` puts the native module, relative to the
/// project root: Envoy finds it through `ENVOY_DYNAMIC_MODULES_SEARCH_PATH`.
pub const DEFAULT_NATIVE_DIR: &str = "dist/native";
/// The native module's name (`lib<name>.so`), as `dynamic_module_config.name` says it.
pub const NATIVE_MODULE: &str = "wasmesh_native";

pub const DEFAULT_FILTERS_DIR: &str = "dist/filters";
pub const DEFAULT_CERTS_DIR: &str = ".wasmesh/certs";

impl GenerateOptions {
    /// Paths relative to the project root, where `wasmesh up` runs Envoy.
    pub fn process(out_dir: &str, port_base: u16) -> Self {
        Self {
            target: Target::Process { port_base },
            filters_dir: DEFAULT_FILTERS_DIR.into(),
            certs_dir: DEFAULT_CERTS_DIR.into(),
            out_dir: out_dir.into(),
            host_filters_dir: format!("./{DEFAULT_FILTERS_DIR}"),
            host_certs_dir: format!("./{DEFAULT_CERTS_DIR}"),
            bundle: false,
            filter_target: FilterTarget::Wasm,
            xds_files: false,
            pinned_modules: None,
        }
    }

    /// The same options with `--bundle` set or not.
    pub fn with_bundle(mut self, bundle: bool) -> Self {
        self.bundle = bundle;
        self
    }

    /// The same options with listeners, clusters, routes and filter configs in
    /// watched files (`wasmesh up`, so that `wasmesh apply` works) or inline.
    pub fn with_xds_files(mut self, xds_files: bool) -> Self {
        self.xds_files = xds_files;
        self
    }

    /// The same options with the filters built as `target`.
    pub fn with_filter_target(mut self, target: FilterTarget) -> Self {
        self.filter_target = target;
        self
    }

    /// Paths inside the containers; the compose file mounts them from the project.
    pub fn compose(out_dir: &str) -> Self {
        Self {
            target: Target::Compose,
            filters_dir: "/etc/wasmesh/filters".into(),
            certs_dir: "/etc/wasmesh/certs".into(),
            out_dir: out_dir.into(),
            host_filters_dir: format!("./{DEFAULT_FILTERS_DIR}"),
            host_certs_dir: format!("./{DEFAULT_CERTS_DIR}"),
            bundle: false,
            filter_target: FilterTarget::Wasm,
            xds_files: false,
            pinned_modules: None,
        }
    }
}

/// One generated file: a path relative to the output directory, and its bytes.
pub type OutputFile = (PathBuf, Vec<u8>);

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error(transparent)]
    Ports(#[from] topology::PortsExhausted),
    #[error("serialising {path}: {message}")]
    Serialise { path: String, message: String },
    #[error("--target-filters native runs in the process target only: the compose images have no native module yet (docs/native-target.md)")]
    NativeInCompose,
    #[error("mesh.rateLimitService runs in the process target only (`wasmesh up` without --docker): the compose images have no rate limit service yet")]
    RateLimitServiceInCompose,
    #[error("filter {filter}: `module` names a .wasm of its own, which runs only as a Wasm filter of its own: not with --bundle or --target-filters native")]
    ModuleNeedsWasmFilters { filter: String },
}

/// Reads and checks a mesh file, or Istio resources (a directory, or YAML of
/// Kubernetes objects: [`istio_input`]) with every unsupported field an error: all the
/// problems, or the model.
pub fn load(file: &Path) -> Result<MeshFile, Vec<MeshError>> {
    load_with(file, false).map(|(mesh, _)| mesh)
}

/// [`load`], and for Istio input with `allow_unsupported` the unsupported fields it
/// dropped (each a warning to print) instead of failing on them.
pub fn load_with(
    file: &Path,
    allow_unsupported: bool,
) -> Result<(MeshFile, Vec<MeshError>), Vec<MeshError>> {
    if istio_input::is_istio_input(file) {
        return istio_input::load(file, allow_unsupported).map(|l| (l.mesh, l.dropped));
    }
    let text = std::fs::read_to_string(file).map_err(|e| {
        vec![MeshError {
            file: file.to_path_buf(),
            path: String::new(),
            line: None,
            message: format!("cannot read: {e}"),
        }]
    })?;
    load_str(file, &text).map(|mesh| (mesh, Vec::new()))
}

/// Prints each unsupported field `--allow-unsupported` dropped, on stderr.
pub fn print_dropped(dropped: &[MeshError]) {
    for e in dropped {
        eprintln!("warning: dropped {e}");
    }
    if !dropped.is_empty() {
        eprintln!(
            "warning: {} unsupported field(s) dropped (--allow-unsupported)",
            dropped.len()
        );
    }
}

/// [`load`] for text already read (`file` names it in errors).
pub fn load_str(file: &Path, text: &str) -> Result<MeshFile, Vec<MeshError>> {
    let mesh = model::parse(file, text).map_err(|e| vec![e])?;
    let errors = check::check(file, &mesh);
    if errors.is_empty() {
        Ok(mesh)
    } else {
        Err(errors)
    }
}

const YAML_HEADER: &str = "# Generated by `wasmesh generate` from the mesh file. Do not edit: edit the mesh file and regenerate.\n";

fn json_bytes<T: serde::Serialize>(path: &str, value: &T) -> Result<Vec<u8>, GenerateError> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|e| GenerateError::Serialise {
        path: path.into(),
        message: e.to_string(),
    })?;
    bytes.push(b'\n');
    Ok(bytes)
}

fn yaml_bytes<T: serde::Serialize>(path: &str, value: &T) -> Result<Vec<u8>, GenerateError> {
    let text = serde_norway::to_string(value).map_err(|e| GenerateError::Serialise {
        path: path.into(),
        message: e.to_string(),
    })?;
    Ok(format!("{YAML_HEADER}{text}").into_bytes())
}

/// The files of `mesh` for `opts.target`, sorted by path.
pub fn generate(mesh: &MeshFile, opts: &GenerateOptions) -> Result<Vec<OutputFile>, GenerateError> {
    if opts.filter_target == FilterTarget::Native && opts.target == Target::Compose {
        return Err(GenerateError::NativeInCompose);
    }
    if opts.bundle || opts.filter_target == FilterTarget::Native {
        if let Some(f) = all_filters(mesh).find(|f| f.module.is_some()) {
            return Err(GenerateError::ModuleNeedsWasmFilters {
                filter: f.name.as_str().to_string(),
            });
        }
    }
    if mesh.mesh.rate_limit_service.is_some() && opts.target == Target::Compose {
        return Err(GenerateError::RateLimitServiceInCompose);
    }
    let instances = topology::instances(mesh, opts.target)?;
    let mut out: Vec<OutputFile> = Vec::new();
    let config_dir = match opts.target {
        Target::Process { .. } => PathBuf::new(),
        Target::Compose => PathBuf::from(compose::CONFIG_DIR),
    };
    for inst in &instances {
        let b = bootstrap::bootstrap(mesh, inst, &instances, opts);
        let path = config_dir.join(format!("{}.json", inst.name));
        if opts.xds_files && matches!(opts.target, Target::Process { .. }) {
            let rel = xds_files::instance_dir(&inst.name);
            let (b, resources) = xds_files::split(b, &format!("{}/{rel}", opts.out_dir));
            out.push((path.clone(), json_bytes(&path.to_string_lossy(), &b)?));
            for r in resources {
                let p = config_dir.join(&rel).join(&r.path);
                out.push((p.clone(), json_bytes(&p.to_string_lossy(), &r.response)?));
            }
        } else {
            out.push((path.clone(), json_bytes(&path.to_string_lossy(), &b)?));
        }
    }
    if let Some(rls) = &mesh.mesh.rate_limit_service {
        let (p, value) = ratelimit::config_file(rls);
        out.push((p.clone(), yaml_bytes(&p.to_string_lossy(), &value)?));
    }
    let prom = config_dir.join("prometheus.yml");
    out.push((
        prom.clone(),
        yaml_bytes(&prom.to_string_lossy(), &prometheus::config(&instances))?,
    ));
    let grafana = config_dir.join(grafana::DIR);
    for (name, dashboard) in grafana::dashboards() {
        let p = grafana.join("dashboards").join(name);
        out.push((p.clone(), json_bytes(&p.to_string_lossy(), &dashboard)?));
    }
    let (datasource, provider) = grafana::provisioning();
    for (sub, value) in [("datasources", datasource), ("dashboards", provider)] {
        let p = grafana.join("provisioning").join(sub).join("wasmesh.yaml");
        out.push((p.clone(), yaml_bytes(&p.to_string_lossy(), &value)?));
    }
    match opts.target {
        Target::Process { .. } => {
            let plan = runplan::plan(mesh, &instances, opts);
            out.push((
                PathBuf::from(runplan::PLAN_FILE),
                json_bytes(runplan::PLAN_FILE, &plan)?,
            ));
        }
        Target::Compose => {
            let c = compose::compose(&instances, opts);
            out.push((
                PathBuf::from("docker-compose.yml"),
                yaml_bytes("docker-compose.yml", &c)?,
            ));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Whether a generated file is an Envoy bootstrap (`INSTANCE.json` in the config
/// directory), not the run plan, a Grafana dashboard or an xDS resource file: the
/// files `envoy --mode validate` checks.
pub fn is_bootstrap(rel: &Path) -> bool {
    let in_config_dir = rel
        .parent()
        .is_some_and(|d| d.as_os_str().is_empty() || d == Path::new(compose::CONFIG_DIR));
    rel.extension().is_some_and(|e| e == "json")
        && rel != Path::new(runplan::PLAN_FILE)
        && in_config_dir
}

/// Every filter of the mesh: the services' inbound and outbound ones and the gateway's.
pub fn all_filters(mesh: &MeshFile) -> impl Iterator<Item = &model::FilterSpec> {
    mesh.services
        .iter()
        .flat_map(|s| s.filters.inbound.iter().chain(&s.filters.outbound))
        .chain(mesh.gateway.iter().flat_map(|g| &g.filters))
}

/// Writes generated files under `dir`, creating directories; unchanged files are not
/// rewritten (their modification time stays, so watchers see only real changes).
pub fn write_files(dir: &Path, files: &[OutputFile]) -> std::io::Result<()> {
    for (rel, bytes) in files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        if std::fs::read(&path).is_ok_and(|old| &old == bytes) {
            continue;
        }
        std::fs::write(&path, bytes)?;
    }
    Ok(())
}

/// `envoy --mode validate` on a config file (JSON or YAML): Envoy's output when it
/// says OK, an error with that output otherwise. Validation reads the files the config
/// names (the .wasm included) but opens no listeners. The integration rig validates
/// through this too.
pub fn envoy_validate_file(envoy: &Path, config: &Path) -> anyhow::Result<String> {
    envoy_validate_file_with_env(envoy, config, &[])
}

/// [`envoy_validate_file`] with more environment for Envoy (the native module's
/// `ENVOY_DYNAMIC_MODULES_SEARCH_PATH`).
pub fn envoy_validate_file_with_env(
    envoy: &Path,
    config: &Path,
    env: &[(&str, &str)],
) -> anyhow::Result<String> {
    let output = std::process::Command::new(envoy)
        .envs(env.iter().copied())
        .args([
            "--mode",
            "validate",
            "--use-dynamic-base-id",
            "-l",
            "warning",
            "-c",
        ])
        .arg(config)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| anyhow::anyhow!("running {}: {e}", envoy.display()))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() && text.contains("OK") {
        Ok(text)
    } else {
        anyhow::bail!(
            "Envoy rejected {} ({}):\n{}",
            config.display(),
            output.status,
            text.trim_end()
        )
    }
}

/// The Envoy binary: `$ENVOY_BIN`, `.venv/bin/envoy` under the current directory, or
/// `envoy` on `PATH`.
pub fn envoy_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ENVOY_BIN") {
        return Some(PathBuf::from(p));
    }
    let venv = PathBuf::from(".venv/bin/envoy");
    if venv.exists() {
        return Some(venv);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("envoy"))
            .find(|p| p.exists())
    })
}

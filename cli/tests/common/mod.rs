//! Shared test support: the Bookinfo example, compiled filters in one directory.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use wasmesh::certs::Ca;
use wasmesh::model::{FilterName, MeshFile};

/// The `wasmesh` binary run with `args` from the workspace root, as a user runs it.
pub fn wasmesh(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_wasmesh"))
        .args(args)
        .current_dir(workspace_root())
        .output()
        .unwrap()
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn bookinfo_path() -> PathBuf {
    workspace_root().join("examples/bookinfo/mesh.yaml")
}

pub fn bookinfo() -> MeshFile {
    match wasmesh::load(&bookinfo_path()) {
        Ok(m) => m,
        Err(errors) => panic!("bookinfo does not load: {errors:?}"),
    }
}

/// A directory holding `<name>.wasm` for every filter, built from this workspace.
/// A filter that fails to build fails the test: a stand-in would let a test of the
/// generated config pass against a filter that accepts any config.
pub fn filters_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("wasmesh-cli-filters-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for name in FilterName::ALL {
            let src = wasmesh_harness::build::try_wasm_module(&format!("wasmesh-{name}"))
                .unwrap_or_else(|e| panic!("filter {name} does not build: {e:#}"));
            std::fs::copy(&src, dir.join(name.wasm_file())).unwrap();
        }
        dir
    })
}

/// A fresh scratch directory.
pub fn scratch(label: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("wasmesh-cli-{label}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A process-target port base whose first `blocks` blocks are free right now, below
/// the ephemeral range (tests in one binary run in parallel: each gets its own).
pub fn free_port_base(blocks: u16) -> u16 {
    wasmesh_integration::ports::free_range(blocks * wasmesh::topology::BLOCK).unwrap()
}

/// The process-target bootstraps of each first replica (`<instance>-0.json`) of the
/// mesh in `mesh_text`, with certificates from `certs_dir`, as (file name, bootstrap).
pub fn bootstraps(mesh_text: &str, certs_dir: &Path, base: u16) -> Vec<(String, Value)> {
    let mesh = wasmesh::load_str(Path::new("mesh.yaml"), mesh_text).unwrap();
    let mut opts = wasmesh::GenerateOptions::process("out", base);
    opts.filters_dir = filters_dir().display().to_string();
    opts.certs_dir = certs_dir.display().to_string();
    wasmesh::generate(&mesh, &opts)
        .unwrap()
        .into_iter()
        .filter(|(p, _)| p.to_string_lossy().ends_with("-0.json"))
        .map(|(p, b)| {
            (
                p.to_string_lossy().into_owned(),
                serde_json::from_slice(&b).unwrap(),
            )
        })
        .collect()
}

/// The process-target bootstrap of the gateway of the mesh in `mesh_text`.
pub fn gateway_bootstrap(mesh_text: &str, certs_dir: &Path, base: u16) -> Value {
    let mesh = wasmesh::load_str(Path::new("mesh.yaml"), mesh_text).unwrap();
    let gateway = format!("{}.json", mesh.gateway.as_ref().unwrap().name);
    let mut opts = wasmesh::GenerateOptions::process("out", base);
    opts.filters_dir = filters_dir().display().to_string();
    opts.certs_dir = certs_dir.display().to_string();
    let files = wasmesh::generate(&mesh, &opts).unwrap();
    generated_bootstrap(&files, gateway.trim_end_matches(".json"))
}

/// The bootstrap among `configs` (from [`bootstraps`]) of the instance `name` starts.
pub fn bootstrap_of<'c>(configs: &'c [(String, Value)], name: &str) -> &'c Value {
    &configs
        .iter()
        .find(|(p, _)| p.starts_with(name))
        .unwrap_or_else(|| panic!("no bootstrap for {name}"))
        .1
}

/// A client and a server sidecar from a generated mesh, running in real Envoy, each
/// with an echo server as its app; the client's app may call the server. The mesh, its
/// certificates and bootstraps stay at hand for tests that restart or replace an Envoy.
pub struct Pair {
    pub mesh: MeshFile,
    pub certs_dir: PathBuf,
    pub base: u16,
    pub configs: Vec<(String, Value)>,
    pub client: wasmesh_integration::Envoy,
    pub server: wasmesh_integration::Envoy,
    pub client_ports: wasmesh::topology::Ports,
    pub server_ports: wasmesh::topology::Ports,
    pub client_app: wasmesh_integration::EchoServer,
    pub server_app: wasmesh_integration::EchoServer,
}

impl Pair {
    /// Generates the mesh in `mesh_text` (services `client` and `server`, one replica
    /// each) with fresh certificates, and starts the apps, then the server's Envoy, then
    /// the client's.
    pub fn start(mesh_text: &str, label: &str) -> Pair {
        use wasmesh::topology;
        use wasmesh_integration::{EchoServer, Envoy};
        let mesh = wasmesh::load_str(Path::new("mesh.yaml"), mesh_text).unwrap();
        let certs_dir = scratch(label).join("certs");
        wasmesh::certs::ensure(&mesh, &certs_dir).unwrap();
        let base = free_port_base(2);
        let configs = bootstraps(mesh_text, &certs_dir, base);
        let instances =
            topology::instances(&mesh, topology::Target::Process { port_base: base }).unwrap();
        let ports = |name: &str| instances.iter().find(|i| i.name == name).unwrap().ports;
        let (client_ports, server_ports) = (ports("client-v1-0"), ports("server-v1-0"));
        let server_app = EchoServer::start_on(server_ports.app, "server").unwrap();
        let client_app = EchoServer::start_on(client_ports.app, "client").unwrap();
        let server = Envoy::start(bootstrap_of(&configs, "server")).unwrap();
        let client = Envoy::start(bootstrap_of(&configs, "client")).unwrap();
        Pair {
            mesh,
            certs_dir,
            base,
            configs,
            client,
            server,
            client_ports,
            server_ports,
            client_app,
            server_app,
        }
    }

    /// `http://127.0.0.1:PORT/hello` on the client's outbound listener.
    pub fn outbound_url(&self) -> String {
        format!("http://127.0.0.1:{}/hello", self.client_ports.outbound)
    }
}

/// Checks the bootstraps (`*.json`) in `dir` of a `--bundle` mesh: `envoys` of them
/// load `mesh.wasm`, and none loads a filter module on its own.
pub fn assert_bundled(dir: &Path, envoys: usize) {
    let mut with_mesh = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        // A bootstrap and, when `up` wrote it, its xDS files (filters are in ECDS).
        let mut text = std::fs::read_to_string(&path).unwrap();
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        for file in files_under(&dir.join("xds").join(&stem)) {
            text.push_str(&std::fs::read_to_string(file).unwrap());
        }
        with_mesh += usize::from(names_module(&text, "mesh"));
        for filter in FilterName::ALL {
            let stem = filter.wasm_file().trim_end_matches(".wasm").to_string();
            assert!(
                !names_module(&text, &stem),
                "{}: {stem}.wasm on its own",
                path.display()
            );
        }
    }
    assert_eq!(
        with_mesh,
        envoys,
        "Envoys on mesh.wasm in {}",
        dir.display()
    );
}

/// Whether `text` names the module `stem`: `.../stem.wasm` as generated, or its
/// digest-named copy `.../stem-0123456789abcdef.wasm` as `up` runs it.
fn names_module(text: &str, stem: &str) -> bool {
    text.contains(&format!("/{stem}.wasm"))
        || text.match_indices(&format!("/{stem}-")).any(|(i, m)| {
            let rest = &text[i + m.len()..];
            rest.len() > 21
                && rest[..16].bytes().all(|b| b.is_ascii_hexdigit())
                && rest[16..].starts_with(".wasm")
        })
}

/// Every file below `dir` (none if it does not exist).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|e| {
            let p = e.path();
            if p.is_dir() {
                files_under(&p)
            } else {
                vec![p]
            }
        })
        .collect()
}

/// The generated bootstrap `<name>.json` among `files`, parsed.
pub fn generated_bootstrap(files: &[wasmesh::OutputFile], name: &str) -> Value {
    let (_, bytes) = files
        .iter()
        .find(|(p, _)| p.file_name().unwrap().to_string_lossy() == format!("{name}.json"))
        .unwrap_or_else(|| panic!("no bootstrap {name}.json"));
    serde_json::from_slice(bytes).unwrap()
}

/// The static resource of `kind` (`listeners`, `clusters`) called `name` in a bootstrap.
pub fn resource<'a>(bootstrap: &'a Value, kind: &str, name: &str) -> &'a Value {
    bootstrap["static_resources"][kind]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} entry {name}"))
}

/// A new CA called `name`, its certificate written to `dir/<name>-ca.pem` (the path
/// returned next to it).
pub fn ca_in(dir: &Path, name: &str) -> (Ca, String) {
    let ca = Ca::generate(name).unwrap();
    let file = dir.join(format!("{name}-ca.pem"));
    std::fs::write(&file, &ca.cert_pem).unwrap();
    (ca, file.display().to_string())
}

/// A certificate from `ca` for a SPIFFE ID and/or DNS names, written as
/// `dir/<file>.pem` (chain) and `dir/<file>-key.pem`: the two paths.
pub fn write_issued(
    dir: &Path,
    file: &str,
    ca: &Ca,
    spiffe: Option<&str>,
    dns: &[String],
) -> (String, String) {
    let issued = ca.issue(spiffe, dns).unwrap();
    let cert = dir.join(format!("{file}.pem"));
    let key = dir.join(format!("{file}-key.pem"));
    std::fs::write(&cert, issued.chain_pem).unwrap();
    std::fs::write(&key, issued.key_pem).unwrap();
    (cert.display().to_string(), key.display().to_string())
}

/// `wasmesh validate PATH` (the test's binary `bin`) with the built filters: asserts it
/// passed and that Envoy accepted `bootstraps` bootstraps (any number for `None`). Its
/// stdout. Without Envoy the test fails: it would prove nothing.
pub fn validate_with_envoy(bin: &str, path: &Path, bootstraps: Option<usize>) -> String {
    let out = std::process::Command::new(bin)
        .arg("validate")
        .arg(path)
        .arg("--filters")
        .arg(filters_dir())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("schema and references OK"), "{stdout}");
    assert!(
        wasmesh::envoy_bin().is_some(),
        "no Envoy for envoy --mode validate: set ENVOY_BIN or run scripts/setup.sh"
    );
    let want = match bootstraps {
        Some(n) => format!("envoy --mode validate: {n} bootstrap(s) OK"),
        None => "bootstrap(s) OK".to_string(),
    };
    assert!(stdout.contains(&want), "{stdout}");
    stdout
}

/// Writes `files` into `out` and runs `envoy --mode validate` (with `env`) on every
/// bootstrap among them; how many passed (a rejection fails the test).
pub fn validate_generated(
    files: &[wasmesh::OutputFile],
    out: &Path,
    env: &[(&str, &str)],
) -> usize {
    wasmesh::write_files(out, files).unwrap();
    let envoy = wasmesh_integration::paths::envoy_bin().unwrap();
    let mut n = 0;
    for (rel, _) in files {
        if !wasmesh::is_bootstrap(rel) {
            continue;
        }
        wasmesh::envoy_validate_file_with_env(&envoy, &out.join(rel), env).unwrap();
        n += 1;
    }
    n
}

/// A Bookinfo mesh `wasmesh up` started: its state directory, gateway and Prometheus
/// ports, and what up printed.
pub struct Up {
    pub dir: PathBuf,
    pub gateway: u16,
    pub prometheus: u16,
    pub stdout: String,
}

/// `wasmesh up` (with `extra` flags) on Bookinfo in a state directory and on ports of
/// its own (Prometheus too, when it runs), checked to have succeeded.
pub fn up(label: &str, extra: &[&str]) -> Up {
    let dir = std::env::temp_dir().join(format!("wasmesh-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // Room for Bookinfo's 7 instance blocks plus the gateway and Prometheus ports.
    let base = wasmesh_integration::ports::free_range(80).unwrap();
    let (gateway, prometheus) = (base + 75, base + 76);
    let dir_s = dir.to_str().unwrap();
    let (certs, base_s, gateway_s, prometheus_s) = (
        format!("{dir_s}/certs"),
        base.to_string(),
        gateway.to_string(),
        prometheus.to_string(),
    );
    let mut args = vec![
        "up",
        "--state-dir",
        dir_s,
        "--certs",
        &certs,
        "--port-base",
        &base_s,
        "--gateway-port",
        &gateway_s,
        "--prometheus-port",
        &prometheus_s,
    ];
    args.extend_from_slice(extra);
    let out = wasmesh(&args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(&format!("curl -s http://127.0.0.1:{gateway}/productpage")));
    Up {
        dir,
        gateway,
        prometheus,
        stdout,
    }
}

/// Takes the mesh down and its state directory away however the test ends.
pub struct DownOnDrop<'a>(pub &'a str);

impl Drop for DownOnDrop<'_> {
    fn drop(&mut self) {
        let down = wasmesh(&["down", "--state-dir", self.0]);
        if down.status.success() {
            let _ = std::fs::remove_dir_all(self.0);
        } else {
            eprintln!("down failed: {down:?}");
        }
    }
}

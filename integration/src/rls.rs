//! The rate limit service (`wasmesh-ratelimit-server`) for real-Envoy tests: built
//! once, started on a free port with a config file, ready when it says it listens;
//! and the Envoy cluster (HTTP/2) that global rules reach it through.

use crate::{paths, ports};
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The cluster name global rules use in these tests. It starts with `w`, a byte
/// that is no valid protobuf tag, so Envoy never mistakes it for a serialised
/// `GrpcService` (Envoy tries that first).
pub const CLUSTER: &str = "wasmesh_ratelimit_service";

/// Builds the server (a no-op when fresh); its path.
pub fn build() -> Result<PathBuf> {
    let root = paths::workspace_root();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--quiet", "-p", "wasmesh-ratelimit-server"])
        .current_dir(&root)
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build -p wasmesh-ratelimit-server failed");
    }
    Ok(root.join("target/debug/wasmesh-ratelimit-server"))
}

/// A running server, stopped on drop.
pub struct Server {
    child: Child,
    pub port: u16,
    log: PathBuf,
}

impl Server {
    /// Starts the server with `config` (YAML) written into `dir`, on `port` (0: a free one).
    pub fn start(dir: &Path, config_yaml: &str, port: u16) -> Result<Server> {
        Self::start_binary(&build()?, dir, config_yaml, port)
    }

    /// Like [`Server::start`] with a server binary built elsewhere (the benchmark rig
    /// runs the release build).
    pub fn start_binary(bin: &Path, dir: &Path, config_yaml: &str, port: u16) -> Result<Server> {
        std::fs::create_dir_all(dir)?;
        let config = dir.join("ratelimit.yaml");
        std::fs::write(&config, config_yaml)?;
        let port = if port == 0 { ports::free_port()? } else { port };
        let log = dir.join(format!("ratelimit-{port}.log"));
        let child = Command::new(bin)
            .arg("--config")
            .arg(&config)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("starting wasmesh-ratelimit-server")?;
        let server = Server { child, port, log };
        server.wait_for_log("listening on", Duration::from_secs(20))?;
        Ok(server)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while !self.log().contains(needle) {
            if Instant::now() > deadline {
                bail!("rate limit server never logged {needle:?}: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Rewrites the config and reloads it (SIGHUP); returns once the server says so.
    pub fn reload(&self, dir: &Path, config_yaml: &str) -> Result<()> {
        let before = self.log().matches("config reloaded").count();
        std::fs::write(dir.join("ratelimit.yaml"), config_yaml)?;
        // SAFETY: kill(2) on our own child's pid.
        let pid = self.child.id() as libc::pid_t;
        if unsafe { libc::kill(pid, libc::SIGHUP) } != 0 {
            bail!("SIGHUP failed");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.log().matches("config reloaded").count() == before {
            if Instant::now() > deadline {
                bail!("the server did not reload: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The STATIC HTTP/2 cluster [`CLUSTER`] to 127.0.0.1:`port` (gRPC needs HTTP/2).
pub fn cluster(port: u16) -> Value {
    let mut c = crate::bootstrap::static_cluster(CLUSTER, port);
    c["typed_extension_protocol_options"] = json!({
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": { "http2_protocol_options": {} },
        },
    });
    c
}

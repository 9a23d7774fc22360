//! Calls "as an app would" in compose mode. An app's sidecar listens for outbound
//! calls on 127.0.0.1:15001 inside the pod's network namespace, which the host cannot
//! reach, and the images are FROM scratch (no shell, no curl to `docker exec`). So a
//! helper container joins the sidecar's namespace (`--network container:ID`) and runs
//! Envoy as a plain TCP proxy from `0.0.0.0:15999` to `127.0.0.1:15001`: the test
//! connects to the pod's address, and the sidecar sees a loopback connection, exactly
//! as from its app.

use anyhow::{bail, Context, Result};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The helper's port in the pod's namespace (not a sidecar port).
pub const HELPER_PORT: u16 = 15999;
const OUTBOUND_PORT: u16 = 15001;
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The Envoy image the compose file uses (the same override).
pub fn envoy_image() -> String {
    std::env::var("WASMESH_ENVOY_IMAGE").unwrap_or_else(|_| "wasmesh/envoy:1.40.0".into())
}

fn bootstrap() -> serde_json::Value {
    serde_json::json!({
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 15998}}},
        "static_resources": {
            "listeners": [{
                "name": "call-from",
                "address": {"socket_address": {"address": "0.0.0.0", "port_value": HELPER_PORT}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.tcp_proxy",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                        "stat_prefix": "call_from",
                        "cluster": "app-outbound"
                    }
                }]}]
            }],
            "clusters": [{
                "name": "app-outbound",
                "type": "STATIC",
                "connect_timeout": "2s",
                "load_assignment": {"cluster_name": "app-outbound", "endpoints": [{"lb_endpoints": [
                    {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": OUTBOUND_PORT}}}}
                ]}]}
            }]
        }
    })
}

/// Starts a helper in the namespace of `sidecar` (a container id), labelled with the
/// compose project so teardown finds it. Returns the helper's container id once
/// `addr` (the pod's address, helper port) accepts connections.
pub fn start_helper(dir: &Path, project: &str, sidecar: &str, addr: SocketAddr) -> Result<String> {
    let config = dir.join("call-from.json");
    std::fs::write(&config, serde_json::to_vec_pretty(&bootstrap())?)?;
    let mount = format!("{}:/etc/wasmesh/call-from.json:ro", config.display());
    let network = format!("container:{sidecar}");
    let label = format!("org.wasmesh.call-from={project}");
    let out = Command::new("docker")
        .args([
            "run",
            "-d",
            "--rm",
            "--label",
            &label,
            "--network",
            &network,
        ])
        .args(["-v", &mount, &envoy_image()])
        .args(["-c", "/etc/wasmesh/call-from.json", "--disable-hot-restart"])
        .args(["--log-level", "warning"])
        .stdin(Stdio::null())
        .output()
        .context("running docker")?;
    if !out.status.success() {
        bail!(
            "starting the call-from helper: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let deadline = Instant::now() + READY_TIMEOUT;
    while TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err() {
        if Instant::now() > deadline {
            bail!("call-from helper {id} not listening on {addr} after {READY_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(id)
}

/// Removes every helper of `project` (best effort: teardown).
pub fn remove_helpers(project: &str) {
    let label = format!("label=org.wasmesh.call-from={project}");
    let ids = Command::new("docker")
        .args(["ps", "-aq", "--filter", &label])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default();
    let ids: Vec<&str> = ids.split_whitespace().collect();
    if !ids.is_empty() {
        let _ = Command::new("docker")
            .args(["rm", "-f"])
            .args(&ids)
            .stdin(Stdio::null())
            .output();
    }
}

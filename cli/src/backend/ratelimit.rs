//! The global rate limit service of a process-mode mesh with `mesh.rateLimitService`:
//! `up` runs `wasmesh-ratelimit-server` on the generated config at 127.0.0.1:PORT, where
//! the generated clusters point, ready when its `--health` port answers.

use anyhow::{Context, Result};
use std::path::Path;

use crate::model::RateLimitServiceSpec;
use crate::state::Running;

/// The server's binary (package and binary of `ratelimit-server/`).
pub const BIN: &str = "wasmesh-ratelimit-server";
/// Overrides where the server binary is found.
pub const BIN_VAR: &str = "WASMESH_RATELIMIT_SERVER_BIN";

/// The service as a process of the mesh. `config_dir`: the generated output
/// (`STATE_DIR/config`), where the service's YAML is; `health_port`: a free port for
/// its readiness answer.
pub(super) fn process(
    root: &Path,
    rls: &RateLimitServiceSpec,
    config_dir: &Path,
    health_port: u16,
    logs: &Path,
) -> Result<Running> {
    let bin = super::launch::workspace_bin(root, BIN, BIN_VAR)?;
    Ok(process_of(&bin, rls, config_dir, health_port, logs))
}

fn process_of(
    bin: &Path,
    rls: &RateLimitServiceSpec,
    config_dir: &Path,
    health_port: u16,
    logs: &Path,
) -> Running {
    let config = config_dir.join(crate::ratelimit::config_path(rls));
    let mut argv = vec![
        bin.to_string_lossy().into_owned(),
        "--config".into(),
        config.to_string_lossy().into_owned(),
        "--listen".into(),
        format!("127.0.0.1:{}", rls.port),
        "--health".into(),
        format!("127.0.0.1:{health_port}"),
    ];
    if let Some(url) = &rls.redis {
        argv.extend(["--redis".into(), url.clone()]);
    }
    let mut r = Running::tool(
        "ratelimit",
        argv,
        Default::default(),
        health_port,
        "/",
        logs,
    );
    r.ports.insert("grpc".into(), rls.port);
    r
}

/// A port nobody listens on now, for the health answer.
pub(super) fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn it_runs_the_server_on_the_generated_config() {
        let text = "mesh:\n  name: t\n  rateLimitService: { port: 8081, domain: d, redis: \"redis://127.0.0.1:6379\" }\n";
        let mesh = crate::model::parse(Path::new("t.yaml"), text).unwrap();
        let rls = mesh.mesh.rate_limit_service.unwrap();
        let p = process_of(
            Path::new("/b/s"),
            &rls,
            Path::new("/st/config"),
            9,
            Path::new("/l"),
        );
        assert_eq!(
            p.argv,
            [
                "/b/s",
                "--config",
                "/st/config/ratelimit/d.yaml",
                "--listen",
                "127.0.0.1:8081",
                "--health",
                "127.0.0.1:9",
                "--redis",
                "redis://127.0.0.1:6379"
            ]
        );
        assert_eq!(p.health_url.as_deref(), Some("http://127.0.0.1:9/"));
        assert_eq!(p.ports["grpc"], 8081);
        assert_eq!(p.log, Path::new("/l/ratelimit.log"));
    }
}

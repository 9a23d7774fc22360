//! Grafana for a process-mode mesh, when a `grafana` or `grafana-server` binary is on
//! PATH: provisioned with the generated datasource and dashboards (crate::grafana), on
//! its own port and data directory under the state directory.
//!
//! No Grafana is installable from the registries this project uses (docs/observability.md),
//! so this path is checked by unit tests of the process it builds, not by a run.

use std::path::{Path, PathBuf};

use super::launch::find_on_path;
use crate::state::Running;

/// Grafana's default port, `up --grafana-port`'s default.
pub const DEFAULT_PORT: u16 = 3000;

/// The Grafana binary on PATH: the single `grafana` (with its `server` subcommand) or
/// the older `grafana-server`.
pub(super) fn find() -> Option<(PathBuf, bool)> {
    find_on_path("grafana")
        .map(|b| (b, true))
        .or_else(|| find_on_path("grafana-server").map(|b| (b, false)))
}

/// Grafana's home (its `conf/defaults.ini` and static files): beside the binary's
/// directory in a release archive (`bin/grafana`), else where Debian and RPM packages
/// put it.
fn homepath(bin: &Path) -> PathBuf {
    let beside = bin.parent().and_then(Path::parent).map(Path::to_path_buf);
    match beside {
        Some(h) if h.join("conf/defaults.ini").is_file() => h,
        _ => PathBuf::from("/usr/share/grafana"),
    }
}

/// The Grafana process: `state_dir` (absolute) holds `config/grafana/` as `up` wrote
/// it and gets Grafana's data; anonymous viewers see the dashboards without a login.
pub(super) fn process(
    bin: &Path,
    subcommand: bool,
    state_dir: &Path,
    port: u16,
    prometheus_url: &str,
    logs: &Path,
) -> Running {
    let mut argv = vec![bin.to_string_lossy().into_owned()];
    if subcommand {
        argv.push("server".into());
    }
    argv.push(format!("--homepath={}", homepath(bin).display()));
    let config = state_dir.join("config").join(crate::grafana::DIR);
    let data = state_dir.join("grafana");
    let path = |p: PathBuf| p.to_string_lossy().into_owned();
    let env = [
        ("GF_SERVER_HTTP_ADDR", "127.0.0.1".to_string()),
        ("GF_SERVER_HTTP_PORT", port.to_string()),
        ("GF_PATHS_DATA", path(data.clone())),
        ("GF_PATHS_LOGS", path(data.join("log"))),
        ("GF_PATHS_PLUGINS", path(data.join("plugins"))),
        ("GF_PATHS_PROVISIONING", path(config.join("provisioning"))),
        ("GF_AUTH_ANONYMOUS_ENABLED", "true".into()),
        ("GF_AUTH_ANONYMOUS_ORG_ROLE", "Viewer".into()),
        ("GF_ANALYTICS_REPORTING_ENABLED", "false".into()),
        ("GF_ANALYTICS_CHECK_FOR_UPDATES", "false".into()),
        ("WASMESH_PROMETHEUS_URL", prometheus_url.into()),
        (
            "WASMESH_GRAFANA_DASHBOARDS",
            path(config.join("dashboards")),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    Running::tool("grafana", argv, env, port, "/api/health", logs)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn provisioned_from_the_state_directory_on_its_own_port() {
        let home =
            std::env::temp_dir().join(format!("wasmesh-grafana-home-{}", std::process::id()));
        std::fs::create_dir_all(home.join("conf")).unwrap();
        std::fs::create_dir_all(home.join("bin")).unwrap();
        std::fs::write(home.join("conf/defaults.ini"), "").unwrap();
        let bin = home.join("bin/grafana");
        let p = process(
            &bin,
            true,
            Path::new("/s"),
            3300,
            "http://127.0.0.1:9090",
            Path::new("/s/logs"),
        );
        assert_eq!(
            p.argv,
            [
                bin.display().to_string(),
                "server".into(),
                format!("--homepath={}", home.display())
            ]
        );
        assert_eq!(p.env["GF_SERVER_HTTP_PORT"], "3300");
        assert_eq!(
            p.env["GF_PATHS_PROVISIONING"],
            "/s/config/grafana/provisioning"
        );
        assert_eq!(
            p.env["WASMESH_GRAFANA_DASHBOARDS"],
            "/s/config/grafana/dashboards"
        );
        assert_eq!(p.env["WASMESH_PROMETHEUS_URL"], "http://127.0.0.1:9090");
        assert_eq!(p.env["GF_PATHS_DATA"], "/s/grafana");
        assert_eq!(
            p.health_url.as_deref(),
            Some("http://127.0.0.1:3300/api/health")
        );
        // A packaged grafana-server: no subcommand, the packages' home.
        let p = process(
            Path::new("/usr/sbin/grafana-server"),
            false,
            Path::new("/s"),
            3000,
            "u",
            Path::new("/l"),
        );
        assert_eq!(
            p.argv,
            ["/usr/sbin/grafana-server", "--homepath=/usr/share/grafana"]
        );
        std::fs::remove_dir_all(&home).unwrap();
    }

    #[test]
    fn the_provisioning_names_the_variables_this_process_sets() {
        let (datasource, provider) = crate::grafana::provisioning();
        let p = process(
            Path::new("/g"),
            false,
            Path::new("/s"),
            1,
            "u",
            Path::new("/l"),
        );
        for var in ["WASMESH_PROMETHEUS_URL", "WASMESH_GRAFANA_DASHBOARDS"] {
            let text = format!("{datasource}{provider}");
            assert!(text.contains(&format!("${{{var}}}")), "{var}");
            assert!(p.env.contains_key(var), "{var}");
        }
    }
}

//! The run plan of the process target: every process `wasmesh up` starts, in start
//! order, with its command, environment and the URL that says it is ready.
//!
//! Paths in the plan are relative to the project root, the directory `wasmesh up`
//! runs everything from (the bootstraps name filters and certificates relative to it).

use crate::model::{MeshFile, ServiceSpec, VersionSpec};
use crate::topology::{Instance, InstanceKind};
use crate::GenerateOptions;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const PLAN_FILE: &str = "run-plan.json";
pub const PROMETHEUS_PORT: u16 = 9090;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunPlan {
    /// Bumped on incompatible changes.
    pub version: u32,
    pub mesh: String,
    pub filters_dir: String,
    pub certs_dir: String,
    pub processes: Vec<Process>,
    pub prometheus: PrometheusProcess,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Process {
    /// Unique: `reviews-v2-0` (app), `reviews-v2-0-sidecar`, `ingressgateway`.
    pub name: String,
    pub kind: ProcessKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// argv; `envoy` means the Envoy binary `up` found ($ENVOY_BIN, .venv/bin/envoy, PATH).
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// The bootstrap, for Envoys.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// Ports this process listens on, by role (app, inbound, outbound, admin, ...).
    pub ports: BTreeMap<String, u16>,
    /// GET answering 200 once the process is ready; none for apps (their sidecar's
    /// inbound forwards to them, so their readiness shows through it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProcessKind {
    App,
    Sidecar,
    Gateway,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrometheusProcess {
    /// Started only when a `prometheus` binary is installed.
    pub command: Vec<String>,
    pub url: String,
}

/// An Envoy's environment: where it finds the native module, when it loads one.
fn envoy_env(opts: &GenerateOptions) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    if opts.filter_target == crate::FilterTarget::Native {
        env.insert(
            "ENVOY_DYNAMIC_MODULES_SEARCH_PATH".into(),
            crate::DEFAULT_NATIVE_DIR.into(),
        );
    }
    env
}

/// The environment contract of an app (the demo services read exactly this).
pub fn app_env(
    s: &ServiceSpec,
    v: &VersionSpec,
    app_port: u16,
    outbound_port: u16,
) -> BTreeMap<String, String> {
    let mut env = s.app.env.clone();
    env.insert("SERVICE".into(), s.name.clone());
    env.insert("VERSION".into(), v.name.clone());
    env.insert("NAMESPACE".into(), s.namespace.clone());
    env.insert("PORT".into(), app_port.to_string());
    env.insert("SERVICE_PORT".into(), s.port.to_string());
    // Call other services as http://127.0.0.1:<this port> with Host: name:port.
    env.insert(
        "WASMESH_OUTBOUND".into(),
        format!("127.0.0.1:{outbound_port}"),
    );
    env
}

pub fn plan(mesh: &MeshFile, instances: &[Instance<'_>], opts: &GenerateOptions) -> RunPlan {
    let mut apps = Vec::new();
    let mut envoys = Vec::new();
    let mut gateway = Vec::new();
    for i in instances {
        let p = i.ports;
        let mut ports = BTreeMap::new();
        ports.insert("admin".to_string(), p.admin);
        ports.insert("health".to_string(), p.health);
        ports.insert("prometheus".to_string(), p.prometheus);
        let envoy = |name: String, kind, ports| Process {
            name,
            kind,
            service: i.service().map(|s| s.name.clone()),
            version: match i.kind {
                InstanceKind::Sidecar { version, .. } => Some(version.name.clone()),
                InstanceKind::Gateway => None,
            },
            command: vec![
                "envoy".into(),
                "-c".into(),
                format!("{}/{}.json", opts.out_dir, i.name),
                "--use-dynamic-base-id".into(),
            ],
            env: envoy_env(opts),
            config: Some(format!("{}/{}.json", opts.out_dir, i.name)),
            ports,
            health_url: Some(format!("http://127.0.0.1:{}/healthz/ready", p.health)),
        };
        match i.kind {
            InstanceKind::Sidecar {
                service, version, ..
            } => {
                ports.insert("inbound".into(), p.inbound);
                ports.insert("outbound".into(), p.outbound);
                let mut app_ports = BTreeMap::new();
                app_ports.insert("app".to_string(), p.app);
                apps.push(Process {
                    name: i.name.clone(),
                    kind: ProcessKind::App,
                    service: Some(service.name.clone()),
                    version: Some(version.name.clone()),
                    command: service.app.command.clone(),
                    env: {
                        // Which replica answered shows in the demo's replies.
                        let mut env = app_env(service, version, p.app, p.outbound);
                        env.insert("INSTANCE".into(), i.name.clone());
                        env
                    },
                    config: None,
                    ports: app_ports,
                    health_url: None,
                });
                envoys.push(envoy(
                    format!("{}-sidecar", i.name),
                    ProcessKind::Sidecar,
                    ports,
                ));
            }
            InstanceKind::Gateway => {
                ports.insert("http".into(), p.app);
                gateway.push(envoy(i.name.clone(), ProcessKind::Gateway, ports));
            }
        }
    }
    // Apps first (sidecars answer 503 until they are up), then sidecars, then the gateway.
    let mut processes = apps;
    processes.extend(envoys);
    processes.extend(gateway);
    RunPlan {
        version: 1,
        mesh: mesh.mesh.name.clone(),
        filters_dir: opts.filters_dir.clone(),
        certs_dir: opts.certs_dir.clone(),
        processes,
        prometheus: PrometheusProcess {
            command: vec![
                "prometheus".into(),
                format!("--config.file={}/prometheus.yml", opts.out_dir),
                format!("--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}"),
                "--storage.tsdb.path=.wasmesh/prometheus".into(),
            ],
            url: format!("http://127.0.0.1:{PROMETHEUS_PORT}"),
        },
    }
}

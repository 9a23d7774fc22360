//! `docker-compose.yml`: per instance a sidecar service named after the instance and
//! an app service sharing its network namespace (as a pod does), the gateway with
//! its port published, and Prometheus.
//!
//! The file works with Compose v2 and Debian's docker-compose 1.29, so it has no
//! top-level `name:` (1.29 rejects it: the project is `-p NAME`) and no
//! `container_name` (fixed names would clash between two projects on one machine,
//! e.g. a test run next to a user's mesh; services reach each other by service name).
//! Start-up order: sidecar healthy, then its app, then (all apps healthy) the gateway,
//! then Prometheus. Published host ports come from `WASMESH_GATEWAY_PORT` and
//! `WASMESH_PROMETHEUS_PORT` so that several projects can run side by side.
//!
//! Image contract (the images are built locally, see issue 9): the Envoy image's
//! entrypoint is `envoy` and it contains `wasmesh-healthcheck URL` (exit 0 on a 200);
//! the demo image reads the environment documented in docs/mesh-file.md.

use crate::names::service_host;
use crate::topology::{Instance, InstanceKind};
use crate::GenerateOptions;
use serde::Serialize;
use std::collections::BTreeMap;

pub const ENVOY_IMAGE: &str = "${WASMESH_ENVOY_IMAGE:-wasmesh/envoy:1.40.0}";
pub const PROMETHEUS_IMAGE: &str = "${WASMESH_PROMETHEUS_IMAGE:-wasmesh/prometheus:latest}";
/// The environment variables naming the published host ports.
pub const GATEWAY_PORT_VAR: &str = "WASMESH_GATEWAY_PORT";
pub const PROMETHEUS_PORT_VAR: &str = "WASMESH_PROMETHEUS_PORT";
/// Prometheus's port inside its container.
pub const PROMETHEUS_PORT: u16 = 9090;
/// Where the generated compose bootstraps live, relative to the compose file.
pub const CONFIG_DIR: &str = "envoy-configs/compose";

#[derive(Debug, Serialize)]
pub struct ComposeFile {
    pub services: BTreeMap<String, Service>,
}

#[derive(Debug, Default, Serialize)]
pub struct Service {
    pub image: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub depends_on: BTreeMap<String, DependsOn>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
}

#[derive(Debug, Serialize)]
pub struct DependsOn {
    pub condition: &'static str,
}

#[derive(Debug, Serialize)]
pub struct Healthcheck {
    pub test: Vec<String>,
    pub interval: String,
    pub timeout: String,
    pub retries: u32,
    pub start_period: String,
}

/// `wasmesh-healthcheck URL` (in every image) exits 0 when `GET URL` answers 2xx.
fn healthcheck(url: String) -> Healthcheck {
    Healthcheck {
        test: vec!["CMD".into(), "wasmesh-healthcheck".into(), url],
        interval: "2s".into(),
        timeout: "2s".into(),
        retries: 30,
        start_period: "1s".into(),
    }
}

fn envoy_service(i: &Instance<'_>, opts: &GenerateOptions) -> Service {
    let mut volumes = vec![
        format!(
            "./{CONFIG_DIR}/{}.json:/etc/wasmesh/bootstrap.json:ro",
            i.name
        ),
        format!("{}:{}:ro", opts.host_filters_dir, opts.filters_dir),
        format!("{}/{}:{}:ro", opts.host_certs_dir, i.name, opts.certs_dir),
    ];
    volumes.sort();
    let mut environment = BTreeMap::new();
    // The official image drops to uid 101 unless ENVOY_UID is 0, and the mounted keys
    // are readable by their owner only; ours runs as root and ignores it.
    environment.insert("ENVOY_UID".to_string(), "0".to_string());
    Service {
        image: ENVOY_IMAGE.into(),
        hostname: Some(i.name.clone()),
        environment,
        command: vec![
            "-c".into(),
            "/etc/wasmesh/bootstrap.json".into(),
            "--log-level".into(),
            "warning".into(),
        ],
        volumes,
        healthcheck: Some(healthcheck(format!(
            "http://127.0.0.1:{}/healthz/ready",
            i.ports.health
        ))),
        ..Default::default()
    }
}

fn healthy(names: impl IntoIterator<Item = String>) -> BTreeMap<String, DependsOn> {
    names
        .into_iter()
        .map(|n| {
            (
                n,
                DependsOn {
                    condition: "service_healthy",
                },
            )
        })
        .collect()
}

/// `${VAR:-default}:container`: the host port is overridable per run.
fn published(var: &str, port: u16) -> String {
    format!("${{{var}:-{port}}}:{port}")
}

/// The compose service of an instance's app.
pub fn app_service_name(instance: &str) -> String {
    format!("{instance}-app")
}

pub fn compose(instances: &[Instance<'_>], opts: &GenerateOptions) -> ComposeFile {
    let mut services = BTreeMap::new();
    // Everything the gateway waits for: every sidecar and every app, healthy.
    let mut workloads = Vec::new();
    for i in instances {
        match i.kind {
            InstanceKind::Sidecar {
                service, version, ..
            } => {
                services.insert(i.name.clone(), envoy_service(i, opts));
                let app = app_service_name(&i.name);
                let mut env =
                    crate::runplan::app_env(service, version, i.ports.app, i.ports.outbound);
                env.insert("SERVICE_HOST".into(), service_host(service));
                env.insert("INSTANCE".into(), i.name.clone());
                services.insert(
                    app.clone(),
                    Service {
                        image: version.image(&service.app).to_string(),
                        environment: env,
                        // The app joins its sidecar's network namespace, so the sidecar
                        // must exist first: the app waits for it, never the reverse.
                        network_mode: Some(format!("service:{}", i.name)),
                        depends_on: healthy([i.name.clone()]),
                        healthcheck: Some(healthcheck(format!(
                            "http://127.0.0.1:{}/healthz",
                            i.ports.app
                        ))),
                        ..Default::default()
                    },
                );
                workloads.push(i.name.clone());
                workloads.push(app);
            }
            InstanceKind::Gateway => {
                let mut s = envoy_service(i, opts);
                s.ports = vec![published(GATEWAY_PORT_VAR, i.ports.app)];
                services.insert(i.name.clone(), s);
            }
        }
    }
    let gateway = instances.iter().find(|i| i.is_gateway());
    if let Some(g) = gateway {
        if let Some(gs) = services.get_mut(&g.name) {
            gs.depends_on = healthy(workloads.iter().cloned());
        }
    }
    // Prometheus last: it scrapes everything, so it waits for the gateway (which
    // itself waited for every workload), or for the workloads when there is none.
    let prometheus_after = match gateway {
        Some(g) => healthy([g.name.clone()]),
        None => healthy(workloads),
    };
    services.insert(
        "prometheus".into(),
        Service {
            image: PROMETHEUS_IMAGE.into(),
            command: vec![
                "--config.file=/etc/prometheus/prometheus.yml".into(),
                format!("--web.listen-address=0.0.0.0:{PROMETHEUS_PORT}"),
            ],
            volumes: vec![format!(
                "./{CONFIG_DIR}/prometheus.yml:/etc/prometheus/prometheus.yml:ro"
            )],
            ports: vec![published(PROMETHEUS_PORT_VAR, PROMETHEUS_PORT)],
            depends_on: prometheus_after,
            healthcheck: Some(healthcheck(format!(
                "http://127.0.0.1:{PROMETHEUS_PORT}/-/ready"
            ))),
            ..Default::default()
        },
    );
    ComposeFile { services }
}

//! `docker-compose.yml`: per instance a sidecar container named after the instance and
//! an app container sharing its network namespace (as a pod does), the gateway with
//! its port published, and Prometheus.
//!
//! Image contract (the images are built locally, see issue 9): the Envoy image's
//! entrypoint is `envoy` and it contains `wasmesh-healthcheck URL` (exit 0 on a 200);
//! the demo image reads the environment documented in docs/mesh-file.md.

use crate::bootstrap::service_host;
use crate::topology::{Instance, InstanceKind};
use crate::GenerateOptions;
use serde::Serialize;
use std::collections::BTreeMap;

pub const ENVOY_IMAGE: &str = "${WASMESH_ENVOY_IMAGE:-wasmesh/envoy:1.40.0}";
pub const PROMETHEUS_IMAGE: &str = "${WASMESH_PROMETHEUS_IMAGE:-wasmesh/prometheus:latest}";
/// Where the generated compose bootstraps live, relative to the compose file.
pub const CONFIG_DIR: &str = "envoy-configs/compose";

#[derive(Debug, Serialize)]
pub struct ComposeFile {
    pub name: String,
    pub services: BTreeMap<String, Service>,
}

#[derive(Debug, Default, Serialize)]
pub struct Service {
    pub image: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
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

fn healthcheck(port: u16) -> Healthcheck {
    Healthcheck {
        test: vec![
            "CMD".into(),
            "wasmesh-healthcheck".into(),
            format!("http://127.0.0.1:{port}/healthz/ready"),
        ],
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
    Service {
        image: ENVOY_IMAGE.into(),
        container_name: Some(i.name.clone()),
        hostname: Some(i.name.clone()),
        command: vec![
            "-c".into(),
            "/etc/wasmesh/bootstrap.json".into(),
            "--log-level".into(),
            "warning".into(),
        ],
        volumes,
        healthcheck: Some(healthcheck(i.ports.health)),
        ..Default::default()
    }
}

pub fn compose(mesh_name: &str, instances: &[Instance<'_>], opts: &GenerateOptions) -> ComposeFile {
    let mut services = BTreeMap::new();
    let mut sidecars = Vec::new();
    for i in instances {
        match i.kind {
            InstanceKind::Sidecar {
                service, version, ..
            } => {
                services.insert(i.name.clone(), envoy_service(i, opts));
                sidecars.push(i.name.clone());
                let mut env =
                    crate::runplan::app_env(service, version, i.ports.app, i.ports.outbound);
                env.insert("SERVICE_HOST".into(), service_host(service));
                let mut depends_on = BTreeMap::new();
                depends_on.insert(
                    i.name.clone(),
                    DependsOn {
                        condition: "service_healthy",
                    },
                );
                services.insert(
                    format!("{}-app", i.name),
                    Service {
                        image: service.app.image.clone(),
                        container_name: Some(format!("{}-app", i.name)),
                        environment: env,
                        network_mode: Some(format!("service:{}", i.name)),
                        depends_on,
                        ..Default::default()
                    },
                );
            }
            InstanceKind::Gateway => {
                let mut s = envoy_service(i, opts);
                s.ports = vec![format!("{0}:{0}", i.ports.app)];
                services.insert(i.name.clone(), s);
            }
        }
    }
    let mut all_healthy: BTreeMap<String, DependsOn> = sidecars
        .iter()
        .map(|n| {
            (
                n.clone(),
                DependsOn {
                    condition: "service_healthy",
                },
            )
        })
        .collect();
    if let Some(g) = instances.iter().find(|i| i.is_gateway()) {
        if let Some(gs) = services.get_mut(&g.name) {
            gs.depends_on = std::mem::take(&mut all_healthy);
        }
        all_healthy.insert(
            g.name.clone(),
            DependsOn {
                condition: "service_healthy",
            },
        );
    }
    services.insert(
        "prometheus".into(),
        Service {
            image: PROMETHEUS_IMAGE.into(),
            container_name: Some("prometheus".into()),
            command: vec![
                "--config.file=/etc/prometheus/prometheus.yml".into(),
                "--web.listen-address=0.0.0.0:9090".into(),
            ],
            volumes: vec![format!(
                "./{CONFIG_DIR}/prometheus.yml:/etc/prometheus/prometheus.yml:ro"
            )],
            ports: vec!["9090:9090".into()],
            depends_on: all_healthy,
            ..Default::default()
        },
    );
    ComposeFile {
        name: mesh_name.to_string(),
        services,
    }
}

//! `prometheus.yml`: one scrape target per Envoy, on its Prometheus listener.

use crate::topology::{Instance, InstanceKind};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Serialize)]
pub struct PrometheusConfig {
    pub global: Global,
    pub scrape_configs: Vec<ScrapeConfig>,
}

#[derive(Debug, Serialize)]
pub struct Global {
    pub scrape_interval: String,
    pub evaluation_interval: String,
}

#[derive(Debug, Serialize)]
pub struct ScrapeConfig {
    pub job_name: String,
    pub metrics_path: String,
    pub static_configs: Vec<StaticConfig>,
}

#[derive(Debug, Serialize)]
pub struct StaticConfig {
    pub targets: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

/// Scrapes every sidecar and the gateway every 5 s (a local mesh wants quick feedback).
pub fn config(instances: &[Instance<'_>]) -> PrometheusConfig {
    let static_configs = instances
        .iter()
        .map(|i| {
            let mut labels = BTreeMap::new();
            labels.insert("instance_name".to_string(), i.name.clone());
            match i.kind {
                InstanceKind::Sidecar {
                    service, version, ..
                } => {
                    labels.insert("app".into(), service.name.clone());
                    labels.insert("version".into(), version.name.clone());
                    labels.insert("namespace".into(), service.namespace.clone());
                }
                InstanceKind::Gateway => {
                    labels.insert("app".into(), i.name.clone());
                }
            }
            StaticConfig {
                targets: vec![format!("{}:{}", i.host, i.ports.prometheus)],
                labels,
            }
        })
        .collect();
    PrometheusConfig {
        global: Global {
            scrape_interval: "5s".into(),
            evaluation_interval: "5s".into(),
        },
        scrape_configs: vec![ScrapeConfig {
            job_name: "envoy-stats".into(),
            metrics_path: "/stats/prometheus".into(),
            static_configs,
        }],
    }
}

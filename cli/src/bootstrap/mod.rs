//! One Envoy bootstrap per instance (sidecar or gateway), in Istio's layout.
//!
//! A sidecar has five listeners: inbound (15006, mTLS per the mesh mode, to the app),
//! outbound (15001 on loopback, routed by `Host` to `outbound|PORT|SUBSET|HOST` clusters),
//! health (15021 `/healthz/ready`, answered by admin's `/ready`), Prometheus (15090
//! `/stats/prometheus` only) and admin on loopback. The gateway has its client-facing
//! listener instead of inbound/outbound. Wasm filters go in Istio's phase order; route
//! faults become rules of each caller's outbound fault filter (stock Envoy refuses
//! per-route config for Wasm filters), so, as in Istio, they run before the caller's
//! router and its retries never see an injected abort.
//!
//! One file per concern: [`listeners`], [`routes`], [`clusters`], [`tls`], and the
//! HTTP filters of a chain in [`filters`]. Which filters a chain has, and their configs,
//! come from [`crate::chains`]; every name from [`crate::names`].

mod clusters;
mod filters;
mod listeners;
mod routes;
mod tls;

pub use tls::{
    sds_dir, SDS_CA_FILE, SDS_CERT_FILE, SDS_GATEWAY_CA_FILE, SDS_GATEWAY_FILE, SECRET_CA,
    SECRET_CERT, SECRET_GATEWAY, SECRET_GATEWAY_CA,
};

use crate::chains;
use crate::envoy::*;
use crate::model::{FilterName, MeshFile, Protocol, ServiceSpec};
use crate::names;
use crate::topology::{Instance, InstanceKind};
use crate::GenerateOptions;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The admin API as a cluster, for the health and Prometheus listeners.
const AGENT: &str = "agent";

/// The listeners that only pass one admin path through; their config never changes
/// while a mesh runs, so they stay inline when the rest moves to xDS files.
pub const ADMIN_PROXY_LISTENERS: [&str; 2] = ["health", "prometheus"];

/// The bootstrap of `inst`.
pub fn bootstrap(
    mesh: &MeshFile,
    inst: &Instance<'_>,
    all: &[Instance<'_>],
    opts: &GenerateOptions,
) -> Bootstrap {
    let b = Builder {
        mesh,
        inst,
        all,
        opts,
    };
    b.build()
}

/// What every part of one bootstrap reads: the mesh, the instance, its peers, the
/// target's options.
struct Builder<'a> {
    mesh: &'a MeshFile,
    inst: &'a Instance<'a>,
    all: &'a [Instance<'a>],
    opts: &'a GenerateOptions,
}

impl Builder<'_> {
    fn build(&self) -> Bootstrap {
        let p = self.inst.ports;
        let mut listeners = Vec::new();
        let mut clusters = Vec::new();
        match self.inst.kind {
            InstanceKind::Sidecar { service, .. } => {
                listeners.push(self.inbound_listener(service));
                listeners.push(self.outbound_listener(service));
                clusters.push(clusters::static_cluster(
                    &names::inbound_cluster(service.app_port()),
                    "127.0.0.1",
                    p.app,
                    service.protocol,
                ));
                for callee in chains::callees(self.mesh, service) {
                    clusters.extend(self.service_clusters(callee));
                }
                for e in &self.mesh.egress {
                    clusters.push(clusters::egress_cluster(e));
                }
            }
            InstanceKind::Gateway => {
                listeners.push(self.gateway_listener());
                for callee in self.gateway_callees() {
                    clusters.extend(self.service_clusters(callee));
                }
            }
        }
        let [health, prometheus] = ADMIN_PROXY_LISTENERS;
        listeners.push(listeners::admin_proxy_listener(
            health,
            self.inst.bind,
            p.health,
            "/healthz/ready",
            Some("/ready"),
        ));
        listeners.push(listeners::admin_proxy_listener(
            prometheus,
            self.inst.bind,
            p.prometheus,
            "/stats/prometheus",
            None,
        ));
        clusters.push(clusters::static_cluster(
            AGENT,
            "127.0.0.1",
            p.admin,
            Protocol::Http,
        ));
        if let Some(t) = &self.mesh.mesh.tracing {
            clusters.push(clusters::tracing_cluster(t.provider, &t.address));
        }
        if let Some(rls) = &self.mesh.mesh.rate_limit_service {
            let asks = self.chains().iter().any(|c| {
                c.filters
                    .iter()
                    .any(|f| crate::ratelimit::asks_service(&f.spec))
            });
            if asks {
                clusters.push(clusters::static_cluster(
                    crate::ratelimit::CLUSTER,
                    "127.0.0.1",
                    rls.port,
                    Protocol::Grpc,
                ));
            }
        }
        Bootstrap {
            node: self.node(),
            admin: Admin {
                address: Address::new("127.0.0.1", p.admin),
            },
            dynamic_resources: None,
            static_resources: StaticResources {
                listeners,
                clusters,
            },
            stats_config: self.stats_config(),
            stats_flush_interval: crate::stats::FLUSH_INTERVAL.into(),
            layered_runtime: filters::runtime_flags(self.opts.filter_target),
        }
    }

    /// The chains this Envoy runs: a sidecar's inbound and outbound, or the gateway's.
    fn chains(&self) -> Vec<chains::Chain> {
        match self.inst.kind {
            InstanceKind::Sidecar { service, .. } => {
                let i = chains::service_index(self.mesh, service);
                vec![
                    chains::inbound(self.mesh, i),
                    chains::outbound(self.mesh, i),
                ]
            }
            InstanceKind::Gateway => vec![chains::gateway(self.mesh)],
        }
    }

    /// Every filter this Envoy runs, with the config Envoy gets.
    fn filter_configs(&self) -> Vec<(FilterName, Value)> {
        self.chains()
            .iter()
            .flat_map(|c| &c.filters)
            .map(|f| {
                let config = chains::generated_config(self.mesh, &f.spec, || self.workload());
                (f.spec.name, config)
            })
            .collect()
    }

    fn stats_config(&self) -> StatsConfig {
        let configs = self.filter_configs();
        crate::stats::stats_config(configs.iter().map(|(n, c)| (*n, c)))
    }

    fn node(&self) -> Node {
        let td = &self.mesh.mesh.trust_domain;
        let mut md: BTreeMap<String, Value> = BTreeMap::new();
        md.insert("MESH_ID".into(), json!(self.mesh.mesh.name));
        md.insert("NAME".into(), json!(self.inst.name));
        md.insert("TRUST_DOMAIN".into(), json!(td));
        let (id, cluster) = match self.inst.kind {
            InstanceKind::Sidecar {
                service, version, ..
            } => {
                let mut labels: BTreeMap<String, String> = version.labels.clone();
                labels.insert("app".into(), service.name.clone());
                labels.insert("version".into(), version.name.clone());
                labels.insert(
                    "service.istio.io/canonical-name".into(),
                    service.name.clone(),
                );
                labels.insert(
                    "service.istio.io/canonical-revision".into(),
                    version.name.clone(),
                );
                md.insert("LABELS".into(), json!(labels));
                md.insert("NAMESPACE".into(), json!(service.namespace));
                md.insert("SERVICE_ACCOUNT".into(), json!(service.service_account()));
                md.insert(
                    "WORKLOAD_NAME".into(),
                    json!(names::workload(&service.name, &version.name)),
                );
                md.insert(
                    "SPIFFE_ID".into(),
                    json!(names::service_spiffe_id(td, service)),
                );
                (
                    names::node_id(
                        "sidecar",
                        &self.inst.host,
                        &self.inst.name,
                        &service.namespace,
                    ),
                    format!("{}.{}", service.name, service.namespace),
                )
            }
            InstanceKind::Gateway => {
                let ns = self.gateway_namespace();
                let sa = names::gateway_service_account(&self.inst.name);
                md.insert("NAMESPACE".into(), json!(ns));
                md.insert("SERVICE_ACCOUNT".into(), json!(sa));
                md.insert("WORKLOAD_NAME".into(), json!(self.inst.name));
                md.insert(
                    "LABELS".into(),
                    json!({ "app": self.inst.name, "istio": "ingressgateway" }),
                );
                md.insert("SPIFFE_ID".into(), json!(names::spiffe_id(td, ns, &sa)));
                (
                    names::node_id("router", &self.inst.host, &self.inst.name, ns),
                    format!("{}.{}", self.inst.name, ns),
                )
            }
        };
        Node {
            id,
            cluster,
            metadata: md,
        }
    }

    fn gateway_namespace(&self) -> &str {
        self.mesh
            .gateway
            .as_ref()
            .map_or("default", |g| g.namespace.as_str())
    }

    /// The services the gateway routes or mirrors to.
    fn gateway_callees(&self) -> Vec<&ServiceSpec> {
        let Some(g) = &self.mesh.gateway else {
            return Vec::new();
        };
        self.mesh
            .services
            .iter()
            .filter(|s| {
                g.routes.iter().any(|r| {
                    r.route
                        .iter()
                        .any(|d| d.service.as_deref() == Some(s.name.as_str()))
                        || r.mirror
                            .as_ref()
                            .is_some_and(|m| m.service.as_deref() == Some(s.name.as_str()))
                })
            })
            .collect()
    }

    /// The telemetry filter's `workload`: who this Envoy is, for Istio's labels.
    fn workload(&self) -> Value {
        let td = &self.mesh.mesh.trust_domain;
        match self.inst.kind {
            InstanceKind::Sidecar {
                service, version, ..
            } => chains::workload_identity(td, service, &version.name),
            InstanceKind::Gateway => {
                let ns = self.gateway_namespace();
                let sa = names::gateway_service_account(&self.inst.name);
                json!({
                    "name": self.inst.name,
                    "namespace": ns,
                    "app": self.inst.name,
                    "principal": names::spiffe_id(td, ns, &sa),
                    "cluster": "Kubernetes",
                })
            }
        }
    }
}

//! Clusters: each callee's `outbound|PORT|SUBSET|HOST` (all instances, then one per
//! version), the app's `inbound|PORT||`, egress hosts, the tracer and the admin API.

use super::{tls, Builder};
use crate::envoy::*;
use crate::model::{
    EgressSpec, LoadBalancer, MtlsMode, Protocol, ServiceSpec, TracingProvider as Provider,
};
use crate::names;
use crate::topology::{InstanceKind, Target};
use std::collections::BTreeMap;

impl Builder<'_> {
    /// `outbound|PORT||HOST` over every instance, then one cluster per version.
    pub(super) fn service_clusters(&self, s: &ServiceSpec) -> Vec<Cluster> {
        let all = self.endpoints(s, None);
        let mut out = vec![self.outbound(s, None, all)];
        for v in &s.versions {
            out.push(self.outbound(s, Some(&v.name), self.endpoints(s, Some(&v.name))));
        }
        out
    }

    fn endpoints(&self, s: &ServiceSpec, version: Option<&str>) -> Vec<(String, u16)> {
        self.all
            .iter()
            .filter(|i| match i.kind {
                InstanceKind::Sidecar {
                    service,
                    version: v,
                    ..
                } => service.name == s.name && version.is_none_or(|want| want == v.name),
                InstanceKind::Gateway => false,
            })
            .map(|i| (i.host.clone(), i.ports.inbound))
            .collect()
    }

    fn outbound(&self, s: &ServiceSpec, subset: Option<&str>, eps: Vec<(String, u16)>) -> Cluster {
        let name = names::outbound_cluster(s, subset);
        let tp = &s.traffic_policy;
        let cluster_type = match self.opts.target {
            Target::Process { .. } => "STATIC",
            Target::Compose => "STRICT_DNS",
        };
        let transport_socket =
            (self.mesh.mesh.mtls != MtlsMode::Disable).then(|| self.upstream_mtls(s, subset));
        Cluster {
            load_assignment: load_assignment(&name, &eps),
            name,
            kind: cluster_type,
            connect_timeout: "10s".into(),
            // Consistent hashing is a ring of hosts here; the route says what to hash
            // (routes.rs, hash_policy), as Istio splits it.
            lb_policy: match &tp.load_balancer {
                Some(LoadBalancer::Hashed(_)) => "RING_HASH",
                Some(lb) => lb.simple_name().unwrap_or("ROUND_ROBIN"),
                None => "ROUND_ROBIN",
            },
            dns_lookup_family: (cluster_type == "STRICT_DNS").then_some("V4_ONLY"),
            circuit_breakers: tp.connection_pool.as_ref().map(|cp| CircuitBreakers {
                thresholds: vec![Thresholds {
                    max_connections: cp.max_connections,
                    max_pending_requests: cp.max_pending_requests,
                    max_requests: cp.max_requests,
                    max_retries: cp.max_retries,
                }],
            }),
            outlier_detection: tp.outlier_detection.as_ref().map(|od| OutlierDetection {
                consecutive_5xx: od.consecutive5xx_errors,
                interval: od.interval.envoy(),
                base_ejection_time: od.base_ejection_time.envoy(),
                max_ejection_percent: od.max_ejection_percent,
            }),
            transport_socket,
            typed_extension_protocol_options: h2_options(s.protocol),
        }
    }
}

fn load_assignment(name: &str, eps: &[(String, u16)]) -> ClusterLoadAssignment {
    ClusterLoadAssignment {
        cluster_name: name.into(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints: eps
                .iter()
                .map(|(host, port)| LbEndpoint {
                    endpoint: Endpoint {
                        address: Address::new(host, *port),
                    },
                })
                .collect(),
        }],
    }
}

fn h2_options(p: Protocol) -> BTreeMap<String, TypedConfig> {
    let mut m = BTreeMap::new();
    if p.is_h2() {
        m.insert(
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions".into(),
            TypedConfig::HttpProtocolOptions(HttpProtocolOptions {
                explicit_http_config: ExplicitHttpConfig {
                    http2_protocol_options: Empty {},
                },
            }),
        );
    }
    m
}

pub(super) fn static_cluster(name: &str, host: &str, port: u16, protocol: Protocol) -> Cluster {
    Cluster {
        name: name.into(),
        kind: "STATIC",
        connect_timeout: "10s".into(),
        lb_policy: "ROUND_ROBIN",
        dns_lookup_family: None,
        load_assignment: load_assignment(name, &[(host.to_string(), port)]),
        circuit_breakers: None,
        outlier_detection: None,
        transport_socket: None,
        typed_extension_protocol_options: h2_options(protocol),
    }
}

fn dns_cluster(name: &str, host: &str, port: u16, protocol: Protocol) -> Cluster {
    Cluster {
        kind: "STRICT_DNS",
        dns_lookup_family: Some("V4_ONLY"),
        ..static_cluster(name, host, port, protocol)
    }
}

pub(super) fn egress_cluster(e: &EgressSpec) -> Cluster {
    let name = names::egress_cluster(&e.host, e.port);
    let mut c = dns_cluster(&name, &e.host, e.port, Protocol::Http);
    if e.tls {
        c.transport_socket = Some(tls::egress_tls(e));
    }
    c
}

pub(super) fn tracing_cluster(p: Provider, address: &str) -> Cluster {
    let (host, port) = address
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
        .unwrap_or((address, 0));
    match p {
        Provider::Zipkin => dns_cluster("zipkin", host, port, Protocol::Http),
        Provider::Opentelemetry => dns_cluster("opentelemetry", host, port, Protocol::Grpc),
    }
}

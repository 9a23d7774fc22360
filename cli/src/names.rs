//! Every name the generator gives, spelled as Istio spells it: hosts, instances,
//! workloads, clusters, listeners, node ids and SPIFFE identities.
//!
//! Dashboards, `istioctl`-style tools and our own status and tests read these names
//! back, so each is written here once and every output (bootstraps, certificates,
//! compose, Kubernetes) calls the same function.

use crate::model::{RouteSpec, ServiceSpec};

/// The inbound listener of a sidecar (Istio's name).
pub const INBOUND_LISTENER: &str = "virtualInbound";
/// The outbound listener of a sidecar (Istio's name).
pub const OUTBOUND_LISTENER: &str = "virtualOutbound";
/// The client-facing listener of the gateway.
pub const GATEWAY_LISTENER: &str = "gateway";

/// The FQDN Istio gives a service.
pub fn service_host(s: &ServiceSpec) -> String {
    format!("{}.{}.svc.cluster.local", s.name, s.namespace)
}

/// The names a caller may give a service, without the port.
pub fn service_names(s: &ServiceSpec) -> [String; 4] {
    [
        s.name.clone(),
        format!("{}.{}", s.name, s.namespace),
        format!("{}.{}.svc", s.name, s.namespace),
        service_host(s),
    ]
}

/// The `Host` values that reach a service through the outbound listener.
pub fn service_domains(s: &ServiceSpec) -> Vec<String> {
    let mut out = Vec::new();
    for n in service_names(s) {
        out.push(format!("{n}:{}", s.port));
        out.push(n);
    }
    out
}

/// One replica's sidecar: `reviews-v2-0`.
/// The Envoy route names of `r`, the `j`th route of service `s`: `SERVICE.NAME` (the
/// route's `name`, else its index), plus `.K` per match when it has several (route
/// names must be unique). Stages that follow a route (cors) match these names.
pub fn service_route_names(s: &ServiceSpec, j: usize, r: &RouteSpec) -> Vec<String> {
    let name = r.name.clone().unwrap_or_else(|| j.to_string());
    route_names(&format!("{}.{name}", s.name), r)
}

/// The Envoy route names of the gateway's `j`th route: `GATEWAY.J`, plus `.K` per match.
pub fn gateway_route_names(gateway: &str, j: usize, r: &RouteSpec) -> Vec<String> {
    route_names(&format!("{gateway}.{j}"), r)
}

/// One name per match of `r` (none written: one): `base`, or `base.K` for several.
pub fn route_names(base: &str, r: &RouteSpec) -> Vec<String> {
    let count = r.effective_matches().len();
    if count > 1 {
        (0..count).map(|k| format!("{base}.{k}")).collect()
    } else {
        vec![base.to_string()]
    }
}

pub fn instance(service: &str, version: &str, replica: u32) -> String {
    format!("{service}-{version}-{replica}")
}

/// A version's workload (Deployment) name: `reviews-v2`.
pub fn workload(service: &str, version: &str) -> String {
    format!("{service}-{version}")
}

/// `outbound|PORT|SUBSET|HOST`.
pub fn outbound_cluster(s: &ServiceSpec, subset: Option<&str>) -> String {
    format!(
        "outbound|{}|{}|{}",
        s.port,
        subset.unwrap_or(""),
        service_host(s)
    )
}

/// `outbound|PORT||HOST` for an external host.
pub fn egress_cluster(host: &str, port: u16) -> String {
    format!("outbound|{port}||{host}")
}

/// `inbound|PORT||`: the app behind a sidecar.
pub fn inbound_cluster(app_port: u16) -> String {
    format!("inbound|{app_port}||")
}

/// The SNI a sidecar sends to a service's subset: `outbound_.PORT_.SUBSET_.HOST`.
pub fn outbound_sni(s: &ServiceSpec, subset: Option<&str>) -> String {
    format!(
        "outbound_.{}_.{}_.{}",
        s.port,
        subset.unwrap_or(""),
        service_host(s)
    )
}

/// The Envoy node id of a sidecar (`sidecar~IP~POD.NS~NS.svc.cluster.local`) or of
/// the gateway (`router~…`).
pub fn node_id(role: &str, host: &str, instance: &str, namespace: &str) -> String {
    format!("{role}~{host}~{instance}.{namespace}~{namespace}.svc.cluster.local")
}

/// The SPIFFE identity of a service account.
pub fn spiffe_id(trust_domain: &str, namespace: &str, service_account: &str) -> String {
    format!("spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}")
}

/// The gateway's service account, named as Istio names it.
pub fn gateway_service_account(gateway: &str) -> String {
    format!("{gateway}-service-account")
}

/// A service's SPIFFE identity in the mesh's trust domain.
pub fn service_spiffe_id(trust_domain: &str, s: &ServiceSpec) -> String {
    spiffe_id(trust_domain, &s.namespace, s.service_account())
}

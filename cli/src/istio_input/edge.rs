//! The mesh's edges: a Gateway (with the VirtualServices bound to it) into the mesh's
//! gateway; ServiceEntries (with DestinationRules that originate TLS) into `egress`.

use super::documents::Doc;
use super::Reader;
use crate::istio;
use crate::model::{EgressSpec, GatewaySpec, GatewayTls};

impl Reader {
    /// The one Gateway of the mesh. A `credentialName` names a Kubernetes Secret that
    /// is not here: the gateway's certificate is issued by the mesh CA for its hosts.
    pub(super) fn gateway(&mut self, d: &Doc, gw: &istio::Gateway) {
        if let Some((first, _)) = &self.gateway_doc {
            self.findings.unsupported(
                d,
                "",
                format!(
                    "a second Gateway ({} is the first): the mesh has one ingress gateway",
                    first.label()
                ),
            );
            return;
        }
        let Some(server) = gw.spec.servers.first() else {
            self.findings
                .error(d, "spec.servers", "a Gateway needs a server");
            return;
        };
        if gw.spec.servers.len() > 1 {
            self.findings.unsupported(
                d,
                "spec.servers[1]",
                "the mesh's gateway listens on one port",
            );
        }
        let tls = match (server.port.protocol.as_str(), &server.tls) {
            ("HTTP", None) => None,
            ("HTTPS", Some(t)) if t.mode == "SIMPLE" => Some(GatewayTls::default()),
            ("HTTPS", Some(t)) => {
                self.findings.unsupported(
                    d,
                    "spec.servers[0].tls.mode",
                    format!("{}: the gateway terminates TLS (SIMPLE) only", t.mode),
                );
                None
            }
            ("HTTPS", None) => {
                self.findings
                    .error(d, "spec.servers[0].tls", "HTTPS needs tls");
                None
            }
            ("HTTP", Some(_)) => {
                self.findings.unsupported(
                    d,
                    "spec.servers[0].tls",
                    "an HTTP server with tls (HTTPS redirect) is not in the mesh model",
                );
                None
            }
            (other, _) => {
                self.findings.unsupported(
                    d,
                    "spec.servers[0].port.protocol",
                    format!("{other}: the gateway serves HTTP or HTTPS"),
                );
                None
            }
        };
        for (k, h) in server.hosts.iter().enumerate() {
            if h.contains('/') {
                self.findings.unsupported(
                    d,
                    &format!("spec.servers[0].hosts[{k}]"),
                    "namespace-qualified hosts: every route of the gateway is visible to it",
                );
            }
        }
        self.mesh.gateway = Some(GatewaySpec {
            name: d.name.clone(),
            namespace: d.namespace.clone(),
            port: server.port.number,
            hosts: server.hosts.clone(),
            tls,
            routes: Vec::new(),
            filters: Vec::new(),
        });
        self.gateway_doc = Some((d.clone(), gw.spec.selector.clone()));
    }

    /// The routes of VirtualServices bound to the gateway, once it is known.
    pub(super) fn attach_gateway_routes(&mut self) {
        let bound = std::mem::take(&mut self.gateway_routes);
        let mut taken: Option<String> = None;
        for (d, names, routes) in bound {
            let Some(g) = self.mesh.gateway.as_mut() else {
                self.findings
                    .error(&d, "spec.gateways", "no Gateway in the input");
                continue;
            };
            for (k, n) in names.iter().enumerate() {
                let (ns, name) = n
                    .split_once('/')
                    .unwrap_or((d.namespace.as_str(), n.as_str()));
                if ns != g.namespace || name != g.name {
                    self.findings.error(
                        &d,
                        &format!("spec.gateways[{k}]"),
                        format!("{n}: the Gateway is {}/{}", g.namespace, g.name),
                    );
                }
            }
            if let Some(first) = &taken {
                self.findings.unsupported(&d, "spec.gateways", format!("{first} already routes the gateway: the mesh's gateway has one route table"));
                continue;
            }
            g.routes = routes;
            taken = Some(d.label());
        }
    }

    /// Each host and port of a ServiceEntry: an external HTTP host.
    pub(super) fn service_entry(&mut self, d: &Doc, se: &istio::ServiceEntry) {
        let spec = &se.spec;
        if !matches!(spec.location.as_str(), "" | "MESH_EXTERNAL") {
            self.findings.unsupported(d, "spec.location", format!("{}: a ServiceEntry adds an external host; in-mesh services come from Kubernetes Services", spec.location));
        }
        if !matches!(spec.resolution.as_str(), "" | "DNS" | "NONE") {
            self.findings.unsupported(
                d,
                "spec.resolution",
                format!(
                    "{}: the sidecar resolves external hosts by DNS",
                    spec.resolution
                ),
            );
        }
        for (k, p) in spec.ports.iter().enumerate() {
            if !matches!(p.protocol.as_str(), "" | "HTTP") {
                self.findings.unsupported(d, &format!("spec.ports[{k}].protocol"), format!("{}: the app speaks HTTP to its sidecar; a DestinationRule with tls SIMPLE makes the sidecar originate TLS", p.protocol));
                continue;
            }
            for (j, host) in spec.hosts.iter().enumerate() {
                if host.starts_with('*') {
                    self.findings.unsupported(
                        d,
                        &format!("spec.hosts[{j}]"),
                        "wildcard hosts: the sidecar needs a name to resolve",
                    );
                    continue;
                }
                self.mesh.egress.push(EgressSpec {
                    host: host.clone(),
                    port: p.number,
                    tls: false,
                    ca_certificates: None,
                    insecure_skip_verify: false,
                });
            }
        }
    }

    /// A DestinationRule for an external host: TLS origination (SIMPLE) only.
    pub(super) fn egress_rule(&mut self, d: &Doc, dr: &istio::DestinationRule) {
        let host = dr.spec.host.clone();
        if !dr.spec.subsets.is_empty() {
            self.findings
                .unsupported(d, "spec.subsets", "an external host has no versions");
        }
        let tp = dr.spec.traffic_policy.clone().unwrap_or_default();
        if tp.load_balancer.is_some()
            || tp.connection_pool.is_some()
            || tp.outlier_detection.is_some()
            || !tp.port_level_settings.is_empty()
        {
            self.findings.unsupported(
                d,
                "spec.trafficPolicy",
                "for an external host the mesh model carries `tls` only",
            );
        }
        let Some(tls) = tp.tls else { return };
        if tls.mode != "SIMPLE" {
            self.findings.unsupported(d, "spec.trafficPolicy.tls.mode", format!("{}: the sidecar originates TLS (SIMPLE) to external hosts, no client certificate", tls.mode));
            return;
        }
        if tls.sni.as_ref().is_some_and(|s| *s != host) {
            self.findings
                .unsupported(d, "spec.trafficPolicy.tls.sni", "the SNI is the host");
        }
        for e in self.mesh.egress.iter_mut().filter(|e| e.host == host) {
            e.tls = true;
            e.ca_certificates = tls.ca_certificates.clone();
            e.insecure_skip_verify = tls.insecure_skip_verify;
        }
    }
}

//! PeerAuthentication into the mesh's one mTLS mode; AuthorizationPolicy and
//! RequestAuthentication into each selected service's inbound authz filter (its
//! config is Istio's own spec: docs/filters/authz.md).

use super::documents::Doc;
use super::{Reader, ROOT_NAMESPACE};
use crate::istio;
use crate::model::MtlsMode;
use serde_json::{json, Map, Value};

fn mode(text: &str) -> Option<Option<MtlsMode>> {
    match text {
        "" | "UNSET" => Some(None),
        "STRICT" => Some(Some(MtlsMode::Strict)),
        "PERMISSIVE" => Some(Some(MtlsMode::Permissive)),
        "DISABLE" => Some(Some(MtlsMode::Disable)),
        _ => None,
    }
}

impl Reader {
    /// The mesh's mTLS mode from every PeerAuthentication. The mesh model has one mode
    /// for the whole mesh, so a namespace or workload policy is taken only where it
    /// says what the mesh-wide mode says (or, for a namespace holding every service,
    /// where it is the only policy that decides).
    pub(super) fn peer_authentications(&mut self, pas: &[(Doc, istio::PeerAuthentication)]) {
        let mut mesh_wide: Option<(&Doc, Option<MtlsMode>)> = None;
        let mut narrower = Vec::new();
        for (d, pa) in pas {
            let Some(m) = mode(&pa.spec.mtls.mode) else {
                self.findings.error(
                    d,
                    "spec.mtls.mode",
                    format!(
                        "{}: STRICT, PERMISSIVE, DISABLE or UNSET",
                        pa.spec.mtls.mode
                    ),
                );
                continue;
            };
            let whole_namespace = pa
                .spec
                .selector
                .as_ref()
                .is_none_or(|s| s.match_labels.is_empty());
            if whole_namespace && d.namespace == ROOT_NAMESPACE {
                if let Some((first, _)) = mesh_wide {
                    self.findings.error(d, "", format!("a second mesh-wide PeerAuthentication (the first is {}): they conflict", first.label()));
                    continue;
                }
                mesh_wide = Some((d, m));
            } else {
                narrower.push((d, pa, m, whole_namespace));
            }
        }
        // Istio's default without any policy is PERMISSIVE.
        let mut effective = mesh_wide
            .and_then(|(_, m)| m)
            .unwrap_or(MtlsMode::Permissive);
        let every_service_in = |ns: &str| self.mesh.services.iter().all(|s| s.namespace == ns);
        if mesh_wide.is_none() {
            let namespaced: Vec<_> = narrower.iter().filter(|(_, _, _, whole)| *whole).collect();
            if let [(d, _, Some(m), _)] = namespaced.as_slice() {
                if every_service_in(&d.namespace) {
                    effective = *m;
                }
            }
        }
        for (d, pa, m, _) in &narrower {
            if m.is_some_and(|m| m != effective) {
                self.findings.unsupported(d, "spec.mtls.mode", format!(
                    "{:?} here but {effective:?} for the rest of the mesh: the mesh model has one mTLS mode for the whole mesh",
                    m.unwrap_or(effective)
                ));
            }
            for (port, p) in &pa.spec.port_level_mtls {
                match mode(&p.mode) {
                    Some(Some(m)) if m != effective => self.findings.unsupported(
                        d,
                        &format!("spec.portLevelMtls.{port}.mode"),
                        format!("{m:?} on port {port} but {effective:?} elsewhere: the mesh model has one mTLS mode for the whole mesh"),
                    ),
                    Some(_) => {}
                    None => self.findings.error(d, &format!("spec.portLevelMtls.{port}.mode"), format!("{}: STRICT, PERMISSIVE, DISABLE or UNSET", p.mode)),
                }
            }
        }
        self.mesh.mesh.mtls = effective;
    }

    /// What a policy in `d`'s namespace with `selector` applies to: services
    /// (`Some(index)`), or the gateway (`None`) when it selects the Gateway's labels.
    fn policy_targets(
        &mut self,
        d: &Doc,
        selector: &istio::WorkloadSelector,
    ) -> Vec<Option<usize>> {
        if self.selects_gateway(d, selector) {
            return vec![None];
        }
        if selector.match_labels.is_empty() {
            return (0..self.mesh.services.len())
                .filter(|&i| {
                    d.namespace == ROOT_NAMESPACE || self.mesh.services[i].namespace == d.namespace
                })
                .map(Some)
                .collect();
        }
        self.services_of_selector(d, selector)
            .into_iter()
            .map(Some)
            .collect()
    }

    pub(super) fn authorization_policy(&mut self, d: &Doc, ap: &istio::AuthorizationPolicy) {
        let action = if ap.spec.action.is_empty() {
            "ALLOW"
        } else {
            ap.spec.action.as_str()
        };
        // CUSTOM: the named provider, from the MeshConfig.
        let mut provider = None;
        match action {
            "ALLOW" | "DENY" | "AUDIT" => {
                if ap.spec.provider.is_some() {
                    self.findings
                        .error(d, "spec.provider", "only with action CUSTOM");
                }
            }
            "CUSTOM" => {
                let name = ap
                    .spec
                    .provider
                    .as_ref()
                    .and_then(|p| p.get("name"))
                    .and_then(Value::as_str);
                let Some(name) = name else {
                    self.findings.error(
                        d,
                        "spec.provider.name",
                        "CUSTOM needs the provider's name",
                    );
                    return;
                };
                let Some(p) = self.providers.get(name).cloned() else {
                    self.findings.error(
                        d,
                        "spec.provider.name",
                        format!("{name}: no such extensionProviders entry in the MeshConfig (the `istio` ConfigMap in istio-system)"),
                    );
                    return;
                };
                provider = Some((name.to_string(), p));
            }
            other => {
                self.findings.error(
                    d,
                    "spec.action",
                    format!("{other}: ALLOW, DENY, AUDIT or CUSTOM"),
                );
                return;
            }
        }
        let mut policy = Map::new();
        policy.insert("name".into(), json!(d.name));
        policy.insert("action".into(), json!(action));
        if let (Some(p), Some((_, _))) = (&ap.spec.provider, &provider) {
            policy.insert("provider".into(), p.clone());
        }
        policy.insert("rules".into(), Value::Array(ap.spec.rules.clone()));
        let dry_run = ap
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("istio.io/dry-run"))
            .is_some_and(|v| v == "true");
        if dry_run {
            policy.insert("dryRun".into(), json!(true));
        }
        for i in self.policy_targets(d, &ap.spec.selector) {
            let parts = self.authz.entry(i).or_default();
            parts.policies.push(Value::Object(policy.clone()));
            if let Some((name, p)) = &provider {
                parts.providers.insert(name.clone(), p.clone());
            }
        }
    }

    /// The cluster a sidecar reaches a JWKS URI through: an egress host's (TLS
    /// originated for https) or a mesh service's. Istio's control plane fetches the
    /// keys; here the authz filter does, so the host must be reachable from the mesh.
    fn key_server_cluster(&self, uri: &str) -> Option<String> {
        let (scheme, rest) = uri.split_once("://")?;
        let authority = rest.split('/').next()?;
        let default_port = match scheme {
            "https" => 443,
            "http" => 80,
            _ => return None,
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().ok()?),
            None => (authority, default_port),
        };
        let tls = scheme == "https";
        if let Some(e) = self
            .mesh
            .egress
            .iter()
            .find(|e| e.host == host && e.port == port && e.tls == tls)
        {
            return Some(crate::names::egress_cluster(&e.host, e.port));
        }
        let i = self.service_of_host(host, ROOT_NAMESPACE)?;
        let s = &self.mesh.services[i];
        (!tls && s.port == port).then(|| crate::names::outbound_cluster(s, None))
    }

    pub(super) fn request_authentication(&mut self, d: &Doc, ra: &istio::RequestAuthentication) {
        let mut rules = Vec::new();
        for (k, r) in ra.spec.jwt_rules.iter().enumerate() {
            let mut rule = r.clone();
            if let Some(uri) = r.get("jwksUri").and_then(Value::as_str) {
                let Some(cluster) = self.key_server_cluster(uri) else {
                    self.findings.unsupported(
                        d,
                        &format!("spec.jwtRules[{k}].jwksUri"),
                        format!("{uri}: the sidecar fetches the keys itself, through a cluster: add a ServiceEntry for the key server's host and port (with a DestinationRule `tls: SIMPLE` for https), or give the keys inline as `jwks`"),
                    );
                    continue;
                };
                if let Some(obj) = rule.as_object_mut() {
                    obj.insert("cluster".into(), json!(cluster));
                }
            }
            rules.push(rule);
        }
        for i in self.policy_targets(d, &ra.spec.selector) {
            self.authz
                .entry(i)
                .or_default()
                .jwt_rules
                .extend(rules.iter().cloned());
        }
    }
}

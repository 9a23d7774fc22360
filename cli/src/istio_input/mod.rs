//! Istio's own resources as input: a directory or a multi-document YAML of
//! VirtualService, DestinationRule, Gateway, ServiceEntry, Sidecar, PeerAuthentication,
//! AuthorizationPolicy, RequestAuthentication, WasmPlugin and Telemetry resources, with the
//! Kubernetes Services, Deployments and ServiceAccounts that give the services,
//! converted into the same [`MeshFile`] a mesh file parses into, so one generator
//! serves both. Each document is deserialised through the typed structs that
//! `wasmesh k8s` writes with ([`crate::istio`]); every field wasmesh does not carry is
//! reported (see [`refusal`]), never dropped silently. docs/istio-resources.md has the
//! table of resources and fields.

mod documents;
mod edge;
mod extensions;
mod meshconfig;
pub mod refusal;
mod security;
mod sidecar;
mod telemetry;
mod traffic;
mod workloads;

pub use documents::is_istio_input;

use crate::istio;
use crate::model::{
    FailurePolicy, FilterName, FilterSpec, MeshError, MeshFile, MeshSpec, RouteSpec,
};
use crate::names;
use documents::Doc;
use refusal::Findings;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Istio's root namespace: mesh-wide policies live there.
pub const ROOT_NAMESPACE: &str = "istio-system";

/// The mesh read from Istio resources, and the fields dropped on the way (empty
/// unless unsupported fields were allowed).
#[derive(Debug)]
pub struct Loaded {
    pub mesh: MeshFile,
    pub dropped: Vec<MeshError>,
}

/// The resources wasmesh reads, by API group: (group, versions, kinds).
const KINDS: [(&str, &[&str], &[&str]); 6] = [
    ("", &["v1"], &["Service", "ServiceAccount", "ConfigMap"]),
    ("apps", &["v1"], &["Deployment"]),
    (
        "networking.istio.io",
        &["v1", "v1beta1", "v1alpha3"],
        &[
            "VirtualService",
            "DestinationRule",
            "Gateway",
            "ServiceEntry",
            "Sidecar",
        ],
    ),
    (
        "security.istio.io",
        &["v1", "v1beta1"],
        &[
            "PeerAuthentication",
            "AuthorizationPolicy",
            "RequestAuthentication",
        ],
    ),
    ("extensions.istio.io", &["v1alpha1"], &["WasmPlugin"]),
    ("telemetry.istio.io", &["v1", "v1alpha1"], &["Telemetry"]),
];

/// Known Istio kinds wasmesh does not read, and why.
fn refused_kind(kind: &str) -> Option<&'static str> {
    match kind {
        "EnvoyFilter" => Some("EnvoyFilter patches Istio's generated Envoy config, which wasmesh does not generate; use a WasmPlugin with one of wasmesh's filters"),
        "WorkloadEntry" | "WorkloadGroup" => Some("workloads come from Deployments"),
        "ProxyConfig" => Some("the sidecars' Envoy settings are wasmesh's own"),
        _ => None,
    }
}

/// Accumulates the model while the resources are read.
struct Reader {
    mesh: MeshFile,
    findings: Findings,
    /// Per service: its Service's selector (the pod labels of its workloads).
    selectors: Vec<BTreeMap<String, String>>,
    /// Per service: subset name -> version.
    subsets: BTreeMap<usize, BTreeMap<String, String>>,
    /// Subsets whose version no Deployment has: (service, subset).
    empty_subsets: BTreeSet<(usize, String)>,
    /// The DestinationRule and the VirtualService already read for a service.
    rule_of: BTreeMap<usize, String>,
    routes_of: BTreeMap<usize, String>,
    pending_tls: Vec<(Doc, istio::ClientTlsSettings)>,
    gateway_doc: Option<(Doc, BTreeMap<String, String>)>,
    /// VirtualServices bound to a gateway: (resource, gateway names, routes).
    gateway_routes: Vec<(Doc, Vec<String>, Vec<RouteSpec>)>,
    /// Native authorization per service (`Some(index)`) or for the gateway (`None`).
    authz: BTreeMap<Option<usize>, AuthzParts>,
    /// The MeshConfig's HTTP authorizers, as the authz filter's providers, by name.
    providers: BTreeMap<String, Value>,
    /// The MeshConfig's tracers by name: (kind, `host:port` of the collector).
    tracers: BTreeMap<String, (crate::model::TracingProvider, String)>,
    plugins: Vec<extensions::Placed>,
}

/// A service's native authorization: its policies and JWT rules.
#[derive(Debug, Default)]
struct AuthzParts {
    policies: Vec<Value>,
    jwt_rules: Vec<Value>,
    /// The extension providers its CUSTOM policies name, by name.
    providers: BTreeMap<String, Value>,
}

impl Reader {
    /// The service `host` names, seen from `namespace`: `reviews`, `reviews.default`,
    /// `reviews.default.svc` or `reviews.default.svc.cluster.local`.
    fn service_of_host(&self, host: &str, namespace: &str) -> Option<usize> {
        self.mesh.services.iter().position(|s| {
            (s.namespace == namespace && host == s.name)
                || names::service_names(s)[1..].iter().any(|n| n == host)
        })
    }

    /// The services whose pods `selector` picks (its labels are part of their Service's
    /// selector), in `d`'s namespace (any, from the root namespace). None is an error.
    fn services_of_selector(&mut self, d: &Doc, selector: &istio::WorkloadSelector) -> Vec<usize> {
        if selector.match_labels.contains_key("version") {
            self.findings.unsupported(
                d,
                "spec.selector.matchLabels.version",
                "policies and plugins apply to every version of a service in the mesh model",
            );
            return Vec::new();
        }
        let picked: Vec<usize> = (0..self.mesh.services.len())
            .filter(|&i| {
                d.namespace == ROOT_NAMESPACE || self.mesh.services[i].namespace == d.namespace
            })
            .filter(|&i| {
                selector
                    .match_labels
                    .iter()
                    .all(|(k, v)| self.selectors[i].get(k) == Some(v))
            })
            .collect();
        if picked.is_empty() {
            self.findings.error(d, "spec.selector.matchLabels", "selects no workload of the mesh (labels are matched against the Services' selectors)");
        }
        picked
    }
}

/// The mesh's name: the input directory's or file's name.
fn mesh_name(path: &Path) -> String {
    let base = if path.is_dir() {
        path.file_name()
    } else {
        path.file_stem()
    };
    let raw = base
        .map(|b| b.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let name: String = raw
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let name = name.trim_matches('-').to_string();
    if name.is_empty() {
        "mesh".into()
    } else {
        name
    }
}

/// Reads the resources under `path` into the mesh model. Unsupported fields are
/// errors unless `allow_unsupported`, when they come back as `dropped`.
pub fn load(path: &Path, allow_unsupported: bool) -> Result<Loaded, Vec<MeshError>> {
    let docs = documents::read(path)?;
    let mut r = Reader {
        mesh: MeshFile {
            mesh: MeshSpec {
                name: mesh_name(path),
                trust_domain: "cluster.local".into(),
                mtls: Default::default(),
                tracing: None,
                wasm_runtime: Default::default(),
                rate_limit_service: None,
            },
            services: Vec::new(),
            gateway: None,
            egress: Vec::new(),
        },
        findings: Findings::default(),
        selectors: Vec::new(),
        subsets: BTreeMap::new(),
        empty_subsets: BTreeSet::new(),
        rule_of: BTreeMap::new(),
        routes_of: BTreeMap::new(),
        pending_tls: Vec::new(),
        gateway_doc: None,
        gateway_routes: Vec::new(),
        authz: BTreeMap::new(),
        providers: BTreeMap::new(),
        tracers: BTreeMap::new(),
        plugins: Vec::new(),
    };
    let mut known: Vec<&Doc> = Vec::new();
    for d in &docs {
        let group = d.group();
        let version = d.api_version.rsplit('/').next().unwrap_or_default();
        let kinds = KINDS.iter().find(|(g, _, _)| *g == group);
        match kinds {
            Some((_, versions, kinds)) if kinds.contains(&d.kind.as_str()) => {
                if versions.contains(&version) {
                    known.push(d);
                } else {
                    r.findings.error(
                        d,
                        "apiVersion",
                        format!(
                            "{}: wasmesh reads {} as {}",
                            d.api_version,
                            d.kind,
                            versions
                                .iter()
                                .map(|v| if group.is_empty() {
                                    v.to_string()
                                } else {
                                    format!("{group}/{v}")
                                })
                                .collect::<Vec<_>>()
                                .join(" or ")
                        ),
                    );
                }
            }
            _ => match refused_kind(&d.kind).filter(|_| group.ends_with("istio.io")) {
                Some(why) => r.findings.unsupported(d, "kind", why),
                None => {
                    let all: Vec<&str> = KINDS
                        .iter()
                        .flat_map(|(_, _, k)| k.iter().copied())
                        .collect();
                    r.findings.error(
                        d,
                        "kind",
                        format!(
                            "unknown kind {} ({}): wasmesh reads {}",
                            d.kind,
                            d.api_version,
                            all.join(", ")
                        ),
                    );
                }
            },
        }
    }
    let services = workloads::services(&known, &mut r.findings);
    for (s, selector) in services {
        r.mesh.services.push(s);
        r.selectors.push(selector);
    }
    let pas: Vec<(Doc, istio::PeerAuthentication)> = of(&known, "PeerAuthentication")
        .filter_map(|d| r.findings.typed(d).map(|pa| (d.clone(), pa)))
        .collect();
    r.peer_authentications(&pas);
    for d in of(&known, "ServiceEntry") {
        if let Some(se) = r.findings.typed::<istio::ServiceEntry>(d) {
            r.service_entry(d, &se);
        }
    }
    for d in of(&known, "DestinationRule") {
        let Some(dr) = r.findings.typed::<istio::DestinationRule>(d) else {
            continue;
        };
        if r.mesh.egress.iter().any(|e| e.host == dr.spec.host) {
            r.egress_rule(d, &dr);
        } else {
            r.destination_rule(d, &dr);
        }
    }
    r.check_service_tls();
    for d in of(&known, "Gateway") {
        if let Some(g) = r.findings.typed::<istio::Gateway>(d) {
            r.gateway(d, &g);
        }
    }
    for d in of(&known, "VirtualService") {
        if let Some(vs) = r.findings.typed::<istio::VirtualService>(d) {
            r.virtual_service(d, &vs);
        }
    }
    r.attach_gateway_routes();
    for d in of(&known, "ConfigMap") {
        r.config_map(d);
    }
    for d in of(&known, "AuthorizationPolicy") {
        if let Some(ap) = r.findings.typed::<istio::AuthorizationPolicy>(d) {
            r.authorization_policy(d, &ap);
        }
    }
    for d in of(&known, "RequestAuthentication") {
        if let Some(ra) = r.findings.typed::<istio::RequestAuthentication>(d) {
            r.request_authentication(d, &ra);
        }
    }
    for d in of(&known, "WasmPlugin") {
        if let Some(wp) = r.findings.typed::<istio::WasmPlugin>(d) {
            r.wasm_plugin(d, &wp);
        }
    }
    let sidecars: Vec<(Doc, istio::Sidecar)> = of(&known, "Sidecar")
        .filter_map(|d| r.findings.typed(d).map(|t| (d.clone(), t)))
        .collect();
    r.sidecars(&sidecars);
    r.place_plugins();
    let telemetries: Vec<(Doc, istio::Telemetry)> = of(&known, "Telemetry")
        .filter_map(|d| r.findings.typed(d).map(|t| (d.clone(), t)))
        .collect();
    r.telemetries(&telemetries);
    for (target, parts) in std::mem::take(&mut r.authz) {
        let mut config = serde_json::Map::new();
        if !parts.jwt_rules.is_empty() {
            config.insert("jwtRules".into(), Value::Array(parts.jwt_rules));
            // Istio denies a request without credentials with 403; the filter's own
            // default (401 and a challenge) is not what these resources say.
            config.insert("missingCredentialStatus".into(), Value::from(403));
        }
        if !parts.policies.is_empty() {
            config.insert("policies".into(), Value::Array(parts.policies));
        }
        if !parts.providers.is_empty() {
            let list = parts.providers.into_values().collect();
            config.insert("extensionProviders".into(), Value::Array(list));
        }
        let chain = match target {
            Some(i) => &mut r.mesh.services[i].filters.inbound,
            None => match r.mesh.gateway.as_mut() {
                Some(g) => &mut g.filters,
                None => continue,
            },
        };
        // First in the chain: Istio runs authorization before any plugin.
        chain.insert(
            0,
            FilterSpec {
                name: FilterName::Authz,
                config: Value::Object(config),
                failure_policy: FailurePolicy::FailClosed,
                module: None,
            },
        );
    }
    finish(path, r, allow_unsupported)
}

fn finish(path: &Path, r: Reader, allow_unsupported: bool) -> Result<Loaded, Vec<MeshError>> {
    let Findings {
        mut errors,
        unsupported,
    } = r.findings;
    if errors.is_empty() && (allow_unsupported || unsupported.is_empty()) {
        // What the resources say together, checked as a mesh file is: the paths are
        // the mesh model's (docs/mesh-file.md).
        errors.extend(crate::check::check(path, &r.mesh).into_iter().map(|mut e| {
            e.path = format!("(converted mesh) {}", e.path);
            e
        }));
    }
    if !allow_unsupported {
        errors.extend(unsupported);
        return if errors.is_empty() {
            Ok(Loaded {
                mesh: r.mesh,
                dropped: Vec::new(),
            })
        } else {
            Err(errors)
        };
    }
    if errors.is_empty() {
        Ok(Loaded {
            mesh: r.mesh,
            dropped: unsupported,
        })
    } else {
        Err(errors)
    }
}

/// The documents of one kind, in reading order.
fn of<'a>(known: &'a [&'a Doc], kind: &'static str) -> impl Iterator<Item = &'a Doc> + 'a {
    known.iter().copied().filter(move |d| d.kind == kind)
}

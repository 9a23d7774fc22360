//! Kubernetes and Istio manifests of the mesh, for a real cluster with Istio.
//!
//! Per service: ServiceAccount, Service, a Deployment per version, a DestinationRule
//! (subsets, traffic policy) and, with routes, a VirtualService (faults included:
//! Istio injects them natively). Filters become WasmPlugins selected by `app` label,
//! `match.mode` SERVER for inbound and CLIENT for outbound, in our phase order. An authz
//! config that is plain Istio (only `policies` and `jwtRules`) becomes native
//! AuthorizationPolicy and RequestAuthentication resources instead, unless
//! `authz: wasm` is asked for. mTLS becomes a mesh-wide PeerAuthentication; each
//! egress host a ServiceEntry, plus a DestinationRule when the sidecar originates TLS.
//!
//! Built from k8s-openapi's types and ours in [`crate::istio`]; files are
//! `<namespace>/<kind>-<name>.yaml` plus a `kustomization.yaml` listing them.

use crate::bootstrap::service_host;
use crate::istio::{self, Resource};
use crate::model::{FailurePolicy, FilterName, FilterSpec, MeshFile, RouteSpec, ServiceSpec};
use crate::{GenerateError, OutputFile};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, PodSpec, PodTemplateSpec, Service, ServiceAccount,
    ServicePort, ServiceSpec as K8sServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How authz configs are carried to the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthzMode {
    /// Native Istio resources where the config is plain Istio; WasmPlugin otherwise.
    Native,
    /// Always our Wasm filter.
    Wasm,
}

pub struct K8sOptions {
    /// `oci://registry/path/` (the module is `<prefix><name>:<version>`) or an
    /// `https://` prefix (the module is `<prefix><name>.wasm`, pinned by sha256).
    pub filter_url: String,
    /// Local modules, hashed for HTTPS URLs.
    pub filters_dir: PathBuf,
    pub authz: AuthzMode,
}

impl K8sOptions {
    pub fn new(filter_url: &str, filters_dir: &Path) -> Self {
        Self {
            filter_url: filter_url.into(),
            filters_dir: filters_dir.into(),
            authz: AuthzMode::Native,
        }
    }
}

/// Istio's root namespace: WasmPlugins for the ingress gateway live there.
pub const ISTIO_SYSTEM: &str = "istio-system";

struct Out {
    files: Vec<OutputFile>,
}

impl Out {
    fn push<T: Serialize>(
        &mut self,
        ns: &str,
        kind: &str,
        name: &str,
        value: &T,
    ) -> Result<(), GenerateError> {
        let path = PathBuf::from(ns).join(format!("{}-{name}.yaml", kind.to_lowercase()));
        let text = serde_norway::to_string(value).map_err(|e| GenerateError::Serialise {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        self.files.push((path, text.into_bytes()));
        Ok(())
    }
}

fn meta(name: &str, ns: &str, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(ns.into()),
        labels: (!labels.is_empty()).then_some(labels),
        ..Default::default()
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The manifests of `mesh`, sorted by path, with a kustomization.yaml.
pub fn generate(mesh: &MeshFile, opts: &K8sOptions) -> Result<Vec<OutputFile>, GenerateError> {
    let mut out = Out { files: Vec::new() };
    for s in &mesh.services {
        service(mesh, s, opts, &mut out)?;
    }
    if let Some(g) = &mesh.gateway {
        gateway(mesh, g, opts, &mut out)?;
    }
    let peer = istio::PeerAuthentication {
        api_version: istio::SECURITY.into(),
        kind: "PeerAuthentication".into(),
        metadata: meta("default", ISTIO_SYSTEM, BTreeMap::new()),
        spec: istio::PeerAuthenticationSpec {
            mtls: istio::PeerMtls {
                mode: serde_json::to_value(mesh.mesh.mtls)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default(),
            },
        },
    };
    out.push(ISTIO_SYSTEM, "PeerAuthentication", "default", &peer)?;
    for e in &mesh.egress {
        egress(e, &mut out)?;
    }
    out.files.sort_by(|a, b| a.0.cmp(&b.0));
    let resources: Vec<String> = out
        .files
        .iter()
        .map(|(p, _)| p.display().to_string())
        .collect();
    let kustomization = json!({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": resources,
    });
    let text = serde_norway::to_string(&kustomization).map_err(|e| GenerateError::Serialise {
        path: "kustomization.yaml".into(),
        message: e.to_string(),
    })?;
    out.files
        .push((PathBuf::from("kustomization.yaml"), text.into_bytes()));
    out.files.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out.files)
}

fn service(
    mesh: &MeshFile,
    s: &ServiceSpec,
    opts: &K8sOptions,
    out: &mut Out,
) -> Result<(), GenerateError> {
    let ns = s.namespace.as_str();
    let app = labels(&[("app", &s.name)]);
    let sa = ServiceAccount {
        metadata: meta(s.service_account(), ns, app.clone()),
        ..Default::default()
    };
    out.push(ns, "ServiceAccount", s.service_account(), &sa)?;
    let svc = Service {
        metadata: meta(&s.name, ns, app.clone()),
        spec: Some(K8sServiceSpec {
            selector: Some(app.clone()),
            ports: Some(vec![ServicePort {
                // Istio reads the protocol from the port name.
                name: Some(format!("{}-{}", s.protocol.as_str(), s.port)),
                port: i32::from(s.port),
                target_port: Some(IntOrString::Int(i32::from(s.app_port()))),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    out.push(ns, "Service", &s.name, &svc)?;
    for v in &s.versions {
        let mut pod_labels = v.labels.clone();
        pod_labels.insert("app".into(), s.name.clone());
        pod_labels.insert("version".into(), v.name.clone());
        let name = format!("{}-{}", s.name, v.name);
        let mut env: Vec<EnvVar> = crate::runplan::app_env(s, v, s.app_port(), 0)
            .into_iter()
            // In a pod, iptables takes the app's calls to the sidecar: no proxy address.
            .filter(|(k, _)| k != "WASMESH_OUTBOUND")
            .map(|(name, value)| EnvVar {
                name,
                value: Some(value),
                ..Default::default()
            })
            .collect();
        env.sort_by(|a, b| a.name.cmp(&b.name));
        let d = Deployment {
            metadata: meta(&name, ns, pod_labels.clone()),
            spec: Some(DeploymentSpec {
                replicas: Some(i32::try_from(v.replicas).unwrap_or(i32::MAX)),
                selector: LabelSelector {
                    match_labels: Some(labels(&[("app", &s.name), ("version", &v.name)])),
                    ..Default::default()
                },
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(pod_labels),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec {
                        service_account_name: Some(s.service_account().into()),
                        containers: vec![Container {
                            name: s.name.clone(),
                            image: Some(s.app.image.clone()),
                            ports: Some(vec![ContainerPort {
                                container_port: i32::from(s.app_port()),
                                ..Default::default()
                            }]),
                            env: Some(env),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                },
                ..Default::default()
            }),
            ..Default::default()
        };
        out.push(ns, "Deployment", &name, &d)?;
    }
    out.push(ns, "DestinationRule", &s.name, &destination_rule(mesh, s))?;
    if !s.routes.is_empty() {
        let vs = istio::VirtualService {
            api_version: istio::NETWORKING.into(),
            kind: "VirtualService".into(),
            metadata: meta(&s.name, ns, BTreeMap::new()),
            spec: istio::VirtualServiceSpec {
                hosts: vec![service_host(s)],
                gateways: vec![],
                http: s
                    .routes
                    .iter()
                    .map(|r| http_route(mesh, r, Some(s), true))
                    .collect(),
            },
        };
        out.push(ns, "VirtualService", &s.name, &vs)?;
    }
    let selector = istio::WorkloadSelector {
        match_labels: app.clone(),
    };
    for (mode, dir, filters) in [
        ("SERVER", "inbound", &s.filters.inbound),
        ("CLIENT", "outbound", &s.filters.outbound),
    ] {
        for f in filters {
            // Per service, not per pod: the version comes from the pod's labels.
            let workload = || {
                let mut w = crate::bootstrap::workload_identity(&mesh.mesh.trust_domain, s, "");
                if let Some(o) = w.as_object_mut() {
                    o.remove("name");
                    o.remove("version");
                }
                w
            };
            if f.name == FilterName::Authz && mode == "SERVER" && opts.authz == AuthzMode::Native {
                if let Some(native) = native_authz(&f.config) {
                    for (kind, name, value) in native.resources(&s.name, ns, &selector) {
                        out.push(ns, kind, &name, &value)?;
                    }
                    continue;
                }
            }
            let name = format!("{}-{}-{dir}", s.name, f.name);
            let config = crate::bootstrap::generated_config(mesh, f, workload);
            let wp = wasm_plugin(&name, ns, selector.clone(), f, config, mode, opts);
            out.push(ns, "WasmPlugin", &name, &wp)?;
        }
    }
    Ok(())
}

fn gateway(
    mesh: &MeshFile,
    g: &crate::model::GatewaySpec,
    opts: &K8sOptions,
    out: &mut Out,
) -> Result<(), GenerateError> {
    let ns = g.namespace.as_str();
    let selector = labels(&[("istio", "ingressgateway")]);
    let gw = istio::Gateway {
        api_version: istio::NETWORKING.into(),
        kind: "Gateway".into(),
        metadata: meta(&g.name, ns, BTreeMap::new()),
        spec: istio::GatewaySpec {
            selector: selector.clone(),
            servers: vec![istio::Server {
                port: istio::ServerPort {
                    number: g.port,
                    name: if g.tls.is_some() {
                        "https".into()
                    } else {
                        "http".into()
                    },
                    protocol: if g.tls.is_some() {
                        "HTTPS".into()
                    } else {
                        "HTTP".into()
                    },
                },
                hosts: g.hosts.clone(),
                tls: g.tls.as_ref().map(|_| istio::ServerTls {
                    mode: "SIMPLE".into(),
                    credential_name: format!("{}-tls", g.name),
                }),
            }],
        },
    };
    out.push(ns, "Gateway", &g.name, &gw)?;
    let vs = istio::VirtualService {
        api_version: istio::NETWORKING.into(),
        kind: "VirtualService".into(),
        metadata: meta(&g.name, ns, BTreeMap::new()),
        spec: istio::VirtualServiceSpec {
            hosts: g.hosts.clone(),
            gateways: vec![format!("{ns}/{}", g.name)],
            http: g
                .routes
                .iter()
                .map(|r| http_route(mesh, r, None, false))
                .collect(),
        },
    };
    out.push(ns, "VirtualService", &g.name, &vs)?;
    for f in &g.filters {
        let name = format!("{}-{}", g.name, f.name);
        let config = crate::bootstrap::generated_config(
            mesh,
            f,
            || json!({ "name": g.name, "namespace": ISTIO_SYSTEM, "app": g.name }),
        );
        let sel = istio::WorkloadSelector {
            match_labels: selector.clone(),
        };
        let wp = wasm_plugin(&name, ISTIO_SYSTEM, sel, f, config, "CLIENT", opts);
        out.push(ISTIO_SYSTEM, "WasmPlugin", &name, &wp)?;
    }
    Ok(())
}

fn wasm_plugin(
    name: &str,
    ns: &str,
    selector: istio::WorkloadSelector,
    f: &FilterSpec,
    config: Value,
    mode: &str,
    opts: &K8sOptions,
) -> istio::WasmPlugin {
    let (url, sha256) = if opts.filter_url.starts_with("oci://") {
        (
            format!(
                "{}{}:{}",
                opts.filter_url,
                f.name,
                env!("CARGO_PKG_VERSION")
            ),
            None,
        )
    } else {
        let sha = std::fs::read(opts.filters_dir.join(f.name.wasm_file()))
            .ok()
            .map(|bytes| hex(&Sha256::digest(&bytes)));
        (format!("{}{}", opts.filter_url, f.name.wasm_file()), sha)
    };
    Resource {
        api_version: istio::EXTENSIONS.into(),
        kind: "WasmPlugin".into(),
        metadata: meta(name, ns, BTreeMap::new()),
        spec: istio::WasmPluginSpec {
            selector,
            url,
            sha256,
            image_pull_policy: "IfNotPresent".into(),
            plugin_name: f.name.as_str().into(),
            plugin_config: config,
            phase: f.name.istio_phase().into(),
            priority: f.name.istio_priority(),
            fail_strategy: match f.failure_policy {
                FailurePolicy::FailClosed => "FAIL_CLOSE",
                FailurePolicy::FailOpen => "FAIL_OPEN",
                FailurePolicy::FailReload => "FAIL_RELOAD",
            }
            .into(),
            kind: "HTTP".into(),
            matches: vec![istio::WasmPluginTrafficSelector { mode: mode.into() }],
        },
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn destination_rule(mesh: &MeshFile, s: &ServiceSpec) -> istio::DestinationRule {
    let tp = &s.traffic_policy;
    let policy = istio::TrafficPolicy {
        load_balancer: tp.load_balancer.map(|lb| istio::LoadBalancerSettings {
            simple: serde_json::to_value(lb)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
        }),
        connection_pool: tp
            .connection_pool
            .as_ref()
            .map(|cp| istio::ConnectionPoolSettings {
                tcp: cp
                    .max_connections
                    .map(|m| istio::TcpSettings { max_connections: m }),
                http: Some(istio::HttpSettings {
                    http1_max_pending_requests: cp.max_pending_requests,
                    http2_max_requests: cp.max_requests,
                    max_retries: cp.max_retries,
                }),
            }),
        outlier_detection: tp
            .outlier_detection
            .as_ref()
            .map(|od| istio::OutlierDetection {
                consecutive5xx_errors: od.consecutive5xx_errors,
                interval: od.interval.to_string(),
                base_ejection_time: od.base_ejection_time.to_string(),
                max_ejection_percent: od.max_ejection_percent,
            }),
        tls: (mesh.mesh.mtls != crate::model::MtlsMode::Disable).then(|| {
            istio::ClientTlsSettings {
                mode: "ISTIO_MUTUAL".into(),
                ..Default::default()
            }
        }),
    };
    istio::DestinationRule {
        api_version: istio::NETWORKING.into(),
        kind: "DestinationRule".into(),
        metadata: meta(&s.name, &s.namespace, BTreeMap::new()),
        spec: istio::DestinationRuleSpec {
            host: service_host(s),
            traffic_policy: Some(policy),
            subsets: s
                .versions
                .iter()
                .map(|v| istio::Subset {
                    name: v.name.clone(),
                    labels: labels(&[("version", &v.name)]),
                })
                .collect(),
        },
    }
}

/// An external host: a ServiceEntry in the root namespace (visible mesh-wide), and for
/// TLS origination a DestinationRule that makes the sidecar speak TLS to it, checking
/// the server as the generated Envoy bootstraps do (Istio's own default since 1.20).
fn egress(e: &crate::model::EgressSpec, out: &mut Out) -> Result<(), GenerateError> {
    let name = format!("egress-{}-{}", e.host.replace('.', "-"), e.port);
    let entry = istio::ServiceEntry {
        api_version: istio::NETWORKING.into(),
        kind: "ServiceEntry".into(),
        metadata: meta(&name, ISTIO_SYSTEM, BTreeMap::new()),
        spec: istio::ServiceEntrySpec {
            hosts: vec![e.host.clone()],
            // The app speaks plain HTTP to its sidecar on this port; with `tls` the
            // sidecar originates TLS to the same port.
            ports: vec![istio::ServiceEntryPort {
                number: e.port,
                name: format!("http-{}", e.port),
                protocol: "HTTP".into(),
            }],
            resolution: "DNS".into(),
            location: "MESH_EXTERNAL".into(),
        },
    };
    out.push(ISTIO_SYSTEM, "ServiceEntry", &name, &entry)?;
    if !e.tls {
        return Ok(());
    }
    let rule = istio::DestinationRule {
        api_version: istio::NETWORKING.into(),
        kind: "DestinationRule".into(),
        metadata: meta(&name, ISTIO_SYSTEM, BTreeMap::new()),
        spec: istio::DestinationRuleSpec {
            host: e.host.clone(),
            traffic_policy: Some(istio::TrafficPolicy {
                tls: Some(istio::ClientTlsSettings {
                    mode: "SIMPLE".into(),
                    sni: Some(e.host.clone()),
                    ca_certificates: e.ca_certificates.clone(),
                    insecure_skip_verify: e.insecure_skip_verify,
                }),
                ..Default::default()
            }),
            subsets: Vec::new(),
        },
    };
    out.push(ISTIO_SYSTEM, "DestinationRule", &name, &rule)
}

fn string_match(m: &crate::model::StringMatch) -> istio::StringMatch {
    istio::StringMatch {
        exact: m.exact.clone(),
        prefix: m.prefix.clone(),
        regex: m.regex.clone(),
    }
}

fn http_route(
    mesh: &MeshFile,
    r: &RouteSpec,
    owner: Option<&ServiceSpec>,
    with_fault: bool,
) -> istio::HttpRoute {
    let dest = |service: &Option<String>, version: &Option<String>| {
        let s = service
            .as_ref()
            .and_then(|n| mesh.services.iter().find(|s| &s.name == n))
            .or(owner);
        istio::Destination {
            host: s.map(service_host).unwrap_or_default(),
            subset: version.clone(),
            port: s.map(|s| istio::PortSelector { number: s.port }),
        }
    };
    istio::HttpRoute {
        name: r.name.clone(),
        matches: r
            .matches
            .iter()
            .map(|m| istio::HttpMatchRequest {
                uri: m.path.as_ref().map(string_match),
                headers: m
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), string_match(v)))
                    .collect(),
                method: m.method.as_ref().map(string_match),
            })
            .collect(),
        route: r
            .route
            .iter()
            .map(|d| istio::HttpRouteDestination {
                destination: dest(&d.service, &d.version),
                weight: d.weight,
            })
            .collect(),
        timeout: r.timeout.map(|t| t.to_string()),
        retries: r.retries.as_ref().map(|x| istio::HttpRetry {
            attempts: x.attempts,
            per_try_timeout: x.per_try_timeout.map(|t| t.to_string()),
            retry_on: x.retry_on.clone(),
        }),
        mirror: r.mirror.as_ref().map(|m| dest(&m.service, &m.version)),
        mirror_percentage: r.mirror.as_ref().map(|m| istio::Percent {
            value: m.percentage,
        }),
        fault: r
            .fault
            .as_ref()
            .filter(|_| with_fault)
            .map(|f| istio::HttpFaultInjection {
                delay: f.delay.as_ref().map(|d| istio::FaultDelay {
                    fixed_delay: d.fixed_delay.to_string(),
                    percentage: istio::Percent {
                        value: d.percentage,
                    },
                }),
                abort: f.abort.as_ref().map(|a| istio::FaultAbort {
                    http_status: a.http_status,
                    percentage: istio::Percent {
                        value: a.percentage,
                    },
                }),
            }),
    }
}

/// An authz config that is plain Istio.
struct NativeAuthz {
    policies: Vec<(String, String, Vec<Value>)>,
    jwt_rules: Vec<Value>,
}

/// Fields of a jwtRules entry that Istio has (the rest are wasmesh extensions).
const ISTIO_JWT_FIELDS: [&str; 9] = [
    "issuer",
    "audiences",
    "jwks",
    "jwksUri",
    "fromHeaders",
    "fromParams",
    "fromCookies",
    "outputPayloadToHeader",
    "forwardOriginalToken",
];

fn native_authz(config: &Value) -> Option<NativeAuthz> {
    let obj = config.as_object()?;
    if obj.keys().any(|k| k != "policies" && k != "jwtRules") {
        return None;
    }
    let mut policies = Vec::new();
    for p in obj
        .get("policies")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let p = p.as_object()?;
        if p.keys()
            .any(|k| !["name", "action", "rules"].contains(&k.as_str()))
        {
            return None;
        }
        let name = p.get("name")?.as_str()?.to_string();
        let action = p
            .get("action")
            .and_then(Value::as_str)
            .unwrap_or("ALLOW")
            .to_string();
        if !["ALLOW", "DENY", "AUDIT"].contains(&action.as_str()) {
            return None;
        }
        let rules = p
            .get("rules")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        policies.push((name, action, rules));
    }
    let mut jwt_rules = Vec::new();
    for r in obj
        .get("jwtRules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let mut r = r.as_object()?.clone();
        r.retain(|k, _| ISTIO_JWT_FIELDS.contains(&k.as_str()));
        // Istio wants the inline JWKS as a string.
        if let Some(jwks) = r.get_mut("jwks") {
            if !jwks.is_string() {
                *jwks = Value::String(jwks.to_string());
            }
        }
        jwt_rules.push(Value::Object(r));
    }
    Some(NativeAuthz {
        policies,
        jwt_rules,
    })
}

impl NativeAuthz {
    fn resources(
        &self,
        service: &str,
        ns: &str,
        selector: &istio::WorkloadSelector,
    ) -> Vec<(&'static str, String, Value)> {
        let mut out = Vec::new();
        for (name, action, rules) in &self.policies {
            let ap = istio::AuthorizationPolicy {
                api_version: istio::SECURITY.into(),
                kind: "AuthorizationPolicy".into(),
                metadata: meta(name, ns, BTreeMap::new()),
                spec: istio::AuthorizationPolicySpec {
                    selector: selector.clone(),
                    action: action.clone(),
                    rules: rules.clone(),
                },
            };
            out.push((
                "AuthorizationPolicy",
                name.clone(),
                serde_json::to_value(ap).unwrap_or_default(),
            ));
        }
        if !self.jwt_rules.is_empty() {
            let ra = istio::RequestAuthentication {
                api_version: istio::SECURITY.into(),
                kind: "RequestAuthentication".into(),
                metadata: meta(service, ns, BTreeMap::new()),
                spec: istio::RequestAuthenticationSpec {
                    selector: selector.clone(),
                    jwt_rules: self.jwt_rules.clone(),
                },
            };
            out.push((
                "RequestAuthentication",
                service.to_string(),
                serde_json::to_value(ra).unwrap_or_default(),
            ));
        }
        out
    }
}

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

mod authz;
mod traffic;

use crate::chains;
use crate::istio::{self, Resource};
use crate::model::{FailurePolicy, FilterName, FilterSpec, MeshFile, ServiceSpec};
use crate::names::{self, service_host};
use crate::{GenerateError, OutputFile};
use authz::native_authz;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, PodSpec, PodTemplateSpec, Service, ServiceAccount,
    ServicePort, ServiceSpec as K8sServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use traffic::{destination_rule, egress, http_route};

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
            ..Default::default()
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
        let name = names::workload(&s.name, &v.name);
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
                            image: Some(v.image(&s.app).to_string()),
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
    // Istio injects route faults itself: the outbound chain as written, not as Envoy
    // runs it.
    let i = chains::service_index(mesh, s);
    for (mode, dir, chain) in [
        ("SERVER", "inbound", chains::inbound(mesh, i)),
        ("CLIENT", "outbound", chains::outbound_as_written(mesh, i)),
    ] {
        for f in chain.filters.iter().map(|f| &f.spec) {
            // Per service, not per pod: the version comes from the pod's labels.
            let workload = || {
                let mut w = chains::workload_identity(&mesh.mesh.trust_domain, s, "");
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
            let config = chains::generated_config(mesh, f, workload);
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
                tls: g.tls.as_ref().map(|t| istio::ServerTls {
                    mode: t.mode.as_str().into(),
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
    for f in chains::gateway_as_written(mesh)
        .filters
        .iter()
        .map(|f| &f.spec)
    {
        let name = format!("{}-{}", g.name, f.name);
        let config = chains::generated_config(
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
            .map(|bytes| crate::digest::sha256_hex(&bytes));
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

//! Istio's MeshConfig, as the `istio` ConfigMap in `istio-system` carries it (its
//! `data.mesh` is YAML): the trust domain, and the `envoyExtAuthzHttp` extension
//! providers that CUSTOM AuthorizationPolicies name. A provider's `service` and `port`
//! become the `cluster` the authz filter calls (the service's outbound cluster, or an
//! egress host's); its other fields go to the filter as they are (docs/filters/authz.md).

use super::documents::Doc;
use super::{Reader, ROOT_NAMESPACE};
use crate::model::{TracingProvider, TracingSpec};
use crate::names;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigMap {
    #[allow(dead_code)] // Read by `documents`.
    api_version: String,
    #[allow(dead_code)]
    kind: String,
    #[allow(dead_code)]
    metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    #[serde(default)]
    data: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MeshConfig {
    #[serde(default)]
    trust_domain: Option<String>,
    #[serde(default)]
    extension_providers: Vec<ExtensionProvider>,
    #[serde(default)]
    default_providers: Option<DefaultProviders>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DefaultProviders {
    #[serde(default)]
    tracing: Vec<String>,
}

/// A tracer's collector: Zipkin's HTTP or OpenTelemetry's gRPC endpoint.
#[derive(Debug, Deserialize)]
struct Collector {
    service: String,
    port: u16,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExtensionProvider {
    name: String,
    #[serde(default)]
    envoy_ext_authz_http: Option<Map<String, Value>>,
    #[serde(default)]
    zipkin: Option<Collector>,
    #[serde(default)]
    opentelemetry: Option<Collector>,
}

impl Reader {
    pub(super) fn config_map(&mut self, d: &Doc) {
        if d.name != "istio" || d.namespace != ROOT_NAMESPACE {
            self.findings.unsupported(d, "", "wasmesh reads one ConfigMap, `istio` in istio-system (Istio's MeshConfig); an app's configuration is not part of the mesh");
            return;
        }
        let Some(cm) = self.findings.typed::<ConfigMap>(d) else {
            return;
        };
        for key in cm.data.keys().filter(|k| *k != "mesh") {
            self.findings
                .unsupported(d, &format!("data.{key}"), "the MeshConfig is `data.mesh`");
        }
        let Some(text) = cm.data.get("mesh") else {
            return;
        };
        let value: Value = match serde_norway::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                self.findings
                    .error(d, "data.mesh", format!("malformed YAML: {e}"));
                return;
            }
        };
        let Some(mc) = self.findings.typed_at::<MeshConfig>(d, &value, "data.mesh") else {
            return;
        };
        if let Some(td) = mc.trust_domain {
            self.mesh.mesh.trust_domain = td;
        }
        for (k, p) in mc.extension_providers.into_iter().enumerate() {
            let at = format!("data.mesh.extensionProviders[{k}]");
            let tracer = match (p.zipkin, p.opentelemetry) {
                (Some(c), None) => Some((TracingProvider::Zipkin, c)),
                (None, Some(c)) => Some((TracingProvider::Opentelemetry, c)),
                _ => None,
            };
            if let Some((kind, c)) = tracer {
                let host = c
                    .service
                    .rsplit('/')
                    .next()
                    .unwrap_or(&c.service)
                    .to_string();
                self.tracers
                    .insert(p.name, (kind, format!("{host}:{}", c.port)));
                continue;
            }
            let Some(http) = p.envoy_ext_authz_http else {
                self.findings.unsupported(d, &at, format!("{}: wasmesh reads envoyExtAuthzHttp (the authz filter's authorizers), zipkin and opentelemetry providers, one kind per entry", p.name));
                continue;
            };
            if let Some(provider) = self.ext_authz_provider(d, &at, &p.name, http) {
                self.providers.insert(p.name, provider);
            }
        }
        let defaults = mc.default_providers.unwrap_or_default();
        for (k, name) in defaults.tracing.iter().enumerate() {
            match self.tracers.get(name) {
                Some((provider, address)) if k == 0 => {
                    // Istio's default sampling, 1%, until a Telemetry says otherwise.
                    self.mesh.mesh.tracing = Some(TracingSpec {
                        provider: *provider,
                        address: address.clone(),
                        sampling: 1.0,
                    });
                }
                Some(_) => self.findings.unsupported(
                    d,
                    &format!("data.mesh.defaultProviders.tracing[{k}]"),
                    "one tracer for the mesh",
                ),
                None => self.findings.error(
                    d,
                    &format!("data.mesh.defaultProviders.tracing[{k}]"),
                    format!("{name}: no zipkin or opentelemetry provider of this name"),
                ),
            }
        }
    }

    /// The authz filter's provider for an `envoyExtAuthzHttp`.
    fn ext_authz_provider(
        &mut self,
        d: &Doc,
        at: &str,
        name: &str,
        mut http: Map<String, Value>,
    ) -> Option<Value> {
        let service = http
            .remove("service")
            .and_then(|v| v.as_str().map(str::to_string));
        let port = http
            .remove("port")
            .and_then(|v| v.as_u64())
            .and_then(|p| u16::try_from(p).ok());
        let (Some(service), Some(port)) = (service, port) else {
            self.findings.error(
                d,
                &format!("{at}.envoyExtAuthzHttp"),
                "needs `service` and `port`",
            );
            return None;
        };
        let host = service.rsplit('/').next().unwrap_or(&service).to_string();
        let cluster = if let Some(i) = self.service_of_host(&host, ROOT_NAMESPACE) {
            let s = &self.mesh.services[i];
            if s.port != port {
                self.findings.error(
                    d,
                    &format!("{at}.envoyExtAuthzHttp.port"),
                    format!("{port}: {} listens on {}", s.name, s.port),
                );
            }
            names::outbound_cluster(s, None)
        } else if self
            .mesh
            .egress
            .iter()
            .any(|e| e.host == host && e.port == port)
        {
            names::egress_cluster(&host, port)
        } else {
            self.findings.error(
                d,
                &format!("{at}.envoyExtAuthzHttp.service"),
                format!(
                    "{service}: no Service of the mesh and no ServiceEntry has this host and port"
                ),
            );
            return None;
        };
        // Istio's shape, with the cluster in place of service and port.
        http.insert("cluster".into(), json!(cluster));
        Some(json!({ "name": name, "envoyExtAuthzHttp": http }))
    }
}

//! WasmPlugins that run wasmesh's own modules: into the selected service's inbound
//! (`SERVER`) or outbound (`CLIENT`) filters, or the gateway's, in Istio's order
//! (phase AUTHN, AUTHZ, STATS, then unspecified; higher priority first).

use super::documents::Doc;
use super::{Reader, ROOT_NAMESPACE};
use crate::chains;
use crate::istio;
use crate::model::{FailurePolicy, FilterName, FilterSpec};
use serde_json::{json, Value};

/// Where a plugin runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Chain {
    Inbound(usize),
    Outbound(usize),
    Gateway,
}

/// A plugin placed in a chain, before ordering.
#[derive(Debug, Clone)]
pub(super) struct Placed {
    pub chain: Chain,
    pub phase_rank: u8,
    pub priority: i32,
    pub spec: FilterSpec,
    pub doc: Doc,
}

fn phase_rank(phase: &str) -> Option<u8> {
    match phase {
        "AUTHN" => Some(0),
        "AUTHZ" => Some(1),
        "STATS" => Some(2),
        "" | "UNSPECIFIED_PHASE" => Some(3),
        _ => None,
    }
}

impl Reader {
    pub(super) fn wasm_plugin(&mut self, d: &Doc, wp: &istio::WasmPlugin) {
        let spec = &wp.spec;
        let name_text = if spec.plugin_name.is_empty() {
            // `oci://…/authz:0.1.0` or `https://…/authz.wasm`.
            let last = spec.url.rsplit('/').next().unwrap_or_default();
            last.split([':', '.'])
                .next()
                .unwrap_or_default()
                .to_string()
        } else {
            spec.plugin_name.clone()
        };
        let Ok(name) = serde_json::from_value::<FilterName>(json!(name_text)) else {
            let ours: Vec<&str> = FilterName::ALL.iter().map(|f| f.as_str()).collect();
            self.findings.unsupported(
                d,
                "spec.pluginName",
                format!("{name_text:?}: wasmesh runs its own modules ({}); another module cannot be loaded into the mesh", ours.join(", ")),
            );
            return;
        };
        if !matches!(spec.kind.as_str(), "" | "HTTP") {
            self.findings.unsupported(
                d,
                "spec.type",
                format!("{}: wasmesh's filters are HTTP filters", spec.kind),
            );
            return;
        }
        let Some(rank) = phase_rank(&spec.phase) else {
            self.findings.error(
                d,
                "spec.phase",
                format!("{}: AUTHN, AUTHZ, STATS or UNSPECIFIED_PHASE", spec.phase),
            );
            return;
        };
        let failure_policy = match spec.fail_strategy.as_str() {
            "" | "FAIL_CLOSE" => FailurePolicy::FailClosed,
            "FAIL_OPEN" => FailurePolicy::FailOpen,
            "FAIL_RELOAD" => FailurePolicy::FailReload,
            other => {
                self.findings.error(
                    d,
                    "spec.failStrategy",
                    format!("{other}: FAIL_CLOSE, FAIL_OPEN or FAIL_RELOAD"),
                );
                return;
            }
        };
        let modes: Vec<&str> = spec.matches.iter().map(|m| m.mode.as_str()).collect();
        let (inbound, outbound) = match modes.as_slice() {
            [] | ["CLIENT_AND_SERVER"] | ["UNDEFINED"] => (true, true),
            ["SERVER"] => (true, false),
            ["CLIENT"] => (false, true),
            _ => {
                self.findings.unsupported(
                    d,
                    "spec.match",
                    "one traffic selector with mode SERVER, CLIENT or CLIENT_AND_SERVER",
                );
                return;
            }
        };
        let mut chains = Vec::new();
        if self.selects_gateway(d, &spec.selector) {
            chains.push(Chain::Gateway);
        } else {
            for i in self.services_of_selector(d, &spec.selector) {
                if inbound {
                    chains.push(Chain::Inbound(i));
                }
                if outbound {
                    chains.push(Chain::Outbound(i));
                }
            }
        }
        let config = if spec.plugin_config.is_null() {
            json!({})
        } else {
            spec.plugin_config.clone()
        };
        for chain in chains {
            let mut config = config.clone();
            if name == FilterName::Telemetry {
                self.drop_generated_workload(chain, &mut config);
            }
            self.plugins.push(Placed {
                chain,
                phase_rank: rank,
                priority: spec.priority,
                spec: FilterSpec {
                    name,
                    config,
                    failure_policy,
                    module: None,
                },
                doc: d.clone(),
            });
        }
    }

    pub(super) fn selects_gateway(&self, d: &Doc, selector: &istio::WorkloadSelector) -> bool {
        let Some((g, labels)) = &self.gateway_doc else {
            return false;
        };
        let ns_ok = d.namespace == ROOT_NAMESPACE || d.namespace == g.namespace;
        ns_ok
            && !selector.match_labels.is_empty()
            && selector
                .match_labels
                .iter()
                .all(|(k, v)| labels.get(k) == Some(v))
    }

    /// The telemetry `workload` the generator fills in itself (`wasmesh k8s` writes it
    /// into each plugin): left out, so the model is what the mesh file would say.
    fn drop_generated_workload(&self, chain: Chain, config: &mut Value) {
        let expected = match chain {
            Chain::Inbound(i) | Chain::Outbound(i) => {
                let mut w = chains::workload_identity(
                    &self.mesh.mesh.trust_domain,
                    &self.mesh.services[i],
                    "",
                );
                if let Some(o) = w.as_object_mut() {
                    o.remove("name");
                    o.remove("version");
                }
                w
            }
            Chain::Gateway => {
                let name = self
                    .mesh
                    .gateway
                    .as_ref()
                    .map(|g| g.name.clone())
                    .unwrap_or_default();
                json!({ "name": name, "namespace": ROOT_NAMESPACE, "app": name })
            }
        };
        if let Some(obj) = config.as_object_mut() {
            if obj.get("workload") == Some(&expected) {
                obj.remove("workload");
            }
        }
    }

    /// The placed plugins into the model's filter lists, each chain in Istio's order.
    pub(super) fn place_plugins(&mut self) {
        let mut plugins = std::mem::take(&mut self.plugins);
        plugins.sort_by(|a, b| {
            (a.chain, a.phase_rank, -a.priority).cmp(&(b.chain, b.phase_rank, -b.priority))
        });
        for p in plugins {
            let list = match p.chain {
                Chain::Inbound(i) => &mut self.mesh.services[i].filters.inbound,
                Chain::Outbound(i) => &mut self.mesh.services[i].filters.outbound,
                Chain::Gateway => match self.mesh.gateway.as_mut() {
                    Some(g) => &mut g.filters,
                    None => continue,
                },
            };
            if p.spec.name == FilterName::Authz
                && match p.chain {
                    Chain::Inbound(i) => self.authz.contains_key(&Some(i)),
                    Chain::Gateway => self.authz.contains_key(&None),
                    Chain::Outbound(_) => false,
                }
            {
                self.findings.error(&p.doc, "spec.pluginName", "this chain's authz also comes from AuthorizationPolicy/RequestAuthentication resources: one or the other");
                continue;
            }
            list.push(p.spec);
        }
    }
}

//! Telemetry resources into the telemetry filter's config on each selected chain
//! (inbound reports as destination, outbound as source): `metrics[].overrides` as
//! they are (the filter takes Istio's shape), `accessLogging` as `accessLog`; tracing
//! by a MeshConfig tracer as the mesh's `tracing` (Envoy's tracer), otherwise
//! `randomSamplingPercentage` as the filter's own trace sampling. Chains without
//! a telemetry filter get one. Mesh-wide resources apply first, then namespace, then
//! workload ones, so the narrower wins as in Istio.

use super::documents::Doc;
use super::extensions::Chain;
use super::{Reader, ROOT_NAMESPACE};
use crate::istio;
use crate::model::{FailurePolicy, FilterName, FilterSpec};
use serde_json::{json, Map, Value};

/// Which chains a `match.mode` picks: (inbound, outbound).
fn sides(m: Option<&istio::TelemetryMode>) -> Option<(bool, bool)> {
    match m.map_or("", |m| m.mode.as_str()) {
        "" | "CLIENT_AND_SERVER" => Some((true, true)),
        "SERVER" => Some((true, false)),
        "CLIENT" => Some((false, true)),
        _ => None,
    }
}

impl Reader {
    pub(super) fn telemetries(&mut self, all: &[(Doc, istio::Telemetry)]) {
        let scope = |d: &Doc, t: &istio::Telemetry| {
            let selected = t
                .spec
                .selector
                .as_ref()
                .is_some_and(|s| !s.match_labels.is_empty());
            match (selected, d.namespace == ROOT_NAMESPACE) {
                (true, _) => 2,
                (false, false) => 1,
                (false, true) => 0,
            }
        };
        let mut ordered: Vec<&(Doc, istio::Telemetry)> = all.iter().collect();
        ordered.sort_by_key(|(d, t)| scope(d, t));
        for (d, t) in ordered {
            self.telemetry(d, t);
        }
    }

    fn telemetry(&mut self, d: &Doc, t: &istio::Telemetry) {
        let selector = t.spec.selector.clone().unwrap_or_default();
        let mesh_wide = selector.match_labels.is_empty() && d.namespace == ROOT_NAMESPACE;
        let gateway = self.selects_gateway(d, &selector);
        let services: Vec<usize> = if gateway {
            Vec::new()
        } else if selector.match_labels.is_empty() {
            (0..self.mesh.services.len())
                .filter(|&i| {
                    d.namespace == ROOT_NAMESPACE || self.mesh.services[i].namespace == d.namespace
                })
                .collect()
        } else {
            self.services_of_selector(d, &selector)
        };
        let chains = |inbound: bool, outbound: bool| -> Vec<Chain> {
            if gateway {
                return if outbound {
                    vec![Chain::Gateway]
                } else {
                    Vec::new()
                };
            }
            let mut out = Vec::new();
            for &i in &services {
                if inbound {
                    out.push(Chain::Inbound(i));
                }
                if outbound {
                    out.push(Chain::Outbound(i));
                }
            }
            out
        };
        for (k, m) in t.spec.metrics.iter().enumerate() {
            self.only_provider(
                d,
                &format!("spec.metrics[{k}].providers"),
                &m.providers,
                "prometheus",
            );
            for chain in chains(true, true) {
                self.edit_telemetry(chain, |config| {
                    let metrics = config.entry("metrics").or_insert_with(|| json!({}));
                    if let Some(obj) = metrics.as_object_mut() {
                        let list = obj.entry("overrides").or_insert_with(|| json!([]));
                        if let Some(list) = list.as_array_mut() {
                            list.extend(m.overrides.iter().cloned());
                        }
                    }
                });
            }
        }
        for (k, a) in t.spec.access_logging.iter().enumerate() {
            let at = format!("spec.accessLogging[{k}]");
            self.only_provider(d, &format!("{at}.providers"), &a.providers, "envoy");
            let Some((inbound, outbound)) = sides(a.matches.as_ref()) else {
                self.findings.error(
                    d,
                    &format!("{at}.match.mode"),
                    "CLIENT, SERVER or CLIENT_AND_SERVER",
                );
                continue;
            };
            let mut log = Map::new();
            log.insert("enabled".into(), json!(!a.disabled.unwrap_or(false)));
            if let Some(f) = &a.filter {
                log.insert("filter".into(), json!(f.expression));
            }
            for chain in chains(inbound, outbound) {
                let log = Value::Object(log.clone());
                self.edit_telemetry(chain, |config| {
                    config.insert("accessLog".into(), log);
                });
            }
        }
        for (k, tr) in t.spec.tracing.iter().enumerate() {
            let at = format!("spec.tracing[{k}]");
            let Some((inbound, outbound)) = sides(tr.matches.as_ref()) else {
                self.findings.error(
                    d,
                    &format!("{at}.match.mode"),
                    "CLIENT, SERVER or CLIENT_AND_SERVER",
                );
                continue;
            };
            if tr
                .random_sampling_percentage
                .is_some_and(|p| !(0.0..=100.0).contains(&p))
            {
                self.findings.error(
                    d,
                    &format!("{at}.randomSamplingPercentage"),
                    "a percentage, 0 to 100",
                );
                continue;
            }
            if self.native_tracer(d, &at, tr, mesh_wide) {
                continue;
            }
            let Some(p) = tr.random_sampling_percentage else {
                continue;
            };
            for chain in chains(inbound, outbound) {
                self.edit_telemetry(chain, |config| {
                    let tracing = config.entry("tracing").or_insert_with(|| json!({}));
                    if let Some(obj) = tracing.as_object_mut() {
                        obj.insert("samplingPercent".into(), json!(p));
                    }
                });
            }
        }
    }

    /// Tracing by a MeshConfig tracer (named here, or the mesh's default): Envoy's
    /// own tracer (`mesh.tracing`), mesh-wide only, with the sampling percentage.
    /// False when the filter's trace propagation is what is configured.
    fn native_tracer(
        &mut self,
        d: &Doc,
        at: &str,
        tr: &istio::TelemetryTracing,
        mesh_wide: bool,
    ) -> bool {
        let named = match tr.providers.as_slice() {
            [] => None,
            [one] => Some(one.name.clone()),
            [_, ..] => {
                self.findings.unsupported(
                    d,
                    &format!("{at}.providers[1]"),
                    "one tracer for the mesh",
                );
                return true;
            }
        };
        if let Some(name) = &named {
            let Some((provider, address)) = self.tracers.get(name).cloned() else {
                self.findings.error(d, &format!("{at}.providers[0].name"), format!("{name}: no zipkin or opentelemetry provider of this name in the MeshConfig"));
                return true;
            };
            if !mesh_wide {
                self.findings.unsupported(d, &format!("{at}.providers"), "the tracer is the mesh's (Envoy's tracer on every sidecar): set it in a Telemetry in istio-system without a selector");
                return true;
            }
            let sampling = tr.random_sampling_percentage.unwrap_or(1.0);
            self.mesh.mesh.tracing = Some(crate::model::TracingSpec {
                provider,
                address,
                sampling,
            });
            return true;
        }
        match (&mut self.mesh.mesh.tracing, tr.random_sampling_percentage) {
            (Some(t), Some(p)) if mesh_wide => {
                t.sampling = p;
                true
            }
            (Some(_), Some(_)) => {
                self.findings.unsupported(
                    d,
                    &format!("{at}.randomSamplingPercentage"),
                    "with a tracer, sampling is the mesh's: set it mesh-wide",
                );
                true
            }
            _ => false,
        }
    }

    fn only_provider(
        &mut self,
        d: &Doc,
        field: &str,
        providers: &[istio::ProviderRef],
        builtin: &str,
    ) {
        for (k, p) in providers.iter().enumerate() {
            if p.name != builtin {
                self.findings.unsupported(d, &format!("{field}[{k}].name"), format!("{}: the telemetry filter is the one provider here (Istio's `{builtin}`); MeshConfig extension providers are not read", p.name));
            }
        }
    }

    /// Edits the config object of `chain`'s telemetry filter, added (fail open, as
    /// the examples run it) when the chain has none.
    fn edit_telemetry(&mut self, chain: Chain, edit: impl FnOnce(&mut Map<String, Value>)) {
        let (list, reporter) = match chain {
            Chain::Inbound(i) => (&mut self.mesh.services[i].filters.inbound, "destination"),
            Chain::Outbound(i) => (&mut self.mesh.services[i].filters.outbound, "source"),
            Chain::Gateway => match self.mesh.gateway.as_mut() {
                Some(g) => (&mut g.filters, "source"),
                None => return,
            },
        };
        let at = match list.iter().position(|f| f.name == FilterName::Telemetry) {
            Some(at) => at,
            None => {
                list.push(FilterSpec {
                    name: FilterName::Telemetry,
                    config: json!({ "reporter": reporter }),
                    failure_policy: FailurePolicy::FailOpen,
                    module: None,
                });
                list.len() - 1
            }
        };
        let config = &mut list[at].config;
        if !config.is_object() {
            *config = json!({});
        }
        if let Some(map) = config.as_object_mut() {
            edit(map);
        }
    }
}

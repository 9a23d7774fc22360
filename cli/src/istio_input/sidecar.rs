//! Sidecar resources into each service's `calls`: the services its sidecar's egress
//! hosts name. A workload's own Sidecar wins over its namespace's, which wins over the
//! mesh-wide one in the root namespace, as in Istio. A service no Sidecar covers may
//! call every service (`calls` absent).

use super::documents::Doc;
use super::{Reader, ROOT_NAMESPACE};
use crate::istio;
use crate::names;
use std::collections::BTreeMap;

impl Reader {
    pub(super) fn sidecars(&mut self, all: &[(Doc, istio::Sidecar)]) {
        // Per service: (scope rank, the Sidecar's label, its host patterns and namespace).
        let mut chosen: BTreeMap<usize, (u8, String, Vec<String>, String)> = BTreeMap::new();
        for (d, sc) in all {
            let mut listeners = sc.spec.egress.iter();
            let Some(egress) = listeners.next() else {
                self.findings.error(d, "spec.egress", "a Sidecar without egress hosts: wasmesh reads Sidecars for their egress hosts (the services a workload calls)");
                continue;
            };
            if listeners.next().is_some() {
                self.findings.unsupported(d, "spec.egress[1]", "one egress listener: a service's calls are the same on every port in the mesh model");
            }
            let labels = sc
                .spec
                .workload_selector
                .as_ref()
                .map(|w| w.labels.clone())
                .unwrap_or_default();
            let (rank, targets): (u8, Vec<usize>) = if !labels.is_empty() {
                let selector = istio::WorkloadSelector {
                    match_labels: labels,
                };
                (2, self.services_of_selector(d, &selector))
            } else if d.namespace == ROOT_NAMESPACE {
                (0, (0..self.mesh.services.len()).collect())
            } else {
                let ns = d.namespace.clone();
                (
                    1,
                    (0..self.mesh.services.len())
                        .filter(|&i| self.mesh.services[i].namespace == ns)
                        .collect(),
                )
            };
            for i in targets {
                match chosen.get(&i) {
                    Some((r, first, _, _)) if *r == rank => {
                        let name = self.mesh.services[i].name.clone();
                        self.findings.error(d, "", format!("{first} already applies to {name} at the same scope: two Sidecars for one workload conflict"));
                    }
                    Some((r, _, _, _)) if *r > rank => {}
                    _ => {
                        chosen.insert(
                            i,
                            (rank, d.label(), egress.hosts.clone(), d.namespace.clone()),
                        );
                    }
                }
            }
        }
        for (i, (_, _, hosts, ns)) in chosen {
            let me = self.mesh.services[i].name.clone();
            let calls: Vec<String> = self
                .mesh
                .services
                .iter()
                .filter(|s| s.name != me && hosts.iter().any(|h| host_matches(h, &ns, s)))
                .map(|s| s.name.clone())
                .collect();
            self.mesh.services[i].calls = Some(calls);
        }
    }
}

/// Does the egress host `pattern` (`ns/dns`, written in namespace `own_ns`) name `s`?
fn host_matches(pattern: &str, own_ns: &str, s: &crate::model::ServiceSpec) -> bool {
    let (ns, dns) = pattern.split_once('/').unwrap_or(("*", pattern));
    let ns_ok = match ns {
        "*" => true,
        "~" => false,
        "." => s.namespace == own_ns,
        other => s.namespace == other,
    };
    let host = names::service_host(s);
    let dns_ok = dns == "*"
        || dns
            .strip_prefix('*')
            .is_some_and(|suffix| host.ends_with(suffix))
        || names::service_names(s).iter().any(|n| n == dns);
    ns_ok && dns_ok
}

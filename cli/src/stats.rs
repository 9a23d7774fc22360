//! A bootstrap's `stats_config` and flush interval, derived from the filters it runs.
//!
//! Filters encode labels into metric names (`NAME;label=value;...`, see the SDK's
//! `metrics` module); Envoy turns them back into Prometheus labels only for label names
//! that have a `stats_tags` extractor. A label without one stays inside the metric name
//! (`istio_request_bytes_source_cluster_Kubernetes_..._bucket`), so every label a
//! filter can emit must be listed: the telemetry filter says which labels a config
//! produces (`wasmesh_telemetry::stats_tags`), the other filters' labels are fixed and
//! documented in their docs pages.

use crate::envoy::StatsConfig;
use crate::model::FilterName;
use serde_json::Value;
use std::collections::BTreeMap;
use wasmesh_sdk::config::from_value;
use wasmesh_sdk::metrics::StatsTag;

/// Histograms reach `/stats/prometheus` only at a stats flush: short enough that a
/// request shows up in the duration histogram before a 5 s Prometheus scrape.
pub const FLUSH_INTERVAL: &str = "1s";

/// The label names of a non-telemetry filter's metrics (docs/filters/<name>.md).
pub fn fixed_labels(filter: FilterName) -> &'static [&'static str] {
    match filter {
        // wasmesh_authz_decisions_total{decision, policy}
        FilterName::Authz => &["decision", "policy"],
        // wasmesh_fault_*_total{rule}, wasmesh_ratelimit_*_total{rule}
        FilterName::Fault | FilterName::Ratelimit => &["rule"],
        // Header edits are counted by Envoy's own request stats.
        FilterName::Headers => &[],
        // No metrics of its own: preflights show as Envoy's local replies.
        FilterName::Cors => &[],
        // No metrics of its own: refusals show as Envoy's local replies.
        FilterName::Body => &[],
        FilterName::Telemetry => &[],
    }
}

/// The stats tags for one filter with the config Envoy gets.
fn filter_tags(filter: FilterName, config: &Value) -> Vec<StatsTag> {
    if filter != FilterName::Telemetry {
        return wasmesh_sdk::metrics::stats_tags(fixed_labels(filter).iter().copied());
    }
    // `wasmesh validate` refuses a telemetry config that does not parse or validate;
    // should one reach generation anyway, the default config's labels (Istio's
    // standard set) are the best guess and keep the bootstrap loadable.
    let parsed = from_value::<wasmesh_telemetry::Config>(config)
        .map_err(|e| e.to_string())
        .and_then(|c| wasmesh_telemetry::stats_tags(&c).map_err(|e| e.to_string()));
    match parsed {
        Ok(tags) => tags,
        Err(_) => {
            wasmesh_telemetry::stats_tags(&wasmesh_telemetry::Config::default()).unwrap_or_default()
        }
    }
}

/// `stats_config` for a bootstrap running `filters` (name, config as Envoy gets it):
/// every label any of them emits, deduplicated and sorted by name so the output is
/// reproducible, and Istio's histogram buckets when telemetry runs.
pub fn stats_config<'a>(filters: impl IntoIterator<Item = (FilterName, &'a Value)>) -> StatsConfig {
    let mut tags: BTreeMap<String, StatsTag> = BTreeMap::new();
    let mut telemetry = false;
    let mut any = false;
    for (name, config) in filters {
        any = true;
        telemetry |= name == FilterName::Telemetry;
        for t in filter_tags(name, config) {
            tags.entry(t.tag_name.clone()).or_insert(t);
        }
    }
    // Every wasmesh filter reports its VM's memory through the SDK.
    if any {
        for t in wasmesh_sdk::metrics::stats_tags(wasmesh_sdk::metrics::SDK_LABELS.iter().copied())
        {
            tags.entry(t.tag_name.clone()).or_insert(t);
        }
    }
    StatsConfig {
        stats_tags: tags.into_values().collect(),
        histogram_bucket_settings: if telemetry {
            wasmesh_telemetry::buckets::histogram_bucket_settings()
        } else {
            Vec::new()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn names(c: &StatsConfig) -> Vec<&str> {
        c.stats_tags.iter().map(|t| t.tag_name.as_str()).collect()
    }

    #[test]
    fn telemetry_labels_include_the_cluster_labels_and_are_sorted_without_duplicates() {
        let inbound = json!({"reporter": "destination"});
        let outbound = json!({"reporter": "source"});
        let authz = json!({});
        let c = stats_config([
            (FilterName::Telemetry, &inbound),
            (FilterName::Authz, &authz),
            (FilterName::Telemetry, &outbound),
        ]);
        let n = names(&c);
        for label in [
            "source_cluster",
            "destination_cluster",
            "reporter",
            "response_code",
            "decision",
            "policy",
        ] {
            assert!(n.contains(&label), "{label} missing from {n:?}");
        }
        let mut sorted = n.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(n, sorted);
        assert!(!n.contains(&"rule"), "no fault or ratelimit here");
        assert_eq!(c.histogram_bucket_settings.len(), 3);
    }

    #[test]
    fn custom_telemetry_labels_get_extractors() {
        let cfg = json!({"customMetrics": [{"name": "wasmesh_tenant_requests_total",
            "type": "COUNTER", "labels": [{"name": "tenant",
            "value": "request.headers[x-tenant]", "allow": ["acme"]}]}]});
        let c = stats_config([(FilterName::Telemetry, &cfg)]);
        assert!(names(&c).contains(&"tenant"), "{:?}", names(&c));
    }

    #[test]
    fn without_telemetry_no_buckets_and_only_the_filters_labels() {
        let v = json!({});
        let c = stats_config([(FilterName::Ratelimit, &v), (FilterName::Headers, &v)]);
        // `filter` labels the SDK's own memory gauge, which every wasmesh filter reports.
        assert_eq!(names(&c), ["filter", "rule"]);
        assert!(c.histogram_bucket_settings.is_empty());
    }
}

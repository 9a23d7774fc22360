//! wasmesh-telemetry: Istio's standard metrics (with peer identity from a metadata
//! exchange between sidecars), JSON access logs and trace-context propagation.
//!
//! The generator reuses [`buckets::DURATION_MS`] and [`stats_tags`] so that Envoy's
//! `/stats/prometheus` prints the same series an Istio sidecar prints.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod accesslog;
pub mod buckets;
pub mod config;
pub mod exchange;
pub mod expr;
pub mod labels;
pub mod series;
pub mod stage;
pub mod trace;

pub use config::Config;
pub use stage::TelemetryStage;

use wasmesh_sdk::metrics::StatsTag;

/// The `stats_config.stats_tags` a bootstrap needs for this configuration: one per
/// label name any metric can carry (standard, overridden and custom labels).
pub fn stats_tags(config: &Config) -> Result<Vec<StatsTag>, wasmesh_sdk::ConfigError> {
    let runtime = config.validate()?;
    Ok(wasmesh_sdk::metrics::stats_tags(
        runtime.metrics.label_names().iter().map(String::as_str),
    ))
}

wasmesh_sdk::export_stage!(TelemetryStage);

//! Istio's default histogram buckets. Envoy, not the filter, owns a Wasm histogram's
//! buckets: they come from the bootstrap's `stats_config.histogram_bucket_settings`,
//! so the generator (and the integration tests) put these there.

use serde::Serialize;

/// `istio_request_duration_milliseconds` buckets, in milliseconds (also Envoy's
/// defaults, which Istio keeps).
pub const DURATION_MS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// `istio_request_bytes` / `istio_response_bytes` buckets: Istio's sidecar keeps
/// Envoy's default buckets for sizes too, so they are the same list.
pub const SIZE_BYTES: [f64; 19] = DURATION_MS;

/// One `stats_config.histogram_bucket_settings` entry (Envoy v3 field names).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistogramBucketSettings {
    /// A `StringMatcher`: `{"prefix": ...}`.
    #[serde(rename = "match")]
    pub matcher: Prefix,
    pub buckets: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prefix {
    pub prefix: String,
}

/// The bucket settings for the standard histograms. Envoy matches the full stat
/// name, which for Wasm metrics starts with `wasmcustom.`.
pub fn histogram_bucket_settings() -> Vec<HistogramBucketSettings> {
    let entry = |name: &str, buckets: &[f64]| HistogramBucketSettings {
        matcher: Prefix {
            prefix: format!("wasmcustom.{name}"),
        },
        buckets: buckets.to_vec(),
    };
    vec![
        entry(crate::labels::REQUEST_DURATION, &DURATION_MS),
        entry(crate::labels::REQUEST_BYTES, &SIZE_BYTES),
        entry(crate::labels::RESPONSE_BYTES, &SIZE_BYTES),
    ]
}

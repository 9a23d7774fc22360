//! The mesh file's filter lists: which wasmesh filter, its config (opaque JSON, the
//! filter's docs page is its reference) and Envoy's failure policy for it.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The Wasm filters on a sidecar, per direction.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FiltersSpec {
    /// On requests arriving at this service (the server side).
    #[serde(default)]
    pub inbound: Vec<FilterSpec>,
    /// On requests this service's app makes (the client side).
    #[serde(default)]
    pub outbound: Vec<FilterSpec>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FilterSpec {
    pub name: FilterName,
    /// Handed to the filter as JSON, unchanged: the filter's docs page is its reference.
    #[serde(default = "empty_object")]
    pub config: serde_json::Value,
    #[serde(default)]
    pub failure_policy: FailurePolicy,
    /// A `.wasm` to run instead of the built `dist/filters/NAME.wasm` (relative to
    /// where `wasmesh` runs): a new build of the filter on this service only, for a
    /// canary upgrade (docs/walkthrough.md). Wasm filters without `--bundle` only.
    #[serde(default)]
    pub module: Option<String>,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

/// Our filters. The order of the variants is Istio's phase order in the chain:
/// CORS first (a preflight is answered before authn/authz could refuse it for lacking
/// credentials, where Envoy's CORS filter also goes), authn/authz, then the traffic
/// filters, the body stage after them (limits and rewrites once the request is let
/// in), stats last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FilterName {
    Cors,
    Authz,
    Ratelimit,
    Headers,
    Fault,
    Body,
    Telemetry,
}

impl FilterName {
    pub const ALL: [FilterName; 7] = [
        FilterName::Cors,
        FilterName::Authz,
        FilterName::Ratelimit,
        FilterName::Headers,
        FilterName::Fault,
        FilterName::Body,
        FilterName::Telemetry,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FilterName::Cors => "cors",
            FilterName::Authz => "authz",
            FilterName::Ratelimit => "ratelimit",
            FilterName::Headers => "headers",
            FilterName::Fault => "fault",
            FilterName::Body => "body",
            FilterName::Telemetry => "telemetry",
        }
    }

    /// The module's file name under the filters directory.
    pub fn wasm_file(self) -> String {
        format!("{}.wasm", self.as_str())
    }

    /// Istio WasmPlugin phase. Istio puts UNSPECIFIED_PHASE after STATS, so the
    /// traffic filters go in AUTHZ (after authz's AUTHN) to keep our order.
    pub fn istio_phase(self) -> &'static str {
        match self {
            FilterName::Cors | FilterName::Authz => "AUTHN",
            FilterName::Telemetry => "STATS",
            FilterName::Ratelimit | FilterName::Headers | FilterName::Fault | FilterName::Body => {
                "AUTHZ"
            }
        }
    }

    /// Istio WasmPlugin priority within the phase (higher runs first).
    pub fn istio_priority(self) -> i32 {
        match self {
            // Before authz in the same phase.
            FilterName::Cors | FilterName::Ratelimit => 30,
            FilterName::Headers => 20,
            FilterName::Authz | FilterName::Fault | FilterName::Telemetry => 10,
            FilterName::Body => 5,
        }
    }
}

impl fmt::Display for FilterName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Envoy 1.40's `failure_policy` for a Wasm plugin.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FailurePolicy {
    #[default]
    FailClosed,
    FailOpen,
    FailReload,
}

impl FailurePolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            FailurePolicy::FailClosed => "FAIL_CLOSED",
            FailurePolicy::FailOpen => "FAIL_OPEN",
            FailurePolicy::FailReload => "FAIL_RELOAD",
        }
    }
}

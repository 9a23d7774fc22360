//! wasmesh-mesh: every wasmesh filter as a stage of one pipeline, in one module.
//! One VM and one context per request pay the fixed cost of a Wasm filter once.
//!
//! Config: `{"stages": [{"name": "authz", "config": {...}}, {"name": "headers", ...}]}`,
//! each stage with the config its own filter takes. Build with `--cfg wasmesh_bundle`
//! (`scripts/build-filters.sh` does) so the stage crates do not export entry points
//! of their own.

use wasmesh_sdk::config::Json;
use wasmesh_sdk::pipeline::{build_stage, AnyStage, Pipeline, Registry};
use wasmesh_sdk::ConfigError;

/// The stage names this module offers, as they appear in `stages[i].name`.
pub const STAGES: [&str; 7] = [
    "authz",
    "body",
    "cors",
    "fault",
    "headers",
    "ratelimit",
    "telemetry",
];

pub struct Mesh;

impl Registry for Mesh {
    const NAME: &'static str = "wasmesh-mesh";

    fn build(kind: &str, config: &Json) -> Option<Result<Box<dyn AnyStage>, ConfigError>> {
        Some(match kind {
            "authz" => build_stage::<wasmesh_authz::AuthzStage>(config),
            "body" => build_stage::<wasmesh_body::BodyStage>(config),
            "cors" => build_stage::<wasmesh_cors::CorsStage>(config),
            "fault" => build_stage::<wasmesh_fault::FaultStage>(config),
            "headers" => build_stage::<wasmesh_headers::HeadersStage>(config),
            "ratelimit" => build_stage::<wasmesh_ratelimit::RateLimitStage>(config),
            "telemetry" => build_stage::<wasmesh_telemetry::TelemetryStage>(config),
            _ => return None,
        })
    }
}

pub type MeshPipeline = Pipeline<Mesh>;

#[cfg(target_arch = "wasm32")]
wasmesh_sdk::export_bundle!(MeshPipeline);

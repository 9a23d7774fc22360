//! The stages this module offers, by the `filter_name` of Envoy's `DynamicModuleFilter`.
//! Each is the filter crate's own stage type (the one its Wasm build exports), built
//! through the SDK's type erasure, so the native build runs the very same code.

use wasmesh_sdk::config::Json;
use wasmesh_sdk::pipeline::{build_stage, AnyStage};
use wasmesh_sdk::ConfigError;

/// The `filter_name`s this module accepts.
pub const NAMES: [&str; 2] = ["fault", "headers"];

/// Builds stage `kind` from its JSON config, or `None` if this module has no such stage.
pub fn build(kind: &str, config: &Json) -> Option<Result<Box<dyn AnyStage>, ConfigError>> {
    Some(match kind {
        "fault" => build_stage::<wasmesh_fault::FaultStage>(config),
        "headers" => build_stage::<wasmesh_headers::HeadersStage>(config),
        _ => return None,
    })
}

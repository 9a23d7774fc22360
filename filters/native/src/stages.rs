//! The stages this module offers, by the `filter_name` of Envoy's `DynamicModuleFilter`:
//! each filter's own stage, and `mesh`, the pipeline of them (the one-VM mesh module's
//! config). They come from the mesh module's registry, the same one its Wasm build
//! uses, so the native build runs the very same code.

use wasmesh_mesh::{Mesh, MeshPipeline};
use wasmesh_sdk::config::Json;
use wasmesh_sdk::pipeline::{build_stage, AnyStage, Registry};
use wasmesh_sdk::ConfigError;

/// The `filter_name` of the pipeline of stages.
pub const PIPELINE: &str = "mesh";

/// The `filter_name`s this module accepts, sorted.
pub fn names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = wasmesh_mesh::STAGES.to_vec();
    names.push(PIPELINE);
    names.sort_unstable();
    names
}

/// Stages this module names but refuses: they need the body phase, which this shell
/// does not wire yet (Envoy 1.40's body callbacks: `get_body_chunks`, `drain_body`,
/// `append_body`, `received_buffered_*_body`). Run them in body.wasm or mesh.wasm.
const NEEDS_BODY: [&str; 1] = ["body"];

fn body_refused(at: &str) -> ConfigError {
    ConfigError::at(
        at,
        "the body stage needs the body phase, which the native module does not have yet; use body.wasm or mesh.wasm",
    )
}

/// Builds stage `kind` from its JSON config, or `None` if this module has no such stage.
pub fn build(kind: &str, config: &Json) -> Option<Result<Box<dyn AnyStage>, ConfigError>> {
    if NEEDS_BODY.contains(&kind) {
        return Some(Err(body_refused("")));
    }
    if kind == PIPELINE {
        if let Some(i) = body_stage_in(config) {
            return Some(Err(body_refused(&format!("stages[{i}].name"))));
        }
        return Some(build_stage::<MeshPipeline>(config));
    }
    Mesh::build(kind, config)
}

/// Where a pipeline config lists a stage that needs the body phase.
fn body_stage_in(config: &Json) -> Option<usize> {
    let Json::Object(members) = config else {
        return None;
    };
    let (_, Json::Array(stages)) = members.iter().find(|(k, _)| k == "stages")? else {
        return None;
    };
    stages.iter().position(|stage| {
        matches!(stage, Json::Object(entry) if entry.iter().any(|(k, v)| k == "name"
            && matches!(v, Json::String(n) if NEEDS_BODY.contains(&n.as_str()))))
    })
}

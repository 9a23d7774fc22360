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

/// Builds stage `kind` from its JSON config, or `None` if this module has no such stage.
pub fn build(kind: &str, config: &Json) -> Option<Result<Box<dyn AnyStage>, ConfigError>> {
    if kind == PIPELINE {
        return Some(build_stage::<MeshPipeline>(config));
    }
    Mesh::build(kind, config)
}

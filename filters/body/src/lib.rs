//! wasmesh-body: request and response body size limits, counted as the body streams,
//! and JSON body rewrites (set, remove, rename by JSON pointer) as a filter and a stage.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod config;
pub mod pointer;
pub mod stage;
pub mod transform;

pub use stage::BodyStage;

wasmesh_sdk::export_stage!(BodyStage);

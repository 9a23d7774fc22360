//! wasmesh-headers: request and response header transforms, query edits and path
//! rewrites, applied per rule, as a Proxy-Wasm filter.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod config;
pub mod stage;
pub mod template;

pub use stage::HeadersStage;

wasmesh_sdk::export_stage!(HeadersStage);

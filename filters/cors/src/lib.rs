//! wasmesh-cors: Istio's VirtualService `corsPolicy` as a Proxy-Wasm filter and a stage
//! of the mesh module: preflights answered locally, CORS headers added to responses.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod config;
pub mod origin;
pub mod stage;

pub use stage::CorsStage;

wasmesh_sdk::export_stage!(CorsStage);

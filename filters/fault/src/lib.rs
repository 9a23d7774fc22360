//! wasmesh-fault: fault injection (aborts and fixed delays for a percentage of
//! requests, per rule, or asked for by Envoy's `x-envoy-fault-*` headers).

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod config;
pub mod stage;

pub use stage::FaultStage;

wasmesh_sdk::export_stage!(FaultStage);

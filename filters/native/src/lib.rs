//! wasmesh-native: the wasmesh stages as a native Envoy dynamic module, loaded by
//! `envoy.filters.http.dynamic_modules` (Envoy 1.40.0) instead of a Proxy-Wasm VM.
//!
//! Envoy config: `DynamicModuleFilter { dynamic_module_config { name: "wasmesh_native" },
//! filter_name: "authz" | "body" | "cors" | "fault" | "headers" | "ratelimit" | "telemetry" | "mesh",
//! filter_config: <StringValue with the Wasm filter's JSON config> }`, with
//! `libwasmesh_native.so` on `ENVOY_DYNAMIC_MODULES_SEARCH_PATH`.
//! One stage source, two shells: the stages are the filter crates' own, the Wasm shell
//! is `wasmesh_sdk::shell`, this crate's is [`shell`]. See docs/native-target.md.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

// The hooks call Envoy's callbacks, which only Envoy's process defines: a test binary
// linking them could not resolve them, so the ABI is left out of unit tests.
#[cfg(not(test))]
mod abi;
#[cfg(not(test))]
mod envoy_host;
pub mod grpc;
mod props;
pub mod shell;
pub mod stages;
mod timer;

#[cfg(not(test))]
pub use abi::{ABI_VERSION, ENVOY_VERSION};

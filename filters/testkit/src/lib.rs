//! wasmesh-testkit: test support for the wasmesh filters' own tests.
//! Which module a filter's harness tests run (its own, or its stage of the mesh module), and JWT minting.
//!
//! The harness (`wasmesh-harness`) is a general Proxy-Wasm host and knows nothing of
//! wasmesh's filters; what the filters' tests share about them lives here:
//!
//! * [`under_test`] — [`filter_under_test`] picks a filter's module by
//!   `WASMESH_HARNESS_MODULE`, with the mesh module's stages and their quiet configs.
//! * [`fuzz`] — the bounded fuzzer that drives each compiled filter and the mesh
//!   module with mutated configs and hostile requests (`tests/fuzz.rs`, `scripts/fuzz.sh`).
//! * [`security`] — the authz attack corpus (paths, JWTs, forwarded-for) as named
//!   cases with their expected outcome, run by the harness and through real Envoy.
//! * [`mint`] — fixed signing keys, their JWKS, and tokens (valid ones and the attack
//!   corpus) for authz's unit, harness and real-Envoy tests and its bench.

// Test support: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod fuzz;
pub mod mint;
pub mod security;
pub mod under_test;

pub use under_test::{config_refusal, filter_under_test, through_mesh};

//! wasmesh-authz: Istio's AuthorizationPolicy and RequestAuthentication (JWT), plus
//! API-key and basic-auth consumers and ext_authz, as one Proxy-Wasm filter.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod config;
pub mod consumers;
pub mod extauthz;
pub mod jwt;
pub mod policy;
pub mod stage;

pub use stage::AuthzStage;

wasmesh_sdk::export_stage!(AuthzStage);

/// Token minting shared with the harness tests, the bench and the Envoy tests.
#[cfg(test)]
pub(crate) use wasmesh_testkit::mint;

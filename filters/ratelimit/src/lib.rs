//! wasmesh-ratelimit: token-bucket rate limiting per rule and per key (client IP,
//! header, path, route, method, JWT claim), exact across Envoy's workers.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod bucket;
pub mod config;
pub mod global;
pub mod key;
pub mod rls;
pub mod stage;
pub mod store;
pub mod table;

pub use stage::RateLimitStage;

wasmesh_sdk::export_stage!(RateLimitStage);

//! wasmesh-integration: the real-Envoy test rig.
//! Starts Envoy on free ports, talks to its admin API, and serves an echo upstream.

pub mod admin;
pub mod bootstrap;
pub mod echo;
pub mod envoy;
pub mod http;
pub mod paths;

pub use admin::{Admin, Stats};
pub use bootstrap::{FailurePolicy, WasmFilter};
pub use echo::{Echo, EchoServer};
pub use envoy::{Envoy, Options};

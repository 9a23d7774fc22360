//! wasmesh-integration: the real-Envoy test rig.
//! Starts Envoy on free ports, talks to its admin API, and serves an echo upstream.
//!
//! A typical test:
//!
//! ```no_run
//! use wasmesh_integration::{bootstrap, http, EchoServer, Envoy, WasmFilter};
//!
//! # fn main() -> anyhow::Result<()> {
//! let echo = EchoServer::start()?;
//! let filter = WasmFilter::new("headers", "target/wasm32-wasip1/wasm/headers.wasm")
//!     .config(serde_json::json!({ "set": { "x-a": "1" } }));
//! let envoy = Envoy::start(&bootstrap::proxy_to(echo.port(), &[filter]))?;
//! let response = http::get(&format!("{}/path", envoy.listener_url(bootstrap::INGRESS)?))?;
//! assert_eq!(response.status, 200);
//! # Ok(())
//! # }
//! ```
//!
//! Envoy comes from `$ENVOY_BIN` or `<workspace>/.venv/bin/envoy`; when neither exists
//! every start fails with a message pointing at `./scripts/setup.sh`.

pub mod admin;
pub mod bootstrap;
pub mod conformance;
pub mod echo;
pub mod envoy;
pub mod http;
pub mod localmesh;
pub mod paths;
pub mod ports;
pub mod rls;
pub mod scenarios;
pub mod stats;
pub mod tls;

pub use admin::{Admin, Stats};
pub use bootstrap::{FailurePolicy, WasmFilter};
pub use echo::{Echo, EchoServer};
pub use envoy::{Envoy, Options};

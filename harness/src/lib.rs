//! wasmesh-harness: the Proxy-Wasm ABI 0.2.1 host on wasmtime.
//! Runs real compiled filters in `cargo test`, without Envoy.
//!
//! # Shape
//!
//! * [`Module`] — a compiled and linked `.wasm`, cached per process ([`Module::load`]).
//! * [`Host`] — one plugin: N worker VMs (Envoy's one VM per worker thread) sharing shared
//!   data, queues, metrics and a manual clock. Built with [`Host::builder`], which runs
//!   `_initialize`, `proxy_on_context_create`, `proxy_on_vm_start` and `proxy_on_configure`
//!   on every worker.
//! * [`Stream`] — an HTTP stream on one worker: feed headers, bodies, trailers; read back
//!   what the filter left (headers, bodies, local response, resumes, failure).
//!
//! The API is state-based: a test drives callbacks, answers callouts, moves the clock, then
//! asserts on state. Nothing is expected in advance.
//!
//! ```
//! use wasmesh_harness::{build, request, response, Action, Host, Module};
//! let module = Module::load(build::wasm_module("wasmesh-probe")).unwrap();
//! let host = Host::builder(&module).workers(2).build().unwrap();
//! assert!(host.configured());
//! let mut s = host.stream();
//! let mut headers = request("GET", "/x", "example.com");
//! headers.push(("x-probe-op".into(), "set-header".into()));
//! assert_eq!(s.request_headers(&headers, true), Action::Continue);
//! assert_eq!(s.request_header_map().get("x-probe-added"), Some("1"));
//! s.response_headers(&response(200), true);
//! s.finish();
//! ```
//!
//! # Fidelity notes
//!
//! Behaviour follows Envoy 1.40's wasm extension where the ABI leaves room: first value from
//! `get_header_map_value`; maps unreachable once their phase continued; body buffering on
//! pause; `send_local_response` twice recorded and the second ignored; a trap fails the VM
//! and the stream gets 503 `wasm_fail_stream` (FAIL_CLOSED), later streams on that VM too;
//! callout failures delivered with zero headers; imports the host lacks fail the load.

mod abi;
pub mod build;
mod error;
mod host;
mod module;
mod signature;
mod state;
mod stream;
mod types;
mod vm;

pub use error::{HarnessError, LoadError};
pub use host::{Host, HostBuilder};
pub use module::{AbiVersion, Allocator, Module};
pub use state::ForeignFn;
pub use stream::Stream;
pub use types::{
    request, response, Action, CallState, ForeignCall, GrpcCall, GrpcState, HeaderMap, HttpCall,
    Incident, Level, LocalResponse, LogEntry, Metric, MetricKind, PropertyValue, Status,
};

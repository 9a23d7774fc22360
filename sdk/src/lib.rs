//! wasmesh-sdk: the guest-side library every wasmesh filter is written with.
//! Typed config, rule matching, panic-free host access and a stage pipeline on proxy-wasm.
//!
//! A filter is a [`Stage`]: a config type, a `build` that validates it once, and phase
//! handlers that read a view ([`Request`], [`Response`]) and return a [`Decision`].
//! `export_stage!(MyStage)` turns it into a Proxy-Wasm module.

// `#[derive(FromJson)]` names the SDK by its crate name, which the SDK's own config
// types need to resolve too.
extern crate self as wasmesh_sdk;

pub mod body;
pub mod config;
pub mod duration;
mod export;
pub mod headers;
pub mod host;
pub mod log;
pub mod matcher;
pub mod metrics;
pub mod names;
pub mod net;
pub mod path;
pub mod percent;
pub mod pipeline;
pub mod props;
pub mod rand;
pub mod request;
pub mod shared;
#[cfg(target_arch = "wasm32")]
pub mod shell;
pub mod stage;
pub mod timestamp;

pub use body::{Body, BodyAction};
pub use config::ConfigError;
pub use headers::HeaderMap;
pub use matcher::{MatchConfig, Matcher, Rules};
pub use path::PathOptions;
pub use props::{Properties, PropertySource, StaticProperties};
pub use request::Request;
pub use stage::{
    Callout, CalloutResult, Decision, GrpcCall, GrpcResult, LocalReply, LogView, Response, Stage,
};

/// Re-exported so `export_stage!` works without a direct dependency.
#[cfg(target_arch = "wasm32")]
pub use proxy_wasm;

//! Typed errors. Loading and building a host fail with these; host calls made by the guest
//! never surface as Rust errors (they become ABI status codes, as in Envoy).

use std::path::PathBuf;

/// Why a module could not be loaded (compiled and linked against the host).
#[derive(Debug, Clone, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read wasm module {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("cannot compile wasm module {name}: {message}")]
    Compile { name: String, message: String },
    /// Envoy refuses a module whose imports it does not provide; so do we, naming them all.
    #[error("module {name}: unsupported import {}", .imports.join(", unsupported import "))]
    UnsupportedImports { name: String, imports: Vec<String> },
    #[error("module {name} exports no proxy_abi_version_0_2_0 / proxy_abi_version_0_2_1")]
    UnknownAbi { name: String },
    #[error("module {name} exports neither proxy_on_memory_allocate nor malloc")]
    NoAllocator { name: String },
    #[error("module {name} exports no memory")]
    NoMemory { name: String },
    #[error("cannot link module {name}: {message}")]
    Link { name: String, message: String },
}

/// Errors from driving a host: building it, or answering calls the guest made.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HarnessError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("cannot instantiate worker {worker}: {message}")]
    Instantiate { worker: usize, message: String },
    #[error("export {name} has the wrong signature: {message}")]
    BadExport { name: &'static str, message: String },
    #[error("no pending http call with token {0}")]
    NoPendingCall(u32),
    #[error("no pending unary gRPC call with token {0}")]
    NoPendingGrpcCall(u32),
    #[error("http call {0} was cancelled: the stream that made it is finished")]
    CallCancelled(u32),
    #[error("no shared queue named {0}")]
    NoQueue(String),
    #[error("worker {worker} does not exist (host has {workers})")]
    NoWorker { worker: usize, workers: usize },
    #[error("build of {package} failed: {message}")]
    Build { package: String, message: String },
}

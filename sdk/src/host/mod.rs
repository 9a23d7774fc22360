//! Panic-free access to the Proxy-Wasm host.
//!
//! The `proxy-wasm` crate's `hostcalls` panic on any status they do not expect and on
//! header values that are not UTF-8 (Envoy allows obs-text bytes in values), which traps
//! the VM and, under FAIL_CLOSED, fails every later request. This module talks to the
//! host through the raw ABI instead: every call returns a `Result`, and bytes that are
//! not UTF-8 are converted lossily rather than trusted. It is the only place in the SDK
//! that calls the host. Native builds get [`native`]'s functions instead: stand-ins that
//! answer `Unavailable` (unit tests), or delegate to the backend a native Envoy module
//! installs ([`install`]).

mod codec;
#[cfg(not(target_arch = "wasm32"))]
mod native;
mod signature;
#[cfg(not(target_arch = "wasm32"))]
mod store;
#[cfg(target_arch = "wasm32")]
mod sys;

pub use codec::{decode_pairs, encode_pairs, lossy, wire_pairs};
pub use signature::{verify_signature, Verdict};

use std::fmt;
use std::time::{Duration, SystemTime};

/// A host call that did not succeed. `Unavailable` is the native-build stub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostError {
    NotFound,
    BadArgument,
    CasMismatch,
    Unimplemented,
    Other(u32),
    Unavailable,
}

impl HostError {
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    fn from_status(status: u32) -> Result<(), HostError> {
        match status {
            0 => Ok(()),
            1 => Err(HostError::NotFound),
            2 => Err(HostError::BadArgument),
            8 => Err(HostError::CasMismatch),
            12 => Err(HostError::Unimplemented),
            other => Err(HostError::Other(other)),
        }
    }
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "host call failed: {self:?}")
    }
}

/// Which header map a call refers to (ABI `MapType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum MapType {
    RequestHeaders = 0,
    RequestTrailers = 1,
    ResponseHeaders = 2,
    ResponseTrailers = 3,
    HttpCallResponseHeaders = 6,
}

/// Which buffer a call refers to (ABI `BufferType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum BufferType {
    RequestBody = 0,
    ResponseBody = 1,
    VmConfiguration = 6,
    PluginConfiguration = 7,
    HttpCallResponseBody = 4,
    GrpcReceiveBuffer = 5,
}

/// Log levels as the ABI numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u32)]
pub enum LogLevel {
    Trace = 0,
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
    Critical = 5,
}

/// Metric kinds as the ABI numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum MetricKind {
    Counter = 0,
    Gauge = 1,
    Histogram = 2,
}

#[cfg(target_arch = "wasm32")]
pub use sys::*;

#[cfg(not(target_arch = "wasm32"))]
pub use native::*;
#[cfg(not(target_arch = "wasm32"))]
pub use store::SharedStore;

/// Current time, or the Unix epoch if the host cannot say (it always can in Envoy).
pub fn now_or_epoch() -> SystemTime {
    now().unwrap_or(SystemTime::UNIX_EPOCH)
}

/// Milliseconds since the Unix epoch of `t` (0 before the epoch).
pub fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis()
        .try_into()
        .unwrap_or(u64::MAX)
}

//! The host functions in native builds.
//!
//! Unit tests run stage logic natively, without a host: every function answers
//! `Unavailable`, and stages see what they would see without one (no logs, no metrics,
//! the clock at the epoch). The native Envoy module (filters/native) is a host of its
//! own: it installs a [`NativeHost`] once, at load, and from then on the SDK's logs,
//! clock, shared data and metrics go there, with no change to stage code.
//!
//! The per-stream calls (headers, properties, local replies, callouts, continuing a
//! stream) stay `Unavailable` here: only the Wasm shell calls them, and the native
//! shell talks to Envoy for those itself.

use super::{BufferType, HostError, LogLevel, MapType, MetricKind};
use std::sync::OnceLock;
use std::time::SystemTime;

/// What a native host offers the SDK. Every method defaults to `Unavailable`, so a
/// backend implements what it has and the rest degrades as it does in unit tests.
pub trait NativeHost: Send + Sync {
    fn log(&self, _level: LogLevel, _message: &str) -> Result<(), HostError> {
        Err(HostError::Unavailable)
    }
    fn log_level(&self) -> Result<LogLevel, HostError> {
        Err(HostError::Unavailable)
    }
    fn now(&self) -> Result<SystemTime, HostError> {
        Err(HostError::Unavailable)
    }
    fn monotonic_nanos(&self) -> Result<u64, HostError> {
        Err(HostError::Unavailable)
    }
    /// As the Proxy-Wasm call: the value and its CAS token, `(None, 0)` when missing.
    fn shared_data(&self, _key: &str) -> Result<(Option<Vec<u8>>, u32), HostError> {
        Err(HostError::Unavailable)
    }
    /// As the Proxy-Wasm call: `cas` 0 writes unconditionally, a stale one is refused.
    fn set_shared_data(&self, _key: &str, _value: &[u8], _cas: u32) -> Result<(), HostError> {
        Err(HostError::Unavailable)
    }
    /// A metric family this stage may record: its kind, name and label names. Hosts
    /// that must define metrics before the first request (Envoy's dynamic modules
    /// freeze definitions once a config is loaded) define it here; stages declare
    /// every family when they are built.
    fn declare_metric(
        &self,
        _kind: MetricKind,
        _name: &str,
        _labels: &[String],
    ) -> Result<(), HostError> {
        Err(HostError::Unavailable)
    }
    /// `name` is encoded with its labels ([`crate::metrics::encode_name`]).
    fn define_metric(&self, _kind: MetricKind, _name: &str) -> Result<u32, HostError> {
        Err(HostError::Unavailable)
    }
    fn increment_metric(&self, _id: u32, _offset: i64) -> Result<(), HostError> {
        Err(HostError::Unavailable)
    }
    fn record_metric(&self, _id: u32, _value: u64) -> Result<(), HostError> {
        Err(HostError::Unavailable)
    }
}

static HOST: OnceLock<&'static dyn NativeHost> = OnceLock::new();

/// Makes `host` the SDK's host for the rest of the process. Only the first call
/// installs; a later one returns false and changes nothing (Envoy may load a module's
/// program once and configure it many times).
pub fn install(host: &'static dyn NativeHost) -> bool {
    HOST.set(host).is_ok()
}

fn host() -> Result<&'static dyn NativeHost, HostError> {
    HOST.get().copied().ok_or(HostError::Unavailable)
}

pub fn log(level: LogLevel, message: &str) -> Result<(), HostError> {
    host()?.log(level, message)
}
pub fn log_level() -> Result<LogLevel, HostError> {
    host()?.log_level()
}
pub fn now() -> Result<SystemTime, HostError> {
    host()?.now()
}
pub fn monotonic_nanos() -> Result<u64, HostError> {
    host()?.monotonic_nanos()
}
pub fn shared_data(key: &str) -> Result<(Option<Vec<u8>>, u32), HostError> {
    host()?.shared_data(key)
}
pub fn set_shared_data(key: &str, value: &[u8], cas: u32) -> Result<(), HostError> {
    host()?.set_shared_data(key, value, cas)
}
pub fn declare_metric(kind: MetricKind, name: &str, labels: &[String]) -> Result<(), HostError> {
    host()?.declare_metric(kind, name, labels)
}
pub fn define_metric(kind: MetricKind, name: &str) -> Result<u32, HostError> {
    host()?.define_metric(kind, name)
}
pub fn increment_metric(id: u32, offset: i64) -> Result<(), HostError> {
    host()?.increment_metric(id, offset)
}
pub fn record_metric(id: u32, value: u64) -> Result<(), HostError> {
    host()?.record_metric(id, value)
}

// Per-stream calls: the Wasm shell's; the native shell does these itself.

pub fn header_pairs(_map: MapType) -> Result<Vec<(String, String)>, HostError> {
    Err(HostError::Unavailable)
}
pub fn header_map(_map: MapType) -> Result<crate::HeaderMap, HostError> {
    Err(HostError::Unavailable)
}
pub fn header_value(_map: MapType, _name: &str) -> Result<Option<String>, HostError> {
    Err(HostError::Unavailable)
}
pub fn add_header(_map: MapType, _name: &str, _value: &str) -> Result<(), HostError> {
    Err(HostError::Unavailable)
}
pub fn replace_header(_map: MapType, _name: &str, _value: &str) -> Result<(), HostError> {
    Err(HostError::Unavailable)
}
pub fn remove_header(_map: MapType, _name: &str) -> Result<(), HostError> {
    Err(HostError::Unavailable)
}
pub fn property(_path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
    Err(HostError::Unavailable)
}
pub fn buffer(_kind: BufferType, _start: usize, _max: usize) -> Result<Vec<u8>, HostError> {
    Err(HostError::Unavailable)
}
pub fn send_local_response(
    _status: u32,
    _details: &str,
    _body: &[u8],
    _headers: &[(&str, &str)],
) -> Result<(), HostError> {
    Err(HostError::Unavailable)
}
pub fn foreign_function(_name: &str, _arg: &[u8]) -> Result<Option<Vec<u8>>, HostError> {
    Err(HostError::Unavailable)
}
pub fn set_tick_period(_period: std::time::Duration) -> Result<(), HostError> {
    Err(HostError::Unavailable)
}
pub fn set_effective_context(_id: u32) -> Result<(), HostError> {
    Err(HostError::Unavailable)
}
pub fn continue_stream(_response: bool) -> Result<(), HostError> {
    Err(HostError::Unavailable)
}

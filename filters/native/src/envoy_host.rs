//! The SDK's host functions in Envoy's process: installed once, when Envoy loads the
//! module, so that stages get logs, time and shared data with no change to their code.
//!
//! - Logs go to Envoy's `dynamic_modules` logger (`--component-log-level
//!   dynamic_modules:debug` shows debug lines), at Envoy's own level.
//! - Time is the process's clock.
//! - Shared data is one process-wide store with Proxy-Wasm's CAS rules
//!   ([`SharedStore`]): every worker sees it, so the ratelimit buckets built on it are
//!   exact across workers, as they are under Wasm.
//! - Metrics are not mapped yet: they answer `Unavailable` (docs/native-target.md).

use crate::abi;
use std::sync::OnceLock;
use std::time::{Instant, SystemTime};
use wasmesh_sdk::host::{self, HostError, LogLevel, NativeHost, SharedStore};

struct EnvoyHost;

static SHARED: SharedStore = SharedStore::new();

impl NativeHost for EnvoyHost {
    fn log(&self, level: LogLevel, message: &str) -> Result<(), HostError> {
        abi::log(level, message);
        Ok(())
    }

    /// The lowest level Envoy prints (the SDK formats a line only at or above it).
    fn log_level(&self) -> Result<LogLevel, HostError> {
        use LogLevel::*;
        Ok([Trace, Debug, Info, Warn, Error]
            .into_iter()
            .find(|level| abi::log_enabled(*level))
            .unwrap_or(Critical))
    }

    fn now(&self) -> Result<SystemTime, HostError> {
        Ok(SystemTime::now())
    }

    fn monotonic_nanos(&self) -> Result<u64, HostError> {
        static START: OnceLock<Instant> = OnceLock::new();
        let nanos = START.get_or_init(Instant::now).elapsed().as_nanos();
        Ok(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    fn shared_data(&self, key: &str) -> Result<(Option<Vec<u8>>, u32), HostError> {
        SHARED.get(key)
    }

    fn set_shared_data(&self, key: &str, value: &[u8], cas: u32) -> Result<(), HostError> {
        SHARED.set(key, value, cas)
    }
}

/// Makes Envoy the SDK's host (once; later calls change nothing).
pub fn install() {
    static HOST: EnvoyHost = EnvoyHost;
    host::install(&HOST);
}

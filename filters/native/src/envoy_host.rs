//! The SDK's host functions in Envoy's process: installed once, when Envoy loads the
//! module, so that stages get logs, time and shared data with no change to their code.
//!
//! - Logs go to Envoy's `dynamic_modules` logger (`--component-log-level
//!   dynamic_modules:debug` shows debug lines), at Envoy's own level.
//! - Time is the process's clock.
//! - Shared data is one process-wide store with Proxy-Wasm's CAS rules
//!   ([`SharedStore`]): every worker sees it, so the ratelimit buckets built on it are
//!   exact across workers, as they are under Wasm.
//! - Metrics are Envoy's own labelled metrics. Envoy lets a module define them only
//!   while a config loads, so stages declare each family (name, kind, label names) as
//!   they are built, and the build in `config_new` defines it on that config. A series
//!   the SDK defines later by its encoded name (`NAME;label=value;...`) is that family
//!   plus label values, looked up in the config of the stream whose hook is running.

use crate::abi::{self, MetricUpdate};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Instant, SystemTime};
use wasmesh_sdk::host::{self, HostError, LogLevel, MetricKind, NativeHost, SharedStore};

struct EnvoyHost;

static SHARED: SharedStore = SharedStore::new();

/// A family defined on an Envoy config: its kind, Envoy's id and its label names.
struct Family {
    kind: MetricKind,
    id: usize,
    labels: Vec<String>,
}

/// Families by (config scope, name). Written while configs load (main thread), read
/// when a worker first records a series.
static FAMILIES: Mutex<Option<HashMap<(usize, String), Family>>> = Mutex::new(None);

/// One series, as the SDK's metric id names it on this worker.
struct Series {
    kind: MetricKind,
    id: usize,
    values: Vec<String>,
}

thread_local! {
    /// The config scope whose load is running on this thread (0: none).
    static DECLARING: Cell<usize> = const { Cell::new(0) };
    /// The config scope of the stream whose hook is running on this thread (0: none).
    static SCOPE: Cell<usize> = const { Cell::new(0) };
    /// This worker's series; the SDK's metric id is the index. The SDK defines each
    /// series once per stage instance, and instances are per worker.
    static SERIES: RefCell<Vec<Series>> = const { RefCell::new(Vec::new()) };
}

/// Runs `body` with `scope` as the config being loaded, so that the metric families
/// declared meanwhile are defined on it.
pub fn declaring<T>(scope: usize, body: impl FnOnce() -> T) -> T {
    with_cell(&DECLARING, scope, body)
}

/// Runs `body` with `scope` as the config whose stream is being served.
pub fn in_scope<T>(scope: usize, body: impl FnOnce() -> T) -> T {
    with_cell(&SCOPE, scope, body)
}

/// Runs `body` with `cell` set to `value`, and puts the previous value back however
/// `body` ends: a panic (caught at the hook) must not leave a freed handle behind for a
/// later call to use.
pub fn with_cell<V: Copy + 'static, T>(
    cell: &'static std::thread::LocalKey<Cell<V>>,
    value: V,
    body: impl FnOnce() -> T,
) -> T {
    struct Restore<V: Copy + 'static>(&'static std::thread::LocalKey<Cell<V>>, V);
    impl<V: Copy + 'static> Drop for Restore<V> {
        fn drop(&mut self) {
            self.0.set(self.1);
        }
    }
    let _restore = Restore(cell, cell.replace(value));
    body()
}

/// `NAME;label=value;...` → the name, and the labels in order.
fn decode(encoded: &str) -> (&str, Vec<(&str, &str)>) {
    let mut parts = encoded.split(';');
    let name = parts.next().unwrap_or_default();
    let labels = parts
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect();
    (name, labels)
}

fn update(id: u32, update: MetricUpdate, value: u64) -> Result<(), HostError> {
    SERIES.with(|series| {
        let series = series.borrow();
        let s = series.get(id as usize).ok_or(HostError::NotFound)?;
        abi::update_metric(s.kind, update, s.id, &s.values, value)
            .map_err(|code| HostError::Other(code.unsigned_abs()))
    })
}

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

    fn declare_metric(
        &self,
        kind: MetricKind,
        name: &str,
        labels: &[String],
    ) -> Result<(), HostError> {
        let scope = DECLARING.get();
        if scope == 0 {
            // A worker building its own instance: the load defined the family already.
            return Ok(());
        }
        let id = abi::define_metric(scope, kind, name, labels).map_err(|code| {
            eprintln!("wasmesh-native: Envoy refused metric `{name}` (metrics_result {code})");
            HostError::Other(code.unsigned_abs())
        })?;
        let family = Family {
            kind,
            id,
            labels: labels.to_vec(),
        };
        let mut families = FAMILIES.lock().map_err(|_| HostError::Other(0))?;
        families
            .get_or_insert_with(HashMap::new)
            .insert((scope, name.to_string()), family);
        Ok(())
    }

    fn define_metric(&self, kind: MetricKind, encoded: &str) -> Result<u32, HostError> {
        let (name, labels) = decode(encoded);
        let (id, values) = {
            let families = FAMILIES.lock().map_err(|_| HostError::Other(0))?;
            let family = families
                .as_ref()
                .and_then(|f| f.get(&(SCOPE.get(), name.to_string())))
                .ok_or(HostError::NotFound)?;
            let same_labels = family.labels.len() == labels.len()
                && family.labels.iter().zip(&labels).all(|(a, (b, _))| a == b);
            if family.kind != kind || !same_labels {
                return Err(HostError::BadArgument);
            }
            let values: Vec<String> = labels.iter().map(|(_, v)| v.to_string()).collect();
            (family.id, values)
        };
        SERIES.with(|series| {
            let mut series = series.borrow_mut();
            series.push(Series { kind, id, values });
            u32::try_from(series.len() - 1).map_err(|_| HostError::Other(0))
        })
    }

    fn increment_metric(&self, id: u32, offset: i64) -> Result<(), HostError> {
        match offset {
            n if n < 0 => update(id, MetricUpdate::Decrement, n.unsigned_abs()),
            n => update(id, MetricUpdate::Increment, n.unsigned_abs()),
        }
    }

    fn record_metric(&self, id: u32, value: u64) -> Result<(), HostError> {
        update(id, MetricUpdate::Record, value)
    }
}

/// Makes Envoy the SDK's host (once; later calls change nothing).
pub fn install() {
    static HOST: EnvoyHost = EnvoyHost;
    host::install(&HOST);
}

//! State the host functions read and write.
//!
//! `SharedState` is host-global (one per `Host`, behind one mutex): everything Envoy keeps
//! process-wide and all workers of a plugin share — shared data, queues, metrics, the
//! clock, logs, records of outgoing calls. `VmState` lives in each worker's wasmtime
//! `Store`: the contexts of that VM, the buffers of the callback in progress. Host functions
//! get `VmState` from the `Caller` without locking, and take the shared lock briefly.

use crate::types::{
    ForeignCall, GrpcCall, HeaderMap, HttpCall, Incident, Level, LocalResponse, LogEntry,
    MetricKind,
};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use wasmtime::{Memory, TypedFunc};

/// A foreign function a test registers: arguments in, result bytes or a status out.
pub type ForeignFn = dyn Fn(&[u8]) -> Result<Vec<u8>, crate::Status> + Send + Sync;

/// Host configuration fixed at build time.
pub(crate) struct HostConfig {
    pub plugin_config: Vec<u8>,
    pub vm_config: Vec<u8>,
    pub root_id: String,
    pub vm_id: String,
    pub plugin_name: String,
    pub log_level: Level,
    pub foreign: HashMap<String, Arc<ForeignFn>>,
    /// Clusters `http_call` accepts; empty means any name.
    pub clusters: HashSet<String>,
    pub env: Vec<(String, String)>,
    pub args: Vec<String>,
    pub seed: u64,
}

pub(crate) struct Shared {
    state: Mutex<SharedState>,
}

impl Shared {
    pub fn new(state: SharedState) -> Shared {
        Shared {
            state: Mutex::new(state),
        }
    }
    /// The lock is never held across a call into a guest, so poisoning can only come from
    /// a panic in harness code itself; recover the data rather than cascade the panic.
    pub fn lock(&self) -> MutexGuard<'_, SharedState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub(crate) struct Queue {
    pub vm_id: String,
    pub name: String,
    /// (worker, root context) that registered first: Envoy notifies that one.
    pub owner: (usize, u32),
    pub items: VecDeque<Vec<u8>>,
}

pub(crate) struct MetricState {
    pub name: String,
    pub kind: MetricKind,
    pub value: u64,
    pub samples: Vec<u64>,
}

#[derive(Default)]
pub(crate) struct SharedState {
    pub logs: Vec<LogEntry>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub incidents: Vec<Incident>,
    /// Wall clock, nanoseconds since the Unix epoch.
    pub realtime_ns: u64,
    /// Monotonic clock, nanoseconds; ticks and callout timeouts are scheduled on it.
    pub monotonic_ns: u64,
    pub shared_data: HashMap<Vec<u8>, (Vec<u8>, u32)>,
    pub next_cas: u32,
    /// Queue id is index + 1.
    pub queues: Vec<Queue>,
    /// `on_queue_ready` notifications not yet delivered: (worker, root context, queue id).
    pub pending_queue_ready: VecDeque<(usize, u32, u32)>,
    /// Metric id is (index + 1) << 2 | kind, so the kind is recoverable as in Envoy.
    pub metrics: Vec<MetricState>,
    pub http_calls: Vec<HttpCall>,
    pub grpc_calls: Vec<GrpcCall>,
    pub next_token: u32,
    pub properties: HashMap<Vec<u8>, Vec<u8>>,
    pub foreign_calls: Vec<ForeignCall>,
}

impl SharedState {
    pub fn next_cas(&mut self) -> u32 {
        self.next_cas = self.next_cas.wrapping_add(1).max(1);
        self.next_cas
    }
    pub fn next_token(&mut self) -> u32 {
        self.next_token = self.next_token.wrapping_add(1).max(1);
        self.next_token
    }
}

/// Which callback is running: some buffers exist only during one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Idle,
    Configure,
}

/// Per-stream state, mirroring what Envoy's wasm `Context` holds for an HTTP stream.
#[derive(Default, Clone)]
pub(crate) struct StreamState {
    pub request_headers: Option<HeaderMap>,
    pub request_trailers: Option<HeaderMap>,
    pub response_headers: Option<HeaderMap>,
    pub response_trailers: Option<HeaderMap>,
    /// Whether each map is reachable by the filter now. Envoy drops its pointer to a map
    /// once the phase continues, so e.g. request headers cannot be read in the response
    /// phase (the host call returns BadArgument, and the Rust SDK then panics).
    pub live: [bool; 4],
    /// Body currently visible to the filter: the chunk, or all data buffered so far.
    pub bodies: [Vec<u8>; 2],
    pub body_live: [bool; 2],
    /// The previous body callback paused, so Envoy buffered: the next chunk is appended.
    pub buffering: [bool; 2],
    /// Body bytes already passed on (upstream for requests, downstream for responses).
    pub forwarded: [Vec<u8>; 2],
    pub local_response: Option<LocalResponse>,
    pub errors: Vec<String>,
    pub resumed: [u32; 2],
    pub closed: [bool; 2],
    pub route_cache_cleared: u32,
    /// Envoy clears the route cache when the filter edits request headers (or calls
    /// `clear_route_cache`): the route is then chosen again from the final headers.
    pub route_dirty: bool,
    /// The local reply went through the filter's response callbacks, as Envoy encodes it.
    pub local_reply_encoded: bool,
    pub properties: HashMap<Vec<u8>, Vec<u8>>,
    /// Values the filter set with `proxy_set_property`, keyed by the whole path. Envoy keeps
    /// them in filter state under that key, but `get_property` looks up only the path's
    /// first segment there: a value set at a one-segment path reads back, a value set at
    /// `a.b` does not (the conformance suite shows it).
    pub filter_state: HashMap<Vec<u8>, Vec<u8>>,
    pub failure: Option<String>,
    /// In `on_log`: maps are readable (Envoy's access-log view) but not writable.
    pub log_phase: bool,
    pub done_result: Option<bool>,
}

/// Data of one worker VM, stored in its wasmtime `Store`.
pub(crate) struct VmState {
    pub worker: usize,
    pub shared: Arc<Shared>,
    pub config: Arc<HostConfig>,
    pub memory: Option<Memory>,
    pub alloc: Option<TypedFunc<u32, u32>>,
    /// Context of the callback in progress, and the one host calls act on (they differ after
    /// `proxy_set_effective_context`).
    pub active: u32,
    pub effective: u32,
    pub root_context: u32,
    pub phase: Phase,
    pub streams: HashMap<u32, StreamState>,
    pub tick_period_ns: Option<u64>,
    pub next_tick_ns: u64,
    /// Response of the http call being delivered (headers, body, trailers).
    pub call_response: Option<(HeaderMap, Vec<u8>, HeaderMap)>,
    /// The gRPC message being delivered (`BufferType::GrpcReceiveBuffer`).
    pub grpc_receive: Option<Vec<u8>>,
    /// Argument buffer for `proxy_on_foreign_function` (BufferType::CallData).
    pub call_data: Option<Vec<u8>>,
    pub rng: u64,
    /// Calls from the guest into the host (every import, WASI included), counted by
    /// wasmtime's call hook.
    pub host_calls: u64,
    /// Calls from the host into the guest: the ABI's callbacks, and the
    /// `proxy_on_memory_allocate` behind every host call that hands the guest data.
    /// In Envoy (V8) each entry costs several times a plain host call.
    pub guest_entries: u64,
}

impl VmState {
    pub fn stream(&mut self) -> Option<&mut StreamState> {
        self.streams.get_mut(&self.effective)
    }
    pub fn incident(&self, message: String) {
        let entry = Incident {
            worker: self.worker,
            context_id: self.effective,
            message,
        };
        self.shared.lock().incidents.push(entry);
    }
    /// splitmix64: deterministic per seed and worker, so random_get is reproducible.
    pub fn next_random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

impl HostConfig {
    pub fn env_strings(&self) -> Vec<String> {
        self.env.iter().map(|(k, v)| format!("{k}={v}")).collect()
    }
}

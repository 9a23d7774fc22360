//! State shared by every worker's VM: compare-and-swap updates over shared data.
//!
//! Envoy runs one VM per worker, so in-memory state is per worker; a limit that must
//! hold per Envoy lives in shared data and is updated with a CAS retry loop. Plain
//! get/set lets the effective limit drift between x/workers and x*workers.
//!
//! Two host facts shape this module: shared data is never evicted (so an emptied
//! value is how a key is "deleted", and [`read`] treats empty as absent), and a
//! write with CAS 0 is unconditional, so the very first write of a new key can race
//! with another worker's first write. [`compare_and_swap`] closes that race: for a key
//! that was missing when read it writes with [`CREATE_CAS`], which Envoy (and
//! proxy-wasm-cpp-host's `SharedData::set`) accepts only while the key is still
//! missing, so [`update`] is exact from the very first request.

use crate::host::{self, HostError};

/// What an update function decided.
pub enum Update<T> {
    /// Write these bytes (if the value is unchanged since it was read) and return `T`.
    Write(Vec<u8>, T),
    /// Leave the value as it is and return `T`.
    Keep(T),
}

/// Why an update did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedError {
    /// Other workers won the race `attempts` times in a row.
    Contended { attempts: u32 },
    /// The host refused the call.
    Host(HostError),
}

/// Namespaces a key per plugin, so that two filters (or two instances of one filter
/// with different root ids) sharing a VM id never collide.
pub fn key(plugin: &str, name: &str) -> String {
    format!("wasmesh/{plugin}/{name}")
}

/// The current value (None when absent or emptied) and its CAS token.
pub fn read(key: &str) -> Result<(Option<Vec<u8>>, u32), SharedError> {
    let (value, cas) = host::shared_data(key).map_err(SharedError::Host)?;
    Ok((value.filter(|v| !v.is_empty()), cas))
}

/// The CAS token that means "create only if still missing". The host writes a missing
/// key whatever the token, and refuses a non-zero token that differs from an existing
/// key's; tokens come from one host-wide counter that skips 0, so an existing key holds
/// exactly this token only once per 2^32 - 1 writes made in the whole process.
pub const CREATE_CAS: u32 = u32::MAX;

/// Writes `value` if the key is unchanged since [`read`] returned `cas`; `cas` 0 (a
/// missing key) creates it only if it is still missing. `Ok(false)`: another worker
/// wrote first, read again.
pub fn compare_and_swap(key: &str, value: &[u8], cas: u32) -> Result<bool, SharedError> {
    let token = if cas == 0 { CREATE_CAS } else { cas };
    match host::set_shared_data(key, value, token) {
        Ok(()) => Ok(true),
        Err(HostError::CasMismatch) => Ok(false),
        Err(e) => Err(SharedError::Host(e)),
    }
}

/// Reads, lets `f` decide, writes with the token it read; retries on a CAS mismatch
/// up to `max_attempts` times. What to do on [`SharedError::Contended`] is the
/// caller's policy (fail open, fail closed, or fall back to per-worker state).
pub fn update<T>(
    key: &str,
    max_attempts: u32,
    mut f: impl FnMut(Option<&[u8]>) -> Update<T>,
) -> Result<T, SharedError> {
    for _ in 0..max_attempts.max(1) {
        let (value, cas) = read(key)?;
        match f(value.as_deref()) {
            Update::Keep(t) => return Ok(t),
            Update::Write(bytes, t) => {
                if compare_and_swap(key, &bytes, cas)? {
                    return Ok(t);
                }
            }
        }
    }
    Err(SharedError::Contended {
        attempts: max_attempts.max(1),
    })
}

/// Empties a key (the host cannot delete one): later reads see it as absent.
pub fn clear(key: &str) -> Result<(), SharedError> {
    host::set_shared_data(key, &[], 0).map_err(SharedError::Host)
}

//! State shared by every worker's VM: compare-and-swap updates over shared data.
//!
//! Envoy runs one VM per worker, so in-memory state is per worker; a limit that must
//! hold per Envoy lives in shared data and is updated with a CAS retry loop. Plain
//! get/set lets the effective limit drift between x/workers and x*workers.
//!
//! Two host facts shape this module: shared data is never evicted (so an emptied
//! value is how a key is "deleted", and [`read`] treats empty as absent), and a
//! write with CAS 0 is unconditional, so the very first write of a new key can race
//! with another worker's first write. Filters that need exactness from the first
//! request create their keys in `on_configure` (before traffic) or accept that race.

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
            Update::Write(bytes, t) => match host::set_shared_data(key, &bytes, cas) {
                Ok(()) => return Ok(t),
                Err(HostError::CasMismatch) => continue,
                Err(e) => return Err(SharedError::Host(e)),
            },
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

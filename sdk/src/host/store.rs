//! Shared data for native hosts: one process-wide key-value store with Proxy-Wasm's
//! CAS semantics, so that [`crate::shared`] (and the ratelimit buckets built on it)
//! behaves natively exactly as it does in Envoy's Wasm host.
//!
//! A native module is one image in Envoy's process, so a mutex-guarded map is shared by
//! every worker. The rules are proxy-wasm-cpp-host's `SharedData::set`: a missing key is
//! written whatever the token; an existing key only with token 0 (unconditional) or its
//! current token; every write takes the next token from one counter that skips 0.

use super::HostError;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// A process-wide store; keep one in a `static`.
pub struct SharedStore {
    inner: Mutex<Entries>,
}

struct Entries {
    values: BTreeMap<String, (Vec<u8>, u32)>,
    next_cas: u32,
}

impl Default for SharedStore {
    fn default() -> Self {
        Self::new()
    }
}

impl SharedStore {
    pub const fn new() -> Self {
        SharedStore {
            inner: Mutex::new(Entries {
                values: BTreeMap::new(),
                next_cas: 1,
            }),
        }
    }

    /// The value and its token; `(None, 0)` for a missing key.
    pub fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, u32), HostError> {
        let entries = self.inner.lock().map_err(|_| HostError::Other(0))?;
        Ok(match entries.values.get(key) {
            Some((value, cas)) => (Some(value.clone()), *cas),
            None => (None, 0),
        })
    }

    /// Writes `value` under the CAS rules above; a stale token is `CasMismatch`.
    pub fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), HostError> {
        let mut entries = self.inner.lock().map_err(|_| HostError::Other(0))?;
        if let Some((_, current)) = entries.values.get(key) {
            if cas != 0 && cas != *current {
                return Err(HostError::CasMismatch);
            }
        }
        let token = entries.next_cas;
        entries.next_cas = match token.wrapping_add(1) {
            0 => 1,
            next => next,
        };
        entries
            .values
            .insert(key.to_string(), (value.to_vec(), token));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_key_reads_as_none_with_token_zero() {
        assert_eq!(SharedStore::new().get("k"), Ok((None, 0)));
    }

    #[test]
    fn writes_take_fresh_tokens_and_stale_tokens_are_refused() {
        let store = SharedStore::new();
        store.set("k", b"a", 0).unwrap();
        let (value, first) = store.get("k").unwrap();
        assert_eq!(value.as_deref(), Some(&b"a"[..]));
        store.set("k", b"b", first).unwrap();
        let (_, second) = store.get("k").unwrap();
        assert_ne!(first, second);
        assert_eq!(store.set("k", b"c", first), Err(HostError::CasMismatch));
        assert_eq!(store.get("k").unwrap().0.as_deref(), Some(&b"b"[..]));
        // Token 0 is unconditional.
        store.set("k", b"d", 0).unwrap();
        assert_eq!(store.get("k").unwrap().0.as_deref(), Some(&b"d"[..]));
    }

    #[test]
    fn create_only_writes_lose_to_a_key_created_first() {
        // crate::shared::compare_and_swap writes a key it read as missing with
        // CREATE_CAS: the first such write creates it, a racing second is refused.
        let store = SharedStore::new();
        let create = crate::shared::CREATE_CAS;
        store.set("k", b"first", create).unwrap();
        assert_eq!(
            store.set("k", b"second", create),
            Err(HostError::CasMismatch)
        );
    }

    #[test]
    fn concurrent_increments_through_cas_lose_none() {
        static STORE: SharedStore = SharedStore::new();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    for _ in 0..500 {
                        loop {
                            let (value, cas) = STORE.get("n").unwrap();
                            let n = value.map_or(0, |v| u64::from_le_bytes(v.try_into().unwrap()));
                            let token = if cas == 0 {
                                crate::shared::CREATE_CAS
                            } else {
                                cas
                            };
                            if STORE.set("n", &(n + 1).to_le_bytes(), token).is_ok() {
                                break;
                            }
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let n = STORE.get("n").unwrap().0.unwrap();
        assert_eq!(u64::from_le_bytes(n.try_into().unwrap()), 2000);
    }
}

//! A rule's buckets in shared data: a fixed table of slots, so memory stays bounded
//! although Envoy never evicts shared data.
//!
//! A key hashes to a home slot and may live in any of the [`PROBES`] slots from there.
//! A slot holds `tokens (u64 LE) | last_fill_ns (u64 LE) | key bytes`. A slot is free
//! when it was never written, or when its bucket is full by now: a full bucket says
//! nothing a fresh one would not, so giving its slot to another key changes no verdict
//! (this is how idle keys expire). When all of a key's probe slots hold other keys that
//! are still refilling, the table is full for that key and the rule's `on_table_full`
//! policy decides (see the docs).
//!
//! Every change is a compare-and-swap on one slot; a lost race re-reads and decides
//! again, so allowed requests never exceed what one bucket would allow. One residual
//! race is documented: two workers inserting the same new key at the instant a slot in
//! its probe window turns idle can place it twice, for a few tokens at most.

use crate::bucket::{Bucket, Limit, Verdict};
use crate::store::Store;
use wasmesh_sdk::shared::SharedError;

/// How many slots a key may occupy, starting at its home slot.
pub const PROBES: u32 = 8;
/// Retries after lost races before giving up on one request.
pub const MAX_ATTEMPTS: u32 = 64;
/// Longer keys are stored as a hash (the slot stays small; a 64-bit collision merges
/// two keys' buckets, which only ever limits more).
const MAX_STORED_KEY: usize = 128;

/// One rule's table.
#[derive(Debug, Clone)]
pub struct Table {
    /// Shared-data key prefix, e.g. `wasmesh/ratelimit/default/api`.
    pub prefix: String,
    pub slots: u32,
    pub limit: Limit,
}

/// What a take found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    Done(Verdict),
    /// Every probe slot holds another active key.
    TableFull,
}

/// Why a take could not decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TakeError {
    /// Lost [`MAX_ATTEMPTS`] races in a row.
    Contended,
    Host(SharedError),
}

impl Table {
    fn slot_key(&self, index: u32) -> String {
        format!("{}/{index}", self.prefix)
    }

    /// The single slot shared by keys that found the table full.
    pub fn overflow(&self) -> Table {
        Table {
            prefix: format!("{}/overflow", self.prefix),
            slots: 1,
            limit: self.limit,
        }
    }

    /// Takes one token from `key`'s bucket at `now`.
    pub fn take(&self, store: &impl Store, key: &str, now: u64) -> Result<Take, TakeError> {
        let stored = stored_key(key);
        let slots = self.slots.max(1);
        let home = fnv1a(stored.as_bytes()) % u64::from(slots);
        let probes = PROBES.min(slots);
        for _ in 0..MAX_ATTEMPTS {
            match self.attempt(store, &stored, home, probes, now)? {
                Some(take) => return Ok(take),
                None => continue,
            }
        }
        Err(TakeError::Contended)
    }

    /// One pass over the probe window; `None` when a race was lost.
    fn attempt(
        &self,
        store: &impl Store,
        key: &str,
        home: u64,
        probes: u32,
        now: u64,
    ) -> Result<Option<Take>, TakeError> {
        let slots = u64::from(self.slots.max(1));
        let mut free: Option<(String, u32)> = None;
        for i in 0..u64::from(probes) {
            let index = u32::try_from((home + i) % slots).unwrap_or(0);
            let slot_key = self.slot_key(index);
            let (value, cas) = store.get(&slot_key).map_err(TakeError::Host)?;
            let Some(value) = value else {
                // Slots are never emptied, so a key inserted later than this slot was
                // last free would be here or before it: the key is not further on.
                free.get_or_insert((slot_key, cas));
                break;
            };
            match decode(&value) {
                Some((mut bucket, k)) if k == key.as_bytes() => {
                    let verdict = bucket.take(&self.limit, now);
                    if !verdict.allowed {
                        // Nothing consumed: a refill alone need not be written, the next
                        // reader computes the same one.
                        return Ok(Some(Take::Done(verdict)));
                    }
                    let written = store
                        .put(&slot_key, &encode(&bucket, key), cas)
                        .map_err(TakeError::Host)?;
                    return Ok(written.then_some(Take::Done(verdict)));
                }
                Some((bucket, _)) if !bucket.is_idle(&self.limit, now) => {}
                // Idle, or unreadable (a different format): free for reuse.
                _ => {
                    free.get_or_insert((slot_key, cas));
                }
            }
        }
        let Some((slot_key, cas)) = free else {
            return Ok(Some(Take::TableFull));
        };
        let mut bucket = Bucket::full(&self.limit, now);
        let verdict = bucket.take(&self.limit, now);
        let written = store
            .put(&slot_key, &encode(&bucket, key), cas)
            .map_err(TakeError::Host)?;
        Ok(written.then_some(Take::Done(verdict)))
    }
}

fn stored_key(key: &str) -> String {
    if key.len() <= MAX_STORED_KEY {
        key.to_string()
    } else {
        format!("#{:016x}", fnv1a(key.as_bytes()))
    }
}

/// FNV-1a, 64-bit: tiny, stable across workers and builds (std's hasher is neither
/// guaranteed stable nor needed to be DoS-resistant here: a table is bounded anyway).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn encode(bucket: &Bucket, key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + key.len());
    out.extend_from_slice(&bucket.tokens.to_le_bytes());
    out.extend_from_slice(&bucket.last_fill_ns.to_le_bytes());
    out.extend_from_slice(key.as_bytes());
    out
}

fn decode(bytes: &[u8]) -> Option<(Bucket, &[u8])> {
    let tokens = u64::from_le_bytes(bytes.get(0..8)?.try_into().ok()?);
    let last_fill_ns = u64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?);
    Some((
        Bucket {
            tokens,
            last_fill_ns,
        },
        bytes.get(16..)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    const S: u64 = 1_000_000_000;

    fn table(slots: u32, max: u64) -> Table {
        Table {
            prefix: "t".into(),
            slots,
            limit: Limit {
                max_tokens: max,
                tokens_per_fill: 1,
                fill_interval_ns: S,
            },
        }
    }

    fn allowed(t: &Table, store: &MemoryStore, key: &str, now: u64) -> bool {
        match t.take(store, key, now).unwrap() {
            Take::Done(v) => v.allowed,
            Take::TableFull => panic!("table full for {key}"),
        }
    }

    #[test]
    fn keys_have_separate_buckets() {
        let store = MemoryStore::new();
        let t = table(16, 2);
        assert!(allowed(&t, &store, "a", 0));
        assert!(allowed(&t, &store, "a", 0));
        assert!(!allowed(&t, &store, "a", 0));
        assert!(allowed(&t, &store, "b", 0));
    }

    #[test]
    fn lost_races_are_retried_without_double_counting() {
        let store = MemoryStore::new();
        let t = table(16, 3);
        store.lose_next_writes(5);
        assert!(allowed(&t, &store, "a", 0));
        assert!(allowed(&t, &store, "a", 0));
        assert!(allowed(&t, &store, "a", 0));
        assert!(!allowed(&t, &store, "a", 0));
    }

    #[test]
    fn endless_contention_is_an_error() {
        let store = MemoryStore::new();
        store.lose_next_writes(u32::MAX);
        assert_eq!(table(4, 1).take(&store, "a", 0), Err(TakeError::Contended));
    }

    #[test]
    fn a_full_table_says_so_and_idle_slots_are_reused() {
        let store = MemoryStore::new();
        let t = table(2, 1);
        assert!(allowed(&t, &store, "a", 0));
        assert!(allowed(&t, &store, "b", 0));
        assert_eq!(t.take(&store, "c", 0), Ok(Take::TableFull));
        // One interval later both buckets are full again: their slots are free.
        assert!(allowed(&t, &store, "c", S));
        assert_eq!(store.len(), 2);
        // "c" took a slot; the other is still free for "d".
        assert!(allowed(&t, &store, "d", S));
        assert_eq!(t.take(&store, "e", S), Ok(Take::TableFull));
    }

    #[test]
    fn a_key_found_after_an_idle_slot_keeps_its_bucket() {
        let store = MemoryStore::new();
        let t = table(1 << 20, 2);
        // Two keys with the same home slot: the second lives in the next slot.
        let home = |k: &str| fnv1a(k.as_bytes()) % u64::from(t.slots);
        let a = "k0".to_string();
        let b = (1..10_000_000)
            .map(|i| format!("k{i}"))
            .find(|k| home(k) == home(&a))
            .unwrap();
        assert!(allowed(&t, &store, &a, 0)); // a: home slot, 1 left, full again at S
        assert!(allowed(&t, &store, &b, 9 * S / 10)); // b: next slot
        assert!(allowed(&t, &store, &b, 9 * S / 10)); // b: empty until 1.9 S
                                                      // At S, a's slot is idle (free); b must still be found, and still be empty.
        assert!(!allowed(&t, &store, &b, S));
    }

    #[test]
    fn long_keys_are_stored_hashed() {
        let store = MemoryStore::new();
        let t = table(4, 1);
        let long = "x".repeat(10_000);
        assert!(allowed(&t, &store, &long, 0));
        assert!(!allowed(&t, &store, &long, 0));
        let (value, _) = store.get("t/0").unwrap();
        let value = value
            .or_else(|| (1..4).find_map(|i| store.get(&format!("t/{i}")).unwrap().0))
            .unwrap();
        assert!(value.len() <= 16 + MAX_STORED_KEY);
    }

    #[test]
    fn garbage_in_a_slot_is_overwritten() {
        let store = MemoryStore::new();
        let t = table(1, 1);
        store.put("t/0", b"junk", 0).unwrap();
        assert!(allowed(&t, &store, "a", 0));
        assert!(!allowed(&t, &store, "a", 0));
    }
}

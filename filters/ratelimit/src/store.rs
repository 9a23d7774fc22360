//! Where buckets live: the filter's one dependency on host state, behind a trait.
//!
//! In Envoy each worker has its own VM, so buckets live in shared data (one store per
//! Envoy, per VM id) and every change is a compare-and-swap. [`HostStore`] is that;
//! [`MemoryStore`] has the same semantics in a `RefCell`, so the slot table and the
//! stage are unit-tested natively, including lost races.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use wasmesh_sdk::shared::{self, SharedError};

/// A host-wide key-value store with compare-and-swap, and the clock.
pub trait Store {
    /// The value (None when absent) and its CAS token (0 when absent).
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, u32), SharedError>;
    /// Writes if unchanged since `get` returned `cas` (0: only if still absent).
    /// `Ok(false)`: another writer got there first.
    fn put(&self, key: &str, value: &[u8], cas: u32) -> Result<bool, SharedError>;
    /// Wall-clock time in nanoseconds since the Unix epoch.
    fn now_ns(&self) -> u64;
}

/// Envoy's shared data and clock.
#[derive(Debug, Default)]
pub struct HostStore;

impl Store for HostStore {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, u32), SharedError> {
        shared::read(key)
    }

    fn put(&self, key: &str, value: &[u8], cas: u32) -> Result<bool, SharedError> {
        shared::compare_and_swap(key, value, cas)
    }

    fn now_ns(&self) -> u64 {
        let now = wasmesh_sdk::host::now_or_epoch();
        now.duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }
}

/// An in-memory store for native tests, with a settable clock and an optional number
/// of writes to fail as lost races (to exercise the retry loop).
#[derive(Debug, Default)]
pub struct MemoryStore {
    data: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    next_cas: Cell<u32>,
    now: Cell<u64>,
    lose_next_writes: Cell<u32>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn set_now(&self, ns: u64) {
        self.now.set(ns);
    }
    pub fn advance(&self, ns: u64) {
        self.now.set(self.now.get().saturating_add(ns));
    }
    /// The next `n` writes report a lost race without writing.
    pub fn lose_next_writes(&self, n: u32) {
        self.lose_next_writes.set(n);
    }
    pub fn len(&self) -> usize {
        self.data.borrow().len()
    }
    pub fn is_empty(&self) -> bool {
        self.data.borrow().is_empty()
    }
}

impl Store for MemoryStore {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, u32), SharedError> {
        Ok(self
            .data
            .borrow()
            .get(key)
            .map_or((None, 0), |(v, cas)| (Some(v.clone()), *cas)))
    }

    fn put(&self, key: &str, value: &[u8], cas: u32) -> Result<bool, SharedError> {
        if self.lose_next_writes.get() > 0 {
            self.lose_next_writes.set(self.lose_next_writes.get() - 1);
            return Ok(false);
        }
        let mut data = self.data.borrow_mut();
        let current = data.get(key).map(|(_, c)| *c);
        match (current, cas) {
            (Some(_), 0) | (None, 1..) => return Ok(false),
            (Some(c), cas) if c != cas => return Ok(false),
            _ => {}
        }
        let next = self.next_cas.get().wrapping_add(1).max(1);
        self.next_cas.set(next);
        data.insert(key.to_string(), (value.to_vec(), next));
        Ok(true)
    }

    fn now_ns(&self) -> u64 {
        self.now.get()
    }
}

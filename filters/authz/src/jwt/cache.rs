//! Verified tokens, so that a client repeating its token pays one hash lookup instead
//! of a signature verification.
//!
//! Only tokens that passed every check are stored (an attacker cannot fill the cache
//! with garbage), keyed by the token itself (compared in full, so two tokens never
//! share an entry) under foldhash with a per-VM seed, for at most the token's own lifetime: an
//! entry is dropped once `exp` (plus the allowed skew) has passed. When full, the
//! oldest entry goes. Tokens longer than [`MAX_CACHED_TOKEN`] are verified every time,
//! which keeps the cache's memory bounded. Key rotation clears it.
//!
//! Hashing the token with SHA-256 cost about a third of the mesh module's guest time
//! per request; std's SipHash still cost 2% of it. foldhash is several times cheaper
//! again, and a weaker hash is safe here: only tokens that verified are stored, so
//! colliding entries cannot be planted without the issuer's keys.

use serde_json::{Map, Value};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

/// Longer tokens are not cached (a few KiB is already a very large JWT).
pub const MAX_CACHED_TOKEN: usize = 8 * 1024;

type Key = Rc<str>;

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Index of the jwtRule that verified the token.
    pub rule: usize,
    pub claims: Rc<Map<String, Value>>,
    pub principal: String,
    /// Unix seconds after which (plus skew) the token is no longer valid.
    pub exp: i64,
}

#[derive(Debug, Default)]
pub struct TokenCache {
    capacity: usize,
    entries: HashMap<Key, Entry, foldhash::fast::RandomState>,
    /// Insertion order, for eviction; may hold keys already removed.
    order: VecDeque<Key>,
}

impl TokenCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: HashMap::default(),
            order: VecDeque::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry for `token` if it is still valid at `now` (seconds).
    pub fn get(&mut self, token: &str, now: i64, skew: i64) -> Option<Entry> {
        if self.capacity == 0 {
            return None;
        }
        let entry = self.entries.get(token)?;
        if now > entry.exp.saturating_add(skew) {
            self.entries.remove(token);
            return None;
        }
        Some(entry.clone())
    }

    pub fn insert(&mut self, token: &str, entry: Entry) {
        if self.capacity == 0 || token.len() > MAX_CACHED_TOKEN {
            return;
        }
        let k: Key = Rc::from(token);
        while self.entries.len() >= self.capacity {
            match self.order.pop_front() {
                Some(old) => {
                    self.entries.remove(&old);
                }
                None => break,
            }
        }
        if self.entries.insert(k.clone(), entry).is_none() {
            self.order.push_back(k);
        }
        // Keys removed on expiry linger in `order`; compact before it grows past bound.
        if self.order.len() > self.capacity.saturating_mul(2) {
            let entries = &self.entries;
            self.order.retain(|k| entries.contains_key(k));
        }
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(exp: i64) -> Entry {
        Entry {
            rule: 0,
            claims: Rc::new(Map::new()),
            principal: "iss/sub".into(),
            exp,
        }
    }

    #[test]
    fn hit_until_exp_plus_skew_then_gone() {
        let mut c = TokenCache::new(4);
        c.insert("t", entry(100));
        assert!(c.get("t", 100, 0).is_some());
        assert!(c.get("t", 150, 60).is_some());
        assert!(c.get("t", 161, 60).is_none());
        assert!(c.is_empty(), "an expired entry is dropped");
    }

    #[test]
    fn bounded_evicting_the_oldest() {
        let mut c = TokenCache::new(2);
        c.insert("a", entry(100));
        c.insert("b", entry(100));
        c.insert("c", entry(100));
        assert_eq!(c.len(), 2);
        assert!(c.get("a", 0, 0).is_none());
        assert!(c.get("b", 0, 0).is_some() && c.get("c", 0, 0).is_some());
    }

    #[test]
    fn order_stays_bounded_when_entries_expire() {
        let mut c = TokenCache::new(2);
        for i in 0..100 {
            let t = format!("t{i}");
            c.insert(&t, entry(i));
            assert!(c.get(&t, i + 1, 0).is_none());
        }
        assert!(c.order.len() <= 4);
    }

    #[test]
    fn tokens_sharing_a_prefix_never_share_an_entry() {
        let mut c = TokenCache::new(4);
        c.insert("header.payload.sig", entry(100));
        assert!(c.get("header.payload.sig", 0, 0).is_some());
        assert!(c.get("header.payload.si", 0, 0).is_none());
        assert!(c.get("header.payload.sig2", 0, 0).is_none());
    }

    #[test]
    fn oversized_tokens_are_not_cached() {
        let mut c = TokenCache::new(4);
        let big = "x".repeat(MAX_CACHED_TOKEN + 1);
        c.insert(&big, entry(100));
        assert!(c.get(&big, 0, 0).is_none());
        assert!(c.is_empty());
    }

    #[test]
    fn zero_capacity_disables() {
        let mut c = TokenCache::new(0);
        c.insert("a", entry(100));
        assert!(c.get("a", 0, 0).is_none());
    }
}

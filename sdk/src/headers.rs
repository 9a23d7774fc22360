//! A header map fetched once per phase, edited in memory, written back as a diff.
//!
//! A host call that hands the guest data is the expensive kind in Envoy (the host
//! re-enters the VM to allocate; `scripts/bench.sh --host-costs` prices it at a fifth
//! of a Wasm filter's whole fixed cost per request), so a phase fetches all headers in
//! one call, stages read and edit this copy, and the SDK then replays only the
//! recorded edits (plain calls, several times cheaper).

use std::cell::OnceCell;

/// One recorded edit, replayed against the host in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderOp {
    /// Replace every value of the header with this one (adds it if absent).
    Set(String, String),
    /// Append one more value.
    Add(String, String),
    /// Remove every value.
    Remove(String),
}

/// Where a name or value lives in a map's text.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: u32,
    end: u32,
}

/// The headers themselves: every name and value in one string (an edit appends to
/// it), so fetching a map costs two allocations however many headers it has.
#[derive(Debug, Clone, Default)]
struct Entries {
    text: String,
    pairs: Vec<(Span, Span)>,
}

impl Entries {
    fn span(&mut self, s: &str) -> Span {
        // Header maps are far below 4 GiB (Envoy caps them at 96 KiB by default).
        let start = u32::try_from(self.text.len()).unwrap_or(u32::MAX);
        self.text.push_str(s);
        let end = u32::try_from(self.text.len()).unwrap_or(u32::MAX);
        Span { start, end }
    }

    fn push(&mut self, name: &str, value: &str) {
        let pair = (self.span(name), self.span(value));
        self.pairs.push(pair);
    }

    fn text(&self, span: Span) -> &str {
        self.text
            .get(span.start as usize..span.end as usize)
            .unwrap_or("")
    }

    fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs
            .iter()
            .map(|(k, v)| (self.text(*k), self.text(*v)))
    }

    /// Indexes of the pairs named `name`, in order. Names of another length are
    /// skipped without looking at their text (most lookups miss most names).
    fn positions<'s>(&'s self, name: &'s str) -> impl Iterator<Item = usize> + 's {
        self.pairs
            .iter()
            .enumerate()
            .filter_map(move |(i, (k, _))| {
                let same_len = (k.end - k.start) as usize == name.len();
                (same_len && same_name(self.text(*k), name)).then_some(i)
            })
    }

    /// Drops every value of `name` except, with `keep`, the one at that index.
    fn retain_except(&mut self, name: &str, keep: Option<usize>) {
        let text = &self.text;
        let mut i = 0;
        self.pairs.retain(|(k, _)| {
            let name_here = text.get(k.start as usize..k.end as usize).unwrap_or("");
            let kept = Some(i) == keep || !same_name(name_here, name);
            i += 1;
            kept
        });
    }

    fn apply(&mut self, op: &HeaderOp) {
        match op {
            HeaderOp::Set(name, value) => {
                let (first, repeated) = {
                    let mut found = self.positions(name);
                    (found.next(), found.next().is_some())
                };
                match first {
                    Some(first) => {
                        let span = self.span(value);
                        self.pairs[first].1 = span;
                        if repeated {
                            self.retain_except(name, Some(first));
                        }
                    }
                    None => self.push(name, value),
                }
            }
            HeaderOp::Add(name, value) => self.push(name, value),
            HeaderOp::Remove(name) => {
                if self.positions(name).next().is_some() {
                    self.retain_except(name, None);
                }
            }
        }
    }
}

/// Headers in arrival order (repeats kept), with the edits made to them.
///
/// A map can be lazy ([`HeaderMap::lazy`]): it is fetched on the first read, and
/// edits made before that are only recorded (and applied to the copy once it is
/// fetched). A phase whose stages only write headers then costs no fetch at all.
#[derive(Debug, Clone, Default)]
pub struct HeaderMap {
    entries: OnceCell<Entries>,
    fetch: Option<fn() -> HeaderMap>,
    ops: Vec<HeaderOp>,
}

fn same_name(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

impl PartialEq for HeaderMap {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter()) && self.ops == other.ops
    }
}

impl Eq for HeaderMap {}

impl HeaderMap {
    fn fetched(entries: Entries) -> Self {
        Self {
            entries: OnceCell::from(entries),
            fetch: None,
            ops: Vec::new(),
        }
    }

    /// A map as the host delivered it; nothing is recorded as edited.
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Self {
        let mut entries = Entries::default();
        for (k, v) in &pairs {
            entries.push(k, v);
        }
        Self::fetched(entries)
    }

    /// A map from the ABI's serialised form (see [`crate::host::wire_pairs`]).
    pub fn from_wire(bytes: &[u8]) -> Self {
        // Room for a few edits, so the first one does not copy the whole text.
        let mut entries = Entries {
            text: String::with_capacity(bytes.len() + 256),
            pairs: Vec::new(),
        };
        for (k, v) in crate::host::wire_pairs(bytes) {
            entries.push(&crate::host::lossy(k), &crate::host::lossy(v));
        }
        Self::fetched(entries)
    }

    /// A map that calls `fetch` when first read.
    pub fn lazy(fetch: fn() -> HeaderMap) -> Self {
        Self {
            entries: OnceCell::new(),
            fetch: Some(fetch),
            ops: Vec::new(),
        }
    }

    fn entries(&self) -> &Entries {
        self.entries.get_or_init(|| {
            let mut entries = self
                .fetch
                .map(|fetch| fetch().entries.take().unwrap_or_default())
                .unwrap_or_default();
            for op in &self.ops {
                entries.apply(op);
            }
            entries
        })
    }

    /// The first value of `name` (like Envoy's `get_header_map_value`).
    pub fn get(&self, name: &str) -> Option<&str> {
        let entries = self.entries();
        let first = entries.positions(name).next()?;
        Some(entries.text(entries.pairs[first].1))
    }

    /// Every value of `name`, in order.
    pub fn get_all<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s str> + 's {
        let entries = self.entries();
        entries
            .positions(name)
            .map(|i| entries.text(entries.pairs[i].1))
    }

    /// How many values `name` has.
    pub fn count(&self, name: &str) -> usize {
        self.get_all(name).count()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// All pairs, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries().iter()
    }

    pub fn len(&self) -> usize {
        self.entries().pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records `op` and applies it to the copy, if there is one yet.
    fn record(&mut self, op: HeaderOp) {
        if let Some(entries) = self.entries.get_mut() {
            entries.apply(&op);
        }
        self.ops.push(op);
    }

    /// Replaces every value of `name` with `value`, keeping the position of the first.
    pub fn set(&mut self, name: &str, value: &str) {
        self.record(HeaderOp::Set(name.to_ascii_lowercase(), value.to_string()));
    }

    /// Appends a value.
    pub fn add(&mut self, name: &str, value: &str) {
        self.record(HeaderOp::Add(name.to_ascii_lowercase(), value.to_string()));
    }

    /// Removes every value. On a fetched map, records nothing when the header is
    /// absent; on a map not fetched yet, records the removal without fetching.
    pub fn remove(&mut self, name: &str) {
        let absent = self
            .entries
            .get()
            .is_some_and(|e| e.positions(name).next().is_none());
        if !absent {
            self.record(HeaderOp::Remove(name.to_ascii_lowercase()));
        }
    }

    /// The edits since the map was fetched, leaving none recorded.
    pub fn take_ops(&mut self) -> Vec<HeaderOp> {
        // A lazy map not read yet must not later replay edits the host already has.
        self.entries.get_or_init(Entries::default);
        std::mem::take(&mut self.ops)
    }

    pub fn ops(&self) -> &[HeaderOp] {
        &self.ops
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        HeaderMap::from_pairs(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn get_returns_the_first_value_case_insensitively() {
        let m = map(&[("x-a", "1"), ("X-A", "2")]);
        assert_eq!(m.get("X-a"), Some("1"));
        assert_eq!(m.get_all("x-a").collect::<Vec<_>>(), ["1", "2"]);
        assert_eq!(m.count("x-a"), 2);
    }

    #[test]
    fn set_collapses_repeats_and_records_one_op() {
        let mut m = map(&[("a", "0"), ("x-a", "1"), ("b", "2"), ("x-a", "3")]);
        m.set("X-A", "new");
        assert_eq!(
            m.iter().collect::<Vec<_>>(),
            [("a", "0"), ("x-a", "new"), ("b", "2")]
        );
        assert_eq!(m.ops(), [HeaderOp::Set("x-a".into(), "new".into())]);
    }

    #[test]
    fn add_appends_and_remove_of_absent_records_nothing() {
        let mut m = map(&[]);
        m.add("x", "1");
        m.add("x", "2");
        m.remove("absent");
        assert_eq!(m.get_all("x").count(), 2);
        assert_eq!(m.take_ops().len(), 2);
        assert!(m.ops().is_empty());
    }

    fn fetch_for_test() -> HeaderMap {
        map(&[(":status", "200"), ("x-a", "1"), ("x-a", "2")])
    }

    #[test]
    fn lazy_map_records_writes_without_fetching_and_applies_them_on_read() {
        let mut m = HeaderMap::lazy(fetch_for_test);
        m.set("X-A", "new");
        m.remove("absent");
        m.add("x-b", "1");
        assert!(m.entries.get().is_none(), "writes alone do not fetch");
        assert_eq!(
            m.iter().collect::<Vec<_>>(),
            [(":status", "200"), ("x-a", "new"), ("x-b", "1")]
        );
        assert_eq!(m.ops().len(), 3, "a blind remove is recorded");
        m.remove("x-b");
        m.remove("absent");
        assert_eq!(
            m.ops().len(),
            4,
            "once fetched, removing an absent header records nothing"
        );
    }

    #[test]
    fn remove_drops_every_value() {
        let mut m = map(&[("x", "1"), ("y", "2"), ("x", "3")]);
        m.remove("X");
        assert_eq!(m.iter().collect::<Vec<_>>(), [("y", "2")]);
        assert_eq!(m.ops(), [HeaderOp::Remove("x".into())]);
    }
}

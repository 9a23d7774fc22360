//! A header map fetched once per phase, edited in memory, written back as a diff.
//!
//! Each host call that hands data to the guest costs about a microsecond, so a phase
//! fetches all headers in one call, stages read and edit this copy, and the SDK then
//! replays only the recorded edits (usually one or two host calls, often none).

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

/// Headers in arrival order (repeats kept), with the edits made to them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderMap {
    pairs: Vec<(String, String)>,
    ops: Vec<HeaderOp>,
}

fn same_name(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

impl HeaderMap {
    /// A map as the host delivered it; nothing is recorded as edited.
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Self {
        Self {
            pairs,
            ops: Vec::new(),
        }
    }

    /// The first value of `name` (like Envoy's `get_header_map_value`).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| same_name(k, name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in order.
    pub fn get_all<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s str> + 's {
        self.pairs
            .iter()
            .filter(move |(k, _)| same_name(k, name))
            .map(|(_, v)| v.as_str())
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
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Replaces every value of `name` with `value`, keeping the position of the first.
    pub fn set(&mut self, name: &str, value: &str) {
        let name = name.to_ascii_lowercase();
        match self.pairs.iter().position(|(k, _)| same_name(k, &name)) {
            Some(first) => {
                self.pairs[first].1 = value.to_string();
                let mut i = 0;
                self.pairs.retain(|(k, _)| {
                    let keep = i <= first || !same_name(k, &name);
                    i += 1;
                    keep
                });
            }
            None => self.pairs.push((name.clone(), value.to_string())),
        }
        self.ops.push(HeaderOp::Set(name, value.to_string()));
    }

    /// Appends a value.
    pub fn add(&mut self, name: &str, value: &str) {
        let name = name.to_ascii_lowercase();
        self.pairs.push((name.clone(), value.to_string()));
        self.ops.push(HeaderOp::Add(name, value.to_string()));
    }

    /// Removes every value; records nothing when the header is absent.
    pub fn remove(&mut self, name: &str) {
        let before = self.pairs.len();
        self.pairs.retain(|(k, _)| !same_name(k, name));
        if self.pairs.len() != before {
            self.ops.push(HeaderOp::Remove(name.to_ascii_lowercase()));
        }
    }

    /// The edits since the map was fetched, leaving none recorded.
    pub fn take_ops(&mut self) -> Vec<HeaderOp> {
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

    #[test]
    fn remove_drops_every_value() {
        let mut m = map(&[("x", "1"), ("y", "2"), ("x", "3")]);
        m.remove("X");
        assert_eq!(m.iter().collect::<Vec<_>>(), [("y", "2")]);
        assert_eq!(m.ops(), [HeaderOp::Remove("x".into())]);
    }
}

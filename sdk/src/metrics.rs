//! Labelled metrics over the host's flat metric names, and the Envoy `stats_tags`
//! that turn the labels back into Prometheus labels.
//!
//! The ABI has no labels: a metric is a name. So labels are encoded into the name by
//! one scheme, `NAME;label1=value1;label2=value2`, and Envoy's tag extractors, one per
//! label name with the regex `(;LABEL=([^;]*))`, cut each `;label=value` back out of
//! the name into a tag. `/stats/prometheus` then prints `NAME{label1="value1",...}`.
//! Values have `;` replaced by `_` (they could otherwise end a label early); other
//! characters, `:` and `/` included (SPIFFE IDs), reach Prometheus intact.
//!
//! Defining a metric is a host call, so each (name, label values) pair is defined once
//! per VM and its id cached.

use crate::host::{self, MetricKind};
use serde::Serialize;
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

/// Labels of the metrics the SDK itself emits for every filter (the VM's linear
/// memory gauge, `wasmesh_wasm_memory_bytes{filter}`): a bootstrap running any wasmesh
/// filter needs their tag extractors too.
pub const SDK_LABELS: &[&str] = &["filter"];

/// An Envoy bootstrap `stats_config.stats_tags` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatsTag {
    pub tag_name: String,
    pub regex: String,
}

/// Encodes a metric name with its labels, in the documented scheme.
pub fn encode_name(name: &str, labels: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(
        name.len()
            + labels
                .iter()
                .map(|(k, v)| k.len() + v.len() + 2)
                .sum::<usize>(),
    );
    out.push_str(name);
    for (k, v) in labels {
        out.push(';');
        out.push_str(k);
        out.push('=');
        out.extend(v.chars().map(|c| if c == ';' { '_' } else { c }));
    }
    out
}

/// The tag extractor for one label name.
pub fn stats_tag(label: &str) -> StatsTag {
    StatsTag {
        tag_name: label.to_string(),
        regex: format!("(;{}=([^;]*))", regex::escape(label)),
    }
}

/// Tag extractors for a set of label names (sorted, deduplicated, so that generated
/// bootstraps are reproducible).
pub fn stats_tags<'a>(labels: impl IntoIterator<Item = &'a str>) -> Vec<StatsTag> {
    let mut names: Vec<&str> = labels.into_iter().collect();
    names.sort_unstable();
    names.dedup();
    names.into_iter().map(stats_tag).collect()
}

/// Label values → what they were defined as (metric ids), found without building a
/// key: entries are filed by a keyed hash of the values and compared in full, so a
/// request whose label set was seen before allocates nothing. Nearly every request's
/// is, which makes this the hot path of every labelled metric.
pub struct SeriesMap<V> {
    /// foldhash, already linked through proxy-wasm's hash maps: several times faster
    /// than SipHash on a couple of dozen short values, and seeded per VM.
    state: foldhash::fast::RandomState,
    buckets: HashMap<u64, Vec<Series<V>>>,
}

/// One filed label set and its value.
type Series<V> = (Box<[String]>, V);

impl<V> Default for SeriesMap<V> {
    fn default() -> Self {
        Self {
            state: foldhash::fast::RandomState::default(),
            buckets: HashMap::new(),
        }
    }
}

impl<V> SeriesMap<V> {
    fn hash<S: AsRef<str>>(&self, values: &[S]) -> u64 {
        let mut h = self.state.build_hasher();
        for v in values {
            h.write(v.as_ref().as_bytes());
            // A separator, so ("ab", "c") and ("a", "bc") differ.
            h.write_u8(0x1f);
        }
        h.finish()
    }

    pub fn get<S: AsRef<str>>(&self, values: &[S]) -> Option<&V> {
        let same = |stored: &[String]| {
            stored.len() == values.len() && stored.iter().zip(values).all(|(a, b)| a == b.as_ref())
        };
        self.buckets
            .get(&self.hash(values))?
            .iter()
            .find(|(stored, _)| same(stored))
            .map(|(_, v)| v)
    }

    /// Files `v` under `values`; the caller has checked they are not there yet.
    pub fn insert<S: AsRef<str>>(&mut self, values: &[S], v: V) {
        let owned = values.iter().map(|s| s.as_ref().to_string()).collect();
        let hash = self.hash(values);
        self.buckets.entry(hash).or_default().push((owned, v));
    }

    /// How many label sets are filed.
    pub fn len(&self) -> usize {
        self.buckets.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

/// A metric family: a name, a kind and label names; values are given per use.
pub struct Family {
    name: String,
    kind: MetricKind,
    labels: Vec<String>,
    ids: RefCell<SeriesMap<u32>>,
}

impl Family {
    fn new(kind: MetricKind, name: &str, labels: &[&str]) -> Self {
        let labels: Vec<String> = labels.iter().map(|s| s.to_string()).collect();
        // Hosts that define metrics up front learn of the family now (stages build
        // their families when their config is loaded); a refusal shows as unrecorded
        // series, as a refused definition does.
        let _ = host::declare_metric(kind, name, &labels);
        Self {
            name: name.to_string(),
            kind,
            labels,
            ids: RefCell::new(SeriesMap::default()),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn label_names(&self) -> &[String] {
        &self.labels
    }

    /// The full encoded name for these label values (missing values are empty).
    pub fn encoded(&self, values: &[&str]) -> String {
        let pairs: Vec<(&str, &str)> = self
            .labels
            .iter()
            .enumerate()
            .map(|(i, k)| (k.as_str(), values.get(i).copied().unwrap_or("")))
            .collect();
        encode_name(&self.name, &pairs)
    }

    /// The host id for these label values, defined on first use. `None` if the host
    /// refused (the metric is then silently not recorded: telemetry never fails a request).
    pub fn id(&self, values: &[&str]) -> Option<u32> {
        if let Some(id) = self.ids.borrow().get(values) {
            return Some(*id);
        }
        let id = host::define_metric(self.kind, &self.encoded(values)).ok()?;
        self.ids.borrow_mut().insert(values, id);
        Some(id)
    }
}

/// A counter family.
pub struct Counter(Family);
/// A gauge family.
pub struct Gauge(Family);
/// A histogram family (values in the metric's unit; Envoy picks the buckets).
pub struct Histogram(Family);

impl Counter {
    pub fn new(name: &str, labels: &[&str]) -> Self {
        Self(Family::new(MetricKind::Counter, name, labels))
    }
    pub fn inc(&self, values: &[&str]) {
        self.add(values, 1);
    }
    pub fn add(&self, values: &[&str], n: u64) {
        if let Some(id) = self.0.id(values) {
            let _ = host::increment_metric(id, i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
    pub fn family(&self) -> &Family {
        &self.0
    }
}

impl Gauge {
    pub fn new(name: &str, labels: &[&str]) -> Self {
        Self(Family::new(MetricKind::Gauge, name, labels))
    }
    pub fn set(&self, values: &[&str], v: u64) {
        if let Some(id) = self.0.id(values) {
            let _ = host::record_metric(id, v);
        }
    }
    pub fn add(&self, values: &[&str], delta: i64) {
        if let Some(id) = self.0.id(values) {
            let _ = host::increment_metric(id, delta);
        }
    }
    pub fn family(&self) -> &Family {
        &self.0
    }
}

impl Histogram {
    pub fn new(name: &str, labels: &[&str]) -> Self {
        Self(Family::new(MetricKind::Histogram, name, labels))
    }
    pub fn record(&self, values: &[&str], v: u64) {
        if let Some(id) = self.0.id(values) {
            let _ = host::record_metric(id, v);
        }
    }
    pub fn family(&self) -> &Family {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex::Regex;

    #[test]
    fn series_map_finds_label_sets_by_value() {
        let mut m: SeriesMap<u32> = SeriesMap::default();
        assert!(m.get(&["a", "bc"]).is_none());
        m.insert(&["a", "bc"], 1);
        m.insert(&[String::from("ab"), String::from("c")], 2);
        assert_eq!(m.get(&["a", "bc"]), Some(&1));
        assert_eq!(m.get(&[String::from("ab"), String::from("c")]), Some(&2));
        assert!(m.get(&["a", "b", "c"]).is_none());
        assert!(m.get(&["a"]).is_none());
        assert_eq!(m.len(), 2);
    }

    /// Applies tag extraction the way Envoy does: for each regex, remove the first
    /// capture group from the name and take the second as the tag value.
    fn extract(name: &str, tags: &[StatsTag]) -> (String, Vec<(String, String)>) {
        let mut name = name.to_string();
        let mut out = Vec::new();
        for tag in tags {
            let re = Regex::new(&tag.regex).unwrap();
            let (range, value) = match re.captures(&name) {
                Some(c) => (
                    c.get(1).unwrap().range(),
                    c.get(2).unwrap().as_str().to_string(),
                ),
                None => continue,
            };
            name.replace_range(range, "");
            out.push((tag.tag_name.clone(), value));
        }
        (name, out)
    }

    #[test]
    fn encoding_round_trips_through_tag_extraction() {
        let name = encode_name("wasmesh_rl_total", &[("rule", "api.v1"), ("code", "429")]);
        assert_eq!(name, "wasmesh_rl_total;rule=api.v1;code=429");
        let (base, tags) = extract(&name, &stats_tags(["rule", "code"]));
        assert_eq!(base, "wasmesh_rl_total");
        assert_eq!(
            tags,
            [
                ("code".into(), "429".into()),
                ("rule".into(), "api.v1".into())
            ]
        );
    }

    #[test]
    fn a_label_name_inside_another_is_not_confused() {
        let name = encode_name("m", &[("response_code", "200"), ("code", "x")]);
        let (base, tags) = extract(&name, &stats_tags(["code", "response_code"]));
        assert_eq!(base, "m");
        assert!(tags.contains(&("code".into(), "x".into())));
        assert!(tags.contains(&("response_code".into(), "200".into())));
    }

    #[test]
    fn semicolons_in_values_cannot_inject_labels() {
        let name = encode_name("m", &[("rule", "a;code=999")]);
        let (_, tags) = extract(&name, &stats_tags(["rule", "code"]));
        assert_eq!(tags, [("rule".into(), "a_code=999".into())]);
    }

    #[test]
    fn stats_tags_are_sorted_and_unique() {
        let tags = stats_tags(["b", "a", "b"]);
        assert_eq!(
            tags.iter().map(|t| t.tag_name.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(tags[0].regex, "(;a=([^;]*))");
    }

    #[test]
    fn family_fills_missing_values_with_empty() {
        let c = Counter::new("m", &["a", "b"]);
        assert_eq!(c.family().encoded(&["1"]), "m;a=1;b=");
    }
}

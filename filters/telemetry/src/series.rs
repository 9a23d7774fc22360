//! The metrics this filter records: the four standard metrics (shaped by tag
//! overrides) and custom metrics, each series defined once per VM.
//!
//! Cost per request: every metric whose label layout is the same shares one lookup
//! (without overrides, all four standard metrics share one), keyed by a hash of the
//! label values; only a new label set builds encoded names and
//! calls the host to define them. After [`MetricSet::max_series`] distinct label
//! sets, a new set has its peer labels (and configured labels) collapsed to
//! `unknown`/`other`, so a stream of invented peers cannot grow the stats without
//! bound.

use crate::config::Reporter;
use crate::labels::{Facts, Label, LabelValue, StandardMetric, STANDARD_LABELS, UNKNOWN};
use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use wasmesh_sdk::host::{self, MetricKind};
use wasmesh_sdk::metrics::{encode_name, SeriesMap};
use wasmesh_sdk::ConfigError;

/// One validated `metrics.overrides[]` entry.
#[derive(Debug, Clone)]
pub struct Override {
    pub metrics: Vec<StandardMetric>,
    /// False when its `mode` names the other reporter.
    pub applies: bool,
    pub disabled: bool,
    /// Label name → new value (`None`: remove the label).
    pub tags: Vec<(String, Option<LabelValue>)>,
}

/// What a metric records per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    Count,
    DurationMs,
    RequestBytes,
    ResponseBytes,
}

/// A validated `customMetrics[]` entry.
#[derive(Debug, Clone)]
pub struct CustomMetric {
    pub name: String,
    pub kind: MetricKind,
    pub measure: Measure,
    pub labels: Vec<(String, LabelValue)>,
}

/// The numbers one request contributes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Measures {
    pub duration_ms: u64,
    pub request_bytes: u64,
    pub response_bytes: u64,
}

impl Measures {
    fn get(&self, m: Measure) -> u64 {
        match m {
            Measure::Count => 1,
            Measure::DurationMs => self.duration_ms,
            Measure::RequestBytes => self.request_bytes,
            Measure::ResponseBytes => self.response_bytes,
        }
    }
}

/// Where metric definitions and updates go: the host in the filter, a recorder in
/// unit tests.
pub trait Sink {
    fn define(&self, kind: MetricKind, name: &str) -> Option<u32>;
    fn add(&self, id: u32, kind: MetricKind, value: u64);
}

/// The Proxy-Wasm host. Failures are dropped: telemetry never fails a request.
pub struct HostSink;

impl Sink for HostSink {
    fn define(&self, kind: MetricKind, name: &str) -> Option<u32> {
        host::define_metric(kind, name).ok()
    }
    fn add(&self, id: u32, kind: MetricKind, value: u64) {
        let _ = match kind {
            MetricKind::Histogram => host::record_metric(id, value),
            _ => host::increment_metric(id, i64::try_from(value).unwrap_or(i64::MAX)),
        };
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Slot {
    Standard(Label),
    Custom(LabelValue),
}

struct Member {
    name: String,
    kind: MetricKind,
    measure: Measure,
}

/// Metrics that share one label layout, hence one lookup per request.
struct Group {
    names: Vec<String>,
    slots: Vec<Slot>,
    members: Vec<Member>,
    /// Label values → the group's metric ids, one entry per series.
    cache: RefCell<SeriesMap<Ids>>,
}

/// Ids per member (None: the host refused the definition).
type Ids = Vec<Option<u32>>;

pub struct MetricSet {
    reporter: Reporter,
    groups: Vec<Group>,
    max_series: usize,
    series: Cell<usize>,
    label_names: Vec<String>,
}

impl MetricSet {
    pub fn new(
        reporter: Reporter,
        standard_enabled: bool,
        overrides: &[Override],
        custom: Vec<CustomMetric>,
        max_series: usize,
    ) -> Result<Self, ConfigError> {
        let mut groups: Vec<Group> = Vec::new();
        let mut add = |names: Vec<String>, slots: Vec<Slot>, member: Member| match groups
            .iter_mut()
            .find(|g| g.names == names && g.slots == slots)
        {
            Some(g) => g.members.push(member),
            None => groups.push(Group {
                names,
                slots,
                members: vec![member],
                cache: RefCell::new(SeriesMap::default()),
            }),
        };
        if standard_enabled {
            for metric in StandardMetric::ALL {
                let mut names: Vec<String> =
                    STANDARD_LABELS.iter().map(|s| s.to_string()).collect();
                let mut slots: Vec<Slot> = Label::ALL.iter().map(|l| Slot::Standard(*l)).collect();
                let mut disabled = false;
                for o in overrides
                    .iter()
                    .filter(|o| o.applies && o.metrics.contains(&metric))
                {
                    disabled |= o.disabled;
                    for (name, value) in &o.tags {
                        let at = names.iter().position(|n| n == name);
                        match (at, value) {
                            (Some(i), Some(v)) => slots[i] = Slot::Custom(v.clone()),
                            (None, Some(v)) => {
                                names.push(name.clone());
                                slots.push(Slot::Custom(v.clone()));
                            }
                            (Some(i), None) => {
                                names.remove(i);
                                slots.remove(i);
                            }
                            (None, None) => {}
                        }
                    }
                }
                if disabled {
                    continue;
                }
                let (kind, measure) = match metric {
                    StandardMetric::RequestCount => (MetricKind::Counter, Measure::Count),
                    StandardMetric::RequestDuration => (MetricKind::Histogram, Measure::DurationMs),
                    StandardMetric::RequestSize => (MetricKind::Histogram, Measure::RequestBytes),
                    StandardMetric::ResponseSize => (MetricKind::Histogram, Measure::ResponseBytes),
                };
                add(
                    names,
                    slots,
                    Member {
                        name: metric.metric_name().to_string(),
                        kind,
                        measure,
                    },
                );
            }
        }
        for c in custom {
            if c.name.starts_with("istio_") {
                return Err(ConfigError::at(
                    "customMetrics",
                    format!(
                        "`{}`: the istio_ prefix is reserved for the standard metrics",
                        c.name
                    ),
                ));
            }
            let (names, slots) = c
                .labels
                .into_iter()
                .map(|(n, v)| (n, Slot::Custom(v)))
                .unzip();
            add(
                names,
                slots,
                Member {
                    name: c.name,
                    kind: c.kind,
                    measure: c.measure,
                },
            );
        }
        for group in &groups {
            for member in &group.members {
                // Hosts that define metrics up front (the native module) define them
                // now, while the config loads; Proxy-Wasm defines them on first use.
                let _ = host::declare_metric(member.kind, &member.name, &group.names);
            }
        }
        let mut label_names: Vec<String> = groups.iter().flat_map(|g| g.names.clone()).collect();
        label_names.sort_unstable();
        label_names.dedup();
        Ok(Self {
            reporter,
            groups,
            max_series,
            series: Cell::new(0),
            label_names,
        })
    }

    /// Every label name any metric can carry (for the bootstrap's `stats_tags`).
    pub fn label_names(&self) -> &[String] {
        &self.label_names
    }

    pub fn max_series(&self) -> usize {
        self.max_series
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Records one finished request.
    pub fn record(&self, facts: &Facts<'_>, measures: &Measures, sink: &dyn Sink) {
        for group in &self.groups {
            let mut values = self.values(group, facts, false);
            // The hot path: a known label set.
            if let Some(ids) = group.cache.borrow().get(&values) {
                emit(group, ids, measures, sink);
                continue;
            }
            if self.series.get() >= self.max_series {
                values = self.values(group, facts, true);
            }
            let cached = group.cache.borrow().get(&values).cloned();
            let ids = match cached {
                Some(ids) => ids,
                None => {
                    let pairs: Vec<(&str, &str)> = group
                        .names
                        .iter()
                        .map(String::as_str)
                        .zip(values.iter().map(|v| v.as_ref()))
                        .collect();
                    let ids: Ids = group
                        .members
                        .iter()
                        .map(|m| sink.define(m.kind, &encode_name(&m.name, &pairs)))
                        .collect();
                    self.series.set(self.series.get() + 1);
                    group.cache.borrow_mut().insert(&values, ids.clone());
                    ids
                }
            };
            emit(group, &ids, measures, sink);
        }
    }

    fn values<'f>(
        &self,
        group: &'f Group,
        facts: &'f Facts<'_>,
        collapse: bool,
    ) -> Vec<Cow<'f, str>> {
        group
            .slots
            .iter()
            .map(|slot| match slot {
                Slot::Standard(l) if collapse && l.is_peer(self.reporter) => Cow::Borrowed(UNKNOWN),
                Slot::Standard(l) => Cow::Borrowed(facts.label(*l)),
                Slot::Custom(v) if collapse => Cow::Borrowed(v.collapsed()),
                Slot::Custom(v) => v.resolve(facts),
            })
            .collect()
    }
}

fn emit(group: &Group, ids: &[Option<u32>], measures: &Measures, sink: &dyn Sink) {
    for (member, id) in group.members.iter().zip(ids) {
        if let Some(id) = id {
            sink.add(*id, member.kind, measures.get(member.measure));
        }
    }
}

//! The trace store: Zipkin v2 spans grouped by trace id, the newest N traces kept.
//!
//! Spans keep every field they arrived with (unknown ones too), so the read API gives
//! back what Envoy sent. A trace's age is when its first span arrived: Zipkin's
//! reporter flushes each sidecar's spans separately, and a trace still gaining spans
//! must not be dropped before one that ended long ago.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{BTreeSet, HashMap, VecDeque};

/// A trace holds at most this many spans; later ones are dropped (a loop would
/// otherwise fill memory through one trace id).
pub const MAX_SPANS_PER_TRACE: usize = 10_000;

/// One Zipkin v2 span: the fields the store and the page read, the rest as given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Span {
    pub trace_id: String,
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Start, microseconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<u64>,
    /// Microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_endpoint: Option<Endpoint>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub tags: Map<String, Value>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

impl Span {
    pub fn service(&self) -> &str {
        self.local_endpoint
            .as_ref()
            .and_then(|e| e.service_name.as_deref())
            .unwrap_or("unknown")
    }

    pub fn end(&self) -> Option<u64> {
        Some(self.timestamp?.saturating_add(self.duration.unwrap_or(0)))
    }

    /// Zipkin's `error` tag, or a 5xx `http.status_code`.
    pub fn is_error(&self) -> bool {
        self.tags.contains_key("error")
            || self
                .tags
                .get("http.status_code")
                .and_then(Value::as_str)
                .is_some_and(|c| c.starts_with('5'))
    }
}

/// Why a POST was refused.
#[derive(Debug, PartialEq)]
pub enum Malformed {
    Json(String),
    /// The span at this index has a trace id or span id that is not 16 or 32 (trace)
    /// / 16 (span) hex digits.
    Id(usize),
}

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Malformed::Json(e) => write!(f, "not a JSON array of Zipkin v2 spans: {e}"),
            Malformed::Id(i) => write!(
                f,
                "span {i}: traceId must be 16 or 32 hex digits and id 16 hex digits"
            ),
        }
    }
}

fn hex_id(s: &str, lens: &[usize]) -> bool {
    lens.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A POST body's spans, ids lower-cased; the whole body refused if any span is bad,
/// as Zipkin's collector does.
pub fn parse(body: &[u8]) -> Result<Vec<Span>, Malformed> {
    let mut spans: Vec<Span> =
        serde_json::from_slice(body).map_err(|e| Malformed::Json(e.to_string()))?;
    for (i, s) in spans.iter_mut().enumerate() {
        let parent_ok = s.parent_id.as_deref().is_none_or(|p| hex_id(p, &[16]));
        if !hex_id(&s.trace_id, &[16, 32]) || !hex_id(&s.id, &[16]) || !parent_ok {
            return Err(Malformed::Id(i));
        }
        s.trace_id.make_ascii_lowercase();
        s.id.make_ascii_lowercase();
        if let Some(p) = &mut s.parent_id {
            p.make_ascii_lowercase();
        }
    }
    Ok(spans)
}

/// A trace as the list page shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub trace_id: String,
    pub root_service: String,
    pub root_name: String,
    pub spans: usize,
    /// Microseconds from the first start to the last end.
    pub duration: u64,
    pub start: Option<u64>,
    pub error: bool,
}

/// The newest `max_traces` traces, in memory.
pub struct Store {
    max_traces: usize,
    traces: HashMap<String, Vec<Span>>,
    /// Trace ids, oldest first (by first span's arrival).
    order: VecDeque<String>,
}

impl Store {
    pub fn new(max_traces: usize) -> Store {
        Store {
            max_traces: max_traces.max(1),
            traces: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.traces.len()
    }

    pub fn is_empty(&self) -> bool {
        self.traces.is_empty()
    }

    /// Adds spans; a span sent again (same id, kind and service: a retried POST)
    /// replaces the earlier copy. Drops the oldest traces past the bound.
    pub fn add(&mut self, spans: Vec<Span>) {
        for span in spans {
            let trace = match self.traces.get_mut(&span.trace_id) {
                Some(t) => t,
                None => {
                    self.order.push_back(span.trace_id.clone());
                    self.traces.entry(span.trace_id.clone()).or_default()
                }
            };
            let same =
                |s: &Span| s.id == span.id && s.kind == span.kind && s.service() == span.service();
            if let Some(old) = trace.iter_mut().find(|s| same(s)) {
                *old = span;
            } else if trace.len() < MAX_SPANS_PER_TRACE {
                trace.push(span);
            }
        }
        while self.order.len() > self.max_traces {
            if let Some(id) = self.order.pop_front() {
                self.traces.remove(&id);
            }
        }
    }

    /// A trace's spans by start time, or `None`. A 64-bit id finds a 128-bit trace
    /// whose low half it is, as Zipkin's lookup does.
    pub fn trace(&self, id: &str) -> Option<Vec<Span>> {
        let id = id.to_ascii_lowercase();
        let spans = self.traces.get(&id).or_else(|| {
            self.traces
                .iter()
                .find(|(k, _)| k.len() == 32 && k.ends_with(&id) && id.len() == 16)
                .map(|(_, v)| v)
        })?;
        let mut spans = spans.clone();
        spans.sort_by_key(|s| (s.timestamp.unwrap_or(u64::MAX), s.id.clone()));
        Some(spans)
    }

    /// Every service that reported a span, sorted.
    pub fn services(&self) -> Vec<String> {
        let names: BTreeSet<String> = self
            .traces
            .values()
            .flatten()
            .map(|s| s.service().to_string())
            .collect();
        names.into_iter().collect()
    }

    /// Up to `limit` traces, newest first, with a span from `service` when given.
    pub fn traces(&self, service: Option<&str>, limit: usize) -> Vec<Vec<Span>> {
        self.order
            .iter()
            .rev()
            .filter(|id| {
                service.is_none_or(|svc| {
                    self.traces[id.as_str()]
                        .iter()
                        .any(|s| s.service().eq_ignore_ascii_case(svc))
                })
            })
            .take(limit)
            .filter_map(|id| self.trace(id))
            .collect()
    }
}

/// What the list page shows of `spans` (one trace, non-empty).
pub fn summarise(spans: &[Span]) -> Option<Summary> {
    let first = spans.first()?;
    let ids: BTreeSet<&str> = spans.iter().map(|s| s.id.as_str()).collect();
    // The root: no parent here (the parent may not have been sampled or sent), earliest.
    let root = spans
        .iter()
        .filter(|s| s.parent_id.as_deref().is_none_or(|p| !ids.contains(p)))
        .min_by_key(|s| s.timestamp.unwrap_or(u64::MAX))
        .unwrap_or(first);
    let start = spans.iter().filter_map(|s| s.timestamp).min();
    let end = spans.iter().filter_map(Span::end).max();
    Some(Summary {
        trace_id: first.trace_id.clone(),
        root_service: root.service().to_string(),
        root_name: root.name.clone().unwrap_or_default(),
        spans: spans.len(),
        duration: match (start, end) {
            (Some(s), Some(e)) => e.saturating_sub(s),
            _ => 0,
        },
        start,
        error: spans.iter().any(Span::is_error),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn span(trace: &str, id: &str, parent: Option<&str>, svc: &str, ts: u64) -> Value {
        let mut s = json!({
            "traceId": trace, "id": id, "name": format!("op-{svc}"), "kind": "SERVER",
            "timestamp": ts, "duration": 100,
            "localEndpoint": {"serviceName": svc, "ipv4": "127.0.0.1"},
            "tags": {"http.status_code": "200"}, "shared": true
        });
        if let Some(p) = parent {
            s["parentId"] = json!(p);
        }
        s
    }

    fn body(spans: &[Value]) -> Vec<u8> {
        serde_json::to_vec(spans).unwrap()
    }

    const T1: &str = "00000000000000aa";
    const T2: &str = "00000000000000bb";
    const S1: &str = "0000000000000001";
    const S2: &str = "0000000000000002";

    #[test]
    fn spans_of_one_trace_group_and_keep_unknown_fields() {
        let mut st = Store::new(10);
        st.add(parse(&body(&[span(T1, S2, Some(S1), "b", 20)])).unwrap());
        st.add(
            parse(&body(&[
                span(T1, S1, None, "a", 10),
                span(T2, S1, None, "c", 5),
            ]))
            .unwrap(),
        );
        assert_eq!(st.len(), 2);
        let t = st.trace(T1).unwrap();
        assert_eq!(
            t.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
            [S1, S2]
        );
        let back = serde_json::to_value(&t[0]).unwrap();
        assert_eq!(back["shared"], json!(true));
        assert_eq!(back["localEndpoint"]["ipv4"], json!("127.0.0.1"));
        assert_eq!(st.services(), ["a", "b", "c"]);
        let sum = summarise(&t).unwrap();
        assert_eq!(
            (
                sum.root_service.as_str(),
                sum.root_name.as_str(),
                sum.spans,
                sum.duration,
                sum.error
            ),
            ("a", "op-a", 2, 110, false)
        );
    }

    #[test]
    fn newest_first_filtered_by_service_and_limited() {
        let mut st = Store::new(10);
        for (i, svc) in ["a", "b", "a"].iter().enumerate() {
            let trace = format!("{:016x}", i + 1);
            st.add(parse(&body(&[span(&trace, S1, None, svc, 1)])).unwrap());
        }
        let ids = |ts: Vec<Vec<Span>>| ts.iter().map(|t| t[0].trace_id.clone()).collect::<Vec<_>>();
        assert_eq!(
            ids(st.traces(None, 10)),
            [
                format!("{:016x}", 3),
                format!("{:016x}", 2),
                format!("{:016x}", 1)
            ]
        );
        assert_eq!(
            ids(st.traces(Some("A"), 10)),
            [format!("{:016x}", 3), format!("{:016x}", 1)]
        );
        assert_eq!(ids(st.traces(None, 1)), [format!("{:016x}", 3)]);
    }

    #[test]
    fn the_oldest_trace_goes_first_and_late_spans_do_not_age_it() {
        let mut st = Store::new(2);
        st.add(parse(&body(&[span(T1, S1, None, "a", 1)])).unwrap());
        st.add(parse(&body(&[span(T2, S1, None, "a", 1)])).unwrap());
        // A late span of T1 keeps T1's place: it is still the oldest.
        st.add(parse(&body(&[span(T1, S2, Some(S1), "b", 2)])).unwrap());
        st.add(parse(&body(&[span("00000000000000cc", S1, None, "a", 1)])).unwrap());
        assert_eq!(st.len(), 2);
        assert!(st.trace(T1).is_none());
        assert!(st.trace(T2).is_some());
    }

    #[test]
    fn a_resent_span_replaces_its_copy_and_a_trace_is_bounded() {
        let mut st = Store::new(2);
        let s = span(T1, S1, None, "a", 1);
        st.add(parse(&body(&[s.clone(), s])).unwrap());
        assert_eq!(st.trace(T1).unwrap().len(), 1);
        let many: Vec<Value> = (0..MAX_SPANS_PER_TRACE + 5)
            .map(|i| span(T2, &format!("{i:016x}"), None, "a", 1))
            .collect();
        st.add(parse(&body(&many)).unwrap());
        assert_eq!(st.trace(T2).unwrap().len(), MAX_SPANS_PER_TRACE);
    }

    #[test]
    fn malformed_bodies_are_refused_whole() {
        assert!(matches!(parse(b"{"), Err(Malformed::Json(_))));
        assert!(matches!(
            parse(b"{\"traceId\":\"aa\"}"),
            Err(Malformed::Json(_))
        ));
        assert!(matches!(
            parse(b"[{\"id\":\"0000000000000001\"}]"),
            Err(Malformed::Json(_))
        ));
        assert!(matches!(parse(&[0xff, 0xfe]), Err(Malformed::Json(_))));
        let bad = [span(T1, S1, None, "a", 1), span("xyz", S1, None, "a", 1)];
        assert_eq!(parse(&body(&bad)), Err(Malformed::Id(1)));
        assert_eq!(
            parse(&body(&[span(T1, "01", None, "a", 1)])),
            Err(Malformed::Id(0))
        );
        assert_eq!(
            parse(&body(&[span(T1, S1, Some("zz"), "a", 1)])),
            Err(Malformed::Id(0))
        );
        assert_eq!(parse(b"[]"), Ok(vec![]));
    }

    #[test]
    fn ids_are_case_insensitive_and_a_64_bit_id_finds_its_128_bit_trace() {
        let mut st = Store::new(5);
        let long = "0123456789abcdef00000000000000AA";
        st.add(parse(&body(&[span(long, S1, None, "a", 1)])).unwrap());
        assert!(st.trace(&long.to_ascii_lowercase()).is_some());
        assert!(st.trace("00000000000000AA").is_some());
    }

    #[test]
    fn errors_come_from_the_error_tag_or_a_5xx() {
        let mut s = parse(&body(&[span(T1, S1, None, "a", 1)])).unwrap();
        assert!(!s[0].is_error());
        s[0].tags.insert("http.status_code".into(), json!("503"));
        assert!(s[0].is_error());
        s[0].tags.insert("http.status_code".into(), json!("200"));
        s[0].tags.insert("error".into(), json!("true"));
        assert!(summarise(&s).unwrap().error);
    }
}

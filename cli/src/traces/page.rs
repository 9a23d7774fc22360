//! The trace store's pages: the recent traces as a table, and one trace as a span
//! waterfall drawn on the server as SVG (no script, nothing fetched from elsewhere).

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;

use super::store::{summarise, Span, Summary};
use crate::graph::escape;

const ROW_H: u32 = 24;
const LABEL_W: u32 = 360;
const BAR_W: u32 = 640;
/// Bar colours: a span that succeeded, one that failed.
pub const BAR_OK: &str = "#3367d6";
pub const BAR_ERROR: &str = "#d32f2f";

/// `part` of `total` microseconds as pixels of `BAR_W` (in u128: timestamps come from
/// the network and may be anything).
fn px(part: u64, total: u64) -> u32 {
    let part = u128::from(part.min(total));
    (part * u128::from(BAR_W) / u128::from(total.max(1))) as u32
}

fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

fn head(title: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{}</title><style>body{{font-family:sans-serif;margin:20px}}table{{border-collapse:collapse}}td,th{{padding:4px 10px;border-bottom:1px solid #ddd;text-align:left}}.err{{color:{BAR_ERROR};font-weight:bold}}</style></head><body>",
        escape(title)
    )
}

/// The recent traces, newest first, each a link to its waterfall.
pub fn list(traces: &[Vec<Span>], stored: usize) -> String {
    let mut out = head("wasmesh traces");
    let _ = write!(
        out,
        "<h1>Traces</h1><p>{stored} traces in memory; the newest {} shown. Zipkin v2 API under <code>/api/v2</code>.</p><table><tr><th>trace</th><th>root service</th><th>operation</th><th>spans</th><th>duration</th><th>error</th></tr>",
        traces.len()
    );
    for s in traces.iter().filter_map(|t| summarise(t)) {
        let Summary {
            trace_id,
            root_service,
            root_name,
            spans,
            duration,
            error,
            ..
        } = s;
        let _ = write!(
            out,
            "<tr><td><a href=\"/trace/{id}\"><code>{id}</code></a></td><td>{}</td><td>{}</td><td>{spans}</td><td>{}</td><td>{}</td></tr>",
            escape(&root_service),
            escape(&root_name),
            ms(duration),
            if error { "<span class=\"err\">error</span>" } else { "" },
            id = escape(&trace_id),
        );
    }
    out.push_str("</table></body></html>");
    out
}

/// The spans in waterfall order with their depth: each after its parent, siblings by
/// start. A span sharing its id with another (Envoy's client and server halves of one
/// hop) sits under the half that started first; a child sits under the last half of its
/// parent id (the server's, where the call that made it was handled).
pub fn ordered(spans: &[Span]) -> Vec<(usize, &Span)> {
    let mut sorted: Vec<&Span> = spans.iter().collect();
    sorted.sort_by_key(|s| (s.timestamp.unwrap_or(u64::MAX), s.id.clone()));
    // The parent of each span, as an index into `sorted`.
    let mut first_of_id: BTreeMap<&str, usize> = BTreeMap::new();
    let mut last_of_id: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, s) in sorted.iter().enumerate() {
        first_of_id.entry(s.id.as_str()).or_insert(i);
        last_of_id.insert(s.id.as_str(), i);
    }
    let parent = |i: usize, s: &Span| -> Option<usize> {
        match first_of_id.get(s.id.as_str()) {
            Some(&f) if f != i => Some(f),
            _ => s
                .parent_id
                .as_deref()
                .and_then(|p| last_of_id.get(p).copied())
                .filter(|&p| p != i),
        }
    };
    let mut children: BTreeMap<Option<usize>, Vec<usize>> = BTreeMap::new();
    for (i, s) in sorted.iter().enumerate() {
        children.entry(parent(i, s)).or_default().push(i);
    }
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut stack: Vec<(usize, usize)> = children
        .get(&None)
        .into_iter()
        .flatten()
        .rev()
        .map(|&i| (0, i))
        .collect();
    while let Some((depth, i)) = stack.pop() {
        if !seen.insert(i) {
            continue;
        }
        out.push((depth, sorted[i]));
        for &c in children.get(&Some(i)).into_iter().flatten().rev() {
            stack.push((depth + 1, c));
        }
    }
    // A parent cycle leaves spans unreached: list them at the top level.
    for (i, s) in sorted.iter().enumerate() {
        if !seen.contains(&i) {
            out.push((0, s));
        }
    }
    out
}

/// One trace as a waterfall: a row per span (service, operation, kind, duration) and
/// its bar placed on the trace's time line.
pub fn waterfall(spans: &[Span]) -> String {
    let Some(sum) = summarise(spans) else {
        return head("no trace") + "<p>no spans</p></body></html>";
    };
    let start = sum.start.unwrap_or(0);
    let total = sum.duration.max(1);
    let rows = ordered(spans);
    let mut out = head(&format!("trace {}", sum.trace_id));
    let _ = write!(
        out,
        "<p><a href=\"/\">all traces</a></p><h1>Trace <code>{}</code></h1><p>{} · {} · {} spans · {}{}</p>",
        escape(&sum.trace_id),
        escape(&sum.root_service),
        escape(&sum.root_name),
        sum.spans,
        ms(sum.duration),
        if sum.error { " · <span class=\"err\">error</span>" } else { "" }
    );
    let height = ROW_H * (rows.len() as u32 + 1);
    let width = LABEL_W + BAR_W + 80;
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">"
    );
    for (tick, label) in [(0u64, 0u64), (total / 2, total / 2), (total, total)] {
        let x = LABEL_W + px(tick, total);
        let _ = write!(
            out,
            "<line x1=\"{x}\" y1=\"{ROW_H}\" x2=\"{x}\" y2=\"{height}\" stroke=\"#ccc\"/><text x=\"{x}\" y=\"16\" text-anchor=\"middle\">{}</text>",
            ms(label)
        );
    }
    for (row, (depth, s)) in rows.iter().enumerate() {
        let y = ROW_H * (row as u32 + 1);
        let offset = s.timestamp.unwrap_or(start).saturating_sub(start);
        // At most the bar area's width, less where the span starts.
        let x = (LABEL_W + px(offset, total)).min(LABEL_W + BAR_W - 2);
        let w = px(s.duration.unwrap_or(0), total).clamp(2, LABEL_W + BAR_W - x);
        let colour = if s.is_error() { BAR_ERROR } else { BAR_OK };
        let label = format!(
            "{} {} {}",
            s.service(),
            s.name.as_deref().unwrap_or(""),
            s.kind.as_deref().map(str::to_lowercase).unwrap_or_default()
        );
        let tags: String = s
            .tags
            .iter()
            .map(|(k, v)| format!("\n{k}={}", v.as_str().map_or(v.to_string(), str::to_string)))
            .collect();
        let _ = write!(
            out,
            "<g><title>{}{}</title><text x=\"{}\" y=\"{}\">{}</text><rect x=\"{x}\" y=\"{}\" width=\"{w}\" height=\"{}\" fill=\"{colour}\"/><text x=\"{}\" y=\"{}\">{}</text></g>",
            escape(&label),
            escape(&tags),
            4 + 14 * *depth as u32,
            y + 16,
            escape(&label),
            y + 4,
            ROW_H - 8,
            (x + w + 4).min(width - 60),
            y + 16,
            ms(s.duration.unwrap_or(0)),
        );
    }
    out.push_str("</svg></body></html>");
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn span(id: &str, parent: Option<&str>, kind: &str, svc: &str, ts: u64, code: &str) -> Span {
        let mut v = json!({
            "traceId": "00000000000000aa", "id": id, "kind": kind, "name": "op",
            "timestamp": ts, "duration": 50, "localEndpoint": {"serviceName": svc},
            "tags": {"http.status_code": code}
        });
        if let Some(p) = parent {
            v["parentId"] = json!(p);
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn client_and_server_halves_nest_under_their_callers() {
        // Envoy's shape: the gateway's span, the caller's client half and the callee's
        // server half of one hop sharing an id.
        let spans = vec![
            span(
                "0000000000000003",
                Some("0000000000000002"),
                "SERVER",
                "reviews",
                30,
                "200",
            ),
            span("0000000000000001", None, "SERVER", "gateway", 10, "200"),
            span(
                "0000000000000002",
                Some("0000000000000001"),
                "CLIENT",
                "productpage",
                20,
                "200",
            ),
            span(
                "0000000000000002",
                Some("0000000000000001"),
                "SERVER",
                "productpage",
                21,
                "200",
            ),
        ];
        let got: Vec<(usize, &str, &str)> = ordered(&spans)
            .iter()
            .map(|(d, s)| (*d, s.service(), s.kind.as_deref().unwrap()))
            .collect();
        assert_eq!(
            got,
            [
                (0, "gateway", "SERVER"),
                (1, "productpage", "CLIENT"),
                (2, "productpage", "SERVER"),
                (3, "reviews", "SERVER"),
            ]
        );
    }

    #[test]
    fn any_timestamps_draw_without_overflow() {
        let mut end = span("0000000000000001", None, "SERVER", "a", u64::MAX - 1, "200");
        end.duration = Some(u64::MAX);
        let spans = vec![
            span("0000000000000002", None, "SERVER", "b", 0, "200"),
            end,
            // Zero duration at the very end of the trace.
            span("0000000000000003", None, "SERVER", "c", u64::MAX, "200"),
        ];
        let html = waterfall(&spans);
        assert!(html.contains(">c op server<"));
        let one = vec![span("0000000000000004", None, "SERVER", "d", 7, "200")];
        assert!(waterfall(&one).contains(">d op server<"));
    }

    #[test]
    fn a_parent_cycle_still_lists_every_span() {
        let spans = vec![
            span(
                "0000000000000001",
                Some("0000000000000002"),
                "SERVER",
                "a",
                1,
                "200",
            ),
            span(
                "0000000000000002",
                Some("0000000000000001"),
                "SERVER",
                "b",
                2,
                "200",
            ),
        ];
        assert_eq!(ordered(&spans).len(), 2);
    }

    #[test]
    fn the_waterfall_names_each_service_colours_errors_and_escapes() {
        let spans = vec![
            span("0000000000000001", None, "SERVER", "<gw>", 10, "200"),
            span(
                "0000000000000002",
                Some("0000000000000001"),
                "CLIENT",
                "ratings",
                20,
                "503",
            ),
        ];
        let html = waterfall(&spans);
        assert!(html.contains("&lt;gw&gt;") && !html.contains("<gw>"));
        assert!(html.contains("ratings op client"));
        assert!(html.contains(BAR_ERROR) && html.contains(BAR_OK));
        assert!(!html.contains("<script") && !html.contains("src="));
        let list = list(&[spans], 1);
        assert!(list.contains("href=\"/trace/00000000000000aa\""));
        assert!(list.contains("class=\"err\""));
    }
}

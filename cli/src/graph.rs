//! `wasmesh graph`: the mesh's traffic as a picture, like Kiali's graph: services as
//! nodes, calls between them as edges with requests/s, error rate, p99 latency and
//! whether the hop is mTLS, from the mesh's Prometheus.
//!
//! The page is drawn on the server as inline SVG with no script and nothing fetched
//! from elsewhere, so it shows in a browser with no network and is tested as a
//! picture. `/graph.json` serves the same graph, layout included.

use anyhow::{anyhow, Context, Result};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::Duration;

use crate::localhttp;

/// Node fill: one colour for every service, so a picture test finds each node by it.
pub const NODE_FILL: &str = "#3367d6";
/// Edge colours by error rate, as Kiali's: healthy, degraded (>= 0.1%), failing (>= 5%).
pub const EDGE_OK: &str = "#2e9e44";
pub const EDGE_DEGRADED: &str = "#f0a30a";
pub const EDGE_FAILING: &str = "#d32f2f";

const NODE_W: u32 = 180;
const NODE_H: u32 = 60;
const COL_GAP: u32 = 290;
const ROW_GAP: u32 = 70;
const MARGIN: u32 = 30;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Graph {
    /// The rate window of the Prometheus queries (`1m`).
    pub window: String,
    pub width: u32,
    pub height: u32,
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Node {
    pub name: String,
    /// Where it is drawn: the top-left corner and size of its box, in pixels.
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Edge {
    pub from: String,
    pub to: String,
    /// Requests per second over the window, as the caller's sidecar reported them.
    pub rps: f64,
    /// The share of those answered 5xx (0 to 1).
    pub error_rate: f64,
    pub p99_ms: Option<f64>,
    /// Whether the callee's sidecar saw the calls arrive over mutual TLS; `None` when
    /// it reported none of them (the callee has no sidecar, or no call arrived).
    pub mtls: Option<bool>,
    pub colour: String,
}

/// The PromQL of the graph's three questions, over `window`: requests by response
/// code, p99 latency, and the callee's view of the connection's security. Rates and
/// latency from the caller (`reporter="source"`: they include calls that failed before
/// reaching the callee, such as injected aborts); mTLS only the callee can tell.
pub fn queries(window: &str) -> [String; 3] {
    let by = "source_canonical_service,destination_service_name";
    [
        format!("sum by ({by},response_code) (rate(istio_requests_total{{reporter=\"source\"}}[{window}]))"),
        format!("histogram_quantile(0.99, sum by ({by},le) (rate(istio_request_duration_milliseconds_bucket{{reporter=\"source\"}}[{window}])))"),
        format!("sum by ({by},connection_security_policy) (istio_requests_total{{reporter=\"destination\"}})"),
    ]
}

fn results(answer: &Value) -> impl Iterator<Item = (&Value, f64)> {
    answer["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let v: f64 = r["value"][1].as_str()?.parse().ok()?;
            Some((&r["metric"], v))
        })
}

fn key(metric: &Value) -> Option<(String, String)> {
    let from = metric["source_canonical_service"].as_str()?;
    let to = metric["destination_service_name"].as_str()?;
    Some((from.to_string(), to.to_string()))
}

/// The graph of three Prometheus answers to [`queries`], laid out.
pub fn build(window: &str, requests: &Value, p99: &Value, security: &Value) -> Graph {
    #[derive(Default)]
    struct Acc {
        rps: f64,
        errors: f64,
        p99: Option<f64>,
        mtls: Option<bool>,
    }
    let mut edges: BTreeMap<(String, String), Acc> = BTreeMap::new();
    for (m, v) in results(requests) {
        let Some(k) = key(m) else { continue };
        let acc = edges.entry(k).or_default();
        acc.rps += v;
        if m["response_code"]
            .as_str()
            .is_some_and(|c| c.starts_with('5'))
        {
            acc.errors += v;
        }
    }
    for (m, v) in results(p99) {
        if let Some(acc) = key(m).and_then(|k| edges.get_mut(&k)) {
            acc.p99 = v.is_finite().then_some(v);
        }
    }
    for (m, v) in results(security) {
        if let Some(acc) = key(m).and_then(|k| edges.get_mut(&k)) {
            if v > 0.0 {
                // Any plaintext call makes the hop not (only) mTLS.
                let this = m["connection_security_policy"].as_str() == Some("mutual_tls");
                acc.mtls = Some(acc.mtls.unwrap_or(true) && this);
            }
        }
    }
    let edges: Vec<Edge> = edges
        .into_iter()
        .map(|((from, to), a)| {
            let error_rate = if a.rps > 0.0 { a.errors / a.rps } else { 0.0 };
            Edge {
                from,
                to,
                rps: a.rps,
                error_rate,
                p99_ms: a.p99,
                mtls: a.mtls,
                colour: edge_colour(error_rate).into(),
            }
        })
        .collect();
    let (nodes, width, height) = layout(&edges);
    Graph {
        window: window.into(),
        width,
        height,
        nodes,
        edges,
    }
}

fn edge_colour(error_rate: f64) -> &'static str {
    if error_rate >= 0.05 {
        EDGE_FAILING
    } else if error_rate >= 0.001 {
        EDGE_DEGRADED
    } else {
        EDGE_OK
    }
}

/// Columns by call depth (callers left of callees), rows in name order; a node in a
/// cycle stays at the depth where it was first reached.
fn layout(edges: &[Edge]) -> (Vec<Node>, u32, u32) {
    let names: BTreeSet<&str> = edges
        .iter()
        .flat_map(|e| [e.from.as_str(), e.to.as_str()])
        .collect();
    let mut depth: BTreeMap<&str, u32> = names
        .iter()
        .filter(|n| !edges.iter().any(|e| e.to == **n && e.from != e.to))
        .map(|n| (*n, 0))
        .collect();
    // Longest path from a root, bounded by the node count so a cycle ends.
    for _ in 0..names.len() {
        for e in edges.iter().filter(|e| e.from != e.to) {
            if let Some(&d) = depth.get(e.from.as_str()) {
                let next = d + 1;
                let to = depth.entry(e.to.as_str()).or_insert(next);
                if *to < next && next < names.len() as u32 {
                    *to = next;
                }
            }
        }
    }
    for n in &names {
        depth.entry(n).or_insert(0);
    }
    let mut rows: BTreeMap<u32, u32> = BTreeMap::new();
    let mut nodes = Vec::new();
    for n in &names {
        let col = depth[n];
        let row = rows.entry(col).or_insert(0);
        nodes.push(Node {
            name: (*n).to_string(),
            x: MARGIN + col * (NODE_W + COL_GAP),
            y: MARGIN + *row * (NODE_H + ROW_GAP),
            w: NODE_W,
            h: NODE_H,
        });
        *row += 1;
    }
    let cols = rows.keys().max().map_or(1, |c| c + 1);
    let max_rows = rows.values().max().copied().unwrap_or(1);
    let width = 2 * MARGIN + cols * NODE_W + (cols - 1) * COL_GAP;
    let height = 2 * MARGIN + max_rows * NODE_H + max_rows.saturating_sub(1) * ROW_GAP;
    (nodes, width.max(400), height.max(150))
}

pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `12.3 rps · 0.0% 5xx · p99 4.2ms · mTLS`: what an edge's label says.
pub fn edge_label(e: &Edge) -> String {
    let p99 = e
        .p99_ms
        .map_or("p99 -".into(), |ms| format!("p99 {ms:.1}ms"));
    let tls = match e.mtls {
        Some(true) => "mTLS",
        Some(false) => "plaintext",
        None => "tls ?",
    };
    format!(
        "{:.2} rps · {:.1}% 5xx · {p99} · {tls}",
        e.rps,
        100.0 * e.error_rate
    )
}

/// The graph as an SVG document fragment. Lines and boxes are drawn with crisp edges
/// so their colours are exact pixels in a screenshot.
pub fn svg(g: &Graph) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg id="graph" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" style="display:block;background:#fff" font-family="sans-serif">"##,
        w = g.width,
        h = g.height
    );
    let node = |name: &str| g.nodes.iter().find(|n| n.name == name);
    // Edges first, so the boxes cover the lines' ends; the column gap leaves room for
    // a label between two boxes.
    for e in &g.edges {
        let (Some(a), Some(b)) = (node(&e.from), node(&e.to)) else {
            continue;
        };
        let (x1, y1) = (a.x + a.w, a.y + a.h / 2);
        let (x2, y2) = (b.x, b.y + b.h / 2);
        let dash = if e.mtls == Some(false) {
            r#" stroke-dasharray="10 6""#
        } else {
            ""
        };
        let _ = write!(
            s,
            r##"<g class="edge" data-from="{f}" data-to="{t}"><line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="{c}" stroke-width="6" shape-rendering="crispEdges"{dash}/><circle cx="{x2}" cy="{y2}" r="7" fill="{c}"/><text x="{lx}" y="{ly}" font-size="11" text-anchor="middle" fill="#222">{label}</text></g>"##,
            f = escape(&e.from),
            t = escape(&e.to),
            c = e.colour,
            lx = (x1 + x2) / 2,
            ly = (y1 + y2) / 2 - 8,
            label = escape(&edge_label(e)),
        );
    }
    for n in &g.nodes {
        let _ = write!(
            s,
            r##"<g class="node" data-name="{name}"><rect x="{x}" y="{y}" width="{w}" height="{h}" fill="{NODE_FILL}" shape-rendering="crispEdges"/><text x="{tx}" y="{ty}" font-size="14" text-anchor="middle" fill="#fff">{name}</text></g>"##,
            name = escape(&n.name),
            x = n.x,
            y = n.y,
            w = n.w,
            h = n.h,
            tx = n.x + n.w / 2,
            ty = n.y + n.h / 2 + 5,
        );
    }
    s.push_str("</svg>");
    s
}

/// The whole page: the picture, then the edges as a table.
pub fn page(g: &Graph, mesh: &str) -> String {
    let mut rows = String::new();
    for e in &g.edges {
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&e.from),
            escape(&e.to),
            escape(&edge_label(e))
        );
    }
    format!(
        r##"<!doctype html><html><head><meta charset="utf-8"><meta http-equiv="refresh" content="10"><title>wasmesh graph: {mesh}</title><style>body{{margin:0;font-family:sans-serif;background:#fff}}table{{margin:12px 30px;border-collapse:collapse}}td,th{{padding:2px 10px;border-bottom:1px solid #ddd;font-size:13px}}p{{margin:8px 30px;font-size:13px;color:#444}}</style></head><body>{svg}<p>mesh {mesh}: requests over the last {window} as the callers' sidecars reported them (<code>istio_requests_total</code>, <code>istio_request_duration_milliseconds</code>); edge colour: green healthy, amber &ge;0.1% 5xx, red &ge;5% 5xx; a dashed edge is plaintext. <a href="graph.json">graph.json</a></p><table><tr><th>from</th><th>to</th><th>traffic</th></tr>{rows}</table></body></html>"##,
        mesh = escape(mesh),
        svg = svg(g),
        window = escape(&g.window),
    )
}

/// Percent-encodes a PromQL query for a URL's query string.
fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Prometheus' answer to an instant query, now or at Unix time `at`.
pub fn query(prometheus: &str, promql: &str) -> Result<Value> {
    query_at(prometheus, promql, None)
}

/// [`query`] evaluated at Unix time `at` (`None`: now).
pub fn query_at(prometheus: &str, promql: &str, at: Option<f64>) -> Result<Value> {
    let mut url = format!(
        "{}/api/v1/query?query={}",
        prometheus.trim_end_matches('/'),
        url_encode(promql)
    );
    if let Some(at) = at {
        let _ = write!(url, "&time={at:.3}");
    }
    let r = localhttp::get(&url, Duration::from_secs(10))?;
    let v: Value = serde_json::from_slice(&r.body)
        .with_context(|| format!("{url}: HTTP {}: not JSON", r.status))?;
    if v["status"] != "success" {
        return Err(anyhow!("{promql}: {}", v["error"]));
    }
    Ok(v)
}

/// The graph from the Prometheus at `prometheus`, now or as it was at Unix time `at`
/// (`?at=` on the page and `/graph.json`: the same `at` gives the same graph, so a
/// picture and the data can be compared).
pub fn fetch(prometheus: &str, window: &str, at: Option<f64>) -> Result<Graph> {
    let [q1, q2, q3] = queries(window);
    Ok(build(
        window,
        &query_at(prometheus, &q1, at)?,
        &query_at(prometheus, &q2, at)?,
        &query_at(prometheus, &q3, at)?,
    ))
}

/// The path and the `at` parameter of a request target (`/graph.json?at=1765000000.5`).
fn target(t: &str) -> (&str, Option<f64>) {
    let (path, query) = t.split_once('?').unwrap_or((t, ""));
    let at = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("at="))
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| v.is_finite());
    (path, at)
}

/// Serves `/` (the page) and `/graph.json` on `listener`, one connection at a time,
/// each answer from Prometheus' data at the time of asking. Runs until killed.
pub fn serve(listener: TcpListener, prometheus: &str, window: &str, mesh: &str) -> Result<()> {
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
        let mut reader = BufReader::new(&conn);
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).is_err() {
            continue;
        }
        // The rest of the head: read up to the blank line so the client sees an answer
        // to a request it has finished sending.
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
            line.clear();
        }
        let (path, at) = target(request_line.split(' ').nth(1).unwrap_or("/"));
        let (status, ctype, body) = match (path, fetch(prometheus, window, at)) {
            ("/graph.json", Ok(g)) => (
                "200 OK",
                "application/json",
                serde_json::to_string_pretty(&g)?,
            ),
            ("/" | "/index.html", Ok(g)) => ("200 OK", "text/html; charset=utf-8", page(&g, mesh)),
            ("/" | "/index.html" | "/graph.json", Err(e)) => (
                "502 Bad Gateway",
                "text/plain",
                format!("asking Prometheus at {prometheus}: {e:#}\n"),
            ),
            _ => ("404 Not Found", "text/plain", "not found\n".into()),
        };
        let _ = write!(
            conn,
            "HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn answer(rows: &[(&[(&str, &str)], &str)]) -> Value {
        let result: Vec<Value> = rows
            .iter()
            .map(|(labels, v)| {
                let metric: serde_json::Map<String, Value> = labels
                    .iter()
                    .map(|(k, v)| ((*k).to_string(), json!(v)))
                    .collect();
                json!({"metric": metric, "value": [1765000000.0, v]})
            })
            .collect();
        json!({"status": "success", "data": {"resultType": "vector", "result": result}})
    }

    const GW: (&str, &str) = ("source_canonical_service", "ingressgateway");
    const PP_SRC: (&str, &str) = ("source_canonical_service", "productpage");
    const REV_SRC: (&str, &str) = ("source_canonical_service", "reviews");
    const TO_PP: (&str, &str) = ("destination_service_name", "productpage");
    const TO_REV: (&str, &str) = ("destination_service_name", "reviews");
    const TO_RAT: (&str, &str) = ("destination_service_name", "ratings");

    /// Bookinfo's shape as Prometheus answers it: ratings calls partly aborted (503
    /// from the caller's own sidecar), productpage reached from the gateway over mTLS.
    fn bookinfo() -> Graph {
        let requests = answer(&[
            (&[GW, TO_PP, ("response_code", "200")], "2"),
            (&[PP_SRC, TO_REV, ("response_code", "200")], "2"),
            (&[REV_SRC, TO_RAT, ("response_code", "200")], "0.9"),
            (&[REV_SRC, TO_RAT, ("response_code", "503")], "0.1"),
        ]);
        let p99 = answer(&[
            (&[GW, TO_PP], "12.5"),
            (&[PP_SRC, TO_REV], "NaN"),
            (&[REV_SRC, TO_RAT], "3"),
        ]);
        let security = answer(&[
            (
                &[GW, TO_PP, ("connection_security_policy", "mutual_tls")],
                "40",
            ),
            (
                &[PP_SRC, TO_REV, ("connection_security_policy", "mutual_tls")],
                "40",
            ),
            (
                &[PP_SRC, TO_REV, ("connection_security_policy", "none")],
                "1",
            ),
        ]);
        build("1m", &requests, &p99, &security)
    }

    fn edge<'g>(g: &'g Graph, from: &str, to: &str) -> &'g Edge {
        g.edges
            .iter()
            .find(|e| e.from == from && e.to == to)
            .unwrap()
    }

    #[test]
    fn edges_carry_rate_errors_latency_and_mtls() {
        let g = bookinfo();
        assert_eq!(g.edges.len(), 3);
        let gw = edge(&g, "ingressgateway", "productpage");
        assert_eq!(
            (gw.rps, gw.error_rate, gw.p99_ms, gw.mtls),
            (2.0, 0.0, Some(12.5), Some(true))
        );
        assert_eq!(gw.colour, EDGE_OK);
        let ratings = edge(&g, "reviews", "ratings");
        assert!((ratings.error_rate - 0.1).abs() < 1e-9);
        assert_eq!(ratings.colour, EDGE_FAILING);
        assert_eq!(ratings.mtls, None, "no destination-side report");
        let reviews = edge(&g, "productpage", "reviews");
        assert_eq!(reviews.p99_ms, None, "NaN: no latency in the window");
        assert_eq!(reviews.mtls, Some(false), "one plaintext call");
        assert_eq!(
            edge_label(ratings),
            "1.00 rps · 10.0% 5xx · p99 3.0ms · tls ?"
        );
    }

    #[test]
    fn callers_are_left_of_callees_and_nodes_do_not_overlap() {
        let g = bookinfo();
        let x = |n: &str| g.nodes.iter().find(|m| m.name == n).unwrap().x;
        assert!(x("ingressgateway") < x("productpage"));
        assert!(x("productpage") < x("reviews"));
        assert!(x("reviews") < x("ratings"));
        for n in &g.nodes {
            assert!(n.x + n.w <= g.width && n.y + n.h <= g.height, "{n:?}");
        }
    }

    #[test]
    fn a_cycle_still_lays_out() {
        let requests = answer(&[
            (
                &[
                    ("source_canonical_service", "a"),
                    ("destination_service_name", "b"),
                ],
                "1",
            ),
            (
                &[
                    ("source_canonical_service", "b"),
                    ("destination_service_name", "a"),
                ],
                "1",
            ),
        ]);
        let g = build("1m", &requests, &answer(&[]), &answer(&[]));
        assert_eq!(g.nodes.len(), 2);
    }

    #[test]
    fn the_page_is_self_contained_and_escapes_names() {
        let requests = answer(&[(
            &[
                ("source_canonical_service", "<x>"),
                ("destination_service_name", "b&c"),
            ],
            "1",
        )]);
        let g = build("1m", &requests, &answer(&[]), &answer(&[]));
        let html = page(&g, "m");
        assert!(html.contains("&lt;x&gt;") && html.contains("b&amp;c"));
        assert!(!html.contains("<x>"));
        assert!(
            !html.contains("src=") && !html.contains("<script"),
            "nothing fetched"
        );
    }

    #[test]
    fn requests_may_name_a_time() {
        assert_eq!(target("/graph.json?at=17.5"), ("/graph.json", Some(17.5)));
        assert_eq!(target("/?x=1&at=nope"), ("/", None));
        assert_eq!(target("/"), ("/", None));
    }

    #[test]
    fn queries_encode_for_a_url() {
        assert_eq!(
            url_encode("sum by (a) (x{r=\"s\"})"),
            "sum%20by%20%28a%29%20%28x%7Br%3D%22s%22%7D%29"
        );
    }
}

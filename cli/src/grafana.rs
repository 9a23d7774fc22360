//! Grafana dashboards of the mesh, like Istio's Mesh and Service dashboards, on the
//! metrics our telemetry filter emits (`istio_requests_total`,
//! `istio_request_duration_milliseconds`), with provisioning files that point Grafana
//! at the mesh's Prometheus and at the dashboards.
//!
//! Queries use a literal `[1m]` window rather than Grafana's `$__rate_interval`, so
//! every panel's PromQL runs unchanged against Prometheus itself (the test does).

use serde_json::{json, Value};

/// The directory under the output directory that holds all of it.
pub const DIR: &str = "grafana";
/// The datasource's uid, which every panel names.
pub const DATASOURCE_UID: &str = "wasmesh-prometheus";

/// One panel: its title, PromQL (with `$service` for the selected service) and legend.
#[derive(Debug, Clone)]
pub struct PanelSpec {
    pub title: &'static str,
    pub kind: &'static str,
    pub unit: &'static str,
    pub queries: Vec<(String, &'static str)>,
}

fn panel(
    title: &'static str,
    kind: &'static str,
    unit: &'static str,
    queries: &[(&str, &'static str)],
) -> PanelSpec {
    PanelSpec {
        title,
        kind,
        unit,
        queries: queries
            .iter()
            .map(|(q, l)| ((*q).to_string(), *l))
            .collect(),
    }
}

const SRC: &str = "reporter=\"source\"";

fn quantile(q: &str, selector: &str, by: &str) -> String {
    format!("histogram_quantile({q}, sum by ({by}le) (rate(istio_request_duration_milliseconds_bucket{{{selector}}}[1m])))")
}

/// The Mesh dashboard: the whole mesh, then one row per service.
pub fn mesh_panels() -> Vec<PanelSpec> {
    let volume = format!("round(sum(rate(istio_requests_total{{{SRC}}}[1m])), 0.001)");
    let success = format!("sum(rate(istio_requests_total{{{SRC},response_code!~\"5..\"}}[1m])) / sum(rate(istio_requests_total{{{SRC}}}[1m]))");
    let c4 =
        format!("sum(rate(istio_requests_total{{{SRC},response_code=~\"4..\"}}[1m])) or vector(0)");
    let c5 =
        format!("sum(rate(istio_requests_total{{{SRC},response_code=~\"5..\"}}[1m])) or vector(0)");
    let by_svc =
        format!("sum by (destination_service_name) (rate(istio_requests_total{{{SRC}}}[1m]))");
    let svc_success = format!("sum by (destination_service_name) (rate(istio_requests_total{{{SRC},response_code!~\"5..\"}}[1m])) / sum by (destination_service_name) (rate(istio_requests_total{{{SRC}}}[1m]))");
    let dest = "reporter=\"destination\"";
    vec![
        panel("Global Request Volume", "stat", "reqps", &[(&volume, "")]),
        panel(
            "Global Success Rate (non-5xx)",
            "stat",
            "percentunit",
            &[(&success, "")],
        ),
        panel("4xxs", "stat", "reqps", &[(&c4, "")]),
        panel("5xxs", "stat", "reqps", &[(&c5, "")]),
        panel(
            "Request Volume by Service",
            "timeseries",
            "reqps",
            &[(&by_svc, "{{destination_service_name}}")],
        ),
        panel(
            "Success Rate by Service",
            "timeseries",
            "percentunit",
            &[(&svc_success, "{{destination_service_name}}")],
        ),
        panel(
            "Latency by Service",
            "timeseries",
            "ms",
            &[
                (
                    &quantile("0.50", dest, "destination_service_name,"),
                    "{{destination_service_name}} p50",
                ),
                (
                    &quantile("0.90", dest, "destination_service_name,"),
                    "{{destination_service_name}} p90",
                ),
                (
                    &quantile("0.99", dest, "destination_service_name,"),
                    "{{destination_service_name}} p99",
                ),
            ],
        ),
    ]
}

/// The Service dashboard: the service chosen in `$service`, its callers and workloads.
pub fn service_panels() -> Vec<PanelSpec> {
    let sel = "reporter=\"destination\",destination_service_name=\"$service\"";
    let volume = format!("round(sum(rate(istio_requests_total{{{sel}}}[1m])), 0.001)");
    let success = format!("sum(rate(istio_requests_total{{{sel},response_code!~\"5..\"}}[1m])) / sum(rate(istio_requests_total{{{sel}}}[1m]))");
    let by_source = format!("sum by (source_workload) (rate(istio_requests_total{{{sel}}}[1m]))");
    let by_workload =
        format!("sum by (destination_workload) (rate(istio_requests_total{{{sel}}}[1m]))");
    let by_code = format!("sum by (response_code) (rate(istio_requests_total{{{sel}}}[1m]))");
    vec![
        panel("Service Request Volume", "stat", "reqps", &[(&volume, "")]),
        panel(
            "Service Success Rate (non-5xx)",
            "stat",
            "percentunit",
            &[(&success, "")],
        ),
        panel(
            "Service Request Duration",
            "timeseries",
            "ms",
            &[
                (&quantile("0.50", sel, ""), "p50"),
                (&quantile("0.90", sel, ""), "p90"),
                (&quantile("0.99", sel, ""), "p99"),
            ],
        ),
        panel(
            "Requests by Response Code",
            "timeseries",
            "reqps",
            &[(&by_code, "{{response_code}}")],
        ),
        panel(
            "Incoming Requests by Source Workload",
            "timeseries",
            "reqps",
            &[(&by_source, "{{source_workload}}")],
        ),
        panel(
            "Requests by Workload",
            "timeseries",
            "reqps",
            &[(&by_workload, "{{destination_workload}}")],
        ),
        panel(
            "Request Duration p99 by Workload",
            "timeseries",
            "ms",
            &[(
                &quantile("0.99", sel, "destination_workload,"),
                "{{destination_workload}}",
            )],
        ),
    ]
}

fn dashboard(uid: &str, title: &str, panels: &[PanelSpec], templating: Value) -> Value {
    let panels: Vec<Value> = panels
        .iter()
        .enumerate()
        .map(|(i, p)| {
            // Stats four to a row, graphs two to a row below them.
            let (w, h) = if p.kind == "stat" { (6, 4) } else { (12, 8) };
            let per_row = 24 / w;
            let stats_before = panels[..i].iter().filter(|q| q.kind == "stat").count();
            let graphs_before = i - stats_before;
            let stat_rows = panels
                .iter()
                .filter(|q| q.kind == "stat")
                .count()
                .div_ceil(4);
            let (x, y) = if p.kind == "stat" {
                ((stats_before % per_row) * w, (stats_before / per_row) * h)
            } else {
                (
                    (graphs_before % per_row) * w,
                    stat_rows * 4 + (graphs_before / per_row) * h,
                )
            };
            let targets: Vec<Value> = p
                .queries
                .iter()
                .enumerate()
                .map(|(j, (expr, legend))| {
                    json!({
                        "refId": ((b'A' + j as u8) as char).to_string(),
                        "expr": expr,
                        "legendFormat": legend,
                        "datasource": {"type": "prometheus", "uid": DATASOURCE_UID},
                    })
                })
                .collect();
            json!({
                "id": i + 1,
                "type": p.kind,
                "title": p.title,
                "gridPos": {"x": x, "y": y, "w": w, "h": h},
                "datasource": {"type": "prometheus", "uid": DATASOURCE_UID},
                "fieldConfig": {"defaults": {"unit": p.unit}, "overrides": []},
                "targets": targets,
            })
        })
        .collect();
    json!({
        "uid": uid,
        "title": title,
        "tags": ["wasmesh", "istio"],
        "schemaVersion": 39,
        "editable": true,
        "refresh": "10s",
        "time": {"from": "now-15m", "to": "now"},
        "templating": templating,
        "panels": panels,
    })
}

/// The Mesh and Service dashboards.
pub fn dashboards() -> Vec<(&'static str, Value)> {
    let service_var = json!({"list": [{
        "name": "service",
        "label": "Service",
        "type": "query",
        "datasource": {"type": "prometheus", "uid": DATASOURCE_UID},
        "query": "label_values(istio_requests_total{reporter=\"destination\"}, destination_service_name)",
        "refresh": 2,
        "sort": 1,
    }]});
    vec![
        (
            "wasmesh-mesh.json",
            dashboard(
                "wasmesh-mesh",
                "wasmesh Mesh",
                &mesh_panels(),
                json!({"list": []}),
            ),
        ),
        (
            "wasmesh-service.json",
            dashboard(
                "wasmesh-service",
                "wasmesh Service",
                &service_panels(),
                service_var,
            ),
        ),
    ]
}

/// Grafana's provisioning: the datasource (the mesh's Prometheus, at the URL in
/// `WASMESH_PROMETHEUS_URL`, which `wasmesh up` sets when it starts Grafana) and a
/// provider for the dashboards (at `WASMESH_GRAFANA_DASHBOARDS`).
pub fn provisioning() -> (Value, Value) {
    let datasource = json!({
        "apiVersion": 1,
        "datasources": [{
            "name": "wasmesh Prometheus",
            "uid": DATASOURCE_UID,
            "type": "prometheus",
            "access": "proxy",
            "url": "${WASMESH_PROMETHEUS_URL}",
            "isDefault": true,
        }],
    });
    let provider = json!({
        "apiVersion": 1,
        "providers": [{
            "name": "wasmesh",
            "folder": "wasmesh",
            "type": "file",
            "options": {"path": "${WASMESH_GRAFANA_DASHBOARDS}"},
        }],
    });
    (datasource, provider)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_panel_queries_our_metrics_and_names_the_datasource() {
        for (_, d) in dashboards() {
            let panels = d["panels"].as_array().unwrap();
            assert!(panels.len() >= 7);
            for p in panels {
                assert_eq!(p["datasource"]["uid"], DATASOURCE_UID);
                for t in p["targets"].as_array().unwrap() {
                    let e = t["expr"].as_str().unwrap();
                    assert!(e.contains("istio_request"), "{e}");
                    assert_eq!(e.matches('(').count(), e.matches(')').count(), "{e}");
                }
            }
        }
    }

    #[test]
    fn panels_do_not_overlap() {
        for (name, d) in dashboards() {
            let boxes: Vec<[u64; 4]> = d["panels"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| ["x", "y", "w", "h"].map(|k| p["gridPos"][k].as_u64().unwrap()))
                .collect();
            for (i, a) in boxes.iter().enumerate() {
                assert!(a[0] + a[2] <= 24, "{name}: {a:?}");
                for b in &boxes[i + 1..] {
                    let apart = a[0] + a[2] <= b[0]
                        || b[0] + b[2] <= a[0]
                        || a[1] + a[3] <= b[1]
                        || b[1] + b[3] <= a[1];
                    assert!(apart, "{name}: {a:?} and {b:?} overlap");
                }
            }
        }
    }
}

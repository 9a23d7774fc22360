//! `wasmesh status`: requests per second, error rate and p50/p99 latency per service
//! and instance, like `linkerd viz stat`.
//!
//! Read from each sidecar's own Prometheus endpoint on its admin port, sampled twice
//! `interval` apart: rates and latencies are of that window, not of all time. Inbound
//! traffic as each sidecar sees it, and the gateway's as clients see it.
//!
//! Requests and 5xx are Envoy's own counters of the connection managers
//! (`downstream_rq_completed`, `downstream_rq_5xx`): the admin endpoint reads counters
//! when asked, so a request counts as soon as Envoy has answered it, and every request
//! counts, whether or not a telemetry filter recorded it (one that failed open, or
//! whose config drops `istio_requests_total`, counts less than was sent). Latency is
//! Istio's `istio_request_duration_milliseconds` (`reporter="destination"` on
//! sidecars, as Istio's dashboards show a service; `source` on the gateway) where the
//! telemetry filter runs, else Envoy's `downstream_rq_time`: histograms reach the
//! endpoint only at a stats flush ([`FLUSH_INTERVAL`]), so P50/P99 trail the sample by
//! up to that.

use anyhow::{anyhow, Result};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::{Duration, Instant};

use crate::localhttp;
use crate::state::{Running, State};
use crate::stats::FLUSH_INTERVAL;

const FETCH_TIMEOUT: Duration = Duration::from_secs(3);

/// One scrape of one Envoy, reduced to what the table needs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    pub requests: f64,
    /// 5xx answers (Istio's and Linkerd's definition of failure; 4xx are the client's).
    pub errors: f64,
    /// Cumulative histogram buckets in milliseconds: upper bound -> count.
    pub buckets: Vec<(f64, f64)>,
}

impl Sample {
    fn minus(&self, earlier: &Sample) -> Sample {
        Sample {
            requests: (self.requests - earlier.requests).max(0.0),
            errors: (self.errors - earlier.errors).max(0.0),
            buckets: self
                .buckets
                .iter()
                .map(|(le, n)| {
                    let before = earlier
                        .buckets
                        .iter()
                        .find(|(l, _)| l == le)
                        .map_or(0.0, |(_, b)| *b);
                    (*le, (n - before).max(0.0))
                })
                .collect(),
        }
    }

    fn add(&mut self, other: &Sample) {
        self.requests += other.requests;
        self.errors += other.errors;
        for (le, n) in &other.buckets {
            match self.buckets.iter_mut().find(|(l, _)| l == le) {
                Some((_, m)) => *m += n,
                None => self.buckets.push((*le, *n)),
            }
        }
        self.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    }

    /// Prometheus' `histogram_quantile`: linear within the bucket that crosses `q`.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.buckets.last()?.1;
        if total <= 0.0 {
            return None;
        }
        let rank = q * total;
        let mut prev = (0.0, 0.0);
        for &(le, n) in &self.buckets {
            if n >= rank {
                if le.is_infinite() {
                    return Some(prev.0);
                }
                let width = n - prev.1;
                let frac = if width > 0.0 {
                    (rank - prev.1) / width
                } else {
                    1.0
                };
                return Some(prev.0 + (le - prev.0) * frac);
            }
            prev = (le, n);
        }
        Some(prev.0)
    }
}

/// `name{labels} value` lines of the Prometheus text format.
fn parse_line(line: &str) -> Option<(&str, BTreeMap<&str, &str>, f64)> {
    if line.starts_with('#') || line.trim().is_empty() {
        return None;
    }
    let (head, value) = line.rsplit_once(' ')?;
    let value: f64 = value.trim().parse().ok()?;
    let (name, labels) = match head.split_once('{') {
        Some((n, rest)) => (n, rest.strip_suffix('}')?),
        None => (head, ""),
    };
    let mut map = BTreeMap::new();
    // Label values here never hold `",` (names, codes, SPIFFE IDs), so a plain split
    // on it is exact for our own Envoys.
    for pair in labels.split("\",").filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once("=\"")?;
        map.insert(k.trim_start_matches(','), v.trim_end_matches('"'));
    }
    Some((name, map, value))
}

/// Reduces a `/stats/prometheus` body: requests and 5xx from Envoy's own stats of the
/// connection managers whose prefix starts with `hcm`; latency buckets from Istio's
/// histogram of `reporter` when present, else from those connection managers'.
pub fn reduce(text: &str, reporter: &str, hcm: &str) -> Sample {
    let mut sample = Sample::default();
    let mut istio_buckets: BTreeMap<u64, f64> = BTreeMap::new();
    let mut native_buckets: BTreeMap<u64, f64> = BTreeMap::new();
    for (name, labels, value) in text.lines().filter_map(parse_line) {
        let le = || {
            labels
                .get("le")
                .and_then(|l| l.parse::<f64>().ok())
                .map(f64::to_bits)
        };
        if name == "istio_request_duration_milliseconds_bucket"
            && labels.get("reporter") == Some(&reporter)
        {
            if let Some(le) = le() {
                *istio_buckets.entry(le).or_default() += value;
            }
            continue;
        }
        let ours = labels
            .get("envoy_http_conn_manager_prefix")
            .is_some_and(|p| p.starts_with(hcm))
            && name.starts_with("envoy_http_");
        if !ours {
            continue;
        }
        if name.ends_with("downstream_rq_completed") {
            sample.requests += value;
        } else if name.ends_with("downstream_rq_xx")
            && labels.get("envoy_response_code_class") == Some(&"5")
        {
            sample.errors += value;
        } else if name.ends_with("downstream_rq_time_bucket") {
            if let Some(le) = le() {
                *native_buckets.entry(le).or_default() += value;
            }
        }
    }
    let buckets = if istio_buckets.is_empty() {
        native_buckets
    } else {
        istio_buckets
    };
    sample.buckets = buckets
        .into_iter()
        .map(|(k, n)| (f64::from_bits(k), n))
        .collect();
    sample.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    sample
}

fn scrape(p: &Running) -> Result<Sample> {
    let admin = p
        .ports
        .get("admin")
        .ok_or_else(|| anyhow!("{} has no admin port", p.name))?;
    let url = format!("http://127.0.0.1:{admin}/stats/prometheus?usedonly");
    let r = localhttp::get(&url, FETCH_TIMEOUT)?;
    if r.status != 200 {
        return Err(anyhow!("{url}: HTTP {}", r.status));
    }
    let (reporter, hcm) = if p.kind == "gateway" {
        ("source", "gateway")
    } else {
        ("destination", "inbound")
    };
    Ok(reduce(&r.text(), reporter, hcm))
}

struct Row {
    service: String,
    instance: String,
    window: Option<Sample>,
    total: Option<Sample>,
}

/// The table of the process-mode mesh `st`, sampled `interval` apart.
pub fn table(st: &State, interval: Duration) -> String {
    // The gateway first: what clients get, then each service behind it.
    let envoys: Vec<&Running> = st
        .processes
        .iter()
        .filter(|p| p.kind == "gateway")
        .chain(st.processes.iter().filter(|p| p.kind == "sidecar"))
        .collect();
    let first: Vec<Option<Sample>> = envoys.iter().map(|p| scrape(p).ok()).collect();
    let t0 = Instant::now();
    // The sampling window itself, not a readiness wait.
    std::thread::sleep(interval);
    let second: Vec<Option<Sample>> = envoys.iter().map(|p| scrape(p).ok()).collect();
    let secs = t0.elapsed().as_secs_f64();

    let mut rows: Vec<Row> = Vec::new();
    for ((p, a), b) in envoys.iter().zip(first).zip(second) {
        let window = match (&a, &b) {
            (Some(a), Some(b)) => Some(b.minus(a)),
            _ => None,
        };
        rows.push(Row {
            service: p
                .service
                .clone()
                .unwrap_or_else(|| format!("{} (gateway)", p.name)),
            instance: p.instance.clone(),
            window,
            total: b,
        });
    }

    let mut out = String::new();
    let _ = writeln!(
        out,
        "mesh {}: {:.1} s sample; services by their inbound requests, the gateway by what clients got",
        st.mesh, secs
    );
    let _ = writeln!(
        out,
        "\n{:<26} {:<20} {:>8} {:>8} {:>9} {:>9} {:>9}",
        "SERVICE", "INSTANCE", "RPS", "ERRORS", "P50", "P99", "REQUESTS"
    );
    let mut services: Vec<&str> = Vec::new();
    for r in &rows {
        if !services.contains(&r.service.as_str()) {
            services.push(&r.service);
        }
    }
    for svc in services {
        let mine: Vec<&Row> = rows.iter().filter(|r| r.service == svc).collect();
        if mine.len() > 1 {
            let mut window = Sample::default();
            let mut total = Sample::default();
            let mut up = 0;
            for r in &mine {
                if let (Some(w), Some(t)) = (&r.window, &r.total) {
                    window.add(w);
                    total.add(t);
                    up += 1;
                }
            }
            let label = format!("({up}/{} up)", mine.len());
            line(&mut out, svc, &label, Some(&window), Some(&total), secs);
            for r in &mine {
                line(
                    &mut out,
                    "",
                    &r.instance,
                    r.window.as_ref(),
                    r.total.as_ref(),
                    secs,
                );
            }
        } else {
            for r in &mine {
                line(
                    &mut out,
                    svc,
                    &r.instance,
                    r.window.as_ref(),
                    r.total.as_ref(),
                    secs,
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "\nRPS, ERRORS (5xx share) and P50/P99 are over the sample; REQUESTS since start. `-`: no requests in the sample."
    );
    let _ = writeln!(
        out,
        "RPS, ERRORS and REQUESTS are Envoy's own request counters (exact, no lag); P50/P99 come from histograms Envoy publishes every {FLUSH_INTERVAL}, so they trail by up to {FLUSH_INTERVAL}."
    );
    out
}

fn line(
    out: &mut String,
    service: &str,
    instance: &str,
    window: Option<&Sample>,
    total: Option<&Sample>,
    secs: f64,
) {
    let (Some(w), Some(t)) = (window, total) else {
        let _ = writeln!(out, "{service:<26} {instance:<20} {:>8}", "down");
        return;
    };
    let errors = if w.requests > 0.0 {
        format!("{:.1}%", 100.0 * w.errors / w.requests)
    } else {
        "-".into()
    };
    let ms = |q| w.quantile(q).map_or("-".into(), format_ms);
    let _ = writeln!(
        out,
        "{service:<26} {instance:<20} {:>8.1} {errors:>8} {:>9} {:>9} {:>9}",
        w.requests / secs.max(0.001),
        ms(0.5),
        ms(0.99),
        t.requests
    );
}

fn format_ms(ms: f64) -> String {
    if ms < 10.0 {
        format!("{ms:.2}ms")
    } else if ms < 1000.0 {
        format!("{ms:.0}ms")
    } else {
        format!("{:.2}s", ms / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A sidecar whose telemetry filter recorded fewer requests (90) than Envoy
    /// answered (100, as after a filter that failed open): the counts are Envoy's.
    const SCRAPE: &str = r#"# TYPE istio_requests_total counter
istio_requests_total{reporter="destination",response_code="200",source_app="a"} 81
istio_requests_total{reporter="destination",response_code="503",source_app="a"} 9
istio_requests_total{reporter="source",response_code="200"} 1000
istio_request_duration_milliseconds_bucket{reporter="destination",response_code="200",le="1"} 50
istio_request_duration_milliseconds_bucket{reporter="destination",response_code="200",le="5"} 90
istio_request_duration_milliseconds_bucket{reporter="destination",response_code="200",le="+Inf"} 90
istio_request_duration_milliseconds_bucket{reporter="destination",response_code="503",le="1"} 0
istio_request_duration_milliseconds_bucket{reporter="destination",response_code="503",le="5"} 10
istio_request_duration_milliseconds_bucket{reporter="destination",response_code="503",le="+Inf"} 10
istio_request_duration_milliseconds_bucket{reporter="source",response_code="200",le="1"} 1000
envoy_http_downstream_rq_completed{envoy_http_conn_manager_prefix="inbound_0"} 100
envoy_http_downstream_rq_xx{envoy_response_code_class="2",envoy_http_conn_manager_prefix="inbound_0"} 90
envoy_http_downstream_rq_xx{envoy_response_code_class="5",envoy_http_conn_manager_prefix="inbound_0"} 10
envoy_http_downstream_rq_completed{envoy_http_conn_manager_prefix="admin"} 7
envoy_http_downstream_rq_time_bucket{envoy_http_conn_manager_prefix="inbound_0",le="10"} 100
"#;

    #[test]
    fn counts_are_envoys_and_latency_istios_of_one_reporter() {
        let s = reduce(SCRAPE, "destination", "inbound");
        assert_eq!((s.requests, s.errors), (100.0, 10.0));
        assert_eq!(
            s.buckets,
            vec![(1.0, 50.0), (5.0, 100.0), (f64::INFINITY, 100.0)]
        );
        assert_eq!(s.quantile(0.5), Some(1.0));
        // The 99th request lies 49/50 into the (1, 5] bucket.
        let p99 = s.quantile(0.99).unwrap();
        assert!((p99 - (1.0 + 4.0 * 49.0 / 50.0)).abs() < 1e-9, "{p99}");
    }

    #[test]
    fn envoy_stats_without_telemetry() {
        let text = r#"envoy_http_0_0_0_9080_downstream_rq_completed{envoy_http_conn_manager_prefix="inbound_0"} 20
envoy_http_0_0_0_9080_downstream_rq_xx{envoy_response_code_class="5",envoy_http_conn_manager_prefix="inbound_0"} 2
envoy_http_downstream_rq_completed{envoy_http_conn_manager_prefix="admin"} 7
envoy_http_0_0_0_9080_downstream_rq_time_bucket{envoy_http_conn_manager_prefix="inbound_0",le="10"} 20
"#;
        let s = reduce(text, "destination", "inbound");
        assert_eq!((s.requests, s.errors), (20.0, 2.0));
        assert_eq!(s.buckets, vec![(10.0, 20.0)]);
    }

    #[test]
    fn window_is_the_difference() {
        let a = reduce(SCRAPE, "destination", "inbound");
        let b = a.minus(&a);
        assert_eq!(b.requests, 0.0);
        assert_eq!(b.quantile(0.5), None);
    }
}

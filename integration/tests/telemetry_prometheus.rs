//! A real Prometheus server (Debian's package) scrapes a sidecar running the
//! telemetry filter, and PromQL over `istio_requests_total` returns the counts:
//! the end-to-end check that existing Istio dashboards and alerts would work.

// Test helpers fail loudly by design.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wasmesh_harness::build::wasm_module;
use wasmesh_integration::bootstrap::{self, WasmFilter, INGRESS};
use wasmesh_integration::echo::EchoServer;
use wasmesh_integration::envoy::Envoy;
use wasmesh_integration::http;
use wasmesh_integration::paths::TempDir;

fn prometheus_bin() -> PathBuf {
    let bin = std::env::var_os("PROMETHEUS_BIN")
        .map_or_else(|| PathBuf::from("/usr/bin/prometheus"), PathBuf::from);
    assert!(
        bin.exists(),
        "Prometheus is required for this test: install Debian's `prometheus` package (or set PROMETHEUS_BIN); {} is missing",
        bin.display()
    );
    bin
}

/// A Prometheus server, killed on drop.
struct Prometheus {
    child: Child,
    url: String,
    dir: TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts Prometheus scraping `target` (host:port) at `/stats/prometheus` every
    /// 500 ms, and waits (bounded) for `/-/ready`.
    fn start(target: &str) -> Prometheus {
        let dir = TempDir::new("prometheus").unwrap();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 500ms\n  evaluation_interval: 500ms\n\
                 scrape_configs:\n  - job_name: sidecar\n    metrics_path: /stats/prometheus\n\
                 \x20   static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let port = wasmesh_integration::ports::free_port().unwrap();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new(prometheus_bin())
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut p = Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
        };
        p.wait_until("Prometheus ready", Duration::from_secs(30), |p| {
            http::get(&format!("{}/-/ready", p.url)).is_ok_and(|r| r.status == 200)
        });
        p
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// Polls `ready` every 100 ms until it holds; fails with Prometheus's log after `timeout`.
    fn wait_until(&mut self, what: &str, timeout: Duration, ready: impl Fn(&Prometheus) -> bool) {
        let deadline = Instant::now() + timeout;
        while !ready(self) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "Prometheus exited ({status}) while waiting for {what}:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// An instant PromQL query through `/api/v1/query`: the `data.result` array.
    fn query(&self, promql: &str) -> Vec<Value> {
        let resp = http::get(&format!(
            "{}/api/v1/query?query={}",
            self.url,
            encode(promql)
        ))
        .unwrap();
        assert_eq!(resp.status, 200, "{}", resp.text());
        let body: Value = resp.json().unwrap();
        assert_eq!(body["status"], "success", "{body}");
        body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The single value of a query that returns one sample, once it returns one.
    fn value(&mut self, promql: &str) -> f64 {
        self.wait_until(
            &format!("a result for {promql}"),
            Duration::from_secs(30),
            |p| !p.query(promql).is_empty(),
        );
        let result = self.query(promql);
        assert_eq!(result.len(), 1, "{result:?}");
        result[0]["value"][1].as_str().unwrap().parse().unwrap()
    }
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn prometheus_scrapes_the_sidecar_and_promql_sees_istio_requests_total() {
    let echo = EchoServer::start().unwrap();
    let config = json!({
        "reporter": "destination",
        "workload": {"name": "reviews-v1", "namespace": "default", "app": "reviews", "version": "v1",
                     "service": "reviews.default.svc.cluster.local"},
    });
    let filter = WasmFilter::new("wasmesh.telemetry", wasm_module("wasmesh-telemetry"))
        .config(config.clone());
    let mut bootstrap = bootstrap::proxy_to(echo.port(), &[filter]);
    let cfg: wasmesh_telemetry::Config = wasmesh_sdk::config::from_value(&config).unwrap();
    bootstrap["stats_config"] = json!({
        "stats_tags": wasmesh_telemetry::stats_tags(&cfg).unwrap(),
        "histogram_bucket_settings": wasmesh_telemetry::buckets::histogram_bucket_settings(),
    });
    // Histograms reach /stats/prometheus at each stats flush (default 5 s).
    bootstrap["stats_flush_interval"] = json!("0.5s");
    let envoy = Envoy::start(&bootstrap).unwrap();
    let url = format!("{}/reviews/1", envoy.listener_url(INGRESS).unwrap());
    let peer = [("x-wasmesh-peer", "w=productpage-v1;n=default;a=productpage")];
    for _ in 0..5 {
        assert_eq!(http::get_with(&url, &peer).unwrap().status, 200);
    }
    for _ in 0..2 {
        assert_eq!(
            http::get_with(&url, &[peer[0], ("x-echo-status", "503")])
                .unwrap()
                .status,
            503
        );
    }

    let mut prom = Prometheus::start(&envoy.admin().addr().to_string());
    let selector = r#"reporter="destination",source_workload="productpage-v1",destination_workload="reviews-v1",destination_service="reviews.default.svc.cluster.local""#;
    assert_eq!(
        prom.value(&format!(
            r#"sum(istio_requests_total{{{selector},response_code="200"}})"#
        )),
        5.0
    );
    assert_eq!(
        prom.value(&format!(
            r#"sum(istio_requests_total{{{selector},response_code="503"}})"#
        )),
        2.0
    );
    // The shape of a standard Istio dashboard query: error ratio by destination workload.
    let errors = prom.value(&format!(
        r#"sum by (destination_workload) (istio_requests_total{{{selector},response_code=~"5.."}}) / sum by (destination_workload) (istio_requests_total{{{selector}}})"#
    ));
    assert!((errors - 2.0 / 7.0).abs() < 1e-9, "{errors}");
    assert_eq!(
        prom.value(r#"sum(istio_request_duration_milliseconds_count{reporter="destination"})"#),
        7.0
    );
}

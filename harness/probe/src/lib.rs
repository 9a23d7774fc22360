//! wasmesh-probe: a filter that performs host calls chosen by the request.
//! The conformance suite drives it through the harness and through Envoy.
//!
//! Every operation is selected by the `x-probe-op` request header and reports what it saw
//! over HTTP (extra response headers prefixed `x-probe-`, or a local response), so the same
//! scenario can be asserted against the harness and against a real Envoy. Parameters travel
//! in other `x-probe-*` request headers. See `docs/testing.md` for the table of operations.
//!
//! Plugin configuration is a list of `key=value` lines: `tick_ms=N` starts a tick,
//! `queue=NAME` registers a shared queue, `fail=1` makes `on_configure` return false.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MetricType, Status};
use std::time::{Duration, UNIX_EPOCH};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(ProbeRoot::default()) });
}}

/// Shared-data key the tick and queue handlers count into.
const TICKS_KEY: &str = "probe.ticks";
const QUEUE_LAST_KEY: &str = "probe.queue.last";
const DEFAULT_QUEUE: &str = "probe_queue";

/// Deliberate trap for the `trap` operations: the host must report it as a VM failure.
fn trap() -> ! {
    std::process::abort()
}

#[derive(Default)]
struct ProbeRoot {
    queue: Option<u32>,
}

impl Context for ProbeRoot {}

impl RootContext for ProbeRoot {
    fn on_vm_start(&mut self, _size: usize) -> bool {
        let vm = self.get_vm_configuration().unwrap_or_default();
        let _ = hostcalls::log(
            LogLevel::Info,
            &format!("vm_start config={}", String::from_utf8_lossy(&vm)),
        );
        true
    }

    fn on_configure(&mut self, _size: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        let config = String::from_utf8_lossy(&config).into_owned();
        let _ = hostcalls::log(LogLevel::Info, &format!("configure config={config}"));
        for line in config.lines() {
            let (key, value) = line.split_once('=').unwrap_or((line, ""));
            match key.trim() {
                "fail" => return false,
                "tick_ms" => {
                    let ms = value.trim().parse::<u64>().unwrap_or(0);
                    let _ = hostcalls::set_tick_period(Duration::from_millis(ms));
                }
                "queue" => {
                    self.queue = hostcalls::register_shared_queue(value.trim()).ok();
                }
                _ => {}
            }
        }
        true
    }

    fn on_tick(&mut self) {
        cas_increment(TICKS_KEY, 100);
        if let Ok(id) = hostcalls::define_metric(MetricType::Counter, "probe_ticks_total") {
            let _ = hostcalls::increment_metric(id, 1);
        }
    }

    fn on_queue_ready(&mut self, queue_id: u32) {
        while let Ok(Some(item)) = hostcalls::dequeue_shared_queue(queue_id) {
            let _ = hostcalls::log(
                LogLevel::Info,
                &format!("queue item={}", String::from_utf8_lossy(&item)),
            );
            let _ = hostcalls::set_shared_data(QUEUE_LAST_KEY, Some(&item), None);
            if let Ok(id) = hostcalls::define_metric(MetricType::Counter, "probe_queue_items_total")
            {
                let _ = hostcalls::increment_metric(id, 1);
            }
        }
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Probe::default()))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// Increments a decimal counter in shared data with a CAS retry loop; returns the new value
/// and how many retries it took, or None when the attempts ran out.
fn cas_increment(key: &str, attempts: u32) -> Option<(u64, u32)> {
    for retry in 0..attempts {
        let (value, cas) = hostcalls::get_shared_data(key).ok()?;
        let next = parse_u64(value.as_deref()) + 1;
        match hostcalls::set_shared_data(key, Some(next.to_string().as_bytes()), cas) {
            Ok(()) => return Some((next, retry)),
            Err(Status::CasMismatch) => continue,
            Err(_) => return None,
        }
    }
    None
}

fn parse_u64(bytes: Option<&[u8]>) -> u64 {
    bytes
        .and_then(|b| std::str::from_utf8(b).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

#[derive(Default)]
struct Probe {
    op: String,
    /// Headers added to the response in `on_http_response_headers`: how results travel.
    report: Vec<(String, String)>,
    /// Value and CAS read in the request phase by `shared-cas-split`.
    split: Option<(u64, Option<u32>)>,
    key: String,
}

impl Probe {
    fn header(&self, name: &str) -> Option<String> {
        self.get_http_request_header(name)
    }

    fn report(&mut self, name: &str, value: impl ToString) {
        self.report.push((name.to_string(), value.to_string()));
    }

    fn local(&self, status: u32, body: &[u8]) {
        self.send_http_response(status, vec![("x-probe-op", self.op.as_str())], Some(body));
    }

    fn on_request(&mut self) -> Action {
        match self.op.as_str() {
            "" | "none" => Action::Continue,
            "set-header" => {
                self.add_http_request_header("x-probe-added", "1");
                self.set_http_request_header("x-probe-replace", Some("replaced"));
                self.remove_http_request_header("x-probe-remove");
                let first = self.header("x-dup").unwrap_or_default();
                self.report("x-probe-first-dup", first);
                Action::Continue
            }
            "set-headers" => {
                let mut all = self.get_http_request_headers();
                all.push(("x-probe-set".to_string(), "all".to_string()));
                let pairs: Vec<(&str, &str)> =
                    all.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                self.set_http_request_headers(pairs);
                Action::Continue
            }
            "echo-headers" => {
                let body: String = self
                    .get_http_request_headers()
                    .iter()
                    .map(|(k, v)| format!("{k}: {v}\n"))
                    .collect();
                self.local(200, body.as_bytes());
                Action::Pause
            }
            "local-response" => {
                let status = self
                    .header("x-probe-status")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(403);
                self.send_http_response(
                    status,
                    vec![("x-probe", "local"), ("x-probe-op", "local-response")],
                    Some(b"denied by probe"),
                );
                Action::Pause
            }
            "local-response-twice" => {
                self.local(401, b"first");
                self.local(500, b"second");
                Action::Pause
            }
            "callout" => self.callout(),
            "grpc" => {
                let cluster = self.header("x-probe-cluster").unwrap_or_default();
                let token = self.dispatch_grpc_call(
                    &cluster,
                    "probe.Service",
                    "Call",
                    vec![("x-probe", b"1".as_slice())],
                    Some(b"message"),
                    Duration::from_secs(1),
                );
                match token {
                    Ok(_) => Action::Pause,
                    Err(status) => {
                        self.local(500, format!("grpc failed: {status:?}").as_bytes());
                        Action::Pause
                    }
                }
            }
            "shared-cas" => {
                let key = self.key.clone();
                match cas_increment(&key, 1000) {
                    Some((value, retries)) => {
                        self.report("x-probe-counter", value);
                        self.report("x-probe-cas-retries", retries);
                    }
                    None => self.report("x-probe-counter", "failed"),
                }
                Action::Continue
            }
            "shared-cas-split" => {
                // Read now, write in the response phase: lets a test interleave workers.
                let (value, cas) = self.get_shared_data(&self.key);
                self.split = Some((parse_u64(value.as_deref()), cas));
                Action::Continue
            }
            "shared-set" => {
                let value = self.header("x-probe-value").unwrap_or_default();
                let cas = self
                    .header("x-probe-cas")
                    .and_then(|c| c.parse::<u32>().ok());
                let result = hostcalls::set_shared_data(&self.key, Some(value.as_bytes()), cas);
                self.report("x-probe-result", status_name(result.err()));
                Action::Continue
            }
            "shared-get" => {
                match hostcalls::get_shared_data(&self.key) {
                    Ok((value, cas)) => {
                        let v = value.map(|v| String::from_utf8_lossy(&v).into_owned());
                        self.report("x-probe-value", v.unwrap_or_else(|| "<none>".into()));
                        self.report("x-probe-cas", cas.unwrap_or(0));
                    }
                    Err(status) => self.report("x-probe-result", status_name(Some(status))),
                }
                Action::Continue
            }
            "metric" => {
                let delta = self
                    .header("x-probe-value")
                    .and_then(|v| v.parse::<i64>().ok())
                    .unwrap_or(1);
                let counter = hostcalls::define_metric(MetricType::Counter, "probe_requests_total");
                let gauge = hostcalls::define_metric(MetricType::Gauge, "probe_gauge");
                let hist = hostcalls::define_metric(MetricType::Histogram, "probe_histogram");
                if let (Ok(c), Ok(g), Ok(h)) = (counter, gauge, hist) {
                    let _ = hostcalls::increment_metric(c, 1);
                    let _ = hostcalls::increment_metric(g, delta);
                    let _ = hostcalls::record_metric(h, delta.unsigned_abs());
                    self.report("x-probe-counter", hostcalls::get_metric(c).unwrap_or(0));
                    self.report("x-probe-gauge", hostcalls::get_metric(g).unwrap_or(0));
                    let hist_get = hostcalls::get_metric(h).err();
                    self.report("x-probe-histogram-get", status_name(hist_get));
                }
                Action::Continue
            }
            "property" => {
                let path = self.header("x-probe-property").unwrap_or_default();
                let segments: Vec<&str> = path.split('.').collect();
                match hostcalls::get_property(segments) {
                    Ok(Some(value)) => self.local(200, &value),
                    Ok(None) => self.local(404, b"not found"),
                    Err(status) => self.local(500, format!("{status:?}").as_bytes()),
                }
                Action::Pause
            }
            "set-property" => {
                let value = self.header("x-probe-value").unwrap_or_default();
                let path = self
                    .header("x-probe-property")
                    .unwrap_or_else(|| "probe.value".to_string());
                let segments: Vec<&str> = path.split('.').collect();
                let set = hostcalls::set_property(segments.clone(), Some(value.as_bytes()));
                let back = self.get_property(segments).unwrap_or_default();
                self.report("x-probe-result", status_name(set.err()));
                self.report("x-probe-value", String::from_utf8_lossy(&back));
                Action::Continue
            }
            "trap" => trap(),
            "body-buffer" => {
                // The body changes length: the upstream must not get the client's length.
                self.set_http_request_header("content-length", None);
                Action::Continue
            }
            "trailers" | "trap-response" | "response-body" | "late-read" => Action::Continue,
            "ticks" => {
                let (value, _) = self.get_shared_data(TICKS_KEY);
                self.local(200, parse_u64(value.as_deref()).to_string().as_bytes());
                Action::Pause
            }
            "queue" => {
                let name = self
                    .header("x-probe-queue")
                    .unwrap_or_else(|| DEFAULT_QUEUE.to_string());
                let value = self.header("x-probe-value").unwrap_or_default();
                let result = match hostcalls::resolve_shared_queue("", &name) {
                    Ok(Some(id)) => hostcalls::enqueue_shared_queue(id, Some(value.as_bytes())),
                    Ok(None) => Err(Status::NotFound),
                    Err(status) => Err(status),
                };
                self.report("x-probe-result", status_name(result.err()));
                Action::Continue
            }
            "queue-last" => {
                let (value, _) = self.get_shared_data(QUEUE_LAST_KEY);
                self.local(200, &value.unwrap_or_default());
                Action::Pause
            }
            "time" => {
                let nanos = self
                    .get_current_time()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0);
                self.local(200, nanos.to_string().as_bytes());
                Action::Pause
            }
            "foreign" => {
                let name = self.header("x-probe-function").unwrap_or_default();
                let args = self.header("x-probe-value").unwrap_or_default();
                match hostcalls::call_foreign_function(&name, Some(args.as_bytes())) {
                    Ok(result) => self.local(200, &result.unwrap_or_default()),
                    Err(status) => self.local(404, status_name(Some(status)).as_bytes()),
                }
                Action::Pause
            }
            "clear-route-cache" => {
                self.add_http_request_header("x-probe-route", "changed");
                let result = hostcalls::call_foreign_function("clear_route_cache", None);
                self.report("x-probe-result", status_name(result.err()));
                Action::Continue
            }
            "log" => {
                let message = self.header("x-probe-value").unwrap_or_default();
                for level in [
                    LogLevel::Trace,
                    LogLevel::Debug,
                    LogLevel::Info,
                    LogLevel::Warn,
                    LogLevel::Error,
                    LogLevel::Critical,
                ] {
                    let _ = hostcalls::log(level, &format!("{level:?}: {message}"));
                }
                let level = hostcalls::get_log_level().unwrap_or(LogLevel::Trace);
                self.report("x-probe-log-level", format!("{level:?}"));
                Action::Continue
            }
            "close" => {
                let _ = hostcalls::reset_http_request();
                Action::Pause
            }
            "wasi" => {
                println!("probe stdout");
                eprintln!("probe stderr");
                let now = std::time::SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                self.report("x-probe-wasi-time", now);
                self.report("x-probe-env-count", std::env::vars().count());
                // RandomState seeds itself from WASI random_get.
                let random = std::hash::BuildHasher::hash_one(
                    &std::collections::hash_map::RandomState::new(),
                    1u8,
                );
                self.report("x-probe-random", random);
                Action::Continue
            }
            other => {
                let body = format!("unknown probe op {other}");
                self.local(400, body.as_bytes());
                Action::Pause
            }
        }
    }

    fn callout(&mut self) -> Action {
        let cluster = self
            .header("x-probe-cluster")
            .unwrap_or_else(|| "probe_upstream".to_string());
        let timeout_ms = self
            .header("x-probe-timeout-ms")
            .and_then(|t| t.parse().ok())
            .unwrap_or(1000);
        let body = self.header("x-probe-value");
        let result = self.dispatch_http_call(
            &cluster,
            vec![
                (":method", "POST"),
                (":path", "/probe/callout"),
                (":authority", "probe.upstream"),
                ("x-probe", "callout"),
            ],
            body.as_deref().map(str::as_bytes),
            vec![],
            Duration::from_millis(timeout_ms),
        );
        match result {
            Ok(_) => Action::Pause,
            Err(status) => {
                self.local(500, format!("callout failed: {status:?}").as_bytes());
                Action::Pause
            }
        }
    }
}

fn status_name(status: Option<Status>) -> String {
    match status {
        None => "Ok".to_string(),
        Some(s) => format!("{s:?}"),
    }
}

impl Context for Probe {
    fn on_http_call_response(&mut self, _token: u32, headers: usize, body_size: usize, _t: usize) {
        if headers == 0 {
            // Envoy reports a failed callout (reset, timeout) with zero headers.
            self.local(503, b"callout failed");
            return;
        }
        let status = self
            .get_http_call_response_header(":status")
            .unwrap_or_default();
        let body = self
            .get_http_call_response_body(0, body_size)
            .unwrap_or_default();
        let body = String::from_utf8_lossy(&body).into_owned();
        if status == "403" {
            self.local(403, format!("callout denied: {body}").as_bytes());
            return;
        }
        self.add_http_request_header("x-probe-callout-status", &status);
        self.report("x-probe-callout-status", status);
        self.report("x-probe-callout-body", body);
        self.resume_http_request();
    }
}

impl HttpContext for Probe {
    fn on_http_request_headers(&mut self, _n: usize, _eos: bool) -> Action {
        self.op = self.header("x-probe-op").unwrap_or_default();
        if self.op.starts_with("shared") {
            self.key = self
                .header("x-probe-key")
                .unwrap_or_else(|| "probe.counter".to_string());
        }
        self.on_request()
    }

    fn on_http_request_body(&mut self, size: usize, eos: bool) -> Action {
        match self.op.as_str() {
            "body-buffer" => {
                if !eos {
                    return Action::Pause;
                }
                let body = self.get_http_request_body(0, size).unwrap_or_default();
                let mut upper = b"PROBE:".to_vec();
                upper.extend(body.to_ascii_uppercase());
                self.set_http_request_body(0, size, &upper);
                self.report("x-probe-request-body-size", size);
                Action::Continue
            }
            "trailers" => {
                // With trailers the body never sees end_of_stream: the trailers callback must
                // finish the job (a known Envoy pitfall this op demonstrates).
                self.report("x-probe-body-eos", eos);
                if eos {
                    Action::Continue
                } else {
                    Action::Pause
                }
            }
            _ => Action::Continue,
        }
    }

    fn on_http_request_trailers(&mut self, _n: usize) -> Action {
        if self.op == "trailers" {
            let size = hostcalls::get_buffer(BufferType::HttpRequestBody, 0, usize::MAX)
                .ok()
                .flatten()
                .map(|b| b.len())
                .unwrap_or(0);
            self.report("x-probe-buffered-at-trailers", size);
            self.add_http_request_trailer("x-probe-trailer", "added");
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _n: usize, _eos: bool) -> Action {
        if self.op == "trap-response" {
            trap();
        }
        if self.op == "late-read" {
            // Envoy no longer holds the request headers once they continued: the host call
            // fails with BadArgument and the SDK panics, trapping the VM. Shows that pitfall.
            let path = self.get_http_request_header(":path").unwrap_or_default();
            self.report("x-probe-late-path", path);
        }
        if self.op == "shared-cas-split" {
            let (mut value, mut cas) = self.split.take().unwrap_or((0, None));
            let mut retries = 0u32;
            loop {
                let next = value + 1;
                match hostcalls::set_shared_data(&self.key, Some(next.to_string().as_bytes()), cas)
                {
                    Ok(()) => {
                        self.report("x-probe-counter", next);
                        break;
                    }
                    Err(Status::CasMismatch) if retries < 1000 => {
                        retries += 1;
                        let (v, c) = self.get_shared_data(&self.key);
                        value = parse_u64(v.as_deref());
                        cas = c;
                    }
                    Err(status) => {
                        self.report("x-probe-counter", format!("{status:?}"));
                        break;
                    }
                }
            }
            self.report("x-probe-cas-retries", retries);
        }
        if self.op == "set-header" {
            self.add_http_response_header("x-probe-response", "1");
        }
        if self.op == "response-body" {
            // The body grows: drop the upstream's length (Envoy then sends it chunked).
            self.set_http_response_header("content-length", None);
        }
        if !self.op.is_empty() && self.op != "none" {
            self.add_http_response_header("x-probe-op", &self.op.clone());
        }
        for (name, value) in std::mem::take(&mut self.report) {
            self.add_http_response_header(&name, &value);
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, size: usize, eos: bool) -> Action {
        if self.op != "response-body" {
            return Action::Continue;
        }
        if !eos {
            return Action::Pause;
        }
        self.set_http_response_body(size, 0, b" [probed]");
        Action::Continue
    }

    fn on_log(&mut self) {
        if self.op == "metric" {
            if let Ok(id) = hostcalls::define_metric(MetricType::Counter, "probe_logged_total") {
                let _ = hostcalls::increment_metric(id, 1);
            }
        }
    }
}

//! Runs scenarios on the compiled probe inside `wasmesh-harness`. The harness hosts only
//! the filter, so this driver plays the rest of Envoy the way the Envoy driver's bootstrap
//! sets it up: the connection manager's request headers, routing (including re-routing
//! after `clear_route_cache`), the echo upstreams, the callout clusters and the local
//! reply's framing headers.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use wasmesh_harness::{build, Action, HeaderMap, Host, Level, Module, Stream};

use super::scenario::{Observed, Request, Scenario, AUTHORITY};
use super::{
    Driver, ADDED_ROUTE, BLACKHOLE_CLUSTER, CALLOUT_CLUSTER, CONNECT_FAILURE_BODY, DEFAULT_ROUTE,
    PLUGIN, SET_ROUTE, UNREACHABLE_CLUSTER, V2_ROUTE,
};
use crate::echo::Echo;

/// What the harness presents as `source.address`: Envoy shows the client's address
/// (127.0.0.1 and an ephemeral port) — scenarios match it loosely.
const SOURCE_ADDRESS: &str = "127.0.0.1:40000";
/// Envoy's `x-request-id` is random; the emulation uses a fixed UUID.
const REQUEST_ID: &str = "00000000-0000-4000-8000-000000000000";

pub struct HarnessDriver {
    host: Host,
}

impl HarnessDriver {
    pub fn new(scenario: &Scenario) -> Result<HarnessDriver> {
        if scenario
            .failure_policy
            .is_some_and(|p| p != crate::FailurePolicy::FailClosed)
        {
            bail!("the harness implements FAIL_CLOSED only");
        }
        let wasm = build::try_wasm_module("wasmesh-probe").map_err(|e| anyhow!("{e}"))?;
        let module = Module::load(&wasm).map_err(|e| anyhow!("{e}"))?;
        let host = Host::builder(&module)
            .plugin_config(scenario.plugin_config.as_bytes())
            .plugin_name(PLUGIN)
            .root_id(PLUGIN)
            .vm_id(PLUGIN)
            // Envoy runs with `-l info`: that is what proxy_get_log_level reports there.
            .log_level(Level::Info)
            .cluster(CALLOUT_CLUSTER)
            .cluster(UNREACHABLE_CLUSTER)
            .cluster(BLACKHOLE_CLUSTER)
            .property(&["source", "address"], SOURCE_ADDRESS)
            .build()
            .map_err(|e| anyhow!("{e}"))?;
        if !host.configured() {
            bail!("the probe refused its configuration: {:?}", host.logs());
        }
        Ok(HarnessDriver { host })
    }

    pub fn host(&self) -> &Host {
        &self.host
    }

    /// Answers the stream's callouts as the Envoy driver's clusters would: the callout
    /// cluster is an echo server named `callout`; the unreachable one gets the 503 Envoy's
    /// async client makes up for a refused connection; the blackhole never answers, so
    /// the call times out on the manual clock (zero headers).
    fn answer_callouts(&self, stream_id: u32) -> Result<()> {
        for call in self.host.pending_http_calls() {
            if call.context_id != stream_id {
                continue;
            }
            if call.cluster == CALLOUT_CLUSTER {
                let echo = echo_of("callout", &call.headers, &call.body);
                let (headers, body) = echo_response(&echo, &call.headers)?;
                self.host
                    .respond_http_call(call.token, &headers, body)
                    .map_err(|e| anyhow!("{e}"))?;
            } else if call.cluster == UNREACHABLE_CLUSTER {
                let headers = [
                    (":status", "503"),
                    ("content-length", &CONNECT_FAILURE_BODY.len().to_string()),
                    ("content-type", "text/plain"),
                ];
                self.host
                    .respond_http_call(call.token, &headers, CONNECT_FAILURE_BODY)
                    .map_err(|e| anyhow!("{e}"))?;
            } else {
                let timeout = call.timeout.unwrap_or(Duration::from_secs(1));
                self.host.advance(timeout);
            }
        }
        Ok(())
    }
}

/// The request headers a filter sees in Envoy for this client request: pseudo-headers,
/// the client's headers (`host` became `:authority`), the framing header the client sent,
/// then what the connection manager adds.
fn envoy_request_headers(request: &Request) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = vec![
        (":authority".into(), AUTHORITY.into()),
        (":path".into(), request.path.clone()),
        (":method".into(), request.method.clone()),
        (":scheme".into(), "http".into()),
    ];
    headers.extend(
        request
            .headers
            .iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v.clone())),
    );
    let body_expected = matches!(request.method.as_str(), "POST" | "PUT" | "PATCH");
    if request.trailers.is_some() {
        headers.push(("transfer-encoding".into(), "chunked".into()));
    } else if request.body_len() > 0 || body_expected {
        headers.push(("content-length".into(), request.body_len().to_string()));
    }
    headers.push(("x-forwarded-proto".into(), "http".into()));
    headers.push(("x-request-id".into(), REQUEST_ID.into()));
    headers
}

/// The Envoy driver's route table: header matches first, then the default route.
fn route_for(headers: &HeaderMap) -> (&'static str, &'static str) {
    if headers.get("x-probe-route") == Some("changed") {
        (V2_ROUTE, "v2")
    } else if headers.contains("x-probe-set") {
        (SET_ROUTE, "v2")
    } else if headers.contains("x-probe-added") {
        (ADDED_ROUTE, "v2")
    } else {
        (DEFAULT_ROUTE, "echo")
    }
}

/// What an echo server named `name` reports for a request with these headers and body.
fn echo_of(name: &str, headers: &HeaderMap, body: &[u8]) -> Echo {
    // Envoy's HTTP/1 encoder writes :authority as `host`; hyper then groups repeated names
    // at their first position.
    let mut seen: Vec<(String, String)> = Vec::new();
    if let Some(host) = headers.get(":authority") {
        seen.push(("host".into(), host.into()));
    }
    for (n, v) in headers.iter().filter(|(n, _)| !n.starts_with(':')) {
        match seen.iter().rposition(|(s, _)| s == n) {
            Some(i) => seen.insert(i + 1, (n.into(), v.into())),
            None => seen.push((n.into(), v.into())),
        }
    }
    Echo {
        name: name.into(),
        method: headers.get(":method").unwrap_or_default().into(),
        path: headers.get(":path").unwrap_or_default().into(),
        headers: seen,
        body: String::from_utf8_lossy(body).into_owned(),
    }
}

/// Header pairs in order.
type Pairs = Vec<(String, String)>;

/// The echo server's answer: status from `x-echo-status`, extra headers from
/// `x-echo-response-header`, the echo as JSON.
fn echo_response(echo: &Echo, request: &HeaderMap) -> Result<(Pairs, Vec<u8>)> {
    let body = serde_json::to_vec(echo).context("serialising echo")?;
    let status = request
        .get("x-echo-status")
        .and_then(|s| s.parse::<u16>().ok())
        .unwrap_or(200);
    let mut headers: Vec<(String, String)> = vec![
        (":status".into(), status.to_string()),
        ("content-type".into(), "application/json".into()),
        ("x-echo-name".into(), echo.name.clone()),
    ];
    for extra in request.get_all("x-echo-response-header") {
        if let Some((n, v)) = extra.split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().into()));
        }
    }
    headers.push(("content-length".into(), body.len().to_string()));
    Ok((headers, body))
}

/// The client's view of a stream that ended in a local reply: as the filter's response
/// callbacks left it (the harness encodes local replies through them, as Envoy does), or,
/// when the VM failed, the bare 503 Envoy sends.
fn local_reply(s: &Stream<'_>) -> Option<Observed> {
    let local = s.local_response()?;
    if s.local_reply_encoded() {
        return Some(observed(&s.response_header_map(), s.response_body_bytes()));
    }
    let mut headers: Vec<(String, String)> = Vec::new();
    if !local.body.is_empty() {
        headers.push(("content-type".into(), "text/plain".into()));
    }
    headers.extend(local.headers.iter().map(|(n, v)| (n.into(), v.into())));
    Some(Observed {
        status: u16::try_from(local.status).unwrap_or(0),
        headers,
        body: local.body.clone(),
    })
}

fn observed(map: &HeaderMap, body: Vec<u8>) -> Observed {
    Observed {
        status: map.get(":status").and_then(|s| s.parse().ok()).unwrap_or(0),
        headers: map
            .iter()
            .filter(|(n, _)| !n.starts_with(':'))
            .map(|(n, v)| (n.into(), v.into()))
            .collect(),
        body,
    }
}

impl Driver for HarnessDriver {
    fn name(&self) -> &'static str {
        "harness"
    }

    fn send(&mut self, request: &Request) -> Result<Observed> {
        let headers = envoy_request_headers(request);
        let (first_route, _) = route_for(&HeaderMap::from_pairs(&headers));
        let mut s = self.host.stream();
        s.set_property(&["xds", "route_name"], first_route);

        let has_trailers = request.trailers.is_some();
        let mut last = s.request_headers(&headers, request.body.is_empty() && !has_trailers);
        let chunks = request.body.len();
        for (i, chunk) in request.body.iter().enumerate() {
            last = s.request_body(chunk, i + 1 == chunks && !has_trailers);
        }
        if let Some(trailers) = &request.trailers {
            last = s.request_trailers(trailers);
        }
        self.answer_callouts(s.id())?;

        if let Some(reply) = local_reply(&s) {
            s.finish();
            return Ok(reply);
        }
        if last == Action::Pause && s.request_resumed() == 0 {
            bail!("the request stalled: the probe paused it and never resumed");
        }

        let upstream_headers = s.request_header_map();
        let (_, upstream) = if s.route_cache_dirty() {
            route_for(&upstream_headers)
        } else {
            route_for(&HeaderMap::from_pairs(&headers))
        };
        let echo = echo_of(upstream, &upstream_headers, &s.request_body_bytes());
        let (response_headers, body) = echo_response(&echo, &upstream_headers)?;
        s.response_headers(&response_headers, false);
        s.response_body(&body, true);
        // A trap in the response phase still fails the stream with Envoy's 503.
        let result = match local_reply(&s) {
            Some(reply) => reply,
            None => observed(&s.response_header_map(), s.response_body_bytes()),
        };
        s.finish();
        Ok(result)
    }

    fn wait(&mut self, time: Duration) {
        self.host.advance(time);
    }

    fn metric(&self, name: &str) -> Result<Option<u64>> {
        Ok(self.host.metric(name).map(|m| m.value))
    }

    fn logs(&self) -> String {
        self.host
            .logs()
            .iter()
            .map(|l| format!("[{:?}] {}", l.level, l.message))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn asynchronous(&self) -> bool {
        false
    }
}

//! A mesh with Envoy's native Zipkin tracer, on real Envoy: a call through two sidecars
//! with telemetry on both reaches the app with one trace id in every trace header it
//! carries, that is the trace both sidecars report to the collector, and the server's
//! access log names it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests fail loudly.

mod common;

use common::Pair;
use serde_json::Value;
use std::time::{Duration, Instant};
use wasmesh_integration::{http, Echo, EchoServer, Envoy};

fn traced_mesh(collector: u16) -> String {
    format!(
        r#"
mesh:
  name: traced
  mtls: STRICT
  tracing: {{ provider: zipkin, address: "127.0.0.1:{collector}", sampling: 100 }}
services:
  - name: client
    port: 9080
    calls: [server]
    filters:
      outbound:
        - name: telemetry
          config: {{ reporter: source }}
  - name: server
    port: 9080
    calls: []
    filters:
      inbound:
        - name: telemetry
          config: {{ accessLog: {{ enabled: true, fields: [trace_id] }} }}
"#
    )
}

/// The trace id of each trace header in `echo`, by header, as a number (a 64-bit B3 id
/// and its zero-padded W3C form are the same trace).
fn trace_ids(echo: &Echo) -> Vec<(&'static str, u128)> {
    let parse = |hex: &str| u128::from_str_radix(hex, 16).unwrap_or(0);
    let mut ids = Vec::new();
    if let Some(tp) = echo.header("traceparent") {
        ids.push(("traceparent", parse(tp.split('-').nth(1).unwrap_or(""))));
    }
    if let Some(b3) = echo.header("b3") {
        ids.push(("b3", parse(b3.split('-').next().unwrap_or(""))));
    }
    if let Some(id) = echo.header("x-b3-traceid") {
        ids.push(("x-b3-traceid", parse(id)));
    }
    ids
}

/// The services that reported a span of `trace` to the collector so far.
fn reporters(collector: &EchoServer, trace: u128) -> Vec<String> {
    let mut names: Vec<String> = collector
        .received()
        .iter()
        .filter_map(|r| serde_json::from_str::<Value>(&r.body).ok())
        .filter_map(|spans| spans.as_array().cloned())
        .flatten()
        .filter(|span| {
            span["traceId"]
                .as_str()
                .and_then(|id| u128::from_str_radix(id, 16).ok())
                == Some(trace)
        })
        .filter_map(|span| {
            span["localEndpoint"]["serviceName"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// One call from the client's app (with `headers`) to the server's app, which echoes
/// what it received; the trace id every trace header there agrees on.
fn call_and_agree(outbound: &str, headers: &[(&str, &str)], log: &Envoy) -> u128 {
    let mut all = vec![("host", "server:9080")];
    all.extend_from_slice(headers);
    let r = http::get_with(outbound, &all).unwrap();
    assert_eq!(r.status, 200, "{}\n{}", r.text(), log.log_tail(20));
    let echo = Echo::parse(&r.body).unwrap();
    let ids = trace_ids(&echo);
    assert!(
        ids.iter().any(|(h, _)| *h == "x-b3-traceid"),
        "Zipkin's headers missing: {:?}",
        echo.headers
    );
    assert!(
        ids.iter().all(|(_, id)| *id == ids[0].1),
        "the app got two traces: {ids:x?}\n{:?}",
        echo.headers
    );
    ids[0].1
}

/// The `trace_id` of each access-log line in `envoy`'s log so far.
fn logged_trace_ids(envoy: &Envoy) -> Vec<Value> {
    envoy
        .log()
        .lines()
        .filter_map(|l| l.split_once("wasmesh-telemetry: access_log "))
        .map(|(_, json)| serde_json::from_str::<Value>(json.trim()).unwrap()["trace_id"].clone())
        .collect()
}

/// Waits until both sidecars have reported a span of `trace` (Zipkin's reporter
/// flushes every few seconds).
fn await_reporters(collector: &EchoServer, trace: u128) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seen = reporters(collector, trace);
        if seen == ["client.default", "server.default"] {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "trace {trace:x}: reported by {seen:?}; collector got {:?}",
            collector.received()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_app_and_the_collector_see_one_trace_through_two_sidecars() {
    let collector = EchoServer::start_named("zipkin").unwrap();
    let pair = Pair::start(&traced_mesh(collector.port()), "tracing");
    let (client, server) = (&pair.client, &pair.server);
    let outbound = pair.outbound_url();

    // 1. The app sends no context: the client's sidecar starts the trace.
    let started = call_and_agree(&outbound, &[], client);
    await_reporters(&collector, started);
    // Zipkin's ids are 64-bit here: 16 hex digits, as B3 carries them.
    server
        .wait_for_log("access_log ", Duration::from_secs(10))
        .unwrap();
    assert_eq!(
        logged_trace_ids(server),
        [Value::from(format!("{started:016x}"))],
        "{}",
        server.log_tail(20)
    );

    // 2. The app continues a B3 trace it was given: every hop keeps it.
    let given: u128 = 0x0af7_6519_16cd_43dd;
    let continued = call_and_agree(
        &outbound,
        &[
            ("x-b3-traceid", "0af7651916cd43dd"),
            ("x-b3-spanid", "b7ad6b7169203331"),
            ("x-b3-sampled", "1"),
        ],
        client,
    );
    assert_eq!(continued, given, "the given trace was not continued");
    await_reporters(&collector, given);
}

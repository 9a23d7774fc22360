//! The pipeline example, compiled and run in the harness: a callout answered by the
//! test, a delay resumed by the manual clock, and the chain resuming where it paused.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::OnceLock;
use std::time::Duration;
use wasmesh_harness::{build, request, Action, Host, Level, Module};

fn module() -> &'static Module {
    static MODULE: OnceLock<Module> = OnceLock::new();
    MODULE.get_or_init(|| Module::load(build::wasm_module("wasmesh-example-pipeline")).unwrap())
}

fn host(config: &str) -> Host {
    let host = Host::builder(module())
        .plugin_config(config)
        .build()
        .unwrap();
    assert!(host.configured(), "{:?}", host.logs_at(Level::Error));
    host
}

const CONFIG: &str = r#"{"stages":[
    {"name":"slow","config":{"delay_ms":250}},
    {"name":"check","config":{"cluster":"auth","timeout_ms":100}}]}"#;

fn with(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut h = request("GET", "/orders", "shop");
    h.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    h
}

#[test]
fn callout_allows_and_copies_the_user() {
    let host = host(CONFIG);
    let mut s = host.stream();
    assert_eq!(
        s.request_headers(&with(&[("authorization", "Bearer t")]), true),
        Action::Pause
    );
    let calls = host.pending_http_calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].cluster, "auth");
    assert_eq!(calls[0].headers.get("authorization"), Some("Bearer t"));
    assert_eq!(calls[0].headers.get("x-original-path"), Some("/orders"));
    host.respond_http_call(
        calls[0].token,
        &[(":status", "200"), ("x-user", "alice")],
        b"",
    )
    .unwrap();
    assert_eq!(s.request_resumed(), 1);
    assert_eq!(s.request_header_map().get("x-user"), Some("alice"));
    assert!(s.local_response().is_none());
}

#[test]
fn callout_denial_and_failure_answer_locally() {
    let host = host(CONFIG);
    let mut denied = host.stream();
    denied.request_headers(&with(&[]), true);
    let token = host.pending_http_calls()[0].token;
    host.respond_http_call(token, &[(":status", "401")], b"")
        .unwrap();
    assert_eq!(denied.local_response().unwrap().status, 403);
    assert_eq!(denied.request_resumed(), 0);

    let mut failed = host.stream();
    failed.request_headers(&with(&[]), true);
    let token = host.pending_http_calls()[0].token;
    host.fail_http_call(token).unwrap();
    assert_eq!(failed.local_response().unwrap().status, 503);
}

#[test]
fn fail_open_lets_the_request_through() {
    let host =
        host(r#"{"stages":[{"name":"check","config":{"cluster":"auth","fail_open":true}}]}"#);
    let mut s = host.stream();
    s.request_headers(&with(&[]), true);
    host.fail_http_call(host.pending_http_calls()[0].token)
        .unwrap();
    assert_eq!(s.request_resumed(), 1);
    assert!(s.local_response().is_none());
}

#[test]
fn delay_resumes_from_the_tick_then_the_chain_goes_on() {
    let host = host(CONFIG);
    let mut s = host.stream();
    assert_eq!(
        s.request_headers(&with(&[("x-slow", "1")]), true),
        Action::Pause
    );
    host.advance(Duration::from_millis(200));
    assert!(
        host.pending_http_calls().is_empty(),
        "still delayed: the check must not run yet"
    );
    host.advance(Duration::from_millis(60));
    // The delay is over: the chain resumed at `slow`, then paused again at `check`.
    assert_eq!(s.request_header_map().get("x-slowed"), Some("true"));
    let calls = host.pending_http_calls();
    assert_eq!(calls.len(), 1);
    host.respond_http_call(calls[0].token, &[(":status", "200")], b"")
        .unwrap();
    assert_eq!(s.request_resumed(), 1);
}

#[test]
fn many_delayed_streams_share_one_tick() {
    let host = host(r#"{"stages":[{"name":"slow","config":{"delay_ms":100}}]}"#);
    let mut streams: Vec<_> = (0..20).map(|_| host.stream()).collect();
    for s in &mut streams {
        assert_eq!(
            s.request_headers(&with(&[("x-slow", "1")]), true),
            Action::Pause
        );
    }
    host.advance(Duration::from_millis(99));
    assert!(streams.iter().all(|s| s.request_resumed() == 0));
    host.advance(Duration::from_millis(10));
    assert!(streams.iter().all(|s| s.request_resumed() == 1));
}

#[test]
fn stage_config_errors_name_the_stage() {
    let host = Host::builder(module())
        .plugin_config(r#"{"stages":[{"name":"slow","config":{"delay_ms":1}},{"name":"check","config":{"cluster":""}}]}"#)
        .build()
        .unwrap();
    assert!(!host.configured());
    assert!(
        host.logged("invalid configuration: stages[1].config.cluster: must name an Envoy cluster")
    );
}

#[test]
fn a_callout_timeout_is_a_failure_not_an_answer() {
    // Envoy answers a timed-out call with its own 504; the SDK reports it as Failed,
    // so the stage's fail-closed policy applies (503 here), not a "denied" answer.
    let host = host(CONFIG);
    let mut s = host.stream();
    s.request_headers(&with(&[]), true);
    host.advance(Duration::from_millis(150));
    let reply = s.local_response().unwrap();
    assert_eq!(
        (reply.status, reply.body.as_slice()),
        (503, &b"check unavailable\n"[..])
    );
}

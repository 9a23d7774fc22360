//! Loading, configuration, headers, logs and local responses through the probe.

mod common;
use common::{builder, host, op, probe};
use wasmesh_harness::{request, response, AbiVersion, Action, Allocator, Level};

#[test]
fn probe_loads_with_abi_0_2_1_and_its_own_allocator() {
    let m = probe();
    assert_eq!(m.abi_version(), AbiVersion::V0_2_1);
    assert_eq!(m.allocator(), Allocator::ProxyOnMemoryAllocate);
    assert!(m
        .imports()
        .iter()
        .any(|(m, n)| m == "env" && n == "proxy_log"));
}

#[test]
fn configure_runs_on_every_worker_with_both_configurations() {
    let host = builder()
        .workers(3)
        .vm_config("vm-cfg")
        .plugin_config("mode=test")
        .build()
        .unwrap();
    assert!(host.configured());
    let configured: Vec<_> = host
        .logs_at(Level::Info)
        .into_iter()
        .filter(|l| l.message == "configure config=mode=test")
        .map(|l| l.worker)
        .collect();
    assert_eq!(configured, vec![0, 1, 2]);
    assert!(host.logged("vm_start config=vm-cfg"));
}

#[test]
fn configure_returning_false_leaves_host_unconfigured() {
    let host = builder().plugin_config("fail=1").build().unwrap();
    assert!(!host.configured());
}

#[test]
fn passthrough_request_continues_untouched() {
    let host = host();
    let mut s = host.stream();
    let headers = request("GET", "/x", "example.com");
    assert_eq!(s.request_headers(&headers, true), Action::Continue);
    assert_eq!(s.response_headers(&response(200), true), Action::Continue);
    let map = s.request_header_map();
    assert_eq!(map.get(":path"), Some("/x"));
    assert_eq!(map.get(":authority"), Some("example.com"));
    assert!(s.local_response().is_none());
    assert!(s.finish());
}

#[test]
fn filter_adds_replaces_and_removes_request_headers() {
    let host = host();
    let mut s = host.stream();
    let headers = op(
        "set-header",
        &[
            ("x-probe-replace", "old"),
            ("x-probe-replace", "older"),
            ("x-probe-remove", "gone"),
            ("x-dup", "first"),
            ("x-dup", "second"),
        ],
    );
    assert_eq!(s.request_headers(&headers, true), Action::Continue);
    let map = s.request_header_map();
    assert_eq!(map.get("x-probe-added"), Some("1"));
    assert_eq!(map.get_all("x-probe-replace"), vec!["replaced"]);
    assert!(!map.contains("x-probe-remove"));
    s.response_headers(&response(200), false);
    let resp = s.response_header_map();
    assert_eq!(resp.get("x-probe-response"), Some("1"));
    // get_header_map_value returns the first of duplicate values, as Envoy does.
    assert_eq!(resp.get("x-probe-first-dup"), Some("first"));
    assert_eq!(resp.get(":status"), Some("200"));
}

#[test]
fn set_header_map_pairs_replaces_the_whole_map() {
    let host = host();
    let mut s = host.stream();
    s.request_headers(&op("set-headers", &[]), true);
    let map = s.request_header_map();
    assert_eq!(map.get("x-probe-set"), Some("all"));
    assert_eq!(map.get(":method"), Some("GET"));
}

#[test]
fn pseudo_headers_are_visible_to_the_filter() {
    let host = host();
    let mut s = host.stream();
    assert_eq!(
        s.request_headers(&op("echo-headers", &[]), true),
        Action::Pause
    );
    let lr = s.local_response().unwrap();
    assert_eq!(lr.status, 200);
    let body = lr.body_str();
    for line in [
        ":method: GET",
        ":path: /x",
        ":authority: example.com",
        ":scheme: http",
    ] {
        assert!(body.contains(line), "{line} missing from {body}");
    }
}

#[test]
fn local_response_is_recorded_with_status_headers_and_body() {
    let host = host();
    let mut s = host.stream();
    let action = s.request_headers(&op("local-response", &[("x-probe-status", "429")]), true);
    assert_eq!(action, Action::Pause);
    let lr = s.local_response().unwrap();
    assert_eq!(lr.status, 429);
    assert_eq!(lr.body, b"denied by probe");
    assert_eq!(lr.headers.get("x-probe"), Some("local"));
    assert_eq!(lr.grpc_status, None);
}

#[test]
fn second_local_response_is_reported_and_ignored() {
    let host = host();
    let mut s = host.stream();
    s.request_headers(&op("local-response-twice", &[]), true);
    assert_eq!(s.local_response().unwrap().status, 401);
    let errors = s.errors();
    assert_eq!(errors.len(), 1);
    assert!(errors[0].contains("send_local_response called twice"));
    assert!(host
        .incidents()
        .iter()
        .any(|i| i.message.contains("twice") && i.context_id == s.id()));
}

#[test]
fn logs_carry_level_worker_and_message_and_respect_log_level() {
    let host = builder().log_level(Level::Warn).build().unwrap();
    let mut s = host.stream();
    s.request_headers(&op("log", &[("x-probe-value", "hello")]), true);
    s.response_headers(&response(200), true);
    assert_eq!(
        s.response_header_map().get("x-probe-log-level"),
        Some("Warn")
    );
    let errors = host.logs_at(Level::Error);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].message, "Error: hello");
    assert_eq!(errors[0].worker, 0);
    assert_eq!(errors[0].context_id, s.id());
    assert!(host
        .logs_at(Level::Info)
        .iter()
        .all(|l| !l.message.contains("hello")));
    assert_eq!(host.logs_at(Level::Critical).len(), 1);
}

#[test]
fn request_headers_are_gone_after_the_phase_continued() {
    // Envoy drops its request-header pointer once decodeHeaders continues: a read in the
    // response phase is a BadArgument, which the Rust SDK turns into a panic (a trap).
    let host = host();
    let mut s = host.stream();
    assert_eq!(
        s.request_headers(&op("late-read", &[]), true),
        Action::Continue
    );
    assert_eq!(s.response_headers(&response(200), true), Action::Pause);
    assert!(s
        .failure()
        .unwrap()
        .contains("proxy_on_response_headers trapped"));
    assert!(host
        .incidents()
        .iter()
        .any(|i| i.message.contains("request headers not available now")));
}

#[test]
fn host_calls_are_counted_per_request() {
    let host = common::host();
    let count = |op_name: &str| {
        let before = host.host_calls();
        let mut s = host.stream();
        s.request_headers(&common::op(op_name, &[]), true);
        s.response_headers(&wasmesh_harness::response(200), true);
        s.finish();
        host.host_calls() - before
    };
    let passthrough = count("none");
    assert!(passthrough > 0, "the probe reads its op header at least");
    assert_eq!(
        count("none"),
        passthrough,
        "the same request costs the same calls"
    );
    assert!(
        count("set-header") > passthrough,
        "editing headers costs more host calls"
    );
}

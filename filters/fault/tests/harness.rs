//! The compiled fault module in the harness: measured abort ratio, delays that last at
//! least as configured (on the manual clock), rules, header faults, the active-fault
//! cap, metrics and refused configs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;
use std::time::Duration;
use wasmesh_harness::{request, Action, Host, Module};
use wasmesh_testkit::{config_refusal, filter_under_test};

fn module() -> Module {
    filter_under_test("wasmesh-fault")
}

fn host(config: serde_json::Value) -> Host {
    let host = Host::builder(&module())
        .plugin_config(config.to_string())
        .build()
        .unwrap();
    assert!(host.configured(), "{:?}", host.logs());
    host
}

fn counter(host: &Host, name: &str, rule: &str) -> u64 {
    host.metric(&format!("{name};rule={rule}"))
        .map_or(0, |m| m.value)
}

fn with(path: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut h = request("GET", path, "example.com");
    h.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    h
}

#[test]
fn abort_ratio_over_2000_requests_is_within_3_points() {
    for (seed, pct) in [(None, 25.0), (Some(11u64), 50.0), (Some(3), 5.0)] {
        let mut cfg = json!({"abort": {"http_status": 503, "percentage": pct}});
        if let Some(seed) = seed {
            cfg["seed"] = json!(seed);
        }
        let host = host(cfg);
        let aborted = (0..2000)
            .filter(|_| {
                let mut s = host.stream();
                s.request_headers(&with("/", &[]), true) == Action::Pause
                    && s.local_response().is_some_and(|r| r.status == 503)
            })
            .count();
        let measured = aborted as f64 / 20.0;
        assert!((measured - pct).abs() <= 3.0, "{measured}% for {pct}%");
        assert_eq!(
            counter(&host, "wasmesh_fault_aborts_total", "default"),
            aborted as u64
        );
    }
}

#[test]
fn delay_lasts_at_least_the_configured_time() {
    let host = host(json!({"delay": {"fixed_delay": "200ms"}}));
    let mut s = host.stream();
    assert_eq!(s.request_headers(&with("/", &[]), true), Action::Pause);
    host.advance(Duration::from_millis(195));
    assert_eq!(s.request_resumed(), 0, "resumed before the delay was over");
    host.advance(Duration::from_millis(10));
    assert_eq!(s.request_resumed(), 1);
    assert!(s.local_response().is_none());
    assert_eq!(counter(&host, "wasmesh_fault_delays_total", "default"), 1);
}

#[test]
fn delayed_abort_answers_after_the_delay() {
    let host = host(
        json!({"delay": {"fixed_delay": "1s"}, "abort": {"http_status": 429, "body": "busy"}}),
    );
    let mut s = host.stream();
    assert_eq!(s.request_headers(&with("/", &[]), true), Action::Pause);
    assert!(s.local_response().is_none());
    host.advance(Duration::from_millis(1010));
    let r = s.local_response().unwrap();
    assert_eq!((r.status, r.body_str().as_str()), (429, "busy"));
    assert_eq!(r.details, "fault_filter_abort");
}

#[test]
fn rules_scope_faults_and_label_metrics() {
    let host = host(json!({
        "rules": [
            {"name": "slow_reads", "match": {"methods": ["GET"], "path": {"prefix": "/slow"}},
             "delay": {"fixed_delay": "50ms"}},
            {"name": "broken_writes", "match": {"methods": ["POST"]},
             "abort": {"http_status": 500}},
        ],
    }));
    let mut s = host.stream();
    assert_eq!(
        s.request_headers(&with("/slow/x", &[]), true),
        Action::Pause
    );
    let mut post = host.stream();
    post.request_headers(&request("POST", "/slow/x", "h"), true);
    assert_eq!(post.local_response().unwrap().status, 500);
    let mut other = host.stream();
    assert_eq!(
        other.request_headers(&with("/fast", &[]), true),
        Action::Continue
    );
    host.advance(Duration::from_millis(60));
    assert_eq!(s.request_resumed(), 1);
    assert_eq!(
        counter(&host, "wasmesh_fault_delays_total", "slow_reads"),
        1
    );
    assert_eq!(
        counter(&host, "wasmesh_fault_aborts_total", "broken_writes"),
        1
    );
}

#[test]
fn header_faults_follow_envoys_headers_when_enabled() {
    let off = host(
        json!({"rules": [{"name": "r", "match": {"path": {"exact": "/never"}},
                                     "abort": {"http_status": 500}}]}),
    );
    let mut s = off.stream();
    let asked = with("/", &[("x-envoy-fault-abort-request", "503")]);
    assert_eq!(s.request_headers(&asked, true), Action::Continue);

    let on = host(json!({"header_faults": true, "seed": 1}));
    let mut s = on.stream();
    assert_eq!(s.request_headers(&asked, true), Action::Pause);
    assert_eq!(s.local_response().unwrap().status, 503);
    let mut s = on.stream();
    let delay = with("/", &[("x-envoy-fault-delay-request", "100")]);
    assert_eq!(s.request_headers(&delay, true), Action::Pause);
    on.advance(Duration::from_millis(99));
    assert_eq!(s.request_resumed(), 0);
    on.advance(Duration::from_millis(10));
    assert_eq!(s.request_resumed(), 1);
    // Percentage headers: 0 never, and 50 about half.
    let zero = with(
        "/",
        &[
            ("x-envoy-fault-abort-request", "503"),
            ("x-envoy-fault-abort-request-percentage", "0"),
        ],
    );
    assert_eq!(on.stream().request_headers(&zero, true), Action::Continue);
    let half = with(
        "/",
        &[
            ("x-envoy-fault-abort-request", "503"),
            ("x-envoy-fault-abort-request-percentage", "50"),
        ],
    );
    let n = (0..2000)
        .filter(|_| on.stream().request_headers(&half, true) == Action::Pause)
        .count();
    assert!((940..=1060).contains(&n), "{n}");
    assert!(counter(&on, "wasmesh_fault_aborts_total", "header") > 900);
    let pct = with(
        "/",
        &[
            ("x-envoy-fault-delay-request", "100"),
            ("x-envoy-fault-delay-request-percentage", "0"),
        ],
    );
    assert_eq!(on.stream().request_headers(&pct, true), Action::Continue);
}

#[test]
fn max_active_faults_lets_requests_through_when_reached() {
    let host = host(json!({"max_active_faults": 2, "delay": {"fixed_delay": "1s"}}));
    let mut a = host.stream();
    let mut b = host.stream();
    let mut c = host.stream();
    assert_eq!(a.request_headers(&with("/", &[]), true), Action::Pause);
    assert_eq!(b.request_headers(&with("/", &[]), true), Action::Pause);
    assert_eq!(c.request_headers(&with("/", &[]), true), Action::Continue);
    assert_eq!(counter(&host, "wasmesh_fault_overflow_total", "default"), 1);
    // A client that gives up frees its slot.
    a.finish();
    let mut d = host.stream();
    assert_eq!(d.request_headers(&with("/", &[]), true), Action::Pause);
    host.advance(Duration::from_millis(1010));
    assert_eq!((b.request_resumed(), d.request_resumed()), (1, 1));
    assert_eq!(
        host.stream().request_headers(&with("/", &[]), true),
        Action::Pause
    );
}

#[test]
fn zero_percent_injects_nothing() {
    let host = host(json!({"abort": {"http_status": 503, "percentage": 0},
                           "delay": {"fixed_delay": "1s", "percentage": 0}}));
    for _ in 0..200 {
        assert_eq!(
            host.stream().request_headers(&with("/", &[]), true),
            Action::Continue
        );
    }
}

#[test]
fn malformed_config_is_refused_naming_the_field() {
    let host = Host::builder(&module())
        .plugin_config(json!({"abort": {"http_status": 503, "percentage": 250}}).to_string())
        .build()
        .unwrap();
    assert!(!host.configured());
    assert!(
        host.logged(&config_refusal(
            "wasmesh-fault",
            "abort.percentage",
            "must be 0-100"
        )),
        "{:?}",
        host.logs()
    );
}

//! Global rules of the compiled ratelimit module in the harness: the gRPC call it makes
//! to the rate limit service, and each way that call can end (OK, OVER_LIMIT with the
//! service's numbers, shadow mode, gRPC errors open and closed, a timeout, garbage).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;
use std::time::Duration;
use wasmesh_harness::{request, Action, GrpcState, Host, Module, Stream};
use wasmesh_ratelimit::rls::{Code, DescriptorStatus, RateLimitRequest, RateLimitResponse};
use wasmesh_testkit::{config_refusal, filter_under_test};

fn module() -> Module {
    filter_under_test("wasmesh-ratelimit")
}

fn config(deny: bool, shadow: bool) -> serde_json::Value {
    json!({
        "domain": "mesh",
        "rate_limit_service": {"cluster": "wasmesh_rls", "timeout": "40ms", "failure_mode_deny": deny},
        "rules": [{"name": "per-user", "global": true, "shadow": shadow, "key": ["header:x-user", "client_ip"]}]
    })
}

fn host(config: serde_json::Value) -> Host {
    let host = Host::builder(&module())
        .plugin_config(config.to_string())
        .property(&["source", "address"], "10.0.0.7:5000")
        .build()
        .unwrap();
    assert!(host.configured(), "{:?}", host.logs());
    host
}

/// Starts a request; it must pause on one gRPC call, whose token is returned.
fn start(host: &Host) -> (Stream<'_>, u32) {
    let mut s = host.stream();
    let mut h = request("GET", "/api/items", "example.com");
    h.push(("x-user".into(), "ann".into()));
    assert_eq!(s.request_headers(&h, true), Action::Pause);
    let pending = host.pending_grpc_calls();
    assert_eq!(pending.len(), 1, "{pending:?}");
    (s, pending[0].token)
}

fn status(code: Code, limit: u32, remaining: u32, reset_s: u64) -> DescriptorStatus {
    DescriptorStatus {
        code,
        limit: Some(limit),
        unit: 2,
        limit_remaining: remaining,
        reset_s: Some(reset_s),
    }
}

fn answer(code: Code, statuses: Vec<DescriptorStatus>) -> Vec<u8> {
    RateLimitResponse {
        overall_code: code,
        statuses,
    }
    .encode()
}

fn decisions(host: &Host, decision: &str) -> u64 {
    host.metric(&format!(
        "wasmesh_ratelimit_global_decisions_total;rule=per-user;decision={decision}"
    ))
    .map_or(0, |m| m.value)
}

fn header(s: &Stream, name: &str) -> Option<String> {
    s.response_header_map().get(name).map(str::to_string)
}

#[test]
fn the_call_carries_the_rules_descriptor() {
    let host = host(config(false, false));
    let (_s, token) = start(&host);
    let call = host
        .grpc_calls()
        .into_iter()
        .find(|c| c.token == token)
        .unwrap();
    assert_eq!(call.cluster, "wasmesh_rls");
    assert_eq!(call.service, "envoy.service.ratelimit.v3.RateLimitService");
    assert_eq!(call.method, "ShouldRateLimit");
    assert_eq!(call.timeout, Some(Duration::from_millis(40)));
    let sent = RateLimitRequest::decode(&call.messages[0]).unwrap();
    let e = |k: &str, v: &str| (k.to_string(), v.to_string());
    assert_eq!(sent.domain, "mesh");
    assert_eq!(
        sent.descriptors,
        [vec![
            e("generic_key", "per-user"),
            e("header:x-user", "ann"),
            e("remote_address", "10.0.0.7"),
        ]]
    );
}

#[test]
fn ok_resumes_and_the_response_carries_the_services_numbers() {
    let host = host(config(false, false));
    let (mut s, token) = start(&host);
    host.respond_grpc_call(token, &answer(Code::Ok, vec![status(Code::Ok, 10, 6, 42)]))
        .unwrap();
    assert_eq!(s.request_resumed(), 1);
    assert!(s.local_response().is_none());
    s.response_headers(&[(":status", "200")], true);
    assert_eq!(header(&s, "x-ratelimit-limit").as_deref(), Some("10"));
    assert_eq!(header(&s, "x-ratelimit-remaining").as_deref(), Some("6"));
    assert_eq!(header(&s, "x-ratelimit-reset").as_deref(), Some("42"));
    assert_eq!(decisions(&host, "ok"), 1);
    assert_eq!(host.grpc_calls()[0].state, GrpcState::Answered);
}

#[test]
fn over_limit_answers_429_with_the_headers() {
    let host = host(config(false, false));
    let (s, token) = start(&host);
    let reply = answer(Code::OverLimit, vec![status(Code::OverLimit, 10, 0, 17)]);
    host.respond_grpc_call(token, &reply).unwrap();
    let r = s.local_response().expect("a local reply");
    assert_eq!(r.status, 429);
    assert_eq!(r.body, b"local_rate_limited");
    let h = |n: &str| r.headers.get(n).map(str::to_string);
    assert_eq!(h("x-envoy-ratelimited").as_deref(), Some("true"));
    assert_eq!(h("x-ratelimit-limit").as_deref(), Some("10"));
    assert_eq!(h("x-ratelimit-remaining").as_deref(), Some("0"));
    assert_eq!(h("x-ratelimit-reset").as_deref(), Some("17"));
    assert_eq!(s.request_resumed(), 0);
    assert_eq!(decisions(&host, "over_limit"), 1);
}

#[test]
fn shadow_mode_counts_but_lets_the_request_through() {
    let host = host(config(false, true));
    let (s, token) = start(&host);
    let reply = answer(Code::OverLimit, vec![status(Code::OverLimit, 10, 0, 17)]);
    host.respond_grpc_call(token, &reply).unwrap();
    assert!(s.local_response().is_none());
    assert_eq!(s.request_resumed(), 1);
    assert_eq!(decisions(&host, "shadow_over_limit"), 1);
}

#[test]
fn a_grpc_error_fails_open_by_default() {
    let host = host(config(false, false));
    let (s, token) = start(&host);
    host.fail_grpc_call(token, 14).unwrap();
    assert!(s.local_response().is_none());
    assert_eq!(s.request_resumed(), 1);
    assert_eq!(decisions(&host, "error"), 1);
}

#[test]
fn a_grpc_error_fails_closed_with_failure_mode_deny() {
    let host = host(config(true, false));
    let (s, token) = start(&host);
    host.fail_grpc_call(token, 14).unwrap();
    let r = s.local_response().expect("a local reply");
    assert_eq!(r.status, 500);
    assert_eq!(s.request_resumed(), 0);
    assert_eq!(decisions(&host, "error"), 1);
}

#[test]
fn a_timeout_applies_the_failure_mode() {
    for deny in [false, true] {
        let host = host(config(deny, false));
        let (s, token) = start(&host);
        host.advance(Duration::from_millis(39));
        assert_eq!(host.pending_grpc_calls().len(), 1, "not yet due");
        host.advance(Duration::from_millis(1));
        let call = host
            .grpc_calls()
            .into_iter()
            .find(|c| c.token == token)
            .unwrap();
        assert_eq!(call.state, GrpcState::TimedOut);
        if deny {
            assert_eq!(s.local_response().map(|r| r.status), Some(500));
        } else {
            assert!(s.local_response().is_none());
            assert_eq!(s.request_resumed(), 1);
        }
    }
}

#[test]
fn a_malformed_reply_never_traps() {
    let garbage: [&[u8]; 5] = [
        &[0xff],
        &[0x12, 0x7f, 1, 2],
        &[0x08, 0x80, 0x80, 0x80],
        &[0x0b, 0x0c],
        &[0x12, 0x02, 0x22, 0x09],
    ];
    for (i, bytes) in garbage.iter().enumerate() {
        for deny in [false, true] {
            let host = host(config(deny, false));
            let (s, token) = start(&host);
            host.respond_grpc_call(token, bytes).unwrap();
            assert_eq!(s.failure(), None, "reply {i} trapped the VM");
            if deny {
                assert_eq!(s.local_response().map(|r| r.status), Some(500), "reply {i}");
            } else {
                assert_eq!(s.request_resumed(), 1, "reply {i}");
            }
        }
    }
}

#[test]
fn a_finished_stream_cancels_its_call() {
    let host = host(config(false, false));
    let (mut s, token) = start(&host);
    s.finish();
    let call = host
        .grpc_calls()
        .into_iter()
        .find(|c| c.token == token)
        .unwrap();
    assert_eq!(call.state, GrpcState::Cancelled);
    assert!(host
        .respond_grpc_call(token, &answer(Code::Ok, vec![]))
        .is_err());
}

#[test]
fn a_global_rule_without_a_service_is_refused() {
    let host = Host::builder(&module())
        .plugin_config(json!({"rules": [{"name": "g", "global": true}]}).to_string())
        .build()
        .unwrap();
    assert!(!host.configured());
    let want = config_refusal(
        "wasmesh-ratelimit",
        "rules[0].global",
        "a global rule needs `rate_limit_service`",
    );
    assert!(host.logged(&want), "{:?}", host.logs());
}

/// The twin of integration/tests/ratelimit_global.rs's unknown-cluster test: the host
/// refuses the call (ParseFailure, as Envoy 1.40 does for a cluster it lacks), and every
/// request gets the failure mode, with no pause and no trap.
#[test]
fn a_rule_naming_a_cluster_the_host_lacks_fails_into_its_mode() {
    for deny in [false, true] {
        let host = Host::builder(&module())
            .plugin_config(config(deny, false).to_string())
            .property(&["source", "address"], "10.0.0.7:5000")
            .cluster("some_other_cluster")
            .build()
            .unwrap();
        assert!(host.configured(), "{:?}", host.logs());
        for _ in 0..3 {
            let mut s = host.stream();
            let action = s.request_headers(&request("GET", "/api/items", "example.com"), true);
            if deny {
                assert_eq!(s.local_response().expect("a local reply").status, 500);
            } else {
                assert_eq!(action, Action::Continue);
                assert!(s.local_response().is_none());
            }
        }
        assert!(host.pending_grpc_calls().is_empty());
        assert_eq!(decisions(&host, "error"), 3);
        assert_eq!(host.vm_failure(0), None);
    }
}

//! Outgoing HTTP calls (answered, failed, timed out, cancelled), gRPC records and foreign
//! functions.

mod common;
use common::{builder, host, op};
use std::time::Duration;
use wasmesh_harness::{response, Action, CallState, HarnessError, Status};

#[test]
fn callout_is_captured_then_answered_and_the_request_resumes() {
    let host = builder().cluster("auth").build().unwrap();
    let mut s = host.stream();
    let h = op(
        "callout",
        &[("x-probe-cluster", "auth"), ("x-probe-value", "payload")],
    );
    assert_eq!(s.request_headers(&h, true), Action::Pause);
    let calls = host.pending_http_calls();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.cluster, "auth");
    assert_eq!(call.headers.get(":method"), Some("POST"));
    assert_eq!(call.headers.get(":path"), Some("/probe/callout"));
    assert_eq!(call.headers.get(":authority"), Some("probe.upstream"));
    assert_eq!(call.headers.get("content-length"), Some("7"));
    assert_eq!(call.body, b"payload");
    assert_eq!(call.timeout, Some(Duration::from_secs(1)));
    assert_eq!((call.worker, call.context_id), (0, s.id()));
    assert_eq!(s.request_resumed(), 0);

    host.respond_http_call(call.token, &[(":status", "200")], "allowed")
        .unwrap();
    assert_eq!(s.request_resumed(), 1);
    assert_eq!(
        s.request_header_map().get("x-probe-callout-status"),
        Some("200")
    );
    s.response_headers(&response(200), true);
    assert_eq!(
        s.response_header_map().get("x-probe-callout-body"),
        Some("allowed")
    );
    assert_eq!(host.http_calls()[0].state, CallState::Answered);
    // A call is answered once.
    assert!(matches!(
        host.respond_http_call(call.token, &[(":status", "200")], ""),
        Err(HarnessError::NoPendingCall(_))
    ));
}

#[test]
fn callout_response_body_drives_a_local_response() {
    let host = host();
    let mut s = host.stream();
    s.request_headers(&op("callout", &[]), true);
    let token = host.pending_http_calls()[0].token;
    host.respond_http_call(token, &[(":status", "403")], "no way")
        .unwrap();
    let lr = s.local_response().unwrap();
    assert_eq!(
        (lr.status, lr.body_str()),
        (403, "callout denied: no way".into())
    );
    assert_eq!(s.request_resumed(), 0);
}

#[test]
fn failed_callout_is_delivered_with_zero_headers() {
    let host = host();
    let mut s = host.stream();
    s.request_headers(&op("callout", &[]), true);
    let token = host.pending_http_calls()[0].token;
    host.fail_http_call(token).unwrap();
    assert_eq!(s.local_response().unwrap().status, 503);
    assert_eq!(host.http_calls()[0].state, CallState::Failed);
}

#[test]
fn callout_times_out_on_the_manual_clock() {
    let host = host();
    let mut s = host.stream();
    s.request_headers(&op("callout", &[("x-probe-timeout-ms", "250")]), true);
    host.advance(Duration::from_millis(249));
    assert!(s.local_response().is_none());
    host.advance(Duration::from_millis(1));
    // Envoy answers a timed-out call with its own 504; the probe reports it and resumes.
    assert!(s.local_response().is_none());
    assert_eq!(s.request_resumed(), 1);
    assert_eq!(host.http_calls()[0].state, CallState::TimedOut);
    s.response_headers(&response(200), true);
    let resp = s.response_header_map();
    assert_eq!(resp.get("x-probe-callout-status"), Some("504"));
    assert_eq!(
        resp.get("x-probe-callout-body"),
        Some("upstream request timeout")
    );
}

#[test]
fn callout_to_an_unknown_cluster_is_a_bad_argument() {
    let host = builder().cluster("known").build().unwrap();
    let mut s = host.stream();
    s.request_headers(&op("callout", &[("x-probe-cluster", "unknown")]), true);
    let lr = s.local_response().unwrap();
    assert_eq!(
        (lr.status, lr.body_str()),
        (500, "callout failed: BadArgument".into())
    );
    assert!(host.http_calls().is_empty());
    assert!(host
        .incidents()
        .iter()
        .any(|i| i.message.contains("unknown cluster")));
}

#[test]
fn callouts_of_a_finished_stream_are_cancelled() {
    let host = host();
    let mut s = host.stream();
    s.request_headers(&op("callout", &[]), true);
    let token = host.pending_http_calls()[0].token;
    s.finish();
    assert_eq!(host.http_calls()[0].state, CallState::Cancelled);
    assert!(host
        .respond_http_call(token, &[(":status", "200")], "")
        .is_err());
}

#[test]
fn grpc_calls_are_recorded() {
    let host = host();
    let mut s = host.stream();
    s.request_headers(&op("grpc", &[("x-probe-cluster", "grpc_upstream")]), true);
    let calls = host.grpc_calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].cluster, "grpc_upstream");
    assert_eq!(calls[0].service, "probe.Service");
    assert_eq!(calls[0].method, "Call");
    assert_eq!(calls[0].messages, vec![b"message".to_vec()]);
    assert_eq!(calls[0].initial_metadata.get("x-probe"), Some("1"));
    assert!(!calls[0].streaming);
}

#[test]
fn registered_foreign_functions_are_called_with_their_arguments() {
    let host = builder()
        .foreign_function("shout", |args| Ok(args.to_ascii_uppercase()))
        .foreign_function("refuse", |_| Err(Status::BadArgument))
        .build()
        .unwrap();
    let call = |name: &str| {
        let mut s = host.stream();
        let h = op(
            "foreign",
            &[("x-probe-function", name), ("x-probe-value", "abc")],
        );
        s.request_headers(&h, true);
        let lr = s.local_response().unwrap();
        (lr.status, lr.body_str())
    };
    assert_eq!(call("shout"), (200, "ABC".into()));
    assert_eq!(call("refuse"), (404, "BadArgument".into()));
    assert_eq!(call("missing"), (404, "NotFound".into()));
    let calls = host.foreign_calls();
    assert_eq!(calls.len(), 3);
    assert_eq!(
        (calls[0].name.as_str(), calls[0].args.as_slice()),
        ("shout", b"abc".as_slice())
    );
}

#[test]
fn clear_route_cache_is_known_and_counted_per_stream() {
    let host = host();
    let mut s = host.stream();
    s.request_headers(&op("clear-route-cache", &[]), true);
    s.response_headers(&response(200), true);
    assert_eq!(s.route_cache_cleared(), 1);
    assert_eq!(s.response_header_map().get("x-probe-result"), Some("Ok"));
    let mut other = host.stream();
    other.request_headers(&op("none", &[]), true);
    assert_eq!(other.route_cache_cleared(), 0);
}

#[test]
fn close_stream_is_recorded() {
    let host = host();
    let mut s = host.stream();
    s.request_headers(&op("close", &[]), true);
    assert!(s.request_closed());
    assert!(!s.response_closed());
}

//! Traps: the stream fails with the trap message, the VM fails closed (503 for later
//! streams, as Envoy's FAIL_CLOSED), other workers carry on.

mod common;
use common::{builder, host, op};
use wasmesh_harness::{request, response, Action};

#[test]
fn trap_fails_the_stream_and_the_vm_closed() {
    let host = builder().workers(2).build().unwrap();
    let mut s = host.stream();
    assert_eq!(s.request_headers(&op("trap", &[]), true), Action::Pause);
    let failure = s.failure().unwrap();
    assert!(
        failure.contains("proxy_on_request_headers trapped"),
        "{failure}"
    );
    assert!(failure.contains("unreachable"), "{failure}");
    let lr = s.local_response().unwrap();
    assert_eq!((lr.status, lr.details.as_str()), (503, "wasm_fail_stream"));
    assert_eq!(lr.grpc_status, Some(14));
    assert!(host.vm_failure(0).is_some());
    // The response side passes through without the VM.
    assert_eq!(s.response_headers(&response(200), true), Action::Continue);
    s.finish();

    // A new stream on the failed VM gets the 503 without reaching the filter.
    let mut next = host.stream();
    assert_eq!(
        next.request_headers(&op("set-header", &[]), true),
        Action::Pause
    );
    assert_eq!(next.local_response().unwrap().status, 503);
    assert!(!next.request_header_map().contains("x-probe-added"));

    // Worker 1 is a separate VM and still serves.
    let mut other = host.stream_on(1).unwrap();
    assert_eq!(
        other.request_headers(&op("set-header", &[]), true),
        Action::Continue
    );
    assert!(other.local_response().is_none());
    assert!(host.vm_failure(1).is_none());
}

#[test]
fn trap_in_the_response_phase_fails_the_stream() {
    let host = host();
    let mut s = host.stream();
    assert_eq!(
        s.request_headers(&op("trap-response", &[]), true),
        Action::Continue
    );
    assert_eq!(s.response_headers(&response(200), true), Action::Pause);
    assert!(s.failure().is_some());
    assert_eq!(s.local_response().unwrap().status, 503);
}

#[test]
fn streams_open_before_the_failure_fail_on_their_next_phase() {
    let host = host();
    let mut early = host.stream();
    early.request_headers(&request("GET", "/", "a"), false);
    let mut bad = host.stream();
    bad.request_headers(&op("trap", &[]), true);
    assert_eq!(early.request_body("x", true), Action::Pause);
    assert_eq!(early.local_response().unwrap().details, "wasm_fail_stream");
}

//! Bodies and trailers: buffering on pause, rewriting, appending, and the trailers pitfall.

mod common;
use common::{host, op};
use wasmesh_harness::{response, Action};

#[test]
fn paused_body_chunks_are_buffered_and_rewritten_at_end_of_stream() {
    let host = host();
    let mut s = host.stream();
    assert_eq!(
        s.request_headers(&op("body-buffer", &[]), false),
        Action::Continue
    );
    assert_eq!(s.request_body("hello ", false), Action::Pause);
    assert_eq!(s.request_body_buffered(), b"hello ");
    assert_eq!(s.request_body("world", true), Action::Continue);
    assert_eq!(s.request_body_bytes(), b"PROBE:HELLO WORLD");
    assert!(s.request_body_buffered().is_empty());
    s.response_headers(&response(200), true);
    // The filter saw the whole buffered body (11 bytes) at end of stream.
    assert_eq!(
        s.response_header_map().get("x-probe-request-body-size"),
        Some("11")
    );
}

#[test]
fn response_body_is_appended_to_at_end_of_stream() {
    let host = host();
    let mut s = host.stream();
    s.request_headers(&op("response-body", &[]), true);
    s.response_headers(&response(200), false);
    assert_eq!(s.response_body("abc", false), Action::Pause);
    assert_eq!(s.response_body("def", true), Action::Continue);
    assert_eq!(s.response_body_bytes(), b"abcdef [probed]");
}

#[test]
fn unpaused_chunks_pass_through_one_by_one() {
    let host = host();
    let mut s = host.stream();
    s.request_headers(&op("none", &[]), false);
    assert_eq!(s.request_body("a", false), Action::Continue);
    assert_eq!(s.request_body("b", true), Action::Continue);
    assert_eq!(s.request_body_bytes(), b"ab");
}

#[test]
fn with_trailers_the_body_never_sees_end_of_stream() {
    let host = host();
    let mut s = host.stream();
    s.request_headers(&op("trailers", &[]), false);
    assert_eq!(s.request_body("payload", false), Action::Pause);
    assert_eq!(
        s.request_trailers(&[("grpc-status", "0")]),
        Action::Continue
    );
    // The buffered body was readable from the trailers callback and is released with them.
    assert_eq!(s.request_body_bytes(), b"payload");
    assert_eq!(
        s.request_trailer_map().get("x-probe-trailer"),
        Some("added")
    );
    s.response_headers(&response(200), true);
    let resp = s.response_header_map();
    assert_eq!(resp.get("x-probe-body-eos"), Some("false"));
    assert_eq!(resp.get("x-probe-buffered-at-trailers"), Some("7"));
}

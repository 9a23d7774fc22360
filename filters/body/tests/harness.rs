//! The compiled body filter in the harness: 413 by content-length before any body,
//! 413 mid-stream with the earlier chunks already let through (nothing buffered),
//! the exact-limit boundary, response limits (502 at the headers, reset mid-body),
//! JSON rewrites (set, remove, rename) sent on without a content-length, the content-type
//! guard, malformed JSON in both modes, the size cap in both modes, and no trap on
//! arbitrary bodies.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use std::sync::OnceLock;
use wasmesh_harness::{request, response, Action, Host, Level, Module};
use wasmesh_testkit::{config_refusal, filter_under_test};

fn module() -> &'static Module {
    static MODULE: OnceLock<Module> = OnceLock::new();
    MODULE.get_or_init(|| filter_under_test("wasmesh-body"))
}

fn host(config: &str) -> Host {
    let host = Host::builder(module())
        .plugin_config(config)
        .build()
        .unwrap();
    assert!(
        host.configured(),
        "refused: {:?}",
        host.logs_at(Level::Error)
    );
    host
}

fn post(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut h = request("POST", "/api/items", "shop");
    h.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    h
}

const LIMIT: &str = r#"{"limit":{"maxRequestBytes":10,"maxResponseBytes":8}}"#;

#[test]
fn a_declared_length_over_the_limit_is_413_before_any_body() {
    let host = host(LIMIT);
    let mut s = host.stream();
    let action = s.request_headers(&post(&[("content-length", "11")]), false);
    assert_eq!(action, Action::Pause);
    let reply = s.local_response().expect("answered");
    assert_eq!(reply.status, 413);
    assert_eq!(reply.body, b"Payload Too Large");
    assert_eq!(reply.details, "wasmesh_body_too_large");
}

#[test]
fn exactly_the_limit_passes_by_length_and_by_count() {
    let host = host(LIMIT);
    let mut s = host.stream();
    assert_eq!(
        s.request_headers(&post(&[("content-length", "10")]), false),
        Action::Continue
    );
    assert_eq!(s.request_body(b"0123456789", true), Action::Continue);
    assert!(s.local_response().is_none());
    let mut s = host.stream();
    assert_eq!(s.request_headers(&post(&[]), false), Action::Continue);
    assert_eq!(s.request_body(b"01234", false), Action::Continue);
    assert_eq!(s.request_body(b"56789", true), Action::Continue);
    assert!(s.local_response().is_none());
    assert_eq!(s.request_body_bytes(), b"0123456789");
}

#[test]
fn a_streamed_body_is_counted_and_refused_mid_stream_without_buffering() {
    let host = host(LIMIT);
    let mut s = host.stream();
    assert_eq!(s.request_headers(&post(&[]), false), Action::Continue);
    assert_eq!(s.request_body(b"0123", false), Action::Continue);
    assert!(s.request_body_buffered().is_empty(), "nothing held back");
    assert_eq!(s.request_body(b"4567", false), Action::Continue);
    assert!(s.request_body_buffered().is_empty());
    // The chunk that passes the limit is answered; the earlier ones went on.
    assert_eq!(s.request_body(b"89A", false), Action::Pause);
    assert_eq!(s.local_response().expect("answered").status, 413);
    assert!(s.request_body_bytes().starts_with(b"01234567"));
}

#[test]
fn a_response_over_the_limit_is_502_by_length_and_reset_mid_body() {
    let host = host(LIMIT);
    let mut s = host.stream();
    s.request_headers(&request("GET", "/", "shop"), true);
    let mut r = response(200);
    r.push(("content-length".into(), "9".into()));
    assert_eq!(s.response_headers(&r, false), Action::Pause);
    let reply = s.local_response().expect("answered");
    assert_eq!(reply.status, 502);
    assert_eq!(reply.details, "wasmesh_response_body_too_large");

    let mut s = host.stream();
    s.request_headers(&request("GET", "/", "shop"), true);
    assert_eq!(s.response_headers(&response(200), false), Action::Continue);
    assert_eq!(s.response_body(b"01234567", false), Action::Continue);
    assert!(!s.response_closed());
    assert_eq!(s.response_body(b"8", true), Action::Pause);
    assert!(
        s.response_closed(),
        "the response is reset: its headers went on"
    );
    assert!(s.local_response().is_none());
}

#[test]
fn reset_mode_resets_a_response_declared_too_long() {
    let host = host(r#"{"limit":{"maxResponseBytes":4,"responseOverLimit":"RESET"}}"#);
    let mut s = host.stream();
    s.request_headers(&request("GET", "/", "shop"), true);
    let mut r = response(200);
    r.push(("content-length".into(), "5".into()));
    assert_eq!(s.response_headers(&r, false), Action::Continue);
    assert_eq!(s.response_body(b"x", false), Action::Pause);
    assert!(s.response_closed());
    assert_eq!(
        s.response_body_buffered(),
        b"x",
        "the chunk was held, not passed on"
    );
}

const JSON: &str = r#"{"json":{
  "request":{"remove":["/password"],"rename":[{"from":"/user_name","to":"/user/name"}],"set":[{"pointer":"/source","value":"mesh"}]},
  "response":{"remove":["/internal"]},
  "maxBytes":64}}"#;

fn json_post(length: Option<usize>) -> Vec<(String, String)> {
    let mut h = post(&[("content-type", "application/json; charset=utf-8")]);
    if let Some(n) = length {
        h.push(("content-length".into(), n.to_string()));
    }
    h
}

#[test]
fn a_json_request_goes_on_without_its_length_and_its_body_is_held_and_rewritten() {
    let host = host(JSON);
    let mut s = host.stream();
    let body = br#"{"user_name":"ann","password":"x","n":1}"#;
    // Envoy hands a Wasm filter that holds its headers no body: they go on now,
    // without a length the rewrite would make wrong.
    assert_eq!(
        s.request_headers(&json_post(Some(body.len())), false),
        Action::Continue
    );
    assert_eq!(s.request_header_map().get("content-length"), None);
    assert_eq!(s.request_body(&body[..10], false), Action::Pause);
    assert_eq!(s.request_body(&body[10..], true), Action::Continue);
    let out = br#"{"n":1,"source":"mesh","user":{"name":"ann"}}"#;
    assert_eq!(s.request_body_bytes(), out);
    assert_eq!(s.request_header_map().get("content-length"), None);
}

#[test]
fn a_chunked_json_request_stays_without_a_length() {
    let host = host(JSON);
    let mut s = host.stream();
    assert_eq!(s.request_headers(&json_post(None), false), Action::Continue);
    assert_eq!(s.request_body(br#"{"password":1}"#, true), Action::Continue);
    assert_eq!(s.request_body_bytes(), br#"{"source":"mesh"}"#);
    assert_eq!(s.request_header_map().get("content-length"), None);
}

#[test]
fn a_json_response_is_rewritten() {
    let host = host(JSON);
    let mut s = host.stream();
    s.request_headers(&request("GET", "/", "shop"), true);
    let mut r = response(200);
    r.push(("content-type".into(), "application/problem+json".into()));
    r.push(("content-length".into(), "24".into()));
    assert_eq!(s.response_headers(&r, false), Action::Continue);
    assert_eq!(s.response_header_map().get("content-length"), None);
    assert_eq!(
        s.response_body(br#"{"internal":true,"ok":1}"#, true),
        Action::Continue
    );
    assert_eq!(s.response_body_bytes(), br#"{"ok":1}"#);
}

#[test]
fn only_json_content_types_are_touched() {
    let host = host(JSON);
    for ct in ["text/plain", "application/jsonx", "multipart/form-data"] {
        let mut s = host.stream();
        let h = post(&[("content-type", ct)]);
        assert_eq!(s.request_headers(&h, false), Action::Continue, "{ct}");
        assert_eq!(s.request_body(br#"{"password":1}"#, true), Action::Continue);
        assert_eq!(s.request_body_bytes(), br#"{"password":1}"#, "{ct}");
    }
    let mut s = host.stream();
    let h = post(&[
        ("content-type", "application/json"),
        ("content-encoding", "gzip"),
    ]);
    assert_eq!(s.request_headers(&h, false), Action::Continue);
}

#[test]
fn malformed_json_passes_by_default_and_is_400_when_refused() {
    let host_pass = host(JSON);
    let mut s = host_pass.stream();
    s.request_headers(&json_post(Some(5)), false);
    assert_eq!(s.request_body(b"{\"a\":", true), Action::Continue);
    assert_eq!(s.request_body_bytes(), b"{\"a\":");
    // The length went with the headers, before the body showed it was not JSON.
    assert_eq!(s.request_header_map().get("content-length"), None);

    let refuse = JSON.replace(r#""maxBytes":64"#, r#""maxBytes":64,"malformed":"REJECT""#);
    let host_refuse = host(&refuse);
    let mut s = host_refuse.stream();
    s.request_headers(&json_post(None), false);
    assert_eq!(s.request_body(b"{\"a\":", true), Action::Pause);
    let reply = s.local_response().expect("answered");
    assert_eq!(reply.status, 400);
    assert_eq!(reply.details, "wasmesh_body_not_json");
    let mut s = host_refuse.stream();
    s.request_headers(&request("GET", "/", "shop"), true);
    let mut r = response(200);
    r.push(("content-type".into(), "application/json".into()));
    s.response_headers(&r, false);
    // Its headers went on already: the stream is reset, not answered.
    assert_eq!(s.response_body(b"not json", true), Action::Pause);
    assert!(s.local_response().is_none());
    assert!(s.response_closed(), "response reset");
}

#[test]
fn bodies_over_the_cap_pass_untouched_or_are_refused() {
    let big = format!(r#"{{"password":"{}"}}"#, "x".repeat(80));
    let host_pass = host(JSON);
    let mut s = host_pass.stream();
    assert_eq!(
        s.request_headers(&json_post(Some(big.len())), false),
        Action::Continue,
        "known too long: not held"
    );
    let mut s = host_pass.stream();
    assert_eq!(s.request_headers(&json_post(None), false), Action::Continue);
    assert_eq!(s.request_body(&big.as_bytes()[..40], false), Action::Pause);
    assert_eq!(
        s.request_body(&big.as_bytes()[40..], true),
        Action::Continue
    );
    assert_eq!(s.request_body_bytes(), big.as_bytes(), "untouched");

    let refuse = JSON.replace(
        r#""maxBytes":64"#,
        r#""maxBytes":64,"overMaxBytes":"REJECT""#,
    );
    let host_refuse = host(&refuse);
    let mut s = host_refuse.stream();
    assert_eq!(
        s.request_headers(&json_post(Some(big.len())), false),
        Action::Pause
    );
    assert_eq!(s.local_response().expect("answered").status, 413);
    let mut s = host_refuse.stream();
    s.request_headers(&json_post(None), false);
    assert_eq!(s.request_body(big.as_bytes(), false), Action::Pause);
    assert_eq!(s.local_response().expect("answered").status, 413);
}

#[test]
fn trailers_end_a_held_body() {
    let host = host(JSON);
    let mut s = host.stream();
    s.request_headers(&json_post(Some(14)), false);
    assert_eq!(s.request_body(br#"{"password":1}"#, false), Action::Pause);
    assert_eq!(s.request_trailers(&[("x-t", "1")]), Action::Continue);
    assert_eq!(s.request_body_bytes(), br#"{"source":"mesh"}"#);
    assert_eq!(s.request_header_map().get("content-length"), None);
}

#[test]
fn bad_configs_are_refused_naming_the_field() {
    let host = Host::builder(module())
        .plugin_config(r#"{"json":{"request":{"remove":["nope"]}}}"#)
        .build()
        .unwrap();
    assert!(!host.configured());
    let want = config_refusal(
        "wasmesh-body",
        "json.request.remove[0]",
        "`nope` is not a JSON pointer (it must start with `/`)",
    );
    assert!(host.logged(&want), "{:?}", host.logs_at(Level::Error));
}

fn rewrite_host() -> &'static Host {
    static HOST: OnceLock<Host> = OnceLock::new();
    HOST.get_or_init(|| {
        host(
            r#"{"limit":{"maxRequestBytes":4096},"json":{"request":{"remove":["/a/0"],"rename":[{"from":"/b","to":"/c/d"}],"set":[{"pointer":"/e/-","value":[1]}]},"maxBytes":2048,"malformed":"REJECT"}}"#,
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    /// Whatever the body and however it is cut, the filter answers without trapping,
    /// and a body it passes on is valid JSON or untouched.
    #[test]
    fn arbitrary_bodies_never_trap(
        body in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..3000),
            "[\\[\\]{}\":,a-e0-9 ]{0,600}".prop_map(String::into_bytes),
            (1usize..400).prop_map(|n| format!("{}{}", "[".repeat(n), "]".repeat(n)).into_bytes()),
        ],
        cut in 0usize..3000,
    ) {
        let mut s = rewrite_host().stream();
        s.request_headers(&json_post(None), false);
        let cut = cut.min(body.len());
        s.request_body(&body[..cut], false);
        s.request_body(&body[cut..], true);
        prop_assert!(s.failure().is_none(), "{:?}", s.failure());
        if s.local_response().is_none() {
            let out = s.request_body_bytes();
            prop_assert!(out == body || balanced_json(&out));
        }
        s.finish();
    }
}

fn balanced_json(bytes: &[u8]) -> bool {
    // A passed-on rewrite starts like a JSON value and is balanced.
    let depth = bytes.iter().fold(0i64, |d, b| match b {
        b'[' | b'{' => d + 1,
        b']' | b'}' => d - 1,
        _ => d,
    });
    !bytes.is_empty() && depth == 0
}

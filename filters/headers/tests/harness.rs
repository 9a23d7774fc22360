//! The compiled headers filter in the harness: every config field, its edges, and a
//! property-based check that no request input makes the module trap.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use std::sync::OnceLock;
use wasmesh_harness::{request, response, Action, Host, Level, Module};
use wasmesh_testkit::{filter_under_test, through_mesh};

fn module() -> &'static Module {
    static MODULE: OnceLock<Module> = OnceLock::new();
    MODULE.get_or_init(|| filter_under_test("wasmesh-headers"))
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

fn with(mut base: Vec<(String, String)>, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    base.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    base
}

#[test]
fn request_and_response_edits() {
    let host = host(
        r#"{"request":{"set":[{"name":"x-set","value":"s"}],"set_if_absent":[{"name":"x-default","value":"d"}],
             "add":[{"name":"x-add","value":"a"}],"remove":["x-remove"],"rename":[{"from":"x-old","to":"x-new"}]},
            "response":{"set":[{"name":"x-resp","value":"%REQ(x-set)%"}],"remove":["server"]}}"#,
    );
    let mut s = host.stream();
    let headers = with(
        request("GET", "/p", "h"),
        &[
            ("x-remove", "1"),
            ("x-old", "o"),
            ("x-add", "0"),
            ("x-set", "old"),
        ],
    );
    assert_eq!(s.request_headers(&headers, true), Action::Continue);
    let req = s.request_header_map();
    assert_eq!(req.get("x-set"), Some("s"));
    assert_eq!(req.get("x-default"), Some("d"));
    assert_eq!(req.get_all("x-add"), vec!["0", "a"]);
    assert_eq!(req.get("x-remove"), None);
    assert_eq!((req.get("x-old"), req.get("x-new")), (None, Some("o")));
    assert_eq!(
        s.route_cache_cleared(),
        1,
        "request edits must clear the route cache"
    );
    let resp = with(response(200), &[("server", "envoy")]);
    s.response_headers(&resp, true);
    assert_eq!(
        s.response_header_map().get("x-resp"),
        Some("old"),
        "templates see the request as it arrived"
    );
    assert_eq!(s.response_header_map().get("server"), None);
}

#[test]
fn route_cache_is_left_alone_without_request_edits_or_when_disabled() {
    let host1 = host(r#"{"response":{"set":[{"name":"x","value":"1"}]}}"#);
    let mut s = host1.stream();
    s.request_headers(&request("GET", "/", "h"), true);
    assert_eq!(s.route_cache_cleared(), 0);
    let host2 = host(r#"{"clear_route_cache":false,"request":{"set":[{"name":"x","value":"1"}]}}"#);
    let mut s = host2.stream();
    s.request_headers(&request("GET", "/", "h"), true);
    assert_eq!(s.route_cache_cleared(), 0);
}

#[test]
fn rules_rewrite_and_query_edits() {
    let host = host(
        r#"{"rules":[{"match":{"path":{"template":"/users/{id}"},"methods":["GET"]},
                      "request":{"rewrite":{"regex":{"pattern":"^/users/(\\w+)$","substitution":"/v2/users/$1"}},
                                 "query":{"set":[{"name":"src","value":"%METHOD%"}],"remove":["debug"]}}}]}"#,
    );
    let mut s = host.stream();
    s.request_headers(&request("GET", "/users/42?debug=1&keep=2", "h"), true);
    assert_eq!(
        s.request_header_map().get(":path"),
        Some("/v2/users/42?keep=2&src=GET")
    );
    let mut s = host.stream();
    s.request_headers(&request("POST", "/users/42", "h"), true);
    assert_eq!(s.request_header_map().get(":path"), Some("/users/42"));
}

#[test]
fn pseudo_headers_are_editable_only_when_allowed() {
    let refused = Host::builder(module())
        .plugin_config(r#"{"request":{"set":[{"name":":authority","value":"x"}]}}"#)
        .build()
        .unwrap();
    assert!(!refused.configured());
    assert!(refused.logged("request.set[0].name: `:authority` is a pseudo-header"));
    let allowed = host(
        r#"{"allow_pseudo_headers":true,"request":{"set":[{"name":":authority","value":"internal"}]}}"#,
    );
    let mut s = allowed.stream();
    s.request_headers(&request("GET", "/", "public"), true);
    assert_eq!(s.request_header_map().get(":authority"), Some("internal"));
}

#[test]
fn properties_feed_templates() {
    let host = host(
        r#"{"request":{"set":[{"name":"x-client","value":"%SOURCE_IP% %ROUTE_NAME% %PEER_PRINCIPAL%"}]}}"#,
    );
    let mut s = host.stream();
    s.set_property(&["source", "address"], "10.1.2.3:5555");
    s.set_property(&["route_name"], "reviews");
    s.set_property(
        &["connection", "uri_san_peer_certificate"],
        "spiffe://td/ns/a/sa/b",
    );
    s.request_headers(&request("GET", "/", "h"), true);
    assert_eq!(
        s.request_header_map().get("x-client"),
        Some("10.1.2.3 reviews spiffe://td/ns/a/sa/b")
    );
}

#[test]
fn empty_config_passes_everything_untouched() {
    let host = host("");
    let mut s = host.stream();
    let headers = request("GET", "/", "h");
    s.request_headers(&headers, true);
    assert_eq!(s.request_header_map().len(), headers.len());
    assert_eq!(s.route_cache_cleared(), 0);
}

fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("x-user".to_string()),
        Just("x-old".to_string()),
        Just(":path".to_string()),
        "[a-z-]{1,12}",
        // Anything a hostile client might send, including bytes that are not tokens.
        "\\PC{0,16}",
    ]
}

fn header_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,40}",
        "\\PC{0,40}",
        Just("%REQ(x)%\r\n".to_string())
    ]
}

fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        "/[a-z/.%0-9A-F?#&=]{0,40}",
        "\\PC{0,40}",
        Just("//users/../users/7?x=%zz".to_string()),
        Just(String::new()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, ..ProptestConfig::default() })]

    /// No request input makes the filter trap, refuse the stream, or send a reply.
    #[test]
    fn no_input_traps(
        method in prop_oneof![Just("GET".to_string()), "[A-Z]{0,8}", "\\PC{0,8}"],
        path in path(),
        extra in proptest::collection::vec((header_name(), header_value()), 0..6),
        body in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let host = fuzz_host();
        let mut s = host.stream();
        // Through the mesh module the authz stage answers a path the SDK refuses with
        // 400, as authz alone does; the headers stage itself never replies.
        let refused_path = wasmesh_sdk::path::normalize(&path, &Default::default()).is_err();
        let mut headers = vec![(":method".to_string(), method), (":path".to_string(), path), (":authority".to_string(), "h".to_string())];
        headers.extend(extra);
        s.request_headers(&headers, body.is_empty());
        if !body.is_empty() {
            s.request_body(&body, true);
        }
        s.response_headers(&response(200), true);
        s.finish();
        prop_assert!(s.failure().is_none(), "trap: {:?}", s.failure());
        if let Some(reply) = s.local_response() {
            prop_assert!(through_mesh() && refused_path && reply.status == 400, "{reply:?}");
        }
    }
}

/// One host for the property test (its VM is reused across cases, as Envoy reuses a
/// worker's VM across requests, so leaks or state corruption would show too).
fn fuzz_host() -> &'static Host {
    static HOST: OnceLock<Host> = OnceLock::new();
    HOST.get_or_init(|| {
        host(
            r#"{"request":{"set":[{"name":"x-copy","value":"%REQ(x-user)% %PATH% %HOST% %START_TIME%"}],
                           "rename":[{"from":"x-old","to":"x-new"}],"query":{"set":[{"name":"q","value":"%METHOD%"}]}},
                "rules":[{"match":{"path":{"template":"/users/{id}"}},"request":{"rewrite":{"prefix":{"from":"/users/","to":"/u/"}}}}],
                "response":{"add":[{"name":"x-echo","value":"%REQ(x-user)%"}]}}"#,
        )
    })
}

//! The compiled cors filter in the harness: preflights answered, response headers
//! added, hostile origins (null, huge, non-UTF-8, look-alike hosts, case tricks, two
//! Origin headers) neither allowed nor trapping, and a property-based check over
//! arbitrary Origin values.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use std::sync::OnceLock;
use wasmesh_harness::{request, response, Action, Host, Level, Module};
use wasmesh_testkit::{config_refusal, filter_under_test};

fn module() -> &'static Module {
    static MODULE: OnceLock<Module> = OnceLock::new();
    MODULE.get_or_init(|| filter_under_test("wasmesh-cors"))
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

const POLICY: &str = r#"{"corsPolicy":{
    "allowOrigins":[{"exact":"https://good.example"},{"prefix":"https://app.good.example"}],
    "allowMethods":["GET","POST"],"allowHeaders":["content-type"],"exposeHeaders":["x-request-id"],
    "maxAge":"1h","allowCredentials":true}}"#;

fn policy_host() -> &'static Host {
    static HOST: OnceLock<Host> = OnceLock::new();
    HOST.get_or_init(|| host(POLICY))
}

/// A request with these extra headers, as bytes (so values need not be UTF-8).
fn with(method: &str, extra: &[(&str, &[u8])]) -> Vec<(String, Vec<u8>)> {
    let mut headers: Vec<(String, Vec<u8>)> = request(method, "/api/items", "shop")
        .into_iter()
        .map(|(k, v)| (k, v.into_bytes()))
        .collect();
    headers.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_vec())));
    headers
}

fn preflight(origin: &[u8]) -> Vec<(String, Vec<u8>)> {
    with(
        "OPTIONS",
        &[
            ("origin", origin),
            ("access-control-request-method", b"POST"),
        ],
    )
}

#[test]
fn an_allowed_preflight_is_answered_here_with_the_policy() {
    let mut s = policy_host().stream();
    let action = s.request_headers(&preflight(b"https://good.example"), true);
    assert_eq!(action, Action::Pause, "a preflight stops at the filter");
    let reply = s.local_response().expect("answered");
    assert_eq!(reply.status, 200);
    assert!(reply.body.is_empty());
    assert_eq!(reply.details, "cors_response");
    let h = &reply.headers;
    assert_eq!(
        h.get("access-control-allow-origin"),
        Some("https://good.example")
    );
    assert_eq!(h.get("access-control-allow-credentials"), Some("true"));
    assert_eq!(h.get("access-control-allow-methods"), Some("GET,POST"));
    assert_eq!(h.get("access-control-allow-headers"), Some("content-type"));
    assert_eq!(h.get("access-control-max-age"), Some("3600"));
    assert_eq!(h.get("access-control-expose-headers"), Some("x-request-id"));
    s.finish();
    assert!(s.failure().is_none());
}

#[test]
fn an_allowed_request_gets_the_response_headers() {
    let mut s = policy_host().stream();
    let action = s.request_headers(
        &with("GET", &[("origin", b"https://app.good.example:8443")]),
        true,
    );
    assert_eq!(action, Action::Continue);
    s.response_headers(&response(200), true);
    let h = s.response_header_map();
    assert_eq!(
        h.get("access-control-allow-origin"),
        Some("https://app.good.example:8443")
    );
    assert_eq!(h.get("access-control-allow-credentials"), Some("true"));
    assert_eq!(h.get("access-control-expose-headers"), Some("x-request-id"));
    assert_eq!(h.get("access-control-allow-methods"), None);
}

#[test]
fn hostile_origins_are_forwarded_without_cors_headers() {
    // Over the filter's 1024-byte cap, under the mesh module's authz stage's header
    // budget (which would answer 431 first through the mesh module).
    let huge = [b"https://good.example".as_slice(), &[b'x'; 8_000]].concat();
    let hostile: [&[u8]; 9] = [
        b"https://good.example.evil.com",
        b"https://app.good.example.evil.com",
        b"https://GOOD.EXAMPLE",
        b"null",
        b"https://good.example/",
        b"https://good\xff.example",
        b"https://good.example\xc3",
        b"https://good.example, https://good.example",
        &huge,
    ];
    for origin in hostile {
        let shown = String::from_utf8_lossy(&origin[..origin.len().min(60)]).into_owned();
        let mut s = policy_host().stream();
        assert_eq!(
            s.request_headers(&preflight(origin), true),
            Action::Continue,
            "preflight from {shown:?} must be forwarded"
        );
        assert!(s.local_response().is_none(), "{shown:?}");
        s.response_headers(&response(204), true);
        let cors: Vec<String> = s
            .response_header_map()
            .iter()
            .filter(|(k, _)| k.starts_with("access-control-"))
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        assert!(cors.is_empty(), "{shown:?} got {cors:?}");
        s.finish();
        assert!(s.failure().is_none(), "{shown:?}: {:?}", s.failure());
    }
    // Two Origin headers, the first one allowed.
    let mut s = policy_host().stream();
    let two = with(
        "GET",
        &[
            ("origin", b"https://good.example"),
            ("origin", b"https://evil.example"),
        ],
    );
    s.request_headers(&two, true);
    s.response_headers(&response(200), true);
    assert_eq!(
        s.response_header_map().get("access-control-allow-origin"),
        None
    );
}

#[test]
fn ignore_answers_an_unmatched_preflight_without_cors_headers() {
    let host = host(
        r#"{"corsPolicy":{"allowOrigins":[{"exact":"https://good.example"}],"allowMethods":["GET"],"unmatchedPreflights":"IGNORE"}}"#,
    );
    let mut s = host.stream();
    s.request_headers(&preflight(b"https://evil.example"), true);
    let reply = s.local_response().expect("answered");
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .headers
            .iter()
            .all(|(k, _)| !k.starts_with("access-control-")),
        "{:?}",
        reply.headers
    );
}

#[test]
fn per_route_rules_follow_the_route_name() {
    let host = host(
        r#"{"rules":[{"match":{"route_names":["web.api"]},"corsPolicy":{"allowOrigins":[{"exact":"https://good.example"}]}}]}"#,
    );
    for (route, allowed) in [("web.api", true), ("web.default", false)] {
        let mut s = host.stream();
        s.set_property(&["route_name"], route);
        s.request_headers(&with("GET", &[("origin", b"https://good.example")]), true);
        s.response_headers(&response(200), true);
        let got = s
            .response_header_map()
            .get("access-control-allow-origin")
            .map(str::to_string);
        assert_eq!(got.is_some(), allowed, "route {route}: {got:?}");
    }
}

#[test]
fn a_bad_config_is_refused_naming_the_field() {
    let host = Host::builder(module())
        .plugin_config(r#"{"corsPolicy":{"allowOrigins":[{"prefix":""}]}}"#)
        .build()
        .unwrap();
    assert!(!host.configured());
    let expected = config_refusal(
        "wasmesh-cors",
        "corsPolicy.allowOrigins[0].prefix",
        "must not be empty",
    );
    let logs: Vec<String> = host
        .logs_at(Level::Error)
        .into_iter()
        .map(|l| l.message)
        .collect();
    assert!(
        logs.iter().any(|l| l.contains(&expected)),
        "{expected}\nnot in:\n{logs:?}"
    );
}

/// Whether [`POLICY`] allows `origin`, written out independently of the filter.
fn reference_allows(origin: &[u8]) -> bool {
    let Ok(o) = std::str::from_utf8(origin) else {
        return false;
    };
    if o == "https://good.example" {
        return true;
    }
    match o.strip_prefix("https://app.good.example") {
        Some("") => true,
        Some(rest) => rest.strip_prefix(':').is_some_and(|p| {
            !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
        }),
        None => false,
    }
}

fn origin_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"https://good.example".to_vec()),
        Just(b"https://app.good.example".to_vec()),
        Just(b"null".to_vec()),
        "https://(good|app\\.good)\\.example[.:a-z0-9/,@ ]{0,12}".prop_map(String::into_bytes),
        "[ -~]{0,40}".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..48),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4_000, ..ProptestConfig::default() })]

    /// No Origin value (or pair of them) traps the filter, and CORS headers come back
    /// only for one Origin header the policy allows, echoed byte for byte.
    #[test]
    fn only_allowed_origins_are_echoed_and_nothing_traps(
        origins in proptest::collection::vec(origin_value(), 0..3),
        is_preflight in any::<bool>(),
        requested in "\\PC{0,12}",
    ) {
        let mut s = policy_host().stream();
        let method = if is_preflight { "OPTIONS" } else { "GET" };
        let mut headers = with(method, &[]);
        for o in &origins {
            headers.push(("origin".to_string(), o.clone()));
        }
        if is_preflight {
            headers.push(("access-control-request-method".to_string(), requested.into_bytes()));
        }
        s.request_headers(&headers, true);
        let allowed = origins.len() == 1 && reference_allows(&origins[0]);
        let echoed = match s.local_response() {
            Some(reply) => {
                prop_assert_eq!(reply.status, 200, "{:?}", reply);
                reply.headers.get("access-control-allow-origin").map(str::to_string)
            }
            None => {
                s.response_headers(&response(200), true);
                s.response_header_map().get("access-control-allow-origin").map(str::to_string)
            }
        };
        s.finish();
        prop_assert!(s.failure().is_none(), "trap: {:?}", s.failure());
        match echoed {
            Some(value) => {
                prop_assert!(allowed, "echoed {:?} for {:?}", value, origins);
                prop_assert_eq!(value.as_bytes(), origins[0].as_slice());
            }
            None => prop_assert!(!allowed, "allowed origin {:?} got no CORS header", origins),
        }
    }
}

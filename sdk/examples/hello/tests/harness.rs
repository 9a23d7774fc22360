//! The compiled hello filter, run in the harness: the same `.wasm` Envoy would load.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::OnceLock;
use wasmesh_harness::{build, request, response, Action, Host, Level, Module};

fn module() -> &'static Module {
    static MODULE: OnceLock<Module> = OnceLock::new();
    MODULE.get_or_init(|| Module::load(build::wasm_module("wasmesh-example-hello")).unwrap())
}

fn host(config: &str) -> Host {
    Host::builder(module())
        .plugin_config(config)
        .build()
        .unwrap()
}

const CONFIG: &str =
    r#"{"greeting":"hi","block":[{"name":"admin","match":{"path":{"prefix":"/admin"}}}]}"#;

#[test]
fn greets_responses_and_counts_passed_requests() {
    let host = host(CONFIG);
    assert!(host.configured());
    let mut s = host.stream();
    assert_eq!(
        s.request_headers(&request("GET", "/public", "shop"), true),
        Action::Continue
    );
    assert_eq!(s.response_headers(&response(200), true), Action::Continue);
    assert_eq!(s.response_header_map().get("x-hello"), Some("hi"));
    s.finish();
    let passed = host
        .metric("wasmesh_hello_requests_total;outcome=passed;rule=")
        .unwrap();
    assert_eq!(passed.value, 1);
}

#[test]
fn blocks_admin_even_behind_path_tricks() {
    let host = host(CONFIG);
    for path in ["/admin", "//admin/users", "/x/../admin", "/%61dmin"] {
        let mut s = host.stream();
        s.request_headers(&request("GET", path, "shop"), true);
        let reply = s
            .local_response()
            .unwrap_or_else(|| panic!("{path} was not blocked"));
        assert_eq!(reply.status, 403, "{path}");
        s.finish();
    }
    let blocked = host
        .metric("wasmesh_hello_requests_total;outcome=blocked;rule=admin")
        .unwrap();
    assert_eq!(blocked.value, 4);
}

#[test]
fn a_refused_path_gets_400() {
    let host = host(CONFIG);
    let mut s = host.stream();
    s.request_headers(&request("GET", "/a%2Fadmin", "shop"), true);
    assert_eq!(s.local_response().unwrap().status, 400);
}

#[test]
fn bad_config_is_refused_with_the_field_in_the_log() {
    let host = host(r#"{"greeting":"hi","block":[{"name":"x","match":{"path":{"regex":"("}}}]}"#);
    assert!(!host.configured());
    let errors: Vec<String> = host
        .logs_at(Level::Error)
        .into_iter()
        .map(|l| l.message)
        .collect();
    assert!(
        errors.iter().any(|m| m
            .contains("hello: invalid configuration: block[0].match.path.regex: invalid regex")),
        "{errors:?}"
    );
}

#[test]
fn linear_memory_is_reported_as_a_gauge() {
    let host = host(CONFIG);
    let mut s = host.stream();
    s.request_headers(&request("GET", "/public", "shop"), true);
    s.response_headers(&response(200), true);
    s.finish();
    let memory = host
        .metric("wasmesh_wasm_memory_bytes;filter=hello")
        .unwrap();
    assert!(
        memory.value >= 65_536 && memory.value.is_multiple_of(65_536),
        "{memory:?}"
    );
}

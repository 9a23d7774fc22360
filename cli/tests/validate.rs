//! `wasmesh validate` catches broken meshes, each with a message naming file and field.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests fail loudly.

mod common;

use std::path::Path;
use wasmesh::filtercheck;

const BASE: &str = r#"
mesh:
  name: t
services:
  - name: reviews
    port: 9080
    versions: [{ name: v1 }, { name: v2 }]
"#;

fn errors(yaml: &str) -> Vec<String> {
    match wasmesh::load_str(Path::new("mesh.yaml"), yaml) {
        Ok(_) => vec![],
        Err(e) => e.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn weights_adding_to_90_are_refused_with_the_route_path() {
    let yaml = format!(
        "{BASE}    routes:\n      - route:\n          - {{ version: v1, weight: 80 }}\n          - {{ version: v2, weight: 10 }}\n"
    );
    assert_eq!(
        errors(&yaml),
        ["mesh.yaml: services[0].routes[0].route: weights add up to 90 (80 + 10), they must add up to 100"]
    );
}

#[test]
fn gateway_client_cas_without_mutual_are_refused() {
    let gateway = |tls: &str| {
        format!("{BASE}gateway:\n  hosts: [shop.example]\n  tls: {tls}\n  routes:\n    - route: [{{ service: reviews }}]\n")
    };
    assert_eq!(
        errors(&gateway("{ caCertificates: /etc/partner-ca.pem }")),
        ["mesh.yaml: gateway.tls.caCertificates: client certificates are checked with mode: MUTUAL only"]
    );
    assert_eq!(
        errors(&gateway(
            "{ mode: MUTUAL, caCertificates: /etc/partner-ca.pem }"
        )),
        Vec::<String>::new()
    );
}

#[test]
fn a_redirect_beside_destinations_a_bad_redirect_code_and_a_regex_rewrite_are_refused() {
    let yaml = format!(
        "{BASE}    routes:\n      - redirect: {{ uri: /new }}\n        route: [{{ version: v1 }}]\n      - redirect: {{ uri: /new, redirectCode: 200 }}\n      - match: [{{ path: {{ regex: \"/v[0-9]+\" }} }}]\n        rewrite: {{ uri: / }}\n        route: [{{ version: v1 }}]\n      - route: []\n"
    );
    assert_eq!(
        errors(&yaml),
        [
            "mesh.yaml: services[0].routes[0].redirect: a redirect answers the request itself: no `route` beside it",
            "mesh.yaml: services[0].routes[1].redirect.redirectCode: 200: 301, 302, 303, 307 or 308",
            "mesh.yaml: services[0].routes[2].rewrite.uri: replaces the matched path prefix: not with a regex path match",
            "mesh.yaml: services[0].routes[3].route: a route needs at least one destination (or a redirect or direct response)",
        ]
    );
}

#[test]
fn a_load_balancer_is_a_simple_name_or_a_consistent_hash_on_a_header() {
    let lb = |v: &str| format!("{BASE}    trafficPolicy:\n      loadBalancer: {v}\n");
    assert_eq!(errors(&lb("LEAST_REQUEST")), Vec::<String>::new());
    assert_eq!(
        errors(&lb("{ consistentHash: { httpHeaderName: x-user } }")),
        Vec::<String>::new()
    );
    for bad in [
        "ROUND_ROBINN",
        "{ consistentHash: { httpCookie: { name: u } } }",
    ] {
        let got = errors(&lb(bad));
        assert_eq!(got.len(), 1, "{bad}: {got:?}");
        assert!(
            got[0].contains("services[0].trafficPolicy.loadBalancer")
                && got[0].contains("{ consistentHash: { httpHeaderName: NAME } }"),
            "{bad}: {got:?}"
        );
    }
}

#[test]
fn an_unknown_service_is_named_with_the_known_ones() {
    let yaml = format!("{BASE}    routes:\n      - route:\n          - {{ service: raitngs }}\n");
    assert_eq!(
        errors(&yaml),
        [
            r#"mesh.yaml: services[0].routes[0].route[0].service: unknown service "raitngs" (services: reviews)"#
        ]
    );
}

#[test]
fn an_unknown_version_and_an_unknown_callee_are_both_reported() {
    let yaml = format!(
        "{BASE}    calls: [details]\n    routes:\n      - route:\n          - {{ version: v9 }}\n"
    );
    let errs = errors(&yaml);
    assert!(
        errs.contains(
            &r#"mesh.yaml: services[0].calls[0]: unknown service "details" (services: reviews)"#
                .to_string()
        ),
        "{errs:?}"
    );
    assert!(errs.contains(&r#"mesh.yaml: services[0].routes[0].route[0].version: service "reviews" has no version "v9" (versions: v1, v2)"#.to_string()), "{errs:?}");
}

#[test]
fn an_unknown_filter_is_a_schema_error_with_path_and_line() {
    let yaml = format!("{BASE}    filters:\n      inbound:\n        - name: waf\n");
    let errs = errors(&yaml);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("mesh.yaml:10: services[0].filters.inbound[0].name: unknown variant `waf`, expected one of `cors`, `authz`, `ratelimit`, `headers`, `fault`, `body`, `telemetry`"),
        "{}",
        errs[0]
    );
}

#[test]
fn an_app_port_on_a_sidecar_port_is_a_clash() {
    let yaml = BASE.replace("port: 9080", "port: 9080\n    appPort: 15006");
    assert_eq!(
        errors(&yaml),
        ["mesh.yaml: services[0].appPort: port 15006 clashes with the sidecar's ports [15000, 15001, 15006, 15021, 15090] (the app shares the sidecar's network)"]
    );
}

#[test]
fn a_filter_config_the_compiled_filter_refuses_is_caught_through_the_harness() {
    let yaml = format!(
        "{BASE}    filters:\n      inbound:\n        - name: headers\n          config: {{\"rules\":[{{\"match\":{{\"path\":{{\"regex\":\"(\"}}}}}}]}}\n"
    );
    let mesh = wasmesh::load_str(Path::new("mesh.yaml"), &yaml).unwrap();
    let report = filtercheck::check(Path::new("mesh.yaml"), &mesh, common::filters_dir());
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    let msg = report.errors[0].to_string();
    assert!(
        msg.starts_with("mesh.yaml: services[0].filters.inbound[0].config: filter headers refused its config: rules[0].match.path.regex: invalid regex"),
        "{msg}"
    );
}

#[test]
fn a_route_fault_with_a_bad_status_is_refused_before_the_filter_sees_it() {
    let yaml = format!(
        "{BASE}    routes:\n      - route: [{{ version: v1 }}]\n        fault: {{ abort: {{ httpStatus: 42, percentage: 10 }} }}\n"
    );
    assert_eq!(
        errors(&yaml),
        ["mesh.yaml: services[0].routes[0].fault.abort.httpStatus: 42 is not an HTTP status (200 to 599)"]
    );
}

/// With Envoy's tracer in the mesh, telemetry's own trace headers would start a
/// second trace (`cli/tests/tracing.rs` shows the split in Envoy), so the filter may
/// have them off but not on.
#[test]
fn telemetry_tracing_left_on_beside_a_native_tracer_is_refused() {
    let traced = BASE.replace(
        "  name: t\n",
        "  name: t\n  tracing: { provider: zipkin, address: \"zipkin:9411\" }\n",
    );
    let with = |tracing: &str| {
        format!(
            "{traced}    filters:\n      inbound:\n        - name: telemetry\n          config: {{ {tracing} }}\n"
        )
    };
    let refusal = "mesh.yaml: services[0].filters.inbound[0].config.tracing: mesh.tracing's tracer writes the trace headers, and a context this filter started would be a second trace: set `enabled: false`, or leave `tracing` out and the generator turns it off";
    assert_eq!(errors(&with("tracing: { formats: [w3c] }")), [refusal]);
    assert_eq!(errors(&with("tracing: { enabled: true }")), [refusal]);
    assert_eq!(
        errors(&with("tracing: { enabled: false }")),
        Vec::<String>::new()
    );
    assert_eq!(errors(&with("")), Vec::<String>::new());
    // Without a native tracer the filter's tracing is the mesh's propagation.
    let untraced = with("tracing: { formats: [w3c] }").replace(&traced, BASE);
    assert_eq!(errors(&untraced), Vec::<String>::new());
}

#[test]
fn bookinfo_validates_with_every_filter_accepting_its_config() {
    let mesh = common::bookinfo();
    let report = filtercheck::check(&common::bookinfo_path(), &mesh, common::filters_dir());
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(report.missing.is_empty());
    assert_eq!(report.accepted, filtercheck::chains(&mesh).len());
}

#[test]
fn the_cli_exits_non_zero_and_prints_each_problem() {
    let dir = common::scratch("cli-validate");
    let file = dir.join("mesh.yaml");
    let yaml = format!(
        "{BASE}    routes:\n      - route:\n          - {{ version: v1, weight: 80 }}\n          - {{ version: v2, weight: 10 }}\n"
    );
    std::fs::write(&file, yaml).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wasmesh"))
        .arg("validate")
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        stdout.contains("services[0].routes[0].route: weights add up to 90"),
        "{stdout}"
    );
}

#[test]
fn a_wasm_runtime_envoy_was_built_without_is_refused_with_the_reason() {
    for runtime in ["wasmtime", "envoy.wasm.runtime.wamr"] {
        let yaml = BASE.replace(
            "  name: t\n",
            &format!("  name: t\n  wasmRuntime: {runtime}\n"),
        );
        let errs = errors(&yaml);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with(&format!("mesh.yaml:3: mesh.wasmRuntime: `{runtime}`: ")),
            "{errs:?}"
        );
        assert!(
            errs[0].contains("Envoy was compiled without support for it"),
            "{errs:?}"
        );
    }
    let yaml = BASE.replace("  name: t\n", "  name: t\n  wasmRuntime: v8\n");
    assert!(errors(&yaml).is_empty());
}

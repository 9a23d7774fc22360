//! Istio resources as input (`cli/src/istio_input/`): Istio's Bookinfo resources read
//! into the mesh model and generated; every unsupported field refused with its path;
//! malformed YAML, unknown kinds and conflicts caught; `wasmesh k8s` output read back
//! into the same model for every example mesh.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests fail loudly.

mod common;

use std::path::{Path, PathBuf};
use wasmesh::istio_input;
use wasmesh::model::{FilterName, MeshError, MtlsMode};

fn istio_bookinfo() -> PathBuf {
    common::workspace_root().join("examples/istio-bookinfo")
}

/// `docs` written as one file in a fresh directory, read back.
fn read(label: &str, docs: &str, allow: bool) -> Result<istio_input::Loaded, Vec<MeshError>> {
    let dir = common::scratch(label);
    std::fs::write(dir.join("input.yaml"), docs).unwrap();
    istio_input::load(&dir, allow)
}

/// `docs` read as in [`read`], strictly; the directory and the mesh (a panic listing
/// the problems otherwise).
fn read_ok(label: &str, docs: &str) -> (PathBuf, wasmesh::model::MeshFile) {
    let dir = common::scratch(label);
    std::fs::write(dir.join("input.yaml"), docs).unwrap();
    let mesh = istio_input::load(&dir, false)
        .unwrap_or_else(|e| panic!("{:#?}", messages(&e)))
        .mesh;
    (dir, mesh)
}

fn messages(errors: &[MeshError]) -> Vec<String> {
    errors.iter().map(ToString::to_string).collect()
}

/// A Service `name` on `port` and a Deployment per version, labelled as Istio's
/// samples label them.
fn workload(name: &str, port: u16, versions: &[&str]) -> String {
    let mut out = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{ name: {name} }}\nspec:\n  selector: {{ app: {name} }}\n  ports: [{{ name: http, port: {port} }}]\n"
    );
    for v in versions {
        out.push_str(&format!(
            "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{ name: {name}-{v} }}\nspec:\n  selector: {{ matchLabels: {{ app: {name}, version: {v} }} }}\n  template:\n    metadata: {{ labels: {{ app: {name}, version: {v} }} }}\n    spec: {{ containers: [{{ name: {name}, image: {name}:1 }}] }}\n"
        ));
    }
    out
}

/// A minimal valid base: one service `web` (v1, v2) and its DestinationRule.
fn base() -> String {
    format!(
        "{}---\n{}",
        workload("web", 80, &["v1", "v2"]),
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: { name: web }\nspec:\n  host: web\n  subsets: [{ name: v1, labels: { version: v1 } }, { name: v2, labels: { version: v2 } }]\n"
    )
}

fn with_base(extra: &str) -> String {
    format!("{}---\n{extra}", base())
}

/// Asserts reading `extra` beside the base fails with exactly one problem whose text has
/// every one of `parts` (the resource, the field path, the reason).
fn refused(label: &str, extra: &str, parts: &[&str]) {
    let errors = read(label, &with_base(extra), false).expect_err("must be refused");
    let text = messages(&errors);
    assert_eq!(text.len(), 1, "{text:#?}");
    for p in parts {
        assert!(text[0].contains(p), "{:?} lacks {p:?}", text[0]);
    }
}

#[test]
fn istio_bookinfo_reads_into_the_model_istio_would_run() {
    let mesh = istio_input::load(&istio_bookinfo(), false)
        .unwrap_or_else(|e| panic!("{:#?}", messages(&e)))
        .mesh;
    assert_eq!(mesh.mesh.name, "istio-bookinfo");
    assert_eq!(mesh.mesh.mtls, MtlsMode::Strict);
    let names: Vec<&str> = mesh.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["details", "ratings", "reviews", "productpage"]);
    let reviews = &mesh.services[2];
    assert_eq!(reviews.service_account(), "bookinfo-reviews");
    let versions: Vec<&str> = reviews.versions.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(versions, ["v1", "v2", "v3"]);
    // One image per version, as Istio ships them.
    assert_eq!(
        reviews.app.image,
        "docker.io/istio/examples-bookinfo-reviews-v1:1.20.2"
    );
    assert_eq!(
        reviews.versions[2].image(&reviews.app),
        "docker.io/istio/examples-bookinfo-reviews-v3:1.20.2"
    );
    assert_eq!(
        reviews.app.env.get("LOG_DIR").map(String::as_str),
        Some("/tmp/logs")
    );
    // virtual-service-reviews-test-v2: jason to v2, everyone else to v1.
    assert_eq!(reviews.routes.len(), 2);
    let jason = reviews.routes[0].matches[0].headers["end-user"]
        .exact
        .as_deref();
    assert_eq!(jason, Some("jason"));
    assert_eq!(reviews.routes[0].route[0].version.as_deref(), Some("v2"));
    assert_eq!(reviews.routes[1].route[0].version.as_deref(), Some("v1"));
    // virtual-service-ratings-test-abort: 500 for jason, all of them.
    let ratings = &mesh.services[1];
    let abort = ratings.routes[0]
        .fault
        .as_ref()
        .unwrap()
        .abort
        .as_ref()
        .unwrap();
    assert_eq!((abort.http_status, abort.percentage), (500, 100.0));
    // allow-nothing applies to every service of the namespace, beside its viewer.
    let details = &mesh.services[0];
    let authz = &details.filters.inbound[0];
    assert_eq!(authz.name, FilterName::Authz);
    let policies: Vec<&str> = authz.config["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(policies, ["allow-nothing", "details-viewer"]);
    assert_eq!(authz.config["policies"][0]["rules"], serde_json::json!([]));
    // The RequestAuthentication lands on productpage only.
    let pp = &mesh.services[3];
    assert_eq!(
        pp.filters.inbound[0].config["jwtRules"][0]["issuer"],
        "testing@secure.istio.io"
    );
    // Istio answers a denied request without credentials 403, not the filter's 401.
    assert_eq!(pp.filters.inbound[0].config["missingCredentialStatus"], 403);
    assert!(details.filters.inbound[0].config.get("jwtRules").is_none());
    // The gateway and its routes.
    let g = mesh.gateway.as_ref().unwrap();
    assert_eq!((g.name.as_str(), g.port), ("bookinfo-gateway", 8080));
    assert_eq!(g.routes[0].matches.len(), 5);
    assert_eq!(g.routes[0].route[0].service.as_deref(), Some("productpage"));
    // The WasmPlugin: our ratelimit module at the gateway, as configured.
    assert_eq!(g.filters.len(), 1);
    assert_eq!(g.filters[0].name, FilterName::Ratelimit);
    assert_eq!(g.filters[0].config["rules"][0]["name"], "per-client");
    // The mesh-wide Telemetry: a telemetry filter on every sidecar chain, reporting
    // its side, logging, with the metric override.
    for s in &mesh.services {
        let inbound = s.filters.inbound.last().unwrap();
        let outbound = s
            .filters
            .outbound
            .iter()
            .find(|f| f.name == FilterName::Telemetry)
            .unwrap();
        assert_eq!(inbound.name, FilterName::Telemetry, "{}", s.name);
        assert_eq!(inbound.config["reporter"], "destination");
        assert_eq!(outbound.config["reporter"], "source");
        assert_eq!(inbound.config["accessLog"]["enabled"], true);
        let o = &outbound.config["metrics"]["overrides"][0];
        assert_eq!(o["match"]["mode"], "CLIENT");
        assert_eq!(o["tagOverrides"]["request_protocol"]["operation"], "REMOVE");
    }
}

#[test]
fn a_workload_telemetry_overrides_the_mesh_wide_one_and_plugins_keep_istio_order() {
    let extra = r#"
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: { name: web-logs }
spec:
  selector: { matchLabels: { app: web } }
  accessLogging: [{ filter: { expression: "response.code >= 500" }, match: { mode: SERVER } }]
  tracing: [{ randomSamplingPercentage: 5 }]
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: { name: mesh-default, namespace: istio-system }
spec:
  accessLogging: [{ disabled: true }]
---
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: { name: web-headers }
spec:
  selector: { matchLabels: { app: web } }
  url: https://modules.example/headers.wasm
  phase: AUTHZ
  priority: 20
  match: [{ mode: SERVER }]
  pluginConfig: { request: { set: [{ name: x-a, value: b }] } }
---
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: { name: web-ratelimit }
spec:
  selector: { matchLabels: { app: web } }
  url: oci://registry.example/ratelimit:1
  pluginName: ratelimit
  phase: AUTHZ
  priority: 30
  failStrategy: FAIL_OPEN
  match: [{ mode: SERVER }]
"#;
    let mesh = read_ok("istio-telemetry", &with_base(extra)).1;
    let web = &mesh.services[0];
    let names: Vec<FilterName> = web.filters.inbound.iter().map(|f| f.name).collect();
    // AUTHZ priority 30 before 20, then the telemetry filter the Telemetry added.
    assert_eq!(
        names,
        [
            FilterName::Ratelimit,
            FilterName::Headers,
            FilterName::Telemetry
        ]
    );
    assert_eq!(
        web.filters.inbound[0].failure_policy,
        wasmesh::model::FailurePolicy::FailOpen
    );
    let inbound = &web.filters.inbound[2].config;
    assert_eq!(
        inbound["accessLog"],
        serde_json::json!({ "enabled": true, "filter": "response.code >= 500" })
    );
    assert_eq!(inbound["tracing"]["samplingPercent"], 5.0);
    // The workload's SERVER-only logging leaves the client side to the mesh default.
    let outbound = &web.filters.outbound[0].config;
    assert_eq!(
        outbound["accessLog"],
        serde_json::json!({ "enabled": false })
    );
}

#[test]
fn cors_and_body_wasm_plugins_become_those_filters() {
    // Istio has no resource for body limits or JSON rewrites: a WasmPlugin naming
    // wasmesh's module is how a cluster gets them, and it reads back as the filter.
    let extra = r#"
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: { name: web-body }
spec:
  selector: { matchLabels: { app: web } }
  url: oci://registry.example/body:1
  phase: AUTHZ
  match: [{ mode: SERVER }]
  pluginConfig: { limit: { maxRequestBytes: 1024 } }
---
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: { name: web-cors }
spec:
  selector: { matchLabels: { app: web } }
  url: oci://registry.example/wasmesh-filters:1
  pluginName: cors
  phase: AUTHN
  match: [{ mode: SERVER }]
  pluginConfig: { corsPolicy: { allowOrigins: [{ exact: "https://app.example" }] } }
"#;
    let mesh = read_ok("istio-body-cors", &with_base(extra)).1;
    let inbound = &mesh.services[0].filters.inbound;
    let names: Vec<FilterName> = inbound.iter().map(|f| f.name).collect();
    assert_eq!(names, [FilterName::Cors, FilterName::Body]);
    assert_eq!(inbound[1].config["limit"]["maxRequestBytes"], 1024);
    assert_eq!(
        inbound[0].config["corsPolicy"]["allowOrigins"][0]["exact"],
        "https://app.example"
    );
}

#[test]
fn a_wasm_plugin_that_is_not_a_wasmesh_module_is_refused() {
    refused(
        "istio-foreign-plugin",
        "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: { name: basic-auth }\nspec:\n  selector: { matchLabels: { app: web } }\n  url: oci://ghcr.io/istio-ecosystem/wasm-extensions/basic_auth:1.12.0\n  phase: AUTHN\n",
        &["WasmPlugin default/basic-auth spec.pluginName", "basic_auth", "own modules"],
    );
    refused(
        "istio-telemetry-provider",
        "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: { name: t }\nspec:\n  tracing: [{ providers: [{ name: zipkin }], randomSamplingPercentage: 1 }]\n",
        &[
            "Telemetry default/t spec.tracing[0].providers[0].name",
            "no zipkin or opentelemetry provider",
        ],
    );
}

#[test]
fn the_cli_validates_and_generates_istio_bookinfo_and_envoy_accepts_every_bootstrap() {
    let bin = env!("CARGO_BIN_EXE_wasmesh");
    let dir = istio_bookinfo();
    common::validate_with_envoy(bin, &dir, Some(7));
    let gen = common::scratch("istio-generate");
    let out = std::process::Command::new(bin)
        .arg("generate")
        .arg(&dir)
        .arg("--out")
        .arg(&gen)
        .arg("--no-certs")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for instance in ["productpage-v1-0", "reviews-v3-0", "ingressgateway"] {
        let name = if instance == "ingressgateway" {
            "bookinfo-gateway"
        } else {
            instance
        };
        assert!(
            gen.join(format!("{name}.json")).exists(),
            "{name}.json missing"
        );
    }
}

#[test]
fn two_virtual_services_for_one_host_conflict_and_validate_says_so() {
    let dir = common::scratch("istio-conflict");
    let src = istio_bookinfo();
    for f in std::fs::read_dir(&src).unwrap() {
        let p = f.unwrap().path();
        if p.file_name().unwrap() != "kustomization.yaml" {
            std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
        }
    }
    // Without the kustomization every file is read: both reviews VirtualServices.
    let errors = istio_input::load(&dir, true).expect_err("conflict");
    let text = messages(&errors).join("\n");
    assert!(
        text.contains("VirtualService default/reviews spec.hosts[0]"),
        "{text}"
    );
    assert!(
        text.contains("two VirtualServices for one host conflict"),
        "{text}"
    );
    assert!(
        text.contains("virtual-service-reviews-test-v2.yaml"),
        "{text}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wasmesh"))
        .args(["validate", "--no-envoy"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("conflict"));
}

#[test]
fn malformed_yaml_is_named_with_file_and_line() {
    let errors = read("istio-malformed", &with_base("kind: [unclosed\n"), false).unwrap_err();
    let text = messages(&errors);
    assert_eq!(text.len(), 1, "{text:?}");
    assert!(text[0].contains("input.yaml:"), "{}", text[0]);
    assert!(text[0].contains("malformed YAML"), "{}", text[0]);
}

#[test]
fn an_unknown_kind_is_an_error_listing_what_is_read() {
    refused(
        "istio-unknown-kind",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: { name: w }\n",
        &[
            "Widget default/w kind",
            "unknown kind Widget",
            "VirtualService",
        ],
    );
}

/// A second service (`db`) beside the base's `web`, and an ingress Gateway.
fn db_and_gateway() -> String {
    format!("{}---\n{GATEWAY}", workload("db", 5000, &["v1"]))
}

const GATEWAY: &str = r#"apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: edge, namespace: istio-system }
spec:
  selector: { istio: ingressgateway }
  servers: [{ port: { number: 8080, name: http, protocol: HTTP }, hosts: ["*"] }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: edge, namespace: istio-system }
spec:
  hosts: ["*"]
  gateways: [edge]
  http: [{ route: [{ destination: { host: web.default.svc.cluster.local } }] }]
"#;

#[test]
fn policies_on_the_ingress_gateway_become_its_authz_filter() {
    let extra = format!(
        "{}---\n{}",
        db_and_gateway(),
        r#"apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: { name: jwt-example, namespace: istio-system }
spec:
  selector: { matchLabels: { istio: ingressgateway } }
  jwtRules: [{ issuer: "testing@secure.istio.io", jwks: '{"keys":[]}' }]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: require-jwt, namespace: istio-system }
spec:
  selector: { matchLabels: { istio: ingressgateway } }
  action: ALLOW
  rules: [{ from: [{ source: { requestPrincipals: ["testing@secure.istio.io/*"] } }] }]
"#
    );
    let mesh = read_ok("istio-gateway-authz", &with_base(&extra)).1;
    let g = mesh.gateway.as_ref().unwrap();
    assert_eq!(g.filters[0].name, FilterName::Authz);
    assert_eq!(g.filters[0].config["policies"][0]["name"], "require-jwt");
    assert_eq!(
        g.filters[0].config["jwtRules"][0]["issuer"],
        "testing@secure.istio.io"
    );
    // The services are untouched.
    assert!(mesh.services.iter().all(|s| s.filters.inbound.is_empty()));
}

#[test]
fn sidecar_egress_hosts_become_calls_with_istio_precedence() {
    let extra = format!(
        "{}---\n{}",
        db_and_gateway(),
        r#"apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: { name: default, namespace: istio-system }
spec:
  egress: [{ hosts: ["~/*"] }]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: { name: web-calls }
spec:
  workloadSelector: { labels: { app: web } }
  egress: [{ hosts: ["./db.default.svc.cluster.local", "istio-system/*"] }]
"#
    );
    let mesh = read_ok("istio-sidecar", &with_base(&extra)).1;
    let calls = |name: &str| {
        mesh.services
            .iter()
            .find(|s| s.name == name)
            .unwrap()
            .calls
            .clone()
    };
    assert_eq!(calls("web"), Some(vec!["db".to_string()]));
    // The mesh-wide Sidecar (`~/*`: nothing) for the rest.
    assert_eq!(calls("db"), Some(vec![]));
    // Two Sidecars for one workload at the same scope conflict.
    let twice = format!(
        "{extra}---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{ name: again }}\nspec:\n  workloadSelector: {{ labels: {{ app: web }} }}\n  egress: [{{ hosts: [\"*/*\"] }}]\n"
    );
    let errors = read("istio-sidecar-twice", &with_base(&twice), false).unwrap_err();
    assert!(
        messages(&errors)
            .iter()
            .any(|e| e.contains("Sidecar default/again") && e.contains("conflict")),
        "{:#?}",
        messages(&errors)
    );
}

const MESH_CONFIG: &str = r#"apiVersion: v1
kind: ConfigMap
metadata: { name: istio, namespace: istio-system }
data:
  mesh: |
    trustDomain: example.org
    extensionProviders:
      - name: my-ext-authz
        envoyExtAuthzHttp:
          service: ext-authz.default.svc.cluster.local
          port: 8000
          includeRequestHeadersInCheck: [x-ext-authz]
"#;

#[test]
fn custom_authorization_calls_the_mesh_config_provider_through_its_cluster() {
    let extra = format!(
        "{}---\n{MESH_CONFIG}---\n{}",
        workload("ext-authz", 8000, &["v1"]),
        r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: ext-authz }
spec:
  selector: { matchLabels: { app: web } }
  action: CUSTOM
  provider: { name: my-ext-authz }
  rules: [{ to: [{ operation: { paths: ["/admin/*"] } }] }]
"#
    );
    let (dir, mesh) = read_ok("istio-custom-authz", &with_base(&extra));
    assert_eq!(mesh.mesh.trust_domain, "example.org");
    let authz = &mesh.services[0].filters.inbound[0].config;
    assert_eq!(authz["policies"][0]["action"], "CUSTOM");
    assert_eq!(authz["policies"][0]["provider"]["name"], "my-ext-authz");
    let provider = &authz["extensionProviders"][0];
    assert_eq!(provider["name"], "my-ext-authz");
    let http = &provider["envoyExtAuthzHttp"];
    assert_eq!(
        http["cluster"],
        "outbound|8000||ext-authz.default.svc.cluster.local"
    );
    assert_eq!(http["includeRequestHeadersInCheck"][0], "x-ext-authz");
    // The compiled authz filter takes it, and Envoy the bootstraps (the cluster exists).
    common::validate_with_envoy(env!("CARGO_BIN_EXE_wasmesh"), &dir, Some(3));
    // A provider the MeshConfig does not have, and MeshConfig fields not read.
    let unknown = extra.replace(
        "provider: { name: my-ext-authz }",
        "provider: { name: opa }",
    );
    let errors = read("istio-custom-unknown", &with_base(&unknown), false).unwrap_err();
    assert!(
        messages(&errors)[0].contains("spec.provider.name: opa: no such extensionProviders entry")
    );
    refused(
        "istio-meshconfig-field",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: { name: istio, namespace: istio-system }\ndata:\n  mesh: |\n    outboundTrafficPolicy: { mode: REGISTRY_ONLY }\n",
        &["ConfigMap istio-system/istio data.mesh.outboundTrafficPolicy", "unsupported"],
    );
    refused(
        "istio-app-configmap",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: { name: web-settings }\ndata: { a: b }\n",
        &["ConfigMap default/web-settings", "MeshConfig"],
    );
}

#[test]
fn a_mesh_config_tracer_named_by_a_mesh_wide_telemetry_is_envoys_tracer() {
    let extra = r#"apiVersion: v1
kind: ConfigMap
metadata: { name: istio, namespace: istio-system }
data:
  mesh: |
    extensionProviders:
      - name: zipkin
        zipkin: { service: zipkin.istio-system.svc.cluster.local, port: 9411 }
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: { name: mesh-default, namespace: istio-system }
spec:
  tracing: [{ providers: [{ name: zipkin }], randomSamplingPercentage: 25 }]
"#;
    let (dir, mesh) = read_ok("istio-tracer", &with_base(extra));
    let t = mesh.mesh.tracing.as_ref().unwrap();
    assert_eq!(t.provider, wasmesh::model::TracingProvider::Zipkin);
    assert_eq!(t.address, "zipkin.istio-system.svc.cluster.local:9411");
    assert_eq!(t.sampling, 25.0);
    common::validate_with_envoy(env!("CARGO_BIN_EXE_wasmesh"), &dir, Some(2));
    // A workload's own tracer is not the mesh model's.
    let narrow = extra.replace(
        "metadata: { name: mesh-default, namespace: istio-system }\nspec:\n",
        "metadata: { name: web-tracing }\nspec:\n  selector: { matchLabels: { app: web } }\n",
    );
    refused(
        "istio-tracer-workload",
        &narrow,
        &[
            "Telemetry default/web-tracing spec.tracing[0].providers",
            "mesh",
        ],
    );
}

/// Istio's JWT task names a remote JWKS. With a ServiceEntry (and TLS origination) for
/// the key server, the authz filter fetches it through that egress cluster.
#[test]
fn a_jwks_uri_behind_a_service_entry_is_fetched_through_its_cluster() {
    let extra = r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: github-raw }
spec:
  hosts: [raw.githubusercontent.com]
  ports: [{ number: 443, name: http-443, protocol: HTTP }]
  resolution: DNS
  location: MESH_EXTERNAL
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: github-raw }
spec:
  host: raw.githubusercontent.com
  trafficPolicy: { tls: { mode: SIMPLE } }
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: { name: jwt-example }
spec:
  selector: { matchLabels: { app: web } }
  jwtRules:
    - issuer: "testing@secure.istio.io"
      jwksUri: "https://raw.githubusercontent.com/istio/istio/release-1.24/security/tools/jwt/samples/jwks.json"
"#;
    let (dir, mesh) = read_ok("istio-jwks-uri-egress", &with_base(extra));
    let rule = &mesh.services[0].filters.inbound[0].config["jwtRules"][0];
    assert_eq!(rule["cluster"], "outbound|443||raw.githubusercontent.com");
    assert!(mesh.egress[0].tls);
    common::validate_with_envoy(env!("CARGO_BIN_EXE_wasmesh"), &dir, Some(2));
}

#[test]
fn an_istio_kind_wasmesh_does_not_read_is_unsupported_with_why() {
    refused(
        "istio-envoyfilter",
        "apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata: { name: e }\nspec: {}\n",
        &["EnvoyFilter default/e kind", "unsupported", "WasmPlugin"],
    );
}

const VS_HEAD: &str = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: { name: web }\nspec:\n  hosts: [web]\n  http:\n";

#[test]
fn virtual_service_fields_wasmesh_does_not_carry_are_refused_with_their_path() {
    let cases: [(&str, &str, &str); 5] = [
        (
            "    - corsPolicy: { allowOrigin: [x] }\n      route: [{ destination: { host: web } }]\n",
            "spec.http[0].corsPolicy.allowOrigin",
            "the deprecated allowOrigin is not read",
        ),
        (
            "    - match: [{ withoutHeaders: { a: { exact: b } } }]\n      route: [{ destination: { host: web } }]\n",
            "spec.http[0].match[0].withoutHeaders",
            "path, headers, query parameters and method",
        ),
        (
            "    - redirect: { uri: /x, scheme: https }\n",
            "spec.http[0].redirect.scheme",
            "replaces the path (uri) and the authority",
        ),
        (
            "    - route: [{ destination: { host: web } }]\n      retries: { attempts: 2, retryRemoteLocalities: true }\n",
            "spec.http[0].retries.retryRemoteLocalities",
            "not read by wasmesh",
        ),
        (
            "    - route: [{ destination: { host: web } }]\n      fault: { abort: { grpcStatus: UNAVAILABLE, httpStatus: 503 } }\n",
            "spec.http[0].fault.abort.grpcStatus",
            "not read by wasmesh",
        ),
    ];
    for (k, (http, path, why)) in cases.iter().enumerate() {
        refused(
            &format!("istio-vs-{k}"),
            &format!("{VS_HEAD}{http}"),
            &["VirtualService default/web", path, "unsupported", why],
        );
    }
}

#[test]
fn destination_rule_fields_wasmesh_does_not_carry_are_refused_with_their_path() {
    let base = base();
    let base_without_dr = base
        .split("---\napiVersion: networking.istio.io/v1\nkind: DestinationRule")
        .next()
        .unwrap();
    let dr = |spec: &str| {
        format!("{base_without_dr}---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{ name: web }}\nspec:\n  host: web\n{spec}")
    };
    let cases = [
        (
            "  trafficPolicy: { portLevelSettings: [{ port: { number: 80 }, tunnel: {} }] }\n",
            "spec.trafficPolicy.portLevelSettings[0].tunnel",
            "not read by wasmesh",
        ),
        (
            "  subsets: [{ name: v1, labels: { version: v1 }, trafficPolicy: {} }]\n",
            "spec.subsets[0].trafficPolicy",
            "per-subset",
        ),
        (
            "  trafficPolicy: { loadBalancer: { consistentHash: { httpHeaderName: x, minimumRingSize: 64 } } }\n",
            "spec.trafficPolicy.loadBalancer.consistentHash.minimumRingSize",
            "not read by wasmesh",
        ),
        (
            "  trafficPolicy: { tls: { mode: SIMPLE } }\n",
            "spec.trafficPolicy.tls.mode",
            "ISTIO_MUTUAL",
        ),
    ];
    for (k, (spec, path, why)) in cases.iter().enumerate() {
        let errors = read(&format!("istio-dr-{k}"), &dr(spec), false).expect_err(path);
        let text = messages(&errors);
        assert_eq!(text.len(), 1, "{text:#?}");
        for p in ["DestinationRule default/web", path, "unsupported", why] {
            assert!(text[0].contains(p), "{:?} lacks {p:?}", text[0]);
        }
    }
}

/// The service's one port's settings win over the rule's, as in Istio; a port the
/// service does not have is an error.
#[test]
fn port_level_settings_for_the_services_port_override_the_policy() {
    let rule = |port: u16| {
        base().replace(
            "  host: web\n",
            &format!("  host: web\n  trafficPolicy:\n    loadBalancer: {{ simple: RANDOM }}\n    portLevelSettings:\n      - port: {{ number: {port} }}\n        loadBalancer: {{ simple: LEAST_REQUEST }}\n        connectionPool: {{ tcp: {{ maxConnections: 7 }} }}\n"),
        )
    };
    let (_, mesh) = read_ok("istio-port-level", &rule(80));
    let tp = &mesh.services[0].traffic_policy;
    assert_eq!(
        tp.load_balancer,
        Some(wasmesh::model::LoadBalancer::Simple(
            wasmesh::model::SimpleLb::LeastRequest
        ))
    );
    assert_eq!(
        tp.connection_pool.as_ref().unwrap().max_connections,
        Some(7)
    );
    let errors = read("istio-port-level-wrong", &rule(81), false).unwrap_err();
    assert!(
        messages(&errors)[0].contains(
            "spec.trafficPolicy.portLevelSettings[0].port.number: 81: the service has one port, 80"
        ),
        "{:?}",
        messages(&errors)
    );
}

#[test]
fn security_fields_wasmesh_does_not_carry_are_refused_with_their_path() {
    refused(
        "istio-custom-without-meshconfig",
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: { name: ext }\nspec:\n  action: CUSTOM\n  provider: { name: opa }\n  rules: [{}]\n",
        &["AuthorizationPolicy default/ext spec.provider.name", "no such extensionProviders entry"],
    );
    refused(
        "istio-jwks-uri",
        "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: { name: jwt }\nspec:\n  selector: { matchLabels: { app: web } }\n  jwtRules: [{ issuer: x, jwksUri: 'https://idp/jwks' }]\n",
        &["RequestAuthentication default/jwt spec.jwtRules[0].jwksUri", "inline"],
    );
    // A workload mode other than the mesh's: the model has one mode.
    refused(
        "istio-pa-workload",
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: { name: default, namespace: istio-system }\nspec: { mtls: { mode: STRICT } }\n---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: { name: web }\nspec:\n  selector: { matchLabels: { app: web } }\n  mtls: { mode: PERMISSIVE }\n",
        &["PeerAuthentication default/web spec.mtls.mode", "one mTLS mode"],
    );
    refused(
        "istio-pa-port",
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: { name: web }\nspec:\n  selector: { matchLabels: { app: web } }\n  portLevelMtls: { \"80\": { mode: DISABLE } }\n",
        &["PeerAuthentication default/web spec.portLevelMtls.80.mode", "one mTLS mode"],
    );
    refused(
        "istio-selector-version",
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: { name: v2-only }\nspec:\n  selector: { matchLabels: { app: web, version: v2 } }\n",
        &["spec.selector.matchLabels.version", "every version"],
    );
}

#[test]
fn kubernetes_fields_wasmesh_does_not_carry_are_refused_with_their_path() {
    let doc = base().replace(
        "spec: { containers: [{ name: web, image: web:1 }] }\n---\napiVersion: apps/v1",
        "spec: { containers: [{ name: web, image: web:1, resources: {} }], hostNetwork: true }\n---\napiVersion: apps/v1",
    );
    let errors = read("istio-k8s-fields", &doc, false).unwrap_err();
    let text = messages(&errors).join("\n");
    assert!(
        text.contains(
            "Deployment default/web-v1 spec.template.spec.containers[0].resources: unsupported"
        ),
        "{text}"
    );
    assert!(
        text.contains("Deployment default/web-v1 spec.template.spec.hostNetwork: unsupported"),
        "{text}"
    );
    let two_ports = base().replace(
        "ports: [{ name: http, port: 80 }]",
        "ports: [{ name: http, port: 80 }, { name: grpc, port: 81 }]",
    );
    let errors = read("istio-two-ports", &two_ports, false).unwrap_err();
    assert!(messages(&errors)[0]
        .contains("Service default/web spec.ports[1]: unsupported: a service has one port"));
}

#[test]
fn allow_unsupported_drops_each_field_with_a_warning_and_keeps_the_rest() {
    let extra = format!(
        "{VS_HEAD}    - delegate: {{ name: web-routes }}\n      route: [{{ destination: {{ host: web, subset: v2 }}, headers: {{ request: {{ set: {{ a: b }} }} }} }}]\n"
    );
    let loaded = read("istio-allow", &with_base(&extra), true).unwrap();
    let dropped = messages(&loaded.dropped);
    assert_eq!(dropped.len(), 2, "{dropped:#?}");
    assert!(dropped[0].contains("spec.http[0].delegate"), "{dropped:?}");
    assert!(
        dropped[1].contains("spec.http[0].route[0].headers"),
        "{dropped:?}"
    );
    let web = &loaded.mesh.services[0];
    assert_eq!(web.routes[0].route[0].version.as_deref(), Some("v2"));
    // The CLI prints each one.
    let dir = common::scratch("istio-allow-cli");
    std::fs::write(dir.join("in.yaml"), with_base(&extra)).unwrap();
    let strict = std::process::Command::new(env!("CARGO_BIN_EXE_wasmesh"))
        .args(["validate", "--no-envoy"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!strict.status.success());
    let allowed = std::process::Command::new(env!("CARGO_BIN_EXE_wasmesh"))
        .args(["validate", "--no-envoy", "--allow-unsupported"])
        .arg(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&allowed.stdout);
    assert!(allowed.status.success(), "{stdout}");
    assert_eq!(stdout.matches("warning: dropped").count(), 2, "{stdout}");
}

#[test]
fn references_to_nothing_are_errors_with_their_path() {
    let errors = read(
        "istio-bad-refs",
        &with_base(&format!("{VS_HEAD}    - route: [{{ destination: {{ host: web, subset: v9 }} }}, {{ destination: {{ host: nowhere }} }}]\n")),
        true,
    )
    .unwrap_err();
    let text = messages(&errors).join("\n");
    assert!(
        text.contains("spec.http[0].route[0].destination.subset: v9"),
        "{text}"
    );
    assert!(
        text.contains("spec.http[0].route[1].destination.host: nowhere"),
        "{text}"
    );
}

/// A mesh file on disk is still read as one.
#[test]
fn a_mesh_file_is_not_taken_for_istio_input() {
    assert!(!istio_input::is_istio_input(&common::bookinfo_path()));
    assert!(istio_input::is_istio_input(Path::new(&istio_bookinfo())));
    assert!(istio_input::is_istio_input(
        &istio_bookinfo().join("bookinfo.yaml")
    ));
}

/// Redirect, rewrite, route header operations and query-parameter matches: read from
/// a VirtualService, carried into Envoy's routes, accepted by Envoy, and written back
/// by `wasmesh k8s` as they were.
#[test]
fn redirect_rewrite_headers_and_query_params_reach_envoy_and_round_trip() {
    let extra = format!(
        "{VS_HEAD}{}",
        r#"    - name: old-path
      match: [{ uri: { prefix: /old } }]
      redirect: { uri: /new, authority: web.example, redirectCode: 308 }
    - name: gone
      match: [{ uri: { exact: /gone } }]
      directResponse: { status: 410, body: { string: "gone for good" } }
    - name: api
      match: [{ uri: { prefix: /api/ }, queryParams: { debug: { exact: "1" } } }]
      rewrite: { uri: /, authority: web-internal }
      headers:
        request: { set: { x-mesh: wasmesh }, add: { x-trace: on }, remove: [cookie] }
        response: { remove: [server] }
      route: [{ destination: { host: web, subset: v2 } }]
"#
    );
    let (dir, mesh) = read_ok("istio-route-features", &with_base(&extra));
    let routes = &mesh.services[0].routes;
    let redirect = routes[0].redirect.as_ref().unwrap();
    assert_eq!(
        (
            redirect.uri.as_deref(),
            redirect.authority.as_deref(),
            redirect.redirect_code
        ),
        (Some("/new"), Some("web.example"), 308)
    );
    assert!(routes[0].route.is_empty());
    let gone = routes[1].direct_response.as_ref().unwrap();
    assert_eq!(
        (gone.status, gone.body.as_deref()),
        (410, Some("gone for good"))
    );
    let api = &routes[2];
    assert_eq!(
        api.matches[0].query_params["debug"].exact.as_deref(),
        Some("1")
    );
    assert_eq!(api.rewrite.as_ref().unwrap().uri.as_deref(), Some("/"));
    let h = api.headers.as_ref().unwrap();
    assert_eq!(h.request.set["x-mesh"], "wasmesh");
    assert_eq!(h.request.add["x-trace"], "on");
    assert_eq!(h.response.remove, ["server"]);

    // Into Envoy's routes (each caller's outbound listener has them).
    let bytes = &web_bootstrap(&mesh);
    let text = String::from_utf8_lossy(bytes);
    for want in [
        r#""path_redirect": "/new""#,
        r#""host_redirect": "web.example""#,
        r#""response_code": "PERMANENT_REDIRECT""#,
        r#""prefix_rewrite": "/""#,
        r#""host_rewrite_literal": "web-internal""#,
        r#""append_action": "OVERWRITE_IF_EXISTS_OR_ADD""#,
        r#""append_action": "APPEND_IF_EXISTS_OR_ADD""#,
        r#""request_headers_to_remove": ["#,
        r#""response_headers_to_remove": ["#,
        r#""query_parameters": ["#,
        r#""inline_string": "gone for good""#,
    ] {
        assert!(text.contains(want), "web-v1-0.json lacks {want}");
    }
    common::validate_with_envoy(env!("CARGO_BIN_EXE_wasmesh"), &dir, Some(2));

    // `wasmesh k8s` writes them back into the VirtualService; read again, the same.
    assert_eq!(
        k8s_read_back(&mesh).services[0].routes,
        mesh.services[0].routes
    );
}

/// Istio's corsPolicy: the cors filter first in the outbound chain of the route's
/// callers, the policy a rule for the route's Envoy name; accepted by Envoy; written
/// back by `wasmesh k8s`.
#[test]
fn a_cors_policy_becomes_the_cors_stage_for_its_route_and_round_trips() {
    let extra = format!(
        "{VS_HEAD}{}",
        r#"    - corsPolicy:
        allowOrigins: [{ exact: "https://shop.example" }, { regex: "https://.*\\.shop\\.example" }]
        allowMethods: [GET, POST]
        allowHeaders: [x-token]
        exposeHeaders: [x-trace]
        maxAge: 24h
        allowCredentials: true
        unmatchedPreflights: IGNORE
      route: [{ destination: { host: web } }]
"#
    );
    let (dir, mesh) = read_ok("istio-cors", &with_base(&extra));
    let cors = mesh.services[0].routes[0].cors_policy.as_ref().unwrap();
    assert_eq!(cors.allow_methods, ["GET", "POST"]);
    assert_eq!(cors.max_age.unwrap().as_millis(), 86_400_000);
    let bytes = &web_bootstrap(&mesh);
    let bootstrap: serde_json::Value = serde_json::from_slice(bytes).unwrap();
    let listeners = bootstrap["static_resources"]["listeners"]
        .as_array()
        .unwrap();
    let outbound = listeners
        .iter()
        .find(|l| l["name"] == "virtualOutbound")
        .unwrap();
    let hcm = &outbound["filter_chains"][0]["filters"][0]["typed_config"];
    let first = &hcm["http_filters"][0];
    assert_eq!(first["name"], "wasmesh.cors", "{first}");
    let route = &hcm["route_config"]["virtual_hosts"][0]["routes"][0];
    let route_name = route["name"].as_str().unwrap();
    assert!(route.get("typed_per_filter_config").is_none(), "{route}");
    let config: serde_json::Value = serde_json::from_str(
        first["typed_config"]["config"]["configuration"]["value"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let rule = &config["rules"][0];
    assert_eq!(
        rule["match"]["route_names"],
        serde_json::json!([route_name])
    );
    let policy = &rule["corsPolicy"];
    assert_eq!(policy["allowOrigins"][0]["exact"], "https://shop.example");
    assert_eq!(policy["allowMethods"], serde_json::json!(["GET", "POST"]));
    assert_eq!(policy["maxAge"], "86400s");
    assert_eq!(policy["allowCredentials"], true);
    assert_eq!(policy["unmatchedPreflights"], "IGNORE");
    // Envoy's own CORS filter is not used.
    assert!(!bootstrap.to_string().contains("envoy.filters.http.cors"));
    // The inbound listener's chain has no route policies: no cors filter.
    let inbound = listeners
        .iter()
        .find(|l| l["name"] == "virtualInbound")
        .unwrap();
    let text = inbound.to_string();
    assert!(!text.contains("wasmesh.cors"), "{text}");
    common::validate_with_envoy(env!("CARGO_BIN_EXE_wasmesh"), &dir, Some(2));
    assert_eq!(
        k8s_read_back(&mesh).services[0].routes,
        mesh.services[0].routes
    );
}

/// `web-v1-0.json`, the process-target bootstrap of web's first replica.
fn web_bootstrap(mesh: &wasmesh::model::MeshFile) -> Vec<u8> {
    let mut opts = wasmesh::GenerateOptions::process("out", 20000);
    opts.filters_dir = common::filters_dir().display().to_string();
    let files = wasmesh::generate(mesh, &opts).unwrap();
    files
        .into_iter()
        .find(|(p, _)| p.to_string_lossy() == "web-v1-0.json")
        .unwrap()
        .1
}

/// `mesh` through `wasmesh k8s` and read back as Istio input.
fn k8s_read_back(mesh: &wasmesh::model::MeshFile) -> wasmesh::model::MeshFile {
    let opts = wasmesh::k8s::K8sOptions::new("oci://r/", common::filters_dir());
    let out = common::scratch("istio-k8s-read-back");
    wasmesh::write_files(&out, &wasmesh::k8s::generate(mesh, &opts).unwrap()).unwrap();
    istio_input::load(&out, false)
        .unwrap_or_else(|e| panic!("{:#?}", messages(&e)))
        .mesh
}

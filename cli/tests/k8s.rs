//! `wasmesh k8s` output parses back into the typed Kubernetes and Istio structs and
//! carries the mesh's routing, policies and filters.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests fail loudly.

mod common;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use wasmesh::istio;
use wasmesh::k8s::{generate, AuthzMode, K8sOptions};

fn parse<T: DeserializeOwned>(path: &str, bytes: &[u8]) -> T {
    match serde_norway::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => panic!("{path}: {e}"),
    }
}

#[test]
fn bookinfo_manifests_parse_back_into_typed_resources() {
    let mesh = common::bookinfo();
    let opts = K8sOptions::new("oci://registry.example/wasmesh/", common::filters_dir());
    let files = generate(&mesh, &opts).unwrap();
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    let mut reviews_vs = None;
    let mut plugins = Vec::new();
    let mut policies = Vec::new();
    for (path, bytes) in &files {
        let p = path.display().to_string();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let kind = file
            .split('-')
            .next()
            .unwrap()
            .trim_end_matches(".yaml")
            .to_string();
        *kinds.entry(kind.clone()).or_default() += 1;
        match kind.as_str() {
            "deployment" => {
                let d: Deployment = parse(&p, bytes);
                assert!(d
                    .spec
                    .unwrap()
                    .template
                    .spec
                    .unwrap()
                    .service_account_name
                    .is_some());
            }
            "service" => {
                parse::<Service>(&p, bytes);
            }
            "serviceaccount" => {
                parse::<ServiceAccount>(&p, bytes);
            }
            "virtualservice" => {
                let vs: istio::VirtualService = parse(&p, bytes);
                if vs.metadata.name.as_deref() == Some("reviews") {
                    reviews_vs = Some(vs);
                }
            }
            "destinationrule" => {
                let dr: istio::DestinationRule = parse(&p, bytes);
                assert!(!dr.spec.subsets.is_empty());
            }
            "gateway" => {
                parse::<istio::Gateway>(&p, bytes);
            }
            "wasmplugin" => plugins.push(parse::<istio::WasmPlugin>(&p, bytes)),
            "authorizationpolicy" => policies.push(parse::<istio::AuthorizationPolicy>(&p, bytes)),
            "peerauthentication" => {
                let pa: istio::PeerAuthentication = parse(&p, bytes);
                assert_eq!(pa.spec.mtls.mode, "STRICT");
            }
            "kustomization.yaml" | "kustomization" => {}
            other => panic!("unexpected file {p} ({other})"),
        }
    }
    assert_eq!(kinds["deployment"], 6, "{kinds:?}");
    assert_eq!(kinds["service"], 4);
    assert_eq!(kinds["destinationrule"], 4);

    // The canary and the test-user route, as Istio routes.
    let vs = reviews_vs.unwrap();
    assert_eq!(vs.spec.hosts, ["reviews.default.svc.cluster.local"]);
    assert_eq!(
        vs.spec.http[0].matches[0].headers["end-user"]
            .exact
            .as_deref(),
        Some("jason")
    );
    assert_eq!(
        vs.spec.http[0].route[0].destination.subset.as_deref(),
        Some("v2")
    );
    let weights: Vec<_> = vs.spec.http[1].route.iter().map(|d| d.weight).collect();
    assert_eq!(weights, [Some(80), Some(20)]);

    // Plain-Istio authz became native policies, one per service.
    assert_eq!(policies.len(), 4);
    assert!(policies.iter().all(|p| p.spec.action == "ALLOW"));
    // Telemetry in STATS, traffic filters in AUTHZ, with OCI URLs.
    let telemetry = plugins
        .iter()
        .find(|p| p.spec.plugin_name == "telemetry")
        .unwrap();
    assert_eq!(telemetry.spec.phase, "STATS");
    assert!(telemetry
        .spec
        .url
        .starts_with("oci://registry.example/wasmesh/telemetry:"));
    assert!(telemetry.spec.plugin_config["workload"]["app"].is_string());
    let ratelimit = plugins
        .iter()
        .find(|p| p.spec.plugin_name == "ratelimit")
        .unwrap();
    assert_eq!(ratelimit.spec.phase, "AUTHZ");
    assert_eq!(
        ratelimit.metadata.namespace.as_deref(),
        Some("istio-system")
    );
    assert!(plugins.iter().all(|p| p.spec.plugin_name != "authz"));
}

#[test]
fn wasm_authz_mode_and_https_urls_pin_the_module_by_sha256() {
    let mesh = common::bookinfo();
    let mut opts = K8sOptions::new("https://example.com/filters/", common::filters_dir());
    opts.authz = AuthzMode::Wasm;
    let files = generate(&mesh, &opts).unwrap();
    let plugins: Vec<istio::WasmPlugin> = files
        .iter()
        .filter(|(p, _)| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("wasmplugin-")
        })
        .map(|(p, b)| parse(&p.display().to_string(), b))
        .collect();
    let authz: Vec<_> = plugins
        .iter()
        .filter(|p| p.spec.plugin_name == "authz")
        .collect();
    assert_eq!(authz.len(), 4);
    assert_eq!(authz[0].spec.url, "https://example.com/filters/authz.wasm");
    assert_eq!(authz[0].spec.sha256.as_ref().map(String::len), Some(64));
    assert!(!files
        .iter()
        .any(|(p, _)| p.to_string_lossy().contains("authorizationpolicy")));
}

#[test]
fn egress_becomes_service_entries_and_tls_origination_rules() {
    let yaml = r#"
mesh: { name: egress }
services:
  - { name: web, port: 80 }
egress:
  - { host: api.partner.example, port: 443, tls: true, caCertificates: /etc/partner/ca.pem }
  - { host: legacy.example, port: 8443, tls: true, insecureSkipVerify: true }
  - { host: example.com, port: 80 }
"#;
    let mesh = wasmesh::load_str(std::path::Path::new("egress.yaml"), yaml).unwrap();
    let opts = K8sOptions::new("oci://registry.example/wasmesh/", common::filters_dir());
    let files = generate(&mesh, &opts).unwrap();
    let find = |name: &str| {
        let (path, bytes) = files
            .iter()
            .find(|(p, _)| p.display().to_string() == name)
            .unwrap_or_else(|| panic!("no {name}"));
        (path.display().to_string(), bytes.clone())
    };
    let (p, b) = find("istio-system/serviceentry-egress-api-partner-example-443.yaml");
    let entry: istio::ServiceEntry = parse(&p, &b);
    assert_eq!(entry.spec.hosts, ["api.partner.example"]);
    assert_eq!(entry.spec.ports[0].number, 443);
    assert_eq!(
        entry.spec.ports[0].protocol, "HTTP",
        "the app speaks plain HTTP"
    );
    assert_eq!(entry.spec.location, "MESH_EXTERNAL");
    let (p, b) = find("istio-system/destinationrule-egress-api-partner-example-443.yaml");
    let rule: istio::DestinationRule = parse(&p, &b);
    let tls = rule.spec.traffic_policy.unwrap().tls.unwrap();
    assert_eq!(tls.mode, "SIMPLE");
    assert_eq!(tls.sni.as_deref(), Some("api.partner.example"));
    assert_eq!(tls.ca_certificates.as_deref(), Some("/etc/partner/ca.pem"));
    assert!(!tls.insecure_skip_verify);
    let (p, b) = find("istio-system/destinationrule-egress-legacy-example-8443.yaml");
    let rule: istio::DestinationRule = parse(&p, &b);
    assert!(
        rule.spec
            .traffic_policy
            .unwrap()
            .tls
            .unwrap()
            .insecure_skip_verify
    );
    // Plain HTTP egress needs no DestinationRule.
    find("istio-system/serviceentry-egress-example-com-80.yaml");
    assert!(!files.iter().any(|(p, _)| p
        .display()
        .to_string()
        .contains("destinationrule-egress-example-com")));
    let (_, kustomization) = find("kustomization.yaml");
    let text = String::from_utf8(kustomization).unwrap();
    assert!(text.contains("istio-system/serviceentry-egress-example-com-80.yaml"));
}

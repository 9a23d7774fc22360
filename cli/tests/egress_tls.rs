//! Egress TLS origination against a real TLS server (an Envoy with a certificate from
//! a test CA): the generated sidecar cluster reaches it only when the certificate
//! chains to `caCertificates` and names the host. A server the system CAs do not
//! know, or a trusted certificate for another host, gets 503; `insecureSkipVerify`
//! connects to anything.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use serde_json::json;
use std::path::Path;
use wasmesh::certs::Ca;
use wasmesh::{generate, topology, GenerateOptions};
use wasmesh_integration::bootstrap::{self, http_listener, INGRESS};
use wasmesh_integration::paths::TempDir;
use wasmesh_integration::{http, Envoy};

/// An external HTTPS server answering `external` with a certificate for `dns`.
fn external_server(dir: &Path, ca: &Ca, dns: &str) -> Envoy {
    let (cert, key) = common::write_issued(dir, dns, ca, None, &[dns.to_string()]);
    let route = json!({"match": {"prefix": "/"},
        "direct_response": {"status": 200, "body": {"inline_string": "external"}}});
    let mut listener = http_listener(INGRESS, vec![], vec![route]);
    listener["filter_chains"][0]["transport_socket"] = json!({
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            "common_tls_context": {"tls_certificates": [{
                "certificate_chain": {"filename": cert},
                "private_key": {"filename": key},
            }]},
        },
    });
    let config = json!({
        "admin": bootstrap::admin(),
        "static_resources": {"listeners": [listener]},
    });
    Envoy::start(&config).unwrap()
}

/// A client Envoy whose upstream is the egress cluster `wasmesh generate` writes for
/// `egress` (a YAML flow mapping with `host: localhost` and the server's port).
fn client_with_generated_egress(egress: &str, port: u16) -> Envoy {
    let yaml =
        format!("mesh: {{ name: egress }}\nservices:\n  - {{ name: web, port: 80 }}\negress:\n  - {egress}\n");
    let mesh = wasmesh::load_str(Path::new("egress.yaml"), &yaml).unwrap();
    let mut opts = GenerateOptions::process("out", topology::DEFAULT_PORT_BASE);
    opts.filters_dir = common::filters_dir().display().to_string();
    let files = generate(&mesh, &opts).unwrap();
    let web = common::generated_bootstrap(&files, "web-v1-0");
    let mut cluster =
        common::resource(&web, "clusters", &format!("outbound|{port}||localhost")).clone();
    cluster["name"] = json!(bootstrap::UPSTREAM);
    let mut config = bootstrap::proxy_to(port, &[]);
    config["static_resources"]["clusters"] = json!([cluster]);
    Envoy::start(&config).unwrap()
}

fn status_via(client: &Envoy) -> u16 {
    http::get(&format!(
        "{}/v1/orders",
        client.listener_url(INGRESS).unwrap()
    ))
    .unwrap()
    .status
}

#[test]
fn egress_tls_reaches_only_a_server_that_proves_its_name() {
    let dir = TempDir::new("egress-tls").unwrap();
    let (partner_ca, ca_file) = common::ca_in(dir.path(), "partner");

    let server = external_server(dir.path(), &partner_ca, "localhost");
    let port = server.listener_port(INGRESS).unwrap();
    let trusting = client_with_generated_egress(
        &format!("{{ host: localhost, port: {port}, tls: true, caCertificates: \"{ca_file}\" }}"),
        port,
    );
    assert_eq!(status_via(&trusting), 200, "{}", trusting.log());

    // The default trust is the system CA bundle, which has never heard of this CA.
    let default_trust = client_with_generated_egress(
        &format!("{{ host: localhost, port: {port}, tls: true }}"),
        port,
    );
    assert_eq!(status_via(&default_trust), 503);

    // A certificate from the trusted CA, but for another host: refused too.
    let impostor = external_server(dir.path(), &partner_ca, "other.example");
    let impostor_port = impostor.listener_port(INGRESS).unwrap();
    let fooled = client_with_generated_egress(
        &format!("{{ host: localhost, port: {impostor_port}, tls: true, caCertificates: \"{ca_file}\" }}"),
        impostor_port,
    );
    assert_eq!(status_via(&fooled), 503);

    // insecureSkipVerify gives up both checks, as its name says.
    let insecure = client_with_generated_egress(
        &format!(
            "{{ host: localhost, port: {impostor_port}, tls: true, insecureSkipVerify: true }}"
        ),
        impostor_port,
    );
    assert_eq!(status_via(&insecure), 200);
}

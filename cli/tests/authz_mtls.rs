//! Authorization by mTLS principal between real Envoy sidecars: certificates from the
//! mesh CA (rcgen) carry SPIFFE URI SANs; the server sidecar's authz filter allows
//! one client's principal and denies another's, and a client with a certificate from
//! a foreign CA never gets through the handshake.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use serde_json::{json, Value};
use std::path::Path;
use wasmesh::certs::Ca;
use wasmesh_harness::build::wasm_module;
use wasmesh_integration::bootstrap::{self, http_listener, wasm_filters, WasmFilter, INGRESS};
use wasmesh_integration::paths::TempDir;
use wasmesh_integration::{http, EchoServer, Envoy};

const TRUST: &str = "cluster.local";

fn write_identity(dir: &Path, name: &str, ca: &Ca) -> (String, String) {
    let spiffe = format!("spiffe://{TRUST}/ns/default/sa/{name}");
    common::write_issued(dir, name, ca, Some(&spiffe), &[])
}

fn tls_context(cert: &(String, String), ca_file: &str) -> Value {
    json!({
        "tls_certificates": [{
            "certificate_chain": {"filename": cert.0},
            "private_key": {"filename": cert.1},
        }],
        "validation_context": {"trusted_ca": {"filename": ca_file}},
    })
}

/// The server sidecar: mTLS required on its listener, the authz filter, then the app.
fn server_sidecar(app_port: u16, identity: &(String, String), ca_file: &str) -> Value {
    let authz = WasmFilter::new("wasmesh.authz", wasm_module("wasmesh-authz")).config(json!({
        "policies": [{
            "name": "only-client-a",
            "action": "ALLOW",
            "rules": [{"from": [{"source": {"principals": [format!("{TRUST}/ns/default/sa/client-a")]}}]}],
        }],
    }));
    let route = json!({"match": {"prefix": "/"}, "route": {"cluster": bootstrap::UPSTREAM}});
    let mut listener = http_listener(INGRESS, wasm_filters(&[authz]), vec![route]);
    listener["filter_chains"][0]["transport_socket"] = json!({
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            "require_client_certificate": true,
            "common_tls_context": tls_context(identity, ca_file),
        },
    });
    json!({
        "admin": bootstrap::admin(),
        "static_resources": {
            "listeners": [listener],
            "clusters": [bootstrap::static_cluster(bootstrap::UPSTREAM, app_port)],
        },
    })
}

/// A client sidecar: plaintext from its app, mTLS with its own identity upstream.
fn client_sidecar(server_port: u16, identity: &(String, String), ca_file: &str) -> Value {
    let mut config = bootstrap::proxy_to(server_port, &[]);
    config["static_resources"]["clusters"][0]["transport_socket"] = json!({
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "common_tls_context": tls_context(identity, ca_file),
        },
    });
    config
}

#[test]
fn authz_allows_and_denies_by_mtls_principal() {
    let dir = TempDir::new("authz-mtls").unwrap();
    let (ca, ca_file) = common::ca_in(dir.path(), "authz-mtls");
    let server_id = write_identity(dir.path(), "server", &ca);
    let a_id = write_identity(dir.path(), "client-a", &ca);
    let b_id = write_identity(dir.path(), "client-b", &ca);
    let foreign_ca = Ca::generate("intruder").unwrap();
    let foreign_id = write_identity(dir.path(), "client-x", &foreign_ca);

    let app = EchoServer::start_named("server-app").unwrap();
    let server = Envoy::start(&server_sidecar(app.port(), &server_id, &ca_file)).unwrap();
    let server_port = server.listener_port(INGRESS).unwrap();
    let client_a = Envoy::start(&client_sidecar(server_port, &a_id, &ca_file)).unwrap();
    let client_b = Envoy::start(&client_sidecar(server_port, &b_id, &ca_file)).unwrap();
    let client_x = Envoy::start(&client_sidecar(server_port, &foreign_id, &ca_file)).unwrap();

    let via = |envoy: &Envoy| {
        http::get(&format!(
            "{}/reviews/1",
            envoy.listener_url(INGRESS).unwrap()
        ))
        .unwrap()
    };
    let allowed = via(&client_a);
    assert_eq!(allowed.status, 200, "{}", server.log());
    assert_eq!(allowed.header("x-echo-name"), Some("server-app"));
    let denied = via(&client_b);
    assert_eq!(denied.status, 403);
    assert_eq!(denied.text(), "RBAC: access denied");
    // A certificate from another CA fails the handshake: the client sidecar answers 503.
    assert_eq!(via(&client_x).status, 503);
    assert_eq!(app.requests(), 1, "only client-a's request reached the app");
}

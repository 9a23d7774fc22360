//! Two generated sidecars with mTLS STRICT on real Envoy: a request passes between them,
//! plaintext to the inbound port is refused, a certificate from another CA is refused,
//! and a rotation is picked up without a restart. With PERMISSIVE, each inbound chain's
//! telemetry reports its own connection security policy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests fail loudly.

mod common;

use common::{bootstrap_of, bootstraps, Pair};
use std::time::{Duration, Instant};
use wasmesh::certs;
use wasmesh_integration::tls::{self, Failure, TlsClient};
use wasmesh_integration::{http, Envoy};

/// A client and a server in a mesh of `mode`, with `server_extra` appended to the
/// server's entry.
fn pair_mesh(mode: &str, server_extra: &str) -> String {
    format!(
        r#"
mesh:
  name: pair
  mtls: {mode}
services:
  - name: client
    port: 9080
    calls: [server]
  - name: server
    port: 9080
    calls: []
{server_extra}"#
    )
}

/// The server's SPIFFE ID and the SNI its callers send (Istio's).
const SERVER_SPIFFE: &str = "spiffe://cluster.local/ns/default/sa/server";
const SERVER_SNI: &str = "outbound_.9080_._.server.default.svc.cluster.local";
const CLIENT_SPIFFE: &str = "spiffe://cluster.local/ns/default/sa/client";

fn inbound_addr(ports: wasmesh::topology::Ports) -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], ports.inbound))
}

/// A TLS client for a sidecar's inbound port: trusts the mesh CA in `certs_dir`,
/// presents a certificate for `CLIENT_SPIFFE` issued by `issuer`.
fn mesh_client(certs_dir: &std::path::Path, issuer: &certs::Ca) -> TlsClient {
    let ca_pem = std::fs::read_to_string(certs_dir.join("ca.pem")).unwrap();
    let issued = issuer.issue(Some(CLIENT_SPIFFE), &[]).unwrap();
    TlsClient::mesh(
        &ca_pem,
        Some((&issued.chain_pem, &issued.key_pem)),
        SERVER_SPIFFE,
    )
    .unwrap()
}

/// The sum of the server's listener counters ending in `.ssl.SUFFIX`.
fn ssl_stat(envoy: &Envoy, suffix: &str) -> u64 {
    envoy
        .stats()
        .unwrap()
        .sum("listener.", &format!(".ssl.{suffix}"))
}

/// Polls `cond` for up to 10 s.
fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn strict_mtls_refuses_plaintext_and_foreign_ca_clients_at_the_handshake() {
    let pair = Pair::start(&pair_mesh("STRICT", ""), "mtls-handshake");
    let addr = inbound_addr(pair.server_ports);
    let real_ca = certs::Ca::load(&pair.certs_dir, "pair").unwrap();

    // Control: a mesh identity from the mesh CA gets an answer from the app.
    let r = mesh_client(&pair.certs_dir, &real_ca)
        .get(addr, SERVER_SNI, "/hello", "server:9080")
        .unwrap_or_else(|f| panic!("the mesh client was refused: {f:?}"));
    assert_eq!(r.status, 200, "{}", r.text());
    let served = pair.server_app.requests();

    // Plaintext: the listener answers with TLS's refusal, never HTTP, and counts a
    // failed handshake.
    let errors = ssl_stat(&pair.server, "connection_error");
    let answer = tls::send_plaintext(addr).unwrap();
    assert!(answer.is_tls_refusal(), "plaintext got {answer:?}");
    wait_until("a failed handshake counted", || {
        ssl_stat(&pair.server, "connection_error") > errors
    });

    // A certificate from another CA (same SPIFFE ID): the server's alert names the CA.
    let rogue_ca = certs::Ca::generate("rogue").unwrap();
    let failed_verify = ssl_stat(&pair.server, "fail_verify_error");
    match mesh_client(&pair.certs_dir, &rogue_ca).get(addr, SERVER_SNI, "/hello", "server:9080") {
        Err(Failure::Alert(alert)) => {
            assert_eq!(
                alert,
                tls::AlertDescription::UnknownCA,
                "the server's alert"
            )
        }
        other => panic!("a foreign-CA client got {other:?}"),
    }
    wait_until("a failed verification counted", || {
        ssl_stat(&pair.server, "fail_verify_error") > failed_verify
    });

    // No client certificate at all: refused in the handshake too.
    let ca_pem = std::fs::read_to_string(pair.certs_dir.join("ca.pem")).unwrap();
    let anonymous = TlsClient::mesh(&ca_pem, None, SERVER_SPIFFE).unwrap();
    match anonymous.get(addr, SERVER_SNI, "/hello", "server:9080") {
        Err(Failure::Alert(alert)) => assert_eq!(alert, tls::AlertDescription::CertificateRequired),
        other => panic!("a client without a certificate got {other:?}"),
    }
    assert_eq!(
        pair.server_app.requests(),
        served,
        "a refused client reached the app"
    );
}

#[test]
fn strict_mtls_passes_mesh_traffic_and_refuses_plaintext_and_foreign_certs() {
    let Pair {
        mesh,
        certs_dir,
        base,
        configs,
        client,
        server,
        client_ports,
        server_ports,
        server_app,
        ..
    } = Pair::start(&pair_mesh("STRICT", ""), "mtls");
    let outbound = format!("http://127.0.0.1:{}/hello", client_ports.outbound);

    // 1. Through the client's sidecar to the server's: mTLS, and the app learns who called.
    let r = http::get_with(&outbound, &[("host", "server:9080")]).unwrap();
    assert_eq!(r.status, 200, "{}\n{}", r.text(), client.log_tail(20));
    let echo = wasmesh_integration::Echo::parse(&r.body).unwrap();
    assert_eq!(echo.name, "server");
    let xfcc = echo.header("x-forwarded-client-cert").unwrap_or_default();
    assert!(
        xfcc.contains("URI=spiffe://cluster.local/ns/default/sa/client"),
        "x-forwarded-client-cert: {xfcc:?}"
    );
    let served = server_app.requests();

    // 2. Plaintext straight to the server's inbound port: refused as TLS refuses it
    //    (see also strict_mtls_refuses_plaintext_and_foreign_ca_clients_at_the_handshake).
    let answer = tls::send_plaintext(inbound_addr(server_ports)).unwrap();
    assert!(answer.is_tls_refusal(), "plaintext got {answer:?}");
    assert_eq!(server_app.requests(), served, "plaintext reached the app");

    // 3. The client again, now with a certificate (same SPIFFE ID) from another CA.
    client.stop().unwrap();
    let rogue_ca = certs::Ca::generate("rogue").unwrap();
    let real_ca_pem = std::fs::read_to_string(certs_dir.join("ca.pem")).unwrap();
    let rogue_dir = common::scratch("mtls-rogue");
    let rogue_client = rogue_dir.join("client-v1-0");
    std::fs::create_dir_all(&rogue_client).unwrap();
    let issued = rogue_ca
        .issue(Some("spiffe://cluster.local/ns/default/sa/client"), &[])
        .unwrap();
    certs::write_atomic(
        &rogue_client.join("cert.sds.yaml"),
        &certs::tls_secret("default", &issued.chain_pem, &issued.key_pem),
    )
    .unwrap();
    // It trusts the real CA, so only the server's check can stop it.
    certs::write_atomic(
        &rogue_client.join("ca.sds.yaml"),
        &certs::ca_secret(&real_ca_pem),
    )
    .unwrap();
    let rogue_configs = bootstraps(&pair_mesh("STRICT", ""), &rogue_dir, base);
    let rogue = Envoy::start(bootstrap_of(&rogue_configs, "client")).unwrap();
    let r = http::get_with(&outbound, &[("host", "server:9080")]).unwrap();
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(
        server_app.requests(),
        served,
        "a foreign certificate reached the app"
    );
    rogue.stop().unwrap();

    // 4. Rotation: new certificates reach the running server without a restart.
    let before = server.admin().get_text("/certs").unwrap();
    certs::rotate(&mesh, &certs_dir).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = server.admin().get_text("/certs").unwrap();
        if now != before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the server kept its old certificate"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let client = Envoy::start(bootstrap_of(&configs, "client")).unwrap();
    let r = http::get_with(&outbound, &[("host", "server:9080")]).unwrap();
    assert_eq!(r.status, 200, "after rotation: {}", r.text());
    drop(client);
    drop(server);
}

/// The server's inbound telemetry, for the PERMISSIVE test.
const SERVER_TELEMETRY: &str = "    filters:\n      inbound:\n        - name: telemetry\n";

/// The generator tells the TLS chain's telemetry `mtls: STRICT` and the plaintext
/// chain's `DISABLE`; in Envoy each reports what its connections are, as the harness
/// test `a_configured_mtls_mode_spares_the_per_request_question` does per mode.
#[test]
fn permissive_mtls_reports_each_chains_connection_security_policy() {
    let pair = Pair::start(
        &pair_mesh("PERMISSIVE", SERVER_TELEMETRY),
        "mtls-permissive",
    );
    let (server, server_ports) = (&pair.server, pair.server_ports);

    // Three calls through the client's sidecar (mTLS), two plaintext straight to the
    // server's inbound port (PERMISSIVE takes both).
    let outbound = pair.outbound_url();
    for _ in 0..3 {
        let r = http::get_with(&outbound, &[("host", "server:9080")]).unwrap();
        assert_eq!(r.status, 200, "{}\n{}", r.text(), server.log_tail(20));
    }
    let inbound = format!("http://127.0.0.1:{}/hello", server_ports.inbound);
    for _ in 0..2 {
        let r = http::get(&inbound).unwrap();
        assert_eq!(r.status, 200, "{}\n{}", r.text(), server.log_tail(20));
    }

    // Counters reach /stats/prometheus at a stats flush: poll, bounded.
    let prom = format!(
        "http://127.0.0.1:{}/stats/prometheus",
        server_ports.prometheus
    );
    let series = |text: &str, policy: &str| -> Option<String> {
        text.lines()
            .find(|l| {
                l.starts_with("istio_requests_total{")
                    && l.contains(&format!("connection_security_policy=\"{policy}\""))
            })
            .map(str::to_string)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mtls, plain) = loop {
        let text = http::get(&prom).unwrap().text();
        if let (Some(m), Some(p)) = (series(&text, "mutual_tls"), series(&text, "none")) {
            if m.ends_with(" 3") && p.ends_with(" 2") {
                break (m, p);
            }
        }
        assert!(
            Instant::now() < deadline,
            "no per-chain series at {prom}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        mtls.contains("source_principal=\"spiffe://cluster.local/ns/default/sa/client\""),
        "{mtls}"
    );
    assert!(plain.contains("source_principal=\"unknown\""), "{plain}");
}

/// The first certificate of the TLS secret in an SDS file `certs::tls_secret` wrote.
fn sds_certificate(file: &std::path::Path) -> Vec<u8> {
    let sds: serde_json::Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    let pem = sds["resources"][0]["tls_certificate"]["certificate_chain"]["inline_string"]
        .as_str()
        .unwrap();
    tls::first_certificate_der(pem).unwrap()
}

#[test]
fn rotation_keeps_long_lived_connections_and_new_ones_get_the_new_certificate() {
    let pair = Pair::start(&pair_mesh("STRICT", ""), "mtls-rotation");
    let addr = inbound_addr(pair.server_ports);
    let server_cert_file = pair.certs_dir.join("server-v1-0/cert.sds.yaml");
    let old_cert = sds_certificate(&server_cert_file);
    let real_ca = certs::Ca::load(&pair.certs_dir, "pair").unwrap();
    let client = mesh_client(&pair.certs_dir, &real_ca);

    // A long-lived connection straight to the server's inbound port, and the sidecars'
    // own pooled connection (the client's app through its sidecar).
    let mut long_lived = client.connect(addr, SERVER_SNI).unwrap();
    assert_eq!(tls::peer_certificate(&long_lived), Some(old_cert.clone()));
    let r = long_lived.get("/hello", "server:9080").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let through_sidecars = || {
        let r = http::get_with(&pair.outbound_url(), &[("host", "server:9080")]).unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
    };
    through_sidecars();
    let upstream_connections = || {
        pair.client
            .stat("cluster.outbound|9080||server.default.svc.cluster.local.upstream_cx_total")
            .unwrap()
    };
    let pooled = upstream_connections();
    assert_eq!(
        pooled,
        Some(1),
        "one pooled connection between the sidecars"
    );

    // Both sides rotate; wait until both Envoys hold their new certificates.
    let before = (
        pair.client.admin().get_text("/certs").unwrap(),
        pair.server.admin().get_text("/certs").unwrap(),
    );
    certs::rotate(&pair.mesh, &pair.certs_dir).unwrap();
    let new_cert = sds_certificate(&server_cert_file);
    assert_ne!(new_cert, old_cert);
    wait_until("both sidecars load their new certificates", || {
        pair.client.admin().get_text("/certs").unwrap() != before.0
            && pair.server.admin().get_text("/certs").unwrap() != before.1
    });

    // The long-lived connection keeps working, still under the certificate it began with.
    for _ in 0..3 {
        let r = long_lived.get("/hello", "server:9080").unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(tls::peer_certificate(&long_lived), Some(old_cert));
    // So does the sidecars' pooled mTLS connection: no new one was opened.
    through_sidecars();
    assert_eq!(upstream_connections(), pooled, "the sidecars reconnected");

    // A new connection gets the new certificate.
    let fresh = client.connect(addr, SERVER_SNI).unwrap();
    assert_eq!(tls::peer_certificate(&fresh), Some(new_cert));
}

//! Two generated sidecars with mTLS STRICT on real Envoy: a request passes between them,
//! plaintext to the inbound port is refused, a certificate from another CA is refused,
//! and a rotation is picked up without a restart. With PERMISSIVE, each inbound chain's
//! telemetry reports its own connection security policy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests fail loudly.

mod common;

use common::{bootstrap_of, bootstraps, Pair};
use std::time::{Duration, Instant};
use wasmesh::certs;
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
    let inbound = format!("http://127.0.0.1:{}/hello", server_ports.inbound);

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

    // 2. Plaintext straight to the server's inbound port: no HTTP answer at all.
    match http::get(&inbound) {
        Err(_) => {}
        Ok(r) => panic!("plaintext got an HTTP answer: {} {}", r.status, r.text()),
    }
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

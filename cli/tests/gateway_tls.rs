//! The gateway's TLS termination, generated and run in real Envoy, checked with a real
//! TLS client (rustls): SIMPLE serves a client trusting the mesh CA and asking for a
//! gateway host, and fails the handshake of a client asking for another host (no
//! filter chain: cut off) or trusting another CA (it refuses the certificate). MUTUAL
//! also refuses, with the server's alert, a client without a certificate or with one
//! from a CA other than `caCertificates`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests fail loudly.

mod common;

use common::{ca_in, free_port_base, gateway_bootstrap, scratch};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use wasmesh::{certs, topology};
use wasmesh_integration::tls::{AlertDescription, Failure, TlsClient};
use wasmesh_integration::{http, ports, EchoServer, Envoy};

const HOST: &str = "shop.example.com";

/// A gateway for `HOST` in front of `web` (an echo server on its inbound port).
struct Gateway {
    certs_dir: PathBuf,
    addr: SocketAddr,
    envoy: Envoy,
    web: EchoServer,
}

impl Gateway {
    /// `tls` is the gateway's `tls:` value, inline YAML.
    fn start(label: &str, tls: &str) -> Gateway {
        let port = ports::free_port().unwrap();
        let mesh_text = format!(
            r#"
mesh:
  name: {label}
  mtls: DISABLE
services:
  - name: web
    port: 9080
    calls: []
gateway:
  port: {port}
  hosts: [{HOST}]
  tls: {tls}
  routes:
    - route: [{{ service: web }}]
"#
        );
        let mesh = wasmesh::load_str(Path::new("mesh.yaml"), &mesh_text).unwrap();
        let certs_dir = scratch(label).join("certs");
        certs::ensure(&mesh, &certs_dir).unwrap();
        let base = free_port_base(2);
        let instances =
            topology::instances(&mesh, topology::Target::Process { port_base: base }).unwrap();
        let web_inbound = instances
            .iter()
            .find(|i| i.name == "web-v1-0")
            .unwrap()
            .ports
            .inbound;
        let web = EchoServer::start_on(web_inbound, "web").unwrap();
        let envoy = Envoy::start(&gateway_bootstrap(&mesh_text, &certs_dir, base)).unwrap();
        Gateway {
            certs_dir,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            envoy,
            web,
        }
    }

    fn mesh_ca_pem(&self) -> String {
        std::fs::read_to_string(self.certs_dir.join("ca.pem")).unwrap()
    }

    /// `GET /` through the gateway with `client`, asking for `sni`.
    fn get(&self, client: &TlsClient, sni: &str) -> Result<http::Response, Failure> {
        client.get(self.addr, sni, "/", HOST)
    }

    fn listener_stat(&self, suffix: &str) -> u64 {
        self.envoy.stats().unwrap().sum("listener.", suffix)
    }
}

fn served(r: Result<http::Response, Failure>) -> http::Response {
    let r = r.unwrap_or_else(|f| panic!("refused: {f:?}"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-echo-name"), Some("web"));
    r
}

#[test]
fn simple_tls_serves_the_gateway_host_and_fails_other_hosts_and_cas_in_the_handshake() {
    let gw = Gateway::start("gw-simple", "{ mode: SIMPLE }");
    let trusting = TlsClient::new(&gw.mesh_ca_pem(), None).unwrap();
    served(gw.get(&trusting, HOST));
    let reached = gw.web.requests();

    // Another host: no filter chain for its SNI, so Envoy hangs up on the ClientHello.
    let unmatched = gw.listener_stat(".no_filter_chain_match");
    match gw.get(&trusting, "other.example.com") {
        Err(Failure::ClosedInHandshake) => {}
        other => panic!("a client asking for another host got {other:?}"),
    }
    assert_eq!(gw.listener_stat(".no_filter_chain_match"), unmatched + 1);

    // A client trusting another CA refuses the gateway's certificate.
    let dir = scratch("gw-simple-rogue");
    let (_, rogue_pem_file) = ca_in(&dir, "rogue");
    let rogue_pem = std::fs::read_to_string(rogue_pem_file).unwrap();
    let untrusting = TlsClient::new(&rogue_pem, None).unwrap();
    match gw.get(&untrusting, HOST) {
        Err(Failure::PeerCertificate(e)) => assert_eq!(
            e,
            wasmesh_integration::tls::CertificateError::UnknownIssuer,
            "the client's refusal"
        ),
        other => panic!("a client trusting another CA got {other:?}"),
    }
    assert_eq!(
        gw.web.requests(),
        reached,
        "a failed handshake reached the app"
    );
}

#[test]
fn mutual_tls_requires_a_client_certificate_from_the_configured_ca() {
    // Client certificates must come from a partner CA, not the mesh CA.
    let dir = scratch("gw-mutual-partner");
    let (partner, partner_file) = ca_in(&dir, "partner");
    let gw = Gateway::start(
        "gw-mutual",
        &format!("{{ mode: MUTUAL, caCertificates: {partner_file} }}"),
    );
    let ca_pem = gw.mesh_ca_pem();
    let with_cert_from = |ca: &certs::Ca| {
        let issued = ca.issue(None, &["client.partner.example".into()]).unwrap();
        TlsClient::new(&ca_pem, Some((&issued.chain_pem, &issued.key_pem))).unwrap()
    };

    served(gw.get(&with_cert_from(&partner), HOST));
    let reached = gw.web.requests();

    let no_cert = TlsClient::new(&ca_pem, None).unwrap();
    match gw.get(&no_cert, HOST) {
        Err(Failure::Alert(a)) => assert_eq!(a, AlertDescription::CertificateRequired),
        other => panic!("a client without a certificate got {other:?}"),
    }
    let mesh_ca = certs::Ca::load(&gw.certs_dir, "gw-mutual").unwrap();
    match gw.get(&with_cert_from(&mesh_ca), HOST) {
        Err(Failure::Alert(a)) => assert_eq!(a, AlertDescription::UnknownCA),
        other => panic!("a client with a certificate from another CA got {other:?}"),
    }
    assert_eq!(
        gw.web.requests(),
        reached,
        "a refused client reached the app"
    );
}

//! Part of the generated Bookinfo, running on real Envoy with the real filters: the
//! gateway, productpage's and details' sidecars, echo servers as the apps. Shows the
//! generated config works end to end: gateway route and header edit, mTLS between
//! sidecars, and the authz policy (details allows GET from productpage only).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests fail loudly.

mod common;

use serde_json::Value;
use wasmesh::{certs, generate, topology, GenerateOptions};
use wasmesh_integration::{http, Echo, EchoServer, Envoy};

#[test]
fn gateway_to_productpage_to_details_with_mtls_and_authz() {
    let mut mesh = common::bookinfo();
    let gateway_port = wasmesh_integration::ports::free_port().unwrap();
    mesh.gateway.as_mut().unwrap().port = gateway_port;
    let dir = common::scratch("bookinfo-live");
    let certs_dir = dir.join("certs");
    certs::ensure(&mesh, &certs_dir).unwrap();
    let base = common::free_port_base(7);
    let mut opts = GenerateOptions::process("out", base);
    opts.filters_dir = common::filters_dir().display().to_string();
    opts.certs_dir = certs_dir.display().to_string();
    let files = generate(&mesh, &opts).unwrap();
    let config = |name: &str| -> Value {
        let (_, b) = files
            .iter()
            .find(|(p, _)| p.display().to_string() == format!("{name}.json"))
            .unwrap();
        serde_json::from_slice(b).unwrap()
    };
    // Blocks: gateway 0, productpage 1, details 2; apps at offset 5.
    let block = |n: u16| base + n * topology::BLOCK;
    let _productpage = EchoServer::start_on(block(1) + 5, "productpage").unwrap();
    let _details = EchoServer::start_on(block(2) + 5, "details").unwrap();
    let details_sidecar = Envoy::start(&config("details-v1-0")).unwrap();
    let productpage_sidecar = Envoy::start(&config("productpage-v1-0")).unwrap();
    let gateway = Envoy::start(&config("ingressgateway")).unwrap();

    // Client -> gateway (ratelimit, headers) -> productpage's sidecar (mTLS, authz).
    let r = http::get(&format!("http://127.0.0.1:{gateway_port}/productpage")).unwrap();
    assert_eq!(r.status, 200, "{}\n{}", r.text(), gateway.log_tail(30));
    let echo = Echo::parse(&r.body).unwrap();
    assert_eq!(echo.name, "productpage");
    assert_eq!(echo.header("x-wasmesh-gateway"), Some("ingressgateway"));

    // productpage's app -> its outbound listener -> details (GET allowed).
    let outbound = format!("http://127.0.0.1:{}/details/0", block(1) + 1);
    let r = http::get_with(&outbound, &[("host", "details:9080")]).unwrap();
    assert_eq!(
        r.status,
        200,
        "{}\n{}",
        r.text(),
        details_sidecar.log_tail(30)
    );
    assert_eq!(Echo::parse(&r.body).unwrap().name, "details");

    // details allows only GET from productpage.
    let r = http::request("POST", &outbound, &[("host", "details:9080")], b"x").unwrap();
    assert_eq!(r.status, 403, "{}", r.text());

    // A path the gateway has no route for.
    let r = http::get(&format!("http://127.0.0.1:{gateway_port}/admin")).unwrap();
    assert_eq!(r.status, 404);
    drop(productpage_sidecar);
}

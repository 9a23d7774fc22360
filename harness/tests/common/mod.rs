//! Shared test helpers: the probe module (built once per test binary) and request builders.
// Test support: failing loudly is the point here.
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use wasmesh_harness::{build, request, Host, HostBuilder, Module};

pub fn probe() -> Module {
    Module::load(build::wasm_module("wasmesh-probe")).expect("probe loads")
}

pub fn host() -> Host {
    Host::builder(&probe()).build().expect("host builds")
}

pub fn builder() -> HostBuilder {
    Host::builder(&probe())
}

/// GET /x with the probe operation and extra headers.
pub fn op(name: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut h = request("GET", "/x", "example.com");
    h.push(("x-probe-op".into(), name.into()));
    for (k, v) in extra {
        h.push((k.to_string(), v.to_string()));
    }
    h
}

/// Reads a property through the probe: (status, body) of its local response.
pub fn property(host: &Host, path: &str) -> (u32, Vec<u8>) {
    let mut s = host.stream();
    s.request_headers(&op("property", &[("x-probe-property", path)]), true);
    let lr = s.local_response().expect("property op answers locally");
    (lr.status, lr.body)
}

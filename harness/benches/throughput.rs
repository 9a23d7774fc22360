//! Requests per second through a filter hosted in the harness: one full stream lifecycle per
//! request (context create, request headers in, response headers out, log, done, delete)
//! through the probe's passthrough path. Run: `cargo bench -p wasmesh-harness`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Benchmark binary.

use std::time::{Duration, Instant};
use wasmesh_harness::{build, request, response, Action, Host, Module};

fn main() {
    let module = Module::load(build::wasm_module("wasmesh-probe")).expect("probe loads");
    let host = Host::builder(&module).build().expect("host builds");
    let req = request("GET", "/bench", "example.com");
    let resp = {
        let mut r = response(200);
        r.push(("content-type".into(), "text/plain".into()));
        r
    };
    let run = |n: u32| {
        for _ in 0..n {
            let mut s = host.stream();
            assert_eq!(s.request_headers(&req, true), Action::Continue);
            assert_eq!(s.response_headers(&resp, true), Action::Continue);
            s.finish();
        }
    };
    run(10_000); // warm-up
    let mut best = 0f64;
    for round in 0..5 {
        let n = 100_000;
        let start = Instant::now();
        run(n);
        let elapsed = start.elapsed().max(Duration::from_nanos(1));
        let rate = f64::from(n) / elapsed.as_secs_f64();
        best = best.max(rate);
        println!("round {round}: {n} requests in {elapsed:?} = {rate:.0} req/s");
    }
    println!("best: {best:.0} req/s on one core (single worker, single thread)");
}

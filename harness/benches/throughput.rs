//! Requests per second through a filter hosted in the harness: one full stream lifecycle per
//! request (context create, request headers in, response headers out, log, done, delete),
//! single worker, single thread. Two scenarios on the probe: passthrough (one header read),
//! and `set-header` (reads, adds, replaces, removes request headers and adds response
//! headers, so data crosses into the guest through its allocator).
//! Run: `cargo bench -p wasmesh-harness`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Benchmark binary.

use std::time::{Duration, Instant};
use wasmesh_harness::{build, request, response, Action, Host, Module};

const ROUNDS: usize = 7;
const PER_ROUND: u32 = 100_000;

fn scenario(module: &Module, name: &str, op: Option<&str>) {
    let host = Host::builder(module).build().expect("host builds");
    let mut req = request("GET", "/bench", "example.com");
    if let Some(op) = op {
        req.push(("x-probe-op".into(), op.into()));
    }
    let mut resp = response(200);
    resp.push(("content-type".into(), "text/plain".into()));
    let run = |n: u32| {
        for _ in 0..n {
            let mut s = host.stream();
            assert_eq!(s.request_headers(&req, true), Action::Continue);
            assert_eq!(s.response_headers(&resp, true), Action::Continue);
            s.finish();
        }
    };
    run(10_000); // warm-up
    let mut rates: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            run(PER_ROUND);
            let elapsed = start.elapsed().max(Duration::from_nanos(1));
            f64::from(PER_ROUND) / elapsed.as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    let median = rates[ROUNDS / 2];
    println!(
        "{name:<12} median {median:>9.0} req/s ({:.2} us/request), min {:.0}, max {:.0} over {ROUNDS} x {PER_ROUND}",
        1e6 / median,
        rates[0],
        rates[ROUNDS - 1]
    );
    assert!(host.incidents().is_empty(), "{:?}", host.incidents());
}

fn main() {
    let module = Module::load(build::wasm_module("wasmesh-probe")).expect("probe loads");
    scenario(&module, "passthrough", None);
    scenario(&module, "set-header", Some("set-header"));
}

//! The short fuzz budget of every `cargo test`: each compiled filter and the mesh module
//! get their corpus seeds replayed, then `WASMESH_FUZZ_INPUTS` requests on accepted configs (default
//! [`CI_INPUTS`]) from a fresh run seed (`WASMESH_FUZZ_SEED`, default fixed so a plain
//! `cargo test` is reproducible). No input may trap. `scripts/fuzz.sh` runs the long budget.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use wasmesh_testkit::fuzz::{self, Corpus};

/// Requests per target in `cargo test`: 10k keeps the six targets near two minutes
/// on a busy two-core machine (docs/reliability.md); `scripts/fuzz.sh` runs 1M.
const CI_INPUTS: u64 = 10_000;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .map(|v| v.parse().unwrap_or_else(|e| panic!("{name}={v}: {e}")))
        .unwrap_or(default)
}

fn fuzz_target(name: &str) {
    let target = fuzz::find(name).unwrap();
    let corpus = Corpus::load(target);
    let inputs = env_u64("WASMESH_FUZZ_INPUTS", CI_INPUTS);
    let seed = env_u64("WASMESH_FUZZ_SEED", 0x5EED_0021);
    let report = fuzz::run(target, &corpus, seed, inputs);
    println!("FUZZ {}", report.summary());
    for held in &report.held_examples {
        println!("HELD {held}");
    }
    for t in &report.traps {
        println!("TRAP seed {}: {}", t.seed, t.what);
    }
    assert!(
        report.traps.is_empty(),
        "{} traps; first (add its seed to fuzz/corpus/{name}/seeds.txt): seed {}: {}",
        report.traps.len(),
        report.traps[0].seed,
        report.traps[0].what
    );
    assert!(report.inputs > 0, "every config was refused");
    if matches!(name, "ratelimit" | "mesh") {
        // The corpus has global rules: the rate limit service's replies are fuzzed too.
        assert!(
            report.grpc_calls > 0,
            "no request reached the rate limit service"
        );
    }
    assert!(
        report.held == 0 || target.may_delay(),
        "{} requests neither answered nor continued: {:?}",
        report.held,
        report.held_examples
    );
}

#[test]
fn no_input_traps_authz() {
    fuzz_target("authz");
}

#[test]
fn no_input_traps_body() {
    fuzz_target("body");
}

#[test]
fn no_input_traps_cors() {
    fuzz_target("cors");
}

#[test]
fn no_input_traps_ratelimit() {
    fuzz_target("ratelimit");
}

#[test]
fn no_input_traps_headers() {
    fuzz_target("headers");
}

#[test]
fn no_input_traps_fault() {
    fuzz_target("fault");
}

#[test]
fn no_input_traps_telemetry() {
    fuzz_target("telemetry");
}

#[test]
fn no_input_traps_the_mesh_module() {
    fuzz_target("mesh");
}

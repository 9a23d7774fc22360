//! The mesh's global rate limit service live, in process mode: `wasmesh up` on
//! `integration/tests/meshes/ratelimit.yaml` (`mesh.rateLimitService` and one global
//! rule on a service with two replicas, so two sidecars ask the one service), a burst
//! through the gateway spread over both sidecars, then `wasmesh down` leaving no
//! process, the rate limit server included. docs/filters/ratelimit.md has the feature.
//!
//! Envoy missing fails the test (`up` refuses to start), it never skips.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests fail loudly.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use wasmesh_integration::localmesh::process::ProcessMesh;
use wasmesh_integration::localmesh::LocalMesh;
use wasmesh_integration::paths::{self, TempDir};
use wasmesh_integration::{http, ports, rls};

/// The shared limit, per hour: an hour window cannot turn over within a test run
/// except at the hour itself, which the test detects (and then asks for a rerun).
const LIMIT: usize = 5;
/// Requests sent: more than twice the limit, so both sidecars see refusals too.
const SENT: usize = 12;
const SIDECARS: [&str; 2] = ["limited-v1-0-sidecar", "limited-v1-1-sidecar"];

/// ratelimit.yaml with the echo binary, the service's port and the limit filled in,
/// written to `dir`.
fn ratelimit_mesh(dir: &TempDir, rls_port: u16) -> PathBuf {
    let (port, limit) = (rls_port.to_string(), LIMIT.to_string());
    let fill = [
        ("@ECHO@", env!("CARGO_BIN_EXE_echo")),
        ("@RLS_PORT@", port.as_str()),
        ("@LIMIT@", limit.as_str()),
    ];
    paths::mesh_from_template("ratelimit.yaml", &fill, dir).unwrap()
}

fn hour() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 3600
}

/// A sidecar's count of global decisions `decision` for the rule `shared`.
fn decisions(mesh: &ProcessMesh, sidecar: &str, decision: &str) -> u64 {
    mesh.admin(sidecar)
        .unwrap()
        .stat(&format!(
            "wasmcustom.wasmesh_ratelimit_global_decisions_total;rule=shared;decision={decision}"
        ))
        .unwrap()
        .unwrap_or(0)
}

#[test]
fn up_runs_the_rate_limit_service_and_one_limit_holds_across_two_sidecars() {
    // `up` runs the server binary it finds beside `wasmesh`: build it from this tree.
    rls::build().unwrap();
    let scratch = TempDir::new("mesh-ratelimit").unwrap();
    let rls_port = ports::free_port().unwrap();
    let mut mesh =
        ProcessMesh::start_with(&ratelimit_mesh(&scratch, rls_port), &["--no-prometheus"]).unwrap();
    let pids = mesh.pids();
    assert!(
        pids.iter().any(|(name, _)| name == "ratelimit"),
        "up recorded no rate limit service: {pids:?}\n{}",
        mesh.up_output
    );
    let config = mesh.state_dir().join("config/ratelimit/rlsmesh.yaml");
    assert!(config.is_file(), "{} was not written", config.display());

    // The gateway runs one worker (`up` starts every Envoy with --concurrency 1), so its
    // round robin alternates the two sidecars.
    let url = format!("{}/orders", mesh.gateway_url());
    let before = hour();
    let mut codes = Vec::new();
    for _ in 0..SENT {
        let r = http::get(&url).unwrap();
        match r.status {
            200 => {}
            429 => {
                let limit = LIMIT.to_string();
                assert_eq!(r.header("x-ratelimit-limit"), Some(limit.as_str()), "{r:?}");
                assert_eq!(r.header("x-ratelimit-remaining"), Some("0"), "{r:?}");
                assert_eq!(r.header("x-envoy-ratelimited"), Some("true"), "{r:?}");
                let reset: u64 = r.header("x-ratelimit-reset").unwrap().parse().unwrap();
                assert!((1..=3600).contains(&reset), "x-ratelimit-reset {reset}");
            }
            other => {
                let logs = mesh.keep_logs();
                panic!(
                    "status {other} ({}); logs in {}/logs",
                    r.text(),
                    logs.display()
                );
            }
        }
        codes.push(r.status);
    }
    assert_eq!(before, hour(), "the hour turned over mid-test: rerun");
    let keep = |mesh: &mut ProcessMesh| mesh.keep_logs().display().to_string();
    if codes.iter().filter(|&&c| c == 200).count() != LIMIT || codes[LIMIT..] != [429; SENT - LIMIT]
    {
        panic!(
            "{codes:?}: want {LIMIT} x 200 then 429s (logs in {}/logs)",
            keep(&mut mesh)
        );
    }

    // The burst was spread over both sidecars, and their decisions add up to it.
    let per: Vec<(u64, u64)> = SIDECARS
        .iter()
        .map(|s| (decisions(&mesh, s, "ok"), decisions(&mesh, s, "over_limit")))
        .collect();
    let ok: u64 = per.iter().map(|p| p.0).sum();
    let over: u64 = per.iter().map(|p| p.1).sum();
    assert_eq!((ok, over), (LIMIT as u64, (SENT - LIMIT) as u64), "{per:?}");
    for (sidecar, (ok, over)) in SIDECARS.iter().zip(&per) {
        assert!(ok + over > 0, "{sidecar} decided nothing: {per:?}");
    }
    eprintln!("{codes:?}; per sidecar (ok, over_limit): {per:?}");

    let out = mesh.down_leaving_nothing().unwrap();
    eprintln!("{out}");
}

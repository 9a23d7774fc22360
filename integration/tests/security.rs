//! The authz security corpus (`wasmesh_testkit::security`) through real Envoy 1.40, at
//! the HTTP layer: path tricks, JWT attacks and forwarded-for spoofing, each case's
//! status checked and whether the upstream saw it. One test per family, each running
//! the corpus against the authz filter's own .wasm, the mesh module's authz stage and
//! the native module's; the harness runs the same cases to the same outcomes
//! (`filters/authz/tests/security.rs`). A failure names every case that differed.

// Test helpers unwrap: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{json, Value};
use wasmesh_harness::build::{native_module_dir, wasm_bundle, wasm_module};
use wasmesh_integration::bootstrap::{self, WasmFilter};
use wasmesh_integration::echo::EchoServer;
use wasmesh_integration::envoy::{Envoy, Options};
use wasmesh_integration::scenarios::security::{check, Observed, Statuses};
use wasmesh_testkit::mint;
use wasmesh_testkit::security::{self, Family};

/// The builds the corpus runs against.
#[derive(Debug, Clone, Copy)]
enum Build {
    AuthzWasm,
    MeshWasm,
    Native,
    /// authz.wasm behind the listener settings `wasmesh generate` writes
    /// (`normalize_path` and `merge_slashes` on): Envoy rewrites the path first.
    AuthzWasmNormalizing,
}

const BUILDS: [Build; 3] = [Build::AuthzWasm, Build::MeshWasm, Build::Native];

fn start(build: Build, echo: &EchoServer) -> Envoy {
    let (bootstrap, options) = bootstrap_for(build, echo);
    Envoy::start_with(&bootstrap, &options).unwrap()
}

/// The bootstrap (and Envoy options) running `build` with the corpus config.
fn bootstrap_for(build: Build, echo: &EchoServer) -> (Value, Options) {
    let config = security::config();
    match build {
        Build::AuthzWasmNormalizing => {
            let (mut bootstrap, options) = bootstrap_for(Build::AuthzWasm, echo);
            let hcm = bootstrap
                .pointer_mut("/static_resources/listeners/0/filter_chains/0/filters/0/typed_config")
                .unwrap();
            hcm["normalize_path"] = json!(true);
            hcm["merge_slashes"] = json!(true);
            (bootstrap, options)
        }
        Build::AuthzWasm => {
            let filter =
                WasmFilter::new("wasmesh.authz", wasm_module("wasmesh-authz")).config(config);
            (
                bootstrap::proxy_to(echo.port(), &[filter]),
                Options::default(),
            )
        }
        Build::MeshWasm => {
            let mesh: Value = json!({"stages": [{"name": "authz", "config": config}]});
            let filter = WasmFilter::new("wasmesh.mesh", wasm_bundle("wasmesh-mesh")).config(mesh);
            (
                bootstrap::proxy_to(echo.port(), &[filter]),
                Options::default(),
            )
        }
        Build::Native => {
            let filter = bootstrap::native_filter("authz", &config);
            let dir = native_module_dir("wasmesh-native");
            (
                bootstrap::proxy_through(echo.port(), vec![filter]),
                Options::default().env("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", dir.to_str().unwrap()),
            )
        }
    }
}

/// Runs `family`'s cases against `builds`; fails naming each build's differing cases.
fn run(family: Family, builds: &[Build]) -> Vec<(Build, Vec<Observed>)> {
    let mut failures = Vec::new();
    let mut all = Vec::new();
    for &build in builds {
        let echo = EchoServer::start().unwrap();
        let envoy = start(build, &echo);
        // Minted now, not before the build: the clock-skew edges are 30 s wide, and
        // building a module can take longer than that.
        let cases = security::cases(mint::now());
        eprintln!("--- {build:?} ---");
        let statuses = match build {
            Build::AuthzWasmNormalizing => Statuses::AnyDenial,
            _ => Statuses::Exact,
        };
        match check(&envoy, &echo, &cases, family, statuses) {
            Ok(observed) => all.push((build, observed)),
            Err(err) => failures.push(format!("{build:?}: {err:#}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    all
}

#[test]
fn path_normalisation_attacks_are_denied_in_envoy() {
    let mut builds = BUILDS.to_vec();
    builds.push(Build::AuthzWasmNormalizing);
    let observed = run(Family::Path, &builds);
    // Allowed paths reach the upstream exactly as sent: the normalised path is for
    // matching only (unless Envoy's own normalize_path rewrote it).
    for (build, cases) in &observed {
        if matches!(build, Build::AuthzWasmNormalizing) {
            continue;
        }
        for o in cases.iter().filter(|o| o.reached_upstream) {
            assert_eq!(
                o.upstream_path.as_deref(),
                Some(o.case.path.as_str()),
                "{build:?}: {}",
                o.case.name
            );
        }
    }
}

#[test]
fn jwt_attacks_are_unauthorized_in_envoy() {
    run(Family::Jwt, &BUILDS);
}

#[test]
fn forwarded_for_spoofing_is_denied_in_envoy() {
    run(Family::Xff, &BUILDS);
}

//! Every generated Bookinfo bootstrap, for both targets, passes `envoy --mode validate`
//! with the real compiled filters and real certificates. Envoy missing fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests fail loudly.

mod common;

use serde_json::Value;
use wasmesh::{certs, generate, topology, GenerateOptions};
use wasmesh_integration::Envoy;

fn validate_all(files: &[wasmesh::OutputFile], fix: impl Fn(&str, String) -> String) -> usize {
    let mut n = 0;
    for (rel, bytes) in files {
        if !wasmesh::is_bootstrap(rel) {
            continue;
        }
        let name = rel.file_name().unwrap().to_string_lossy().into_owned();
        let instance = name.trim_end_matches(".json");
        let text = fix(instance, String::from_utf8(bytes.clone()).unwrap());
        let json: Value = serde_json::from_str(&text).unwrap();
        if let Err(e) = Envoy::validate(&json) {
            panic!("{}: {e:#}", rel.display());
        }
        n += 1;
    }
    n
}

#[test]
fn bookinfo_process_bootstraps_pass_envoy_validate() {
    let mesh = common::bookinfo();
    let dir = common::scratch("validate-process");
    let certs_dir = dir.join("certs");
    certs::ensure(&mesh, &certs_dir).unwrap();
    let mut opts = GenerateOptions::process("out", topology::DEFAULT_PORT_BASE);
    opts.filters_dir = common::filters_dir().display().to_string();
    opts.certs_dir = certs_dir.display().to_string();
    let files = generate(&mesh, &opts).unwrap();
    let n = validate_all(&files, |_, t| t);
    assert_eq!(n, 7, "gateway + 6 sidecars");
}

#[test]
fn bookinfo_compose_bootstraps_pass_envoy_validate() {
    let mesh = common::bookinfo();
    let dir = common::scratch("validate-compose");
    let certs_dir = dir.join("certs");
    certs::ensure(&mesh, &certs_dir).unwrap();
    let opts = GenerateOptions::compose(".");
    let files = generate(&mesh, &opts).unwrap();
    // What the compose file's volumes do: each container sees the filters and its own
    // certificate directory at the container paths.
    let filters = common::filters_dir().display().to_string();
    let n = validate_all(&files, |instance, text| {
        text.replace(&opts.filters_dir, &filters).replace(
            &opts.certs_dir,
            &certs_dir.join(instance).display().to_string(),
        )
    });
    assert_eq!(n, 7, "gateway + 6 sidecars");
}

//! Every output of every example mesh is byte-for-byte what it was when
//! `cli/tests/meshes/generated.sha256` was blessed: the generator's refactors prove
//! they change nothing. Each line is `SHA256  MESH TARGET PATH`, for the process and
//! compose targets (plain and `--bundle`) and Kubernetes (native and Wasm authz).
//! After an intended change to the output, rewrite the list with
//! `WASMESH_BLESS=1 cargo test -p wasmesh --test generated_digests` and review its diff.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests fail loudly.

mod common;

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use wasmesh::k8s::{AuthzMode, K8sOptions};
use wasmesh::{generate, topology, GenerateOptions, OutputFile};

/// The example meshes: the shipped ones and the feature fixtures beside this test.
fn meshes() -> Vec<(String, PathBuf)> {
    let root = common::workspace_root();
    let mut out = vec![
        (
            "examples/bookinfo".to_string(),
            root.join("examples/bookinfo/mesh.yaml"),
        ),
        (
            "integration/bookinfo".to_string(),
            root.join("integration/tests/meshes/bookinfo.yaml"),
        ),
    ];
    let fixtures = root.join("cli/tests/meshes");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&fixtures)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    names.sort();
    for p in names {
        let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
        out.push((format!("fixtures/{stem}"), p));
    }
    out
}

/// Every target's files of one mesh, named `TARGET PATH`.
fn outputs(file: &Path) -> Vec<(String, Vec<u8>)> {
    let mesh = wasmesh::load(file).unwrap_or_else(|e| panic!("{}: {e:?}", file.display()));
    let mut out = Vec::new();
    let mut add = |target: &str, files: Vec<OutputFile>| {
        for (p, bytes) in files {
            out.push((format!("{target} {}", p.display()), bytes));
        }
    };
    let base = topology::DEFAULT_PORT_BASE;
    for bundle in [false, true] {
        let suffix = if bundle { "+bundle" } else { "" };
        let process = GenerateOptions::process("envoy-configs", base).with_bundle(bundle);
        add(
            &format!("process{suffix}"),
            generate(&mesh, &process).unwrap(),
        );
        let compose = GenerateOptions::compose(".").with_bundle(bundle);
        add(
            &format!("compose{suffix}"),
            generate(&mesh, &compose).unwrap(),
        );
    }
    for (label, authz) in [("native", AuthzMode::Native), ("wasm", AuthzMode::Wasm)] {
        // An OCI prefix: no module is read, so the digests do not depend on a build.
        let mut opts = K8sOptions::new("oci://registry.example/wasmesh/", Path::new("."));
        opts.authz = authz;
        add(
            &format!("k8s-{label}"),
            wasmesh::k8s::generate(&mesh, &opts).unwrap(),
        );
    }
    out
}

fn digest_list() -> String {
    let mut text = String::new();
    for (name, file) in meshes() {
        for (what, bytes) in outputs(&file) {
            let sha: String = Sha256::digest(&bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            text.push_str(&format!("{sha}  {name} {what}\n"));
        }
    }
    text
}

#[test]
fn every_example_mesh_generates_the_blessed_bytes() {
    let list = common::workspace_root().join("cli/tests/meshes/generated.sha256");
    let now = digest_list();
    if std::env::var_os("WASMESH_BLESS").is_some() {
        std::fs::write(&list, &now).unwrap();
        return;
    }
    let blessed = std::fs::read_to_string(&list).unwrap();
    let changed: Vec<String> = {
        let old: std::collections::BTreeSet<&str> = blessed.lines().collect();
        let new: std::collections::BTreeSet<&str> = now.lines().collect();
        old.symmetric_difference(&new)
            .map(|l| l.split_once("  ").map_or(*l, |(_, rest)| rest).to_string())
            .collect()
    };
    assert!(
        changed.is_empty(),
        "generated output differs from {} for: {changed:#?}\n(after an intended change: WASMESH_BLESS=1 cargo test -p wasmesh --test generated_digests)",
        list.display()
    );
}

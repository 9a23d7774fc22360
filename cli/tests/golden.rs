//! The checked-in Bookinfo configs (`envoy-configs/`, `docker-compose.yml`) are exactly
//! what the generator produces. Regenerate with WASMESH_BLESS=1 cargo test -p wasmesh
//! --test golden (or the commands at the top of examples/bookinfo/mesh.yaml).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests fail loudly.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use wasmesh::{generate, topology, GenerateOptions, OutputFile};

fn compare(root: &Path, files: &[OutputFile]) {
    let bless = std::env::var_os("WASMESH_BLESS").is_some();
    let mut stale = Vec::new();
    for (rel, bytes) in files {
        let path = root.join(rel);
        if bless {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, bytes).unwrap();
            continue;
        }
        match std::fs::read(&path) {
            Ok(old) if &old == bytes => {}
            _ => stale.push(rel.display().to_string()),
        }
    }
    assert!(
        stale.is_empty(),
        "out of date: {stale:?}; regenerate with WASMESH_BLESS=1 cargo test -p wasmesh --test golden"
    );
}

#[test]
fn checked_in_process_configs_match_the_generator() {
    let mesh = common::bookinfo();
    let files = generate(
        &mesh,
        &GenerateOptions::process("envoy-configs", topology::DEFAULT_PORT_BASE),
    )
    .unwrap();
    let dir = common::workspace_root().join("envoy-configs");
    compare(&dir, &files);
    // No leftovers from instances that no longer exist.
    let generated: BTreeSet<String> = files.iter().map(|(p, _)| p.display().to_string()).collect();
    // Top-level files and the Grafana directory's (compose/ is the compose target's).
    let mut on_disk: BTreeSet<String> = BTreeSet::new();
    let mut dirs = vec![dir.clone()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap().map(|e| e.unwrap()) {
            let rel = e.path().strip_prefix(&dir).unwrap().display().to_string();
            if e.file_type().unwrap().is_dir() {
                if rel != "compose" {
                    dirs.push(e.path());
                }
            } else {
                on_disk.insert(rel);
            }
        }
    }
    assert_eq!(on_disk, generated);
}

#[test]
fn checked_in_compose_file_matches_the_generator() {
    let mesh = common::bookinfo();
    let files = generate(&mesh, &GenerateOptions::compose(".")).unwrap();
    compare(&common::workspace_root(), &files);
}

#[test]
fn output_is_reproducible_byte_for_byte() {
    let mesh = common::bookinfo();
    let opts = GenerateOptions::process("out", 20000);
    let a = generate(&mesh, &opts).unwrap();
    let b = generate(&common::bookinfo(), &opts).unwrap();
    assert_eq!(a, b);
    // Sorted paths, and no timestamps or absolute paths leak in.
    let mut paths: Vec<_> = a.iter().map(|(p, _)| p.clone()).collect();
    paths.sort();
    assert_eq!(paths, a.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>());
    for (p, bytes) in &a {
        let text = String::from_utf8_lossy(bytes);
        assert!(
            !text.contains("/work/") && !text.contains("/tmp/"),
            "{} has an absolute path",
            p.display()
        );
    }
}

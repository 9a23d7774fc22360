//! Round trip: for every example mesh, `wasmesh k8s` output read back as Istio input
//! (`cli/src/istio_input/`) is the same mesh model, and generates the same manifests
//! byte for byte. The Kubernetes output does not carry a few things of the mesh file
//! (listed in `not_carried`), so both sides are compared with those set alike.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests fail loudly.

mod common;

use std::path::PathBuf;
use wasmesh::istio_input;
use wasmesh::k8s::{generate, AuthzMode, K8sOptions};
use wasmesh::model::{AppSpec, FilterSpec, MeshFile};

/// Every example mesh: the shipped ones and the fixtures of cli/tests/meshes.
fn meshes() -> Vec<PathBuf> {
    let root = common::workspace_root();
    let mut out = vec![
        root.join("examples/bookinfo/mesh.yaml"),
        root.join("integration/tests/meshes/bookinfo.yaml"),
    ];
    let mut fixtures: Vec<PathBuf> = std::fs::read_dir(root.join("cli/tests/meshes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    fixtures.sort();
    out.extend(fixtures);
    out
}

/// What the Kubernetes output does not carry, set alike on both sides: the mesh's name
/// (a directory name when read back), `calls` (no Sidecar resources are written: every
/// service may call every other), the tracer (no Telemetry resource is written) and
/// the process-mode command of the apps.
fn not_carried(m: &mut MeshFile) {
    m.mesh.name = "roundtrip".into();
    if m.mesh.tracing.take().is_some() {
        // What the generator wrote into each telemetry plugin for the tracer.
        let mut all: Vec<&mut FilterSpec> = Vec::new();
        for s in &mut m.services {
            all.extend(s.filters.inbound.iter_mut());
            all.extend(s.filters.outbound.iter_mut());
        }
        if let Some(g) = &mut m.gateway {
            all.extend(g.filters.iter_mut());
        }
        for f in all {
            if let (wasmesh::model::FilterName::Telemetry, Some(o)) =
                (f.name, f.config.as_object_mut())
            {
                o.entry("tracing")
                    .or_insert_with(|| serde_json::json!({ "enabled": false }));
            }
        }
    }
    for s in &mut m.services {
        s.calls = None;
        s.app.command = AppSpec::default().command;
    }
}

/// One spelling for what the mesh file may say two ways: defaults written out or
/// not, a route's own service named or not, filters in Istio's phase order (the order
/// WasmPlugins run in), lists in file order of the manifests (sorted).
fn canonical(mut m: MeshFile) -> MeshFile {
    let phase = |f: &FilterSpec| {
        let rank = ["AUTHN", "AUTHZ", "STATS"]
            .iter()
            .position(|p| *p == f.name.istio_phase());
        (rank, -f.name.istio_priority())
    };
    for s in &mut m.services {
        if s.service_account.as_deref() == Some(s.name.as_str()) {
            s.service_account = None;
        }
        if s.app_port == Some(s.port) {
            s.app_port = None;
        }
        let own = s.name.clone();
        for r in &mut s.routes {
            for d in &mut r.route {
                if d.service.as_deref() == Some(own.as_str()) {
                    d.service = None;
                }
            }
            if let Some(mirror) = &mut r.mirror {
                if mirror.service.as_deref() == Some(own.as_str()) {
                    mirror.service = None;
                }
            }
        }
        s.versions.sort_by(|a, b| a.name.cmp(&b.name));
        s.filters.inbound.sort_by_key(phase);
        s.filters.outbound.sort_by_key(phase);
    }
    if let Some(g) = &mut m.gateway {
        g.filters.sort_by_key(phase);
    }
    m.services
        .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    m.egress
        .sort_by(|a, b| (&a.host, a.port).cmp(&(&b.host, b.port)));
    m
}

fn round_trip(authz: AuthzMode) {
    for file in meshes() {
        let shown = file.display().to_string();
        let original = wasmesh::load(&file).unwrap_or_else(|e| panic!("{shown}: {e:?}"));
        let mut opts = K8sOptions::new("oci://registry.example/wasmesh/", common::filters_dir());
        opts.authz = authz;
        let manifests = generate(&original, &opts).unwrap();
        let dir = common::scratch("roundtrip");
        wasmesh::write_files(&dir, &manifests).unwrap();
        let back = istio_input::load(&dir, false)
            .unwrap_or_else(|e| {
                let text: Vec<String> = e.iter().map(ToString::to_string).collect();
                panic!(
                    "{shown}: its k8s output does not read back:\n{}",
                    text.join("\n")
                )
            })
            .mesh;
        // The same manifests again, byte for byte.
        let again = generate(&back, &opts).unwrap();
        assert_eq!(manifests.len(), again.len(), "{shown}");
        for ((p, a), (q, b)) in manifests.iter().zip(&again) {
            assert_eq!(p, q, "{shown}");
            assert!(
                a == b,
                "{shown}: {} differs:\n{}\n---\n{}",
                p.display(),
                String::from_utf8_lossy(a),
                String::from_utf8_lossy(b)
            );
        }
        // And the same model.
        let mut expected = original.clone();
        not_carried(&mut expected);
        let mut got = back;
        not_carried(&mut got);
        assert_eq!(canonical(expected), canonical(got), "{shown}");
    }
}

#[test]
fn every_example_mesh_round_trips_through_its_kubernetes_manifests() {
    round_trip(AuthzMode::Native);
}

#[test]
fn every_example_mesh_round_trips_with_authz_as_wasm_plugins() {
    round_trip(AuthzMode::Wasm);
}

/// Every kind the Kubernetes output has (Gateway with TLS, ServiceEntry and its TLS
/// DestinationRule, WasmPlugins, AuthorizationPolicy, PeerAuthentication), read back
/// through `wasmesh validate`: the compiled filters take every config and Envoy every
/// bootstrap.
#[test]
fn the_kitchen_sink_manifests_validate_as_istio_input_through_envoy() {
    let root = common::workspace_root();
    let original = wasmesh::load(&root.join("cli/tests/meshes/kitchen-sink.yaml")).unwrap();
    let opts = K8sOptions::new("oci://registry.example/wasmesh/", common::filters_dir());
    let dir = common::scratch("roundtrip-validate");
    wasmesh::write_files(&dir, &generate(&original, &opts).unwrap()).unwrap();
    common::validate_with_envoy(env!("CARGO_BIN_EXE_wasmesh"), &dir, None);
}

/// The round trip through the command line: `wasmesh generate --target k8s` of each
/// example mesh, then of that output read as Istio input, writes the same files.
#[test]
fn generate_target_k8s_of_its_own_output_writes_the_same_files() {
    let bin = env!("CARGO_BIN_EXE_wasmesh");
    let generate = |input: &std::path::Path, out: &std::path::Path| {
        let o = std::process::Command::new(bin)
            .arg("generate")
            .arg(input)
            .args(["--target", "k8s", "--out"])
            .arg(out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    for file in meshes() {
        let first = common::scratch("cli-k8s-first");
        let second = common::scratch("cli-k8s-second");
        generate(&file, &first);
        generate(&first, &second);
        let list = |dir: &std::path::Path| {
            let mut files = Vec::new();
            let mut stack = vec![dir.to_path_buf()];
            while let Some(d) = stack.pop() {
                for e in std::fs::read_dir(&d).unwrap() {
                    let p = e.unwrap().path();
                    if p.is_dir() {
                        stack.push(p);
                    } else {
                        let rel = p.strip_prefix(dir).unwrap().to_path_buf();
                        files.push((rel, std::fs::read(&p).unwrap()));
                    }
                }
            }
            files.sort();
            files
        };
        let (a, b) = (list(&first), list(&second));
        assert!(!a.is_empty(), "{}", file.display());
        assert!(a == b, "{}: the second generation differs", file.display());
    }
}

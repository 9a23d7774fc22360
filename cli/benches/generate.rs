//! Generates a 1000-service mesh (every tenth service with a v2 canary, each calling
//! three others, authz and telemetry on every sidecar) and reports how long parsing,
//! checking and generating take. `cargo bench -p wasmesh --bench generate`.

use std::fmt::Write;
use std::path::Path;
use std::time::{Duration, Instant};
use wasmesh::{generate, topology, GenerateOptions};

const SERVICES: usize = 1000;

fn mesh_yaml() -> String {
    let mut y = String::from("mesh:\n  name: big\n  mtls: STRICT\nservices:\n");
    for i in 0..SERVICES {
        let calls: Vec<String> = (1..=3)
            .map(|k| format!("svc-{}", (i + k * 7) % SERVICES))
            .collect();
        let _ = write!(
            y,
            "  - name: svc-{i}\n    port: 8080\n    calls: [{}]\n",
            calls.join(", ")
        );
        if i % 10 == 0 {
            y.push_str(
                "    versions: [{ name: v1 }, { name: v2 }]\n    routes:\n      - route:\n          - { version: v1, weight: 90 }\n          - { version: v2, weight: 10 }\n        retries: { attempts: 2, perTryTimeout: 1s }\n",
            );
        }
        let _ = write!(
            y,
            "    filters:\n      inbound:\n        - name: authz\n          config: {{ policies: [{{ name: p{i}, action: ALLOW, rules: [{{ from: [{{ source: {{ namespaces: [default] }} }}] }}] }}] }}\n        - name: telemetry\n          config: {{ reporter: destination }}\n"
        );
    }
    y
}

fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut last = None;
    for _ in 0..runs {
        let start = Instant::now();
        let v = f();
        best = best.min(start.elapsed());
        last = Some(v);
    }
    match last {
        Some(v) => (best, v),
        None => (best, f()),
    }
}

fn main() {
    let yaml = mesh_yaml();
    let path = Path::new("big.yaml");
    let (parse, mesh) = time(5, || wasmesh::load_str(path, &yaml));
    let mesh = match mesh {
        Ok(m) => m,
        Err(e) => {
            eprintln!("the generated mesh does not load: {e:?}");
            std::process::exit(1);
        }
    };
    let opts = GenerateOptions::process("out", topology::DEFAULT_PORT_BASE);
    let (process, files) = time(5, || generate(&mesh, &opts));
    let files = files.unwrap_or_default();
    let bytes: usize = files.iter().map(|(_, b)| b.len()).sum();
    let (compose, _) = time(5, || generate(&mesh, &GenerateOptions::compose(".")));
    println!("1000-service mesh ({} files, {:.1} MB): parse+check {:?}, generate process {:?}, generate compose {:?} (best of 5)",
        files.len(), bytes as f64 / 1e6, parse, process, compose);
}

//! `wasmesh apply` on a running mesh, in real Envoy: route weights, filter configs and
//! filter modules change in place while a load runs, without a failed request and
//! without restarting any Envoy; a config Envoy would refuse is refused before anything
//! changes, and the old config keeps serving.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests fail loudly.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmesh::state;
use wasmesh_integration::http;

const MESH: &str = "cli/tests/meshes/upgrades.yaml";

use common::wasmesh;

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The upgrades mesh, up in a state directory and on ports of its own; down on drop.
struct Mesh {
    dir: PathBuf,
    gateway: u16,
}

impl Mesh {
    fn up(label: &str) -> Mesh {
        assert!(
            wasmesh::envoy_bin().is_some(),
            "no Envoy: run scripts/setup.sh or set ENVOY_BIN"
        );
        let dir =
            std::env::temp_dir().join(format!("wasmesh-apply-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let base = wasmesh_integration::ports::free_range(40).unwrap();
        let gateway = base + 35;
        let d = dir.to_str().unwrap();
        let out = wasmesh(&[
            "up",
            MESH,
            "--state-dir",
            d,
            "--certs",
            &format!("{d}/certs"),
            "--port-base",
            &base.to_string(),
            "--gateway-port",
            &gateway.to_string(),
            "--no-prometheus",
        ]);
        assert!(out.status.success(), "up: {}", text(&out));
        Mesh { dir, gateway }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/details/0", self.gateway)
    }

    /// `wasmesh apply` with `mesh`, a variant of the test mesh written beside the state.
    fn apply(&self, name: &str, mesh: &str) -> Output {
        let path = self.dir.join(name);
        std::fs::write(&path, mesh).unwrap();
        wasmesh(&[
            "apply",
            path.to_str().unwrap(),
            "--state-dir",
            self.dir.to_str().unwrap(),
        ])
    }

    /// Every Envoy's PID: none may change across an apply.
    fn envoy_pids(&self) -> BTreeMap<String, i32> {
        let st = state::load(&self.dir).unwrap().unwrap();
        st.processes
            .iter()
            .filter(|p| p.kind == "sidecar" || p.kind == "gateway")
            .map(|p| {
                assert!(p.is_alive(), "{} is not running", p.name);
                (p.name.clone(), p.pid)
            })
            .collect()
    }

    fn gateway_admin(&self) -> u16 {
        let st = state::load(&self.dir).unwrap().unwrap();
        st.processes
            .iter()
            .find(|p| p.kind == "gateway")
            .and_then(|p| p.ports.get("admin").copied())
            .unwrap()
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        let out = wasmesh(&["down", "--state-dir", self.dir.to_str().unwrap()]);
        if out.status.success() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("down: {}", text(&out));
        }
    }
}

/// What a load saw: per answering version, and every failure in full.
#[derive(Default, Debug)]
struct Seen {
    by_version: BTreeMap<String, u64>,
    header: BTreeMap<String, u64>,
    failures: Vec<String>,
}

/// Requests from four clients until stopped: two open a connection per request, two
/// keep theirs open (a drained connection would show there).
struct Load {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(url: &str, gateway: u16) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let threads = (0..4)
            .map(|i| {
                let (stop, seen, url) = (stop.clone(), seen.clone(), url.to_string());
                std::thread::spawn(move || {
                    let mut conn: Option<http::Connection<std::net::TcpStream>> = None;
                    while !stop.load(Ordering::Relaxed) {
                        let r = if i < 2 {
                            http::get(&url)
                        } else {
                            let c = conn.get_or_insert_with(|| {
                                http::Connection::new(
                                    std::net::TcpStream::connect(("127.0.0.1", gateway)).unwrap(),
                                )
                            });
                            c.get("/details/0", "details")
                        };
                        record(&seen, r);
                    }
                })
            })
            .collect();
        Load {
            stop,
            seen,
            threads,
        }
    }

    /// Waits until `count` more requests have been answered.
    fn wait_for(&self, count: u64) {
        let total = |s: &Seen| s.by_version.values().sum::<u64>() + s.failures.len() as u64;
        let start = total(&self.seen.lock().unwrap());
        let deadline = Instant::now() + Duration::from_secs(60);
        while total(&self.seen.lock().unwrap()) < start + count {
            assert!(Instant::now() < deadline, "the load stalled");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn reset(&self) -> Seen {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }

    fn finish(self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

fn record(seen: &Mutex<Seen>, r: anyhow::Result<http::Response>) {
    let mut s = seen.lock().unwrap();
    match r {
        Ok(r) if r.status == 200 => {
            let v = r
                .json()
                .map(|j| j["version"].as_str().unwrap_or("?").to_string());
            *s.by_version
                .entry(v.unwrap_or_else(|e| format!("{e}")))
                .or_default() += 1;
            let h = r.header("x-filter-config").unwrap_or("none").to_string();
            *s.header.entry(h).or_default() += 1;
        }
        Ok(r) => s.failures.push(format!("{}: {}", r.status, r.text())),
        Err(e) => s.failures.push(format!("{e:#}")),
    }
}

fn original() -> String {
    std::fs::read_to_string(common::workspace_root().join(MESH)).unwrap()
}

/// Polls `url` until `ok` holds of a response (a config reaches each worker on its
/// own schedule), at most ten seconds.
fn until(what: &str, url: &str, ok: impl Fn(&http::Response) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = http::get(url).unwrap();
        if ok(&r) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: still {} {:?}",
            r.status,
            r.text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn route_weight_change_under_load_fails_no_request() {
    let mesh = Mesh::up("weights");
    let pids = mesh.envoy_pids();
    let load = Load::start(&mesh.url(), mesh.gateway);
    load.wait_for(200);
    let before = load.reset();
    assert_eq!(
        before.by_version.keys().collect::<Vec<_>>(),
        ["v1"],
        "{before:?}"
    );

    let to_v2 = original()
        .replace("weight: 100", "weight: 1000")
        .replace("weight: 0", "weight: 100")
        .replace("weight: 1000", "weight: 0");
    let out = mesh.apply("to-v2.yaml", &to_v2);
    assert!(out.status.success(), "apply: {}", text(&out));
    assert!(text(&out).contains("without a restart"), "{}", text(&out));
    // Taken: once Envoy reports the new routes, every new request goes to v2.
    load.reset();
    load.wait_for(200);
    let after = load.finish();
    assert_eq!(
        after.by_version.keys().collect::<Vec<_>>(),
        ["v2"],
        "{after:?}"
    );
    assert!(
        before.failures.is_empty() && after.failures.is_empty(),
        "failed requests across the weight change: {:?} {:?}",
        before.failures,
        after.failures
    );
    assert_eq!(mesh.envoy_pids(), pids, "an Envoy was restarted");
}

#[test]
fn filter_config_change_takes_effect_in_place() {
    let mesh = Mesh::up("filter-config");
    let pids = mesh.envoy_pids();
    until("the original config", &mesh.url(), |r| {
        r.header("x-filter-config") == Some("one")
    });
    let load = Load::start(&mesh.url(), mesh.gateway);
    load.wait_for(100);
    let out = mesh.apply("two.yaml", &original().replace("value: one", "value: two"));
    assert!(out.status.success(), "apply: {}", text(&out));
    assert!(text(&out).contains("filter"), "{}", text(&out));
    load.reset();
    load.wait_for(200);
    let seen = load.finish();
    assert_eq!(seen.header.keys().collect::<Vec<_>>(), ["two"], "{seen:?}");
    assert!(seen.failures.is_empty(), "{:?}", seen.failures);
    assert_eq!(mesh.envoy_pids(), pids, "an Envoy was restarted");
}

#[test]
fn traffic_policy_change_under_load_fails_no_request() {
    let mesh = Mesh::up("policy");
    let pids = mesh.envoy_pids();
    let admin = mesh.gateway_admin();
    let load = Load::start(&mesh.url(), mesh.gateway);
    load.wait_for(200);
    // A DestinationRule's worth: the load balancer and a connection pool limit, which
    // live in the clusters (CDS), so the clusters are replaced under the load.
    let policy = original().replace(
        "    calls: []\n",
        "    calls: []\n    trafficPolicy:\n      loadBalancer: LEAST_REQUEST\n      connectionPool:\n        maxConnections: 64\n",
    );
    let out = mesh.apply("policy.yaml", &policy);
    assert!(out.status.success(), "apply: {}", text(&out));
    assert!(text(&out).contains("clusters"), "{}", text(&out));
    load.wait_for(300);
    let seen = load.finish();
    assert!(
        seen.failures.is_empty(),
        "failed across the cluster update: {:?}",
        seen.failures
    );
    let dump: serde_json::Value = http::get(&format!("http://127.0.0.1:{admin}/config_dump"))
        .unwrap()
        .json()
        .unwrap();
    let clusters = dump["configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| {
            c["@type"]
                .as_str()
                .unwrap()
                .ends_with(".ClustersConfigDump")
        })
        .unwrap();
    let details: Vec<&serde_json::Value> = clusters["dynamic_active_clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["cluster"])
        .filter(|c| c["name"].as_str().unwrap().contains("details"))
        .collect();
    assert!(!details.is_empty(), "no details cluster at the gateway");
    for c in details {
        assert_eq!(c["lb_policy"], "LEAST_REQUEST", "{c}");
        assert_eq!(
            c["circuit_breakers"]["thresholds"][0]["max_connections"], 64,
            "{c}"
        );
    }
    assert_eq!(mesh.envoy_pids(), pids, "an Envoy was restarted");
}

#[test]
fn bad_config_is_refused_by_apply_and_the_old_one_keeps_serving() {
    let mesh = Mesh::up("refused");
    let config_dir = mesh.dir.join("config");
    let before = snapshot(&config_dir);
    // A filter config only the filter itself refuses (a header name with a space):
    // the mesh file loads, and Envoy's validation runs the filter's on_configure.
    let bad = original().replace("name: x-filter-config", "name: \"x filter config\"");
    let out = mesh.apply("bad.yaml", &bad);
    assert!(
        !out.status.success(),
        "apply took a bad config: {}",
        text(&out)
    );
    let says = text(&out);
    assert!(
        says.contains("refused; nothing was changed") && says.contains("ingressgateway"),
        "{says}"
    );
    assert_eq!(
        snapshot(&config_dir),
        before,
        "apply changed files of a refused config"
    );
    // A mesh file that does not load is refused as well, naming the problem.
    let out = mesh.apply(
        "broken.yaml",
        &original().replace("weight: 100", "weight: many"),
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("weight"), "{}", text(&out));
    assert_eq!(snapshot(&config_dir), before);
    // The old config serves on.
    let r = http::get(&mesh.url()).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-filter-config"), Some("one"));
}

#[test]
fn module_upgrade_under_load_loses_no_request() {
    let mesh = Mesh::up("module");
    let pids = mesh.envoy_pids();
    let admin = mesh.gateway_admin();
    let vms_before = wasm_vms_created(admin);
    // The next build of the headers filter: the same code with a custom section
    // appended, so its bytes (and digest) differ, as a rebuild's would.
    let next = mesh.dir.join("headers-next.wasm");
    let mut bytes =
        std::fs::read(common::workspace_root().join("dist/filters/headers.wasm")).unwrap();
    bytes.extend(custom_section("wasmesh-build", b"next"));
    std::fs::write(&next, &bytes).unwrap();

    let load = Load::start(&mesh.url(), mesh.gateway);
    load.wait_for(200);
    let upgraded = original().replace(
        "    - name: headers\n",
        &format!("    - name: headers\n      module: {}\n", next.display()),
    );
    let out = mesh.apply("next.yaml", &upgraded);
    assert!(out.status.success(), "apply: {}", text(&out));
    load.wait_for(300);
    let seen = load.finish();
    assert!(
        seen.failures.is_empty(),
        "lost across the module upgrade: {:?}",
        seen.failures
    );
    assert_eq!(seen.header.keys().collect::<Vec<_>>(), ["one"], "{seen:?}");
    // Envoy runs the new module: its filter config names the digest-named copy of
    // the new build, and a VM was created for it.
    let dump = http::get(&format!("http://127.0.0.1:{admin}/config_dump"))
        .unwrap()
        .text();
    assert!(
        dump.contains("/modules/headers-next-"),
        "the gateway's config does not name the new module"
    );
    assert!(
        wasm_vms_created(admin) > vms_before,
        "no new Wasm VM was created for the new module"
    );
    assert_eq!(mesh.envoy_pids(), pids, "an Envoy was restarted");
}

/// Envoy's count of Wasm VMs created (`wasm.envoy.wasm.runtime.v8.created`).
fn wasm_vms_created(admin: u16) -> u64 {
    let stats = http::get(&format!("http://127.0.0.1:{admin}/stats?filter=wasm"))
        .unwrap()
        .text();
    stats
        .lines()
        .find_map(|l| l.strip_prefix("wasm.envoy.wasm.runtime.v8.created: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no VM count in the gateway's stats:\n{stats}"))
}

/// A Wasm custom section (id 0) named `name`.
fn custom_section(name: &str, payload: &[u8]) -> Vec<u8> {
    let mut body = leb128(name.len());
    body.extend(name.as_bytes());
    body.extend(payload);
    let mut out = vec![0];
    out.extend(leb128(body.len()));
    out.extend(body);
    out
}

fn leb128(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

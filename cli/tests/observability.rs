//! What a person looks at on a running mesh, as they run it: `wasmesh proxy-config`
//! on Bookinfo in real Envoy names the routes, clusters, listeners and certificates
//! those Envoys really hold; `wasmesh graph` draws Bookinfo's real traffic from its
//! Prometheus, checked as pixels of a screenshot in headless Chromium and as its DOM;
//! the trace store `up` starts for a local Zipkin address holds one trace across the
//! gateway and the sidecars and draws it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests fail loudly.

mod common;

use common::{wasmesh, DownOnDrop, Up};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use wasmesh::graph::{EDGE_OK, NODE_FILL};
use wasmesh_integration::http;

fn run(args: &[&str]) -> String {
    let out = wasmesh(args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "wasmesh {args:?}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn line_with<'t>(table: &'t str, parts: &[&str]) -> &'t str {
    table
        .lines()
        .find(|l| parts.iter().all(|p| l.contains(p)))
        .unwrap_or_else(|| panic!("no line with {parts:?} in\n{table}"))
}

#[test]
fn proxy_config_shows_what_the_running_envoys_hold() {
    let Up { dir, gateway, .. } = common::up("obs-proxy-config", &["--no-prometheus"]);
    let dir_s = dir.to_str().unwrap();
    let _down = DownOnDrop(dir_s);
    let st = wasmesh::state::load(&dir).unwrap().unwrap();
    let port =
        |name: &str, port: &str| st.processes.iter().find(|p| p.name == name).unwrap().ports[port];

    // productpage's routes: the test-user header route to v2, the 80/20 canary.
    let routes = run(&[
        "proxy-config",
        "productpage-v1-0",
        "routes",
        "--state-dir",
        dir_s,
    ]);
    let jason = line_with(&routes, &["header end-user exact jason"]);
    assert!(jason.starts_with("outbound"), "{jason}");
    assert!(
        jason.ends_with("outbound|9080|v2|reviews.default.svc.cluster.local"),
        "{jason}"
    );
    line_with(
        &routes,
        &[
            "outbound|9080|v1|reviews.default.svc.cluster.local 80%",
            "outbound|9080|v3|reviews.default.svc.cluster.local 20%",
        ],
    );

    // Its clusters: every reviews replica's inbound port, mTLS to the reviews identity.
    let clusters = run(&[
        "proxy-config",
        "productpage-v1-0",
        "clusters",
        "--state-dir",
        dir_s,
    ]);
    let reviews = line_with(
        &clusters,
        &["outbound|9080||reviews.default.svc.cluster.local"],
    );
    for v in [
        "reviews-v1-0-sidecar",
        "reviews-v2-0-sidecar",
        "reviews-v3-0-sidecar",
    ] {
        let endpoint = format!("127.0.0.1:{}", port(v, "inbound"));
        assert!(reviews.contains(&endpoint), "{v} {endpoint}: {reviews}");
    }
    assert!(reviews.contains("mTLS"), "{reviews}");
    assert!(
        reviews.contains("spiffe://cluster.local/ns/default/sa/reviews"),
        "{reviews}"
    );

    // The gateway's listener on the gateway port, and a sidecar's certificate.
    let listeners = run(&[
        "proxy-config",
        "ingressgateway",
        "listeners",
        "--state-dir",
        dir_s,
    ]);
    line_with(
        &listeners,
        &[&format!("127.0.0.1:{gateway}"), "http -> route"],
    );
    let secrets = run(&[
        "proxy-config",
        "ratings-v1-0",
        "secrets",
        "--state-dir",
        dir_s,
    ]);
    line_with(
        &secrets,
        &["default", "spiffe://cluster.local/ns/default/sa/ratings"],
    );

    // -o json: the raw sections of that kind, as Envoy gave them.
    let json = run(&[
        "proxy-config",
        "productpage-v1-0",
        "clusters",
        "-o",
        "json",
        "--state-dir",
        dir_s,
    ]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let names: Vec<&str> = v["configs"][0]["dynamic_active_clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["cluster"]["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"outbound|9080|v2|reviews.default.svc.cluster.local"),
        "{names:?}"
    );

    // A name that is no Envoy of the mesh: an error listing those that are.
    let out = wasmesh(&["proxy-config", "nosuch", "--state-dir", dir_s]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no Envoy \"nosuch\"") && err.contains("reviews-v2-0"),
        "{err}"
    );
}

/// Chromium from Debian (`scripts/setup.sh` installs it): the test fails without it.
fn chromium() -> PathBuf {
    let paths = std::env::var_os("PATH").unwrap_or_default();
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|n| std::env::split_paths(&paths).map(move |d| d.join(n)))
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("no chromium on PATH: run scripts/setup.sh (apt-get install chromium)")
        })
}

/// `wasmesh graph` as a child, killed (by its own handle) however the test ends.
struct Served(Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const EDGES: [(&str, &str); 4] = [
    ("ingressgateway", "productpage"),
    ("productpage", "details"),
    ("productpage", "reviews"),
    ("reviews", "ratings"),
];

fn page(gateway: u16) {
    let r = http::get(&format!(
        "http://127.0.0.1:{gateway}/productpage?format=json"
    ))
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
}

fn edge<'g>(g: &'g Value, from: &str, to: &str) -> Option<&'g Value> {
    g["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["from"] == from && e["to"] == to)
}

/// Every Bookinfo edge with traffic in the window, a p99, and mTLS seen by the callee.
fn complete(g: &Value) -> bool {
    EDGES.iter().all(|(f, t)| {
        edge(g, f, t).is_some_and(|e| {
            e["rps"].as_f64().unwrap_or(0.0) > 0.0 && e["p99_ms"].is_number() && e["mtls"] == true
        })
    })
}

fn run_chromium(args: &[&str], url: &str, profile: &Path) -> std::process::Output {
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chromium {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// RGB of `#rrggbb`.
fn rgb(hex: &str) -> [u8; 3] {
    let v = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).unwrap();
    [v(1), v(3), v(5)]
}

struct Picture {
    width: u32,
    height: u32,
    rgba: Vec<u8>,
}

impl Picture {
    fn load(path: &Path) -> Picture {
        let decoder =
            png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        let channels = info.color_type.samples();
        assert_eq!(info.bit_depth, png::BitDepth::Eight);
        let rgba = buf[..info.buffer_size()]
            .chunks(channels)
            .flat_map(|p| [p[0], p[1], p[2], 255])
            .collect();
        Picture {
            width: info.width,
            height: info.height,
            rgba,
        }
    }

    fn at(&self, x: u32, y: u32) -> [u8; 3] {
        let i = 4 * (y * self.width + x) as usize;
        [self.rgba[i], self.rgba[i + 1], self.rgba[i + 2]]
    }

    /// Pixels of exactly `colour` in the box.
    fn count(&self, colour: [u8; 3], x: u32, y: u32, w: u32, h: u32) -> u32 {
        let mut n = 0;
        for yy in y..(y + h).min(self.height) {
            for xx in x..(x + w).min(self.width) {
                n += u32::from(self.at(xx, yy) == colour);
            }
        }
        n
    }
}

#[test]
fn graph_page_draws_the_mesh_traffic_in_a_real_browser() {
    let chromium_bin = chromium();
    let Up { dir, gateway, .. } = common::up("obs-graph", &[]);
    let dir_s = dir.to_str().unwrap();
    let _down = DownOnDrop(dir_s);
    let st = wasmesh::state::load(&dir).unwrap().unwrap();
    assert!(
        st.prometheus_url.is_some(),
        "up ran no Prometheus (scripts/setup.sh installs it): the graph needs its data"
    );

    let port = wasmesh_integration::ports::free_range(1).unwrap();
    let listen = format!("127.0.0.1:{port}");
    let _graph = Served(
        Command::new(env!("CARGO_BIN_EXE_wasmesh"))
            .args(["graph", "--listen", &listen, "--state-dir", dir_s])
            .current_dir(common::workspace_root())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );

    // Traffic, and Prometheus' view of it polled until every edge is there (its scrape
    // interval is 5 s and a rate needs two scrapes). A page per poll keeps the rates up.
    // Each poll asks for the graph as it was a little in the past (`at`, after the
    // scrapes covering it have landed), and the picture and DOM are taken of that same
    // `at`: the same data, however the calls go on (ratings aborts 10% at random).
    let deadline = Instant::now() + Duration::from_secs(120);
    let (graph, url) = loop {
        page(gateway);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let url = format!("http://{listen}/?at={:.3}", now - 6.0);
        let g = http::get(&url.replace("/?", "/graph.json?"))
            .ok()
            .filter(|r| r.status == 200)
            .and_then(|r| r.json().ok());
        if let Some(g) = g.filter(complete) {
            break (g, url);
        }
        assert!(Instant::now() < deadline, "Prometheus never had every edge");
        std::thread::sleep(Duration::from_millis(200));
    };
    let nodes = graph["nodes"].as_array().unwrap();
    let names: Vec<&str> = nodes.iter().map(|n| n["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "details",
            "ingressgateway",
            "productpage",
            "ratings",
            "reviews"
        ]
    );

    let scratch = common::scratch("graph-shot");
    let shot = scratch.join("graph.png");
    let (w, h) = (
        graph["width"].as_u64().unwrap(),
        graph["height"].as_u64().unwrap(),
    );
    run_chromium(
        &[
            &format!("--screenshot={}", shot.display()),
            &format!("--window-size={w},{}", h + 200),
            "--force-device-scale-factor=1",
        ],
        &url,
        &scratch.join("profile-shot"),
    );
    let pic = Picture::load(&shot);
    assert!(
        pic.width as u64 >= w && pic.height as u64 >= h,
        "{}x{}",
        pic.width,
        pic.height
    );

    // Each node's box is drawn in the node colour (its name in white covers a little).
    for n in nodes {
        let [x, y, bw, bh] = ["x", "y", "w", "h"].map(|k| n[k].as_u64().unwrap() as u32);
        let filled = pic.count(rgb(NODE_FILL), x, y, bw, bh);
        assert!(
            filled * 10 >= bw * bh * 7,
            "node {}: {filled} of {} pixels in {NODE_FILL}",
            n["name"],
            bw * bh
        );
    }
    // Each edge is drawn in its colour a quarter of the way along its line, and every
    // edge colour in use covers at least a line's worth of pixels.
    let node = |name: &str| nodes.iter().find(|n| n["name"] == name).unwrap();
    for (f, t) in EDGES {
        let e = edge(&graph, f, t).unwrap();
        let colour = rgb(e["colour"].as_str().unwrap());
        let (a, b) = (node(f), node(t));
        let u = |n: &Value, k: &str| n[k].as_u64().unwrap() as u32;
        let (x1, y1) = (u(a, "x") + u(a, "w"), u(a, "y") + u(a, "h") / 2);
        let (x2, y2) = (u(b, "x"), u(b, "y") + u(b, "h") / 2);
        let (qx, qy) = ((3 * x1 + x2) / 4, (3 * y1 + y2) / 4);
        let near = pic.count(colour, qx - 2, qy - 2, 5, 5);
        assert!(
            near > 0,
            "edge {f} -> {t}: no {} at ({qx},{qy})",
            e["colour"]
        );
        let all = pic.count(colour, 0, 0, pic.width, pic.height);
        assert!(
            all >= 300,
            "edge {f} -> {t}: only {all} pixels of {}",
            e["colour"]
        );
    }
    let healthy = graph["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["colour"] == EDGE_OK)
        .count();
    assert!(
        healthy >= 2,
        "gateway, details and reviews calls have no faults: {graph}"
    );

    // The DOM Chromium rendered names every node and labels every edge.
    let dom = run_chromium(&["--dump-dom"], &url, &scratch.join("profile-dom"));
    let dom = String::from_utf8_lossy(&dom.stdout);
    for n in &names {
        assert!(
            dom.contains(&format!("data-name=\"{n}\"")),
            "node {n} missing from the DOM"
        );
        assert!(
            dom.contains(&format!(">{n}</text>")),
            "node {n} has no label"
        );
    }
    for (f, t) in EDGES {
        let g = format!("class=\"edge\" data-from=\"{f}\" data-to=\"{t}\"");
        let at = dom
            .find(&g)
            .unwrap_or_else(|| panic!("edge {f} -> {t} missing: {dom}"));
        let label = &dom[at..dom[at..].find("</g>").unwrap() + at];
        assert!(
            label.contains(" rps · ") && label.contains("% 5xx · p99 ") && label.contains("mTLS"),
            "{label}"
        );
    }
    drop(chromium_bin);
    let _ = std::fs::remove_dir_all(&scratch);
}

/// Every PromQL of the generated Grafana dashboards parses in the mesh's real
/// Prometheus, and the volume panels have data once traffic has flowed.
#[test]
fn grafana_dashboards_query_the_real_prometheus() {
    let Up {
        dir,
        gateway,
        prometheus,
        ..
    } = common::up("obs-grafana", &[]);
    let dir_s = dir.to_str().unwrap();
    let _down = DownOnDrop(dir_s);
    let prom = format!("http://127.0.0.1:{prometheus}");
    let dashboards: Vec<Value> = ["wasmesh-mesh.json", "wasmesh-service.json"]
        .iter()
        .map(|n| {
            let text = std::fs::read_to_string(dir.join("config/grafana/dashboards").join(n))
                .unwrap_or_else(|e| panic!("up wrote no {n}: {e}"));
            serde_json::from_str(&text).unwrap()
        })
        .collect();
    let mut volume_panels = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    for d in &dashboards {
        for p in d["panels"].as_array().unwrap() {
            let title = p["title"].as_str().unwrap();
            for t in p["targets"].as_array().unwrap() {
                let expr = t["expr"]
                    .as_str()
                    .unwrap()
                    .replace("$service", "productpage");
                let volume = title.contains("Request Volume");
                // A volume panel is polled (with traffic) until Prometheus has the
                // series: two scrapes 5 s apart make a rate.
                let answer = loop {
                    page(gateway);
                    let a = wasmesh::graph::query(&prom, &expr)
                        .unwrap_or_else(|e| panic!("panel {title:?}: {expr}: {e:#}"));
                    let has_data = a["data"]["result"].as_array().is_some_and(|r| {
                        r.iter().any(|s| {
                            s["value"][1]
                                .as_str()
                                .and_then(|v| v.parse::<f64>().ok())
                                .unwrap_or(0.0)
                                > 0.0
                        })
                    });
                    if !volume || has_data {
                        break a;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "panel {title:?} never had data: {a}"
                    );
                    std::thread::sleep(Duration::from_millis(200));
                };
                assert_eq!(answer["status"], "success", "{title}: {answer}");
                volume_panels += usize::from(volume);
            }
        }
    }
    assert!(volume_panels >= 3, "{volume_panels} volume panels checked");
}

/// The services in a Zipkin trace as the read API gave it, and the trace ids its spans
/// carry.
fn services_and_ids(trace: &Value) -> (Vec<String>, Vec<String>) {
    let spans = trace.as_array().unwrap();
    let mut names: Vec<String> = spans
        .iter()
        .filter_map(|s| s["localEndpoint"]["serviceName"].as_str())
        .map(str::to_string)
        .collect();
    names.sort();
    names.dedup();
    let mut ids: Vec<String> = spans
        .iter()
        .map(|s| s["traceId"].as_str().unwrap().to_string())
        .collect();
    ids.dedup();
    (names, ids)
}

#[test]
fn up_runs_a_trace_store_that_shows_one_trace_across_the_gateway_and_sidecars() {
    let port = wasmesh_integration::ports::free_port().unwrap();
    let text = std::fs::read_to_string(common::bookinfo_path()).unwrap();
    let traced = text.replacen(
        "  mtls: STRICT\n",
        &format!("  mtls: STRICT\n  tracing: {{ provider: zipkin, address: \"127.0.0.1:{port}\", sampling: 100 }}\n"),
        1,
    );
    assert_ne!(traced, text, "Bookinfo's mesh section changed shape");
    let scratch = common::scratch("obs-traces-mesh");
    let mesh = scratch.join("mesh.yaml");
    std::fs::write(&mesh, traced).unwrap();
    let Up {
        dir,
        gateway,
        stdout,
        ..
    } = common::up("obs-traces", &["--no-prometheus", mesh.to_str().unwrap()]);
    let dir_s = dir.to_str().unwrap();
    let down = DownOnDrop(dir_s);
    let store = format!("http://127.0.0.1:{port}");
    assert!(
        stdout.contains(&format!("traces      {store}/")),
        "{stdout}"
    );

    // Pages through the gateway until the store holds a trace with the gateway and at
    // least two sidecars in it (Envoy's Zipkin reporter flushes every few seconds).
    let deadline = Instant::now() + Duration::from_secs(60);
    let (trace_id, services) = loop {
        let r = http::get(&format!("http://127.0.0.1:{gateway}/productpage")).unwrap();
        assert!(r.status == 200 || r.status == 429, "{}", r.status);
        let r = http::get(&format!("{store}/api/v2/traces?limit=100")).unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        let traces: Vec<Value> = serde_json::from_slice(&r.body).unwrap();
        let found = traces.iter().find_map(|t| {
            let (names, ids) = services_and_ids(t);
            let gw = names.iter().any(|n| n.contains("gateway"));
            let sidecars = names.iter().filter(|n| !n.contains("gateway")).count();
            (gw && sidecars >= 2 && ids.len() == 1).then(|| (ids[0].clone(), names))
        });
        if let Some(f) = found {
            break f;
        }
        assert!(
            Instant::now() < deadline,
            "no trace through the gateway and two sidecars; store has {}",
            serde_json::to_string(&traces).unwrap()
        );
        std::thread::sleep(Duration::from_millis(500));
    };

    // The read API agrees with itself: the trace by id, its services listed.
    let r = http::get(&format!("{store}/api/v2/trace/{trace_id}")).unwrap();
    assert_eq!(r.status, 200);
    let (names, ids) = services_and_ids(&serde_json::from_slice(&r.body).unwrap());
    assert_eq!(ids, std::slice::from_ref(&trace_id));
    assert!(names.len() >= services.len(), "{names:?} vs {services:?}");
    let listed: Vec<String> =
        serde_json::from_slice(&http::get(&format!("{store}/api/v2/services")).unwrap().body)
            .unwrap();
    for s in &services {
        assert!(listed.contains(s), "{s} not in {listed:?}");
    }

    // The pages: the list links the trace, the waterfall names every service.
    let list = http::get(&format!("{store}/")).unwrap().text();
    assert!(
        list.contains(&format!("href=\"/trace/{trace_id}\"")),
        "{list}"
    );
    let page = http::get(&format!("{store}/trace/{trace_id}")).unwrap();
    assert_eq!(page.status, 200);
    let page = page.text();
    for s in &services {
        assert!(
            page.contains(s.as_str()),
            "{s} missing from the waterfall:\n{page}"
        );
    }
    assert!(page.contains("<svg") && !page.contains("<script"));

    // `down` stops the store with the rest.
    drop(down);
    assert!(
        std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
        "the trace store still listens after down"
    );
    let _ = std::fs::remove_dir_all(&scratch);
}

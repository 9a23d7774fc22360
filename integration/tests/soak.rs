//! The soak: the Bookinfo demo mesh (examples/bookinfo/mesh.yaml, process mode) under a
//! steady mixed load through its gateway, every Envoy's memory sampled as it runs.
//!
//! `WASMESH_SOAK_SECS` long (default 60, what `cargo test` runs; `scripts/soak.sh`
//! runs 600). Memory per Envoy: its RSS, and the size of its Wasm linear memories (V8
//! reserves each Wasm memory as 8 GiB of address space and makes its first pages
//! accessible as the memory grows, so in `/proc/PID/smaps` each linear memory is a
//! read-write mapping followed directly by an inaccessible one of 4 GiB or more; its
//! `Size` is what `memory.grow` made it). Passes when, after the
//! warm-up (the first third of the run), no Envoy's RSS or Wasm memory grew by 5% or
//! more, and every answer was the one the mesh is configured to give (the ratings fault
//! degrades a page's ratings, never the page; an unrouted path is the gateway's 404).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests fail loudly.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use wasmesh_integration::http;
use wasmesh_integration::localmesh::process::{read_state, ProcessMesh};
use wasmesh_integration::localmesh::LocalMesh;
use wasmesh_integration::paths;

/// Load clients; each sends at most one request per [`PACE`]: 4 x 20/s stays under the
/// gateway's rate limit (100/s per client IP), so a 429 is a failure.
const CLIENTS: usize = 4;
const PACE: Duration = Duration::from_millis(50);
/// Mean of this many samples at each end of the measured window, to smooth noise.
const ENDS: usize = 3;
const MAX_GROWTH_PERCENT: f64 = 5.0;

/// One kind of request of the mix, and the status the mesh is configured to answer.
struct Kind {
    label: &'static str,
    path: &'static str,
    header: Option<(&'static str, &'static str)>,
    want: u16,
}

const fn kind(label: &'static str, path: &'static str, want: u16) -> Kind {
    Kind {
        label,
        path,
        header: None,
        want,
    }
}

/// The request mix, sent in turn.
const MIX: [Kind; 6] = [
    kind("page json", "/productpage?format=json", 200),
    kind("page html", "/productpage", 200),
    Kind {
        header: Some(("end-user", "jason")),
        ..kind("test user", "/productpage?format=json", 200)
    },
    kind("products api", "/api/v1/products", 200),
    kind("index", "/", 200),
    // Not routed by the gateway: its 404.
    kind("unrouted", "/no-such-route", 404),
];

#[derive(Default)]
struct Tally {
    answered: BTreeMap<&'static str, usize>,
    unexpected: Vec<String>,
    ratings_degraded: usize,
}

fn client(gateway: &str, offset: usize, stop: &AtomicBool) -> Tally {
    let mut t = Tally::default();
    let mut i = offset;
    while !stop.load(Ordering::SeqCst) {
        let sent = Instant::now();
        let Kind {
            label,
            path,
            header,
            want,
        } = MIX[i % MIX.len()];
        i += 1;
        let headers: Vec<(&str, &str)> = header.into_iter().collect();
        match http::get_with(&format!("{gateway}{path}"), &headers) {
            Ok(r) if r.status == want => {
                *t.answered.entry(label).or_default() += 1;
                if path.contains("format=json") {
                    let degraded = r
                        .json()
                        .ok()
                        .and_then(|p| p["degraded"].as_array().cloned());
                    let degraded = degraded.unwrap_or_default();
                    if degraded.iter().any(|d| d == "reviews" || d == "details") {
                        t.unexpected.push(format!("{label}: degraded {degraded:?}"));
                    } else if degraded.iter().any(|d| d == "ratings") {
                        t.ratings_degraded += 1;
                    }
                }
            }
            Ok(r) => t.unexpected.push(format!(
                "{label}: {} {}",
                r.status,
                r.text().chars().take(100).collect::<String>()
            )),
            Err(e) => t.unexpected.push(format!("{label}: {e:#}")),
        }
        // Pacing a client, not waiting for readiness.
        std::thread::sleep(PACE.saturating_sub(sent.elapsed()));
    }
    t
}

/// One Envoy's memory now, in KiB: (RSS, resident Wasm linear memory).
fn memory(pid: i32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
    // Mappings in address order: (start, end, perms, size KiB).
    let mut maps: Vec<(u64, u64, String, u64)> = Vec::new();
    for line in smaps.lines() {
        let mut f = line.split_whitespace();
        let (Some(range), Some(perms)) = (f.next(), f.next()) else {
            continue;
        };
        if let Some((a, b)) = range.split_once('-') {
            if let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) {
                maps.push((a, b, perms.to_string(), 0));
                continue;
            }
        }
        if let (Some(m), Some(kib)) = (maps.last_mut(), line.strip_prefix("Size:")) {
            m.3 = kib
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .unwrap_or(0);
        }
    }
    // A Wasm memory: the accessible (rw) start of a V8 reservation whose rest is an
    // inaccessible mapping of 4 GiB or more right after it.
    let wasm = maps
        .windows(2)
        .filter(|w| {
            w[0].2.starts_with("rw")
                && w[0].1 == w[1].0
                && w[1].2.starts_with("---")
                && w[1].3 >= 4 * 1024 * 1024
        })
        .map(|w| w[0].3)
        .sum();
    Some((rss, wasm))
}

fn mean(v: &[u64]) -> f64 {
    v.iter().sum::<u64>() as f64 / v.len().max(1) as f64
}

/// Percent growth from the first [`ENDS`] samples to the last.
fn growth(series: &[u64]) -> f64 {
    let n = ENDS.min(series.len());
    let (first, last) = (mean(&series[..n]), mean(&series[series.len() - n..]));
    if first == 0.0 {
        0.0
    } else {
        100.0 * (last - first) / first
    }
}

#[test]
fn bookinfo_soak_memory_stays_flat_and_answers_stay_as_configured() {
    let secs: u64 = std::env::var("WASMESH_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let total = Duration::from_secs(secs);
    let warmup = total / 3;
    let sample_every = Duration::from_secs((secs / 60).clamp(2, 10));
    let mesh =
        ProcessMesh::start(&paths::workspace_root().join("examples/bookinfo/mesh.yaml")).unwrap();
    let st = read_state(mesh.state_dir()).unwrap();
    let envoys: Vec<(String, i32)> = st["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["kind"] == "sidecar" || p["kind"] == "gateway")
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["pid"].as_i64().unwrap() as i32,
            )
        })
        .collect();
    assert!(envoys.len() >= 5, "Envoys of the mesh: {envoys:?}");
    let gateway = mesh.gateway_url();
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    // name -> (rss series, wasm series), samples taken after the warm-up.
    let mut series: BTreeMap<String, (Vec<u64>, Vec<u64>)> = BTreeMap::new();
    let mut csv = String::from("seconds,envoy,rss_kib,wasm_kib\n");
    let tallies: Vec<Tally> = std::thread::scope(|s| {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let (gateway, stop) = (&gateway, &stop);
                s.spawn(move || client(gateway, c, stop))
            })
            .collect();
        while started.elapsed() < total {
            let at = started.elapsed();
            for (name, pid) in &envoys {
                let (rss, wasm) =
                    memory(*pid).unwrap_or_else(|| panic!("{name} (pid {pid}) is gone at {at:?}"));
                writeln!(csv, "{:.0},{name},{rss},{wasm}", at.as_secs_f64()).unwrap();
                if at >= warmup {
                    let e = series.entry(name.clone()).or_default();
                    e.0.push(rss);
                    e.1.push(wasm);
                }
            }
            // The sampling period of a soak, not a readiness wait.
            std::thread::sleep(sample_every.min(total.saturating_sub(started.elapsed())));
        }
        stop.store(true, Ordering::SeqCst);
        clients.into_iter().map(|c| c.join().unwrap()).collect()
    });

    let out = paths::workspace_root().join("target/soak");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("memory.csv"), &csv).unwrap();

    let mut answered: BTreeMap<&str, usize> = BTreeMap::new();
    for t in &tallies {
        for (k, v) in &t.answered {
            *answered.entry(k).or_default() += v;
        }
    }
    let unexpected: Vec<&String> = tallies.iter().flat_map(|t| &t.unexpected).collect();
    let requests: usize = answered.values().sum::<usize>() + unexpected.len();
    let degraded: usize = tallies.iter().map(|t| t.ratings_degraded).sum();
    let mut report = format!(
        "soak: {secs} s, {requests} requests ({:.0}/s), as configured {answered:?}, \
         ratings degraded by the configured fault on {degraded} pages, unexpected {}\n\
         memory after the {} s warm-up, {} samples each (first -> last, KiB):\n",
        requests as f64 / secs as f64,
        unexpected.len(),
        warmup.as_secs(),
        series.values().next().map_or(0, |s| s.0.len()),
    );
    let mut worst: (f64, String) = (f64::MIN, String::new());
    let (mut rss_sum, mut wasm_sum) = ((0.0, 0.0), (0.0, 0.0));
    for (name, (rss, wasm)) in &series {
        let (gr, gw) = (growth(rss), growth(wasm));
        let n = ENDS.min(rss.len());
        rss_sum.0 += mean(&rss[..n]);
        rss_sum.1 += mean(&rss[rss.len() - n..]);
        wasm_sum.0 += mean(&wasm[..n]);
        wasm_sum.1 += mean(&wasm[wasm.len() - n..]);
        writeln!(
            report,
            "  {name:<28} rss {:>7.0} -> {:>7.0} ({gr:+.2}%)  wasm {:>6.0} -> {:>6.0} ({gw:+.2}%)",
            mean(&rss[..n]),
            mean(&rss[rss.len() - n..]),
            mean(&wasm[..n]),
            mean(&wasm[wasm.len() - n..]),
        )
        .unwrap();
        for (g, what) in [(gr, "rss"), (gw, "wasm")] {
            if g > worst.0 {
                worst = (g, format!("{name} {what}"));
            }
        }
    }
    writeln!(
        report,
        "  all Envoys: rss {:.0} -> {:.0} KiB ({:+.2}%), wasm {:.0} -> {:.0} KiB ({:+.2}%); \
         samples in target/soak/memory.csv",
        rss_sum.0,
        rss_sum.1,
        100.0 * (rss_sum.1 - rss_sum.0) / rss_sum.0,
        wasm_sum.0,
        wasm_sum.1,
        100.0 * (wasm_sum.1 - wasm_sum.0) / wasm_sum.0.max(1.0),
    )
    .unwrap();
    eprint!("{report}");
    std::fs::write(out.join("report.txt"), &report).unwrap();

    assert!(
        wasm_sum.0 > 0.0,
        "no Wasm memory mapping found in any Envoy: the filters are not running as Wasm"
    );
    assert!(
        unexpected.is_empty(),
        "{} answers the mesh is not configured to give: {:?}",
        unexpected.len(),
        &unexpected[..unexpected.len().min(20)]
    );
    assert!(
        worst.0 < MAX_GROWTH_PERCENT,
        "{} grew {:.2}% after the warm-up (limit {MAX_GROWTH_PERCENT}%)",
        worst.1,
        worst.0
    );
}

//! `wasmesh up`, `status` and `down` as a user runs them: the binary, the Bookinfo
//! example, real Envoy and the demo services. Up returns with the mesh serving through
//! the gateway, with separate filters or (`--bundle`) the one-VM mesh module; status
//! counts every request that was sent; down leaves no process behind and is
//! idempotent.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests fail loudly.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use wasmesh::state;
use wasmesh_integration::http;

use common::{wasmesh, DownOnDrop, Up};

fn pids_alive(dir: &Path) -> Vec<String> {
    let st = state::load(dir).unwrap().expect("state written by up");
    st.processes
        .iter()
        .filter(|p| p.is_alive() || !state::group_members(p.pgid).is_empty())
        .map(|p| format!("{} (pid {})", p.name, p.pid))
        .collect()
}

#[test]
fn up_serves_bookinfo_and_down_leaves_nothing() {
    let dir = up_serve_down("separate", &[]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The same with every chain as one mesh-module filter: same pages, same faults.
#[test]
fn up_bundled_serves_bookinfo_through_the_mesh_module() {
    let dir = up_serve_down("bundled", &["--bundle"]);
    // Six sidecars and the gateway (its ratelimit), each with its filters in one module.
    common::assert_bundled(&dir.join("config"), 7);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `wasmesh up` on Bookinfo without Prometheus, checked to have reported all 13
/// processes ready.
fn up(label: &str, extra: &[&str]) -> Up {
    let mut args = vec!["--no-prometheus"];
    args.extend_from_slice(extra);
    let up = common::up(&format!("up-down-{label}"), &args);
    assert!(
        up.stdout.contains("[13/13]"),
        "progress display: {}",
        up.stdout
    );
    up
}

/// Up (with `extra` flags) on Bookinfo, 20 pages through the gateway, down; returns the
/// state directory, where down leaves the generated configs (`config/`).
fn up_serve_down(label: &str, extra: &[&str]) -> PathBuf {
    let Up { dir, gateway, .. } = up(label, extra);
    let dir_s = dir.to_str().unwrap();
    // Up has returned; the processes it started stay up (detached).
    let state_before = state::load(&dir).unwrap().unwrap();
    assert_eq!(pids_alive(&dir).len(), state_before.processes.len());

    // Bookinfo's mesh file aborts 10% of ratings calls on purpose, so a page may lose
    // its ratings to that fault, and to nothing else; most pages are whole.
    let mut whole = 0;
    for _ in 0..20 {
        let r = http::get(&format!(
            "http://127.0.0.1:{gateway}/productpage?format=json"
        ))
        .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        let page = r.json().unwrap();
        if page["degraded"] == serde_json::json!([]) {
            whole += 1;
            continue;
        }
        assert_eq!(page["degraded"], serde_json::json!(["ratings"]), "{page}");
        assert_eq!(
            page["reviews"]["ratings"]["reason"], "fault filter abort",
            "{page}"
        );
    }
    assert!(whole >= 10, "only {whole} of 20 pages were whole");

    // A second `up` on the same state directory refuses rather than doubling the mesh.
    let again = wasmesh(&["up", "--state-dir", dir_s, "--no-prometheus"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already up"));

    let out = wasmesh(&["down", "--state-dir", dir_s]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("stopped 13 processes"));
    for p in &state_before.processes {
        assert!(!p.is_alive(), "{} (pid {}) survived down", p.name, p.pid);
        assert!(
            state::group_members(p.pgid).is_empty(),
            "{}'s process group {} survived down",
            p.name,
            p.pgid
        );
    }
    assert!(
        state::load(&dir).unwrap().is_none(),
        "down removes the state"
    );
    let again = wasmesh(&["down", "--state-dir", dir_s]);
    assert!(again.status.success(), "down is idempotent");
    assert!(String::from_utf8_lossy(&again.stdout).contains("no mesh is up"));
    dir
}

/// After N pages through the gateway, `wasmesh status` counts N for the gateway, N for
/// productpage, details and reviews (split over the replicas as the pages say), and
/// for ratings the calls that reached it: exactly what was sent, not what a telemetry
/// filter or a stats flush got round to.
#[test]
fn status_counts_every_request_sent_through_the_gateway() {
    const PAGES: u64 = 21;
    let Up { dir, gateway, .. } = up("status", &[]);
    let dir_s = dir.to_str().unwrap();
    let _down = DownOnDrop(dir_s);

    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for name in ["ingressgateway", "productpage-v1-0", "details-v1-0"] {
        expected.insert(name.into(), PAGES);
    }
    for name in [
        "reviews-v1-0",
        "reviews-v2-0",
        "reviews-v3-0",
        "ratings-v1-0",
    ] {
        expected.insert(name.into(), 0);
    }
    for _ in 0..PAGES {
        let r = http::get(&format!(
            "http://127.0.0.1:{gateway}/productpage?format=json"
        ))
        .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        let page = r.json().unwrap();
        let reviews = page["reviews"]["instance"].as_str().unwrap_or_default();
        *expected
            .get_mut(reviews)
            .unwrap_or_else(|| panic!("{page}")) += 1;
        // Ratings answered (v2, v3); aborted calls stop in the caller's sidecar.
        if let Some(ratings) = page["reviews"]["ratings"]["instance"].as_str() {
            *expected
                .get_mut(ratings)
                .unwrap_or_else(|| panic!("{page}")) += 1;
        }
    }

    // Envoy counts a request when it has finished with it, a moment after the client
    // has the answer: poll, with a deadline, until the counts agree.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (table, counted) = loop {
        let out = wasmesh(&["status", "--state-dir", dir_s, "--interval", "0.1"]);
        let table = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{table}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let counted = requests_by_instance(&table);
        if counted == expected || Instant::now() >= deadline {
            break (table, counted);
        }
    };
    assert_eq!(counted, expected, "status after {PAGES} pages:\n{table}");
}

/// The REQUESTS column of each instance row of the status table. A row ends in
/// `INSTANCE RPS ERRORS P50 P99 REQUESTS`; service summary rows (`(3/3 up)`) and the
/// header are left out.
fn requests_by_instance(table: &str) -> BTreeMap<String, u64> {
    table
        .lines()
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let requests = cols.last()?.parse::<u64>().ok()?;
            let instance = cols.len().checked_sub(6).map(|i| cols[i])?;
            (!instance.ends_with(')')).then(|| (instance.to_string(), requests))
        })
        .collect()
}

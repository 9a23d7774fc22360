//! What a person looks at on a running mesh, as they run it: `wasmesh proxy-config`
//! on Bookinfo in real Envoy names the routes, clusters, listeners and certificates
//! those Envoys really hold.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests fail loudly.

mod common;

use common::{wasmesh, DownOnDrop, Up};

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

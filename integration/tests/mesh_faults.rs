//! Faults of what the mesh depends on, in the local mesh (process mode): the identity
//! provider's JWKS endpoint going down, and an upstream too slow for its route.
//! docs/reliability.md has the table.
//!
//! Both run on `integration/tests/meshes/faults.yaml` (the rig's echo as the apps, so a
//! request can ask for a slow answer; a JWKS server this test runs and stops), each
//! test on its own mesh without Prometheus (a few seconds to bring up).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests fail loudly.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::json;
use wasmesh_integration::http;
use wasmesh_integration::localmesh::process::ProcessMesh;
use wasmesh_integration::localmesh::LocalMesh;
use wasmesh_integration::paths::{self, TempDir};
use wasmesh_testkit::mint;

/// A JWKS endpoint that can be taken down: serves `body` to every request until
/// [`JwksServer::stop`], after which its port refuses connections.
struct JwksServer {
    port: u16,
    hits: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl JwksServer {
    fn start(body: String) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, s) = (hits.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        serve(conn, &body);
                        h.fetch_add(1, Ordering::SeqCst);
                    }
                    // Nothing to accept: look at the stop flag again shortly.
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
            // The listener is dropped here: the port now refuses connections.
        });
        JwksServer {
            port,
            hits,
            stop,
            thread: Some(thread),
        }
    }

    fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(mut conn: TcpStream, body: &str) {
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    let resp = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.write_all(resp.as_bytes());
}

/// faults.yaml with the echo binary and the JWKS port filled in, written to `dir`.
fn faults_mesh(dir: &TempDir, jwks_port: u16) -> PathBuf {
    let port = jwks_port.to_string();
    let fill = [
        ("@ECHO@", env!("CARGO_BIN_EXE_echo")),
        ("@JWKS_PORT@", &port),
    ];
    paths::mesh_from_template("faults.yaml", &fill, dir).unwrap()
}

fn start_mesh(dir: &TempDir, jwks_port: u16) -> ProcessMesh {
    ProcessMesh::start_with(&faults_mesh(dir, jwks_port), &["--no-prometheus"]).unwrap()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// The JWKS endpoint goes down after the sidecar fetched the keys: valid tokens keep
/// passing on the cached keys, through four refresh intervals (1 s each) in which every
/// refetch fails, and a token signed under a key id the cache does not hold (the
/// provider rotated) fails closed with 401.
#[test]
fn jwks_endpoint_down_cached_keys_serve_and_a_new_kid_fails_closed() {
    let scratch = TempDir::new("faults-jwks").unwrap();
    let mut jwks = JwksServer::start(mint::public_jwks().to_string());
    let mesh = start_mesh(&scratch, jwks.port);
    let url = format!("{}/secure/orders", mesh.gateway_url());

    let r = http::get(&url).unwrap();
    assert_eq!(r.status, 401, "no token must be refused: {}", r.text());
    let valid = mint::token("RS256", mint::now());
    let r = http::get_with(&url, &[("authorization", &bearer(&valid))]).unwrap();
    assert_eq!(r.status, 200, "valid token with the JWKS up: {}", r.text());
    let fetched = jwks.hits();
    assert!(fetched >= 1, "the sidecar never fetched the JWKS");

    jwks.stop();
    assert!(
        TcpStream::connect(("127.0.0.1", jwks.port)).is_err(),
        "the JWKS endpoint still accepts connections"
    );

    // Four refresh intervals with the endpoint down: the token seen before (a cache
    // hit while the keys are current), fresh RS256 tokens (verified on the stale keys)
    // and ES256 ones (another key of the same fetched set).
    let window = Instant::now();
    let (mut ok, mut n, mut round) = (0, 0, 0i64);
    while window.elapsed() < Duration::from_secs(4) {
        let now = mint::now();
        for token in [
            valid.clone(),
            mint::token_with("RS256", &mint::claims_at(now - round)),
            mint::token_with("ES256", &mint::claims_at(now - round)),
        ] {
            let r = http::get_with(&url, &[("authorization", &bearer(&token))]).unwrap();
            n += 1;
            if r.status == 200 {
                ok += 1;
            } else {
                panic!(
                    "round {round} ({:.1} s after the JWKS went down): {} {}",
                    window.elapsed().as_secs_f64(),
                    r.status,
                    r.text()
                );
            }
        }
        round += 1;
        // Spreads the rounds over the window; the outcome is the check, not the wait.
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = std::fs::read_to_string(mesh.state_dir().join("logs/secure-v1-0-sidecar.log"))
        .unwrap_or_default();
    let failed_fetches = log
        .matches("JWKS fetch for `https://issuer.example` failed")
        .count();
    assert!(
        failed_fetches >= 1,
        "no refetch failed while the endpoint was down: the window never needed one"
    );

    // The provider rotated to a key the cache has not seen: fails closed.
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": "rsa-2"});
    let rotated = mint::sign_as(&header, &mint::claims_at(mint::now()), "RS256");
    let r = http::get_with(&url, &[("authorization", &bearer(&rotated))]).unwrap();
    assert_eq!(r.status, 401, "a new kid with the JWKS down: {}", r.text());
    eprintln!(
        "jwks down: {ok}/{n} valid-token requests 200 over {:.1} s with the endpoint down \
         ({failed_fetches} refetches failed, {fetched} fetch(es) before); new kid: 401",
        window.elapsed().as_secs_f64()
    );
}

/// `GET PATH` through the gateway asking the echo app to answer after `delay_ms`:
/// status and how long the answer took.
fn timed(mesh: &ProcessMesh, path: &str, delay_ms: u64) -> (u16, Duration) {
    let url = format!("{}{path}", mesh.gateway_url());
    let sent = Instant::now();
    let r = http::get_with(&url, &[("x-echo-delay-ms", &delay_ms.to_string())]).unwrap();
    (r.status, sent.elapsed())
}

/// An upstream that answers in 5 s behind routes with 1 s and 3 s timeouts: each route
/// answers 504 at its own timeout (within 0.9x to 1.5x of it), never waits for the
/// upstream; a reply within the timeout passes.
#[test]
fn slow_upstream_gets_504_at_the_route_timeout_not_a_hang() {
    let scratch = TempDir::new("faults-slow").unwrap();
    let jwks = JwksServer::start(mint::public_jwks().to_string());
    let mesh = start_mesh(&scratch, jwks.port);
    let mut seen = Vec::new();
    for (path, timeout) in [("/short", 1.0), ("/long", 3.0)] {
        let (status, fast) = timed(&mesh, path, 0);
        assert_eq!(status, 200, "{path} with a prompt upstream");
        for _ in 0..3 {
            let (status, took) = timed(&mesh, path, 5000);
            let s = took.as_secs_f64();
            assert_eq!(status, 504, "{path} after {s:.2} s");
            assert!(
                (timeout * 0.9..timeout * 1.5).contains(&s),
                "{path}: 504 after {s:.2} s; the route's timeout is {timeout} s"
            );
            seen.push(format!("{path} 504 in {s:.2} s"));
        }
        seen.push(format!("{path} 200 in {:.3} s", fast.as_secs_f64()));
    }
    // Under the long route's timeout: the upstream's answer, not a 504.
    let (status, took) = timed(&mesh, "/long", 1500);
    assert_eq!(status, 200, "/long with a 1.5 s upstream after {took:?}");
    seen.push(format!(
        "/long 200 in {:.2} s (upstream 1.5 s)",
        took.as_secs_f64()
    ));
    eprintln!("slow upstream: {}", seen.join("; "));
}

//! Two replicas of the service sharing one real Redis hold one exact limit between
//! them; replicas on memory each hold their own. Needs `redis-server` (installed by
//! scripts/setup.sh): the test fails, not skips, without it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use wasmesh_ratelimit_server::proto::{self, Entry, RateLimitDescriptor, RateLimitRequest};
use wasmesh_ratelimit_server::rls::rate_limit_service_client::RateLimitServiceClient;

/// A child process killed when the test ends, however it ends.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn redis() -> (Proc, u16) {
    let port = free_port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
            "--bind",
            "127.0.0.1",
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("redis-server did not start ({e}): run scripts/setup.sh"));
    let proc = Proc(child);
    // Ready when it answers PING.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::{Read, Write};
            let mut buf = [0u8; 7];
            if s.write_all(b"PING\r\n").is_ok()
                && s.read_exact(&mut buf).is_ok()
                && &buf == b"+PONG\r\n"
            {
                return (proc, port);
            }
        }
        assert!(
            Instant::now() < deadline,
            "redis-server never answered PING"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

const CONFIG: &str = "domain: mesh\ndescriptors:\n  - key: generic_key\n    value: shared\n    rate_limit: {unit: hour, requests_per_unit: 7}\n";

fn server(config: &std::path::Path, redis_port: Option<u16>) -> (Proc, u16) {
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wasmesh-ratelimit-server"));
    cmd.arg("--config")
        .arg(config)
        .args(["--listen", &format!("127.0.0.1:{port}")]);
    if let Some(r) = redis_port {
        cmd.args(["--redis", &format!("redis://127.0.0.1:{r}")]);
    }
    (Proc(cmd.spawn().unwrap()), port)
}

async fn client(port: u16) -> RateLimitServiceClient<tonic::transport::Channel> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let endpoint =
            tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}")).unwrap();
        match endpoint.connect().await {
            Ok(ch) => return RateLimitServiceClient::new(ch),
            Err(e) => assert!(
                Instant::now() < deadline,
                "server on {port} never came up: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn request() -> RateLimitRequest {
    RateLimitRequest {
        domain: "mesh".into(),
        descriptors: vec![RateLimitDescriptor {
            entries: vec![Entry {
                key: "generic_key".into(),
                value: "shared".into(),
            }],
        }],
        hits_addend: 1,
    }
}

/// Sends 20 requests alternating between the two replicas; how many were OK.
async fn allowed_across(a: u16, b: u16) -> usize {
    let (mut a, mut b) = (client(a).await, client(b).await);
    let mut ok = 0;
    for i in 0..20 {
        let c = if i % 2 == 0 { &mut a } else { &mut b };
        let r = c.should_rate_limit(request()).await.unwrap().into_inner();
        if r.overall_code == proto::OK {
            ok += 1;
        }
    }
    ok
}

fn hour() -> u64 {
    wasmesh_ratelimit_server::service::unix_now() / 3600
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_sharing_redis_hold_one_exact_limit() {
    let dir = std::env::temp_dir().join(format!("wasmesh-rls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("mesh.yaml");
    std::fs::write(&config, CONFIG).unwrap();
    let (_redis, redis_port) = redis();
    let (_a, a) = server(&config, Some(redis_port));
    let (_b, b) = server(&config, Some(redis_port));
    let before = hour();
    let ok = allowed_across(a, b).await;
    // A window that turned over mid-test would count twice; it did not if the hour held.
    assert_eq!(before, hour(), "the hour turned over mid-test: rerun");
    assert_eq!(ok, 7, "20 requests over two replicas, limit 7 per hour");

    // Without Redis each replica counts alone: 7 each.
    let (_c, c) = server(&config, None);
    let (_d, d) = server(&config, None);
    assert_eq!(allowed_across(c, d).await, 14);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_with_unreachable_redis_refuses_to_start() {
    let dir = std::env::temp_dir().join(format!("wasmesh-rls-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("mesh.yaml");
    std::fs::write(&config, CONFIG).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_wasmesh-ratelimit-server"))
        .arg("--config")
        .arg(&config)
        .args([
            "--redis",
            &format!("redis://127.0.0.1:{}", free_port()),
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("redis"),
        "{out:?}"
    );
}

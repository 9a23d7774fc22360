//! The built binary: serves from its environment, answers `--check` and its
//! `wasmesh-healthcheck` name, exits 0 on SIGTERM, and refuses a bad environment.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_wasmesh-demo");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn check(url: &str) -> bool {
    Command::new(BIN)
        .args(["--check", url])
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

#[test]
fn serves_checks_and_stops_on_sigterm() {
    let port = free_port();
    let mut child = Command::new(BIN)
        .env_clear()
        .env("SERVICE", "ratings")
        .env("VERSION", "v1")
        .env("PORT", port.to_string())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let health = format!("http://127.0.0.1:{port}/healthz");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check(&health) {
        assert!(
            Instant::now() < deadline,
            "wasmesh-demo never became healthy"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(check(&format!("http://127.0.0.1:{port}/ratings/0")));
    assert!(!check(&format!("http://127.0.0.1:{port}/nope")));

    // Installed as `wasmesh-healthcheck` (as in the Envoy image) it takes the URL alone.
    let dir = std::env::temp_dir().join(format!("wasmesh-demo-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let alias = dir.join("wasmesh-healthcheck");
    let _ = std::fs::remove_file(&alias);
    std::os::unix::fs::symlink(BIN, &alias).unwrap();
    assert!(Command::new(&alias)
        .arg(&health)
        .status()
        .unwrap()
        .success());
    let bad = Command::new(&alias)
        .arg(format!("http://127.0.0.1:{}/", free_port()))
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(bad.code(), Some(1));
    let _ = std::fs::remove_dir_all(&dir);

    // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0);
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("ratings v1") && log.contains("stopped"),
        "{log}"
    );
}

#[test]
fn a_bad_environment_exits_1_naming_the_variable() {
    let out = Command::new(BIN)
        .env_clear()
        .env("SERVICE", "details")
        .env("PORT", "eighty")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("PORT"));
    let out = Command::new(BIN).arg("--bogus").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

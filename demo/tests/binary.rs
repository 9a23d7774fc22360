//! The built binary: serves from its environment, answers `--check` and its
//! `wasmesh-healthcheck` name, exits 0 on SIGTERM, refuses a bad environment, and
//! keeps the arguments contract (`--help`, one-line argument errors).
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

/// The binary installed as `wasmesh-healthcheck` (a symlink, as in the Envoy image),
/// in a directory of its own per test (`tag`) and process.
fn healthcheck_alias(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("wasmesh-demo-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let alias = dir.join("wasmesh-healthcheck");
    let _ = std::fs::remove_file(&alias);
    std::os::unix::fs::symlink(BIN, &alias).unwrap();
    alias
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
    let alias = healthcheck_alias("test");
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
    let _ = std::fs::remove_dir_all(alias.parent().unwrap());

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

#[test]
fn help_and_argument_errors_keep_the_contract() {
    use wasmesh_cli_args::contract::assert_keeps_the_contract;
    assert_keeps_the_contract(BIN, &["--bogus"]);
    assert_keeps_the_contract(BIN, &["--check"]);
    // Installed as `wasmesh-healthcheck`: the URL is required.
    let alias = healthcheck_alias("args");
    assert_keeps_the_contract(&alias, &[]);
    assert_keeps_the_contract(&alias, &["http://127.0.0.1:1/", "extra"]);
    let _ = std::fs::remove_dir_all(alias.parent().unwrap());
}

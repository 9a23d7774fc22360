//! The contract every binary keeps, as one check its package's tests run on it:
//! `--help` prints the usage on stdout and exits 0; an argument error prints one line
//! on stderr, no backtrace even with `RUST_BACKTRACE=1`, and exits 2.

use std::path::Path;
use std::process::{Command, Output};

/// Runs `bin` with `--help` and with `bad_args`, and asserts the contract.
#[allow(clippy::expect_used)] // Test support: failing loudly is the point.
pub fn assert_keeps_the_contract(bin: impl AsRef<Path>, bad_args: &[&str]) {
    let bin = bin.as_ref();
    let run = |args: &[&str]| -> Output {
        Command::new(bin)
            .args(args)
            .env("RUST_BACKTRACE", "1")
            .output()
            .expect("the binary runs")
    };
    let help = run(&["--help"]);
    let stdout = String::from_utf8_lossy(&help.stdout);
    assert_eq!(
        help.status.code(),
        Some(0),
        "{} --help: {help:?}",
        bin.display()
    );
    assert!(
        stdout.contains("Usage:"),
        "{} --help printed {stdout:?}",
        bin.display()
    );

    let bad = run(bad_args);
    let stderr = String::from_utf8_lossy(&bad.stderr);
    let shown = format!("{} {}", bin.display(), bad_args.join(" "));
    assert_eq!(bad.status.code(), Some(2), "{shown}: {bad:?}");
    assert_eq!(stderr.lines().count(), 1, "{shown} printed {stderr:?}");
    assert!(
        !stderr.to_lowercase().contains("backtrace"),
        "{shown} printed {stderr:?}"
    );
    assert!(bad.stdout.is_empty(), "{shown}: {bad:?}");
}

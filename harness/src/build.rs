//! Builds guest crates of this workspace for tests: to wasm, or natively as an Envoy
//! dynamic module (`filters/native`).
//!
//! Runs `cargo build --target wasm32-wasip1 --profile wasm` into `<workspace>/target/wasm`
//! (a native module: `cargo build` into `<workspace>/target/native`), a target directory
//! of its own so it never waits on the lock of the `cargo test` that runs us. Each
//! package is built once per process; later calls return the cached path.

use crate::error::HarnessError;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

type Slot = Arc<OnceLock<Result<PathBuf, HarnessError>>>;

/// The workspace root: the parent of this crate's manifest directory.
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Builds `package` for wasm32-wasip1 (profile `wasm`) once per process and returns the
/// path of its `.wasm`.
pub fn try_wasm_module(package: &str) -> Result<PathBuf, HarnessError> {
    cached(package, Kind::Module)
}

/// Like [`try_wasm_module`] for a bundle: a module that links other filter crates as
/// stages (the mesh module). Its dependencies are built with `--cfg wasmesh_bundle`,
/// so they leave the entry points to the bundle; a target dir of its own keeps those
/// builds apart from the plain ones.
pub fn try_wasm_bundle(package: &str) -> Result<PathBuf, HarnessError> {
    cached(package, Kind::Bundle)
}

/// Like [`try_wasm_bundle`], for tests: a failed build panics with cargo's stderr.
#[allow(clippy::panic)] // Test support: failing loudly with cargo's output is the point.
pub fn wasm_bundle(package: &str) -> PathBuf {
    match try_wasm_bundle(package) {
        Ok(path) => path,
        Err(e) => panic!("{e}"),
    }
}

/// Builds `package` natively (a `cdylib` Envoy loads as a dynamic module) once per
/// process and returns the directory holding its `lib<name>.so`: the directory
/// `ENVOY_DYNAMIC_MODULES_SEARCH_PATH` names.
pub fn try_native_module_dir(package: &str) -> Result<PathBuf, HarnessError> {
    let so = cached(package, Kind::Native)?;
    Ok(so.parent().map(Path::to_path_buf).unwrap_or(so))
}

/// Like [`try_native_module_dir`], for tests: a failed build panics with cargo's stderr.
#[allow(clippy::panic)] // Test support: failing loudly with cargo's output is the point.
pub fn native_module_dir(package: &str) -> PathBuf {
    match try_native_module_dir(package) {
        Ok(path) => path,
        Err(e) => panic!("{e}"),
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Module,
    Bundle,
    Native,
}

fn cached(package: &str, kind: Kind) -> Result<PathBuf, HarnessError> {
    static BUILDS: OnceLock<Mutex<HashMap<(String, Kind), Slot>>> = OnceLock::new();
    let slot = {
        let mut map = BUILDS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        map.entry((package.to_string(), kind)).or_default().clone()
    };
    slot.get_or_init(|| build(package, kind)).clone()
}

/// Like [`try_wasm_module`], for tests: a failed build panics with cargo's stderr.
#[allow(clippy::panic)] // Test support: failing loudly with cargo's output is the point.
pub fn wasm_module(package: &str) -> PathBuf {
    match try_wasm_module(package) {
        Ok(path) => path,
        Err(e) => panic!("{e}"),
    }
}

fn build(package: &str, kind: Kind) -> Result<PathBuf, HarnessError> {
    let root = workspace_root();
    let target_dir = root.join("target").join(match kind {
        Kind::Module => "wasm",
        Kind::Bundle => "wasm-bundle",
        Kind::Native => "native",
    });
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let fail = |message: String| HarnessError::Build {
        package: package.to_string(),
        message,
    };
    let mut command = Command::new(cargo);
    command.current_dir(&root).arg("build");
    if kind != Kind::Native {
        command.args(["--target", "wasm32-wasip1", "--profile", "wasm"]);
    }
    command
        .arg("--target-dir")
        .arg(&target_dir)
        .args(["-p", package])
        // The outer cargo's settings (e.g. RUSTFLAGS for coverage) must not leak in.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR");
    if kind == Kind::Bundle {
        command.env("RUSTFLAGS", "--cfg wasmesh_bundle");
    }
    let output = command
        .output()
        .map_err(|e| fail(format!("cannot run cargo: {e}")))?;
    if !output.status.success() {
        return Err(fail(String::from_utf8_lossy(&output.stderr).into_owned()));
    }
    let stem = package.replace('-', "_");
    let path = match kind {
        Kind::Native => target_dir.join("debug").join(format!("lib{stem}.so")),
        Kind::Module | Kind::Bundle => target_dir
            .join("wasm32-wasip1")
            .join("wasm")
            .join(format!("{stem}.wasm")),
    };
    if !path.exists() {
        return Err(fail(format!(
            "cargo succeeded but {} is missing",
            path.display()
        )));
    }
    Ok(path)
}

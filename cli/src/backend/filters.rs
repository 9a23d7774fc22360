//! Building the filters a generated mesh names but `dist/filters` lacks, before any
//! backend starts an Envoy that would fail to load them.

use anyhow::{bail, Context, Result};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Every `.wasm` the bootstraps name that does not exist yet, built by
/// `scripts/build-filters.sh`. `on_host` maps a path as Envoy sees it to the host file
/// (the same path in process mode; under the mounted directory in docker mode).
pub(crate) fn build_missing_filters(
    root: &Path,
    files: &[crate::OutputFile],
    on_host: &dyn Fn(&str) -> PathBuf,
) -> Result<()> {
    let mut missing = BTreeSet::new();
    let mut needs_native = false;
    for (_, bytes) in files {
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) else {
            continue;
        };
        needs_native |= names_native_module(&value);
        collect_wasm(&value, &mut |path| {
            if !on_host(path).exists() {
                if let Some(stem) = Path::new(path).file_stem() {
                    missing.insert(stem.to_string_lossy().into_owned());
                }
            }
        });
    }
    let native = root
        .join(crate::DEFAULT_NATIVE_DIR)
        .join(format!("lib{}.so", crate::NATIVE_MODULE));
    if needs_native && !native.exists() {
        missing.insert("native".into());
    }
    if missing.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = missing.into_iter().collect();
    println!("building filters: {}", names.join(", "));
    // The script builds either Wasm modules or the native module per call.
    let (native, wasm): (Vec<String>, Vec<String>) = names.into_iter().partition(|n| n == "native");
    for batch in [wasm, native].into_iter().filter(|b| !b.is_empty()) {
        let status = Command::new(root.join("scripts/build-filters.sh"))
            .args(&batch)
            .current_dir(root)
            .stdout(Stdio::null())
            .status()
            .context("running scripts/build-filters.sh")?;
        if !status.success() {
            bail!("scripts/build-filters.sh {} failed", batch.join(" "));
        }
    }
    Ok(())
}

/// Whether a bootstrap loads the native dynamic module.
fn names_native_module(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Object(o) => {
            o.get("dynamic_module_config")
                .and_then(|c| c.get("name"))
                .is_some_and(|n| n == crate::NATIVE_MODULE)
                || o.values().any(names_native_module)
        }
        serde_json::Value::Array(a) => a.iter().any(names_native_module),
        _ => false,
    }
}

fn collect_wasm(v: &serde_json::Value, f: &mut dyn FnMut(&str)) {
    match v {
        serde_json::Value::String(s) if s.ends_with(".wasm") => f(s),
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_wasm(x, f)),
        serde_json::Value::Object(o) => o.values().for_each(|x| collect_wasm(x, f)),
        _ => {}
    }
}

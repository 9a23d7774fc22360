//! Loads every filter configuration of a mesh into the compiled filter, through the
//! harness (the Proxy-Wasm host on wasmtime), and reports the ones it refuses.
//!
//! This is what Envoy would do at start-up, before anything is deployed: a config the
//! filter's `on_configure` rejects (an invalid regex in a rule, an unknown field) is
//! reported with the filter's own message, which names the field inside the config.

use crate::chains::{self, ChainFilter};
use crate::model::{FilterName, FilterSpec, MeshError, MeshFile};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use wasmesh_harness::{Host, Level, Module};

/// The outcome of checking a mesh's filter configs.
#[derive(Debug, Default)]
pub struct FilterReport {
    /// Configs a filter refused, or modules that failed to load.
    pub errors: Vec<MeshError>,
    /// Filters whose module is not built: their configs went unchecked.
    pub missing: BTreeMap<FilterName, PathBuf>,
    /// How many configs were loaded and accepted.
    pub accepted: usize,
}

/// Every filter of every chain, as the bootstraps carry it: (field path, filter).
pub fn chains(mesh: &MeshFile) -> Vec<(String, FilterSpec)> {
    chains::all(mesh)
        .into_iter()
        .flat_map(|c| c.filters)
        .map(|f| (f.path, f.spec))
        .collect()
}

/// Checks every config against the modules in `filters_dir` (`<name>.wasm`).
pub fn check(file: &Path, mesh: &MeshFile, filters_dir: &Path) -> FilterReport {
    let mut report = FilterReport::default();
    let mut modules: BTreeMap<FilterName, Option<Module>> = BTreeMap::new();
    for chain in chains::all(mesh) {
        for ChainFilter { path, spec: f } in &chain.filters {
            let err = |message: String| MeshError {
                file: file.to_path_buf(),
                path: path.clone(),
                line: None,
                message,
            };
            let module = modules.entry(f.name).or_insert_with(|| {
                let wasm = filters_dir.join(f.name.wasm_file());
                if !wasm.exists() {
                    report.missing.insert(f.name, wasm);
                    return None;
                }
                match Module::load(&wasm) {
                    Ok(m) => Some(m),
                    Err(e) => {
                        report
                            .errors
                            .push(err(format!("cannot load {}: {e}", wasm.display())));
                        None
                    }
                }
            });
            let Some(module) = module else { continue };
            let name = f.name.as_str();
            // As the bootstraps carry it (telemetry gets its workload filled in).
            let config =
                chains::generated_config(mesh, f, || chains::check_workload(mesh, chain.site));
            let host = Host::builder(module)
                .plugin_config(config.to_string())
                .root_id(name)
                .vm_id(name)
                .plugin_name(name)
                .build();
            match host {
                Ok(h) if h.configured() => report.accepted += 1,
                Ok(h) => {
                    let reason = refusal(&h);
                    report
                        .errors
                        .push(err(format!("filter {name} refused its config: {reason}")));
                }
                Err(e) => report
                    .errors
                    .push(err(format!("filter {name} could not start: {e}"))),
            }
        }
    }
    report
}

/// The filter's own explanation: its error logs, without the SDK's prefixes.
pub(crate) fn refusal(h: &Host) -> String {
    let lines: Vec<String> = h
        .logs()
        .into_iter()
        .filter(|l| l.level >= Level::Error)
        .map(|l| {
            let m = l.message.as_str();
            let m = m
                .rsplit_once("invalid configuration: ")
                .map_or(m, |(_, r)| r);
            m.to_string()
        })
        .collect();
    if lines.is_empty() {
        "on_configure returned false without logging why".to_string()
    } else {
        lines.join("; ")
    }
}

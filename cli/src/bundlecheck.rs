//! `wasmesh validate` for `--bundle`: every chain's mesh-module config, exactly as the
//! bundled bootstraps carry it, loaded into the compiled `mesh.wasm` through the
//! harness. The module builds each stage from its entry, so a stage config it refuses
//! is reported at the mesh file's field (`services[1].filters.inbound[0].config.…`),
//! with the module's own message.

use crate::bundle;
use crate::chains::{self, Site};
use crate::filtercheck::{refusal, FilterReport};
use crate::model::{FilterName, FilterSpec, MeshError, MeshFile};
use std::path::Path;
use wasmesh_harness::{Host, Module};

/// One chain a bootstrap runs as one bundle: where it is in the mesh file, and its
/// filters with their own field paths, in phase order.
pub struct Chain {
    pub path: String,
    pub site: Site,
    pub filters: Vec<(String, FilterSpec)>,
}

/// Every non-empty chain of the mesh: sidecar inbound and outbound, the gateway.
pub fn chains(mesh: &MeshFile) -> Vec<Chain> {
    chains::all(mesh)
        .into_iter()
        .filter(|c| !c.filters.is_empty())
        .map(|c| {
            let mut filters: Vec<(String, FilterSpec)> =
                c.filters.into_iter().map(|f| (f.path, f.spec)).collect();
            filters.sort_by_key(|(_, f)| f.name);
            Chain {
                path: c.path,
                site: c.site,
                filters,
            }
        })
        .collect()
}

/// Rewrites the module's `stages[N].config.rest: message` to the mesh file's field.
fn locate(chain: &Chain, reason: &str) -> (String, String) {
    let parsed = reason.strip_prefix("stages[").and_then(|r| {
        let (n, rest) = r.split_once(']')?;
        let (field, _) = chain.filters.get(n.parse::<usize>().ok()?)?;
        let rest = rest.strip_prefix(".config").unwrap_or(rest);
        Some((field.clone(), rest.to_string()))
    });
    match parsed {
        // `rest` is `.field: message` or `: message`.
        Some((field, rest)) => match rest.strip_prefix(": ") {
            Some(msg) => (field, msg.to_string()),
            None => match rest.strip_prefix('.') {
                Some(inner) => (field, inner.to_string()),
                None => (field, rest),
            },
        },
        None => (chain.path.clone(), reason.to_string()),
    }
}

/// Loads every chain's bundle config into `filters_dir/mesh.wasm`.
pub fn check(file: &Path, mesh: &MeshFile, filters_dir: &Path) -> FilterReport {
    let mut report = FilterReport::default();
    let wasm = filters_dir.join(bundle::WASM_FILE);
    let err = |path: String, message: String| MeshError {
        file: file.to_path_buf(),
        path,
        line: None,
        message,
    };
    if !wasm.exists() {
        report.errors.push(err(
            String::new(),
            format!(
                "{} is not built (scripts/build-filters.sh): bundle configs not checked",
                wasm.display()
            ),
        ));
        return report;
    }
    let module = match Module::load(&wasm) {
        Ok(m) => m,
        Err(e) => {
            report.errors.push(err(
                String::new(),
                format!("cannot load {}: {e}", wasm.display()),
            ));
            return report;
        }
    };
    for chain in chains(mesh) {
        let configs: Vec<(FilterName, serde_json::Value)> = chain
            .filters
            .iter()
            .map(|(_, f)| {
                let workload = || chains::check_workload(mesh, chain.site);
                (f.name, chains::generated_config(mesh, f, workload))
            })
            .collect();
        let config = bundle::config(configs.iter().map(|(n, c)| (*n, c)));
        let host = Host::builder(&module)
            .plugin_config(config.to_string())
            .root_id(bundle::NAME)
            .vm_id(bundle::NAME)
            .plugin_name(bundle::NAME)
            .build();
        match host {
            Ok(h) if h.configured() => report.accepted += 1,
            Ok(h) => {
                let (path, msg) = locate(&chain, &refusal(&h));
                report.errors.push(err(
                    path,
                    format!("the mesh module refused its config: {msg}"),
                ));
            }
            Err(e) => report.errors.push(err(
                chain.path.clone(),
                format!("the mesh module could not start: {e}"),
            )),
        }
    }
    report
}

//! Digest-named copies of the Wasm modules a mesh runs (`STATE/modules/NAME-DIGEST.wasm`).
//!
//! Envoy names a module by its file in the filter's config. Copying each build under
//! its digest makes a new build a new file name, so the filter's config changes with
//! the code: `wasmesh apply` then hands Envoy a new config, Envoy starts a VM on the
//! new code for new streams, and streams in flight finish on the old one. A rebuilt
//! `dist/filters/X.wasm` can never change a running VM's code under it either.

use anyhow::{Context, Result};
use std::path::Path;

use crate::model::MeshFile;
use crate::{GenerateOptions, PinnedModules};

/// The modules directory in a state directory.
pub const MODULES_DIR: &str = "modules";

/// Copies every module `gen` can name (the built filters in `gen.filters_dir` and each
/// filter's own `module`) into `state_dir/modules` under its digest; the map for
/// [`GenerateOptions::pinned_modules`]. Sources that do not exist are left out: the
/// config then names them as they are and fails where they are needed.
pub fn pin(
    root: &Path,
    state_dir: &Path,
    mesh: &MeshFile,
    gen: &GenerateOptions,
) -> Result<PinnedModules> {
    let dir = state_dir.join(MODULES_DIR);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut sources: Vec<String> = Vec::new();
    if let Ok(entries) = std::fs::read_dir(root.join(&gen.filters_dir)) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".wasm") {
                sources.push(format!("{}/{name}", gen.filters_dir));
            }
        }
    }
    sources.extend(crate::all_filters(mesh).filter_map(|f| f.module.clone()));
    let mut pinned = PinnedModules {
        dir: state_dir.join(MODULES_DIR).to_string_lossy().into_owned(),
        copies: Default::default(),
    };
    for source in sources {
        let Ok(bytes) = std::fs::read(root.join(&source)) else {
            continue;
        };
        let stem = Path::new(&source)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut digest = crate::digest::sha256_hex(&bytes);
        digest.truncate(16);
        let copy = format!("{stem}-{digest}.wasm");
        let target = dir.join(&copy);
        if !target.exists() {
            // Renamed into place: Envoy never sees half a module.
            let tmp = dir.join(format!(".{copy}.tmp"));
            std::fs::write(&tmp, &bytes).with_context(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, &target)
                .with_context(|| format!("renaming into {}", target.display()))?;
        }
        pinned.copies.insert(source, copy);
    }
    Ok(pinned)
}

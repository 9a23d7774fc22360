//! `wasmesh down` and `wasmesh stop INSTANCE`: stop what `up` started, by the PIDs and
//! process groups in the state file, never by name (another mesh, or a user's own
//! Envoy, may be running beside ours).

use anyhow::{anyhow, bail, Result};
use std::path::Path;

use crate::state::{self, Running};
use crate::up::STOP_GRACE;

/// What `down` did.
#[derive(Debug, Default)]
pub struct DownReport {
    pub mesh: Option<String>,
    /// Processes that were still running and were stopped.
    pub stopped: usize,
    /// Of those, the ones that ignored SIGTERM and were killed.
    pub killed: Vec<String>,
    /// Docker mode: the compose project and how many of its containers were removed.
    pub docker: Option<(String, usize)>,
}

/// Stops every process of the mesh whose state is in `dir`, in reverse start order
/// (gateway first, apps last, so in-flight requests drain through). Idempotent: with
/// no state, or only dead processes, it does nothing and succeeds.
pub fn down(dir: &Path) -> Result<DownReport> {
    let Some(st) = state::load(dir)? else {
        return Ok(DownReport::default());
    };
    if let Some(d) = &st.docker {
        let removed = crate::docker::down(&st.root, d)?;
        // Only once the project is gone: until then the state is what finds it.
        state::remove(dir)?;
        return Ok(DownReport {
            mesh: Some(st.mesh),
            docker: Some((d.project.clone(), removed)),
            ..DownReport::default()
        });
    }
    let procs: Vec<&Running> = st.processes.iter().rev().collect();
    let stopped = procs
        .iter()
        .filter(|p| p.is_alive() || !state::group_members(p.pgid).is_empty())
        .count();
    let killed = state::stop_groups(&procs, STOP_GRACE);
    let left: Vec<&str> = procs
        .iter()
        .filter(|p| !state::group_members(p.pgid).is_empty())
        .map(|p| p.name.as_str())
        .collect();
    if !left.is_empty() {
        // Keep the state file: it is the only record of what to stop.
        bail!("still running after SIGKILL: {}", left.join(", "));
    }
    state::remove(dir)?;
    Ok(DownReport {
        mesh: Some(st.mesh),
        stopped,
        killed,
        docker: None,
    })
}

/// Stops one instance (its app and sidecar, as if its pod died); `wasmesh start`
/// brings it back.
pub fn stop_instance(dir: &Path, instance: &str) -> Result<()> {
    let st = state::load(dir)?
        .ok_or_else(|| anyhow!("no mesh is up (no state in {})", dir.display()))?;
    crate::docker::process_mode_only(&st, "stop")?;
    let procs: Vec<&Running> = st
        .processes
        .iter()
        .filter(|p| p.instance == instance || p.name == instance)
        .collect();
    if procs.is_empty() {
        bail!("no instance {instance} in mesh {}", st.mesh);
    }
    state::stop_groups(&procs, STOP_GRACE);
    Ok(())
}

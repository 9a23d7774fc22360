//! `wasmesh apply`: a changed mesh file reaches the running Envoys without a restart.
//!
//! `up` runs every Envoy on watched xDS files ([`crate::xds_files`]). `apply`
//! regenerates the mesh as `up` did, refuses it before touching anything if it does not
//! load or Envoy would not accept it (`envoy --mode validate` on the full config of each
//! changed instance), then renames the changed files into place in make-before-break
//! order and waits, per instance, until Envoy reports each new version in its admin
//! `/config_dump`:
//!
//! 1. clusters, old and new together, so that nothing routes to a cluster not yet there;
//! 2. filter configs (a new module starts a new VM; streams in flight keep the old one),
//!    then listeners, then route configurations;
//! 3. clusters again, without those nothing routes to any more.
//!
//! What files cannot change in place (the bootstrap itself: node metadata, admin, stats
//! settings; the set of instances and their ports) is refused with what to do instead.

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::launch::envoy_path;
use super::process::{render, Rendered};
use super::UpOptions;
use crate::state::{RecordedUp, Running, State};
use crate::xds_files::{self, Subscription, CDS_FILE};

/// What `apply` did, for the user.
#[derive(Debug, Default)]
pub struct Applied {
    /// Per instance, the subscriptions that took a new version.
    pub changed: BTreeMap<String, Vec<String>>,
}

impl Applied {
    pub fn summary(&self, mesh: &str) -> String {
        if self.changed.is_empty() {
            return format!("mesh {mesh}: nothing to apply, every Envoy already runs this config");
        }
        let mut out = format!(
            "mesh {mesh}: applied to {} Envoys without a restart",
            self.changed.len()
        );
        for (inst, subs) in &self.changed {
            out.push_str(&format!("\n  {inst:<20} {}", subs.join(", ")));
        }
        out
    }
}

/// Applies `mesh` (or the mesh file `up` read) to the mesh running in `dir`.
pub fn apply(st: &State, mesh: Option<PathBuf>, timeout: Duration) -> Result<Applied> {
    if st.docker.is_some() {
        bail!("apply changes a process-mode mesh; a compose project takes `wasmesh down` and `up --docker`");
    }
    let Some(recorded) = &st.up else {
        bail!(
            "this mesh was started by a wasmesh without `apply`: run `wasmesh down` and `up` once"
        );
    };
    // A mesh file named here is relative to where we were called from; everything
    // else is named as `up` named it, relative to the root it ran in.
    let mesh = mesh.map(std::path::absolute).transpose()?;
    let root = &st.root;
    std::env::set_current_dir(root).with_context(|| format!("entering {}", root.display()))?;
    let opts = up_options(st, recorded, mesh);
    let dir = opts.state_dir.as_path();
    let new = render(&opts, root)?;
    refuse_topology_change(st, &new)?;
    let config_dir = dir.join("config");
    let changed = changed_files(&config_dir, &new.files)?;
    let by_instance = group_by_instance(&changed);
    refuse_bootstrap_change(&by_instance)?;
    validate(root, st, &opts, &new, by_instance.keys())?;

    let mut applied = Applied::default();
    for (inst, files) in &by_instance {
        let running = envoy_of(st, inst)?;
        let admin = running
            .ports
            .get("admin")
            .with_context(|| format!("{inst} has no admin port in the state file"))?;
        let subs = apply_instance(&config_dir, inst, files, *admin, timeout)?;
        applied.changed.insert(inst.clone(), subs);
    }
    // The rest (the run plan, Prometheus's config) as generated, for the next `up`.
    crate::write_files(&config_dir, &new.files)
        .with_context(|| format!("writing into {}", config_dir.display()))?;
    crate::certs::ensure(&new.mesh, &opts.certs_dir)?;
    Ok(applied)
}

/// `up`'s options again, from the state file.
fn up_options(st: &State, r: &RecordedUp, mesh: Option<PathBuf>) -> UpOptions {
    UpOptions {
        mesh: mesh.unwrap_or_else(|| st.mesh_file.clone()),
        state_dir: r.state_dir.clone(),
        certs_dir: r.certs_dir.clone(),
        port_base: st.port_base,
        gateway_port: r.gateway_port,
        prometheus_port: 0,
        prometheus: false,
        grafana_port: 0,
        timeout: Duration::ZERO,
        bundle: r.bundle,
        filter_target: if r.native {
            crate::FilterTarget::Native
        } else {
            crate::FilterTarget::Wasm
        },
        allow_unsupported: r.allow_unsupported,
    }
}

/// Instances, ports and commands are fixed while the mesh runs.
fn refuse_topology_change(st: &State, new: &Rendered) -> Result<()> {
    let running: BTreeSet<(&str, Vec<(&String, &u16)>)> = st
        .processes
        .iter()
        .filter(|p| !matches!(p.kind.as_str(), "prometheus" | "grafana" | "traces"))
        .map(|p| (p.name.as_str(), p.ports.iter().collect()))
        .collect();
    let planned: BTreeSet<(&str, Vec<(&String, &u16)>)> = new
        .plan
        .processes
        .iter()
        .map(|p| (p.name.as_str(), p.ports.iter().collect()))
        .collect();
    if running != planned {
        let was: BTreeSet<&str> = running.iter().map(|(n, _)| *n).collect();
        let will: BTreeSet<&str> = planned.iter().map(|(n, _)| *n).collect();
        let added: Vec<&str> = will.difference(&was).copied().collect();
        let removed: Vec<&str> = was.difference(&will).copied().collect();
        bail!(
            "this change adds or removes instances or moves ports (added: [{}], removed: [{}]); \
             apply changes configs only: run `wasmesh down` and `wasmesh up`",
            added.join(", "),
            removed.join(", ")
        );
    }
    Ok(())
}

/// The generated files that differ from what is on disk.
fn changed_files(config_dir: &Path, files: &[crate::OutputFile]) -> Result<Vec<crate::OutputFile>> {
    Ok(files
        .iter()
        .filter(|(rel, bytes)| std::fs::read(config_dir.join(rel)).ok().as_ref() != Some(bytes))
        .cloned()
        .collect())
}

/// Changed files by instance: `xds/INSTANCE/...` and `INSTANCE.json`. Files of no
/// instance (run plan, Prometheus config) are left to the final write.
fn group_by_instance(changed: &[crate::OutputFile]) -> BTreeMap<String, Vec<crate::OutputFile>> {
    let mut out: BTreeMap<String, Vec<crate::OutputFile>> = BTreeMap::new();
    for (rel, bytes) in changed {
        let mut parts = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned());
        let first = parts.next().unwrap_or_default();
        let inst = if first == "xds" {
            parts.next()
        } else {
            first
                .strip_suffix(".json")
                .map(str::to_string)
                .filter(|_| rel.components().count() == 1)
        };
        if let Some(inst) = inst {
            out.entry(inst)
                .or_default()
                .push((rel.clone(), bytes.clone()));
        }
    }
    out.retain(|inst, _| inst != "prometheus" && inst != "run-plan");
    out
}

fn refuse_bootstrap_change(by_instance: &BTreeMap<String, Vec<crate::OutputFile>>) -> Result<()> {
    let changed: Vec<&str> = by_instance
        .iter()
        .filter(|(inst, files)| {
            files
                .iter()
                .any(|(rel, _)| rel == Path::new(&format!("{inst}.json")))
        })
        .map(|(inst, _)| inst.as_str())
        .collect();
    if !changed.is_empty() {
        bail!(
            "this change alters the bootstrap of {} (node metadata, admin or stats settings), \
             which Envoy reads only at start: run `wasmesh down` and `wasmesh up`",
            changed.join(", ")
        );
    }
    Ok(())
}

/// `envoy --mode validate` on the full, inline config of each changed instance; nothing
/// has been written yet, so a refusal leaves the running mesh as it was.
fn validate<'a>(
    root: &Path,
    st: &State,
    opts: &UpOptions,
    new: &Rendered,
    instances: impl Iterator<Item = &'a String>,
) -> Result<()> {
    let envoy = envoy_path(root)?;
    let inline = crate::generate(&new.mesh, &new.gen.clone().with_xds_files(false))?;
    let scratch = opts.state_dir.join("apply-check");
    let _ = std::fs::remove_dir_all(&scratch);
    crate::write_files(&scratch, &inline)
        .with_context(|| format!("writing into {}", scratch.display()))?;
    for inst in instances {
        let env: Vec<(&str, &str)> = envoy_of(st, inst)?
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        crate::envoy_validate_file_with_env(&envoy, &scratch.join(format!("{inst}.json")), &env)
            .with_context(|| format!("the new config of {inst} is refused; nothing was changed"))?;
    }
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}

fn envoy_of<'a>(st: &'a State, inst: &str) -> Result<&'a Running> {
    st.processes
        .iter()
        .find(|p| p.instance == inst && matches!(p.kind.as_str(), "sidecar" | "gateway"))
        .with_context(|| format!("no Envoy of {inst} in the state file"))
}

/// Renames `files` (all under `xds/INST/`) into place for one Envoy, in
/// make-before-break order, waiting for each step to be taken.
fn apply_instance(
    config_dir: &Path,
    inst: &str,
    files: &[crate::OutputFile],
    admin: u16,
    timeout: Duration,
) -> Result<Vec<String>> {
    let xds_dir = config_dir.join(xds_files::instance_dir(inst));
    let mut steps: Vec<(Subscription, PathBuf, Value)> = Vec::new();
    for (rel, bytes) in files {
        let Ok(inner) = rel.strip_prefix(xds_files::instance_dir(inst)) else {
            continue;
        };
        let response: Value = serde_json::from_slice(bytes)?;
        steps.push((subscription_of(inner), inner.to_path_buf(), response));
    }
    steps.sort_by(|a, b| a.0.cmp(&b.0));
    let mut taken = Vec::new();
    // 1. Clusters old and new together.
    let final_clusters = steps
        .iter()
        .find(|s| s.0 == Subscription::Clusters)
        .cloned();
    if let Some((_, path, new)) = &final_clusters {
        let old: Value = serde_json::from_slice(&std::fs::read(xds_dir.join(path))?)?;
        let union = union_of_clusters(&old, new);
        if union != *new {
            write_and_wait(
                &xds_dir,
                admin,
                &Subscription::Clusters,
                path,
                &union,
                timeout,
            )?;
        }
    }
    // 2. Filters, listeners, routes (the order of `Subscription`).
    for (sub, path, response) in steps.iter().filter(|s| s.0 != Subscription::Clusters) {
        write_and_wait(&xds_dir, admin, sub, path, response, timeout)?;
        taken.push(describe(sub));
    }
    // 3. Clusters as generated.
    if let Some((sub, path, response)) = &final_clusters {
        write_and_wait(&xds_dir, admin, sub, path, response, timeout)?;
        taken.push(describe(sub));
    }
    Ok(taken)
}

fn subscription_of(inner: &Path) -> Subscription {
    let name = |p: &Path| {
        p.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    match inner.parent().and_then(|p| p.to_str()) {
        Some("ecds") => Subscription::Extension(name(inner)),
        Some("rds") => Subscription::Routes(name(inner)),
        _ if inner == Path::new(CDS_FILE) => Subscription::Clusters,
        _ => Subscription::Listeners,
    }
}

fn describe(sub: &Subscription) -> String {
    match sub {
        Subscription::Clusters => "clusters".into(),
        Subscription::Listeners => "listeners".into(),
        Subscription::Extension(n) => format!("filter {n}"),
        Subscription::Routes(n) => format!("routes {n}"),
    }
}

/// `new`'s clusters plus the old ones it drops, under a version of its own.
fn union_of_clusters(old: &Value, new: &Value) -> Value {
    let name = |c: &Value| c["name"].as_str().unwrap_or_default().to_string();
    let mut resources: Vec<Value> = new["resources"].as_array().cloned().unwrap_or_default();
    let kept: BTreeSet<String> = resources.iter().map(name).collect();
    for c in old["resources"].as_array().into_iter().flatten() {
        if !kept.contains(&name(c)) {
            resources.push(c.clone());
        }
    }
    let mut version =
        crate::digest::sha256_hex(Value::Array(resources.clone()).to_string().as_bytes());
    version.truncate(16);
    json!({"version_info": version, "resources": resources})
}

/// Renames `response` into `xds_dir/path` and waits until Envoy reports its version.
fn write_and_wait(
    xds_dir: &Path,
    admin: u16,
    sub: &Subscription,
    path: &Path,
    response: &Value,
    timeout: Duration,
) -> Result<()> {
    let target = xds_dir.join(path);
    let tmp = target.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(response)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    // Envoy re-reads a watched file when one is moved onto it, never on a write.
    std::fs::rename(&tmp, &target)
        .with_context(|| format!("renaming onto {}", target.display()))?;
    let want = response["version_info"].as_str().unwrap_or_default();
    let deadline = Instant::now() + timeout;
    loop {
        let last = match reported_version(admin, sub) {
            Ok(Some(v)) if v == want => return Ok(()),
            Ok(v) => format!("Envoy reports version {v:?}"),
            Err(e) => format!("{e:#}"),
        };
        if Instant::now() > deadline {
            bail!(
                "Envoy on admin port {admin} did not take {} version {want} within {:?} ({last}); \
                 it keeps serving its previous config",
                target.display(),
                timeout
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The version of `sub` Envoy runs now, from its admin `/config_dump`.
fn reported_version(admin: u16, sub: &Subscription) -> Result<Option<String>> {
    let url = format!("http://127.0.0.1:{admin}/config_dump");
    let resp = crate::localhttp::get(&url, Duration::from_secs(2))?;
    let dump: Value = serde_json::from_str(&resp.text())?;
    Ok(version_in_dump(&dump, sub))
}

/// The version of the entry of `list` whose resource (`entry[inner].name`) is kept
/// in the file `file` (its name as a file stem).
fn by_file(list: &Value, inner: &str, file: &str) -> Option<String> {
    list.as_array()?.iter().find_map(|e| {
        let name = e[inner]["name"].as_str()?;
        if xds_files::file_stem(name) == file {
            e["version_info"].as_str().map(str::to_string)
        } else {
            None
        }
    })
}

fn version_in_dump(dump: &Value, sub: &Subscription) -> Option<String> {
    let section = |kind: &str| {
        dump["configs"]
            .as_array()?
            .iter()
            .find(|c| {
                c["@type"]
                    .as_str()
                    .is_some_and(|t| t.rsplit('.').next() == Some(kind))
            })
            .cloned()
    };
    match sub {
        Subscription::Clusters => section("ClustersConfigDump")?["version_info"]
            .as_str()
            .map(str::to_string),
        Subscription::Listeners => section("ListenersConfigDump")?["version_info"]
            .as_str()
            .map(str::to_string),
        Subscription::Routes(file) => by_file(
            &section("RoutesConfigDump")?["dynamic_route_configs"],
            "route_config",
            file,
        ),
        Subscription::Extension(file) => by_file(
            &section("EcdsConfigDump")?["ecds_filters"],
            "ecds_filter",
            file,
        ),
    }
}

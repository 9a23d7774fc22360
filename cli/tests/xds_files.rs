//! The xDS-file layout `wasmesh up` runs Envoy on (`generate --xds-files`) carries
//! exactly the static bootstrap's config: putting every file's resources back inline
//! gives the static bootstrap byte for byte, for every example mesh and instance.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests fail loudly.

mod common;

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use wasmesh::{generate, GenerateOptions};

const OUT: &str = "out";

fn files_of(mesh: &Path, xds: bool) -> BTreeMap<PathBuf, Value> {
    let model = wasmesh::load(mesh).unwrap_or_else(|e| panic!("{}: {e:?}", mesh.display()));
    let opts = GenerateOptions::process(OUT, 20000).with_xds_files(xds);
    generate(&model, &opts)
        .unwrap()
        .into_iter()
        .filter(|(p, _)| p.extension().is_some_and(|x| x == "json"))
        .map(|(p, b)| (p, serde_json::from_slice(&b).unwrap()))
        .collect()
}

/// The resources of the file a config source names, without their type tags.
fn resources(files: &BTreeMap<PathBuf, Value>, source: &Value) -> Vec<Value> {
    let path = source["path_config_source"]["path"].as_str().unwrap();
    let rel = Path::new(path).strip_prefix(OUT).unwrap();
    let response = files
        .get(rel)
        .unwrap_or_else(|| panic!("{path} is named but not generated"));
    let version = response["version_info"].as_str().unwrap();
    assert_eq!(version.len(), 16, "{path}: version {version}");
    response["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r.as_object_mut().unwrap().remove("@type");
            r
        })
        .collect()
}

/// The bootstrap with every file-based resource put back inline.
fn inlined(files: &BTreeMap<PathBuf, Value>, mut b: Value) -> Value {
    let dynamic = b
        .as_object_mut()
        .unwrap()
        .remove("dynamic_resources")
        .unwrap();
    let mut listeners: Vec<Value> = resources(files, &dynamic["lds_config"]);
    let clusters = resources(files, &dynamic["cds_config"]);
    for l in &mut listeners {
        let prefix = l["name"].as_str().unwrap().to_string();
        for chain in l["filter_chains"].as_array_mut().unwrap() {
            let chain_name = chain["name"].as_str().unwrap().to_string();
            for nf in chain["filters"].as_array_mut().unwrap() {
                let hcm = &mut nf["typed_config"];
                if let Some(rds) = hcm.as_object_mut().unwrap().remove("rds") {
                    let mut rc = resources(files, &rds["config_source"]).remove(0);
                    assert_eq!(rc["name"], rds["route_config_name"]);
                    // A numbered twin (`name~2`) carries its original name.
                    let name = rc["name"]
                        .as_str()
                        .unwrap()
                        .split('~')
                        .next()
                        .unwrap()
                        .to_string();
                    rc["name"] = json!(name);
                    hcm["route_config"] = rc;
                }
                for f in hcm["http_filters"].as_array_mut().into_iter().flatten() {
                    let Some(cd) = f.as_object_mut().unwrap().remove("config_discovery") else {
                        continue;
                    };
                    let ext = resources(files, &cd["config_source"]).remove(0);
                    assert_eq!(ext["name"], f["name"]);
                    let own = format!("{prefix}.{chain_name}.");
                    let name = f["name"]
                        .as_str()
                        .unwrap()
                        .strip_prefix(&own)
                        .unwrap()
                        .to_string();
                    assert_eq!(
                        cd["type_urls"][0], ext["typed_config"]["@type"],
                        "{name}: type_urls"
                    );
                    *f = json!({"name": name, "typed_config": ext["typed_config"]});
                }
            }
        }
    }
    // The listeners that stayed inline (health, Prometheus) and the ones from the file;
    // `by_name` puts them in one order for the comparison.
    let mut statics = b["static_resources"]["listeners"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    statics.extend(listeners);
    b["static_resources"] = json!({"listeners": statics, "clusters": clusters});
    b
}

/// Listeners in a canonical order: the split keeps some inline and moves the rest.
fn by_name(mut b: Value) -> Value {
    if let Some(ls) = b["static_resources"]["listeners"].as_array_mut() {
        ls.sort_by(|a, c| a["name"].as_str().cmp(&c["name"].as_str()));
    }
    b
}

#[test]
fn xds_files_carry_exactly_the_static_config() {
    let root = common::workspace_root();
    let mut meshes = vec![root.join("examples/bookinfo/mesh.yaml")];
    for e in std::fs::read_dir(root.join("cli/tests/meshes")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "yaml") {
            meshes.push(p);
        }
    }
    let mut checked = 0;
    for mesh in meshes {
        let inline = files_of(&mesh, false);
        let split = files_of(&mesh, true);
        for (path, b) in &inline {
            if b.get("static_resources").is_none() {
                continue; // the run plan
            }
            let s = split[path].clone();
            assert!(
                s["dynamic_resources"].is_object(),
                "{}: {} has no dynamic resources",
                mesh.display(),
                path.display()
            );
            assert_eq!(
                by_name(inlined(&split, s)),
                by_name(b.clone()),
                "{}: {} differs once its files are inlined",
                mesh.display(),
                path.display()
            );
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} bootstraps checked");
}

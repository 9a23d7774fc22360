//! Dynamic resources from files: a bootstrap whose listeners, clusters, route
//! configurations and filter configs Envoy reads from files it watches.
//!
//! The generator builds every bootstrap with static resources; [`split`] moves them out
//! into one file per xDS subscription, so that `wasmesh apply` can change a running
//! Envoy by renaming new files into place:
//!
//! - `lds.json` and `cds.json`: the listeners and clusters (`dynamic_resources`);
//! - `rds/NAME.json`: each HTTP connection manager's route configuration, so a weight
//!   or a policy change reaches the routes without touching the listener (a changed
//!   listener drains its connections; a changed route configuration does not);
//! - `ecds/NAME.json`: each wasmesh filter's config (Wasm or native), so a filter's
//!   config or module changes in place (Envoy builds a new VM for new code and lets the
//!   streams in flight finish on the old one).
//!
//! Each file is a `DiscoveryResponse` whose `version_info` is a digest of its resources;
//! `apply` reads the versions back from the admin `/config_dump` to know a change has
//! been taken.

use crate::bootstrap::ADMIN_PROXY_LISTENERS;
use crate::envoy::{
    Bootstrap, ConfigSource, DynamicResources, ExtensionConfigSource, HttpFilter, Listener, Rds,
    TypedConfig,
};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;

pub const LISTENER_TYPE: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
pub const CLUSTER_TYPE: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
pub const ROUTE_TYPE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
pub const EXTENSION_TYPE: &str = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig";

/// The listeners' file, relative to an instance's xDS directory.
pub const LDS_FILE: &str = "lds.json";
/// The clusters' file, relative to an instance's xDS directory.
pub const CDS_FILE: &str = "cds.json";

/// An instance's xDS directory, relative to the generated configs' directory.
pub fn instance_dir(instance: &str) -> String {
    format!("xds/{instance}")
}

/// One xDS subscription's file: what it is, and the response Envoy reads.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceFile {
    /// Relative to the instance's xDS directory.
    pub path: PathBuf,
    pub kind: Subscription,
    pub response: Value,
}

/// Which subscription a file feeds; `apply` writes them in make-before-break order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Subscription {
    Clusters,
    /// An HTTP filter's config, by the filter's (resource) name.
    Extension(String),
    Listeners,
    /// A route configuration, by name.
    Routes(String),
}

/// Moves `b`'s listeners and clusters into resource files under `dir` (the
/// instance's xDS directory, as Envoy names it), leaving the bootstrap to point at them.
pub fn split(mut b: Bootstrap, dir: &str) -> (Bootstrap, Vec<ResourceFile>) {
    let mut files = Vec::new();
    let mut routes: BTreeMap<String, Value> = BTreeMap::new();
    let listeners = std::mem::take(&mut b.static_resources.listeners);
    let clusters = std::mem::take(&mut b.static_resources.clusters);
    // Each file is a subscription, and each subscription an inotify instance in Envoy
    // (a per-user budget, 128 by default): what never changes stays inline.
    let listeners: Vec<Listener> = listeners
        .into_iter()
        .map(|l| {
            if ADMIN_PROXY_LISTENERS.contains(&l.name.as_str()) {
                l
            } else {
                externalise_listener(l, dir, &mut routes, &mut files)
            }
        })
        .collect();
    for (name, route) in routes {
        files.push(resource_file(
            format!("rds/{}", file_name(&name)),
            Subscription::Routes(name),
            ROUTE_TYPE,
            &[route],
        ));
    }
    files.push(resource_file(
        LDS_FILE.into(),
        Subscription::Listeners,
        LISTENER_TYPE,
        &listeners,
    ));
    files.push(resource_file(
        CDS_FILE.into(),
        Subscription::Clusters,
        CLUSTER_TYPE,
        &clusters,
    ));
    b.dynamic_resources = Some(DynamicResources {
        lds_config: ConfigSource::file(format!("{dir}/{LDS_FILE}")),
        cds_config: ConfigSource::file(format!("{dir}/{CDS_FILE}")),
    });
    files.sort_by(|a, c| a.path.cmp(&c.path));
    (b, files)
}

/// The listener with its route configurations and wasmesh filters' configs taken out
/// into `routes` and `files`.
fn externalise_listener(
    mut l: Listener,
    dir: &str,
    routes: &mut BTreeMap<String, Value>,
    files: &mut Vec<ResourceFile>,
) -> Listener {
    for chain in &mut l.filter_chains {
        for nf in &mut chain.filters {
            let TypedConfig::HttpConnectionManager(hcm) = &mut nf.typed_config else {
                continue;
            };
            if let Some(rc) = hcm.route_config.take() {
                let mut value = to_value(&rc);
                let name = unique_route_name(&rc.name, &value, routes);
                value["name"] = json!(name);
                hcm.rds = Some(Rds {
                    route_config_name: name.clone(),
                    config_source: ConfigSource::file(format!("{dir}/rds/{}", file_name(&name))),
                });
                routes.insert(name, value);
            }
            for f in &mut hcm.http_filters {
                if let Some(file) = externalise_filter(f, &l.name, &chain.name, dir) {
                    files.push(file);
                }
            }
        }
    }
    l
}

/// Chains that route alike share one route configuration; a name already taken by
/// different routes gets a numbered twin.
fn unique_route_name(name: &str, value: &Value, taken: &BTreeMap<String, Value>) -> String {
    let same = |candidate: &str| {
        taken.get(candidate).is_none_or(|v| {
            let mut v = v.clone();
            v["name"] = json!(name);
            &v == value
        })
    };
    if same(name) {
        return name.to_string();
    }
    (2..)
        .map(|n| format!("{name}~{n}"))
        .find(|candidate| same(candidate))
        .unwrap_or_else(|| name.to_string())
}

/// A wasmesh filter's config (Wasm or native) moved to its own ECDS file, the filter
/// renamed to a name unique in the bootstrap (its listener and chain); Envoy's own
/// filters (router, CORS) stay inline.
fn externalise_filter(
    f: &mut HttpFilter,
    listener: &str,
    chain: &str,
    dir: &str,
) -> Option<ResourceFile> {
    if !matches!(
        f.typed_config,
        Some(TypedConfig::Wasm(_) | TypedConfig::DynamicModuleFilter(_))
    ) {
        return None;
    }
    let typed = f.typed_config.take()?;
    let typed_value = to_value(&typed);
    let type_url = typed_value["@type"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let name = format!("{listener}.{chain}.{}", f.name);
    let file = file_name(&name);
    f.name = name.clone();
    f.config_discovery = Some(ExtensionConfigSource {
        config_source: ConfigSource::file(format!("{dir}/ecds/{file}")),
        type_urls: vec![type_url],
    });
    Some(resource_file(
        format!("ecds/{file}"),
        Subscription::Extension(name.clone()),
        EXTENSION_TYPE,
        &[json!({"name": name, "typed_config": typed_value})],
    ))
}

/// A resource name as a file name: Istio's names hold `|`, which we keep out of paths.
fn file_name(name: &str) -> String {
    format!("{}.json", file_stem(name))
}

/// A resource name as the stem of its file's name.
pub fn file_stem(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn resource_file<T: Serialize>(
    path: String,
    kind: Subscription,
    type_url: &str,
    resources: &[T],
) -> ResourceFile {
    let resources: Vec<Value> = resources
        .iter()
        .map(|r| {
            let mut v = to_value(r);
            if let Value::Object(m) = &mut v {
                m.insert("@type".into(), json!(type_url));
            }
            v
        })
        .collect();
    let mut version =
        crate::digest::sha256_hex(Value::Array(resources.clone()).to_string().as_bytes());
    version.truncate(16);
    ResourceFile {
        path: PathBuf::from(path),
        kind,
        response: json!({"version_info": version, "resources": resources}),
    }
}

/// Our typed Envoy structs always serialise (strings, numbers, maps with string keys).
fn to_value<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

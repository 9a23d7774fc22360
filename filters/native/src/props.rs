//! Properties (connection and request attributes) in the native build.
//!
//! Not mapped yet: the dynamic-module ABI offers attributes by numeric id
//! (`envoy_dynamic_module_callback_http_filter_get_attribute_{string,int,bool}`), and
//! their numbering has changed between Envoy releases, so each mapping must be checked
//! against Envoy 1.40.0 by a real-Envoy test before it is trusted. Until then every
//! property reads as absent, and the first read of each one says so on stderr: a stage
//! that depends on one degrades visibly, never silently.

use std::collections::HashSet;
use std::sync::Mutex;
use wasmesh_sdk::PropertySource;

/// A property source that has no properties and reports each one asked for, once.
pub struct NoProperties;

static REPORTED: Mutex<Option<HashSet<String>>> = Mutex::new(None);

impl PropertySource for NoProperties {
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        let dotted = path.join(".");
        if let Ok(mut reported) = REPORTED.lock() {
            if reported
                .get_or_insert_with(HashSet::new)
                .insert(dotted.clone())
            {
                eprintln!("wasmesh-native: property `{dotted}` is not mapped in the native build yet; stages see it as absent");
            }
        }
        None
    }
}

//! `--bundle`: one Wasm filter per chain running the one-VM mesh module
//! (`mesh.wasm`, crate wasmesh-mesh) instead of one filter per wasmesh filter.
//!
//! Every Wasm filter costs a context and several VM entries per request; the mesh
//! module pays that once for the whole chain (issue 10). Its config lists the stages
//! in the chain's phase order, each with the config its own filter would get:
//! `{"stages":[{"name":"authz","config":{...}}, ...]}`.
//!
//! Envoy has one `failure_policy` per filter, so the bundle takes the strictest of its
//! stages': a chain with a FAIL_CLOSED authz stays closed even if its telemetry was
//! FAIL_OPEN (failing open would skip authz too).

use crate::model::{FailurePolicy, FilterName};
use serde_json::{json, Value};

/// The filter, root and VM name of the bundle in bootstraps.
pub const NAME: &str = "mesh";
/// The module under the filters directory (`scripts/build-filters.sh` builds it).
pub const WASM_FILE: &str = "mesh.wasm";
/// The crate, for `wasmesh_harness::build::wasm_bundle`.
pub const CRATE: &str = "wasmesh-mesh";

/// How strict a policy is: a trap under FAIL_CLOSED denies requests, FAIL_RELOAD
/// denies them until a new VM is up, FAIL_OPEN lets them through unfiltered.
fn strictness(p: FailurePolicy) -> u8 {
    match p {
        FailurePolicy::FailClosed => 2,
        FailurePolicy::FailReload => 1,
        FailurePolicy::FailOpen => 0,
    }
}

/// The strictest of the stages' policies (FAIL_CLOSED, Envoy's default, when none).
pub fn strictest(policies: impl IntoIterator<Item = FailurePolicy>) -> FailurePolicy {
    policies
        .into_iter()
        .max_by_key(|p| strictness(*p))
        .unwrap_or_default()
}

/// The mesh module's config for stages already in phase order: (name, config).
pub fn config<'a>(stages: impl IntoIterator<Item = (FilterName, &'a Value)>) -> Value {
    let stages: Vec<Value> = stages
        .into_iter()
        .map(|(name, config)| json!({ "name": name.as_str(), "config": config }))
        .collect();
    json!({ "stages": stages })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strictest_policy_wins() {
        use FailurePolicy::*;
        assert_eq!(strictest([FailOpen, FailClosed]), FailClosed);
        assert_eq!(strictest([FailOpen, FailReload]), FailReload);
        assert_eq!(strictest([FailOpen]), FailOpen);
        assert_eq!(strictest([]), FailClosed);
    }

    #[test]
    fn config_lists_stages_in_the_given_order() {
        let a = json!({"policies": []});
        let t = json!({"reporter": "destination"});
        let c = config([(FilterName::Authz, &a), (FilterName::Telemetry, &t)]);
        assert_eq!(
            c,
            json!({"stages": [
                {"name": "authz", "config": {"policies": []}},
                {"name": "telemetry", "config": {"reporter": "destination"}},
            ]})
        );
    }
}

//! `mesh.rateLimitService`: the global rate limit service as the generator sees it. Every
//! ratelimit filter with a `global: true` rule gets its `rate_limit_service` filled from
//! the mesh-level block and its Envoy an HTTP/2 cluster to the service; the service's
//! own YAML config is written beside the bootstraps for `up` to start it with.

use crate::model::{FilterName, FilterSpec, MeshFile, RateLimitServiceSpec};
use serde_json::{json, Value};
use std::path::PathBuf;

/// The Envoy cluster of the service. Envoy first parses a gRPC cluster name as a
/// serialised `GrpcService`; a name starting with `w` is not a valid protobuf tag, so
/// it is read as a cluster name (docs/filters/ratelimit.md).
pub const CLUSTER: &str = "wasmesh_ratelimit_service";

/// The folder of the service's config under the generated output.
pub const DIR: &str = "ratelimit";

/// Whether a ratelimit filter config has a rule the service decides.
pub fn has_global_rule(config: &Value) -> bool {
    config["rules"]
        .as_array()
        .is_some_and(|rules| rules.iter().any(|r| r["global"] == true))
}

/// Whether `f` is a ratelimit filter asking the service.
pub fn asks_service(f: &FilterSpec) -> bool {
    f.name == FilterName::Ratelimit && has_global_rule(&f.config)
}

/// Fills `rate_limit_service` of a ratelimit filter config with global rules from the
/// mesh-level block; a key the filter sets itself is kept.
pub fn fill(mesh: &MeshFile, config: &mut Value) {
    let Some(rls) = &mesh.mesh.rate_limit_service else {
        return;
    };
    if !has_global_rule(config) {
        return;
    }
    let Some(obj) = config.as_object_mut() else {
        return;
    };
    let entry = obj.entry("rate_limit_service").or_insert_with(|| json!({}));
    let Some(svc) = entry.as_object_mut() else {
        return;
    };
    svc.entry("cluster").or_insert_with(|| CLUSTER.into());
    svc.entry("domain")
        .or_insert_with(|| rls.domain.clone().into());
    svc.entry("failure_mode_deny")
        .or_insert_with(|| rls.failure_mode_deny.into());
    if let Some(t) = rls.timeout {
        svc.entry("timeout").or_insert_with(|| t.to_string().into());
    }
}

/// The service's config file (relative to the output) and its content: the server's
/// YAML shape, `domain` and `descriptors`.
pub fn config_file(rls: &RateLimitServiceSpec) -> (PathBuf, Value) {
    (
        config_path(rls),
        json!({ "domain": rls.domain, "descriptors": rls.descriptors }),
    )
}

pub fn config_path(rls: &RateLimitServiceSpec) -> PathBuf {
    PathBuf::from(DIR).join(format!("{}.yaml", rls.domain))
}

/// What is wrong with `mesh.rateLimitService`, field by field. The descriptors' own
/// shape is checked by the server when `up` starts it (its parser is the reference);
/// here only what the generator relies on.
pub fn problems(rls: &RateLimitServiceSpec) -> Vec<(String, String)> {
    let at = "mesh.rateLimitService";
    let mut out = Vec::new();
    if rls.port == 0 {
        out.push((format!("{at}.port"), "must be a port, 1 to 65535".into()));
    }
    let domain_ok = !rls.domain.is_empty()
        && rls
            .domain
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !rls.domain.starts_with('.');
    if !domain_ok {
        out.push((
            format!("{at}.domain"),
            format!(
                "{:?}: letters, digits, '-', '_' or '.' (it names the config file)",
                rls.domain
            ),
        ));
    }
    if let Some(url) = &rls.redis {
        let ok = url
            .strip_prefix("redis://")
            .and_then(|hp| hp.rsplit_once(':'))
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
        if !ok {
            out.push((
                format!("{at}.redis"),
                format!("{url:?} is not redis://HOST:PORT"),
            ));
        }
    }
    if let Some(t) = rls.timeout {
        if !(1..=60_000).contains(&t.as_millis()) {
            out.push((format!("{at}.timeout"), "must be 1ms to 60s".into()));
        }
    }
    for (i, d) in rls.descriptors.iter().enumerate() {
        if !d.get("key").is_some_and(Value::is_string) {
            out.push((
                format!("{at}.descriptors[{i}].key"),
                "every descriptor needs a `key` (envoyproxy/ratelimit's config shape)".into(),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn mesh(rls: &str) -> MeshFile {
        let text = format!(
            "mesh:\n  name: t\n  rateLimitService: {rls}\nservices:\n  - name: a\n    port: 9080\n"
        );
        crate::model::parse(std::path::Path::new("t.yaml"), &text).unwrap()
    }

    #[test]
    fn global_rules_get_the_mesh_service_and_local_ones_do_not() {
        let m = mesh("{ port: 8081, domain: d, failureModeDeny: true, timeout: 50ms }");
        let mut global = json!({"rules": [{"name": "g", "global": true}]});
        fill(&m, &mut global);
        assert_eq!(
            global["rate_limit_service"],
            json!({"cluster": CLUSTER, "domain": "d", "failure_mode_deny": true, "timeout": "50ms"})
        );
        let mut local = json!({"rules": [{"name": "l", "token_bucket": {}}]});
        fill(&m, &mut local);
        assert!(local.get("rate_limit_service").is_none());
        let mut own = json!({"rules": [{"name": "g", "global": true}],
                             "rate_limit_service": {"timeout": "5ms"}});
        fill(&m, &mut own);
        assert_eq!(own["rate_limit_service"]["timeout"], "5ms");
        assert_eq!(own["rate_limit_service"]["cluster"], CLUSTER);
    }

    #[test]
    fn bad_fields_are_named() {
        let m = mesh("{ port: 0, domain: \"a/b\", redis: \"localhost:6379\", timeout: 2m, descriptors: [{value: x}] }");
        let fields: Vec<String> = problems(m.mesh.rate_limit_service.as_ref().unwrap())
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        let at = |f: &str| format!("mesh.rateLimitService.{f}");
        assert_eq!(
            fields,
            [
                at("port"),
                at("domain"),
                at("redis"),
                at("timeout"),
                at("descriptors[0].key")
            ]
        );
        let ok = mesh("{ port: 8081, redis: \"redis://127.0.0.1:6379\", descriptors: [{key: k}] }");
        assert!(problems(ok.mesh.rate_limit_service.as_ref().unwrap()).is_empty());
    }

    #[test]
    fn the_config_file_is_named_by_domain() {
        let m = mesh("{ port: 8081, descriptors: [{key: generic_key, value: g}] }");
        let (path, v) = config_file(m.mesh.rate_limit_service.as_ref().unwrap());
        assert_eq!(path, PathBuf::from("ratelimit/mesh.yaml"));
        assert_eq!(v["descriptors"][0]["key"], "generic_key");
    }
}

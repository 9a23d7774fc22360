//! The module a filter's harness tests run. By default the filter's own; with
//! `WASMESH_HARNESS_MODULE=mesh`, the one-VM mesh module with all seven stages, the
//! filter's config in its own stage and quiet configs in the other six, so the same
//! tests show that the filter behaves the same as a stage of `mesh.wasm`.

use wasmesh_harness::{build, Module};

/// The environment variable that picks the module: unset (or empty) for the filter's
/// own, `mesh` for the mesh module.
pub const MODULE_ENV: &str = "WASMESH_HARNESS_MODULE";

/// The mesh module's package, whose stages [`STAGES`] lists.
const MESH: &str = "wasmesh-mesh";

/// The mesh module's stages in the generator's order (`FilterName`'s), each with a
/// config under which it leaves requests, responses and metrics alone: no policy or
/// edit (cors with no policy), ratelimit's one rule (it needs one) on a path no test sends, fault's abort
/// at 0% (it needs a fault), and telemetry with its metrics, exchange header and
/// tracing off. A stage's filter is the package `wasmesh-<stage>`.
const STAGES: [(&str, &str); 7] = [
    ("cors", "{}"),
    ("authz", "{}"),
    (
        "ratelimit",
        r#"{"rules":[{"name":"quiet","match":{"path":{"exact":"/wasmesh-harness/quiet-stage"}},"token_bucket":{"max_tokens":1,"tokens_per_fill":1,"fill_interval":"1s"}}]}"#,
    ),
    ("headers", "{}"),
    ("fault", r#"{"abort":{"http_status":503,"percentage":0}}"#),
    ("body", "{}"),
    (
        "telemetry",
        r#"{"metrics":{"enabled":false},"exchange":{"enabled":false},"tracing":{"enabled":false}}"#,
    ),
];

/// Where `package`'s stage (`wasmesh-fault` is `fault`) sits in [`STAGES`].
fn stage_index(package: &str) -> Option<usize> {
    let stage = package.strip_prefix("wasmesh-").unwrap_or(package);
    STAGES.iter().position(|(name, _)| *name == stage)
}

/// The module for `package`'s harness tests (`wasmesh-headers`, ...), as
/// [`MODULE_ENV`] picks it. Builds and loads it (once per process); a failure panics.
pub fn filter_under_test(package: &str) -> Module {
    if !through_mesh() {
        return Module::load(build::wasm_module(package)).expect("the filter loads");
    }
    let Some(i) = stage_index(package) else {
        panic!("{package} is not a stage of the mesh module")
    };
    Module::load(build::wasm_bundle(MESH))
        .expect("the mesh module loads")
        .wrap_plugin_config(move |config| mesh_config(i, config))
}

/// Whether [`MODULE_ENV`] has the filters' tests run through the mesh module. Any
/// value but `mesh` or nothing panics, so that a typo does not quietly test the
/// filters alone.
pub fn through_mesh() -> bool {
    match std::env::var(MODULE_ENV).as_deref() {
        Ok("") | Err(_) => false,
        Ok("mesh") => true,
        Ok(other) => panic!("{MODULE_ENV}={other}: expected `mesh`, or nothing"),
    }
}

/// The log line with which `package`'s filter, or the mesh module running it as a
/// stage, refuses a config: `wasmesh-fault: invalid configuration: abort.percentage:
/// must be 0-100`, or through the mesh `wasmesh-mesh: invalid configuration:
/// stages[3].config.abort.percentage: must be 0-100`. `path` is the field's path in
/// the filter's config, empty for the whole config.
pub fn config_refusal(package: &str, path: &str, message: &str) -> String {
    match stage_index(package).filter(|_| through_mesh()) {
        Some(i) => {
            let within = if path.is_empty() {
                String::new()
            } else {
                format!(".{path}")
            };
            format!("{MESH}: invalid configuration: stages[{i}].config{within}: {message}")
        }
        None if path.is_empty() => format!("{package}: invalid configuration: {message}"),
        None => format!("{package}: invalid configuration: {path}: {message}"),
    }
}

/// The mesh module's config with `config` (a filter's config, as a test gave it) as
/// stage `at`'s, kept byte for byte so that broken JSON stays broken; no config at
/// all is the stage's `{}`.
fn mesh_config(at: usize, config: &[u8]) -> Vec<u8> {
    let mut out = b"{\"stages\":[".to_vec();
    for (i, (name, quiet)) in STAGES.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(format!("{{\"name\":\"{name}\",\"config\":").as_bytes());
        if i != at {
            out.extend_from_slice(quiet.as_bytes());
        } else if config.iter().all(u8::is_ascii_whitespace) {
            out.extend_from_slice(b"{}");
        } else {
            out.extend_from_slice(config);
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn index(package: &str) -> usize {
        stage_index(package).unwrap()
    }

    #[test]
    fn the_stage_gets_the_config_and_the_others_stay_quiet() {
        let headers = index("wasmesh-headers");
        let doc: Value =
            serde_json::from_slice(&mesh_config(headers, br#"{"request":{}}"#)).unwrap();
        let stages = doc["stages"].as_array().unwrap();
        let names: Vec<&str> = stages.iter().map(|s| s["name"].as_str().unwrap()).collect();
        let table: Vec<&str> = STAGES.iter().map(|(name, _)| *name).collect();
        assert_eq!(names, table);
        assert_eq!(stages[headers]["config"], json!({"request": {}}));
        assert_eq!(stages[index("authz")]["config"], json!({}));
        assert_eq!(
            stages[index("telemetry")]["config"]["tracing"]["enabled"],
            false
        );
        // No config is the stage's default; broken JSON stays broken.
        let fault = index("wasmesh-fault");
        let empty: Value = serde_json::from_slice(&mesh_config(fault, b"")).unwrap();
        assert_eq!(empty["stages"][fault]["config"], json!({}));
        assert!(serde_json::from_slice::<Value>(&mesh_config(fault, b"{")).is_err());
    }
}

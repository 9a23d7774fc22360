//! Arbitrary JSON as a stage's config, read and validated natively through the mesh
//! module's registry: every one is accepted or refused with a field path, and none
//! panics. The documents are built from the config vocabulary (field names, enum
//! words, Istio-style values), so they reach deep into every stage's readers and
//! validators rather than failing at the first key.
// Tests fail loudly by design.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use wasmesh_mesh::{Mesh, STAGES};
use wasmesh_sdk::config::Json;
use wasmesh_sdk::pipeline::Registry;

/// Keys and strings the stages' configs use (a sample across all of them), plus some
/// that none does.
const WORDS: &[&str] = &[
    "rules",
    "corsPolicy",
    "allowOrigins",
    "allowMethods",
    "unmatchedPreflights",
    "match",
    "path",
    "prefix",
    "exact",
    "regex",
    "suffix",
    "template",
    "headers",
    "name",
    "value",
    "present",
    "invert",
    "method",
    "abort",
    "delay",
    "percentage",
    "http_status",
    "fixed_delay",
    "header_faults",
    "max_active_faults",
    "policies",
    "action",
    "ALLOW",
    "DENY",
    "AUDIT",
    "CUSTOM",
    "from",
    "to",
    "when",
    "source",
    "operation",
    "principals",
    "notPrincipals",
    "namespaces",
    "ipBlocks",
    "paths",
    "methods",
    "hosts",
    "ports",
    "key",
    "values",
    "jwtRules",
    "issuer",
    "audiences",
    "jwks",
    "jwksUri",
    "cluster",
    "outputClaimToHeaders",
    "fromHeaders",
    "apiKeys",
    "basicAuth",
    "consumers",
    "reporter",
    "destination",
    "source",
    "mtls",
    "STRICT",
    "workload",
    "namespace",
    "app",
    "tracing",
    "formats",
    "metrics",
    "overrides",
    "tagOverrides",
    "accessLog",
    "fields",
    "customMetrics",
    "token_bucket",
    "max_tokens",
    "tokens_per_fill",
    "fill_interval",
    "descriptors",
    "request",
    "response",
    "set",
    "add",
    "remove",
    "rename",
    "query",
    "rewrite",
    "path_normalization",
    "escaped_slashes",
    "decode",
    "1s",
    "250ms",
    "/api",
    "x-user",
    "^/v[0-9]+/",
    "(",
    "",
    "é",
    "\u{0}",
    "spiffe://cluster.local/ns/a/sa/b",
];

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(WORDS).prop_map(str::to_string),
        1 => ".{0,12}",
    ]
}

fn json() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        prop_oneof![Just(0i64), Just(-1), Just(i64::MIN), any::<i64>()].prop_map(Json::Int),
        prop_oneof![Just(u64::MAX), Just(100u64), any::<u64>()].prop_map(Json::UInt),
        prop_oneof![Just(0.5f64), Just(1e300), Just(-0.0), any::<f64>()].prop_map(Json::Float),
        word().prop_map(Json::String),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Json::Array),
            prop::collection::vec((word(), inner), 0..6).prop_map(|members| {
                // The parser refuses a key given twice, so no tree holds one.
                let mut unique: Vec<(String, Json)> = Vec::new();
                for (k, v) in members {
                    if !unique.iter().any(|(seen, _)| *seen == k) {
                        unique.push((k, v));
                    }
                }
                Json::Object(unique)
            }),
        ]
    })
}

/// Each stage's realistic config: the rig's (`bench/configs/mesh.json`, with its JWKS
/// filled in as the rig does).
fn base_configs() -> Vec<(String, Json)> {
    let bench = concat!(env!("CARGO_MANIFEST_DIR"), "/../../bench");
    let text = std::fs::read_to_string(format!("{bench}/configs/mesh.json")).unwrap();
    let jwks = std::fs::read_to_string(format!("{bench}/fixtures/jwks.json")).unwrap();
    let text = text.replace("\"$JWKS\"", &serde_json::to_string(&jwks).unwrap());
    let doc = Json::parse(text.as_bytes()).unwrap();
    let Json::Object(members) = doc else {
        panic!("mesh.json is not an object")
    };
    let Some((_, Json::Array(stages))) = members.into_iter().find(|(k, _)| k == "stages") else {
        panic!("mesh.json has no stages")
    };
    let mut bases: Vec<(String, Json)> = stages
        .into_iter()
        .map(|stage| {
            let Json::Object(entry) = stage else {
                panic!("a stage is not an object")
            };
            let field = |name: &str| {
                entry
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            };
            let Some(Json::String(name)) = field("name") else {
                panic!("a stage has no name")
            };
            (name, field("config").unwrap_or_default())
        })
        .collect();
    // A stage the benchmark's chain leaves out (cors: the benchmark's requests have no
    // Origin) has a realistic config of its own beside it.
    for stage in STAGES {
        if !bases.iter().any(|(name, _)| name == stage) {
            let text = std::fs::read_to_string(format!("{bench}/configs/{stage}.json")).unwrap();
            bases.push((stage.to_string(), Json::parse(text.as_bytes()).unwrap()));
        }
    }
    bases
}

/// What to do where a walk into the document stops.
#[derive(Debug, Clone)]
enum Edit {
    Replace(Json),
    Remove,
    Insert(String, Json),
}

/// Walks into `doc` by `steps` (each picks a member or an item, modulo the count)
/// and applies `edit` at the value reached, or at the member it was reached by.
fn mutate(doc: &mut Json, steps: &[usize], edit: Edit) {
    match (doc, steps) {
        (Json::Object(members), [step, rest @ ..]) if !members.is_empty() => {
            let i = step % members.len();
            if rest.is_empty() {
                match edit {
                    Edit::Remove => {
                        members.remove(i);
                    }
                    other => mutate(&mut members[i].1, rest, other),
                }
            } else {
                mutate(&mut members[i].1, rest, edit);
            }
        }
        (Json::Array(items), [step, rest @ ..]) if !items.is_empty() => {
            let i = step % items.len();
            if rest.is_empty() && matches!(edit, Edit::Remove) {
                items.remove(i);
            } else {
                mutate(&mut items[i], rest, edit);
            }
        }
        (doc, _) => match edit {
            Edit::Replace(value) => *doc = value,
            Edit::Insert(key, value) => {
                if let Json::Object(members) = doc {
                    if !members.iter().any(|(k, _)| *k == key) {
                        members.push((key, value));
                    }
                }
            }
            Edit::Remove => *doc = Json::Null,
        },
    }
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        3 => json().prop_map(Edit::Replace),
        1 => Just(Edit::Remove),
        1 => (word(), json()).prop_map(|(k, v)| Edit::Insert(k, v)),
    ]
}

/// Builds `stage` from `doc`: accepted, or refused with a message; never a panic.
fn build(stage: &str, doc: &Json) -> Result<(), String> {
    match Mesh::build(stage, doc) {
        Some(Ok(_)) => Ok(()),
        Some(Err(e)) if !e.message.is_empty() => Err(e.to_string()),
        Some(Err(e)) => panic!("{stage}: an error without a message at `{}`", e.path),
        None => panic!("{stage} is not registered"),
    }
}

#[test]
fn the_realistic_configs_build() {
    let bases = base_configs();
    assert_eq!(bases.len(), STAGES.len());
    for (stage, config) in &bases {
        build(stage, config).unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Whole documents from the vocabulary, given to every stage.
    #[test]
    fn no_document_panics_any_stage(doc in json()) {
        for stage in STAGES {
            let _ = build(stage, &doc);
        }
    }

    /// A realistic config with one part replaced, removed or added: deep in each
    /// stage's readers and validators.
    #[test]
    fn no_edit_of_a_realistic_config_panics(
        which in 0..STAGES.len(),
        edits in prop::collection::vec((prop::collection::vec(any::<usize>(), 0..6), edit()), 1..4),
    ) {
        let (stage, mut doc) = base_configs().swap_remove(which);
        for (steps, edit) in edits {
            mutate(&mut doc, &steps, edit);
        }
        let _ = build(&stage, &doc);
    }
}

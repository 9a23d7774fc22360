//! The unsupported-field collector. Every field wasmesh cannot carry into the mesh
//! model is reported with its file, resource, field path and why, never dropped
//! silently: an error by default, a warning listing the dropped field with
//! `--allow-unsupported`. Problems that no flag can waive (conflicts, references to
//! nothing, malformed values) are kept apart as errors.

use super::documents::Doc;
use crate::model::MeshError;
use serde::de::DeserializeOwned;

/// What reading the resources found wrong.
#[derive(Debug, Default)]
pub struct Findings {
    /// Always errors.
    pub errors: Vec<MeshError>,
    /// Fields wasmesh does not carry: errors, or warnings with `--allow-unsupported`.
    pub unsupported: Vec<MeshError>,
}

fn at(doc: &Doc, field: &str, message: String) -> MeshError {
    let path = if field.is_empty() {
        doc.label()
    } else {
        format!("{} {field}", doc.label())
    };
    MeshError {
        file: doc.file.clone(),
        path,
        line: Some(doc.line),
        message,
    }
}

impl Findings {
    /// A problem no flag waives, at `field` of `doc` (`spec.http[0].route[1]`).
    pub fn error(&mut self, doc: &Doc, field: &str, message: impl Into<String>) {
        self.errors.push(at(doc, field, message.into()));
    }

    /// A field wasmesh does not carry, and why.
    pub fn unsupported(&mut self, doc: &Doc, field: &str, why: impl AsRef<str>) {
        self.unsupported
            .push(at(doc, field, format!("unsupported: {}", why.as_ref())));
    }

    /// `doc` deserialised into `T` (a typed resource). Each field `T` does not have is
    /// reported unsupported, with [`why_unsupported`]'s reason; a value of the wrong
    /// shape is an error naming its field. `None` after an error.
    pub fn typed<T: DeserializeOwned>(&mut self, doc: &Doc) -> Option<T> {
        self.typed_at(doc, &doc.value, "")
    }

    /// [`Self::typed`] for `value`, a part of `doc` found at `prefix` (YAML held in a
    /// string field, as a ConfigMap's `data.mesh`): paths are reported under it.
    pub fn typed_at<T: DeserializeOwned>(
        &mut self,
        doc: &Doc,
        value: &serde_json::Value,
        prefix: &str,
    ) -> Option<T> {
        let under = |field: String| match (prefix.is_empty(), field.is_empty()) {
            (true, _) => field,
            (false, true) => prefix.to_string(),
            (false, false) => format!("{prefix}.{field}"),
        };
        let mut ignored = Vec::new();
        let result = {
            let mut note = |p: serde_ignored::Path<'_>| ignored.push(render(&p));
            let de = serde_ignored::Deserializer::new(value.clone(), &mut note);
            serde_path_to_error::deserialize::<_, T>(de)
        };
        for field in ignored {
            if field == "status" || field.starts_with("status.") {
                continue; // Written by the cluster, not by the user.
            }
            let why = why_unsupported(&doc.kind, &field);
            self.unsupported(doc, &under(field), why);
        }
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                let path = e.path().to_string();
                let path = if path == "." { String::new() } else { path };
                let message = e.into_inner().to_string();
                self.error(doc, &under(path), message);
                None
            }
        }
    }
}

/// `spec.http[0].corsPolicy` from serde_ignored's path.
fn render(p: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match p {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", render(parent)),
        Path::Map { parent, key } => {
            let parent = render(parent);
            if parent.is_empty() {
                key.clone()
            } else {
                format!("{parent}.{key}")
            }
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => render(parent),
    }
}

/// Why a field is not carried: the reasons for the fields Istio users write most, and
/// a general one for the rest (docs/istio-resources.md has the whole table).
pub fn why_unsupported(kind: &str, field: &str) -> String {
    let last = field.rsplit('.').next().unwrap_or(field);
    let last = last.split('[').next().unwrap_or(last);
    let known = match (kind, last) {
        (_, "exportTo") => "every resource is visible mesh-wide in wasmesh",
        ("VirtualService", "tcp" | "tls") => "wasmesh routes HTTP only",
        ("VirtualService", "delegate") => "the mesh model has no delegation yet",
        ("VirtualService", "bytes") => "a direct response body is a `string`",
        ("VirtualService", "allowOrigin") => {
            "a CORS policy has allowOrigins (the deprecated allowOrigin is not read), allowMethods, allowHeaders, exposeHeaders, maxAge, allowCredentials and unmatchedPreflights"
        }
        ("VirtualService", "headers") if field.contains("].route[") => {
            "per-destination header operations: set them on the route"
        }
        ("VirtualService", "scheme" | "derivePort" | "port") if field.contains(".redirect.") => {
            "a redirect replaces the path (uri) and the authority, with a status"
        }
        ("VirtualService", "withoutHeaders" | "ignoreUriCase" | "scheme" | "authority" | "port" | "sourceLabels" | "sourceNamespace" | "gateways" | "statPrefix") => {
            "route matches on path, headers, query parameters and method only"
        }
        ("VirtualService", "uriRegexRewrite") => "a rewrite replaces the path prefix (uri) or the authority",
        ("VirtualService", "mirrors" | "mirror_percent" | "mirrorPercent") => {
            "one `mirror` with `mirrorPercentage` only"
        }
        ("DestinationRule", "trafficPolicy") if field.contains("subsets[") => {
            "per-subset traffic policies are not in the mesh model"
        }
        ("DestinationRule", "consistentHash" | "localityLbSetting" | "warmupDurationSecs") => {
            "load balancing is ROUND_ROBIN, LEAST_REQUEST or RANDOM"
        }
        ("DestinationRule", "workloadSelector") => "destination rules apply to every caller",
        (_, "targetRef" | "targetRefs") => "resources select workloads by `selector.matchLabels` only",
        ("Deployment" | "Service" | "ServiceAccount", _) => {
            "wasmesh reads the mesh's shape from Kubernetes objects (ports, labels, replicas, service account, image, env), nothing else"
        }
        _ => "",
    };
    if known.is_empty() {
        format!("`{last}` is not read by wasmesh (docs/istio-resources.md lists what is)")
    } else {
        known.to_string()
    }
}

//! Reading Istio input: a directory (its `kustomization.yaml`'s resources when it has
//! one, else every `*.yaml`/`*.yml` in it, sorted) or one multi-document YAML file,
//! split into documents that each carry `apiVersion`, `kind` and `metadata`.

use crate::model::MeshError;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// One YAML document: a Kubernetes object.
#[derive(Debug, Clone)]
pub struct Doc {
    pub file: PathBuf,
    /// The document's first line in its file.
    pub line: usize,
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub namespace: String,
    pub value: Value,
}

impl Doc {
    /// `VirtualService default/reviews`, as errors name a resource.
    pub fn label(&self) -> String {
        format!("{} {}/{}", self.kind, self.namespace, self.name)
    }

    /// The API group without the version: `networking.istio.io`, `` for core `v1`.
    pub fn group(&self) -> &str {
        self.api_version
            .rsplit_once('/')
            .map_or("", |(group, _)| group)
    }
}

fn problem(file: &Path, line: Option<usize>, path: &str, message: impl Into<String>) -> MeshError {
    MeshError {
        file: file.to_path_buf(),
        path: path.to_string(),
        line,
        message: message.into(),
    }
}

/// True when `path` is Istio input rather than a mesh file: a directory, or YAML
/// whose first document has `apiVersion` and `kind` at the top.
pub fn is_istio_input(path: &Path) -> bool {
    if path.is_dir() {
        return true;
    }
    let Ok(text) = std::fs::read_to_string(path) else {
        return false;
    };
    let Some((_, first)) = split(&text).into_iter().next() else {
        return false;
    };
    serde_norway::from_str::<Value>(&first)
        .ok()
        .and_then(|v| v.as_object().cloned())
        .is_some_and(|o| o.contains_key("apiVersion") && o.contains_key("kind"))
}

/// The files to read under `path`, in reading order.
fn files(path: &Path) -> Result<Vec<PathBuf>, MeshError> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    for name in ["kustomization.yaml", "kustomization.yml"] {
        let k = path.join(name);
        if k.exists() {
            return kustomization(&k);
        }
    }
    let entries = std::fs::read_dir(path)
        .map_err(|e| problem(path, None, "", format!("cannot read the directory: {e}")))?;
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    out.sort();
    if out.is_empty() {
        return Err(problem(
            path,
            None,
            "",
            "no *.yaml or *.yml files: expected Istio and Kubernetes resources",
        ));
    }
    Ok(out)
}

/// The `resources` of a kustomization, relative to it; directories are read as above.
fn kustomization(file: &Path) -> Result<Vec<PathBuf>, MeshError> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| problem(file, None, "", format!("cannot read: {e}")))?;
    let value: Value = serde_norway::from_str(&text).map_err(|e| {
        problem(
            file,
            e.location().map(|l| l.line()),
            "",
            format!("malformed YAML: {e}"),
        )
    })?;
    let dir = file.parent().unwrap_or(Path::new("."));
    let mut out = Vec::new();
    let other = value.as_object().and_then(|obj| {
        obj.keys()
            .find(|k| !["apiVersion", "kind", "resources"].contains(&k.as_str()))
    });
    if let Some(key) = other {
        return Err(problem(
            file,
            None,
            key,
            "unsupported: wasmesh reads a kustomization's `resources` list only",
        ));
    }
    let resources = value
        .get("resources")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            problem(
                file,
                None,
                "resources",
                "a kustomization needs a `resources` list of files",
            )
        })?;
    for (i, r) in resources.iter().enumerate() {
        let Some(rel) = r.as_str() else {
            return Err(problem(
                file,
                None,
                &format!("resources[{i}]"),
                "must be a path",
            ));
        };
        let p = dir.join(rel);
        if p.is_dir() {
            out.extend(files(&p)?);
        } else if p.is_file() {
            out.push(p);
        } else {
            return Err(problem(
                file,
                None,
                &format!("resources[{i}]"),
                format!("{} does not exist", p.display()),
            ));
        }
    }
    Ok(out)
}

/// `text` cut at its `---` lines: (first line number, document text) for each
/// document that has any content.
fn split(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut start = 1;
    let mut current = String::new();
    for (i, line) in text.lines().enumerate() {
        if line.starts_with("---") && line[3..].trim().is_empty() {
            out.push((start, std::mem::take(&mut current)));
            start = i + 2;
            continue;
        }
        current.push_str(line);
        current.push('\n');
    }
    out.push((start, current));
    out.retain(|(_, t)| {
        t.lines()
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
    });
    out
}

/// Every document under `path`; each malformed one is a problem naming its line.
pub fn read(path: &Path) -> Result<Vec<Doc>, Vec<MeshError>> {
    let files = files(path).map_err(|e| vec![e])?;
    let mut docs = Vec::new();
    let mut errors = Vec::new();
    for file in files {
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) => {
                errors.push(problem(&file, None, "", format!("cannot read: {e}")));
                continue;
            }
        };
        for (line, chunk) in split(&text) {
            match document(&file, line, &chunk) {
                Ok(Some(d)) => docs.push(d),
                Ok(None) => {}
                Err(e) => errors.push(e),
            }
        }
    }
    if errors.is_empty() {
        Ok(docs)
    } else {
        Err(errors)
    }
}

fn document(file: &Path, line: usize, text: &str) -> Result<Option<Doc>, MeshError> {
    let value: Value = serde_norway::from_str(text).map_err(|e| {
        let at = e.location().map(|l| l.line() + line - 1);
        let message = e.to_string();
        let message = message.split(" at line ").next().unwrap_or(&message);
        problem(
            file,
            at.or(Some(line)),
            "",
            format!("malformed YAML: {message}"),
        )
    })?;
    if value.is_null() {
        return Ok(None);
    }
    let field = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_string);
    let (Some(api_version), Some(kind)) = (field("apiVersion"), field("kind")) else {
        return Err(problem(
            file,
            Some(line),
            "",
            "not a Kubernetes object: a document needs `apiVersion` and `kind` (a wasmesh mesh file is read on its own, not mixed with resources)",
        ));
    };
    // A kustomization names files; it is read by `files`, not converted.
    if kind == "Kustomization" {
        return Ok(None);
    }
    let meta = value.get("metadata");
    let meta_field = |key: &str| {
        meta.and_then(|m| m.get(key))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let Some(name) = meta_field("name") else {
        return Err(problem(
            file,
            Some(line),
            &format!("{kind} metadata.name"),
            "missing: every resource needs a name",
        ));
    };
    Ok(Some(Doc {
        file: file.to_path_buf(),
        line,
        api_version,
        kind,
        name,
        namespace: meta_field("namespace").unwrap_or_else(|| "default".into()),
        value,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_split_at_their_separators_with_first_lines() {
        let docs = split("a: 1\n---\n# only a comment\n---\nb: 2\nc: 3\n");
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].0, 1);
        assert_eq!(docs[1].0, 5);
    }
}

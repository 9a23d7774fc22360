//! Reading the mesh file: serde over YAML, with errors that name the field and line.

use super::MeshFile;
use std::fmt;
use std::path::{Path, PathBuf};

/// A mesh file problem: where (file, field path, line if known) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshError {
    pub file: PathBuf,
    /// `services[2].routes[0].route[1].weight`; empty for the whole document.
    pub path: String,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for MeshError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for MeshError {}

/// Parses `text` (the contents of `file`); the error names the field.
pub fn parse(file: &Path, text: &str) -> Result<MeshFile, MeshError> {
    let de = serde_norway::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = render_path(err.path());
        let inner = err.into_inner();
        MeshError {
            file: file.to_path_buf(),
            path: path.clone(),
            line: inner.location().map(|l| l.line()),
            // The YAML error repeats the path (or, for a custom error, its parent's) in
            // front of its message.
            message: strip_path(&strip_location(&inner.to_string()), &path),
        }
    })
}

/// serde_path_to_error renders the root as `.`; `a.b[0]` elsewhere is what we want.
fn render_path(path: &serde_path_to_error::Path) -> String {
    let s = path.to_string();
    if s == "." {
        String::new()
    } else {
        s
    }
}

/// `message` without a leading `P: `, where P is `path` or one of its parents.
fn strip_path(message: &str, path: &str) -> String {
    let mut candidate = path;
    loop {
        if let Some(rest) = message.strip_prefix(&format!("{candidate}: ")) {
            return rest.to_string();
        }
        match candidate.rfind(['.', '[']) {
            Some(i) if i > 0 => candidate = &candidate[..i],
            _ => return message.to_string(),
        }
    }
}

/// The YAML error's own " at line L column C" suffix duplicates our line.
fn strip_location(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

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
            // The YAML error repeats the path in front of its message.
            message: strip_location(&inner.to_string())
                .trim_start_matches(&format!("{path}: "))
                .to_string(),
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

/// The YAML error's own " at line L column C" suffix duplicates our line.
fn strip_location(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

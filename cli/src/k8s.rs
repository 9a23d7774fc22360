//! Kubernetes output.
use crate::model::MeshFile;
use crate::OutputFile;
use std::path::Path;

pub struct K8sOptions {
    pub filter_url: String,
    pub filters_dir: std::path::PathBuf,
}
impl K8sOptions {
    pub fn new(filter_url: &str, filters_dir: &Path) -> Self {
        Self {
            filter_url: filter_url.into(),
            filters_dir: filters_dir.into(),
        }
    }
}
pub fn generate(
    _mesh: &MeshFile,
    _opts: &K8sOptions,
) -> Result<Vec<OutputFile>, crate::GenerateError> {
    Ok(vec![])
}

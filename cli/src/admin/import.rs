//! `flotilla admin import`: (being written) reads Argo CD's configuration and reports what
//! Flotilla honours, maps differently or refuses; restores Applications and AppProjects.

use std::path::PathBuf;

use clap::Args;

use super::{AdminError, KubeArgs};
use crate::output::Format;

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Read these YAML files or directories instead of the cluster.
    #[arg(short = 'f', long = "filename")]
    pub files: Vec<PathBuf>,
}

pub async fn run(_args: ImportArgs, _kube: &KubeArgs, _format: Format) -> Result<u8, AdminError> {
    Err(AdminError::Invalid("import: not built yet".into()))
}

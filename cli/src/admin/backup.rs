//! `flotilla admin export` and the restore half of `import`: (being written) Applications and
//! AppProjects as YAML for backup, and back.

use std::path::PathBuf;

use clap::Args;

use super::{AdminError, KubeArgs};

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Write here instead of standard output.
    #[arg(long, short = 'f')]
    pub out: Option<PathBuf>,
}

pub async fn export(_args: ExportArgs, _kube: &KubeArgs) -> Result<u8, AdminError> {
    Err(AdminError::Invalid("export: not built yet".into()))
}

//! `flotilla admin move`: (being written) hands applications between Argo CD and Flotilla.

use clap::Args;

use super::{AdminError, KubeArgs};
use crate::output::Format;

#[derive(Debug, Args)]
pub struct MoveArgs {
    /// Application names.
    pub apps: Vec<String>,
}

pub async fn run(_args: MoveArgs, _kube: &KubeArgs, _format: Format) -> Result<u8, AdminError> {
    Err(AdminError::Invalid("move: not built yet".into()))
}

//! `flotilla admin shards`: (being written) the controller replicas from their shard Leases and
//! what each owns.

use clap::Args;

use super::{AdminError, KubeArgs};
use crate::output::Format;

#[derive(Debug, Args)]
pub struct ShardsArgs {
    /// The replica group (the controllers' `--shard-group`).
    #[arg(long, default_value = "flotilla-controller")]
    pub group: String,
}

pub async fn run(_args: ShardsArgs, _kube: &KubeArgs, _format: Format) -> Result<u8, AdminError> {
    Err(AdminError::Invalid("shards: not built yet".into()))
}

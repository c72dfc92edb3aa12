//! `flotilla admin settings validate`: (being written) checks a directory of Argo CD config
//! objects offline, for CI.

use std::path::PathBuf;

use clap::Subcommand;

use super::AdminError;
use crate::output::Format;

#[derive(Debug, Subcommand)]
pub enum SettingsCommand {
    /// Check every config object in a directory; exit 1 on anything refused or unsafe.
    Validate {
        /// A directory (or file) of YAML.
        path: PathBuf,
    },
}

pub async fn run(_cmd: SettingsCommand, _format: Format) -> Result<u8, AdminError> {
    Err(AdminError::Invalid(
        "settings validate: not built yet".into(),
    ))
}

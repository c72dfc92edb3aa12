//! `flotilla admin`: operator tools that talk to Kubernetes directly (a kubeconfig, no API
//! server): config import checks, backup export/restore, shard listing, hand-over of apps.

pub mod backup;
pub mod import;
pub mod keys;
pub mod move_app;
pub mod settings;
pub mod shards;

use std::path::PathBuf;

use clap::{Args, Subcommand};
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::output::Format;

/// How `flotilla admin` reaches the control-plane cluster.
#[derive(Debug, Clone, Args)]
pub struct KubeArgs {
    /// kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then in-cluster).
    #[arg(long, global = true, env = "FLOTILLA_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// kubeconfig context (default: the current one).
    #[arg(long, global = true, env = "FLOTILLA_KUBE_CONTEXT")]
    pub context: Option<String>,
    /// The control-plane namespace (where Argo CD's ConfigMaps, Secrets, AppProjects and
    /// Applications live).
    #[arg(
        long,
        short = 'n',
        global = true,
        default_value = "argocd",
        env = "FLOTILLA_NAMESPACE"
    )]
    pub namespace: String,
}

impl KubeArgs {
    /// A client for the chosen kubeconfig and context.
    pub async fn client(&self) -> Result<Client, AdminError> {
        let config = match &self.kubeconfig {
            Some(path) => {
                let kc = Kubeconfig::read_from(path)
                    .map_err(|e| AdminError::Kube(format!("{}: {e}", path.display())))?;
                let opts = KubeConfigOptions {
                    context: self.context.clone(),
                    ..Default::default()
                };
                kube::Config::from_custom_kubeconfig(kc, &opts)
                    .await
                    .map_err(|e| AdminError::Kube(e.to_string()))?
            }
            None => match &self.context {
                Some(ctx) => kube::Config::from_kubeconfig(&KubeConfigOptions {
                    context: Some(ctx.clone()),
                    ..Default::default()
                })
                .await
                .map_err(|e| AdminError::Kube(e.to_string()))?,
                None => kube::Config::infer()
                    .await
                    .map_err(|e| AdminError::Kube(e.to_string()))?,
            },
        };
        Client::try_from(config).map_err(|e| AdminError::Kube(e.to_string()))
    }
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Read Argo CD's configuration (argocd-cm, argocd-rbac-cm, argocd-cmd-params-cm,
    /// repository and cluster Secrets) from the cluster or from files, and report what
    /// Flotilla honours, maps differently or refuses; restore Applications and AppProjects
    /// from an `export`. Exits 1 when anything is unsafe.
    Import(import::ImportArgs),
    /// Write Applications and AppProjects (and with --all, the config objects) as YAML for
    /// backup or a move between installations.
    Export(backup::ExportArgs),
    /// The controller replicas (shard Leases) and the clusters and applications each owns.
    Shards(shards::ShardsArgs),
    /// Settings checks.
    Settings {
        #[command(subcommand)]
        command: settings::SettingsCommand,
    },
    /// Hand applications between Argo CD and Flotilla running side by side.
    Move(move_app::MoveArgs),
}

/// What went wrong in an admin command.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("kubernetes: {0}")]
    Kube(String),
    #[error("{0}")]
    Io(String),
    #[error("{0}")]
    Invalid(String),
    /// The command ran and found something unsafe (reported on stdout): exit 1.
    #[error("{0}")]
    Unsafe(String),
}

impl From<kube::Error> for AdminError {
    fn from(e: kube::Error) -> Self {
        Self::Kube(e.to_string())
    }
}

/// Run an admin command; `Ok` carries the exit code.
pub async fn run(cmd: AdminCommand, kube: &KubeArgs, format: Format) -> Result<u8, AdminError> {
    match cmd {
        AdminCommand::Import(args) => import::run(args, kube, format).await,
        AdminCommand::Export(args) => backup::export(args, kube).await,
        AdminCommand::Shards(args) => shards::run(args, kube, format).await,
        AdminCommand::Settings { command } => settings::run(command, format).await,
        AdminCommand::Move(args) => move_app::run(args, kube, format).await,
    }
}

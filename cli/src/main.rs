//! `flotilla`: the command line over flotilla-server's `/api/v1`. `login` stores the server
//! and token; `app`, `proj`, `cluster`, `repo` and `fleet` print tables, JSON or YAML.

mod admin;
mod app;
mod client;
mod inventory;
mod local;
mod output;
mod sso;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use app::{AppCommand, DiffOutcome};
use client::{Api, ApiError, Config};
use inventory::{ClusterCommand, FleetCommand, ProjCommand, RepoCommand};
use output::Format;

/// The Flotilla command line.
#[derive(Debug, Parser)]
#[command(name = "flotilla", version, next_line_help = true)]
struct Cli {
    /// The API server's URL (default: the one `flotilla login` stored).
    #[arg(long, global = true, env = "FLOTILLA_SERVER")]
    server: Option<String>,
    /// Bearer token (default: the one `flotilla login` stored).
    #[arg(
        long,
        global = true,
        env = "FLOTILLA_AUTH_TOKEN",
        hide_env_values = true
    )]
    auth_token: Option<String>,
    /// Where `login` stores the server and token.
    #[arg(long, global = true, env = "FLOTILLA_CONFIG")]
    config: Option<PathBuf>,
    /// Output: table, wide, json or yaml.
    #[arg(
        long,
        short,
        global = true,
        default_value = "table",
        env = "FLOTILLA_OUTPUT"
    )]
    output: OutputArg,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OutputArg {
    Table,
    Wide,
    Json,
    Yaml,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Sign in (a token, or the server's SSO in a browser), check it, and store it for later
    /// commands.
    Login {
        /// The API server's URL, e.g. https://flotilla.example.com.
        url: String,
        /// A bearer token: the local admin's (Secret flotilla-initial-admin-secret), a project
        /// role token, a ServiceAccount token or an ID token.
        #[arg(
            long,
            env = "FLOTILLA_LOGIN_TOKEN",
            hide_env_values = true,
            required_unless_present = "sso",
            conflicts_with = "sso"
        )]
        token: Option<String>,
        /// Sign in through the server's SSO (OIDC authorization code with PKCE): open the
        /// printed URL in a browser; the provider redirects to this machine.
        #[arg(long)]
        sso: bool,
        /// Loopback port of the SSO redirect (http://localhost:PORT/auth/callback must be a
        /// redirect URI of the CLI's client at the provider; 8085 as Argo CD's CLI).
        #[arg(long, default_value_t = 8085)]
        sso_port: u16,
    },
    /// Applications.
    App {
        #[command(subcommand)]
        command: AppCommand,
    },
    /// AppProjects.
    Proj {
        #[command(subcommand)]
        command: ProjCommand,
    },
    /// Destination clusters (no credentials shown).
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Repositories (no credentials shown).
    Repo {
        #[command(subcommand)]
        command: RepoCommand,
    },
    /// The controller fleet: replicas, what each owns, queues.
    Fleet {
        #[command(subcommand)]
        command: FleetCommand,
    },
    /// Operator tools that talk to Kubernetes directly (kubeconfig; no API server): import
    /// Argo CD's config, export/restore, shards, settings validation, moving apps between
    /// Argo CD and Flotilla.
    Admin {
        #[command(flatten)]
        kube: admin::KubeArgs,
        #[command(subcommand)]
        command: admin::AdminCommand,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completion { shell: clap_complete::Shell },
}

/// Exit codes: 0 done, 1 the server refused or could not be reached (or an operation failed),
/// 2 bad usage (clap), 3 not found, 4 not logged in, a rejected token or permission denied,
/// 5 timed out.
/// `app diff`: 0 no differences, 1 differences, 2 the diff could not be made.
fn exit_code(e: &ApiError) -> u8 {
    match e {
        ApiError::NotFound(_) => 3,
        ApiError::Unauthorized(_) | ApiError::Forbidden(_) | ApiError::NotLoggedIn => 4,
        ApiError::Timeout(_) => 5,
        _ => 1,
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    if let Command::Admin { kube, command } = cli.command {
        let format = output_format(cli.output);
        return match admin::run(command, &kube, format).await {
            Ok(code) => ExitCode::from(code),
            Err(e) => {
                eprintln!("flotilla admin: {e}");
                ExitCode::from(match e {
                    admin::AdminError::Unsafe(_) => 1,
                    admin::AdminError::Invalid(_) => 2,
                    _ => 1,
                })
            }
        };
    }
    let diff = matches!(
        cli.command,
        Command::App {
            command: AppCommand::Diff { .. }
        }
    );
    match run(cli).await {
        Ok(None | Some(DiffOutcome::Same)) => ExitCode::SUCCESS,
        Ok(Some(DiffOutcome::Differs)) => ExitCode::from(1),
        Err(e) => {
            eprintln!("flotilla: {e}");
            match exit_code(&e) {
                1 if diff => ExitCode::from(2),
                code => ExitCode::from(code),
            }
        }
    }
}

fn output_format(o: OutputArg) -> Format {
    match o {
        OutputArg::Table => Format::Table,
        OutputArg::Wide => Format::Wide,
        OutputArg::Json => Format::Json,
        OutputArg::Yaml => Format::Yaml,
    }
}

async fn run(cli: Cli) -> Result<Option<DiffOutcome>, ApiError> {
    let config_path = cli.config.clone().unwrap_or_else(Config::default_path);
    let format = output_format(cli.output);
    match &cli.command {
        Command::Login {
            url,
            token,
            sso,
            sso_port,
        } => {
            let token = match (token, sso) {
                (Some(t), _) => t.clone(),
                (None, true) => sso::login(&client::http()?, url, *sso_port).await?,
                (None, false) => return Err(ApiError::NotLoggedIn),
            };
            let api = Api::new(url, &token)?;
            api.get("/api/v1/applications?limit=1").await?;
            Config {
                server: url.clone(),
                token,
            }
            .save(&config_path)?;
            println!("logged in to {url}; stored in {}", config_path.display());
            return Ok(None);
        }
        Command::Completion { shell } => {
            use clap::CommandFactory;
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "flotilla", &mut script);
            // A closed pipe (`| head`) is the reader's choice, not an error.
            let _ = std::io::Write::write_all(&mut std::io::stdout(), &script);
            return Ok(None);
        }
        _ => {}
    }
    let stored = Config::load(&config_path).ok();
    let server = cli
        .server
        .or_else(|| stored.as_ref().map(|c| c.server.clone()))
        .ok_or(ApiError::NotLoggedIn)?;
    let token = cli
        .auth_token
        .or_else(|| stored.as_ref().map(|c| c.token.clone()))
        .ok_or(ApiError::NotLoggedIn)?;
    let api = Api::new(&server, &token)?;
    match cli.command {
        Command::Login { .. } | Command::Completion { .. } | Command::Admin { .. } => Ok(None),
        Command::App { command } => app::run(&api, command, format).await,
        Command::Proj { command } => inventory::projects(&api, command, format)
            .await
            .map(|()| None),
        Command::Cluster { command } => inventory::clusters(&api, command, format)
            .await
            .map(|()| None),
        Command::Repo { command } => inventory::repositories(&api, command, format)
            .await
            .map(|()| None),
        Command::Fleet { command } => inventory::fleet(&api, command, format).await.map(|()| None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subcommand_arguments_never_take_a_global_flags_value() {
        // `cluster add|get|rm SERVER` name a cluster; the API server stays what --server says.
        for args in [
            vec![
                "flotilla",
                "--server",
                "http://api",
                "cluster",
                "add",
                "https://k8s:6443",
            ],
            vec![
                "flotilla",
                "--server",
                "http://api",
                "cluster",
                "get",
                "prod",
            ],
            vec![
                "flotilla",
                "--server",
                "http://api",
                "cluster",
                "rm",
                "https://k8s:6443",
            ],
        ] {
            let cli = Cli::try_parse_from(&args).expect("parses");
            assert_eq!(cli.server.as_deref(), Some("http://api"), "{args:?}");
        }
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}

//! `flotilla`: the command line over flotilla-server's `/api/v1`. `login` stores the server
//! and token; `app list|get` and `proj list` print tables, wide tables, JSON or YAML.

mod client;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use client::{Api, ApiError, Config};
use output::{Format, print_apps, print_value};

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
    /// Check a server and token, and store them for later commands.
    Login {
        /// The API server's URL, e.g. https://flotilla.example.com.
        url: String,
        /// The bearer token (the local admin's is in the Secret flotilla-initial-admin-secret).
        #[arg(long, env = "FLOTILLA_LOGIN_TOKEN", hide_env_values = true)]
        token: String,
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
}

#[derive(Debug, Subcommand)]
enum AppCommand {
    /// List applications (every page), filtered on the server.
    List {
        #[arg(long, short)]
        project: Option<String>,
        /// Destination cluster: server URL or name.
        #[arg(long, short)]
        cluster: Option<String>,
        /// Destination namespace.
        #[arg(long)]
        namespace: Option<String>,
        /// Label selector: k=v, k!=v, k (comma-separated).
        #[arg(long, short = 'l')]
        selector: Option<String>,
        /// Sync status(es), comma-separated.
        #[arg(long)]
        sync: Option<String>,
        /// Health status(es), comma-separated.
        #[arg(long)]
        health: Option<String>,
        /// Substring of the name.
        #[arg(long)]
        search: Option<String>,
    },
    /// One application.
    Get {
        name: String,
        /// The Application's namespace (the control plane's).
        #[arg(long, default_value = "argocd")]
        app_namespace: String,
    },
}

#[derive(Debug, Subcommand)]
enum ProjCommand {
    /// List AppProjects.
    List,
}

/// Exit codes: 0 done, 1 the server refused or could not be reached, 2 bad usage (clap),
/// 3 not found, 4 not logged in (no or a rejected token).
fn exit_code(e: &ApiError) -> u8 {
    match e {
        ApiError::NotFound(_) => 3,
        ApiError::Unauthorized(_) | ApiError::NotLoggedIn => 4,
        _ => 1,
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flotilla: {e}");
            ExitCode::from(exit_code(&e))
        }
    }
}

async fn run(cli: Cli) -> Result<(), ApiError> {
    let config_path = cli.config.clone().unwrap_or_else(Config::default_path);
    let format = match cli.output {
        OutputArg::Table => Format::Table,
        OutputArg::Wide => Format::Wide,
        OutputArg::Json => Format::Json,
        OutputArg::Yaml => Format::Yaml,
    };
    if let Command::Login { url, token } = &cli.command {
        let api = Api::new(url, token)?;
        api.get("/api/v1/applications?limit=1").await?;
        Config {
            server: url.clone(),
            token: token.clone(),
        }
        .save(&config_path)?;
        println!("logged in to {url}; stored in {}", config_path.display());
        return Ok(());
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
        Command::Login { .. } => Ok(()),
        Command::App {
            command:
                AppCommand::List {
                    project,
                    cluster,
                    namespace,
                    selector,
                    sync,
                    health,
                    search,
                },
        } => {
            let filters = [
                ("project", project),
                ("cluster", cluster),
                ("namespace", namespace),
                ("selector", selector),
                ("sync", sync),
                ("health", health),
                ("search", search),
            ];
            let apps = api.list_apps(&filters).await?;
            print_apps(&apps, format);
            Ok(())
        }
        Command::App {
            command:
                AppCommand::Get {
                    name,
                    app_namespace,
                },
        } => {
            let app = api
                .get(&format!("/api/v1/applications/{app_namespace}/{name}"))
                .await?;
            print_value(&app, format);
            Ok(())
        }
        Command::Proj {
            command: ProjCommand::List,
        } => {
            let projects = api.get("/api/v1/projects").await?;
            print_value(&projects, format);
            Ok(())
        }
    }
}

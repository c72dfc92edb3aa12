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
    /// Request a sync (the owning controller runs it); with --wait, wait for its result.
    Sync {
        name: String,
        #[arg(long, default_value = "argocd")]
        app_namespace: String,
        /// Revision to sync (default: the spec's targetRevision).
        #[arg(long)]
        revision: Option<String>,
        /// Delete resources no longer in Git.
        #[arg(long)]
        prune: bool,
        /// Compare and plan only: nothing is written.
        #[arg(long)]
        dry_run: bool,
        /// Sync only this resource: GROUP:KIND:NAME (repeatable; core group: ":ConfigMap:x").
        #[arg(long = "resource")]
        resources: Vec<String>,
        /// Wait until the operation finishes; exit 0 only if it succeeded.
        #[arg(long)]
        wait: bool,
        /// Seconds to wait.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// Request a refresh (--hard: render again, skipping caches).
    Refresh {
        name: String,
        #[arg(long, default_value = "argocd")]
        app_namespace: String,
        #[arg(long)]
        hard: bool,
    },
    /// Wait until the application is Synced and Healthy with no operation running (or only
    /// what --sync, --health, --operation ask for); exit 5 on timeout.
    Wait {
        name: String,
        #[arg(long, default_value = "argocd")]
        app_namespace: String,
        #[arg(long)]
        sync: bool,
        #[arg(long)]
        health: bool,
        #[arg(long)]
        operation: bool,
        /// Seconds to wait.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
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

/// Exit codes: 0 done, 1 the server refused or could not be reached (or a sync failed),
/// 2 bad usage (clap), 3 not found, 4 not logged in (no or a rejected token), 5 timed out.
fn exit_code(e: &ApiError) -> u8 {
    match e {
        ApiError::NotFound(_) => 3,
        ApiError::Unauthorized(_) | ApiError::NotLoggedIn => 4,
        ApiError::Timeout(_) => 5,
        _ => 1,
    }
}

/// `GROUP:KIND:NAME` as an operation's resource reference.
fn resource_ref(s: &str) -> Result<serde_json::Value, ApiError> {
    match s.splitn(3, ':').collect::<Vec<_>>()[..] {
        [g, k, n] if !k.is_empty() && !n.is_empty() => {
            Ok(serde_json::json!({"group": g, "kind": k, "name": n}))
        }
        _ => Err(ApiError::Config(format!(
            "--resource {s:?} is not GROUP:KIND:NAME"
        ))),
    }
}

fn field<'a>(app: &'a serde_json::Value, pointer: &str) -> &'a str {
    app.pointer(pointer)
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
}

/// Poll `path` every second until `done` holds; the last state names a timeout.
async fn wait_for(
    api: &Api,
    path: &str,
    timeout: u64,
    done: impl Fn(&serde_json::Value) -> bool,
) -> Result<serde_json::Value, ApiError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(timeout);
    loop {
        let app = api.get(path).await?;
        if done(&app) {
            return Ok(app);
        }
        if std::time::Instant::now() > deadline {
            return Err(ApiError::Timeout(format!(
                "after {timeout}s: sync {}, health {}, operation {}",
                field(&app, "/status/sync/status"),
                field(&app, "/status/health/status"),
                field(&app, "/status/operationState/phase")
            )));
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
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
        Command::App {
            command:
                AppCommand::Sync {
                    name,
                    app_namespace,
                    revision,
                    prune,
                    dry_run,
                    resources,
                    wait,
                    timeout,
                },
        } => {
            let refs = resources
                .iter()
                .map(|r| resource_ref(r))
                .collect::<Result<Vec<_>, _>>()?;
            let started = api
                .post(
                    &format!("/api/v1/applications/{app_namespace}/{name}/sync"),
                    &serde_json::json!({"revision": revision, "prune": prune, "dryRun": dry_run,
                        "resources": (!refs.is_empty()).then_some(refs)}),
                )
                .await?;
            println!("sync of {app_namespace}/{name} requested");
            if !wait {
                return Ok(());
            }
            let _ = started;
            // Done when no operation is requested and the last one finished after ours began.
            let path = format!("/api/v1/applications/{app_namespace}/{name}");
            let since = now_rfc3339();
            let app = wait_for(&api, &path, timeout, |a| {
                a.get("operation").is_none_or(serde_json::Value::is_null)
                    && field(a, "/status/operationState/finishedAt") >= since.as_str()
                    && !field(a, "/status/operationState/finishedAt").is_empty()
            })
            .await?;
            let phase = field(&app, "/status/operationState/phase");
            let message = field(&app, "/status/operationState/message");
            println!("{phase}: {message}");
            if phase == "Succeeded" {
                Ok(())
            } else {
                Err(ApiError::Failed(format!(
                    "the sync ended {phase}: {message}"
                )))
            }
        }
        Command::App {
            command:
                AppCommand::Refresh {
                    name,
                    app_namespace,
                    hard,
                },
        } => {
            let q = if hard { "?hard=true" } else { "" };
            api.post(
                &format!("/api/v1/applications/{app_namespace}/{name}/refresh{q}"),
                &serde_json::Value::Null,
            )
            .await?;
            println!("refresh of {app_namespace}/{name} requested");
            Ok(())
        }
        Command::App {
            command:
                AppCommand::Wait {
                    name,
                    app_namespace,
                    sync,
                    health,
                    operation,
                    timeout,
                },
        } => {
            let all = !(sync || health || operation);
            let app = wait_for(
                &api,
                &format!("/api/v1/applications/{app_namespace}/{name}"),
                timeout,
                |a| {
                    ((!sync && !all) || field(a, "/status/sync/status") == "Synced")
                        && ((!health && !all) || field(a, "/status/health/status") == "Healthy")
                        && ((!operation && !all)
                            || (a.get("operation").is_none_or(serde_json::Value::is_null)
                                && field(a, "/status/operationState/phase") != "Running"))
                },
            )
            .await?;
            println!(
                "{app_namespace}/{name}: {} {}",
                field(&app, "/status/sync/status"),
                field(&app, "/status/health/status")
            );
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

/// Now as RFC 3339 UTC seconds (`2026-11-30T09:00:00Z`), the form `finishedAt` takes, so the
/// two compare as strings.
fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

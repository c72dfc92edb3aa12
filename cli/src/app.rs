//! `flotilla app ...`: list, get, diff, resources, sync, wait, refresh, history, rollback,
//! terminate and delete, each one call (or a poll) of the API. An app is named `NAME` (in
//! `--app-namespace`, the control plane's by default) or `NAMESPACE/NAME`, as Argo CD's CLI
//! names apps in any namespace.

use clap::Subcommand;
use serde_json::{Value, json};

use crate::client::{Api, ApiError};
use crate::output::{Format, print_apps, print_value, render_history, render_resources};

#[derive(Debug, Subcommand)]
pub enum AppCommand {
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
        /// NAME, or NAMESPACE/NAME (then --app-namespace is not used).
        name: String,
        /// The Application's namespace (the control plane's).
        #[arg(long, default_value = "argocd", env = "FLOTILLA_APP_NAMESPACE")]
        app_namespace: String,
    },
    /// Each managed resource: sync, health, and whether it must be pruned.
    Resources {
        name: String,
        #[arg(long, default_value = "argocd", env = "FLOTILLA_APP_NAMESPACE")]
        app_namespace: String,
    },
    /// What differs between Git (or a local directory) and the cluster, as unified diffs of
    /// the normalized objects (Secret values masked). Exit 0: no differences; 1: differences;
    /// 2: the diff could not be made (3, 4, 5 as for every command).
    Diff {
        name: String,
        #[arg(long, default_value = "argocd", env = "FLOTILLA_APP_NAMESPACE")]
        app_namespace: String,
        /// Diff the manifests rendered from this local directory (the app's source settings
        /// applied, with the same renderers as the repo-server) instead of Git's.
        #[arg(long)]
        local: Option<std::path::PathBuf>,
    },
    /// Request a sync (the owning controller runs it); with --wait, wait for its result.
    Sync {
        name: String,
        #[arg(long, default_value = "argocd", env = "FLOTILLA_APP_NAMESPACE")]
        app_namespace: String,
        /// Revision to sync (default: the spec's targetRevision).
        #[arg(long)]
        revision: Option<String>,
        /// Multi-source apps: revisions to sync (comma-separated), for the sources at
        /// --source-positions, or for every source in order.
        #[arg(long, value_delimiter = ',')]
        revisions: Vec<String>,
        /// Multi-source apps: 1-based positions in spec.sources that --revisions apply to.
        #[arg(long, value_delimiter = ',')]
        source_positions: Vec<i64>,
        /// Delete resources no longer in Git.
        #[arg(long)]
        prune: bool,
        /// Compare and plan only: nothing is written.
        #[arg(long)]
        dry_run: bool,
        /// Sync only this resource: GROUP:KIND:NAME (repeatable; core group: ":ConfigMap:x").
        #[arg(long = "resource")]
        resources: Vec<String>,
        /// A sync option, e.g. ServerSideApply=true (repeatable).
        #[arg(long = "sync-option")]
        sync_options: Vec<String>,
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
        #[arg(long, default_value = "argocd", env = "FLOTILLA_APP_NAMESPACE")]
        app_namespace: String,
        #[arg(long)]
        hard: bool,
    },
    /// Wait until the application is Synced and Healthy with no operation running (or only
    /// what --sync, --health, --operation ask for); exit 5 on timeout.
    Wait {
        name: String,
        #[arg(long, default_value = "argocd", env = "FLOTILLA_APP_NAMESPACE")]
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
    /// The deployments the application went through (ids for rollback).
    History {
        name: String,
        #[arg(long, default_value = "argocd", env = "FLOTILLA_APP_NAMESPACE")]
        app_namespace: String,
    },
    /// Sync the source and revision of history entry ID again (refused with auto-sync on).
    Rollback {
        name: String,
        id: i64,
        #[arg(long, default_value = "argocd", env = "FLOTILLA_APP_NAMESPACE")]
        app_namespace: String,
        #[arg(long)]
        prune: bool,
        #[arg(long)]
        dry_run: bool,
        /// Wait until the rollback finishes; exit 0 only if it succeeded.
        #[arg(long)]
        wait: bool,
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// Terminate the running operation.
    Terminate {
        name: String,
        #[arg(long, default_value = "argocd", env = "FLOTILLA_APP_NAMESPACE")]
        app_namespace: String,
    },
    /// Delete the application; its resources too unless --cascade=false.
    Delete {
        name: String,
        #[arg(long, default_value = "argocd", env = "FLOTILLA_APP_NAMESPACE")]
        app_namespace: String,
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        cascade: bool,
        /// foreground (resources first, the default) or background.
        #[arg(long, default_value = "foreground")]
        propagation_policy: String,
        /// Wait until the Application is gone.
        #[arg(long)]
        wait: bool,
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
}

/// The control-plane namespace as this CLI knows it (`--app-namespace`'s default): apps
/// elsewhere are listed as `NAMESPACE/NAME`.
fn control_namespace() -> String {
    std::env::var("FLOTILLA_APP_NAMESPACE")
        .ok()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "argocd".into())
}

/// `NAMESPACE/NAME` as (namespace, name); a plain `NAME` is in `namespace` (Argo CD's
/// `ParseFromQualifiedName`).
fn qualified(name: &str, namespace: &str) -> (String, String) {
    match name.split_once('/') {
        Some((ns, n)) if !ns.is_empty() => (ns.to_string(), n.to_string()),
        _ => (namespace.to_string(), name.to_string()),
    }
}

/// List rows for a table: an app outside `control` is named `NAMESPACE/NAME`, so it can be
/// told apart and passed back to the other commands as it is.
fn qualify_names(apps: &mut [Value], control: &str) {
    for a in apps {
        let ns = field(a, "/namespace").to_string();
        if !ns.is_empty() && ns != control {
            let name = format!("{ns}/{}", field(a, "/name"));
            a["name"] = Value::String(name);
        }
    }
}

impl AppCommand {
    /// The command with a `NAMESPACE/NAME` argument split into `--app-namespace` and name.
    fn with_qualified_name(mut self) -> Self {
        match &mut self {
            AppCommand::List { .. } => {}
            AppCommand::Get {
                name,
                app_namespace,
            }
            | AppCommand::Resources {
                name,
                app_namespace,
            }
            | AppCommand::Diff {
                name,
                app_namespace,
                ..
            }
            | AppCommand::Sync {
                name,
                app_namespace,
                ..
            }
            | AppCommand::Refresh {
                name,
                app_namespace,
                ..
            }
            | AppCommand::Wait {
                name,
                app_namespace,
                ..
            }
            | AppCommand::History {
                name,
                app_namespace,
            }
            | AppCommand::Rollback {
                name,
                app_namespace,
                ..
            }
            | AppCommand::Terminate {
                name,
                app_namespace,
            }
            | AppCommand::Delete {
                name,
                app_namespace,
                ..
            } => (*app_namespace, *name) = qualified(name, app_namespace),
        }
        self
    }
}

/// `GROUP:KIND:NAME` as an operation's resource reference.
fn resource_ref(s: &str) -> Result<Value, ApiError> {
    match s.splitn(3, ':').collect::<Vec<_>>()[..] {
        [g, k, n] if !k.is_empty() && !n.is_empty() => {
            Ok(json!({"group": g, "kind": k, "name": n}))
        }
        _ => Err(ApiError::Config(format!(
            "--resource {s:?} is not GROUP:KIND:NAME"
        ))),
    }
}

pub fn field<'a>(app: &'a Value, pointer: &str) -> &'a str {
    app.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Poll `path` every second until `done` holds; the last state names a timeout.
async fn wait_for(
    api: &Api,
    path: &str,
    timeout: u64,
    done: impl Fn(&Value) -> bool,
) -> Result<Value, ApiError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(timeout);
    loop {
        // An API server restarting or a 5xx is not the answer: keep asking until the deadline.
        let app = match api.get(path).await {
            Ok(app) => app,
            Err(e @ (ApiError::Unreachable(_) | ApiError::Refused(500..=599, _)))
                if std::time::Instant::now() < deadline =>
            {
                eprintln!("flotilla: {e}; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
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

/// Whether `app` shows the operation the server marked `request` finished: the owning
/// controller has taken it (its id is in `status.operationState.operation.info`), cleared the
/// request and reached a final phase. Ids only, so neither clock skew nor a lagging cache can
/// pass off an earlier operation as this one.
fn operation_done(app: &Value, request: &str) -> bool {
    let marked =
        |op: &Value| {
            op["info"].as_array().into_iter().flatten().any(|i| {
                i["name"] == "flotilla.dev/request" && i["value"].as_str() == Some(request)
            })
        };
    marked(&app["status"]["operationState"]["operation"])
        && !app.get("operation").is_some_and(marked)
        && matches!(
            field(app, "/status/operationState/phase"),
            "Succeeded" | "Failed" | "Error"
        )
}

/// Wait for the operation the server marked `request` to finish; Ok only if it succeeded.
async fn wait_operation(
    api: &Api,
    path: &str,
    request: &str,
    timeout: u64,
) -> Result<(), ApiError> {
    if request.is_empty() {
        return Err(ApiError::Failed(
            "the server did not say which operation it started (an older server?)".into(),
        ));
    }
    let app = wait_for(api, path, timeout, |a| operation_done(a, request)).await?;
    let phase = field(&app, "/status/operationState/phase");
    let message = field(&app, "/status/operationState/message");
    println!("{phase}: {message}");
    if phase == "Succeeded" {
        Ok(())
    } else {
        Err(ApiError::Failed(format!(
            "the operation ended {phase}: {message}"
        )))
    }
}

/// What `app diff` found.
pub enum DiffOutcome {
    Same,
    Differs,
}

pub async fn run(
    api: &Api,
    cmd: AppCommand,
    format: Format,
) -> Result<Option<DiffOutcome>, ApiError> {
    let base = |ns: &str, name: &str| format!("/api/v1/applications/{ns}/{name}");
    match cmd.with_qualified_name() {
        AppCommand::List {
            project,
            cluster,
            namespace,
            selector,
            sync,
            health,
            search,
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
            let mut apps = api.list_apps(&filters).await?;
            if matches!(format, Format::Table | Format::Wide) {
                qualify_names(&mut apps, &control_namespace());
            }
            print_apps(&apps, format);
        }
        AppCommand::Get {
            name,
            app_namespace,
        } => {
            let app = api.get(&base(&app_namespace, &name)).await?;
            print_value(&app, format);
        }
        AppCommand::Resources {
            name,
            app_namespace,
        } => {
            let r = api
                .get(&format!("{}/resources", base(&app_namespace, &name)))
                .await?;
            match format {
                Format::Json | Format::Yaml => print_value(&r, format),
                _ => println!("{}", render_resources(&r, format == Format::Wide)),
            }
        }
        AppCommand::Diff {
            name,
            app_namespace,
            local,
        } => {
            let r = match local {
                None => {
                    api.get(&format!("{}/resources", base(&app_namespace, &name)))
                        .await?
                }
                Some(dir) => {
                    let app = api.get(&base(&app_namespace, &name)).await?;
                    let manifests = crate::local::render(&app, &dir)?;
                    api.post(
                        &format!("{}/diff", base(&app_namespace, &name)),
                        &json!({"manifests": manifests}),
                    )
                    .await?
                }
            };
            let mut differs = false;
            for res in r["resources"].as_array().into_iter().flatten() {
                if res["status"] == "Synced" {
                    continue;
                }
                differs = true;
                let id = format!(
                    "{}/{}{}{}",
                    if res["group"].as_str().unwrap_or_default().is_empty() {
                        "core".to_string()
                    } else {
                        res["group"].as_str().unwrap_or_default().to_string()
                    },
                    res["kind"].as_str().unwrap_or_default(),
                    res["namespace"]
                        .as_str()
                        .map(|n| format!(" {n}/"))
                        .unwrap_or_else(|| " ".into()),
                    res["name"].as_str().unwrap_or_default()
                );
                if matches!(format, Format::Json | Format::Yaml) {
                    continue;
                }
                println!(
                    "===== {id} ({}) =====",
                    res["status"].as_str().unwrap_or_default()
                );
                match res["diff"].as_str() {
                    Some(d) => println!("{}", d.trim_end()),
                    None if res["requiresPruning"] == true => {
                        println!("(in the cluster, not in the source: would be pruned)")
                    }
                    None => println!(
                        "{}",
                        res["differences"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join("\n")
                    ),
                }
            }
            if matches!(format, Format::Json | Format::Yaml) {
                print_value(&r, format);
            }
            for note in r["notCompared"].as_array().into_iter().flatten() {
                eprintln!("note: {}", note.as_str().unwrap_or_default());
            }
            return Ok(Some(if differs {
                DiffOutcome::Differs
            } else {
                DiffOutcome::Same
            }));
        }
        AppCommand::Sync {
            name,
            app_namespace,
            revision,
            revisions,
            source_positions,
            prune,
            dry_run,
            resources,
            sync_options,
            wait,
            timeout,
        } => {
            let refs = resources
                .iter()
                .map(|r| resource_ref(r))
                .collect::<Result<Vec<_>, _>>()?;
            let started = api
                .post(
                    &format!("{}/sync", base(&app_namespace, &name)),
                    &json!({"revision": revision, "prune": prune, "dryRun": dry_run,
                    "revisions": (!revisions.is_empty()).then_some(&revisions),
                    "sourcePositions": (!source_positions.is_empty()).then_some(&source_positions),
                    "resources": (!refs.is_empty()).then_some(refs),
                    "syncOptions": (!sync_options.is_empty()).then_some(sync_options)}),
                )
                .await?;
            println!("sync of {app_namespace}/{name} requested");
            if wait {
                let request = field(&started, "/request").to_string();
                wait_operation(api, &base(&app_namespace, &name), &request, timeout).await?;
            }
        }
        AppCommand::Refresh {
            name,
            app_namespace,
            hard,
        } => {
            let q = if hard { "?hard=true" } else { "" };
            api.post(
                &format!("{}/refresh{q}", base(&app_namespace, &name)),
                &Value::Null,
            )
            .await?;
            println!("refresh of {app_namespace}/{name} requested");
        }
        AppCommand::Wait {
            name,
            app_namespace,
            sync,
            health,
            operation,
            timeout,
        } => {
            let all = !(sync || health || operation);
            let app = wait_for(api, &base(&app_namespace, &name), timeout, |a| {
                ((!sync && !all) || field(a, "/status/sync/status") == "Synced")
                    && ((!health && !all) || field(a, "/status/health/status") == "Healthy")
                    && ((!operation && !all)
                        || (a.get("operation").is_none_or(Value::is_null)
                            && field(a, "/status/operationState/phase") != "Running"))
            })
            .await?;
            println!(
                "{app_namespace}/{name}: {} {}",
                field(&app, "/status/sync/status"),
                field(&app, "/status/health/status")
            );
        }
        AppCommand::History {
            name,
            app_namespace,
        } => {
            let h = api
                .get(&format!("{}/history", base(&app_namespace, &name)))
                .await?;
            match format {
                Format::Json | Format::Yaml => print_value(&h, format),
                _ => println!("{}", render_history(&h)),
            }
        }
        AppCommand::Rollback {
            name,
            id,
            app_namespace,
            prune,
            dry_run,
            wait,
            timeout,
        } => {
            let started = api
                .post(
                    &format!("{}/rollback", base(&app_namespace, &name)),
                    &json!({"id": id, "prune": prune, "dryRun": dry_run}),
                )
                .await?;
            println!("rollback of {app_namespace}/{name} to {id} requested");
            if wait {
                let request = field(&started, "/request").to_string();
                wait_operation(api, &base(&app_namespace, &name), &request, timeout).await?;
            }
        }
        AppCommand::Terminate {
            name,
            app_namespace,
        } => {
            api.post(
                &format!("{}/terminate", base(&app_namespace, &name)),
                &Value::Null,
            )
            .await?;
            println!("termination of {app_namespace}/{name}'s operation requested");
        }
        AppCommand::Delete {
            name,
            app_namespace,
            cascade,
            propagation_policy,
            wait,
            timeout,
        } => {
            api.delete(&format!(
                "{}?cascade={cascade}&propagationPolicy={propagation_policy}",
                base(&app_namespace, &name)
            ))
            .await?;
            println!("{app_namespace}/{name} deleted (cascade {cascade})");
            if wait {
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(timeout);
                loop {
                    match api.get(&base(&app_namespace, &name)).await {
                        Err(ApiError::NotFound(_)) => break,
                        Err(e) => return Err(e),
                        Ok(_) if std::time::Instant::now() > deadline => {
                            return Err(ApiError::Timeout(format!(
                                "{app_namespace}/{name} still exists after {timeout}s"
                            )));
                        }
                        Ok(_) => tokio::time::sleep(std::time::Duration::from_secs(1)).await,
                    }
                }
                println!("{app_namespace}/{name} is gone");
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operation_is_done_only_when_the_owner_finished_this_one() {
        let info = |id: &str| json!([{"name": "flotilla.dev/request", "value": id}]);
        let app = |pending: Option<&str>, state_id: &str, phase: &str| {
            json!({"operation": pending.map(|id| json!({"sync": {}, "info": info(id)})),
                   "status": {"operationState": {"phase": phase,
                       "operation": {"sync": {}, "info": info(state_id)}}}})
        };
        // An earlier operation's result (ours pending, or not yet seen by a lagging cache).
        assert!(!operation_done(
            &app(Some("ours"), "earlier", "Succeeded"),
            "ours"
        ));
        assert!(!operation_done(&app(None, "earlier", "Succeeded"), "ours"));
        // Ours taken, still running; then finished.
        assert!(!operation_done(&app(None, "ours", "Running"), "ours"));
        assert!(operation_done(&app(None, "ours", "Succeeded"), "ours"));
        assert!(operation_done(&app(None, "ours", "Failed"), "ours"));
    }

    #[test]
    fn apps_are_named_namespace_slash_name_outside_the_control_plane() {
        assert_eq!(
            qualified("web", "argocd"),
            ("argocd".to_string(), "web".to_string())
        );
        assert_eq!(
            qualified("team-a/web", "argocd"),
            ("team-a".to_string(), "web".to_string())
        );
        let cmd = AppCommand::Get {
            name: "team-a/web".into(),
            app_namespace: "argocd".into(),
        }
        .with_qualified_name();
        assert!(
            matches!(&cmd, AppCommand::Get { name, app_namespace } if name == "web" && app_namespace == "team-a"),
            "{cmd:?}"
        );
        let mut apps = vec![
            json!({"namespace": "argocd", "name": "web"}),
            json!({"namespace": "team-a", "name": "api"}),
        ];
        qualify_names(&mut apps, "argocd");
        assert_eq!(apps[0]["name"], "web");
        assert_eq!(apps[1]["name"], "team-a/api");
    }

    #[test]
    fn resource_references_need_kind_and_name() {
        assert_eq!(
            resource_ref(":ConfigMap:x").expect("ref"),
            json!({"group": "", "kind": "ConfigMap", "name": "x"})
        );
        assert!(resource_ref("ConfigMap:x").is_err());
        assert!(resource_ref("apps:Deployment:").is_err());
    }
}

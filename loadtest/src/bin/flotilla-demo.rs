//! `flotilla-demo`: a demo fleet on one machine, narrated. kubesim (a control plane and a few
//! target clusters), a Git repository made from `examples/repo` behind `git daemon`, the real
//! repo-server and controller, the example Applications synced; then a change committed and
//! rolled out, and a file deleted and pruned, each timed.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use flotilla_loadtest::fleet::{Fleet, FleetConfig};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};

/// Run a demo Flotilla fleet on this machine (kubesim clusters, a local Git repository, the
/// repo-server and the controller) and show it deploying, updating and pruning applications.
#[derive(Debug, Parser)]
#[command(name = "flotilla-demo", version)]
struct Args {
    /// Target clusters to simulate (besides the control plane).
    #[arg(long, default_value_t = 3)]
    clusters: usize,
    /// The examples folder (with repo/ and applications/).
    #[arg(long)]
    examples: Option<PathBuf>,
    /// Stop at the end instead of waiting for Enter.
    #[arg(long)]
    exit: bool,
}

const APPS: [&str; 4] = ["my-app", "guestbook", "team-a-web", "team-a-secrets"];

fn examples_dir(arg: Option<PathBuf>) -> Result<PathBuf> {
    let candidates = arg.into_iter().chain([
        PathBuf::from("examples"),
        flotilla_loadtest::fleet::process::workspace_dir().join("examples"),
    ]);
    for c in candidates {
        if c.join("repo").is_dir() && c.join("applications").is_dir() {
            return Ok(c);
        }
    }
    bail!("examples/ not found; run from the repository root or pass --examples")
}

fn app_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Application"),
        "applications",
    )
}

async fn apps(client: &Client) -> Result<Vec<Value>> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "argocd", &app_resource());
    let list = api.list(&Default::default()).await?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|o| serde_json::to_value(o).ok())
        .collect())
}

fn field<'a>(app: &'a Value, pointer: &str) -> &'a str {
    app.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn print_table(apps: &[Value]) {
    println!(
        "   {:<16} {:<10} {:<12} {:<9} MESSAGE",
        "APPLICATION", "SYNC", "HEALTH", "REVISION"
    );
    for a in apps {
        let message = a
            .pointer("/status/conditions/0")
            .map(|c| format!("{}: {}", field(c, "/type"), field(c, "/message")))
            .unwrap_or_default();
        let rev = field(a, "/status/sync/revision");
        println!(
            "   {:<16} {:<10} {:<12} {:<9} {}",
            field(a, "/metadata/name"),
            field(a, "/status/sync/status"),
            field(a, "/status/health/status"),
            &rev[..rev.len().min(7)],
            message.chars().take(110).collect::<String>()
        );
    }
}

fn converged(apps: &[Value]) -> bool {
    APPS.iter().all(|name| {
        apps.iter().any(|a| {
            field(a, "/metadata/name") == *name
                && if *name == "team-a-secrets" {
                    field(a, "/status/conditions/0/type") == "InvalidSpecError"
                } else {
                    field(a, "/status/sync/status") == "Synced"
                        && field(a, "/status/health/status") == "Healthy"
                }
        })
    })
}

/// Ask for a refresh, as `argocd app get --refresh` or a Git webhook does.
async fn refresh(client: &Client, name: &str) -> Result<()> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "argocd", &app_resource());
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(
            json!({"metadata": {"annotations": {"argocd.argoproj.io/refresh": "normal"}}}),
        ),
    )
    .await?;
    Ok(())
}

async fn poll<F, Fut>(timeout: Duration, mut f: F) -> Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f().await? {
            return Ok(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("timed out after {timeout:?}")
}

async fn live(
    client: &Client,
    kind: (&str, &str, &str),
    ns: &str,
    name: &str,
) -> Result<Option<Value>> {
    let (group, version, kind) = kind;
    let (ar, _) =
        kube::discovery::pinned_kind(client, &GroupVersionKind::gvk(group, version, kind)).await?;
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
    Ok(api
        .get_opt(name)
        .await?
        .and_then(|o| serde_json::to_value(o).ok()))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let examples = examples_dir(args.examples)?;
    let t0 = Instant::now();
    println!("Flotilla demo: a GitOps fleet on this machine.\n");
    println!(
        "==> Starting kubesim: a simulated control-plane cluster and {} target clusters,",
        args.clusters
    );
    println!(
        "    a Git repository made from {}/repo (served by git daemon),",
        examples.display()
    );
    println!("    flotilla-repo-server (renders manifests from Git) and flotilla-controller.");
    let mut fleet = Fleet::start(FleetConfig {
        clusters: args.clusters,
        seed: Some(examples.join("repo")),
        ready_delay: Duration::from_millis(500),
        workers: 8,
        ..Default::default()
    })
    .await
    .context("starting the demo fleet")?;
    println!(
        "    ready in {:.1}s. Git: {}",
        t0.elapsed().as_secs_f64(),
        fleet.git.url()
    );
    println!("    kubeconfig: {}", fleet.kubeconfig.display());
    println!("    logs: {}/*.log\n", fleet.dir.path().display());
    let control = fleet.control().clone();

    println!("==> Applying the AppProjects (default; team-a, restricted) and four Applications:");
    println!(
        "    my-app      the Argo CD example verbatim: Kustomize overlay k8s/overlays/dev -> in-cluster"
    );
    println!("    guestbook   a plain directory of manifests -> cluster-001");
    println!(
        "    team-a-web  within team-a's limits; team-a-secrets asks for a Secret, which team-a may not use"
    );
    for f in [
        "projects.yaml",
        "my-app.yaml",
        "guestbook.yaml",
        "team-a.yaml",
    ] {
        let yaml = std::fs::read_to_string(examples.join("applications").join(f))?;
        fleet
            .apply(&yaml.replace("REPO_URL", &fleet.git.url()))
            .await?;
    }
    let t_apply = Instant::now();
    let took = poll(Duration::from_secs(120), || async {
        Ok(converged(&apps(&control).await?))
    })
    .await
    .context("waiting for the applications to converge")?;
    let synced_in = t_apply.elapsed();
    let synced_at = t0.elapsed();
    println!("\n==> Converged in {:.2}s:", took.as_secs_f64());
    print_table(&apps(&control).await?);
    println!(
        "    team-a-secrets was refused by its project with a condition, and nothing of it was applied.\n"
    );

    println!("==> Starting flotilla-server (the API) and asking it through the flotilla CLI:");
    let (_server, api) = fleet
        .start_server()
        .await
        .context("starting the API server")?;
    let url = format!("http://{api}");
    let token = flotilla_loadtest::fleet::ADMIN_TOKEN;
    let cli = flotilla_loadtest::fleet::process::binary("flotilla")?;
    let cli_config = fleet.dir.path().join("flotilla-cli.json");
    let run_cli = |args: &[&str]| -> Result<String> {
        let out = std::process::Command::new(&cli)
            .args(args)
            .env("FLOTILLA_CONFIG", &cli_config)
            .output()
            .context("running flotilla")?;
        Ok(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    };
    println!("    The web UI: {url}/   (user: admin, password: {token})");
    run_cli(&["login", &url, "--token", token])?;
    println!("    $ flotilla login {url} --token {token}");
    println!("    $ flotilla app list");
    for line in run_cli(&["app", "list"])?.lines() {
        println!("    {line}");
    }
    println!();

    let c1 = fleet.cluster("cluster-001").await?;
    println!("==> Changing Git: guestbook-ui goes to 3 replicas and the greeting changes.");
    let deploy = std::fs::read_to_string(fleet.git.work.join("guestbook/deployment.yaml"))?;
    let t_commit = Instant::now();
    let commit = fleet.git.commit_files(
        &[
            ("guestbook/deployment.yaml", &deploy.replace("replicas: 2", "replicas: 3")),
            ("guestbook/config.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: guestbook-config\ndata:\n  greeting: \"Hello again from Git\"\n"),
        ],
        "guestbook: 3 replicas, new greeting",
    )?;
    println!(
        "    committed {} and asked for a refresh (what a Git webhook does;",
        &commit[..7]
    );
    println!("    without one, the periodic refresh picks it up within 180s).");
    refresh(&control, "guestbook").await?;
    poll(Duration::from_secs(60), || async {
        Ok(live(
            &c1,
            ("apps", "v1", "Deployment"),
            "guestbook",
            "guestbook-ui",
        )
        .await?
        .is_some_and(|d| d["spec"]["replicas"] == 3))
    })
    .await?;
    let rollout = t_commit.elapsed();
    println!(
        "    live in cluster-001 {:.0} ms after the commit: guestbook-ui has 3 replicas.\n",
        rollout.as_secs_f64() * 1000.0
    );

    println!("==> Deleting guestbook/config.yaml from Git.");
    fleet.git.remove("guestbook/config.yaml")?;
    let t_delete = Instant::now();
    let commit = fleet.git.commit("guestbook: drop the ConfigMap")?;
    refresh(&control, "guestbook").await?;
    poll(Duration::from_secs(60), || async {
        Ok(live(
            &c1,
            ("", "v1", "ConfigMap"),
            "guestbook",
            "guestbook-config",
        )
        .await?
        .is_none())
    })
    .await?;
    let prune = t_delete.elapsed();
    println!(
        "    committed {}; ConfigMap guestbook-config pruned from cluster-001 {:.0} ms later.\n",
        &commit[..7],
        prune.as_secs_f64() * 1000.0
    );
    poll(Duration::from_secs(60), || async {
        Ok(converged(&apps(&control).await?))
    })
    .await?;
    print_table(&apps(&control).await?);

    let handover = match side_by_side(&mut fleet, &control, &c1, &run_cli).await {
        Ok(d) => d,
        Err(e) => {
            fleet.dump_logs();
            return Err(e);
        }
    };

    println!("\n==> Summary");
    println!(
        "    fleet start to all Applications converged: {:.2}s ({:.2}s after applying them)",
        synced_at.as_secs_f64(),
        synced_in.as_secs_f64()
    );
    println!(
        "    Git commit to change live:                 {:.0} ms",
        rollout.as_secs_f64() * 1000.0
    );
    println!(
        "    Git delete to object pruned:               {:.0} ms",
        prune.as_secs_f64() * 1000.0
    );
    println!(
        "    moved to Flotilla to commit live:          {:.0} ms",
        handover.as_secs_f64() * 1000.0
    );
    println!(
        "    demo wall time:                            {:.2}s",
        t0.elapsed().as_secs_f64()
    );
    if !args.exit {
        println!("\nThe fleet keeps running. Open the web UI at {url}/ and sign in as admin with");
        println!("the password {token} (applications, their trees and diffs, Sync, the fleet).");
        println!("The API server is the same address; with the CLI:");
        println!(
            "    export FLOTILLA_CONFIG={}   # or: flotilla login {url} --token {token}",
            cli_config.display()
        );
        println!("    flotilla app list -o wide");
        println!("    flotilla app diff guestbook        # exit 0: no differences, 1: differences");
        println!("    flotilla app sync guestbook --wait");
        println!("    flotilla app history guestbook");
        println!("    flotilla fleet status");
        println!("  (the binary is {}; add it to PATH)", cli.display());
        println!("Or with kubectl:");
        println!(
            "    kubectl --kubeconfig {} -n argocd get applications",
            fleet.kubeconfig.display()
        );
        println!(
            "    kubectl --kubeconfig {} --context cluster-001 -n guestbook get deploy,svc",
            fleet.kubeconfig.display()
        );
        println!("Press Enter to stop.");
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    }
    Ok(())
}

/// The guestbook Deployment's replicas in cluster-001, and its UID.
async fn guestbook_ui(c1: &Client) -> Result<(i64, String)> {
    let d = live(
        c1,
        ("apps", "v1", "Deployment"),
        "guestbook",
        "guestbook-ui",
    )
    .await?
    .context("guestbook-ui is gone")?;
    Ok((
        d["spec"]["replicas"].as_i64().unwrap_or_default(),
        d["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    ))
}

/// Side by side with Argo CD (MIGRATION.md): the controller restarted in side-by-side mode
/// leaves every app to "Argo CD" until `flotilla admin move` hands one over, and lets it go
/// again on the way back. Returns the time from the move to the pending commit being live.
async fn side_by_side(
    fleet: &mut Fleet,
    control: &Client,
    c1: &Client,
    run_cli: &dyn Fn(&[&str]) -> Result<String>,
) -> Result<Duration> {
    println!("\n==> Side by side with Argo CD (MIGRATION.md).");
    println!("    Restarting the controller with --argocd-side-by-side");
    println!(
        "    --application-selector flotilla.dev/managed-by=flotilla: every Application is now"
    );
    println!(
        "    Argo CD's (no Argo CD runs here, so nothing reconciles them) until it is handed over."
    );
    for id in fleet.controller_ids() {
        fleet.stop_controller(&id)?;
    }
    fleet.set_controller_args(vec![
        "--argocd-side-by-side".into(),
        "--application-selector".into(),
        "flotilla.dev/managed-by=flotilla".into(),
        // Argo CD's queued work can outlive a move by a little; none is queued here.
        "--argocd-handover-grace-seconds".into(),
        "0".into(),
    ]);
    fleet.start_controller().await?;
    let (replicas, uid) = guestbook_ui(c1).await?;
    let deploy = std::fs::read_to_string(fleet.git.work.join("guestbook/deployment.yaml"))?;
    let current = format!("replicas: {replicas}");
    if !deploy.contains(&current) {
        bail!("guestbook/deployment.yaml does not say {current:?}");
    }
    let bump = |n: i64| deploy.replace(&current, &format!("replicas: {n}"));
    let commit = fleet.git.commit_files(
        &[("guestbook/deployment.yaml", &bump(4))],
        "guestbook: 4 replicas",
    )?;
    refresh(control, "guestbook").await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (still, _) = guestbook_ui(c1).await?;
    println!(
        "    committed {} (4 replicas) and asked for a refresh: 3 s later guestbook-ui has {still}",
        &commit[..7]
    );
    println!("    replicas (it was {replicas}): the app is Argo CD's, Flotilla did not touch it.");
    if still != replicas {
        bail!("the side-by-side controller synced an app it was not given");
    }
    let kubeconfig = fleet.kubeconfig.display().to_string();
    let context = fleet.sim.control_plane_name();
    let admin = |to: &str| -> Result<String> {
        run_cli(&[
            "admin",
            "--kubeconfig",
            &kubeconfig,
            "--context",
            &context,
            "move",
            "guestbook",
            "--to",
            to,
        ])
    };
    println!("    $ flotilla admin move guestbook --to flotilla");
    let t_move = Instant::now();
    for line in admin("flotilla")?.lines() {
        println!("    {line}");
    }
    poll(Duration::from_secs(60), || async {
        Ok(guestbook_ui(c1).await?.0 == 4)
    })
    .await
    .context("waiting for Flotilla to take guestbook over")?;
    let handover = t_move.elapsed();
    let (_, uid_after) = guestbook_ui(c1).await?;
    println!(
        "    Flotilla took it over and synced the pending commit {:.0} ms after the move:",
        handover.as_secs_f64() * 1000.0
    );
    println!(
        "    guestbook-ui has 4 replicas, same object (UID {}).",
        if uid_after == uid {
            "unchanged"
        } else {
            "CHANGED"
        }
    );
    println!("    $ flotilla admin move guestbook --to argocd");
    for line in admin("argocd")?.lines() {
        println!("    {line}");
    }
    let commit = fleet.git.commit_files(
        &[("guestbook/deployment.yaml", &bump(5))],
        "guestbook: 5 replicas",
    )?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    refresh(control, "guestbook").await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (back, uid_back) = guestbook_ui(c1).await?;
    println!(
        "    committed {} (5 replicas): 3 s later guestbook-ui still has {back}; the app is Argo CD's",
        &commit[..7]
    );
    println!(
        "    again, and its objects never changed identity (UID {}).",
        if uid_back == uid {
            "unchanged"
        } else {
            "CHANGED"
        }
    );
    if back != 4 || uid_back != uid || uid_after != uid {
        bail!(
            "the hand-over did not behave: replicas {back}, UIDs {uid} → {uid_after} → {uid_back}"
        );
    }
    Ok(handover)
}

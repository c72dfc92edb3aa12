//! End to end through real processes: the API server routes resource views and diffs to the
//! controller replica that owns each app's cluster, streams changes, and the CLI drives diff
//! (from Git and from a local directory), sync, history, rollback, terminate and delete, and
//! shows clusters, repositories and the fleet without credentials.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use flotilla_controller::types::Application;
use flotilla_loadtest::fleet::{ADMIN_TOKEN, Fleet, FleetConfig, http_get_with};
use flotilla_tests::e2e::*;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

const BEHAVIOR: &str = "kubesim.flotilla.dev/behavior";

use flotilla_tests::e2e::config_map as cm;

async fn get(api: &str, path: &str) -> Result<(u16, Value)> {
    let (code, body) = http_get_with(
        api,
        path,
        &[("Authorization", &format!("Bearer {ADMIN_TOKEN}"))],
    )
    .await?;
    Ok((code, serde_json::from_str(&body).unwrap_or(Value::Null)))
}

/// Run the CLI against `api` as the admin: (exit code, stdout + stderr).
fn cli(api: &str, args: &[&str]) -> Result<(i32, String)> {
    let out = std::process::Command::new(flotilla_loadtest::fleet::process::binary("flotilla")?)
        .args(args)
        .env("FLOTILLA_SERVER", format!("http://{api}"))
        .env("FLOTILLA_AUTH_TOKEN", ADMIN_TOKEN)
        .env("FLOTILLA_CONFIG", "/nonexistent/flotilla.json")
        .output()?;
    Ok((
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_answers_diffs_and_the_cli_syncs_rolls_back_terminates_and_deletes() -> Result<()>
{
    // On Argo CD's own CRD (no /status subresource), as MIGRATION.md has it side by side.
    let fleet = Fleet::start(FleetConfig {
        clusters: 2,
        controllers: 2,
        controller_args: vec!["--sync-wave-delay-ms".into(), "100".into()],
        argo_cd_crds: true,
        ..Default::default()
    })
    .await?;
    fleet.git.commit_files(
        &[
            ("web/cm.yaml", &cm("settings", "v1")),
            ("other/cm.yaml", &cm("other", "o1")),
            (
                "stuck/web.yaml",
                &format!(
                    "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  annotations: {{{BEHAVIOR}: progressing, argocd.argoproj.io/sync-wave: '0'}}\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {{app: web}}\n  template:\n    metadata:\n      labels: {{app: web}}\n    spec:\n      containers:\n        - name: web\n          image: nginx:1.27\n"
                ),
            ),
            (
                "stuck/after.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: after\n  annotations: {argocd.argoproj.io/sync-wave: '1'}\ndata:\n  k: a\n",
            ),
        ],
        "v1",
    )?;
    fleet
        .apply(&manual_app(&fleet, "web", "web", "cluster-001", &[]))
        .await?;
    fleet
        .apply(&manual_app(&fleet, "other", "other", "cluster-002", &[]))
        .await?;
    let (server, api) = fleet.start_server().await?;
    wait_app(&fleet, "web", Duration::from_secs(60), "compared", |a| {
        codes(a).0 == "OutOfSync"
    })
    .await?;

    // Before the first sync: the diff is the whole object (missing live), exit 1.
    let (code, out) = cli(&api, &["app", "diff", "web"])?;
    ensure!(
        code == 1 && out.contains("ConfigMap web/settings") && out.contains("+  k: v1"),
        "{code}: {out}"
    );
    for name in ["web", "other"] {
        let (code, out) = cli(&api, &["app", "sync", name, "--wait", "--timeout", "60"])?;
        ensure!(
            code == 0 && out.contains("Succeeded"),
            "{name}: {code}: {out}"
        );
    }
    // Each app's resources come from the replica that owns its cluster (two replicas, two
    // clusters: whichever owns which, both answer through the one API).
    for (name, cluster) in [("web", "cluster-001"), ("other", "cluster-002")] {
        let (code, r) = get(&api, &format!("/api/v1/applications/{NS}/{name}/resources")).await?;
        ensure!(
            code == 200 && r["resources"][0]["status"] == "Synced",
            "{name} on {cluster}: {code} {r}"
        );
    }
    let (code, out) = cli(&api, &["app", "diff", "web"])?;
    ensure!(code == 0 && out.trim().is_empty(), "in sync: {code}: {out}");

    // A local directory with a change: diffed against live without touching Git, exit 1.
    let local = fleet.dir.path().join("local-web");
    std::fs::create_dir_all(&local)?;
    std::fs::write(local.join("cm.yaml"), cm("settings", "v3"))?;
    let (code, out) = cli(
        &api,
        &[
            "app",
            "diff",
            "web",
            "--local",
            &local.display().to_string(),
        ],
    )?;
    ensure!(
        code == 1 && out.contains("-  k: v1") && out.contains("+  k: v3"),
        "{code}: {out}"
    );
    std::fs::write(local.join("cm.yaml"), cm("settings", "v1"))?;
    let (code, out) = cli(
        &api,
        &[
            "app",
            "diff",
            "web",
            "--local",
            &local.display().to_string(),
        ],
    )?;
    ensure!(code == 0, "the local copy matches live: {code}: {out}");
    ensure!(
        live_value(&fleet, "cluster-001", "web", "settings")
            .await?
            .as_deref()
            == Some("v1"),
        "a local diff never applies"
    );
    let (code, out) = cli(&api, &["app", "diff", "web", "--local", "/nonexistent"])?;
    ensure!(
        code == 2 && out.contains("not a directory"),
        "{code}: {out}"
    );

    // Streaming: a change of the app reaches a subscriber at once.
    let mut stream = tokio::net::TcpStream::connect(&api).await?;
    stream
        .write_all(
            format!(
                "GET /api/v1/stream/applications?search=web HTTP/1.1\r\nHost: {api}\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nAccept: text/event-stream\r\n\r\n"
            )
            .as_bytes(),
        )
        .await?;
    let mut lines = tokio::io::BufReader::new(stream).lines();
    let first = lines.next_line().await?.unwrap_or_default();
    ensure!(first.contains("200"), "{first}");
    // Git moves on to v2; a refresh makes the app OutOfSync, seen on the stream.
    fleet
        .git
        .commit_files(&[("web/cm.yaml", &cm("settings", "v2"))], "v2")?;
    let apps: Api<Application> = Api::namespaced(fleet.control().clone(), NS);
    // Timed from before the write is sent: the write's own round trip counts.
    let changed = Instant::now();
    apps.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"metadata": {"labels": {"tier": "front"}}})),
    )
    .await?;
    let seen = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(line) = lines.next_line().await? {
            if line.starts_with("data:") && line.contains("\"tier\":\"front\"") {
                return Ok::<_, anyhow::Error>(changed.elapsed());
            }
        }
        anyhow::bail!("the stream ended")
    })
    .await
    .context("no streamed change within 10 s")??;
    println!("stream latency: {seen:?}");
    ensure!(seen < Duration::from_secs(1), "streamed after {seen:?}");
    let (_, metrics) = flotilla_loadtest::fleet::http_get(&api, "/metrics").await?;
    ensure!(
        flotilla_loadtest::fleet::metric_value(&metrics, "flotilla_server_streams_open", &[])
            == 1.0,
        "the open stream is counted"
    );
    refresh(&fleet, "web").await?;
    wait_app(&fleet, "web", Duration::from_secs(30), "OutOfSync", |a| {
        codes(a).0 == "OutOfSync"
    })
    .await?;
    let (code, out) = cli(&api, &["app", "diff", "web"])?;
    ensure!(
        code == 1 && out.contains("-  k: v1") && out.contains("+  k: v2"),
        "{code}: {out}"
    );
    let (code, out) = cli(&api, &["app", "sync", "web", "--wait", "--timeout", "60"])?;
    ensure!(code == 0, "{out}");
    ensure!(
        live_value(&fleet, "cluster-001", "web", "settings")
            .await?
            .as_deref()
            == Some("v2")
    );

    // History and rollback to the first deployment.
    let (code, out) = cli(&api, &["app", "history", "web"])?;
    ensure!(
        code == 0 && out.lines().count() == 3,
        "two deployments: {out}"
    );
    let (code, h) = get(&api, &format!("/api/v1/applications/{NS}/web/history")).await?;
    let first_id = h["history"][0]["id"].as_i64().context("history id")?;
    ensure!(code == 200, "{h}");
    let (code, out) = cli(
        &api,
        &[
            "app",
            "rollback",
            "web",
            &first_id.to_string(),
            "--wait",
            "--timeout",
            "60",
        ],
    )?;
    ensure!(code == 0 && out.contains("Succeeded"), "{code}: {out}");
    ensure!(
        live_value(&fleet, "cluster-001", "web", "settings")
            .await?
            .as_deref()
            == Some("v1"),
        "rolled back"
    );
    let (code, out) = cli(&api, &["app", "rollback", "web", "99"])?;
    ensure!(code == 1 && out.contains("99"), "{code}: {out}");
    let (code, ev) = get(&api, &format!("/api/v1/applications/{NS}/web/events")).await?;
    let messages: Vec<&str> = ev["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["message"].as_str())
        .collect();
    ensure!(
        code == 200
            && messages.iter().any(|m| m.contains("admin initiated sync"))
            && messages
                .iter()
                .any(|m| m.contains(&format!("admin initiated rollback to {first_id}"))),
        "{ev}"
    );

    // Terminate a sync stuck waiting on a Deployment that never becomes healthy.
    fleet
        .apply(&manual_app(&fleet, "stuck", "stuck", "cluster-002", &[]))
        .await?;
    wait_app(&fleet, "stuck", Duration::from_secs(60), "compared", |a| {
        codes(a).0 == "OutOfSync"
    })
    .await?;
    let (code, out) = cli(&api, &["app", "terminate", "stuck"])?;
    ensure!(
        code == 1 && out.contains("no operation is in progress"),
        "{code}: {out}"
    );
    let (code, out) = cli(&api, &["app", "sync", "stuck"])?;
    ensure!(code == 0, "{out}");
    wait_app(&fleet, "stuck", Duration::from_secs(30), "waiting", |a| {
        a.status
            .as_ref()
            .and_then(|s| s.operation_state.as_ref())
            .is_some_and(|o| {
                o["phase"] == "Running"
                    && o["message"] == "waiting for healthy state of apps/Deployment/web"
            })
    })
    .await?;
    let (code, out) = cli(&api, &["app", "sync", "stuck"])?;
    ensure!(
        code == 1 && out.contains("in progress"),
        "a second sync is refused: {out}"
    );
    let (code, out) = cli(&api, &["app", "terminate", "stuck"])?;
    ensure!(code == 0, "{out}");
    let a = wait_app(
        &fleet,
        "stuck",
        Duration::from_secs(30),
        "terminated",
        |a| {
            a.status
                .as_ref()
                .and_then(|s| s.operation_state.as_ref())
                .is_some_and(|o| o["phase"] == "Failed")
        },
    )
    .await?;
    let op = a.status.and_then(|s| s.operation_state).unwrap_or_default();
    ensure!(op["message"] == "Operation terminated", "{op}");
    ensure!(
        live_value(&fleet, "cluster-002", "stuck", "after")
            .await?
            .is_none(),
        "the wave after the stuck one never ran"
    );
    // The resource tree: the Deployment, its ReplicaSet, the ReplicaSet's Pod.
    let (code, r) = get(&api, &format!("/api/v1/applications/{NS}/stuck/resources")).await?;
    ensure!(code == 200, "{code} {r}");
    let deploy_uid = r["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|x| x["kind"] == "Deployment")
        .and_then(|d| d["uid"].as_str())
        .context("the Deployment's uid")?
        .to_string();
    let children = r["children"].as_array().cloned().unwrap_or_default();
    let rs = children
        .iter()
        .find(|c| c["kind"] == "ReplicaSet" && c["parentUid"] == deploy_uid.as_str())
        .with_context(|| format!("a ReplicaSet under the Deployment: {r}"))?;
    ensure!(
        children
            .iter()
            .any(|c| c["kind"] == "Pod" && c["parentUid"] == rs["uid"]),
        "a Pod under the ReplicaSet: {r}"
    );
    let (code, out) = cli(&api, &["app", "resources", "stuck"])?;
    ensure!(
        code == 0 && out.contains("└ ReplicaSet") && out.contains("└ Pod"),
        "{code}: {out}"
    );

    // Clusters, repositories and the fleet, without credentials.
    // Every cluster Secret's bearer token: none may appear in what the API returns.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(fleet.control().clone(), NS);
    let tokens: Vec<String> = secrets
        .list(&kube::api::ListParams::default().labels("argocd.argoproj.io/secret-type=cluster"))
        .await?
        .items
        .iter()
        .filter_map(|s| {
            let config = s.data.as_ref()?.get("config")?;
            let v: Value = serde_json::from_slice(&config.0).ok()?;
            v["bearerToken"].as_str().map(str::to_string)
        })
        .collect();
    ensure!(tokens.len() == 2, "two cluster tokens: {tokens:?}");
    fleet
        .apply(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: private-repo\n  namespace: {NS}\n  labels: {{argocd.argoproj.io/secret-type: repository}}\nstringData:\n  url: https://git.example.com/private.git\n  username: bot\n  password: s3cr3t-pw\n"
        ))
        .await?;
    let (code, out) = cli(&api, &["cluster", "list", "-o", "json"])?;
    let clusters: Value = serde_json::from_str(&out).context(out.clone())?;
    ensure!(
        code == 0
            && tokens
                .iter()
                .all(|t| !t.is_empty() && !out.contains(t.as_str())),
        "no cluster token in: {out}"
    );
    let listed = clusters["items"].as_array().map_or(0, Vec::len);
    let owned = clusters["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["owner"].is_string())
        .count();
    ensure!(
        listed == 3 && owned == 3,
        "both clusters and the in-cluster destination have an owner: {clusters}"
    );
    let web_cluster = clusters["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == "cluster-001")
        .context("cluster-001 listed")?;
    ensure!(web_cluster["applications"] == 1, "{web_cluster}");
    flotilla_tests::eventually("repository listed", Duration::from_secs(20), || async {
        let (code, out) = cli(&api, &["repo", "list", "-o", "json"])?;
        Ok((code == 0 && out.contains("private.git")).then_some(out))
    })
    .await
    .and_then(|out| {
        ensure!(
            !out.contains("s3cr3t-pw") && out.contains("\"hasPassword\": true"),
            "{out}"
        );
        Ok(())
    })?;
    let (code, out) = cli(&api, &["fleet", "status"])?;
    ensure!(
        code == 0
            && out.contains("controller-0")
            && out.contains("controller-1")
            && out.contains("live"),
        "{code}: {out}"
    );
    let (_, f) = get(&api, "/api/v1/fleet").await?;
    let owned_total: usize = f["replicas"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| r["status"]["ownedClusters"].as_array().map_or(0, Vec::len))
        .sum();
    ensure!(
        owned_total >= 2 && f["unownedClusters"] == serde_json::json!([]),
        "{f}"
    );

    // Projects, repositories and clusters written through the API (credentials never shown).
    let proj_file = fleet.dir.path().join("team-x.yaml");
    std::fs::write(
        &proj_file,
        "apiVersion: argoproj.io/v1alpha1\nkind: AppProject\nmetadata:\n  name: team-x\nspec:\n  sourceRepos: ['*']\n  destinations: [{server: '*', namespace: 'team-x-*'}]\n",
    )?;
    let file = proj_file.display().to_string();
    let (code, out) = cli(&api, &["proj", "create", "-f", &file])?;
    ensure!(
        code == 0 && out.contains("project team-x created"),
        "{code}: {out}"
    );
    let (code, out) = cli(&api, &["proj", "create", "-f", &file])?;
    ensure!(code == 1 && out.contains("already exists"), "{code}: {out}");
    let (code, out) = cli(&api, &["proj", "create", "-f", &file, "--upsert"])?;
    ensure!(code == 0, "{code}: {out}");
    let (code, p) = get(&api, "/api/v1/projects/team-x").await?;
    ensure!(
        code == 200 && p["spec"]["destinations"][0]["namespace"] == "team-x-*",
        "{p}"
    );
    let (code, out) = cli(&api, &["proj", "delete", "default"])?;
    ensure!(code == 1 && out.contains("referenced by"), "{code}: {out}");
    let (code, out) = cli(&api, &["proj", "delete", "team-x"])?;
    ensure!(code == 0, "{code}: {out}");
    let (code, out) = cli(
        &api,
        &[
            "repo",
            "add",
            "https://git.example.com/other.git",
            "--username",
            "bot",
            "--password",
            "pw2-s3cr3t",
        ],
    )?;
    ensure!(code == 0 && !out.contains("pw2-s3cr3t"), "{code}: {out}");
    flotilla_tests::eventually(
        "added repository listed",
        Duration::from_secs(20),
        || async {
            let (code, out) = cli(&api, &["repo", "list", "-o", "json"])?;
            Ok((code == 0 && out.contains("other.git")).then_some(out))
        },
    )
    .await
    .and_then(|out| {
        ensure!(!out.contains("pw2-s3cr3t"), "{out}");
        Ok(())
    })?;
    let (code, out) = cli(&api, &["repo", "rm", "https://git.example.com/other.git"])?;
    ensure!(code == 0, "{code}: {out}");
    let (code, out) = cli(
        &api,
        &[
            "cluster",
            "add",
            "https://127.0.0.1:1",
            "--name",
            "extra",
            "--bearer-token",
            "tok-zz-s3cr3t",
        ],
    )?;
    ensure!(
        code == 0 && !out.contains("tok-zz-s3cr3t"),
        "{code}: {out}\nserver log:\n{}",
        server.tail(30)
    );
    let extra =
        flotilla_tests::eventually("added cluster listed", Duration::from_secs(20), || async {
            let (_, c) = get(&api, "/api/v1/clusters/extra").await?;
            Ok((c["server"] == "https://127.0.0.1:1").then_some(c))
        })
        .await?;
    ensure!(
        extra["auth"] == "bearerToken" && !extra.to_string().contains("tok-zz-s3cr3t"),
        "{extra}"
    );
    let (code, out) = cli(&api, &["cluster", "add", "http://127.0.0.1:1"])?;
    ensure!(code == 1 && out.contains("https://"), "{code}: {out}");
    let (code, out) = cli(&api, &["cluster", "rm", "https://127.0.0.1:1"])?;
    ensure!(code == 0, "{code}: {out}");
    flotilla_tests::eventually("removed cluster gone", Duration::from_secs(20), || async {
        let (code, _) = get(&api, "/api/v1/clusters/extra").await?;
        Ok((code == 404).then_some(()))
    })
    .await?;

    // Delete: without cascade the resources stay; with cascade they go first.
    let (code, out) = cli(
        &api,
        &[
            "app",
            "delete",
            "web",
            "--cascade=false",
            "--wait",
            "--timeout",
            "60",
        ],
    )?;
    ensure!(code == 0 && out.contains("is gone"), "{code}: {out}");
    ensure!(
        live_value(&fleet, "cluster-001", "web", "settings")
            .await?
            .as_deref()
            == Some("v1"),
        "kept without cascade"
    );
    let (code, out) = cli(
        &api,
        &["app", "delete", "other", "--wait", "--timeout", "60"],
    )?;
    ensure!(code == 0, "{code}: {out}");
    ensure!(
        live_value(&fleet, "cluster-002", "other", "other")
            .await?
            .is_none(),
        "deleted with cascade"
    );
    let (code, out) = cli(&api, &["app", "get", "other"])?;
    ensure!(code == 3, "{code}: {out}");
    Ok(())
}

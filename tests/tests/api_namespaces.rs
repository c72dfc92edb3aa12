//! End to end through real processes: the API server and the controller with
//! `--application-namespaces team-*` (apps in any namespace). An app in `team-a` under a project
//! whose `sourceNamespaces` list it is listed with its namespace, read, synced and updated
//! through the API and the CLI; an app in a namespace not served is neither listed nor read nor
//! written; project roles reach apps by `<project>/<namespace>/<name>`; a create or update that
//! would use a project not listing the namespace is refused.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use flotilla_controller::types::Application;
use flotilla_loadtest::fleet::{ADMIN_TOKEN, Fleet, FleetConfig, http_request};
use flotilla_tests::e2e::*;
use flotilla_tests::eventually;
use kube::Api;
use serde_json::{Value, json};

/// One call as `token`: (status, JSON body, or the text as a JSON string).
async fn call(
    api: &str,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> Result<(u16, Value)> {
    let auth = format!("Bearer {token}");
    let mut headers = vec![("Authorization", auth.as_str())];
    if body.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    let body = body.map(Value::to_string).unwrap_or_default();
    let (code, _, text) = http_request(api, method, path, &headers, body.as_bytes()).await?;
    Ok((
        code,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

/// `namespace/name` of every app in a list answer.
fn listed(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            format!(
                "{}/{}",
                a["namespace"].as_str().unwrap_or("?"),
                a["name"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

/// Run the CLI against `api` as the admin: (exit code, stdout + stderr).
fn cli(api: &str, args: &[&str]) -> Result<(i32, String)> {
    let out = std::process::Command::new(flotilla_loadtest::fleet::process::binary("flotilla")?)
        .args(args)
        .env("FLOTILLA_SERVER", format!("http://{api}"))
        .env("FLOTILLA_AUTH_TOKEN", ADMIN_TOKEN)
        .env("FLOTILLA_CONFIG", "/nonexistent/flotilla.json")
        .env_remove("FLOTILLA_APP_NAMESPACE")
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

/// An Application `name` in `ns` of `project`, manual sync, as the API takes it.
fn app_json(fleet: &Fleet, ns: &str, name: &str, project: &str) -> Value {
    json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"project": project,
                 "source": {"repoURL": fleet.git.url(), "targetRevision": "main", "path": "team"},
                 "destination": {"name": "cluster-001", "namespace": name},
                 "syncPolicy": {"syncOptions": ["CreateNamespace=true"]}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_serves_apps_in_the_namespaces_it_is_given_and_no_others() -> Result<()> {
    let fleet = Fleet::start(FleetConfig {
        clusters: 1,
        controller_args: vec!["--application-namespaces".into(), "team-*".into()],
        ..Default::default()
    })
    .await?;
    fleet
        .git
        .commit_files(&[("team/cm.yaml", &config_map("team-cm", "v1"))], "team")?;
    for ns in ["team-a", "team-b", "other"] {
        fleet
            .apply(&format!(
                "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n"
            ))
            .await?;
    }
    // A project for the teams' namespaces, with a role per namespace.
    fleet
        .apply(&format!(
            "apiVersion: argoproj.io/v1alpha1\nkind: AppProject\nmetadata: {{name: teams, namespace: {NS}}}\nspec:\n  sourceRepos: ['*']\n  destinations: [{{server: '*', namespace: '*'}}]\n  sourceNamespaces: [team-*]\n  roles:\n  - name: a-viewer\n    policies: ['p, proj:teams:a-viewer, applications, get, teams/team-a/*, allow']\n  - name: b-viewer\n    policies: ['p, proj:teams:b-viewer, applications, get, teams/team-b/*, allow']\n"
        ))
        .await?;
    let yaml = |v: &Value| serde_json::to_string(v).unwrap_or_default();
    fleet
        .apply(&yaml(&app_json(&fleet, "team-a", "api", "teams")))
        .await?;
    fleet
        .apply(&yaml(&app_json(&fleet, "other", "pay", "teams")))
        .await?;
    fleet
        .apply(&yaml(&app_json(&fleet, NS, "web", "default")))
        .await?;
    let (_server, api) = fleet
        .start_server_with(&["--application-namespaces".into(), "team-*".into()])
        .await?;
    let admin = ADMIN_TOKEN;

    // Listed: the control plane's app and team-a's, each with its namespace; not other's.
    let page = eventually("both apps listed", Duration::from_secs(30), || async {
        let (code, page) = call(&api, "GET", "/api/v1/applications", admin, None).await?;
        ensure!(code == 200, "list: {code} {page}");
        let names = listed(&page);
        Ok(names.contains(&"team-a/api".to_string()).then_some(names))
    })
    .await?;
    ensure!(
        page == ["argocd/web", "team-a/api"],
        "the list holds the served namespaces' apps only: {page:?}"
    );
    let (code, got) = call(&api, "GET", "/api/v1/applications/team-a/api", admin, None).await?;
    ensure!(
        code == 200
            && got["metadata"]["namespace"] == "team-a"
            && got["spec"]["project"] == "teams",
        "get team-a/api: {code} {got}"
    );

    // A namespace not served: 404 as for a missing app, for reads and writes alike, and
    // nothing written to its app.
    for (method, path) in [
        ("GET", "/api/v1/applications/other/pay"),
        ("POST", "/api/v1/applications/other/pay/sync"),
        ("POST", "/api/v1/applications/other/pay/refresh"),
        ("GET", "/api/v1/applications/other/pay/history"),
        ("DELETE", "/api/v1/applications/other/pay"),
    ] {
        let body = (method == "POST").then(|| json!({}));
        let (code, answer) = call(&api, method, path, admin, body.as_ref()).await?;
        ensure!(code == 404, "{method} {path}: {code} {answer}");
    }
    let pay: Api<Application> = Api::namespaced(fleet.control().clone(), "other");
    let pay = pay.get("pay").await?;
    ensure!(
        pay.operation.is_none()
            && pay.metadata.deletion_timestamp.is_none()
            && !pay
                .metadata
                .annotations
                .unwrap_or_default()
                .contains_key("argocd.argoproj.io/refresh"),
        "the app in a namespace not served was written to"
    );

    // Synced through the API (the app has no automated sync), and by its owning controller.
    let (code, op) = call(
        &api,
        "POST",
        "/api/v1/applications/team-a/api/sync",
        admin,
        Some(&json!({})),
    )
    .await?;
    ensure!(code == 200, "sync team-a/api: {code} {op}");
    let apps: Api<Application> = Api::namespaced(fleet.control().clone(), "team-a");
    eventually("team-a/api synced", Duration::from_secs(60), || async {
        let a = apps.get("api").await?;
        Ok((codes(&a) == ("Synced".into(), "Healthy".into())
            && a.status
                .as_ref()
                .and_then(|s| s.operation_state.as_ref())
                .is_some_and(|o| o["phase"] == "Succeeded"))
        .then_some(()))
    })
    .await?;
    ensure!(
        live(
            &fleet,
            "cluster-001",
            "v1",
            "ConfigMap",
            Some("api"),
            "team-cm"
        )
        .await?
        .is_some(),
        "team-a/api's ConfigMap deployed"
    );

    // The CLI: NAMESPACE/NAME in the list, and as the name argument.
    let (code, out) = cli(&api, &["app", "list"])?;
    ensure!(
        code == 0
            && out.lines().any(|l| l.starts_with("team-a/api "))
            && out.lines().any(|l| l.starts_with("web ")),
        "app list: {code}: {out}"
    );
    let (code, out) = cli(&api, &["app", "get", "team-a/api", "-o", "json"])?;
    ensure!(
        code == 0 && out.contains("\"namespace\": \"team-a\""),
        "app get team-a/api: {code}: {out}"
    );
    let (code, out) = cli(&api, &["app", "get", "other/pay"])?;
    ensure!(code != 0, "app get other/pay: {code}: {out}");

    // Project roles: a role granted teams/team-a/* sees the app, one granted teams/team-b/*
    // does not.
    let mut tokens = Vec::new();
    for role in ["a-viewer", "b-viewer"] {
        let (code, made) = call(
            &api,
            "POST",
            &format!("/api/v1/projects/teams/roles/{role}/token"),
            admin,
            Some(&json!({})),
        )
        .await?;
        ensure!(code == 200, "{role} token: {code} {made}");
        tokens.push(made["token"].as_str().context("a token")?.to_string());
    }
    let (a_viewer, b_viewer) = (&tokens[0], &tokens[1]);
    let seen = eventually(
        "the a-viewer token accepted",
        Duration::from_secs(30),
        || async {
            let (code, page) = call(&api, "GET", "/api/v1/applications", a_viewer, None).await?;
            Ok((code == 200).then(|| listed(&page)))
        },
    )
    .await?;
    ensure!(seen == ["team-a/api"], "a-viewer lists {seen:?}");
    let (code, got) = call(
        &api,
        "GET",
        "/api/v1/applications/team-a/api",
        a_viewer,
        None,
    )
    .await?;
    ensure!(code == 200, "a-viewer gets team-a/api: {code} {got}");
    let seen = eventually(
        "the b-viewer token accepted",
        Duration::from_secs(30),
        || async {
            let (code, page) = call(&api, "GET", "/api/v1/applications", b_viewer, None).await?;
            Ok((code == 200).then(|| listed(&page)))
        },
    )
    .await?;
    ensure!(seen.is_empty(), "b-viewer lists {seen:?}");
    let (code, got) = call(
        &api,
        "GET",
        "/api/v1/applications/team-a/api",
        b_viewer,
        None,
    )
    .await?;
    ensure!(code == 403, "b-viewer gets team-a/api: {code} {got}");
    let (code, got) = call(
        &api,
        "GET",
        "/api/v1/account/can-i/applications/get/teams/team-a/api",
        a_viewer,
        None,
    )
    .await?;
    ensure!(got["value"] == "yes", "can-i as a-viewer: {code} {got}");

    // Creating in team-a: refused under the default project (no sourceNamespaces), accepted
    // under teams; refused in a namespace not served.
    let (code, answer) = call(
        &api,
        "POST",
        "/api/v1/applications",
        admin,
        Some(&app_json(&fleet, "team-a", "made", "default")),
    )
    .await?;
    ensure!(
        code == 400
            && answer["error"]
                .as_str()
                .is_some_and(|e| e.contains("sourceNamespaces")),
        "create team-a/made under default: {code} {answer}"
    );
    ensure!(
        apps.get_opt("made").await?.is_none(),
        "a refused app was created"
    );
    let (code, answer) = call(
        &api,
        "POST",
        "/api/v1/applications",
        admin,
        Some(&app_json(&fleet, "other", "made", "teams")),
    )
    .await?;
    ensure!(code == 403, "create other/made: {code} {answer}");
    let (code, answer) = call(
        &api,
        "POST",
        "/api/v1/applications",
        admin,
        Some(&app_json(&fleet, "team-a", "made", "teams")),
    )
    .await?;
    ensure!(
        code == 200 && answer["metadata"]["namespace"] == "team-a",
        "create team-a/made under teams: {code} {answer}"
    );
    ensure!(
        apps.get_opt("made").await?.is_some(),
        "team-a/made not created"
    );
    // A create by a role that may only get: refused.
    let (code, answer) = call(
        &api,
        "POST",
        "/api/v1/applications",
        a_viewer,
        Some(&app_json(&fleet, "team-a", "other-made", "teams")),
    )
    .await?;
    ensure!(code == 403, "create as a-viewer: {code} {answer}");

    // Updating: moving team-a/api to the default project is refused; a change within teams
    // is written.
    let (code, answer) = call(
        &api,
        "PUT",
        "/api/v1/applications/team-a/api",
        admin,
        Some(&app_json(&fleet, "team-a", "api", "default")),
    )
    .await?;
    ensure!(
        code == 400
            && answer["error"]
                .as_str()
                .is_some_and(|e| e.contains("sourceNamespaces")),
        "update team-a/api into default: {code} {answer}"
    );
    ensure!(
        apps.get("api").await?.spec.project == "teams",
        "the refused update was written"
    );
    let mut changed = app_json(&fleet, "team-a", "api", "teams");
    changed["spec"]["info"] = json!([{"name": "owner", "value": "team-a"}]);
    let (code, answer) = call(
        &api,
        "PUT",
        "/api/v1/applications/team-a/api",
        admin,
        Some(&changed),
    )
    .await?;
    ensure!(code == 200, "update team-a/api: {code} {answer}");
    let info = apps.get("api").await?.spec.info.unwrap_or_default();
    if info != [json!({"name": "owner", "value": "team-a"})] {
        bail!("the update was not written: {info:?}");
    }
    Ok(())
}

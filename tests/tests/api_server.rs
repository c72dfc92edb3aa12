//! End to end through real processes: `flotilla-server` serves the fleet's Applications and
//! AppProjects from its watches, filtered and paged, only to callers with a valid token.

use std::time::Duration;

use anyhow::{Result, ensure};
use flotilla_loadtest::fleet::{ADMIN_TOKEN, Fleet, FleetConfig, http_get, http_get_with};
use flotilla_tests::e2e::*;
use serde_json::Value;

async fn get(api: &str, path: &str) -> Result<(u16, Value)> {
    let (code, body) = http_get_with(
        api,
        path,
        &[("Authorization", &format!("Bearer {ADMIN_TOKEN}"))],
    )
    .await?;
    Ok((code, serde_json::from_str(&body).unwrap_or(Value::Null)))
}

fn names(v: &Value) -> Vec<String> {
    v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["name"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_lists_filters_pages_and_refuses_strangers() -> Result<()> {
    let fleet = Fleet::start(FleetConfig::default()).await?;
    fleet.apply(&format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: AppProject\nmetadata: {{name: team-b, namespace: {NS}}}\nspec:\n  sourceRepos: ['*']\n  destinations: [{{server: '*', namespace: '*'}}]\n"
    ))
    .await?;
    fleet
        .git
        .commit_files(&[("cm/cm.yaml", CONFIG_MAP)], "cm")?;
    for (name, cluster, project) in [
        ("alpha", "cluster-001", "default"),
        ("beta", "cluster-001", "team-b"),
        ("gamma", "cluster-002", "default"),
    ] {
        fleet
            .apply(
                &auto_synced_app(&fleet, name, "cm", cluster, &[])
                    .replace("project: default", &format!("project: {project}"))
                    .replace(
                        &format!("name: {name}, namespace: {NS}"),
                        &format!("name: {name}, namespace: {NS}, labels: {{team: {project}}}"),
                    ),
            )
            .await?;
    }
    for name in ["alpha", "beta", "gamma"] {
        wait_synced_healthy(&fleet, name).await?;
    }
    let (_server, api) = fleet.start_server().await?;

    // No token, a wrong token: 401, nothing listed.
    let (code, body) = http_get(&api, "/api/v1/applications").await?;
    ensure!(code == 401 && !body.contains("alpha"), "{code}: {body}");
    let (code, _) = http_get_with(
        &api,
        "/api/v1/applications",
        &[("Authorization", "Bearer nope")],
    )
    .await?;
    ensure!(code == 401, "{code}");

    let (code, all) = get(&api, "/api/v1/applications").await?;
    ensure!(
        code == 200 && names(&all) == ["alpha", "beta", "gamma"],
        "{all}"
    );
    ensure!(
        all["items"][0]["sync"] == "Synced" && all["items"][0]["health"] == "Healthy",
        "{all}"
    );
    let (_, p) = get(&api, "/api/v1/applications?project=team-b").await?;
    ensure!(names(&p) == ["beta"], "{p}");
    let (_, p) = get(
        &api,
        "/api/v1/applications?cluster=cluster-001&selector=team%3Ddefault",
    )
    .await?;
    ensure!(names(&p) == ["alpha"], "{p}");
    let (_, p) = get(&api, "/api/v1/applications?sync=OutOfSync").await?;
    ensure!(names(&p).is_empty() && p["metadata"]["total"] == 0, "{p}");
    // Paging: two, then the rest.
    let (_, p1) = get(&api, "/api/v1/applications?limit=2").await?;
    let cont = p1["metadata"]["continue"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    ensure!(names(&p1) == ["alpha", "beta"] && !cont.is_empty(), "{p1}");
    let (_, p2) = get(
        &api,
        &format!(
            "/api/v1/applications?limit=2&continue={}",
            cont.replace('/', "%2F")
        ),
    )
    .await?;
    ensure!(
        names(&p2) == ["gamma"] && p2["metadata"].get("continue").is_none(),
        "{p2}"
    );
    // Bad input is a clear 400.
    let (code, bad) = get(&api, "/api/v1/applications?colour=blue").await?;
    ensure!(
        code == 400 && bad["error"].as_str().is_some_and(|e| e.contains("colour")),
        "{code} {bad}"
    );

    let (code, one) = get(&api, &format!("/api/v1/applications/{NS}/beta")).await?;
    ensure!(
        code == 200
            && one["spec"]["project"] == "team-b"
            && one["metadata"].get("managedFields").is_none(),
        "{one}"
    );
    let (code, _) = get(&api, &format!("/api/v1/applications/{NS}/nosuch")).await?;
    ensure!(code == 404, "{code}");
    let (code, projects) = get(&api, "/api/v1/projects").await?;
    let project_names: Vec<&str> = projects["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["metadata"]["name"].as_str())
        .collect();
    ensure!(
        code == 200 && project_names == ["default", "team-b"],
        "{projects}"
    );

    // A status change shows up through the watch.
    fleet.apply(&format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {{name: delta, namespace: {NS}}}\nspec:\n  project: default\n  source: {{repoURL: {url}, targetRevision: main, path: cm}}\n  destination: {{name: cluster-002, namespace: delta}}\n",
        url = fleet.git.url()
    ))
    .await?;
    flotilla_tests::eventually("delta listed", Duration::from_secs(30), || async {
        let (_, p) = get(&api, "/api/v1/applications?search=delt").await?;
        Ok((names(&p) == ["delta"]).then_some(()))
    })
    .await?;

    // The CLI, logged in once, over the same API.
    let cfg_dir = fleet.dir.path().join("cli");
    let cli = |args: &[&str], env: &[(&str, &str)]| -> Result<(i32, String)> {
        let mut cmd =
            std::process::Command::new(flotilla_loadtest::fleet::process::binary("flotilla")?);
        cmd.args(args)
            .env("FLOTILLA_CONFIG", cfg_dir.join("config.json"))
            .env_remove("FLOTILLA_SERVER")
            .env_remove("FLOTILLA_AUTH_TOKEN");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output()?;
        Ok((
            out.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        ))
    };
    let url = format!("http://{api}");
    let (code, out) = cli(&["app", "list"], &[])?;
    ensure!(code == 4 && out.contains("not logged in"), "{code}: {out}");
    let (code, out) = cli(&["login", &url, "--token", "wrong"], &[])?;
    ensure!(
        code == 4,
        "a wrong token is refused at login: {code}: {out}"
    );
    let (code, out) = cli(&["login", &url, "--token", ADMIN_TOKEN], &[])?;
    ensure!(code == 0, "{out}");
    let (code, out) = cli(&["app", "list"], &[])?;
    let lines: Vec<&str> = out.lines().collect();
    ensure!(
        code == 0
            && lines.len() == 5
            && lines[0].starts_with("NAME")
            && lines[2].starts_with("beta ")
            && lines[2].contains("team-b"),
        "{out}"
    );
    let (code, out) = cli(&["app", "list", "--project", "team-b", "-o", "json"], &[])?;
    let listed: Value = serde_json::from_str(&out)?;
    ensure!(
        code == 0 && listed.as_array().map(Vec::len) == Some(1) && listed[0]["name"] == "beta",
        "{out}"
    );
    let (code, out) = cli(&["app", "get", "nosuch"], &[])?;
    ensure!(code == 3 && out.contains("not found"), "{code}: {out}");
    let (code, out) = cli(&["app", "get", "alpha", "-o", "json"], &[])?;
    let got: Value = serde_json::from_str(&out)?;
    ensure!(code == 0 && got["metadata"]["name"] == "alpha", "{out}");

    // A manual app synced from the CLI, waited on, audited.
    fleet
        .apply(&format!(
            "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {{name: manual, namespace: {NS}}}\nspec:\n  project: default\n  source: {{repoURL: {url}, targetRevision: main, path: cm}}\n  destination: {{name: cluster-002, namespace: manual}}\n  syncPolicy: {{syncOptions: [CreateNamespace=true]}}\n",
            url = fleet.git.url()
        ))
        .await?;
    wait_app(
        &fleet,
        "manual",
        Duration::from_secs(30),
        "OutOfSync",
        |a| codes(a).0 == "OutOfSync",
    )
    .await?;
    flotilla_tests::eventually("manual listed", Duration::from_secs(30), || async {
        let (_, p) = get(&api, "/api/v1/applications?search=manual").await?;
        Ok((names(&p) == ["manual"]).then_some(()))
    })
    .await?;
    let (code, out) = cli(&["app", "wait", "manual", "--timeout", "2"], &[])?;
    ensure!(
        code == 5 && out.contains("timed out"),
        "not Synced yet: {code}: {out}"
    );
    let (code, out) = cli(
        &[
            "app",
            "sync",
            "manual",
            "--prune",
            "--wait",
            "--timeout",
            "60",
        ],
        &[],
    )?;
    ensure!(code == 0 && out.contains("Succeeded"), "{code}: {out}");
    let (code, out) = cli(&["app", "wait", "manual", "--timeout", "60"], &[])?;
    ensure!(code == 0 && out.contains("Synced Healthy"), "{code}: {out}");
    let a = app(&fleet, "manual").await?;
    let st = serde_json::to_value(&a.status)?;
    ensure!(
        st["operationState"]["operation"]["initiatedBy"]["username"] == "admin",
        "{st}"
    );
    let (code, out) = cli(&["app", "refresh", "manual", "--hard"], &[])?;
    ensure!(code == 0, "{out}");
    let events: kube::Api<k8s_openapi::api::events::v1::Event> =
        kube::Api::namespaced(fleet.control().clone(), NS);
    flotilla_tests::eventually("audit events", Duration::from_secs(10), || async {
        let notes: Vec<String> = events
            .list(&Default::default())
            .await?
            .items
            .into_iter()
            .filter_map(|e| e.note)
            .collect();
        Ok((notes.iter().any(|n| n == "admin initiated sync")
            && notes.iter().any(|n| n == "admin requested a hard refresh"))
        .then_some(()))
    })
    .await?;

    // RBAC from argocd-rbac-cm, live: the admin loses gamma and syncs of team-b's apps.
    fleet
        .apply(&format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: argocd-rbac-cm, namespace: {NS}}}\ndata:\n  policy.csv: |\n    p, admin, applications, get, default/gamma, deny\n    p, admin, applications, sync, team-b/*, deny\n"
        ))
        .await?;
    flotilla_tests::eventually("gamma hidden", Duration::from_secs(30), || async {
        let (code, _) = get(&api, &format!("/api/v1/applications/{NS}/gamma")).await?;
        Ok((code == 403).then_some(()))
    })
    .await?;
    let (_, p) = get(&api, "/api/v1/applications").await?;
    ensure!(
        !names(&p).contains(&"gamma".to_string()) && p["metadata"]["total"] == 4,
        "{p}"
    );
    let (code, out) = cli(&["app", "sync", "beta"], &[])?;
    ensure!(
        code == 4 && out.contains("permission denied"),
        "{code}: {out}"
    );
    ensure!(
        app(&fleet, "beta").await?.operation.is_none(),
        "nothing was written"
    );
    let cms: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(fleet.control().clone(), NS);
    cms.delete("argocd-rbac-cm", &Default::default()).await?;
    flotilla_tests::eventually("gamma back", Duration::from_secs(30), || async {
        let (code, _) = get(&api, &format!("/api/v1/applications/{NS}/gamma")).await?;
        Ok((code == 200).then_some(()))
    })
    .await?;

    // The OpenAPI document is public and describes the list's parameters.
    let (code, doc) = http_get(&api, "/api/v1/openapi.json").await?;
    let doc: Value = serde_json::from_str(&doc)?;
    ensure!(
        code == 200
            && doc["paths"]["/api/v1/applications"]["get"]["parameters"]
                .as_array()
                .is_some_and(|p| p.len() == 10),
        "{doc}"
    );
    Ok(())
}

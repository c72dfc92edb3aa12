//! The web UI in a real browser (Debian's headless Chromium over WebDriver) against a demo
//! fleet of real processes: sign in, filter to one app, open it, see its tree, see the diff a
//! Git change makes, press Sync and watch it become Synced; a read-only user sees no Sync
//! button and the API refuses it; the fleet view shows a dead controller's clusters move.
//! Screenshots of each view are saved under `artifacts/screenshots/`.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use flotilla_loadtest::fleet::{ADMIN_TOKEN, Fleet, FleetConfig};
use flotilla_tests::browser::Browser;
use flotilla_tests::e2e::*;

const WAIT: Duration = Duration::from_secs(60);
const VIEWER_PASSWORD: &str = "viewer-password-1";

use flotilla_tests::e2e::config_map as cm;

fn deployment(name: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n        - name: web\n          image: nginx:1.27\n"
    )
}

/// A read-only local account `viewer` (argocd-cm, bcrypt password in argocd-secret) and the
/// RBAC that makes it read-only.
async fn add_viewer(fleet: &Fleet) -> Result<()> {
    let hash = bcrypt::hash(VIEWER_PASSWORD, 4)?;
    fleet
        .apply(&format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: argocd-cm, namespace: {NS}}}\ndata:\n  accounts.viewer: login\n"
        ))
        .await?;
    fleet
        .apply(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: argocd-secret, namespace: {NS}}}\ndata:\n  accounts.viewer.password: {}\n",
            base64_encode(hash.as_bytes())
        ))
        .await?;
    fleet
        .apply(&format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: argocd-rbac-cm, namespace: {NS}}}\ndata:\n  policy.csv: |\n    g, viewer, role:readonly\n"
        ))
        .await?;
    Ok(())
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// Wait until exactly `n` application rows (or tiles) are shown.
async fn rows_shown(b: &Browser, what: &str, n: usize) -> Result<()> {
    b.until(what, WAIT, || async {
        Ok((b.all("[data-testid=app-row]").await?.len() == n).then_some(()))
    })
    .await
}

/// Text of `css` or empty.
async fn text(b: &Browser, css: &str) -> String {
    b.text(css).await.ok().flatten().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_filter_open_diff_sync_and_a_viewer_cannot_sync() -> Result<()> {
    let fleet = Fleet::start(FleetConfig {
        clusters: 2,
        controllers: 1,
        ..Default::default()
    })
    .await?;
    let mut files: Vec<(String, String)> = vec![
        ("guestbook/cm.yaml".into(), cm("settings", "v1")),
        ("guestbook/web.yaml".into(), deployment("web")),
    ];
    for i in 1..=4 {
        files.push((format!("svc-{i}/cm.yaml"), cm("settings", "x")));
    }
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    fleet.git.commit_files(&refs, "v1")?;
    fleet
        .apply(&manual_app(
            &fleet,
            "guestbook",
            "guestbook",
            "cluster-001",
            &[("team", "web")],
        ))
        .await?;
    for i in 1..=4 {
        let cluster = if i % 2 == 0 {
            "cluster-001"
        } else {
            "cluster-002"
        };
        fleet
            .apply(&manual_app(
                &fleet,
                &format!("svc-{i}"),
                &format!("svc-{i}"),
                cluster,
                &[("team", "platform")],
            ))
            .await?;
    }
    add_viewer(&fleet).await?;
    let (_server, api) = fleet.start_server().await?;
    let base = format!("http://{api}");
    wait_app(&fleet, "guestbook", WAIT, "compared", |a| {
        codes(a).0 == "OutOfSync"
    })
    .await?;

    let b = Browser::start(1400, 900).await?;
    // A deep link before signing in goes to the login page and comes back after.
    b.client
        .goto(&format!("{base}/applications?search=guest"))
        .await?;
    b.find("#username", WAIT).await?;
    ensure!(
        b.client.current_url().await?.path() == "/login",
        "unauthenticated: the login page"
    );
    b.screenshot("01-login").await?;
    b.find("#username", WAIT).await?.send_keys("admin").await?;
    b.find("#password", WAIT).await?.send_keys("wrong").await?;
    b.find("[data-testid=login-submit]", WAIT)
        .await?
        .click()
        .await?;
    b.until("the login error", WAIT, || async {
        Ok((!text(&b, "[role=alert]").await.is_empty()).then_some(()))
    })
    .await?;
    let pw = b.find("#password", WAIT).await?;
    pw.clear().await?;
    pw.send_keys(ADMIN_TOKEN).await?;
    b.find("[data-testid=login-submit]", WAIT)
        .await?
        .click()
        .await?;
    b.wait_text("[data-testid=user]", "admin", WAIT).await?;
    // Back on the deep link, filtered to one app.
    b.until("one app listed", WAIT, || async {
        let rows = b.all("[data-testid=app-row]").await?;
        let count = b
            .js("const e = document.querySelector('[data-testid=app-count]'); return e && e.dataset.count")
            .await?;
        Ok((rows.len() == 1 && count == "1").then_some(()))
    })
    .await?;
    ensure!(
        b.client.current_url().await?.query() == Some("search=guest"),
        "the filter stays in the URL"
    );

    // The whole list, then filtered by typing.
    b.client.goto(&format!("{base}/applications")).await?;
    rows_shown(&b, "five apps listed", 5).await?;
    b.screenshot("02-applications").await?;
    b.find("[data-testid=app-search]", WAIT)
        .await?
        .send_keys("svc-3")
        .await?;
    rows_shown(&b, "the search to filter", 1).await?;
    ensure!(
        b.client
            .current_url()
            .await?
            .query()
            .unwrap_or_default()
            .contains("search=svc-3")
    );

    // Open guestbook: summary, badges, and after a sync its tree.
    b.client
        .goto(&format!("{base}/applications?search=guestbook"))
        .await?;
    b.find("[data-testid=app-row][data-app='argocd/guestbook'] a, a[data-testid=app-row][data-app='argocd/guestbook']", WAIT)
        .await?
        .click()
        .await?;
    b.find("[data-testid=app-summary]", WAIT).await?;
    ensure!(b.client.current_url().await?.path() == "/applications/argocd/guestbook");
    b.wait_text("[data-testid=app-sync-status]", "OutOfSync", WAIT)
        .await?;
    // Sync it from the UI (the dialog, defaults), and watch it become Synced.
    b.find("[data-testid=sync-button]", WAIT)
        .await?
        .click()
        .await?;
    b.find("[data-testid=sync-dialog]", WAIT).await?;
    b.screenshot("03-sync-dialog").await?;
    b.find("[data-testid=sync-confirm]", WAIT)
        .await?
        .click()
        .await?;
    b.wait_text("[data-testid=app-sync-status]", "Synced", WAIT)
        .await?;
    ensure!(
        live_value(&fleet, "cluster-001", "guestbook", "settings").await? == Some("v1".into()),
        "the sync reached the cluster"
    );
    // The tree: Deployment → ReplicaSet → Pod, with health per node.
    b.client
        .goto(&format!("{base}/applications/argocd/guestbook?view=tree"))
        .await?;
    b.until("the tree down to a Pod", WAIT, || async {
        let kinds = b
            .js("return [...document.querySelectorAll('[data-testid=tree-node]')].map(e => e.dataset.kind)")
            .await?;
        let has = |k: &str| kinds.as_array().is_some_and(|a| a.iter().any(|x| x == k));
        Ok((has("Deployment") && has("ReplicaSet") && has("Pod") && has("ConfigMap")).then_some(()))
    })
    .await?;
    b.screenshot("04-app-tree").await?;

    // A Git change: after a refresh the app is OutOfSync and the diff shows the line.
    fleet
        .git
        .commit_files(&[("guestbook/cm.yaml", &cm("settings", "v2"))], "v2")?;
    b.find("[data-testid=refresh-button]", WAIT)
        .await?
        .click()
        .await?;
    b.wait_text("[data-testid=app-sync-status]", "OutOfSync", WAIT)
        .await?;
    b.client
        .goto(&format!("{base}/applications/argocd/guestbook?view=diff"))
        .await?;
    let diff = b
        .find(
            "[data-testid=resource-diff][data-kind=ConfigMap][data-name=settings]",
            WAIT,
        )
        .await?;
    b.until("the changed line in the diff", WAIT, || async {
        let added = b
            .js("return [...document.querySelectorAll('[data-testid=resource-diff][data-name=settings] .diff-add')].map(e => e.textContent).join('\\n')")
            .await?;
        let removed = b
            .js("return [...document.querySelectorAll('[data-testid=resource-diff][data-name=settings] .diff-del')].map(e => e.textContent).join('\\n')")
            .await?;
        let (a, r) = (added.as_str().unwrap_or_default(), removed.as_str().unwrap_or_default());
        Ok((a.contains("v2") && r.contains("v1")).then_some(()))
    })
    .await?;
    drop(diff);
    b.screenshot("05-app-diff").await?;
    // Sync from the diff view; the app becomes Synced and the cluster has v2.
    b.find("[data-testid=sync-button]", WAIT)
        .await?
        .click()
        .await?;
    b.find("[data-testid=sync-confirm]", WAIT)
        .await?
        .click()
        .await?;
    b.wait_text("[data-testid=app-sync-status]", "Synced", WAIT)
        .await?;
    b.until("v2 live", WAIT, || async {
        Ok(
            (live_value(&fleet, "cluster-001", "guestbook", "settings").await?
                == Some("v2".into()))
            .then_some(()),
        )
    })
    .await?;
    b.find("[data-testid=no-diff]", WAIT).await?;
    // History lists both syncs.
    b.client
        .goto(&format!(
            "{base}/applications/argocd/guestbook?view=history"
        ))
        .await?;
    b.until("two history rows", WAIT, || async {
        let n = b
            .js("return document.querySelectorAll('[data-testid=history-row]').length")
            .await?;
        Ok((n.as_u64() == Some(2)).then_some(()))
    })
    .await?;
    b.screenshot("06-app-history").await?;
    // Events: the syncs and the refresh, as the API recorded them.
    b.client
        .goto(&format!("{base}/applications/argocd/guestbook?view=events"))
        .await?;
    b.find("[data-testid=event-row]", WAIT).await?;
    b.screenshot("06-app-events").await?;
    // Tiles.
    b.client
        .goto(&format!("{base}/applications?view=tiles"))
        .await?;
    rows_shown(&b, "five tiles", 5).await?;
    b.screenshot("02-applications-tiles").await?;
    // Dark theme, remembered.
    b.find("[data-testid=theme-toggle]", WAIT)
        .await?
        .click()
        .await?;
    let theme = b
        .js("return document.documentElement.dataset.theme")
        .await?;
    ensure!(theme == "dark", "theme {theme}");
    b.client.goto(&format!("{base}/applications")).await?;
    b.find("[data-testid=app-list][data-ready=true]", WAIT)
        .await?;
    ensure!(
        b.js("return document.documentElement.dataset.theme")
            .await?
            == "dark"
    );
    b.screenshot("07-applications-dark").await?;
    b.find("[data-testid=logout]", WAIT).await?.click().await?;
    b.find("#username", WAIT).await?;

    // The read-only viewer: sees the app, no Sync button, and the API refuses a sync.
    b.sign_in(&base, "viewer", VIEWER_PASSWORD).await?;
    b.client
        .goto(&format!("{base}/applications/argocd/guestbook"))
        .await?;
    b.wait_text("[data-testid=app-sync-status]", "Synced", WAIT)
        .await?;
    b.find("[data-testid=refresh-button]", WAIT).await?;
    ensure!(
        !b.exists("[data-testid=sync-button]").await?,
        "a read-only user sees no Sync button"
    );
    b.screenshot("08-viewer-app").await?;
    let code = b
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             fetch('/api/v1/applications/argocd/guestbook/sync', {method: 'POST',
                   credentials: 'same-origin',
                   headers: {'Content-Type': 'application/json', 'X-Requested-With': 'flotilla'},
                   body: '{}'}).then(r => done(r.status), e => done(String(e)));",
            vec![],
        )
        .await?;
    ensure!(code == 403, "the API refuses the viewer's sync: {code}");
    // A write by cookie from a page that does not say it is the UI (a form post) is refused.
    let code = b
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             fetch('/api/v1/applications/argocd/guestbook/sync', {method: 'POST',
                   credentials: 'same-origin', headers: {'Content-Type': 'text/plain'},
                   body: '{}'}).then(r => done(r.status), e => done(String(e)));",
            vec![],
        )
        .await?;
    ensure!(code == 403, "no CSRF: {code}");
    b.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_view_shows_a_dead_controllers_clusters_move() -> Result<()> {
    let mut fleet = Fleet::start(FleetConfig {
        clusters: 4,
        controllers: 2,
        ..Default::default()
    })
    .await?;
    fleet
        .git
        .commit_files(&[("a/cm.yaml", &cm("settings", "x"))], "v1")?;
    for i in 1..=4 {
        fleet
            .apply(&manual_app(
                &fleet,
                &format!("app-{i}"),
                "a",
                &format!("cluster-00{i}"),
                &[("team", "t")],
            ))
            .await?;
    }
    let (_server, api) = fleet.start_server().await?;
    let base = format!("http://{api}");
    let b = Browser::start(1400, 1000).await?;
    b.sign_in(&base, "admin", ADMIN_TOKEN).await?;
    b.client.goto(&format!("{base}/fleet")).await?;
    // Both replicas live, every cluster on one of them.
    let owners = || async {
        let v = b
            .js("return [...document.querySelectorAll('[data-testid=replica]')].map(r => [r.dataset.identity, r.dataset.live, [...r.querySelectorAll('[data-testid=replica-cluster]')].map(c => c.dataset.server)])")
            .await?;
        Ok::<_, anyhow::Error>(v.as_array().cloned().unwrap_or_default())
    };
    let before = b
        .until(
            "two live replicas owning all four clusters",
            WAIT,
            || async {
                let reps = owners().await?;
                let live = reps.iter().filter(|r| r[1] == "true").count();
                let clusters: usize = reps
                    .iter()
                    .map(|r| r[2].as_array().map_or(0, Vec::len))
                    .sum();
                Ok((live == 2
                    && clusters >= 4
                    && reps
                        .iter()
                        .all(|r| r[2].as_array().is_some_and(|c| !c.is_empty())))
                .then_some(reps))
            },
        )
        .await?;
    b.find("[data-testid=repo-server]", WAIT).await?;
    b.find("[data-testid=cache-ratio]", WAIT).await?;
    b.screenshot("09-fleet").await?;
    let victim = before[0][0].as_str().context("identity")?.to_string();
    let moved: Vec<String> = before[0][2]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect();
    fleet.kill_controller(&victim)?;
    // The survivor takes every cluster; the dead replica shows as not live, owning none; the
    // hand-overs are listed.
    b.until(
        "the dead replica's clusters on the survivor",
        Duration::from_secs(90),
        || async {
            let reps = owners().await?;
            let survivor = reps
                .iter()
                .find(|r| r[0] != victim.as_str() && r[1] == "true");
            let dead_owns = reps
                .iter()
                .filter(|r| r[0] == victim.as_str())
                .any(|r| r[1] == "true" || r[2].as_array().is_some_and(|c| !c.is_empty()));
            let took_all = survivor.is_some_and(|s| {
                moved.iter().all(|m| {
                    s[2].as_array()
                        .is_some_and(|c| c.iter().any(|x| x == m.as_str()))
                })
            });
            Ok((took_all && !dead_owns).then_some(()))
        },
    )
    .await?;
    b.until("the hand-overs listed", WAIT, || async {
        let n = b.all("[data-testid=handover]").await?.len();
        Ok((n >= moved.len()).then_some(()))
    })
    .await?;
    b.screenshot("10-fleet-after-kill").await?;
    b.close().await?;
    Ok(())
}

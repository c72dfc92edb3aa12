//! Password sign-in through the real server, attacked: parallel guesses get no more than the
//! five tries a user is allowed; a signed-out session is refused by every server replica, not
//! only the one that signed it out; a form cannot sign a browser in (login CSRF).

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use flotilla_loadtest::fleet::{ADMIN_TOKEN, Fleet, FleetConfig};
use flotilla_tests::e2e::NS;

/// One raw HTTP/1.0 request: (status, headers, body).
async fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<(u16, String, String)> {
    flotilla_loadtest::fleet::http_request(addr, method, path, headers, body.as_bytes()).await
}

async fn sign_in(api: &str, user: &str, password: &str) -> Result<(u16, String, String)> {
    request(
        api,
        "POST",
        "/api/v1/session",
        &[("Content-Type", "application/json")],
        &serde_json::json!({"username": user, "password": password}).to_string(),
    )
    .await
}

/// The session token a sign-in answer sets in its cookie.
fn session_cookie(head: &str) -> Option<String> {
    head.lines()
        .filter_map(|l| {
            l.strip_prefix("set-cookie: ")
                .or_else(|| l.strip_prefix("Set-Cookie: "))
        })
        .filter_map(|c| c.strip_prefix("flotilla.token="))
        .map(|c| c.split(';').next().unwrap_or_default().to_string())
        .find(|t| !t.is_empty())
}

async fn logged_in(api: &str, cookie: &str) -> Result<bool> {
    let (code, _, body) = request(
        api,
        "GET",
        "/api/v1/session/userinfo",
        &[("Cookie", &format!("flotilla.token={cookie}"))],
        "",
    )
    .await?;
    ensure!(code == 200, "userinfo {code}");
    let v: serde_json::Value = serde_json::from_str(&body)?;
    Ok(v["loggedIn"] == true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guesses_are_limited_sign_outs_revoke_everywhere_and_forms_cannot_sign_in() -> Result<()> {
    let fleet = Fleet::start(FleetConfig {
        clusters: 1,
        controllers: 1,
        ..Default::default()
    })
    .await?;
    let hash = bcrypt::hash("alice-password", 4)?;
    fleet
        .apply(&format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: argocd-cm, namespace: {NS}}}\ndata:\n  accounts.alice: login\n"
        ))
        .await?;
    fleet
        .apply(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: argocd-secret, namespace: {NS}}}\nstringData:\n  accounts.alice.password: '{hash}'\n"
        ))
        .await?;
    let (_one, api) = fleet.start_server().await?;
    let (_two, api2) = fleet.start_server().await?;
    // The account is known once argocd-cm and argocd-secret are read (each try before that
    // counts against alice's five, so only four, spaced out).
    let mut signed = false;
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        if sign_in(&api, "alice", "alice-password").await?.0 == 200 {
            signed = true;
            break;
        }
    }
    ensure!(signed, "alice signs in with her password");

    // 30 wrong guesses at once: five are checked, the rest refused unchecked.
    let guesses = (0..30).map(|i| {
        let api = api.clone();
        async move {
            sign_in(&api, "alice", &format!("guess-{i}"))
                .await
                .map(|r| r.0)
        }
    });
    let codes: Vec<u16> = futures::future::try_join_all(guesses).await?;
    let checked = codes.iter().filter(|c| **c == 401).count();
    let refused = codes.iter().filter(|c| **c == 429).count();
    ensure!(checked == 5 && refused == 25, "{codes:?}");
    // Locked: even the right password is not checked now.
    ensure!(sign_in(&api, "alice", "alice-password").await?.0 == 429);
    // Another user is not affected.
    let (code, head, _) = sign_in(&api, "admin", ADMIN_TOKEN).await?;
    ensure!(code == 200, "admin signs in: {code}");
    let cookie = session_cookie(&head).context("the session cookie")?;
    ensure!(head.to_ascii_lowercase().contains("httponly") && head.contains("SameSite=Strict"));

    // Signed out on one replica: refused by both.
    ensure!(logged_in(&api, &cookie).await? && logged_in(&api2, &cookie).await?);
    let cookie_header = format!("flotilla.token={cookie}");
    let (code, _, _) = request(
        &api,
        "DELETE",
        "/api/v1/session",
        &[("Cookie", &cookie_header), ("X-Requested-With", "flotilla")],
        "",
    )
    .await?;
    ensure!(code == 200, "sign out {code}");
    ensure!(
        !logged_in(&api, &cookie).await?,
        "revoked where it signed out"
    );
    flotilla_tests::eventually(
        "the other replica refuses it",
        Duration::from_secs(30),
        || async { Ok((!logged_in(&api2, &cookie).await?).then_some(())) },
    )
    .await?;
    let (code, _, _) = request(
        &api2,
        "GET",
        "/api/v1/applications",
        &[("Authorization", &format!("Bearer {cookie}"))],
        "",
    )
    .await?;
    ensure!(code == 401, "the revoked session as a bearer token: {code}");

    // Login CSRF: a form (not JSON) cannot sign a browser in.
    let (code, _, _) = request(
        &api,
        "POST",
        "/api/v1/session",
        &[("Content-Type", "text/plain")],
        &serde_json::json!({"username": "admin", "password": ADMIN_TOKEN}).to_string(),
    )
    .await?;
    ensure!(code == 415, "{code}");
    Ok(())
}

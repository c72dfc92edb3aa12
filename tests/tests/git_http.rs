//! The repo-server's Git client against Git's own smart-HTTP server (`git http-backend`):
//! basic credentials, bearer tokens, TLS (self-signed, accepted only when `insecure`), and
//! clear errors when credentials are missing or wrong.

use std::time::Duration;

use anyhow::{Result, ensure};
use flotilla_loadtest::fleet::GitServer;
use flotilla_loadtest::fleet::git_http::{Auth, GitHttpServer};
use flotilla_repo_server::git::{self, Credentials};

async fn fetch_resolve(url: String, creds: Credentials) -> Result<String, String> {
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let cache = git::GitCache::open(dir.path()).map_err(|e| e.to_string())?;
        let repo =
            git::fetch(&cache, &url, &creds, Duration::from_secs(30)).map_err(|e| e.to_string())?;
        git::resolve(&repo, &url, "main").map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

fn basic(user: &str, pass: &str, insecure: bool) -> Credentials {
    Credentials {
        username: Some(user.into()),
        password: Some(pass.into()),
        insecure,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_credentials_over_https() -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir()?;
    let origin = GitServer::start(dir.path(), "apps", None)?;
    let head = origin.commit_files(&[("a.yaml", "x: 1\n")], "one")?;
    let auth = Auth::Basic {
        username: "deploy".into(),
        password: "s3cret".into(),
    };
    let server = GitHttpServer::start(&dir.path().join("git-root"), auth.clone(), true).await?;
    let url = server.url("apps.git");
    let ok = fetch_resolve(url.clone(), basic("deploy", "s3cret", true)).await;
    ensure!(ok.as_deref() == Ok(head.as_str()), "{ok:?}");
    let wrong = fetch_resolve(url.clone(), basic("deploy", "nope", true)).await;
    ensure!(wrong.is_err(), "wrong password accepted");
    let none = fetch_resolve(
        url.clone(),
        Credentials {
            insecure: true,
            ..Default::default()
        },
    )
    .await;
    let msg = none.err().unwrap_or_default();
    ensure!(
        msg.starts_with(&format!("fetching {url}")) && !msg.contains('\n'),
        "one clear line: {msg}"
    );
    // Credentials are never sent in clear text over plain http.
    let plain = GitHttpServer::start(&dir.path().join("git-root"), auth, false).await?;
    let msg = fetch_resolve(plain.url("apps.git"), basic("deploy", "s3cret", false))
        .await
        .err()
        .unwrap_or_default();
    ensure!(msg.contains("clear text"), "{msg}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_over_https_with_insecure_tls() -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir()?;
    let origin = GitServer::start(dir.path(), "apps", None)?;
    let head = origin.commit_files(&[("a.yaml", "x: 1\n")], "one")?;
    let server = GitHttpServer::start(
        &dir.path().join("git-root"),
        Auth::Bearer("tok-123".into()),
        true,
    )
    .await?;
    let url = server.url("apps.git");
    ensure!(url.starts_with("https://"));
    let creds = Credentials {
        bearer_token: Some("tok-123".into()),
        insecure: true,
        ..Default::default()
    };
    ensure!(fetch_resolve(url.clone(), creds.clone()).await.as_deref() == Ok(head.as_str()));
    // The certificate is self-signed: refused unless `insecure` is set.
    let strict = Credentials {
        insecure: false,
        ..creds.clone()
    };
    ensure!(
        fetch_resolve(url.clone(), strict).await.is_err(),
        "self-signed certificate accepted"
    );
    let bad_token = Credentials {
        bearer_token: Some("other".into()),
        ..creds
    };
    ensure!(fetch_resolve(url, bad_token).await.is_err());
    Ok(())
}

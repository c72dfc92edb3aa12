//! The repo-server's Git client against Git's own smart-HTTP server (`git http-backend`):
//! basic credentials, bearer tokens, TLS (self-signed, accepted only when `insecure`; a private
//! CA from `argocd-tls-certs-cm`; client certificates), a `CONNECT` proxy and `noProxy`,
//! GitHub App installation tokens from a fake GitHub API that checks the app JWT, and clear
//! errors when credentials are missing or wrong.

use std::time::Duration;

use anyhow::{Result, ensure};
use flotilla_loadtest::fleet::GitServer;
use flotilla_loadtest::fleet::git_http::{Auth, CaTls, GitHttpServer, TestCa};
use flotilla_loadtest::fleet::github_api::{AppKey, GithubApi};
use flotilla_loadtest::fleet::proxy::ConnectProxy;
use flotilla_repo_server::git::{self, Credentials};
use flotilla_repo_server::github_app::GithubAppCreds;
use flotilla_repo_server::transport::TransportConfig;

async fn fetch_resolve(url: String, creds: Credentials) -> Result<String, String> {
    fetch_with(url, creds, TransportConfig::default()).await
}

async fn fetch_with(
    url: String,
    creds: Credentials,
    transport: TransportConfig,
) -> Result<String, String> {
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let cache = git::GitCache::open(dir.path()).map_err(|e| e.to_string())?;
        let repo = git::fetch(&cache, &url, &creds, &transport, Duration::from_secs(30))
            .map_err(|e| e.to_string())?;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_ca_client_certificates_and_a_proxy() -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir()?;
    let origin = GitServer::start(dir.path(), "apps", None)?;
    let head = origin.commit_files(&[("a.yaml", "x: 1\n")], "one")?;
    let corp_ca = TestCa::new("corp CA")?;
    let client_ca = TestCa::new("client CA")?;
    let server = GitHttpServer::start_with_ca(
        &dir.path().join("git-root"),
        Auth::Basic {
            username: "deploy".into(),
            password: "s3cret".into(),
        },
        CaTls {
            server: &corp_ca,
            clients: Some(&client_ca),
        },
    )
    .await?;
    let url = server.url("apps.git");
    let (cert, key) = client_ca.issue(&[], "flotilla")?;
    let creds = Credentials {
        tls_client_cert_data: Some(cert),
        tls_client_cert_key: Some(key),
        ..basic("deploy", "s3cret", false)
    };
    // argocd-tls-certs-cm as mounted: one file per server name.
    let certs = dir.path().join("tls");
    std::fs::create_dir_all(&certs)?;
    let with_ca = TransportConfig {
        tls_certs_dir: certs.clone(),
        ..TransportConfig::default()
    };

    // The corporate CA is not a system root: refused until the ConfigMap names it.
    let e = fetch_with(url.clone(), creds.clone(), with_ca.clone())
        .await
        .expect_err("an unknown CA");
    ensure!(e.contains("fetching"), "{e}");
    std::fs::write(certs.join("127.0.0.1"), &corp_ca.pem)?;
    let ok = fetch_with(url.clone(), creds.clone(), with_ca.clone()).await;
    ensure!(ok.as_deref() == Ok(head.as_str()), "{ok:?}");

    // The server demands a client certificate: none, or one from another CA, is refused.
    let stranger = TestCa::new("stranger")?.issue(&[], "x")?;
    for wrong in [
        basic("deploy", "s3cret", false),
        Credentials {
            tls_client_cert_data: Some(stranger.0),
            tls_client_cert_key: Some(stranger.1),
            ..basic("deploy", "s3cret", false)
        },
    ] {
        ensure!(
            fetch_with(url.clone(), wrong, with_ca.clone())
                .await
                .is_err(),
            "a fetch without the right client certificate succeeded"
        );
    }

    // Through a CONNECT proxy: the fetch goes through a tunnel to the server...
    let proxy = ConnectProxy::start().await?;
    let proxied = Credentials {
        proxy: Some(proxy.url()),
        ..creds.clone()
    };
    let ok = fetch_with(url.clone(), proxied.clone(), with_ca.clone()).await;
    ensure!(ok.as_deref() == Ok(head.as_str()), "{ok:?}");
    let tunnels = proxy.tunnels.lock().map(|t| t.clone()).unwrap_or_default();
    ensure!(
        !tunnels.is_empty() && tunnels.iter().all(|t| *t == server.addr.to_string()),
        "{tunnels:?}"
    );
    // ...unless noProxy names the host.
    let before = proxy.count();
    let bypass = Credentials {
        no_proxy: Some("example.invalid,127.0.0.1".into()),
        ..proxied
    };
    let ok = fetch_with(url.clone(), bypass, with_ca).await;
    ensure!(ok.as_deref() == Ok(head.as_str()), "{ok:?}");
    ensure!(proxy.count() == before, "noProxy bypassed the proxy");
    Ok(())
}

/// A fetch with GitHub App credentials against a fake GitHub Enterprise API.
fn app_creds(api: &GithubApi, installation: i64, key: &str) -> Credentials {
    Credentials {
        github_app: Some(GithubAppCreds {
            app_id: 4242,
            installation_id: installation,
            private_key: key.to_string(),
            enterprise_base_url: Some(api.base_url()),
        }),
        ..Credentials::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_app_installation_tokens_are_minted_cached_and_renewed() -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir()?;
    let origin = GitServer::start(dir.path(), "apps", None)?;
    let head = origin.commit_files(&[("a.yaml", "x: 1\n")], "one")?;
    let key = AppKey::generate()?;
    let ca = TestCa::new("ghe CA")?;
    // Long-lived tokens for installation 1, tokens already inside the renewal minute for 2.
    let api = GithubApi::start(4242, 1, &key, Duration::from_secs(3600), &ca).await?;
    let short = GithubApi::start(4242, 2, &key, Duration::from_secs(30), &ca).await?;
    let certs = dir.path().join("tls");
    std::fs::create_dir_all(&certs)?;
    std::fs::write(certs.join("127.0.0.1"), &ca.pem)?;
    let transport = TransportConfig {
        tls_certs_dir: certs,
        ..TransportConfig::default()
    };
    // The Git server accepts exactly the tokens either API issued.
    let tokens = api.issued.clone();
    let git = GitHttpServer::start_with_ca(
        &dir.path().join("git-root"),
        Auth::InstallationTokens(tokens.clone()),
        CaTls {
            server: &ca,
            clients: None,
        },
    )
    .await?;
    let url = git.url("apps.git");

    for _ in 0..2 {
        let ok = fetch_with(
            url.clone(),
            app_creds(&api, 1, &key.private_pem),
            transport.clone(),
        )
        .await;
        ensure!(ok.as_deref() == Ok(head.as_str()), "{ok:?}");
    }
    ensure!(
        api.issued_count() == 1,
        "one token for two fetches: {}",
        api.issued_count()
    );
    ensure!(api.refused.lock().map(|r| r.is_empty()).unwrap_or(false));

    // Tokens with under a minute left are renewed before every use (the Git server knows only
    // the first API's tokens, so these fetches fail; what counts here is the minting).
    for _ in 0..2 {
        let _ = fetch_with(
            url.clone(),
            app_creds(&short, 2, &key.private_pem),
            transport.clone(),
        )
        .await;
    }
    ensure!(
        short.issued_count() == 2,
        "renewed: {}",
        short.issued_count()
    );

    // Another app's key: the API refuses the JWT and the fetch says why.
    let other = AppKey::generate()?;
    let e = fetch_with(
        url.clone(),
        app_creds(&api, 1, &other.private_pem),
        transport.clone(),
    )
    .await
    .expect_err("a JWT signed with the wrong key");
    ensure!(
        e.contains("GitHub App 4242 installation 1") && e.contains("401"),
        "{e}"
    );
    ensure!(
        api.refused
            .lock()
            .map(|r| r.iter().any(|w| w == "bad signature"))
            .unwrap_or(false),
        "{:?}",
        api.refused.lock().map(|r| r.clone())
    );
    ensure!(!e.contains("BEGIN RSA"), "no key material in errors");
    Ok(())
}

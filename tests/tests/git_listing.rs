//! `ListRepoPaths` (what Argo CD's ApplicationSet git generator asks the repo-server) through
//! the real repo-server binary over gRPC on loopback, against `git daemon` and an
//! authenticating Git HTTP server: directories of a commit, files by glob in both globbing
//! modes with their contents, symlinks, the bounds, the token and credential checks, unknown
//! revisions; and the controller's `ManifestClient::list_repo_paths` over the repo-server pool.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, ensure};
use flotilla_cache::{CacheMetrics, RevisionStore, store::MemoryStore};
use flotilla_controller::manifests::{
    ManifestClient, ManifestError, ManifestMetrics, MemoryCache, RepoPathsQuery,
};
use flotilla_controller::repo_pool::{Discovery, PoolMetrics, RepoPool};
use flotilla_controller::repos::RepoCreds;
use flotilla_loadtest::fleet::GitServer;
use flotilla_loadtest::fleet::git_http::{Auth, GitHttpServer};
use flotilla_loadtest::fleet::process::{self, Proc};
use flotilla_proto::repo::v1 as pb;
use pb::repo_server_client::RepoServerClient;
use tonic::Code;

const TOKEN: &str = "git-listing-test-token";

/// The repo-server binary (plaintext gRPC, the token required); its gRPC address.
async fn repo_server(dir: &Path) -> Result<(Proc, String)> {
    let addr_file = dir.join("repo-server.json");
    let args: Vec<String> = [
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "127.0.0.1:0",
        "--plaintext",
        "--address-file",
        &addr_file.display().to_string(),
        "--cache-dir",
        &dir.join("cache").display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut proc = Proc::spawn(
        "repo-server",
        &process::binary("flotilla-repo-server")?,
        &args,
        dir.join("repo-server.log"),
        &[
            ("FLOTILLA_REPO_SERVER_TOKEN", TOKEN),
            ("HOME", &dir.display().to_string()),
        ],
    )?;
    let addrs = process::wait_address_file(&mut proc, &addr_file, Duration::from_secs(30)).await?;
    let grpc = addrs["grpc"].as_str().unwrap_or_default().to_string();
    Ok((proc, grpc))
}

fn authed<T>(msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Ok(v) = format!("Bearer {TOKEN}").parse() {
        r.metadata_mut().insert("authorization", v);
    }
    r
}

fn dirs_req(url: &str, revision: &str) -> pb::ListRepoPathsRequest {
    pb::ListRepoPathsRequest {
        repo: Some(pb::Repository {
            url: url.into(),
            ..Default::default()
        }),
        revision: revision.into(),
        directories: true,
        ..Default::default()
    }
}

fn files_req(url: &str, globs: &[&str], doublestar: bool) -> pb::ListRepoPathsRequest {
    pb::ListRepoPathsRequest {
        repo: Some(pb::Repository {
            url: url.into(),
            ..Default::default()
        }),
        revision: "main".into(),
        file_globs: globs.iter().map(|s| s.to_string()).collect(),
        doublestar_globbing: doublestar,
        ..Default::default()
    }
}

fn paths(r: &pb::ListRepoPathsResponse) -> Vec<&str> {
    r.files.iter().map(|f| f.path.as_str()).collect()
}

/// The controller's client over a pool of one plaintext repo-server.
fn manifest_client(grpc: &str) -> ManifestClient {
    let store = Arc::new(MemoryStore::new(16));
    ManifestClient::new(
        RepoPool::new(
            Discovery::Static(vec![format!("http://{grpc}")]),
            Duration::from_secs(60),
            PoolMetrics::default(),
        )
        .with_token(Some(TOKEN.into())),
        MemoryCache::new(1),
        None,
        RevisionStore::new(store, Duration::from_secs(60), CacheMetrics::default()),
        ManifestMetrics::default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directories_and_files_of_a_commit() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let git = GitServer::start(dir.path(), "apps", None)?;
    git.write(&[
        ("apps/a/config.json", r#"{"name":"a"}"#),
        ("apps/b/config.json", r#"{"name":"b"}"#),
        ("apps/b/sub/config.json", r#"{"name":"b-sub"}"#),
        ("apps/c/deep/x/values.yaml", "x: 1\n"),
        ("apps/.hidden/config.json", r#"{"name":"hidden"}"#),
        (".github/workflows/ci.yaml", "on: push\n"),
        ("big/blob.bin", &"x".repeat((1 << 20) + 1)),
    ])?;
    // A link to a directory (never a directory), a link to a file inside the repository and
    // one to a file outside: neither is a file whose content is read.
    std::fs::create_dir_all(git.work.join("apps/d"))?;
    std::fs::create_dir_all(git.work.join("apps/e"))?;
    std::os::unix::fs::symlink("a", git.work.join("apps/link"))?;
    std::os::unix::fs::symlink("../a/config.json", git.work.join("apps/d/config.json"))?;
    std::os::unix::fs::symlink("/etc/passwd", git.work.join("apps/e/config.json"))?;
    let commit = git.commit("apps")?;
    let url = git.url();
    let (_rs, grpc) = repo_server(dir.path()).await?;
    let mut c = RepoServerClient::connect(format!("http://{grpc}")).await?;

    // Without the token nothing is listed.
    let e = c
        .list_repo_paths(dirs_req(&url, "main"))
        .await
        .expect_err("no token");
    ensure!(e.code() == Code::Unauthenticated, "{e:?}");

    // Directories: depth first, names sorted; no root, no hidden ones, no symlinks.
    let want = [
        "apps",
        "apps/a",
        "apps/b",
        "apps/b/sub",
        "apps/c",
        "apps/c/deep",
        "apps/c/deep/x",
        "apps/d",
        "apps/e",
        "big",
    ];
    for rev in ["main", "", commit.as_str()] {
        let r = c
            .list_repo_paths(authed(dirs_req(&url, rev)))
            .await?
            .into_inner();
        ensure!(r.commit_sha == commit, "{rev}: {}", r.commit_sha);
        ensure!(r.directories == want, "{rev}: {:?}", r.directories);
        ensure!(r.files.is_empty(), "{:?}", paths(&r));
    }

    // Files, `git ls-files` semantics (Argo CD's default): `*` crosses `/`.
    let r = c
        .list_repo_paths(authed(files_req(&url, &["apps/*/config.json"], false)))
        .await?
        .into_inner();
    ensure!(r.commit_sha == commit);
    ensure!(
        paths(&r)
            == [
                "apps/.hidden/config.json",
                "apps/a/config.json",
                "apps/b/config.json",
                "apps/b/sub/config.json",
            ],
        "{:?}",
        paths(&r)
    );
    ensure!(r.files[1].content == br#"{"name":"a"}"#);
    ensure!(r.files[3].content == br#"{"name":"b-sub"}"#);
    // Doublestar: `*` stays in its segment, `**` spans them.
    let r = c
        .list_repo_paths(authed(files_req(
            &url,
            &["apps/*/config.json", "apps/**/values.yaml"],
            true,
        )))
        .await?
        .into_inner();
    ensure!(
        paths(&r)
            == [
                "apps/.hidden/config.json",
                "apps/a/config.json",
                "apps/b/config.json",
                "apps/c/deep/x/values.yaml",
            ],
        "{:?}",
        paths(&r)
    );
    ensure!(r.files[3].content == b"x: 1\n");
    // A pattern naming only symlinked files finds nothing (and reads nothing through them).
    for doublestar in [false, true] {
        let r = c
            .list_repo_paths(authed(files_req(
                &url,
                &["apps/d/config.json", "apps/e/*", "apps/link/*"],
                doublestar,
            )))
            .await?
            .into_inner();
        ensure!(r.files.is_empty(), "{:?}", paths(&r));
    }

    // A matching file over 1 MiB is an error, not a shorter answer.
    let e = c
        .list_repo_paths(authed(files_req(&url, &["big/*"], false)))
        .await
        .expect_err("too large");
    ensure!(
        e.code() == Code::FailedPrecondition && e.message().contains("big/blob.bin"),
        "{e:?}"
    );
    ensure!(
        e.message().contains("more than the limit of 1048576"),
        "{e:?}"
    );

    // An unknown revision, a malformed glob, and a request asking for both or neither.
    let e = c
        .list_repo_paths(authed(dirs_req(&url, "no-such-branch")))
        .await
        .expect_err("unknown revision");
    ensure!(
        e.code() == Code::NotFound && e.message().contains("no-such-branch"),
        "{e:?}"
    );
    let e = c
        .list_repo_paths(authed(dirs_req(&url, &"0".repeat(40))))
        .await
        .expect_err("unknown commit");
    ensure!(e.code() == Code::NotFound, "{e:?}");
    let e = c
        .list_repo_paths(authed(files_req(&url, &["apps/["], true)))
        .await
        .expect_err("bad glob");
    ensure!(e.code() == Code::InvalidArgument, "{e:?}");
    let mut both = files_req(&url, &["apps/*"], false);
    both.directories = true;
    let e = c.list_repo_paths(authed(both)).await.expect_err("both");
    ensure!(e.code() == Code::InvalidArgument, "{e:?}");
    let e = c
        .list_repo_paths(authed(files_req(&url, &[], false)))
        .await
        .expect_err("neither");
    ensure!(e.code() == Code::InvalidArgument, "{e:?}");

    // The controller's typed call through the pool.
    let client = manifest_client(&grpc);
    let listed = client
        .list_repo_paths(&url, None, "main", &RepoPathsQuery::Directories)
        .await?;
    ensure!(listed.commit == commit && listed.directories == want);
    let listed = client
        .list_repo_paths(
            &url,
            None,
            "main",
            &RepoPathsQuery::Files {
                globs: vec!["apps/**/values.yaml".into()],
                doublestar: true,
            },
        )
        .await?;
    ensure!(
        listed.files == [("apps/c/deep/x/values.yaml".to_string(), b"x: 1\n".to_vec())],
        "{listed:?}"
    );
    let e = client
        .list_repo_paths(&url, None, "no-such-branch", &RepoPathsQuery::Directories)
        .await
        .expect_err("unknown revision");
    ensure!(
        matches!(&e, ManifestError::Failed(m) if m.contains("no-such-branch")),
        "{e:?}"
    );
    Ok(())
}

/// A private repository is listed only for callers whose credentials read it, also once its
/// commit is in the repo-server's cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_repository_needs_its_credentials() -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir()?;
    let origin = GitServer::start(dir.path(), "private", None)?;
    let commit = origin.commit_files(
        &[("clusters/prod/config.json", r#"{"password":"hunter2"}"#)],
        "secret",
    )?;
    let auth = Auth::Basic {
        username: "deploy".into(),
        password: "s3cret".into(),
    };
    // Over https (self-signed, so `insecure`): credentials are never sent over plain http.
    let http = GitHttpServer::start(&dir.path().join("git-root"), auth, true).await?;
    let url = http.url("private.git");
    let (_rs, grpc) = repo_server(dir.path()).await?;
    let client = manifest_client(&grpc);
    let creds = |user: &str, pass: &str| RepoCreds {
        url: url.clone(),
        username: Some(user.into()),
        password: Some(pass.into()),
        insecure: true,
        ..Default::default()
    };
    let files = RepoPathsQuery::Files {
        globs: vec!["clusters/*/config.json".into()],
        doublestar: false,
    };
    let ok = client
        .list_repo_paths(&url, Some(&creds("deploy", "s3cret")), "main", &files)
        .await?;
    ensure!(ok.commit == commit, "{ok:?}");
    ensure!(
        ok.files
            == [(
                "clusters/prod/config.json".to_string(),
                br#"{"password":"hunter2"}"#.to_vec()
            )],
        "{ok:?}"
    );
    // The commit is cached now; without, or with wrong, credentials it is still refused, by
    // branch or by SHA, for files and for directories.
    let wrong = creds("deploy", "guess");
    for c in [None, Some(&wrong)] {
        for rev in ["main", commit.as_str()] {
            for q in [&files, &RepoPathsQuery::Directories] {
                let e = client
                    .list_repo_paths(&url, c, rev, q)
                    .await
                    .expect_err("listed without credentials");
                let shown = e.to_string();
                ensure!(
                    !shown.contains("hunter2") && !shown.contains("s3cret"),
                    "{shown}"
                );
            }
        }
    }
    Ok(())
}

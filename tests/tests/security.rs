//! Attacks on the real repo-server binary over gRPC on loopback, one per finding of the
//! security review (`SECURITY.md`): hostile Git trees built with Git plumbing, a client that
//! tries to poison the shared Redis Cluster cache, read private repositories without
//! credentials, inject Helm flags, hang every render slot, leak credentials into metrics.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use flotilla_loadtest::fleet::git_http::{Auth, GitHttpServer};
use flotilla_loadtest::fleet::process::{self, Proc};
use flotilla_loadtest::fleet::redis::RedisCluster;
use flotilla_proto::repo::v1 as pb;
use pb::repo_server_client::RepoServerClient;

const TOKEN: &str = "security-test-token";

fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
        .args(["-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(dir)
        .output()?;
    ensure!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Repositories under one root, served by `git daemon` (git://127.0.0.1:PORT/NAME).
struct Git {
    root: PathBuf,
    port: u16,
    daemon: std::process::Child,
}

impl Drop for Git {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

impl Git {
    fn start(root: &Path) -> Result<Self> {
        std::fs::create_dir_all(root)?;
        // A port picked by binding and releasing may be taken by a parallel test before the
        // daemon binds it: then the daemon exits, and we try another.
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            let mut daemon = flotilla_loadtest::fleet::git::daemon_command()?
                .args(["--export-all", "--reuseaddr", "--listen=127.0.0.1"])
                .arg(format!("--port={port}"))
                .arg(format!("--base-path={}", root.display()))
                .arg(root)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?;
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
                && daemon.try_wait()?.is_none()
            {
                ensure!(Instant::now() < deadline, "git daemon did not listen");
                std::thread::sleep(Duration::from_millis(20));
            }
            std::thread::sleep(Duration::from_millis(50));
            if daemon.try_wait()?.is_none() {
                return Ok(Self {
                    root: root.to_path_buf(),
                    port,
                    daemon,
                });
            }
        }
        bail!("git daemon could not bind a port")
    }

    fn url(&self, name: &str) -> String {
        format!("git://127.0.0.1:{}/{name}", self.port)
    }

    /// A repository `name` with `files` committed on main; its commit.
    fn repo(&self, name: &str, files: &[(&str, &str)]) -> Result<String> {
        let dir = self.root.join(name);
        std::fs::create_dir_all(&dir)?;
        git(&dir, &["init", "-q"])?;
        for (path, body) in files {
            let p = dir.join(path);
            std::fs::create_dir_all(p.parent().context("parent")?)?;
            std::fs::write(p, body)?;
        }
        git(&dir, &["add", "-A"])?;
        git(&dir, &["commit", "-qm", "files"])?;
        git(&dir, &["rev-parse", "HEAD"])
    }

    /// A repository whose main is one commit of a raw tree built by `build` (entries written
    /// with `git hash-object -t tree --literally`, duplicates and links as an attacker likes).
    fn hostile(&self, name: &str, build: impl Fn(&Raw) -> Result<String>) -> Result<String> {
        let dir = self.root.join(name);
        std::fs::create_dir_all(&dir)?;
        git(&dir, &["init", "-q"])?;
        let tree = build(&Raw(dir.clone()))?;
        let commit = git(&dir, &["commit-tree", &tree, "-m", "evil"])?;
        git(&dir, &["update-ref", "refs/heads/main", &commit])?;
        Ok(commit)
    }
}

/// Git plumbing in one repository.
struct Raw(PathBuf);

impl Raw {
    fn blob(&self, content: &str) -> Result<String> {
        let f = self.0.join(".raw");
        std::fs::write(&f, content)?;
        git(&self.0, &["hash-object", "-w", &f.display().to_string()])
    }

    fn tree(&self, entries: &[(&str, &str, &str)]) -> Result<String> {
        let mut body = Vec::new();
        for (mode, name, id) in entries {
            body.extend_from_slice(format!("{mode} {name}\0").as_bytes());
            body.extend(hex::decode(id)?);
        }
        let f = self.0.join(".raw");
        std::fs::write(&f, body)?;
        git(
            &self.0,
            &[
                "hash-object",
                "-t",
                "tree",
                "--literally",
                "-w",
                &f.display().to_string(),
            ],
        )
    }
}

/// The repo-server binary, started with the token, a shared Redis Cluster when given, and
/// `extra` flags.
struct RepoServer {
    proc: Proc,
    grpc: String,
    metrics: String,
}

async fn repo_server(
    dir: &Path,
    redis: Option<&RedisCluster>,
    extra: &[&str],
) -> Result<RepoServer> {
    let addr_file = dir.join("repo-server.json");
    let mut args: Vec<String> = [
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "127.0.0.1:0",
        "--address-file",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(addr_file.display().to_string());
    // Plaintext unless the caller asks for the default (TLS) with "--tls-default".
    if !extra.contains(&"--tls-default") {
        args.push("--plaintext".into());
    }
    args.push("--cache-dir".into());
    args.push(dir.join("cache").display().to_string());
    if let Some(r) = redis {
        args.push("--redis-url".into());
        args.push(r.url());
    }
    args.extend(
        extra
            .iter()
            .filter(|s| **s != "--tls-default")
            .map(|s| s.to_string()),
    );
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
    Ok(RepoServer {
        proc,
        grpc: addrs["grpc"].as_str().unwrap_or_default().to_string(),
        metrics: addrs["metrics"].as_str().unwrap_or_default().to_string(),
    })
}

async fn client(rs: &RepoServer) -> Result<RepoServerClient<tonic::transport::Channel>> {
    Ok(RepoServerClient::connect(format!("http://{}", rs.grpc)).await?)
}

fn authed<T>(msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Ok(v) = format!("Bearer {TOKEN}").parse() {
        r.metadata_mut().insert("authorization", v);
    }
    r
}

/// Resolve `main` of `url`, with no credentials.
fn resolve_req(url: impl Into<String>) -> pb::ResolveRevisionRequest {
    pb::ResolveRevisionRequest {
        repo: Some(pb::Repository {
            url: url.into(),
            ..Default::default()
        }),
        revision: "main".into(),
        chart: String::new(),
    }
}

fn source(url: &str, path: &str) -> pb::ApplicationSource {
    pb::ApplicationSource {
        repo_url: url.into(),
        path: path.into(),
        target_revision: "main".into(),
        ..Default::default()
    }
}

fn gen_req(url: &str, src: pb::ApplicationSource, commit: &str) -> pb::GenerateManifestsRequest {
    pb::GenerateManifestsRequest {
        repo: Some(pb::Repository {
            url: url.into(),
            ..Default::default()
        }),
        source: Some(src),
        commit_sha: commit.into(),
        app_name: "app".into(),
        namespace: "ns".into(),
        ..Default::default()
    }
}

fn names(resp: &pb::GenerateManifestsResponse) -> Vec<String> {
    resp.manifests
        .iter()
        .filter_map(|m| serde_json::from_str::<serde_json::Value>(m).ok())
        .map(|v| {
            v["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

const CM: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: NAME}\n";

fn cm(name: &str) -> String {
    CM.replace("NAME", name)
}

async fn metrics_text(rs: &RepoServer) -> Result<String> {
    let out = Command::new("curl")
        .args(["-s", &format!("http://{}/metrics", rs.metrics)])
        .output();
    if let Ok(o) = out
        && o.status.success()
    {
        return Ok(String::from_utf8_lossy(&o.stdout).to_string());
    }
    // No curl: a plain HTTP/1.0 GET.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(&rs.metrics).await?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .await?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).await?;
    Ok(buf)
}

/// F13 + F3(b): without the token nothing is served; file:// URLs are refused by default;
/// the binary refuses to start with neither a token nor --insecure-no-auth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_needs_the_token_and_file_urls_are_refused() -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir()?;
    let git_srv = Git::start(&dir.path().join("git"))?;
    let commit = git_srv.repo("tenant", &[("app/cm.yaml", &cm("tenant-secret-config"))])?;
    let rs = repo_server(dir.path(), None, &[]).await?;
    let mut c = client(&rs).await?;
    let url = git_srv.url("tenant");
    let anon = c
        .generate_manifests(gen_req(&url, source(&url, "app"), &commit))
        .await
        .expect_err("no token");
    ensure!(anon.code() == tonic::Code::Unauthenticated, "{anon:?}");
    let mut wrong = tonic::Request::new(gen_req(&url, source(&url, "app"), &commit));
    wrong
        .metadata_mut()
        .insert("authorization", "Bearer nope".parse()?);
    let e = c.generate_manifests(wrong).await.expect_err("wrong token");
    ensure!(e.code() == tonic::Code::Unauthenticated, "{e:?}");
    let ok = c
        .generate_manifests(authed(gen_req(&url, source(&url, "app"), &commit)))
        .await?
        .into_inner();
    ensure!(names(&ok) == ["tenant-secret-config"], "{ok:?}");
    // A file:// URL naming the repo-server's own caches (or anything else) is refused.
    let file = format!("file://{}", dir.path().join("cache").display());
    let e = c
        .resolve_revision(authed(resolve_req(file.clone())))
        .await
        .expect_err("file refused");
    ensure!(
        e.code() == tonic::Code::InvalidArgument && e.message().contains("file://"),
        "{e:?}"
    );
    // Cache directories are private and not named after the URL.
    let repos = dir.path().join("cache/repos");
    use std::os::unix::fs::PermissionsExt;
    ensure!(std::fs::metadata(&repos)?.permissions().mode() & 0o077 == 0);
    for e in std::fs::read_dir(&repos)? {
        let name = e?.file_name().to_string_lossy().to_string();
        // A salted hash (hex) says nothing of the URL; "127" alone may occur in hex by chance.
        ensure!(
            !name.contains("tenant")
                && !name.contains("127.0.0.1")
                && (name == ".salt" || name.chars().all(|c| c.is_ascii_hexdigit())),
            "{name}"
        );
    }
    drop(rs);
    // F13: by default the port speaks TLS only (a self-signed certificate when none is
    // given, written out for controllers to trust): plaintext clients get nothing.
    let tls_dir = dir.path().join("tls-default");
    std::fs::create_dir_all(&tls_dir)?;
    let rs = repo_server(&tls_dir, None, &["--tls-default"]).await?;
    let plain = RepoServerClient::connect(format!("http://{}", rs.grpc)).await;
    let refused = match plain {
        Err(_) => true,
        Ok(mut c) => c
            .generate_manifests(authed(gen_req(&url, source(&url, "app"), &commit)))
            .await
            .is_err(),
    };
    ensure!(refused, "plaintext gRPC was served");
    let ca = std::fs::read(tls_dir.join("cache/tls/self-signed.crt"))?;
    let channel = tonic::transport::Endpoint::from_shared(format!("https://{}", rs.grpc))?
        .tls_config(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(ca)),
        )?
        .connect()
        .await?;
    let ok = RepoServerClient::new(channel)
        .generate_manifests(authed(gen_req(&url, source(&url, "app"), &commit)))
        .await?
        .into_inner();
    ensure!(names(&ok) == ["tenant-secret-config"], "{ok:?}");
    // No token, no --insecure-no-auth: the binary does not start.
    let out = Command::new(process::binary("flotilla-repo-server")?)
        .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
        .env_remove("FLOTILLA_REPO_SERVER_TOKEN")
        .output()?;
    ensure!(!out.status.success());
    ensure!(String::from_utf8_lossy(&out.stderr).contains("FLOTILLA_REPO_SERVER_TOKEN"));
    drop(rs);
    Ok(())
}

/// F1, F4, F6 (loops): hostile trees write nothing outside the export, and a commit with a
/// link out of the repository (or into a loop) is refused before any renderer runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_trees_write_nothing_outside_and_links_out_refuse_the_render() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(outside.join("d"))?;
    let git_srv = Git::start(&dir.path().join("git"))?;
    let (victim_file, victim_dir) = (outside.join("pwned"), outside.join("d"));
    let dup = git_srv.hostile("dup", |r| {
        let payload = r.blob("written by flotilla-repo-server export\n")?;
        let sub = r.tree(&[("100644", "f.txt", &payload)])?;
        let cmb = r.blob(&cm("a"))?;
        let app = r.tree(&[("100644", "cm.yaml", &cmb)])?;
        let l1 = r.blob(&victim_file.display().to_string())?;
        let l2 = r.blob(&victim_dir.display().to_string())?;
        r.tree(&[
            ("40000", "app", &app),
            ("120000", "d", &l2),
            ("40000", "d", &sub),
            ("120000", "x", &l1),
            ("100644", "x", &payload),
        ])
    })?;
    let environ = git_srv.hostile("environ", |r| {
        let chart = r.blob("apiVersion: v2\nname: c\nversion: 0.1.0\n")?;
        let tpl = r.blob("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: leak}\ndata:\n  env: {{ .Files.Get \"files/environ\" | b64enc }}\n")?;
        let link = r.blob("/proc/self/environ")?;
        let files = r.tree(&[("120000", "environ", &link)])?;
        let templates = r.tree(&[("100644", "cm.yaml", &tpl)])?;
        let c = r.tree(&[
            ("100644", "Chart.yaml", &chart),
            ("40000", "files", &files),
            ("40000", "templates", &templates),
        ])?;
        r.tree(&[("40000", "chart", &c)])
    })?;
    let looping = git_srv.hostile("loop", |r| {
        let cmb = r.blob(&cm("a"))?;
        let dot = r.blob(".")?;
        let l = r.tree(&[
            ("120000", "a", &dot),
            ("120000", "b", &dot),
            ("100644", "cm.yaml", &cmb),
        ])?;
        r.tree(&[("40000", "loop", &l)])
    })?;
    let rs = repo_server(dir.path(), None, &["--helm", "/bin/false"]).await?;
    let mut c = client(&rs).await?;
    for (name, commit, path, want) in [
        ("dup", &dup, "app", "twice"),
        ("environ", &environ, "chart", "leaves the repository"),
        ("loop", &looping, "loop", "loop"),
    ] {
        let url = git_srv.url(name);
        let e = c
            .generate_manifests(authed(gen_req(&url, source(&url, path), commit)))
            .await
            .expect_err(name);
        ensure!(e.message().contains(want), "{name}: {e:?}");
        ensure!(e.message().contains("refusing commit"), "{name}: {e:?}");
    }
    ensure!(!victim_file.exists(), "a file was written through a link");
    ensure!(
        !victim_dir.join("f.txt").exists(),
        "a directory was written through a link"
    );
    Ok(())
}

/// F2: a client cannot choose where a render is stored, cannot render one repository under
/// another's source, and an entry put under a key it was not rendered for is never served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cannot_poison_the_shared_cache() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let redis = RedisCluster::start(dir.path(), 3).await?;
    let git_srv = Git::start(&dir.path().join("git"))?;
    let victim_commit = git_srv.repo("victim", &[("plain/cm.yaml", &cm("tenant-a-config"))])?;
    git_srv.repo(
        "attacker",
        &[(
            "plain/crb.yaml",
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: attacker-is-admin}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}\nsubjects: [{kind: User, name: attacker}]\n",
        )],
    )?;
    let rs = repo_server(dir.path(), Some(&redis), &[]).await?;
    let mut c = client(&rs).await?;
    let (victim, attacker) = (git_srv.url("victim"), git_srv.url("attacker"));
    let victim_src = source(&victim, "plain");
    let (victim_key, victim_app_key) =
        flotilla_cache::keys::for_source(&victim_commit, &victim_src, "", "app", "ns");
    // (a) The attacker names the victim's key for its own render, as a hard refresh.
    let attacker_commit = c
        .resolve_revision(authed(resolve_req(attacker.clone())))
        .await?
        .into_inner()
        .commit_sha;
    let mut evil = gen_req(&attacker, source(&attacker, "plain"), &attacker_commit);
    evil.cache_key = victim_key.clone();
    evil.app_cache_key = victim_app_key.clone();
    evil.no_cache = true;
    c.generate_manifests(authed(evil)).await?;
    // (b) The attacker renders its repository while claiming the victim's source.
    let mut swapped = gen_req(&attacker, victim_src.clone(), &attacker_commit);
    swapped.no_cache = true;
    let e = c
        .generate_manifests(authed(swapped))
        .await
        .expect_err("source and repository differ");
    ensure!(e.code() == tonic::Code::InvalidArgument, "{e:?}");
    // (c) The victim gets its own objects, and so does a controller reading Redis.
    let got = c
        .generate_manifests(authed(gen_req(&victim, victim_src.clone(), &victim_commit)))
        .await?
        .into_inner();
    ensure!(names(&got) == ["tenant-a-config"], "{got:?}");
    let store = flotilla_cache::ManifestStore::new(
        std::sync::Arc::new(flotilla_cache::redis::RedisStore::connect(
            flotilla_cache::redis::RedisConfig::new(&redis.url()),
            flotilla_cache::CacheMetrics::default(),
        )?),
        Duration::from_secs(600),
        flotilla_cache::CacheMetrics::default(),
    );
    let hit = store
        .get(&victim_key, &victim_app_key)
        .await
        .context("the victim's render is cached under its own key")?;
    ensure!(
        hit.manifests.objects[0]["metadata"]["name"] == "tenant-a-config",
        "{hit:?}"
    );
    // (d) An entry rendered for the attacker's source is copied under the victim's key (what the
    // old client-keyed repo-server allowed): readers reject it, its provenance names another source.
    let attacker_src = source(&attacker, "plain");
    let attacker_key =
        flotilla_cache::keys::for_source(&attacker_commit, &attacker_src, "", "app", "ns").0;
    let evil_entry = store
        .get(&attacker_key, "")
        .await
        .context("the attacker's own render is cached")?;
    let raw = flotilla_cache::codec::encode(&flotilla_cache::codec::Entry::Manifests(
        evil_entry.manifests,
    ))?;
    let direct = flotilla_cache::redis::RedisStore::connect(
        flotilla_cache::redis::RedisConfig::new(&redis.url()),
        flotilla_cache::CacheMetrics::default(),
    )?;
    use flotilla_cache::Store;
    direct
        .set(&victim_key, raw.into(), Duration::from_secs(600))
        .await?;
    ensure!(store.get(&victim_key, &victim_app_key).await.is_none());
    let again = c
        .generate_manifests(authed(gen_req(&victim, victim_src, &victim_commit)))
        .await?
        .into_inner();
    ensure!(names(&again) == ["tenant-a-config"], "{again:?}");
    Ok(())
}

/// F3(a): a commit of a private repository already in the repo-server's cache is served only
/// to callers whose credentials can read the repository now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_private_commit_needs_the_repositorys_credentials() -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir()?;
    let origin = flotilla_loadtest::fleet::GitServer::start(dir.path(), "private", None)?;
    let commit = origin.commit_files(
        &[(
            "app/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: db}\ndata: {dbPassword: hunter2}\n",
        )],
        "secret",
    )?;
    let auth = Auth::Basic {
        username: "deploy".into(),
        password: "s3cret".into(),
    };
    let http = GitHttpServer::start(&dir.path().join("git-root"), auth, true).await?;
    let url = http.url("private.git");
    let rs = repo_server(dir.path(), None, &[]).await?;
    let mut c = client(&rs).await?;
    let with = |user: &str, pass: &str| pb::Repository {
        url: url.clone(),
        username: user.into(),
        password: pass.into(),
        insecure: true,
        ..Default::default()
    };
    let req = |repo: pb::Repository| pb::GenerateManifestsRequest {
        repo: Some(repo),
        ..gen_req(&url, source(&url, "app"), &commit)
    };
    // Tenant A, with the credentials, renders it: the commit is now in the cache.
    let ok = c
        .generate_manifests(authed(req(with("deploy", "s3cret"))))
        .await?
        .into_inner();
    ensure!(names(&ok) == ["db"], "{ok:?}");
    // Anyone else asks for the same commit without, or with wrong, credentials.
    for repo in [with("", ""), with("deploy", "guess")] {
        let e = c
            .generate_manifests(authed(req(repo)))
            .await
            .expect_err("served without credentials");
        ensure!(!e.message().contains("hunter2"), "{e:?}");
        let e = c
            .resolve_revision(authed(pb::ResolveRevisionRequest {
                repo: Some(with("", "")),
                revision: commit.clone(),
                chart: String::new(),
            }))
            .await
            .expect_err("resolved without credentials");
        ensure!(!e.message().contains("s3cret"), "{e:?}");
    }
    Ok(())
}

/// F5, F6, F9 and F12 through the binary: a release name cannot become a Helm flag; renders
/// that never end are killed (their whole process group) and do not starve another tenant;
/// a plugin's writes do not reach other renders of the commit; credentials in a URL reach
/// neither metrics nor errors; SIGTERM ends the server promptly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renders_are_bounded_confined_and_leak_nothing() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let git_srv = Git::start(&dir.path().join("git"))?;
    let marker = dir.path().join("grandchild-survived");
    let commit = git_srv.repo(
        "tenant",
        &[
            ("plain/cm.yaml", &cm("plain")),
            (
                "chart/Chart.yaml",
                "apiVersion: v2\nname: c\nversion: 0.1.0\n",
            ),
            (
                "chart/templates/cm.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: '{{ .Release.Name }}'}\n",
            ),
            ("writer/cm.yaml", &cm("writer")),
            // 2^40 bytes by doubling a string: the evaluation must die, not the server.
            (
                "jsonnet-bomb/evil.jsonnet",
                "local f(s, n) = if n == 0 then s else f(s + s, n - 1);\n{apiVersion: 'v1', kind: 'ConfigMap', metadata: {name: 'x'}, data: {x: f('x', 40)}}\n",
            ),
        ],
    )?;
    git_srv.repo("good", &[("app/cm.yaml", &cm("good"))])?;
    // A fake helm that records its argv, so we see what reached it.
    let argv_log = dir.path().join("helm-argv");
    let helm = dir.path().join("helm");
    std::fs::write(
        &helm,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > {}\nprintf 'apiVersion: v1\\nkind: ConfigMap\\nmetadata: {{name: from-helm}}\\n'\n",
            argv_log.display()
        ),
    )?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&helm, std::fs::Permissions::from_mode(0o755))?;
    // (`--plugin` splits on ';', so none in the commands.)
    let spin = format!(
        "spin=(sleep 4 && touch {}) & while true\ndo :\ndone",
        marker.display()
    );
    let rs = repo_server(
        dir.path(),
        None,
        &[
            "--helm",
            &helm.display().to_string(),
            "--render-timeout-seconds",
            "2",
            "--parallelism",
            "2",
            "--plugin",
            &spin,
            "--plugin",
            "envleak=printf 'apiVersion: v1\\nkind: ConfigMap\\nmetadata: {name: leak}\\ndata: {t: \"%s\", r: \"%s\"}\\n' \"$FLOTILLA_REPO_SERVER_TOKEN\" \"$FLOTILLA_REDIS_URL\"",
            "--plugin",
            "scribble=printf 'apiVersion: v1\\nkind: ConfigMap\\nmetadata: {name: scribbled}\\n' > ../plain/evil.yaml && cat cm.yaml",
        ],
    )
    .await?;
    let mut c = client(&rs).await?;
    let url = git_srv.url("tenant");

    // F5: a release name that is a flag never reaches helm.
    let mut helm_src = source(&url, "chart");
    helm_src.kind = Some(pb::application_source::Kind::Helm(pb::HelmSource {
        release_name: "--post-renderer=/bin/sh".into(),
        ..Default::default()
    }));
    let e = c
        .generate_manifests(authed(gen_req(&url, helm_src.clone(), &commit)))
        .await
        .expect_err("flag refused");
    ensure!(e.message().contains("release name"), "{e:?}");
    ensure!(!argv_log.exists(), "helm ran with an attacker's argv");
    if let Some(pb::application_source::Kind::Helm(h)) = &mut helm_src.kind {
        h.release_name = "web".into();
    }
    c.generate_manifests(authed(gen_req(&url, helm_src, &commit)))
        .await?;
    let argv = std::fs::read_to_string(&argv_log)?;
    ensure!(argv.contains("--name-template\nweb\n"), "{argv}");

    // F9: the plugin writes ../plain/evil.yaml in its tree; the plain render of the same
    // commit afterwards does not see it.
    let mut scribble = source(&url, "writer");
    scribble.kind = Some(pb::application_source::Kind::Plugin(pb::PluginSource {
        name: "scribble".into(),
        ..Default::default()
    }));
    let out = c
        .generate_manifests(authed(gen_req(&url, scribble, &commit)))
        .await?
        .into_inner();
    ensure!(names(&out) == ["writer"], "{out:?}");
    let plain = c
        .generate_manifests(authed(gen_req(&url, source(&url, "plain"), &commit)))
        .await?
        .into_inner();
    ensure!(
        names(&plain) == ["plain"],
        "the plugin's write leaked: {plain:?}"
    );

    // A Jsonnet bomb dies in its memory-capped child process; the server serves on.
    let t = Instant::now();
    let e = c
        .generate_manifests(authed(gen_req(&url, source(&url, "jsonnet-bomb"), &commit)))
        .await
        .expect_err("bomb refused");
    ensure!(e.message().contains("evil.jsonnet"), "{e:?}");
    println!("Jsonnet bomb refused in {:?}: {}", t.elapsed(), e.message());
    ensure!(
        t.elapsed() < Duration::from_secs(30),
        "took {:?}",
        t.elapsed()
    );
    ensure!(rs.proc.pid().is_some());
    let again = c
        .generate_manifests(authed(gen_req(&url, source(&url, "plain"), &commit)))
        .await?
        .into_inner();
    ensure!(names(&again) == ["plain"], "{again:?}");

    // A plugin sees none of the repo-server's secrets (token, Redis URL).
    let mut leak = source(&url, "writer");
    leak.kind = Some(pb::application_source::Kind::Plugin(pb::PluginSource {
        name: "envleak".into(),
        ..Default::default()
    }));
    let out = c
        .generate_manifests(authed(gen_req(&url, leak, &commit)))
        .await?
        .into_inner();
    ensure!(out.manifests.len() == 1, "{out:?}");
    ensure!(
        !out.manifests[0].contains(TOKEN),
        "the token reached a plugin: {out:?}"
    );
    ensure!(out.manifests[0].contains(r#""t":"""#), "{out:?}");

    // F6: four renders that never end, more than the two slots; another tenant still renders
    // within about one timeout, and every spinner is killed with its children.
    let started = Instant::now();
    let mut spinners = Vec::new();
    for i in 0..4 {
        let mut src = source(&url, "plain");
        src.kind = Some(pb::application_source::Kind::Plugin(pb::PluginSource {
            name: "spin".into(),
            env: [("I".to_string(), i.to_string())].into(),
            ..Default::default()
        }));
        let mut c = c.clone();
        let req = gen_req(&url, src, &commit);
        spinners.push(tokio::spawn(async move {
            c.generate_manifests(authed(req)).await
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let good = git_srv.url("good");
    let got = c
        .generate_manifests(authed(gen_req(&good, source(&good, "app"), "")))
        .await?
        .into_inner();
    ensure!(names(&got) == ["good"]);
    let good_took = started.elapsed();
    for s in spinners {
        let e = s.await?.expect_err("spinner killed");
        ensure!(e.message().contains("timed out"), "{e:?}");
    }
    println!("another tenant rendered in {good_took:?} behind 4 endless renders on 2 slots");
    ensure!(
        good_took < Duration::from_secs(8),
        "another tenant waited {good_took:?} behind hostile renders"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    ensure!(!marker.exists(), "a spinner's child outlived the timeout");

    // F12: credentials in a repository URL reach neither the error nor the metrics.
    let leaky = format!(
        "http://alice:TOPSECRET-TOKEN@127.0.0.1:{}/x.git",
        git_srv.port
    );
    let e = c
        .resolve_revision(authed(resolve_req(leaky)))
        .await
        .expect_err("not a repository");
    ensure!(!e.message().contains("TOPSECRET"), "{e:?}");
    let m = metrics_text(&rs).await?;
    ensure!(m.contains("flotilla_repo"), "scraped");
    ensure!(!m.contains("TOPSECRET"), "credentials in metrics");
    let mut rs = rs;
    let t = Instant::now();
    rs.proc.stop(Duration::from_secs(10));
    println!("SIGTERM to exit: {:?}", t.elapsed());
    ensure!(
        t.elapsed() < Duration::from_secs(8),
        "SIGTERM took {:?}",
        t.elapsed()
    );
    let log = std::fs::read_to_string(&rs.proc.log)?;
    if log.contains("TOPSECRET") {
        bail!("credentials in the log");
    }
    Ok(())
}

//! The Git details Argo CD users rely on, against real repositories (`git daemon`, and Git's
//! own `git http-backend` behind a test server that also speaks the Git LFS batch API):
//! annotated and lightweight tags; semver `targetRevision`s over the tags (pre-releases only
//! when asked, `v` prefixes, an existing name winning over a constraint); submodules (relative
//! and absolute URLs, nested, credentials only to the superproject's origin, hostile
//! `.gitmodules` refused); and `enableLfs` (pointers replaced, tampered or oversized objects
//! refused, credentials only to the repository's origin).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use flotilla_loadtest::fleet::GitServer;
use flotilla_loadtest::fleet::git::git;
use flotilla_loadtest::fleet::lfs_http::{self, LfsGitServer};
use flotilla_repo_server::git::{self, Credentials, ExportOptions, GitCache, GitError, Remote};
use flotilla_repo_server::git_lfs::LfsLimits;
use flotilla_repo_server::transport::TransportConfig;

const T: Duration = Duration::from_secs(30);

/// A cache with `url` fetched into it.
struct Fetched {
    dir: tempfile::TempDir,
    cache: GitCache,
    url: String,
    creds: Credentials,
}

fn fetched(url: &str, creds: Credentials) -> Result<Fetched> {
    let dir = tempfile::tempdir()?;
    let cache = GitCache::open(&dir.path().join("cache"))?;
    git::fetch(&cache, url, &creds, &TransportConfig::default(), T)?;
    Ok(Fetched {
        dir,
        cache,
        url: url.to_string(),
        creds,
    })
}

impl Fetched {
    fn resolve(&self, revision: &str) -> Result<String, GitError> {
        let repo = git::open_cache_as(&self.cache, &self.url, &self.creds)?;
        git::resolve(&repo, &self.url, revision)
    }

    /// Export `commit` with `opts` into a new directory; its path.
    fn export(&self, commit: &str, opts: &ExportOptions) -> Result<PathBuf, GitError> {
        let out = tempfile::Builder::new()
            .prefix("export-")
            .tempdir_in(self.dir.path())
            .map_err(|source| GitError::Write {
                path: self.dir.path().to_path_buf(),
                source,
            })?
            .keep();
        let dest = out.join("tree");
        let transport = TransportConfig::default();
        let remote = Remote {
            cache: &self.cache,
            url: &self.url,
            creds: &self.creds,
            transport: &transport,
        };
        let repo = git::open_cache_as(&self.cache, &self.url, &self.creds)?;
        git::export_with(&repo, &remote, commit, &dest, opts)?;
        Ok(dest)
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

#[test]
fn annotated_and_lightweight_tags_resolve_to_their_commits() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let s = GitServer::start(dir.path(), "tags", None)?;
    let first = s.commit_files(&[("app/cm.yaml", "x: 1\n")], "one")?;
    git(
        &s.work,
        &["tag", "-a", "v1.2.0", "-m", "release 1.2.0", &first],
    )?;
    let second = s.commit_files(&[("app/cm.yaml", "x: 2\n")], "two")?;
    git(&s.work, &["tag", "light", &second])?;
    // A tag of a tag peels through both.
    git(&s.work, &["tag", "-a", "outer", "-m", "outer", "v1.2.0"])?;
    git(&s.work, &["push", "-q", "--tags", "origin"])?;
    let tag_object = git(&s.work, &["rev-parse", "v1.2.0"])?;
    ensure!(tag_object != first, "an annotated tag is its own object");

    let f = fetched(&s.url(), Credentials::default())?;
    ensure!(f.resolve("v1.2.0")? == first, "annotated tag");
    ensure!(f.resolve("refs/tags/v1.2.0")? == first, "full tag name");
    ensure!(f.resolve("outer")? == first, "nested annotated tag");
    ensure!(f.resolve("light")? == second, "lightweight tag");
    ensure!(f.resolve("main")? == second);
    let tree = f.export(&f.resolve("v1.2.0")?, &ExportOptions::default())?;
    ensure!(read(&tree.join("app/cm.yaml"))? == "x: 1\n");
    Ok(())
}

#[test]
fn semver_revisions_pick_the_highest_matching_tag() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let s = GitServer::start(dir.path(), "semver", None)?;
    let mut commits = std::collections::HashMap::new();
    for (i, tag) in [
        "v1.0.0",
        "v1.2.0",
        "1.2.5",
        "v1.3.0-rc.1",
        "v1.10.0",
        "v2.0.0",
        "v2.1.0-beta.1",
        "not-semver",
    ]
    .iter()
    .enumerate()
    {
        let c = s.commit_files(&[("v.yaml", &format!("n: {i}\n"))], tag)?;
        if i % 2 == 0 {
            git(&s.work, &["tag", "-a", tag, "-m", tag])?;
        } else {
            git(&s.work, &["tag", tag])?;
        }
        commits.insert(tag.to_string(), c);
    }
    // A branch named like a constraint: the name wins.
    git(&s.work, &["branch", "1.2", &commits["v1.0.0"]])?;
    git(&s.work, &["push", "-q", "--tags", "origin", "1.2"])?;
    let f = fetched(&s.url(), Credentials::default())?;
    for (constraint, tag) in [
        (">=1.0.0 <2.0.0", "v1.10.0"),
        (">=1.0.0, <2.0.0", "v1.10.0"),
        ("1.2.*", "1.2.5"),
        ("1.2.x", "1.2.5"),
        ("~1.2.0", "1.2.5"),
        ("^1.2", "v1.10.0"),
        ("^1.2.0", "v1.10.0"),
        ("1.x", "v1.10.0"),
        ("*", "v2.0.0"),
        ("v2.x", "v2.0.0"),
        ("1.2.0", "v1.2.0"),
        // Pre-releases only when the constraint names one.
        ("*-0", "v2.1.0-beta.1"),
        (">=0.0.0-0", "v2.1.0-beta.1"),
        (">=1.3.0-0 <1.4.0-0", "v1.3.0-rc.1"),
        // Exact names first.
        ("v1.2.0", "v1.2.0"),
        ("1.2.5", "1.2.5"),
        ("not-semver", "not-semver"),
    ] {
        let got = f.resolve(constraint)?;
        ensure!(
            got == commits[tag],
            "{constraint:?} resolved to {got}, want {tag} ({})",
            commits[tag]
        );
    }
    ensure!(
        f.resolve("1.2")? == commits["v1.0.0"],
        "an existing branch wins over the constraint 1.2"
    );
    ensure!(f.resolve(&commits["v1.2.0"][..8])? == commits["v1.2.0"]);
    let err = f.resolve(">=3.0.0").expect_err("nothing matches");
    ensure!(
        matches!(err, GitError::UnknownRevision { .. }),
        "{err} is UnknownRevision"
    );
    ensure!(
        err.to_string().contains(">=3.0.0") && err.to_string().contains("semver"),
        "{err}"
    );
    ensure!(f.resolve(">=1.3.0 <1.4.0").is_err(), "no release in 1.3");
    // A newer matching tag is picked up by the next fetch.
    let newer = s.commit_files(&[("v.yaml", "n: newer\n")], "1.2.9")?;
    git(&s.work, &["tag", "v1.2.9"])?;
    git(&s.work, &["push", "-q", "--tags", "origin"])?;
    let f = fetched(&s.url(), Credentials::default())?;
    ensure!(f.resolve("1.2.*")? == newer);
    Ok(())
}

/// Run git with `input` on its stdin; its trimmed stdout.
fn git_stdin(dir: &Path, args: &[&str], input: &str) -> Result<String> {
    use std::io::Write;
    let mut child = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(input.as_bytes())?;
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Commit `files` and the gitlinks `links` (path, commit) in `s`'s working copy and push;
/// returns the commit.
fn commit_with_gitlinks(
    s: &GitServer,
    files: &[(&str, &str)],
    links: &[(&str, &str)],
    message: &str,
) -> Result<String> {
    s.commit_with_gitlinks(files, links, message)
}

#[test]
fn submodules_are_checked_out_recursively() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let leaf = GitServer::start(dir.path(), "leaf", None)?;
    let leaf_commit = leaf.commit_files(&[("leaf.yaml", "leaf: 1\n")], "leaf")?;
    // The next commit is not the gitlinked one: the export takes the gitlink's.
    leaf.commit_files(&[("leaf.yaml", "leaf: 2\n")], "leaf moves on")?;
    let lib = GitServer::start(dir.path(), "lib", None)?;
    let lib_commit = commit_with_gitlinks(
        &lib,
        &[
            ("lib.yaml", "lib: 1\n"),
            (
                ".gitmodules",
                "[submodule \"leaf\"]\n\tpath = nested/leaf\n\turl = ../leaf.git\n",
            ),
        ],
        &[("nested/leaf", &leaf_commit)],
        "lib with a nested submodule",
    )?;
    let app = GitServer::start(dir.path(), "app", None)?;
    let gitmodules = format!(
        "[submodule \"lib\"]\n\tpath = vendor/lib\n\turl = ../lib.git\n\
         [submodule \"abs\"]\n\tpath = abs\n\turl = {}\n",
        leaf.url()
    );
    let app_commit = commit_with_gitlinks(
        &app,
        &[("app.yaml", "app: 1\n"), (".gitmodules", &gitmodules)],
        &[("vendor/lib", &lib_commit), ("abs", &leaf_commit)],
        "app with submodules",
    )?;

    let f = fetched(&app.url(), Credentials::default())?;
    let tree = f.export(&app_commit, &ExportOptions::default())?;
    ensure!(read(&tree.join("app.yaml"))? == "app: 1\n");
    ensure!(
        read(&tree.join("vendor/lib/lib.yaml"))? == "lib: 1\n",
        "relative URL"
    );
    ensure!(
        read(&tree.join("vendor/lib/nested/leaf/leaf.yaml"))? == "leaf: 1\n",
        "nested submodule at its gitlinked commit"
    );
    ensure!(
        read(&tree.join("abs/leaf.yaml"))? == "leaf: 1\n",
        "absolute URL"
    );
    ensure!(!tree.join("vendor/lib/.git").exists());

    // Off (ARGOCD_GIT_MODULES_ENABLED=false), and plain `export`: empty directories.
    let off = ExportOptions {
        submodules: false,
        ..ExportOptions::default()
    };
    let tree = f.export(&app_commit, &off)?;
    ensure!(
        tree.join("vendor/lib").is_dir()
            && std::fs::read_dir(tree.join("vendor/lib"))?.next().is_none()
    );
    let plain = f.dir.path().join("plain");
    git::export(
        &git::open_cache_as(&f.cache, &f.url, &f.creds)?,
        &f.url,
        &app_commit,
        &plain,
    )?;
    ensure!(plain.join("abs").is_dir() && !plain.join("abs/leaf.yaml").exists());

    // A depth limit below the nesting refuses the commit.
    let shallow = ExportOptions {
        max_submodule_depth: 1,
        ..ExportOptions::default()
    };
    let err = f.export(&app_commit, &shallow).expect_err("too deep");
    ensure!(err.to_string().contains("deeper"), "{err}");
    // So does one with more submodules than allowed (all levels count).
    let few = ExportOptions {
        max_submodules: 2,
        ..ExportOptions::default()
    };
    let err = f.export(&app_commit, &few).expect_err("too many");
    ensure!(err.to_string().contains("more than 2 submodules"), "{err}");
    Ok(())
}

#[test]
fn hostile_gitmodules_are_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let lib = GitServer::start(dir.path(), "lib", None)?;
    let lib_commit = lib.commit_files(&[("lib.yaml", "lib: 1\n")], "lib")?;
    let evil = GitServer::start(dir.path(), "evil", None)?;
    let pwned = dir.path().join("pwned");
    let module =
        |path: &str, url: &str| format!("[submodule \"m\"]\n\tpath = {path}\n\turl = {url}\n");
    let cases: Vec<(String, &str, &str)> = vec![
        (module("sub", "file:///etc"), "sub", "file://"),
        (module("sub", "../../../etc"), "sub", "climbs out"),
        (module("sub", "../../etc/passwd"), "sub", "climbs out"),
        (
            module("sub", &format!("ext::sh -c touch% {}", pwned.display())),
            "sub",
            "whitespace",
        ),
        (
            module("sub", &format!("ext::touch%20{}", pwned.display())),
            "sub",
            "not https",
        ),
        (
            module("sub", "ssh://-oProxyCommand=touch%20pwned/lib.git"),
            "sub",
            "'-'",
        ),
        (
            module("sub", "git@-oProxyCommand=x:lib.git"),
            "sub",
            "not https",
        ),
        (
            module("sub", "https://host/a/../../lib.git"),
            "sub",
            "dot-segment",
        ),
        (module("sub", "/etc"), "sub", "not https"),
        (
            module("../../outside", "../lib.git"),
            "sub",
            "leaves the tree",
        ),
        (module("/tmp/outside", "../lib.git"), "sub", "absolute"),
        (module(".git/hooks", "../lib.git"), "sub", ".git"),
        // A gitlink no .gitmodules entry names.
        (module("elsewhere", "../lib.git"), "sub", "no URL"),
    ];
    let mut commits = Vec::new();
    for (gitmodules, link, _) in &cases {
        commits.push(commit_with_gitlinks(
            &evil,
            &[(".gitmodules", gitmodules)],
            &[(link, &lib_commit)],
            "evil",
        )?);
        git(&evil.work, &["rm", "-q", "--cached", link])?;
    }
    // A .gitmodules that is a symlink (to a file that would pass); Git itself refuses to
    // add one, so the tree is made by hand.
    let good = evil.work.join("good-modules");
    std::fs::write(&good, module("sub", "../lib.git"))?;
    let good_blob = git(&evil.work, &["hash-object", "-w", "good-modules"])?;
    std::fs::write(evil.work.join("link-target"), "good-modules")?;
    let link_blob = git(&evil.work, &["hash-object", "-w", "link-target"])?;
    let tree = git_stdin(
        &evil.work,
        &["mktree"],
        &format!(
            "100644 blob {good_blob}\tgood-modules\n120000 blob {link_blob}\t.gitmodules\n\
             160000 commit {lib_commit}\tsub\n"
        ),
    )?;
    let symlinked = git(
        &evil.work,
        &[
            "commit-tree",
            &tree,
            "-p",
            "HEAD",
            "-m",
            "symlinked .gitmodules",
        ],
    )?;
    git(
        &evil.work,
        &[
            "push",
            "-q",
            "-f",
            "origin",
            &format!("{symlinked}:refs/heads/main"),
        ],
    )?;

    let f = fetched(&evil.url(), Credentials::default())?;
    for allow_file_urls in [false, true] {
        let opts = ExportOptions {
            allow_file_urls,
            ..ExportOptions::default()
        };
        for ((gitmodules, _, why), commit) in cases.iter().zip(&commits) {
            let err = f
                .export(commit, &opts)
                .err()
                .with_context(|| format!("refused: {gitmodules}"))?;
            ensure!(
                matches!(
                    err,
                    GitError::UnsafeTree { .. } | GitError::Submodule { .. }
                ),
                "{gitmodules}: {err}"
            );
            ensure!(err.to_string().contains(why), "{gitmodules}: {err}");
        }
        let err = f
            .export(&symlinked, &opts)
            .expect_err("symlinked .gitmodules");
        ensure!(err.to_string().contains("not a regular file"), "{err}");
    }
    ensure!(!pwned.exists(), "nothing ran");
    ensure!(!dir.path().join("outside").exists());
    Ok(())
}

/// A superproject `name` next to `lib.git` whose submodules are `same` (a relative URL:
/// wherever the superproject is served from) and `other` (`other_url`).
fn app_with_submodules(
    dir: &Path,
    name: &str,
    lib_commit: &str,
    other_url: &str,
) -> Result<String> {
    let app = GitServer::start(dir, name, None)?;
    let gitmodules = format!(
        "[submodule \"same\"]\n\tpath = same\n\turl = ../lib.git\n\
         [submodule \"other\"]\n\tpath = other\n\turl = {other_url}\n"
    );
    commit_with_gitlinks(
        &app,
        &[("app.yaml", "app: 1\n"), (".gitmodules", &gitmodules)],
        &[("same", lib_commit), ("other", lib_commit)],
        "app",
    )
}

fn basic_insecure() -> Credentials {
    Credentials {
        username: Some("deploy".into()),
        password: Some("s3cret".into()),
        insecure: true,
        ..Credentials::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submodule_credentials_go_only_to_the_superprojects_origin() -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("git-root");
    std::fs::create_dir_all(&root)?;
    let auth = Some(("deploy", "s3cret"));
    // Three servers of the same repositories: three origins (ports).
    let main = LfsGitServer::start(&root, auth, true).await?;
    let locked = LfsGitServer::start(&root, auth, true).await?;
    let open = LfsGitServer::start(&root, None, true).await?;
    let lib = GitServer::start(dir.path(), "lib", None)?;
    let lib_commit = lib.commit_files(&[("lib.yaml", "lib: 1\n")], "lib")?;
    let locked_commit = app_with_submodules(
        dir.path(),
        "app-locked",
        &lib_commit,
        &locked.url("lib.git"),
    )?;
    let open_commit =
        app_with_submodules(dir.path(), "app-open", &lib_commit, &open.url("lib.git"))?;

    // Another origin that wants credentials: fetched anonymously, so refused, clearly.
    let err = export_blocking(
        main.url("app-locked.git"),
        basic_insecure(),
        locked_commit,
        ExportOptions::default(),
    )
    .await?
    .err()
    .context("an anonymous fetch of a locked host fails")?;
    ensure!(matches!(err, GitError::Submodule { .. }), "{err}");
    ensure!(
        err.to_string().contains("another host") && err.to_string().contains("other"),
        "{err}"
    );
    ensure!(!err.to_string().contains("s3cret"), "{err}");
    let seen = locked.requests();
    ensure!(
        !seen.is_empty() && seen.iter().all(|r| r.authorization.is_none()),
        "no credentials to another origin: {seen:?}"
    );

    // An open one: fetched anonymously, and the export succeeds.
    let (_d, tree) = export_blocking(
        main.url("app-open.git"),
        basic_insecure(),
        open_commit,
        ExportOptions::default(),
    )
    .await??;
    ensure!(read(&tree.join("same/lib.yaml"))? == "lib: 1\n");
    ensure!(read(&tree.join("other/lib.yaml"))? == "lib: 1\n");
    let seen = main.requests();
    ensure!(
        seen.iter()
            .any(|r| r.path.starts_with("/lib.git/") && r.authorization.is_some()),
        "the same-origin submodule is fetched with the credentials: {seen:?}"
    );
    let seen = open.requests();
    ensure!(
        !seen.is_empty() && seen.iter().all(|r| r.authorization.is_none()),
        "{seen:?}"
    );
    Ok(())
}

/// Files of the LFS test repository: pointers (one used twice, one executable), a plain file
/// and a pointer-like file that is no pointer.
fn lfs_repo(dir: &Path, server: &LfsGitServer) -> Result<(String, Vec<u8>, Vec<u8>)> {
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let script = b"#!/bin/sh\necho from lfs\n".to_vec();
    let p_big = server.add_object(&big);
    let p_script = server.add_object(&script);
    let s = GitServer::start(dir, "media", None)?;
    let fake = format!(
        "version https://git-lfs.github.com/spec/v1\noid sha256:{}\nsize 1\n",
        "Z".repeat(64)
    );
    s.write(&[
        ("data/big.bin", &p_big),
        ("data/copy.bin", &p_big),
        ("bin/run.sh", &p_script),
        ("app/cm.yaml", "kind: ConfigMap\n"),
        ("fake.txt", &fake),
    ])?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        s.work.join("bin/run.sh"),
        std::fs::Permissions::from_mode(0o755),
    )?;
    let commit = s.commit("pointers")?;
    Ok((commit, big, script))
}

fn lfs_creds() -> Credentials {
    Credentials {
        enable_lfs: true,
        ..basic_insecure()
    }
}

async fn export_blocking(
    url: String,
    creds: Credentials,
    commit: String,
    opts: ExportOptions,
) -> Result<Result<(tempfile::TempDir, PathBuf), GitError>> {
    tokio::task::spawn_blocking(
        move || -> Result<Result<(tempfile::TempDir, PathBuf), GitError>> {
            let f = fetched(&url, creds)?;
            Ok(f.export(&commit, &opts).map(|tree| (f.dir, tree)))
        },
    )
    .await?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lfs_pointers_are_replaced_by_their_objects() -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("git-root");
    let server = LfsGitServer::start(&root, Some(("deploy", "s3cret")), true).await?;
    let (commit, big, script) = lfs_repo(dir.path(), &server)?;
    let url = server.url("media.git");

    // Without enableLfs the pointers stay.
    let (_d, tree) = export_blocking(
        url.clone(),
        basic_insecure(),
        commit.clone(),
        ExportOptions::default(),
    )
    .await??;
    ensure!(read(&tree.join("data/big.bin"))?.starts_with("version https://git-lfs"));

    let (_d, tree) = export_blocking(
        url.clone(),
        lfs_creds(),
        commit.clone(),
        ExportOptions::default(),
    )
    .await??;
    ensure!(
        std::fs::read(tree.join("data/big.bin"))? == big,
        "pointer replaced"
    );
    ensure!(
        std::fs::read(tree.join("data/copy.bin"))? == big,
        "shared object"
    );
    ensure!(std::fs::read(tree.join("bin/run.sh"))? == script);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(tree.join("bin/run.sh"))?
        .permissions()
        .mode();
    ensure!(mode & 0o111 != 0, "still executable: {mode:o}");
    ensure!(read(&tree.join("app/cm.yaml"))? == "kind: ConfigMap\n");
    ensure!(
        read(&tree.join("fake.txt"))?.contains("ZZZZ"),
        "no pointer, kept"
    );
    let reqs = server.requests();
    let gets: Vec<_> = reqs
        .iter()
        .filter(|r| r.path.starts_with("/lfs/objects/"))
        .collect();
    ensure!(gets.len() == 2, "each object once: {gets:?}");
    ensure!(
        reqs.iter()
            .filter(|r| r.path.ends_with("/info/lfs/objects/batch") || r.path.starts_with("/lfs/"))
            .all(|r| r.authorization.is_some()),
        "the repository's own origin gets its credentials"
    );

    // Objects on another host get the batch answer's headers, never the credentials.
    let objects = LfsGitServer::start(&root, None, true).await?;
    objects.add_object(&big);
    objects.add_object(&script);
    server.objects_at(&objects.base());
    let (_d, tree) = export_blocking(
        url.clone(),
        lfs_creds(),
        commit.clone(),
        ExportOptions::default(),
    )
    .await??;
    ensure!(std::fs::read(tree.join("data/big.bin"))? == big);
    let foreign = objects.requests();
    ensure!(
        !foreign.is_empty() && foreign.iter().all(|r| r.authorization.is_none()),
        "{foreign:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lfs_objects_that_are_tampered_with_or_too_large_are_refused() -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("git-root");
    let server = LfsGitServer::start(&root, None, true).await?;
    let (commit, big, script) = lfs_repo(dir.path(), &server)?;
    let url = server.url("media.git");
    let anon_lfs = Credentials {
        enable_lfs: true,
        insecure: true,
        ..Credentials::default()
    };

    // Over the size limit: refused before anything is downloaded.
    let small = ExportOptions {
        lfs: LfsLimits {
            max_object_bytes: 1000,
            ..LfsLimits::default()
        },
        ..ExportOptions::default()
    };
    let err = export_blocking(url.clone(), anon_lfs.clone(), commit.clone(), small)
        .await?
        .err()
        .context("too large")?;
    ensure!(matches!(err, GitError::Lfs { .. }), "{err}");
    ensure!(err.to_string().contains("larger than the limit"), "{err}");
    ensure!(
        !server
            .requests()
            .iter()
            .any(|r| r.path.starts_with("/lfs/objects/")),
        "nothing downloaded"
    );
    let total = ExportOptions {
        lfs: LfsLimits {
            max_total_bytes: 100_000,
            ..LfsLimits::default()
        },
        ..ExportOptions::default()
    };
    let err = export_blocking(url.clone(), anon_lfs.clone(), commit.clone(), total)
        .await?
        .err()
        .context("too large in total")?;
    ensure!(err.to_string().contains("larger than the limit"), "{err}");

    // Tampered content: refused by its digest.
    let mut evil = big.clone();
    evil[1000] ^= 0xff;
    server.tamper(&big, &evil);
    let err = export_blocking(
        url.clone(),
        anon_lfs.clone(),
        commit.clone(),
        ExportOptions::default(),
    )
    .await?
    .err()
    .context("tampered")?;
    ensure!(matches!(err, GitError::Lfs { .. }), "{err}");
    ensure!(err.to_string().contains("SHA-256"), "{err}");
    // More bytes than the pointer says: refused too.
    let mut longer = big.clone();
    longer.extend_from_slice(b"trailing");
    server.tamper(&big, &longer);
    let err = export_blocking(
        url.clone(),
        anon_lfs.clone(),
        commit.clone(),
        ExportOptions::default(),
    )
    .await?
    .err()
    .context("longer")?;
    ensure!(err.to_string().contains("more"), "{err}");
    // A missing object is a clear error naming it.
    let missing = [lfs_http::oid(&big), lfs_http::oid(&script)];
    let s2 = LfsGitServer::start(&root, None, true).await?;
    let err = export_blocking(
        s2.url("media.git"),
        anon_lfs,
        commit,
        ExportOptions::default(),
    )
    .await?
    .err()
    .context("missing")?;
    ensure!(
        err.to_string().contains("Object does not exist")
            && missing.iter().any(|m| err.to_string().contains(m.as_str())),
        "{err}"
    );
    Ok(())
}

#[test]
fn a_gitlink_no_branch_reaches_is_fetched_by_its_id() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let lib = GitServer::start(dir.path(), "lib", None)?;
    lib.commit_files(&[("lib.yaml", "lib: 1\n")], "lib")?;
    let hidden = lib.commit_files(&[("lib.yaml", "lib: hidden\n")], "hidden")?;
    // Rewritten history: the gitlinked commit is on no branch or tag any more.
    git(&lib.work, &["reset", "-q", "--hard", "HEAD~1"])?;
    git(&lib.work, &["push", "-q", "-f", "origin", "HEAD:main"])?;
    let app = GitServer::start(dir.path(), "app", None)?;
    let gitmodules = "[submodule \"lib\"]\n\tpath = lib\n\turl = ../lib.git\n";
    let found = commit_with_gitlinks(
        &app,
        &[(".gitmodules", gitmodules)],
        &[("lib", &hidden)],
        "app",
    )?;
    git(&app.work, &["rm", "-q", "--cached", "lib"])?;
    let gone = commit_with_gitlinks(&app, &[], &[("lib", &"1".repeat(40))], "app")?;
    let f = fetched(&app.url(), Credentials::default())?;
    let tree = f.export(&found, &ExportOptions::default())?;
    ensure!(read(&tree.join("lib/lib.yaml"))? == "lib: hidden\n");
    let err = f
        .export(&gone, &ExportOptions::default())
        .expect_err("no such commit");
    ensure!(matches!(err, GitError::Submodule { .. }), "{err}");
    ensure!(err.to_string().contains("has no commit 1111"), "{err}");
    Ok(())
}

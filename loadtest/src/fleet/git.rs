//! A real Git server for tests and the demo: a working copy that commits, pushed to a bare
//! repository served by `git daemon` (git://) and also reachable as file://.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Run git with a fixed identity in `dir`; returns stdout.
pub fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=Flotilla Demo",
            "-c",
            "user.email=demo@flotilla.invalid",
        ])
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .with_context(|| format!("running git {args:?}"))?;
    if !out.status.success() {
        bail!(
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let dst = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_tree(&e.path(), &dst)?;
        } else {
            std::fs::copy(e.path(), &dst)?;
        }
    }
    Ok(())
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `git-daemon` itself rather than the `git daemon` wrapper: the wrapper runs the daemon as a
/// child of its own, so killing the wrapper would leave the daemon (and any pipe it inherited)
/// behind after the test.
pub fn daemon_command() -> Result<Command> {
    let out = Command::new("git")
        .arg("--exec-path")
        .output()
        .context("running git --exec-path")?;
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let bin = Path::new(&dir).join("git-daemon");
    if !bin.is_file() {
        bail!("{} not found (is git installed?)", bin.display());
    }
    Ok(Command::new(bin))
}

/// A repository with a working copy, a bare origin and a `git daemon` serving it.
pub struct GitServer {
    pub work: PathBuf,
    pub bare: PathBuf,
    pub port: u16,
    daemon: Child,
}

impl Drop for GitServer {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

impl GitServer {
    /// Create the repository under `dir` (named `name`), seeded with the files of `seed` when
    /// given, first commit on `main`, and serve it.
    pub fn start(dir: &Path, name: &str, seed: Option<&Path>) -> Result<Self> {
        let work = dir.join(format!("{name}-work"));
        let root = dir.join("git-root");
        let bare = root.join(format!("{name}.git"));
        std::fs::create_dir_all(&work)?;
        std::fs::create_dir_all(&root)?;
        git(&work, &["init", "-q"])?;
        if let Some(seed) = seed {
            copy_tree(seed, &work).with_context(|| format!("copying {}", seed.display()))?;
        } else {
            std::fs::write(work.join("README.md"), "test repository\n")?;
        }
        git(&work, &["add", "-A"])?;
        git(&work, &["commit", "-qm", "initial commit"])?;
        git(
            &root,
            &[
                "clone",
                "-q",
                "--bare",
                &work.display().to_string(),
                &bare.display().to_string(),
            ],
        )?;
        git(
            &work,
            &["remote", "add", "origin", &bare.display().to_string()],
        )?;
        let port = free_port()?;
        let daemon = daemon_command()?
            .args([
                "--export-all",
                "--reuseaddr",
                "--listen=127.0.0.1",
                "--enable=receive-pack",
            ])
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", root.display()))
            .arg(&root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting git daemon")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("git daemon did not listen on {port}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Self {
            work,
            bare,
            port,
            daemon,
        })
    }

    /// The git:// URL of the repository.
    pub fn url(&self) -> String {
        let name = self
            .bare
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        format!("git://127.0.0.1:{}/{name}", self.port)
    }

    /// The file:// URL of the bare repository.
    pub fn file_url(&self) -> String {
        format!("file://{}", self.bare.display())
    }

    /// Write files (path, content) into the working copy.
    pub fn write(&self, files: &[(&str, &str)]) -> Result<()> {
        for (path, body) in files {
            let p = self.work.join(path);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(p, body)?;
        }
        Ok(())
    }

    /// Remove a file or directory from the working copy.
    pub fn remove(&self, path: &str) -> Result<()> {
        let p = self.work.join(path);
        if p.is_dir() {
            std::fs::remove_dir_all(p)?;
        } else {
            std::fs::remove_file(p)?;
        }
        Ok(())
    }

    /// Commit everything in the working copy and push it; returns the new commit SHA.
    pub fn commit(&self, message: &str) -> Result<String> {
        git(&self.work, &["add", "-A"])?;
        git(&self.work, &["commit", "-qm", message, "--allow-empty"])?;
        git(&self.work, &["push", "-q", "origin", "HEAD:main"])?;
        git(&self.work, &["rev-parse", "HEAD"])
    }

    /// Commit `files` and the gitlinks `links` (path, commit: submodules, as `git submodule
    /// add` records them) and push; returns the new commit SHA.
    pub fn commit_with_gitlinks(
        &self,
        files: &[(&str, &str)],
        links: &[(&str, &str)],
        message: &str,
    ) -> Result<String> {
        self.write(files)?;
        for (path, _) in files {
            git(&self.work, &["add", path])?;
        }
        for (path, commit) in links {
            git(
                &self.work,
                &[
                    "update-index",
                    "--add",
                    "--cacheinfo",
                    &format!("160000,{commit},{path}"),
                ],
            )?;
        }
        git(&self.work, &["commit", "-qm", message])?;
        git(&self.work, &["push", "-q", "-f", "origin", "HEAD:main"])?;
        git(&self.work, &["rev-parse", "HEAD"])
    }

    /// `write` then `commit`.
    pub fn commit_files(&self, files: &[(&str, &str)], message: &str) -> Result<String> {
        self.write(files)?;
        self.commit(message)
    }
}

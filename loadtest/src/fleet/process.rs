//! Product binaries as child processes: finding (and if needed building) them next to the
//! running executable, starting them with their output in a log file, waiting for the address
//! file they write, and killing them (gracefully or with SIGKILL) when done.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The `loadtest/` package directory. Prefers the `CARGO_MANIFEST_DIR` cargo sets when it runs
/// us (`cargo run`, `cargo test`) over the compile-time one: a cargo target dir shared between
/// checkouts (CI reuses one) can hold a binary compiled in another, since-removed, clone.
pub fn package_dir() -> PathBuf {
    // Run from another package (the tests crate), ours is its sibling `loadtest/`.
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .into_iter()
        .flat_map(|d| [d.join("../loadtest"), d])
        .find(|d| d.join("scenarios").is_dir())
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// The workspace root (parent of [`package_dir`]).
pub fn workspace_dir() -> PathBuf {
    package_dir().join("..")
}

/// The cargo profile directory the running executable lives in (`target/debug`,
/// `target/release`), where sibling binaries are built.
pub fn profile_dir() -> Result<PathBuf> {
    if let Ok(dir) = std::env::var("FLOTILLA_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let exe = std::env::current_exe().context("locating the running executable")?;
    let mut dir = exe
        .parent()
        .context("executable has no directory")?
        .to_path_buf();
    if dir.ends_with("deps") || dir.ends_with("examples") {
        dir.pop();
    }
    Ok(dir)
}

static BUILT: OnceLock<Result<(), String>> = OnceLock::new();

/// Make sure the product binaries in [`profile_dir`] are up to date, building them with cargo
/// once per process (a no-op when nothing changed). Skipped when `FLOTILLA_BIN_DIR` is set.
pub fn ensure_built() -> Result<()> {
    if std::env::var_os("FLOTILLA_BIN_DIR").is_some() {
        return Ok(());
    }
    let res = BUILT.get_or_init(|| {
        let dir = profile_dir().map_err(|e| e.to_string())?;
        let release = dir.ends_with("release");
        let target = dir.parent().ok_or("no target dir")?.to_path_buf();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "--quiet",
            "--bins",
            "-p",
            "flotilla-controller",
            "-p",
            "flotilla-server",
            "-p",
            "flotilla-cli",
            "-p",
            "flotilla-repo-server",
            "-p",
            "flotilla-loadtest",
            "-p",
            "kubesim",
        ])
        .arg("--target-dir")
        .arg(&target)
        .current_dir(package_dir());
        if release {
            cmd.arg("--release");
        }
        // Inside `cargo test` the environment carries cargo's per-crate variables; build
        // scripts that watch them would make every alternate build start from scratch.
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy();
            if (k.starts_with("CARGO_") && k != "CARGO_HOME")
                || k == "LD_LIBRARY_PATH"
                || k == "OUT_DIR"
                || k.starts_with("RUST_TEST")
            {
                cmd.env_remove(k.as_ref());
            }
        }
        let out = cmd.output().map_err(|e| format!("running cargo: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "building the product binaries failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    });
    res.clone().map_err(anyhow::Error::msg)
}

/// Path of the product binary `name`.
pub fn binary(name: &str) -> Result<PathBuf> {
    ensure_built()?;
    let p = profile_dir()?.join(name);
    if !p.is_file() {
        bail!(
            "{} not found (build it with cargo build --bins)",
            p.display()
        );
    }
    Ok(p)
}

/// A running child process, killed when dropped.
pub struct Proc {
    pub name: String,
    child: Option<Child>,
    pub log: PathBuf,
}

impl Proc {
    /// Start `program` with `args`, stdout and stderr appended to `log`.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        log: PathBuf,
        envs: &[(&str, &str)],
    ) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("opening {}", log.display()))?;
        let err = file.try_clone()?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdout(Stdio::from(file))
            .stderr(Stdio::from(err))
            .stdin(Stdio::null());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        Ok(Self {
            name: name.to_string(),
            child: Some(child),
            log,
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
    }

    /// The last `n` lines of the log.
    pub fn tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Wait until `path` holds a JSON document (written by a binary once it serves), failing early
/// if the process exits.
pub async fn wait_address_file(
    proc: &mut Proc,
    path: &Path,
    timeout: Duration,
) -> Result<serde_json::Value> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
        {
            return Ok(v);
        }
        if !proc.running() {
            bail!("{} exited before serving:\n{}", proc.name, proc.tail(40));
        }
        if Instant::now() > deadline {
            bail!(
                "{} did not start within {timeout:?}:\n{}",
                proc.name,
                proc.tail(40)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

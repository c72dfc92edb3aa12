//! Running a renderer's tool (helm, kustomize, a plugin) as hostile input demands: in its own
//! process group, with a deadline that kills the whole group, and with bounded output.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::RenderError;

/// Default time a tool may run (Argo CD's `ARGOCD_EXEC_TIMEOUT` default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(90);

/// Largest output read from one tool run, per stream.
pub const MAX_OUTPUT_BYTES: u64 = 256 * 1024 * 1024;

/// What a finished tool printed.
#[derive(Debug)]
pub struct Output {
    pub success: bool,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Run `cmd` (stdin closed) until it exits or `timeout` passes; on timeout every process of its
/// group is killed and a [`RenderError::Timeout`] names `tool` and `path`.
pub fn run(
    cmd: &mut Command,
    timeout: Duration,
    tool: &'static str,
    path: &str,
) -> Result<Output, RenderError> {
    use std::os::unix::process::CommandExt;
    let spawn_err = |source| RenderError::Read {
        path: std::path::PathBuf::from(tool),
        source,
    };
    // Nothing of the repo-server's own environment (the Redis URL with its password, the
    // gRPC token, OTLP headers) reaches a tool: only PATH, a neutral HOME and what the caller
    // set explicitly on `cmd`.
    let explicit: Vec<(std::ffi::OsString, Option<std::ffi::OsString>)> = cmd
        .get_envs()
        .map(|(k, v)| (k.to_os_string(), v.map(|v| v.to_os_string())))
        .collect();
    cmd.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    cmd.env("HOME", std::env::temp_dir()).env("LANG", "C.UTF-8");
    for (k, v) in explicit {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let mut child = cmd
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    let reader = |s: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(s) = s {
                let _ = s.take(MAX_OUTPUT_BYTES + 1).read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = reader(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let err = reader(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(2);
    let status = loop {
        match child.try_wait().map_err(spawn_err)? {
            Some(status) => break status,
            None if Instant::now() >= deadline => {
                kill_group(child.id());
                let _ = child.kill();
                let _ = child.wait();
                // The readers are left to finish when the pipes close; never joined here, so
                // a process that escaped the group cannot hold this render.
                return Err(RenderError::Timeout {
                    tool,
                    path: path.to_string(),
                    after: timeout,
                });
            }
            None => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
        }
    };
    // The tool exited; whatever it left running in its group goes too.
    kill_group(child.id());
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    if stdout.len() as u64 > MAX_OUTPUT_BYTES {
        return Err(RenderError::Tool {
            tool,
            path: path.to_string(),
            message: format!("output larger than {MAX_OUTPUT_BYTES} bytes"),
        });
    }
    Ok(Output {
        success: status.success(),
        stdout,
        stderr,
    })
}

fn kill_group(pid: u32) {
    if let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tool_that_runs_forever_is_killed_with_its_children() {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("child-alive");
        let started = Instant::now();
        // The child spawns a grandchild that would write the marker after 2 s.
        let err = run(
            Command::new("sh").arg("-c").arg(format!(
                "(sleep 2; touch {}) & while :; do :; done",
                marker.display()
            )),
            Duration::from_millis(300),
            "plugin",
            "app",
        )
        .expect_err("times out");
        assert!(matches!(err, RenderError::Timeout { .. }), "{err}");
        assert!(err.to_string().contains("timed out"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(2));
        std::thread::sleep(Duration::from_millis(2500));
        assert!(!marker.exists(), "the grandchild was killed with the group");
    }

    #[test]
    fn a_tool_sees_none_of_the_servers_environment() {
        // CARGO_PKG_NAME is in this test process's environment (set by cargo), like a secret
        // would be in the repo-server's.
        assert!(std::env::var_os("CARGO_PKG_NAME").is_some());
        let out = run(
            Command::new("sh")
                .arg("-c")
                .arg("printf '%s|%s' \"$CARGO_PKG_NAME\" \"$MINE\"")
                .env("MINE", "kept"),
            DEFAULT_TIMEOUT,
            "plugin",
            "app",
        )
        .expect("runs");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "|kept");
    }

    #[test]
    fn output_and_status_come_back() {
        let out = run(
            Command::new("sh")
                .arg("-c")
                .arg("echo out; echo err >&2; exit 3"),
            DEFAULT_TIMEOUT,
            "plugin",
            "app",
        )
        .expect("runs");
        assert!(!out.success);
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
    }
}

//! Git over SSH for tests: Debian's OpenSSH server on a loopback port with a throw-away host
//! key, letting in one client key and running `git-upload-pack` for the repositories on disk.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// A running `sshd`; stopped when dropped.
pub struct SshServer {
    pub port: u16,
    /// The line for `ssh_known_hosts` (`[127.0.0.1]:port ssh-ed25519 AAAA…`).
    pub known_hosts_line: String,
    /// The client's private key (OpenSSH format), which the server lets in.
    pub client_key: String,
    /// The user to log in as (the one running the tests).
    pub user: String,
    child: Child,
    dir: PathBuf,
}

impl Drop for SshServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keygen(path: &Path) -> Result<()> {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "flotilla-test", "-f"])
        .arg(path)
        .output()
        .context("running ssh-keygen (apt-get install openssh-client)")?;
    if !out.status.success() {
        bail!("ssh-keygen: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// A new ed25519 key pair in `dir` as (private key, public key line).
pub fn key_pair(dir: &Path, name: &str) -> Result<(String, String)> {
    let path = dir.join(name);
    keygen(&path)?;
    Ok((
        std::fs::read_to_string(&path)?,
        std::fs::read_to_string(path.with_extension("pub"))?
            .trim()
            .to_string(),
    ))
}

fn sshd_binary() -> Result<PathBuf> {
    ["/usr/sbin/sshd", "/usr/bin/sshd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .context("sshd not found (apt-get install openssh-server)")
}

impl SshServer {
    /// Start `sshd` in `dir` (created), on a free loopback port.
    pub fn start(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let host_key = dir.join("host_key");
        keygen(&host_key)?;
        let (client_key, client_pub) = key_pair(dir, "client_key")?;
        let authorized = dir.join("authorized_keys");
        std::fs::write(&authorized, format!("{client_pub}\n"))?;
        let user = String::from_utf8(Command::new("id").arg("-un").output()?.stdout)?
            .trim()
            .to_string();
        // OpenSSH's privilege separation needs this directory when started as root.
        let _ = std::fs::create_dir_all("/run/sshd");
        let host_pub = std::fs::read_to_string(host_key.with_extension("pub"))?;
        let host_pub = host_pub
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        // A free port: bind, read it, release; retried below should another process take it.
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            let config = dir.join("sshd_config");
            std::fs::write(
                &config,
                format!(
                    "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nPidFile {pid}\nAuthorizedKeysFile {auth}\nStrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin prohibit-password\nAllowUsers {user}\nLogLevel VERBOSE\n",
                    host = host_key.display(),
                    pid = dir.join("sshd.pid").display(),
                    auth = authorized.display(),
                ),
            )?;
            let log = std::fs::File::create(dir.join("sshd.log"))?;
            let mut child = Command::new(sshd_binary()?)
                .args(["-D", "-e", "-f"])
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .context("starting sshd")?;
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            loop {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Ok(Self {
                        port,
                        known_hosts_line: format!("[127.0.0.1]:{port} {host_pub}"),
                        client_key,
                        user,
                        child,
                        dir: dir.to_path_buf(),
                    });
                }
                if child.try_wait()?.is_some() || std::time::Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        bail!(
            "sshd did not start: {}",
            std::fs::read_to_string(dir.join("sshd.log")).unwrap_or_default()
        )
    }

    /// The ssh:// URL of the bare repository at `path`.
    pub fn url(&self, path: &Path) -> String {
        format!(
            "ssh://{}@127.0.0.1:{}{}",
            self.user,
            self.port,
            path.display()
        )
    }

    /// What sshd logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }
}

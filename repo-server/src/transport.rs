//! How a repository is reached beyond user name and password: TLS roots from
//! `argocd-tls-certs-cm`, client certificates and proxies (for Git over HTTPS and Helm), and
//! the `ssh` command line for Git over SSH (the key, `argocd-ssh-known-hosts-cm`, no agent).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::git::Credentials;

/// Where the ConfigMaps Argo CD mounts into its repo-server are found (the chart mounts them at
/// the same paths).
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// `argocd-ssh-known-hosts-cm`'s `ssh_known_hosts` (Argo CD: `/app/config/ssh/ssh_known_hosts`).
    pub known_hosts: PathBuf,
    /// `argocd-tls-certs-cm`, one file per server name holding its CA certificates in PEM
    /// (Argo CD: `/app/config/tls`).
    pub tls_certs_dir: PathBuf,
    /// How long `ssh` may take to connect.
    pub ssh_connect_timeout: Duration,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            known_hosts: PathBuf::from("/app/config/ssh/ssh_known_hosts"),
            tls_certs_dir: PathBuf::from("/app/config/tls"),
            ssh_connect_timeout: Duration::from_secs(20),
        }
    }
}

/// Why a repository's transport could not be set up (bad key, CA or proxy).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct TransportError(pub String);

/// Whether `url` is reached over SSH: `ssh://…` or the scp-like `user@host:path`.
pub fn is_ssh_url(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    lower.starts_with("ssh://") || scp_like(url).is_some()
}

/// `(user, host)` of an scp-like URL (`git@github.com:org/repo.git`): no scheme, a user, a
/// host without `/`, then `:`. Neither part may start with `-` (it would be read as an ssh
/// option).
pub fn scp_like(url: &str) -> Option<(&str, &str)> {
    if url.contains("://") {
        return None;
    }
    let (user_host, _path) = url.split_once(':')?;
    let (user, host) = user_host.split_once('@')?;
    let ok = |s: &str| {
        !s.is_empty()
            && !s.starts_with('-')
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    };
    (ok(user) && ok(host)).then_some((user, host))
}

/// The host name of an http(s):// URL, without user, port or brackets.
pub fn host_of(url: &str) -> Option<String> {
    let parsed = reqwest::Url::parse(url).ok()?;
    parsed
        .host_str()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string())
}

/// What an HTTPS client needs for one repository, read once per fetch or download.
#[derive(Clone, Default)]
pub struct HttpSettings {
    pub insecure: bool,
    /// CA certificates for the repository's host from `argocd-tls-certs-cm`, added to the
    /// system's roots.
    pub roots: Vec<reqwest::Certificate>,
    pub identity: Option<reqwest::Identity>,
    pub proxy: Option<reqwest::Proxy>,
}

impl std::fmt::Debug for HttpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSettings")
            .field("insecure", &self.insecure)
            .field("roots", &self.roots.len())
            .field("identity", &self.identity.is_some())
            .field("proxy", &self.proxy.is_some())
            .finish()
    }
}

/// The same settings on reqwest's blocking and async builders (two types, one method set).
macro_rules! apply_settings {
    ($s:expr, $b:expr) => {{
        let mut b = $b;
        if $s.insecure {
            b = b.danger_accept_invalid_certs(true);
        }
        if !$s.roots.is_empty() {
            b = b.tls_certs_merge($s.roots.clone());
        }
        if let Some(id) = &$s.identity {
            b = b.identity(id.clone());
        }
        if let Some(p) = &$s.proxy {
            b = b.proxy(p.clone());
        }
        b
    }};
}

impl HttpSettings {
    /// The settings for `url` with `creds`. A CA file that exists but holds no valid
    /// certificate, a client certificate without its key (or the reverse), or a proxy URL that
    /// does not parse is an error, never quietly dropped.
    pub fn for_repo(
        cfg: &TransportConfig,
        url: &str,
        creds: &Credentials,
    ) -> Result<Self, TransportError> {
        let mut out = Self {
            insecure: creds.insecure,
            ..Self::default()
        };
        if let Some(host) = host_of(url) {
            out.roots = ca_certs(&cfg.tls_certs_dir, &host)?;
        }
        out.identity = match (&creds.tls_client_cert_data, &creds.tls_client_cert_key) {
            (Some(cert), Some(key)) => {
                let pem = format!("{}\n{}\n", cert.trim_end(), key.trim_end());
                Some(reqwest::Identity::from_pem(pem.as_bytes()).map_err(|e| {
                    TransportError(format!(
                        "tlsClientCertData/tlsClientCertKey are not a valid PEM certificate and key: {}",
                        crate::helm_repo::describe_reqwest(&e)
                    ))
                })?)
            }
            (None, None) => None,
            _ => {
                return Err(TransportError(
                    "tlsClientCertData and tlsClientCertKey must be set together".into(),
                ));
            }
        };
        if let Some(proxy) = &creds.proxy {
            let shown = flotilla_core::redact::redact_url(proxy);
            let mut p = reqwest::Proxy::all(proxy.as_str())
                .map_err(|_| TransportError(format!("proxy {shown:?} is not a valid URL")))?;
            if let Some(no) = creds.no_proxy.as_deref().filter(|n| !n.trim().is_empty()) {
                p = p.no_proxy(reqwest::NoProxy::from_string(no));
            }
            out.proxy = Some(p);
        }
        Ok(out)
    }

    /// Apply to gix's blocking HTTP client.
    pub fn apply_blocking(
        &self,
        b: reqwest::blocking::ClientBuilder,
    ) -> reqwest::blocking::ClientBuilder {
        apply_settings!(self, b)
    }

    /// Apply to an async client (Helm repositories).
    pub fn apply(&self, b: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        apply_settings!(self, b)
    }

    /// Whether anything differs from a default client.
    pub fn is_custom(&self) -> bool {
        self.insecure || !self.roots.is_empty() || self.identity.is_some() || self.proxy.is_some()
    }
}

/// The CA certificates `argocd-tls-certs-cm` holds for `host` (its key is the server name; a
/// missing file means none). Host names that could name another file are refused.
fn ca_certs(dir: &Path, host: &str) -> Result<Vec<reqwest::Certificate>, TransportError> {
    let safe = !host.is_empty()
        && !host.starts_with('.')
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_:".contains(&b));
    if !safe {
        return Ok(Vec::new());
    }
    let path = dir.join(host);
    let pem = match std::fs::read(&path) {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(TransportError(format!(
                "reading the TLS certificates for {host} ({}): {e}",
                path.display()
            )));
        }
    };
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
        TransportError(format!(
            "the TLS certificates for {host} in argocd-tls-certs-cm are not valid PEM: {}",
            crate::helm_repo::describe_reqwest(&e)
        ))
    })?;
    if certs.is_empty() {
        return Err(TransportError(format!(
            "argocd-tls-certs-cm holds no certificate for {host}"
        )));
    }
    Ok(certs)
}

/// The `ssh` command one fetch runs, and the private directory holding its key (removed when
/// dropped).
pub struct SshCommand {
    pub command: String,
    dir: tempfile::TempDir,
}

/// Most bytes of ssh's stderr kept for an error message.
const MAX_SSH_STDERR: u64 = 64 * 1024;

/// Quote `s` for `sh` (gix runs the command through the shell so that its options apply).
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl SshCommand {
    /// Build the command for `creds`: only the given key (no agent, no `~/.ssh`), never a
    /// prompt, and host keys checked against `argocd-ssh-known-hosts-cm` unless the
    /// repository is `insecure`.
    pub fn new(cfg: &TransportConfig, creds: &Credentials) -> Result<Self, TransportError> {
        let dir = tempfile::Builder::new()
            .prefix("flotilla-ssh-")
            .tempdir()
            .map_err(|e| TransportError(format!("creating the ssh key directory: {e}")))?;
        let mut args: Vec<String> = vec!["ssh".into(), "-F".into(), "/dev/null".into()];
        for opt in [
            "BatchMode=yes".to_string(),
            "IdentitiesOnly=yes".into(),
            "IdentityAgent=none".into(),
            "PasswordAuthentication=no".into(),
            "KbdInteractiveAuthentication=no".into(),
            "GlobalKnownHostsFile=/dev/null".into(),
            "UpdateHostKeys=no".into(),
            "LogLevel=ERROR".into(),
            "ServerAliveInterval=15".into(),
            "ServerAliveCountMax=3".into(),
            format!(
                "ConnectTimeout={}",
                cfg.ssh_connect_timeout.as_secs().max(1)
            ),
        ] {
            args.push("-o".into());
            args.push(opt);
        }
        if creds.insecure {
            args.extend(
                [
                    "-o",
                    "StrictHostKeyChecking=no",
                    "-o",
                    "UserKnownHostsFile=/dev/null",
                ]
                .map(String::from),
            );
        } else {
            if !cfg.known_hosts.is_file() {
                return Err(TransportError(format!(
                    "no SSH known hosts at {} (argocd-ssh-known-hosts-cm): add the server's host key there, or mark the repository insecure",
                    cfg.known_hosts.display()
                )));
            }
            args.push("-o".into());
            args.push("StrictHostKeyChecking=yes".into());
            args.push("-o".into());
            args.push(format!("UserKnownHostsFile={}", cfg.known_hosts.display()));
        }
        if let Some(key) = &creds.ssh_private_key {
            use std::os::unix::fs::OpenOptionsExt;
            let path = dir.path().join("key");
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| TransportError(format!("writing the ssh key: {e}")))?;
            // OpenSSH refuses a key file without its final newline.
            let mut text = key.replace("\r\n", "\n");
            if !text.ends_with('\n') {
                text.push('\n');
            }
            f.write_all(text.as_bytes())
                .map_err(|e| TransportError(format!("writing the ssh key: {e}")))?;
            args.push("-i".into());
            args.push(path.display().to_string());
        } else {
            // No key configured: offer none (never the repo-server user's own ~/.ssh keys).
            args.push("-o".into());
            args.push("IdentityFile=none".into());
        }
        let mut command = args
            .iter()
            .map(|a| sh_quote(a))
            .collect::<Vec<_>>()
            .join(" ");
        // ssh's complaints go to a file read back on failure (gix only sees a closed pipe).
        // A server flooding them gets ssh killed at 64 KiB (`ulimit -f` counts 512-byte
        // blocks; ssh writes no other file: known hosts are never updated).
        command = format!(
            "ulimit -f {}; {command} 2>>{}",
            MAX_SSH_STDERR / 512,
            sh_quote(&dir.path().join("stderr").display().to_string())
        );
        Ok(Self { command, dir })
    }

    /// What ssh said on its stderr, on one line and bounded: its own messages, without the
    /// warning banner.
    pub fn stderr_summary(&self) -> Option<String> {
        use std::io::{Read, Seek, SeekFrom};
        // Only the tail: that is where ssh says what failed, and the file is bounded anyway.
        let mut f = std::fs::File::open(self.dir.path().join("stderr")).ok()?;
        let len = f.metadata().ok()?.len();
        f.seek(SeekFrom::Start(len.saturating_sub(4096))).ok()?;
        let mut bytes = Vec::new();
        f.take(4096).read_to_end(&mut bytes).ok()?;
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('@'))
            .collect();
        // The last lines say what failed; earlier ones explain (fingerprints, advice).
        let tail = lines[lines.len().saturating_sub(2)..].join(" ");
        let mut out: String = flotilla_core::redact::redact_text(&tail)
            .chars()
            .take(400)
            .collect();
        if out.is_empty() {
            return None;
        }
        if tail.chars().count() > 400 {
            out.push('…');
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_urls_are_recognised_and_option_lookalikes_are_not() {
        assert!(is_ssh_url("ssh://git@github.com/org/repo.git"));
        assert!(is_ssh_url("git@github.com:org/repo.git"));
        assert_eq!(
            scp_like("git@github.com:org/repo.git"),
            Some(("git", "github.com"))
        );
        assert!(!is_ssh_url("https://github.com/org/repo.git"));
        assert!(!is_ssh_url("https://user@github.com:443/org/repo.git"));
        // A host or user that ssh would read as an option.
        assert!(!is_ssh_url("git@-oProxyCommand=touch /tmp/x:repo"));
        assert!(!is_ssh_url("-oProxyCommand=x@host:repo"));
        assert!(!is_ssh_url("git@host/with/slash:repo"));
        assert!(!is_ssh_url("/local/path:with-colon"));
    }

    #[test]
    fn the_ssh_command_uses_only_the_given_key_and_checks_host_keys() {
        let dir = tempfile::tempdir().expect("tmp");
        let kh = dir.path().join("ssh_known_hosts");
        let cfg = TransportConfig {
            known_hosts: kh.clone(),
            ..TransportConfig::default()
        };
        let creds = Credentials {
            ssh_private_key: Some(
                "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----"
                    .into(),
            ),
            ..Credentials::default()
        };
        // Strict by default: no known hosts is a clear error, not a trust-on-first-use.
        let err = SshCommand::new(&cfg, &creds).err().expect("refused");
        assert!(err.0.contains("argocd-ssh-known-hosts-cm"), "{err}");
        std::fs::write(&kh, "[127.0.0.1]:2222 ssh-ed25519 AAAA\n").expect("write");
        let cmd = SshCommand::new(&cfg, &creds).expect("command");
        for part in [
            "'StrictHostKeyChecking=yes'",
            &format!("'UserKnownHostsFile={}'", kh.display()),
            "'IdentityAgent=none'",
            "'BatchMode=yes'",
            "'-F' '/dev/null'",
        ] {
            assert!(cmd.command.contains(part), "{part} in {}", cmd.command);
        }
        let key_path = cmd
            .command
            .split("'-i' '")
            .nth(1)
            .and_then(|r| r.split('\'').next())
            .map(str::to_string)
            .expect("key path");
        let written = std::fs::read_to_string(&key_path).expect("key");
        assert!(written.ends_with("-----\n"), "final newline added");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_path)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        drop(cmd);
        assert!(
            !Path::new(&key_path).exists(),
            "the key is removed after use"
        );
        let insecure = Credentials {
            insecure: true,
            ..creds
        };
        let cmd = SshCommand::new(&cfg, &insecure).expect("command");
        assert!(cmd.command.contains("'StrictHostKeyChecking=no'"));
    }

    #[test]
    fn tls_settings_refuse_half_a_client_certificate_and_bad_files() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().expect("tmp");
        let cfg = TransportConfig {
            tls_certs_dir: dir.path().to_path_buf(),
            ..TransportConfig::default()
        };
        let url = "https://git.example.com:8443/org/repo.git";
        let none = HttpSettings::for_repo(&cfg, url, &Credentials::default()).expect("ok");
        assert!(!none.is_custom());
        std::fs::write(dir.path().join("git.example.com"), "not a certificate").expect("w");
        let err =
            HttpSettings::for_repo(&cfg, url, &Credentials::default()).expect_err("bad CA file");
        assert!(err.0.contains("git.example.com"), "{err}");
        let ca = rcgen::generate_simple_self_signed(vec!["git.example.com".into()]).expect("ca");
        std::fs::write(dir.path().join("git.example.com"), ca.cert.pem()).expect("w");
        let ok = HttpSettings::for_repo(&cfg, url, &Credentials::default()).expect("ok");
        assert_eq!(ok.roots.len(), 1);
        let half = Credentials {
            tls_client_cert_data: Some(ca.cert.pem()),
            ..Credentials::default()
        };
        assert!(HttpSettings::for_repo(&cfg, url, &half).is_err());
        let both = Credentials {
            tls_client_cert_data: Some(ca.cert.pem()),
            tls_client_cert_key: Some(ca.signing_key.serialize_pem()),
            ..Credentials::default()
        };
        assert!(
            HttpSettings::for_repo(&cfg, url, &both)
                .expect("identity")
                .identity
                .is_some()
        );
        let bad_proxy = Credentials {
            proxy: Some("::not a url::".into()),
            ..Credentials::default()
        };
        assert!(HttpSettings::for_repo(&cfg, url, &bad_proxy).is_err());
        // A host that could name another file is never read.
        assert!(ca_certs(dir.path(), "../etc").expect("ignored").is_empty());
    }
}

//! `execProviderConfig`: run a cluster Secret's credential command (client-go's exec plugin
//! protocol) with a cleared environment, a deadline and bounded output; read its ExecCredential.
//!
//! Trust: the command runs inside the controller's pod, as the controller's user, so whoever
//! can write an Argo CD cluster Secret can run code there (Argo CD accepts the same risk:
//! cluster Secrets are for administrators only). What this module adds is defence in depth for
//! honest plugins: they see only the Secret's `env` plus a small allowlist of the controller's
//! environment (no Flotilla tokens or passwords), no stdin, no shell; their output never
//! reaches a log or an error message, as it may hold credentials.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use jiff::Timestamp;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::clusters::ExecProviderConfig;

/// The API versions of ExecCredential Flotilla speaks (client-go's, minus the removed alpha).
pub const API_VERSIONS: [&str; 2] = [
    "client.authentication.k8s.io/v1",
    "client.authentication.k8s.io/v1beta1",
];

/// Variables of the controller's environment a credential command inherits: locale, paths,
/// proxies, CA bundles, and the workload-identity settings cloud credential plugins read
/// (file paths and identifiers, not secrets). Anything else must be in the Secret's `env`.
pub const INHERITED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LANG",
    "LC_ALL",
    "TZ",
    "TMPDIR",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "KUBERNETES_SERVICE_HOST",
    "KUBERNETES_SERVICE_PORT",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_SESSION_NAME",
    "AWS_STS_REGIONAL_ENDPOINTS",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_AUTHORITY_HOST",
    "GOOGLE_APPLICATION_CREDENTIALS",
];

/// The largest ExecCredential read from a command's stdout.
const MAX_STDOUT: u64 = 1024 * 1024;
/// Bytes of stderr drained (and dropped) so a chatty command does not block on a full pipe.
const MAX_STDERR: u64 = 64 * 1024;

/// How credential commands run.
#[derive(Clone)]
pub struct ExecSettings {
    /// What every command inherits (before the Secret's `env`).
    pub base_env: Vec<(String, String)>,
    /// A command still running after this is killed.
    pub timeout: Duration,
}

impl std::fmt::Debug for ExecSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: values (a proxy URL's password, say) stay out of logs.
        let names: Vec<&str> = self.base_env.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("ExecSettings")
            .field("base_env", &names)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl ExecSettings {
    /// [`INHERITED_ENV`] taken from this process's environment; 30 s deadline.
    pub fn from_process() -> Self {
        Self {
            base_env: INHERITED_ENV
                .iter()
                .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
                .collect(),
            timeout: Duration::from_secs(30),
        }
    }
}

/// Why a credential command gave no token. Never carries its output, args or env values.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ExecError {
    #[error("exec provider command {command:?} was not found{}", hint.as_deref().map(|h| format!(" ({h})")).unwrap_or_default())]
    NotFound {
        command: String,
        hint: Option<String>,
    },
    #[error("exec provider command {command:?} could not be started: {message}")]
    Start { command: String, message: String },
    #[error("exec provider command {command:?} did not finish within {seconds} s and was killed")]
    Timeout { command: String, seconds: u64 },
    #[error(
        "exec provider command {command:?} failed ({status}); its output is not shown as it may hold credentials"
    )]
    Failed { command: String, status: String },
    #[error("exec provider command {command:?} printed no usable ExecCredential: {reason}")]
    Output { command: String, reason: String },
}

/// A token from a command, and until when it is valid (`None`: until the cluster refuses it).
#[derive(Clone, PartialEq, Eq)]
pub struct ExecToken {
    pub token: String,
    pub expires: Option<Timestamp>,
}

impl std::fmt::Debug for ExecToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecToken")
            .field("token", &"***")
            .field("expires", &self.expires)
            .finish()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExecCredential {
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    status: Option<ExecCredentialStatus>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExecCredentialStatus {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    expiration_timestamp: Option<String>,
    #[serde(default)]
    client_certificate_data: Option<String>,
    #[serde(default)]
    client_key_data: Option<String>,
}

/// Read at most `limit` bytes of `r`, then drain (and drop) the rest; `None` when it had more.
async fn read_bounded(mut r: impl AsyncRead + Unpin, limit: u64) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut head = (&mut r).take(limit + 1);
    if head.read_to_end(&mut buf).await.is_err() {
        return Some(buf);
    }
    if buf.len() as u64 > limit {
        let _ = tokio::io::copy(&mut r, &mut tokio::io::sink()).await;
        return None;
    }
    Some(buf)
}

/// Run the command of `cfg` once and read its token.
pub async fn run(
    cfg: &ExecProviderConfig,
    settings: &ExecSettings,
) -> Result<ExecToken, ExecError> {
    let command = cfg.command.clone();
    let mut cmd = tokio::process::Command::new(&cfg.command);
    cmd.args(&cfg.args)
        .env_clear()
        .envs(settings.base_env.iter().map(|(k, v)| (k, v)))
        .envs(&cfg.env)
        .env(
            "KUBERNETES_EXEC_INFO",
            serde_json::json!({
                "apiVersion": cfg.api_version,
                "kind": "ExecCredential",
                "spec": {"interactive": false},
            })
            .to_string(),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ExecError::NotFound {
            command: command.clone(),
            hint: cfg.install_hint.clone().filter(|h| !h.trim().is_empty()),
        },
        _ => ExecError::Start {
            command: command.clone(),
            message: e.kind().to_string(),
        },
    })?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(ExecError::Start {
            command,
            message: "no pipes".into(),
        });
    };
    let work = async {
        let (out, _err, status) = tokio::join!(
            read_bounded(stdout, MAX_STDOUT),
            read_bounded(stderr, MAX_STDERR),
            child.wait()
        );
        (out, status)
    };
    let (out, status) = match tokio::time::timeout(settings.timeout, work).await {
        Ok(done) => done,
        Err(_) => {
            // `kill_on_drop` ends it when `child` goes out of scope; ask now as well.
            let _ = child.start_kill();
            return Err(ExecError::Timeout {
                command,
                seconds: settings.timeout.as_secs(),
            });
        }
    };
    let status = status.map_err(|e| ExecError::Start {
        command: command.clone(),
        message: e.kind().to_string(),
    })?;
    if !status.success() {
        return Err(ExecError::Failed {
            command,
            status: status.to_string(),
        });
    }
    let out = out.ok_or_else(|| ExecError::Output {
        command: command.clone(),
        reason: format!("more than {MAX_STDOUT} bytes of output"),
    })?;
    parse(&out, &cfg.api_version).map_err(|reason| ExecError::Output { command, reason })
}

/// Read an ExecCredential (JSON, or YAML as client-go also accepts). The reason of a refusal
/// names what is wrong, never a value the command printed (it may be a credential).
pub fn parse(out: &[u8], api_version: &str) -> Result<ExecToken, String> {
    let cred: ExecCredential = match serde_json::from_slice(out) {
        Ok(c) => c,
        Err(json_err) => serde_yaml::from_slice(out).map_err(|_| {
            format!(
                "not an ExecCredential document (JSON error at line {}, column {})",
                json_err.line(),
                json_err.column()
            )
        })?,
    };
    if cred.kind.as_deref() != Some("ExecCredential") {
        return Err("kind is not ExecCredential".into());
    }
    match cred.api_version.as_deref() {
        Some(v) if v == api_version => {}
        Some(v) if API_VERSIONS.contains(&v) => {
            return Err(format!(
                "apiVersion {v} differs from the configured {api_version}"
            ));
        }
        _ => return Err(format!("apiVersion is not {api_version}")),
    }
    let status = cred.status.ok_or("no status")?;
    if status.client_certificate_data.is_some() || status.client_key_data.is_some() {
        return Err(
            "it returned a client certificate; Flotilla supports token credentials only".into(),
        );
    }
    let token = status
        .token
        .filter(|t| !t.is_empty())
        .ok_or("no status.token")?;
    if http::HeaderValue::from_str(&format!("Bearer {token}")).is_err() {
        return Err("status.token is not a valid HTTP header value".into());
    }
    let expires = match status.expiration_timestamp.filter(|t| !t.is_empty()) {
        None => None,
        Some(t) => Some(
            t.parse::<Timestamp>()
                .map_err(|_| "status.expirationTimestamp is not an RFC 3339 time".to_string())?,
        ),
    };
    Ok(ExecToken { token, expires })
}

/// The environment a command of `cfg` would get (for tests and diagnostics; values included,
/// so never log it).
pub fn environment(cfg: &ExecProviderConfig, settings: &ExecSettings) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = settings.base_env.iter().cloned().collect();
    env.extend(cfg.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(command: &str, args: &[&str]) -> ExecProviderConfig {
        ExecProviderConfig {
            command: command.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: BTreeMap::from([("PLUGIN_SETTING".into(), "from-secret".into())]),
            api_version: "client.authentication.k8s.io/v1beta1".into(),
            install_hint: Some("install it with apt".into()),
        }
    }

    fn settings() -> ExecSettings {
        ExecSettings {
            base_env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            timeout: Duration::from_secs(10),
        }
    }

    #[test]
    fn parses_exec_credentials() {
        let v = "client.authentication.k8s.io/v1beta1";
        let t = parse(
            br#"{"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential","status":{"token":"abc","expirationTimestamp":"2030-01-01T00:00:00Z"}}"#,
            v,
        )
        .expect("valid");
        assert_eq!(t.token, "abc");
        assert_eq!(t.expires, Some("2030-01-01T00:00:00Z".parse().expect("ts")));
        let yaml = b"apiVersion: client.authentication.k8s.io/v1beta1\nkind: ExecCredential\nstatus:\n  token: xyz\n";
        assert_eq!(parse(yaml, v).expect("yaml").expires, None);
        let secret_out = br#"{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","status":{"token":"s3cr3t"}}"#;
        let e = parse(secret_out, v).expect_err("version mismatch");
        assert!(e.contains("differs") && !e.contains("s3cr3t"), "{e}");
        let e = parse(b"token: s3cr3t garbage {", v).expect_err("garbage");
        assert!(!e.contains("s3cr3t"), "{e}");
        let e = parse(
            br#"{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1beta1","status":{"clientCertificateData":"x","clientKeyData":"y"}}"#,
            v,
        )
        .expect_err("certs");
        assert!(e.contains("client certificate"), "{e}");
    }

    #[tokio::test]
    async fn runs_with_only_the_configured_environment() {
        let dir = tempfile_dir();
        let script = dir.join("env.sh");
        std::fs::write(
            &script,
            "#!/bin/sh\nprintf '{\"apiVersion\":\"client.authentication.k8s.io/v1beta1\",\"kind\":\"ExecCredential\",\"status\":{\"token\":\"%s|%s|%s|%s\"}}' \"$PLUGIN_SETTING\" \"${HOME:-none}\" \"$1\" \"$(echo \"$KUBERNETES_EXEC_INFO\" | tr -d '\" {}:,')\"\n",
        )
        .expect("write script");
        let t = run(
            &cfg("sh", &[script.to_str().expect("utf-8"), "arg1"]),
            &settings(),
        )
        .await
        .expect("runs");
        let _ = std::fs::remove_dir_all(&dir);
        // HOME is set for this test process but not in `settings()`: not passed on.
        assert_eq!(
            t.token,
            "from-secret|none|arg1|apiVersionclient.authentication.k8s.io/v1beta1kindExecCredentialspecinteractivefalse"
        );
    }

    #[tokio::test]
    async fn failures_are_clear_and_show_no_output() {
        let dir = tempfile_dir();
        let script = dir.join("fail.sh");
        std::fs::write(
            &script,
            "#!/bin/sh\necho 'token s3cr3t-out'\necho 'password s3cr3t-err' >&2\nexit 3\n",
        )
        .expect("write script");
        let e = run(
            &cfg("sh", &[script.to_str().expect("utf-8"), "s3cr3t-arg"]),
            &settings(),
        )
        .await
        .expect_err("fails");
        let msg = e.to_string();
        assert!(msg.contains("failed") && msg.contains("3"), "{msg}");
        assert!(!msg.contains("s3cr3t"), "{msg}");

        let e = run(&cfg("/nonexistent/flotilla-plugin", &[]), &settings())
            .await
            .expect_err("missing");
        assert!(
            e.to_string().contains("not found") && e.to_string().contains("install it with apt"),
            "{e}"
        );

        let slow = dir.join("slow.sh");
        std::fs::write(&slow, "#!/bin/sh\nexec sleep 30\n").expect("write script");
        let quick = ExecSettings {
            timeout: Duration::from_millis(300),
            ..settings()
        };
        let e = run(&cfg("sh", &[slow.to_str().expect("utf-8")]), &quick)
            .await
            .expect_err("times out");
        assert!(matches!(e, ExecError::Timeout { .. }), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "flotilla-exec-test-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }
}

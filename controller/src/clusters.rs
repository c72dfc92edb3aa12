//! The cluster registry's core: parse Argo CD cluster Secrets (`argocd.argoproj.io/secret-type:
//! cluster`; `name`, `server`, `config`, `project`) into destinations and `kube` client configs,
//! and resolve an Application's destination (by server or name, in-cluster included). A cluster
//! whose Secret names a `project` serves only Applications of that project.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use serde::{Deserialize, Deserializer};

/// The server URL Argo CD uses for the cluster the controller runs in.
pub const IN_CLUSTER_SERVER: &str = "https://kubernetes.default.svc";
/// The name Argo CD gives that cluster.
pub const IN_CLUSTER_NAME: &str = "in-cluster";

/// Why a cluster Secret is unusable (the rest of the registry is unaffected).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ClusterSecretError {
    #[error("secret {secret}: missing data field {field:?}")]
    Missing { secret: String, field: &'static str },
    #[error("secret {secret}: field {field:?} is not UTF-8")]
    NotUtf8 { secret: String, field: &'static str },
    #[error("secret {secret}: config is not valid JSON: {message}")]
    BadConfig { secret: String, message: String },
    #[error("secret {secret}: server {server:?} is not a URL")]
    BadServer { secret: String, server: String },
    #[error("secret {secret}: shard {value:?} is not a shard number (0, 1, …)")]
    BadShard { secret: String, value: String },
    #[error(
        "secret {secret}: config field {field:?} is not part of Argo CD's cluster config; Flotilla refuses it rather than ignore it"
    )]
    UnknownConfigField { secret: String, field: String },
    #[error("secret {secret}: config field {field:?} {reason}")]
    InvalidConfig {
        secret: String,
        field: String,
        reason: String,
    },
}

/// Why a cluster `config` document is refused (before the Secret's name is known).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("config is not valid JSON: {0}")]
    Json(String),
    #[error(
        "config field {0:?} is not part of Argo CD's cluster config; Flotilla refuses it rather than ignore it"
    )]
    UnknownField(String),
    #[error("config field {field:?} {reason}")]
    Invalid { field: String, reason: String },
}

impl ConfigError {
    fn in_secret(self, secret: &str) -> ClusterSecretError {
        let secret = secret.to_string();
        match self {
            ConfigError::Json(message) => ClusterSecretError::BadConfig { secret, message },
            ConfigError::UnknownField(field) => {
                ClusterSecretError::UnknownConfigField { secret, field }
            }
            ConfigError::Invalid { field, reason } => ClusterSecretError::InvalidConfig {
                secret,
                field,
                reason,
            },
        }
    }
}

fn invalid(field: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Go's JSON leaves a field at its zero value for `null`; so do we.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The fields of Argo CD's `ClusterConfig` and of its nested objects.
const CONFIG_FIELDS: &[&str] = &[
    "username",
    "password",
    "bearerToken",
    "tlsClientConfig",
    "awsAuthConfig",
    "execProviderConfig",
    "disableCompression",
    "proxyUrl",
];
const TLS_FIELDS: &[&str] = &["insecure", "serverName", "caData", "certData", "keyData"];
const AWS_FIELDS: &[&str] = &["clusterName", "roleARN", "profile"];
const EXEC_FIELDS: &[&str] = &["command", "args", "env", "apiVersion", "installHint"];

/// The first field of `config` that Argo CD's cluster config does not have (`a.b` for nested).
fn unknown_field(config: &serde_json::Value) -> Option<String> {
    let obj = config.as_object()?;
    if let Some(k) = obj.keys().find(|k| !CONFIG_FIELDS.contains(&k.as_str())) {
        return Some(k.clone());
    }
    for (name, known) in [
        ("tlsClientConfig", TLS_FIELDS),
        ("awsAuthConfig", AWS_FIELDS),
        ("execProviderConfig", EXEC_FIELDS),
    ] {
        if let Some(inner) = obj.get(name).and_then(|v| v.as_object())
            && let Some(k) = inner.keys().find(|k| !known.contains(&k.as_str()))
        {
            return Some(format!("{name}.{k}"));
        }
    }
    None
}

/// `config` of a cluster Secret: every field of Argo CD's `ClusterConfig`. Unknown fields are
/// refused ([`ClusterConfig::parse`] names them), never ignored.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterConfig {
    #[serde(default)]
    pub bearer_token: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub tls_client_config: TlsClientConfig,
    /// EKS: tokens made in-process (`crate::cluster_auth::aws`).
    #[serde(default)]
    pub aws_auth_config: Option<AwsAuthConfig>,
    /// A credential command (`crate::cluster_auth::exec`).
    #[serde(default)]
    pub exec_provider_config: Option<ExecProviderConfig>,
    /// Kubernetes clients never ask for compressed responses here (kube's `gzip` feature is
    /// off), so both values are honoured: `true` is what happens anyway.
    #[serde(default, deserialize_with = "null_as_default")]
    pub disable_compression: bool,
    /// An `http://`, `https://` (CONNECT) or `socks5://` proxy for the cluster's API server.
    #[serde(default)]
    pub proxy_url: Option<String>,
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |v: &Option<String>| v.as_ref().map(|_| "***");
        f.debug_struct("ClusterConfig")
            .field("bearer_token", &set(&self.bearer_token))
            .field("username", &self.username)
            .field("password", &set(&self.password))
            .field("tls_client_config", &self.tls_client_config)
            .field("aws_auth_config", &self.aws_auth_config)
            .field("exec_provider_config", &self.exec_provider_config)
            .field("disable_compression", &self.disable_compression)
            .field(
                "proxy_url",
                &self
                    .proxy_url
                    .as_deref()
                    .map(flotilla_core::redact::redact_url),
            )
            .finish()
    }
}

/// `config.tlsClientConfig`; the `*Data` fields are base64 PEM.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsClientConfig {
    #[serde(default, deserialize_with = "null_as_default")]
    pub insecure: bool,
    #[serde(default)]
    pub server_name: Option<String>,
    #[serde(default)]
    pub ca_data: Option<String>,
    #[serde(default)]
    pub cert_data: Option<String>,
    #[serde(default)]
    pub key_data: Option<String>,
}

impl std::fmt::Debug for TlsClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClientConfig")
            .field("insecure", &self.insecure)
            .field("server_name", &self.server_name)
            .field("ca_data", &self.ca_data.as_ref().map(|_| "…"))
            .field("cert_data", &self.cert_data.as_ref().map(|_| "…"))
            .field("key_data", &self.key_data.as_ref().map(|_| "***"))
            .finish()
    }
}

/// `config.awsAuthConfig` (Argo CD runs `argocd-k8s-auth aws --cluster-name … [--role-arn …]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AwsAuthConfig {
    /// The EKS cluster's name (signed into the token as `x-k8s-aws-id`).
    #[serde(default)]
    pub cluster_name: String,
    /// A role assumed with the controller's AWS credentials first.
    #[serde(default, rename = "roleARN")]
    pub role_arn: Option<String>,
    /// Refused when set: credentials come from the pod, not from AWS config profiles.
    #[serde(default)]
    pub profile: Option<String>,
}

/// `config.execProviderConfig`: a command printing a client-go ExecCredential.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecProviderConfig {
    #[serde(default)]
    pub command: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub args: Vec<String>,
    /// Added to the command's (otherwise minimal) environment.
    #[serde(default, deserialize_with = "null_as_default")]
    pub env: BTreeMap<String, String>,
    /// `client.authentication.k8s.io/v1` or `…/v1beta1`.
    #[serde(default)]
    pub api_version: String,
    /// Shown when the command is not found.
    #[serde(default)]
    pub install_hint: Option<String>,
}

impl std::fmt::Debug for ExecProviderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Arguments and env values may be credentials: count and names only.
        f.debug_struct("ExecProviderConfig")
            .field("command", &self.command)
            .field("args", &self.args.len())
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("api_version", &self.api_version)
            .finish_non_exhaustive()
    }
}

/// serde_json's message without the values it quotes: a wrongly typed field of a cluster
/// Secret may hold key material (`invalid type: string "-----BEGIN …"`), and this message is
/// logged and shown in `/status`.
fn json_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(start) = rest.find('"') {
        out.push_str(&rest[..=start]);
        match rest[start + 1..].find('"') {
            Some(len) => {
                out.push('…');
                out.push('"');
                rest = &rest[start + 1 + len + 1..];
            }
            None => {
                rest = "";
            }
        }
    }
    out.push_str(rest);
    if let Some(i) = out.find("unknown variant `") {
        let from = i + "unknown variant `".len();
        if let Some(len) = out[from..].find('`') {
            out.replace_range(from..from + len, "…");
        }
    }
    out
}

fn nonempty(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|s| !s.is_empty())
}

impl ClusterConfig {
    /// Parse and check the `config` of a cluster Secret: unknown fields and unusable values
    /// are refused with the field named.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| ConfigError::Json(json_error(&e)))?;
        if !value.is_object() {
            return Err(ConfigError::Json("config is not a JSON object".into()));
        }
        if let Some(field) = unknown_field(&value) {
            return Err(ConfigError::UnknownField(field));
        }
        let config: Self =
            serde_json::from_value(value).map_err(|e| ConfigError::Json(json_error(&e)))?;
        config.validate()?;
        Ok(config)
    }

    /// Refuse values Flotilla cannot honour.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(aws) = &self.aws_auth_config {
            if aws.cluster_name.trim().is_empty() {
                return Err(invalid("awsAuthConfig.clusterName", "is required"));
            }
            if nonempty(&aws.profile).is_some() {
                return Err(invalid(
                    "awsAuthConfig.profile",
                    "is not supported: Flotilla takes AWS credentials from the controller's pod (IRSA web identity or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY), not from AWS config profiles",
                ));
            }
            if let Some(role) = nonempty(&aws.role_arn)
                && !role.starts_with("arn:")
            {
                return Err(invalid("awsAuthConfig.roleARN", "is not an IAM role ARN"));
            }
        }
        if let Some(exec) = &self.exec_provider_config {
            if exec.command.trim().is_empty() {
                return Err(invalid("execProviderConfig.command", "is required"));
            }
            if !crate::cluster_auth::exec::API_VERSIONS.contains(&exec.api_version.as_str()) {
                return Err(invalid(
                    "execProviderConfig.apiVersion",
                    format!(
                        "must be one of {:?} (was {:?})",
                        crate::cluster_auth::exec::API_VERSIONS,
                        exec.api_version
                    ),
                ));
            }
            if exec.args.iter().any(|a| a.contains('\0')) || exec.command.contains('\0') {
                return Err(invalid("execProviderConfig.args", "contains a NUL byte"));
            }
            if let Some(k) = exec
                .env
                .iter()
                .find(|(k, v)| k.is_empty() || k.contains(['=', '\0']) || v.contains('\0'))
                .map(|(k, _)| k)
            {
                return Err(invalid(
                    &format!("execProviderConfig.env.{k}"),
                    "is not a valid environment variable",
                ));
            }
        }
        if let Some(p) = nonempty(&self.proxy_url) {
            proxy_uri(p)?;
        }
        let tls = &self.tls_client_config;
        if nonempty(&tls.cert_data).is_some() != nonempty(&tls.key_data).is_some() {
            return Err(invalid(
                "tlsClientConfig.certData",
                "and tlsClientConfig.keyData must be set together",
            ));
        }
        Ok(())
    }
}

/// `proxyUrl` as kube takes it: `http`, `https` or `socks5`, with a host.
fn proxy_uri(p: &str) -> Result<http::Uri, ConfigError> {
    let shown = flotilla_core::redact::redact_url(p);
    let uri: http::Uri = p
        .parse()
        .map_err(|_| invalid("proxyUrl", format!("{shown:?} is not a URL")))?;
    match uri.scheme_str() {
        Some("http" | "https" | "socks5") if uri.host().is_some_and(|h| !h.is_empty()) => Ok(uri),
        Some("http" | "https" | "socks5") => {
            Err(invalid("proxyUrl", format!("{shown:?} has no host")))
        }
        _ => Err(invalid(
            "proxyUrl",
            format!("{shown:?}: only http://, https:// and socks5:// proxies are supported"),
        )),
    }
}

/// One destination cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    pub name: String,
    pub server: String,
    pub config: ClusterConfig,
    /// The Secret it came from (`None` for the implicit in-cluster destination).
    pub secret: Option<String>,
    /// The AppProject this cluster is scoped to (`project` key); `None`: every project.
    pub project: Option<String>,
    /// `namespaces` (comma-separated): when set, Flotilla manages only these namespaces of the
    /// cluster (Argo CD's namespace-scoped clusters); empty: every namespace.
    pub namespaces: Vec<String>,
    /// `clusterResources`: with `namespaces` set, whether cluster-scoped resources may be
    /// managed too (Argo CD: off unless `"true"`). Without `namespaces` it is always allowed.
    pub cluster_resources: bool,
    /// `shard`: pins the cluster to controller shard N (Argo CD's manual shard assignment).
    pub shard: Option<u32>,
}

fn field(s: &Secret, secret: &str, key: &'static str) -> Result<String, ClusterSecretError> {
    let bytes = s
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| b.0.clone())
        .or_else(|| {
            s.string_data
                .as_ref()
                .and_then(|d| d.get(key))
                .map(|v| v.clone().into_bytes())
        })
        .ok_or_else(|| ClusterSecretError::Missing {
            secret: secret.to_string(),
            field: key,
        })?;
    String::from_utf8(bytes).map_err(|_| ClusterSecretError::NotUtf8 {
        secret: secret.to_string(),
        field: key,
    })
}

impl Cluster {
    /// Parse an Argo CD cluster Secret. `name` defaults to the server URL, as in Argo CD.
    pub fn from_secret(s: &Secret) -> Result<Self, ClusterSecretError> {
        let secret = s.metadata.name.clone().unwrap_or_default();
        let server = field(s, &secret, "server")?;
        if url_host(&server).is_none() {
            return Err(ClusterSecretError::BadServer { secret, server });
        }
        let name = field(s, &secret, "name").unwrap_or_else(|_| server.clone());
        let config = match field(s, &secret, "config") {
            Ok(text) => ClusterConfig::parse(&text).map_err(|e| e.in_secret(&secret))?,
            Err(ClusterSecretError::Missing { .. }) => ClusterConfig::default(),
            Err(e) => return Err(e),
        };
        // A `project` that cannot be read makes the Secret unusable rather than global.
        let project = match field(s, &secret, "project") {
            Ok(p) => Some(p).filter(|p| !p.is_empty()),
            Err(ClusterSecretError::Missing { .. }) => None,
            Err(e) => return Err(e),
        };
        let optional = |key: &'static str| match field(s, &secret, key) {
            Ok(v) => Ok(Some(v.trim().to_string()).filter(|v| !v.is_empty())),
            Err(ClusterSecretError::Missing { .. }) => Ok(None),
            Err(e) => Err(e),
        };
        let namespaces: Vec<String> = optional("namespaces")?
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let cluster_resources = optional("clusterResources")?.is_some_and(|v| v == "true");
        let shard = match optional("shard")? {
            None => None,
            Some(v) => Some(v.parse::<u32>().map_err(|_| ClusterSecretError::BadShard {
                secret: secret.clone(),
                value: v.clone(),
            })?),
        };
        Ok(Self {
            name,
            server: server.trim_end_matches('/').to_string(),
            config,
            secret: Some(secret),
            project,
            namespaces,
            cluster_resources,
            shard,
        })
    }

    /// The implicit destination for the cluster the controller runs in.
    pub fn in_cluster() -> Self {
        Self {
            name: IN_CLUSTER_NAME.into(),
            server: IN_CLUSTER_SERVER.into(),
            config: ClusterConfig::default(),
            secret: None,
            project: None,
            namespaces: Vec::new(),
            cluster_resources: false,
            shard: None,
        }
    }

    /// Whether an Application of `project` may use this cluster (a project-scoped cluster
    /// serves its project only, as in Argo CD).
    pub fn serves_project(&self, project: &str) -> bool {
        self.project.as_deref().is_none_or(|p| p == project)
    }

    /// Whether requests need credentials that expire (`awsAuthConfig`, `execProviderConfig`):
    /// then [`crate::cluster_auth::CredentialLayer`] puts them on each request.
    pub fn has_expiring_credentials(&self) -> bool {
        self.config.aws_auth_config.is_some() || self.config.exec_provider_config.is_some()
    }

    /// A `kube` client configuration for this cluster: server, TLS, proxy and static
    /// credentials. Expiring credentials are not in it: build clients with
    /// [`crate::cluster_auth::CredentialLayer`] (or [`crate::cluster_auth::client`]).
    pub fn kube_config(&self) -> Result<kube::Config, ClusterSecretError> {
        use base64::Engine;
        let secret = self.secret.clone().unwrap_or_default();
        let uri = self
            .server
            .parse()
            .map_err(|_| ClusterSecretError::BadServer {
                secret: secret.clone(),
                server: self.server.clone(),
            })?;
        let mut cfg = kube::Config::new(uri);
        let c = &self.config;
        // As in Argo CD, awsAuthConfig / execProviderConfig replace the static credentials.
        if !self.has_expiring_credentials() {
            cfg.auth_info.token = nonempty(&c.bearer_token).map(|t| t.to_string().into());
            if let Some(user) = nonempty(&c.username) {
                cfg.auth_info.username = Some(user.to_string());
                cfg.auth_info.password = Some(c.password.clone().unwrap_or_default().into());
            }
        }
        let tls = &c.tls_client_config;
        cfg.accept_invalid_certs = tls.insecure;
        cfg.tls_server_name = nonempty(&tls.server_name).map(str::to_string);
        let decode = |field: &str, data: &str| {
            base64::engine::general_purpose::STANDARD
                .decode(data.trim())
                .map_err(|e| ClusterSecretError::InvalidConfig {
                    secret: secret.clone(),
                    field: format!("tlsClientConfig.{field}"),
                    reason: format!("is not base64: {e}"),
                })
        };
        if let Some(ca) = nonempty(&tls.ca_data) {
            cfg.root_cert = Some(pem_certificates(&decode("caData", ca)?));
        }
        if let (Some(cert), Some(key)) = (nonempty(&tls.cert_data), nonempty(&tls.key_data)) {
            decode("certData", cert)?;
            decode("keyData", key)?;
            // kube takes these as base64, as kubeconfigs carry them.
            cfg.auth_info.client_certificate_data = Some(cert.trim().to_string());
            cfg.auth_info.client_key_data = Some(key.trim().to_string().into());
        }
        if let Some(p) = nonempty(&c.proxy_url) {
            cfg.proxy_url = Some(proxy_uri(p).map_err(|e| e.in_secret(&secret))?);
        }
        cfg.disable_compression = c.disable_compression;
        Ok(cfg)
    }
}

/// DER bodies of the PEM certificates in `pem`.
fn pem_certificates(pem: &[u8]) -> Vec<Vec<u8>> {
    use base64::Engine;
    let text = String::from_utf8_lossy(pem);
    let mut out = Vec::new();
    let mut body = String::new();
    let mut inside = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with("-----BEGIN CERTIFICATE") {
            inside = true;
            body.clear();
        } else if line.starts_with("-----END CERTIFICATE") {
            inside = false;
            if let Ok(der) = base64::engine::general_purpose::STANDARD.decode(&body) {
                out.push(der);
            }
        } else if inside {
            body.push_str(line);
        }
    }
    out
}

pub fn url_host(server: &str) -> Option<&str> {
    let rest = server
        .strip_prefix("https://")
        .or_else(|| server.strip_prefix("http://"))?;
    let host = rest.split('/').next().unwrap_or("");
    (!host.is_empty()).then_some(host)
}

/// All known destinations, by server URL, plus the Secrets that could not be used.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    by_server: BTreeMap<String, Cluster>,
    pub errors: Vec<ClusterSecretError>,
}

impl Registry {
    /// Build from the cluster Secrets; `in_cluster` adds Argo CD's implicit destination.
    pub fn from_secrets<'a>(
        secrets: impl IntoIterator<Item = &'a Secret>,
        in_cluster: Option<Cluster>,
    ) -> Self {
        let mut r = Self::default();
        if let Some(c) = in_cluster {
            r.by_server.insert(c.server.clone(), c);
        }
        for s in secrets {
            match Cluster::from_secret(s) {
                Ok(c) => {
                    r.by_server.insert(c.server.clone(), c);
                }
                Err(e) => r.errors.push(e),
            }
        }
        r
    }

    /// Resolve `spec.destination`: by server URL, or by name; `None` when unknown.
    pub fn resolve(&self, server: Option<&str>, name: Option<&str>) -> Option<&Cluster> {
        match (
            server.filter(|s| !s.is_empty()),
            name.filter(|n| !n.is_empty()),
        ) {
            (Some(s), _) => self.by_server.get(s.trim_end_matches('/')),
            (None, Some(n)) => self.by_server.values().find(|c| c.name == n),
            (None, None) => None,
        }
    }

    pub fn clusters(&self) -> impl Iterator<Item = &Cluster> {
        self.by_server.values()
    }

    pub fn len(&self) -> usize {
        self.by_server.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_server.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn mk_secret(name: &str, fields: &[(&str, &str)]) -> Secret {
        let mut s = Secret::default();
        s.metadata.name = Some(name.into());
        s.data = Some(
            fields
                .iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        );
        s
    }

    #[test]
    fn a_mistyped_config_field_never_quotes_its_value() {
        for config in [
            r#"{"tlsClientConfig": "-----BEGIN PRIVATE KEY----- hunter2"}"#,
            r#"{"bearerToken": {"nested": "hunter2"}}"#,
            r#"{"tlsClientConfig": {"insecure": "hunter2"}}"#,
        ] {
            let e = ClusterConfig::parse(config).expect_err(config).to_string();
            assert!(!e.contains("hunter2"), "{e}");
            assert!(
                e.contains("invalid type"),
                "the kind of mistake is still said: {e}"
            );
        }
    }

    #[test]
    fn parses_argo_cd_cluster_secret() {
        let s = mk_secret(
            "cluster-prod",
            &[
                ("name", "prod"),
                ("server", "https://prod.example:6443/"),
                (
                    "config",
                    r#"{"bearerToken":"t0k","tlsClientConfig":{"insecure":false,"serverName":"prod"}}"#,
                ),
            ],
        );
        let c = Cluster::from_secret(&s).expect("valid");
        assert_eq!(c.name, "prod");
        assert_eq!(c.server, "https://prod.example:6443");
        assert_eq!(c.config.bearer_token.as_deref(), Some("t0k"));
        let cfg = c.kube_config().expect("config");
        assert_eq!(cfg.tls_server_name.as_deref(), Some("prod"));
    }

    #[test]
    fn bad_secrets_are_reported_and_skipped() {
        let good = mk_secret("a", &[("name", "a"), ("server", "https://a:443")]);
        let no_server = mk_secret("b", &[("name", "b")]);
        let bad_json = mk_secret("c", &[("server", "https://c"), ("config", "{nope")]);
        let bad_url = mk_secret("d", &[("server", "not a url")]);
        let r = Registry::from_secrets([&good, &no_server, &bad_json, &bad_url], None);
        assert_eq!(r.len(), 1);
        assert_eq!(r.errors.len(), 3);
        assert!(matches!(
            r.errors[0],
            ClusterSecretError::Missing {
                field: "server",
                ..
            }
        ));
    }

    #[test]
    fn resolves_by_server_or_name_and_knows_in_cluster() {
        let a = mk_secret("a", &[("name", "east"), ("server", "https://east:6443")]);
        let in_cluster = Cluster::in_cluster();
        let r = Registry::from_secrets([&a], Some(in_cluster));
        assert_eq!(
            r.resolve(Some("https://east:6443/"), None)
                .map(|c| c.name.as_str()),
            Some("east")
        );
        assert_eq!(
            r.resolve(None, Some("east")).map(|c| c.server.as_str()),
            Some("https://east:6443")
        );
        assert!(r.resolve(Some(IN_CLUSTER_SERVER), None).is_some());
        assert!(r.resolve(Some("https://west"), None).is_none());
        assert!(r.resolve(None, None).is_none());
    }

    #[test]
    fn project_scoped_cluster_serves_only_its_project() {
        let scoped = mk_secret(
            "team-a-prod",
            &[("server", "https://a:6443"), ("project", "team-a")],
        );
        let global = mk_secret("shared", &[("server", "https://s:6443"), ("project", "")]);
        let a = Cluster::from_secret(&scoped).expect("valid");
        assert_eq!(a.project.as_deref(), Some("team-a"));
        assert!(a.serves_project("team-a"));
        assert!(!a.serves_project("team-b"));
        assert!(!a.serves_project("default"));
        let s = Cluster::from_secret(&global).expect("valid");
        assert_eq!(s.project, None, "an empty project is global");
        assert!(s.serves_project("team-b"));
    }

    fn config_error(config: &str) -> ClusterSecretError {
        let s = mk_secret("c", &[("server", "https://c:6443"), ("config", config)]);
        Cluster::from_secret(&s).expect_err("refused")
    }

    #[test]
    fn every_argo_cd_config_field_is_accepted() {
        let config = r#"{"username":"u","password":"p","bearerToken":"","tlsClientConfig":{"insecure":true,"serverName":"s","caData":null,"certData":null,"keyData":null},
            "awsAuthConfig":{"clusterName":"prod","roleARN":"arn:aws:iam::1:role/r","profile":""},
            "execProviderConfig":{"command":"c","args":["a"],"env":{"K":"V"},"apiVersion":"client.authentication.k8s.io/v1beta1","installHint":"h"},
            "disableCompression":true,"proxyUrl":"http://proxy:3128"}"#;
        let c = ClusterConfig::parse(config).expect("Argo CD's fields");
        assert_eq!(
            c.aws_auth_config.as_ref().map(|a| a.cluster_name.as_str()),
            Some("prod")
        );
        assert_eq!(
            c.exec_provider_config.as_ref().map(|e| e.args.len()),
            Some(1)
        );
        assert!(c.disable_compression);
        // Nulls read as Go reads them.
        let c = ClusterConfig::parse(
            r#"{"tlsClientConfig":null,"disableCompression":null,"awsAuthConfig":null}"#,
        )
        .expect("nulls");
        assert_eq!(c, ClusterConfig::default());
    }

    #[test]
    fn unknown_config_fields_are_refused_by_name() {
        let e = config_error(r#"{"bearerToken":"t","someNewField":1}"#);
        assert_eq!(
            e,
            ClusterSecretError::UnknownConfigField {
                secret: "c".into(),
                field: "someNewField".into()
            }
        );
        assert!(e.to_string().contains("\"someNewField\""), "{e}");
        let e = config_error(r#"{"tlsClientConfig":{"insecure":false,"caFile":"/x"}}"#);
        assert!(e.to_string().contains("tlsClientConfig.caFile"), "{e}");
        let e = config_error(
            r#"{"execProviderConfig":{"command":"c","apiVersion":"client.authentication.k8s.io/v1","provideClusterInfo":true}}"#,
        );
        assert!(
            e.to_string()
                .contains("execProviderConfig.provideClusterInfo"),
            "{e}"
        );
        let e = config_error(r#"{"awsAuthConfig":{"clusterName":"x","region":"eu-west-1"}}"#);
        assert!(e.to_string().contains("awsAuthConfig.region"), "{e}");
        // The API server's check (plain serde) refuses them too.
        assert!(serde_json::from_str::<ClusterConfig>(r#"{"someNewField":1}"#).is_err());
        assert!(matches!(
            config_error("[1]"),
            ClusterSecretError::BadConfig { .. }
        ));
    }

    #[test]
    fn unusable_values_are_refused_with_the_field_named() {
        for (config, field) in [
            (
                r#"{"awsAuthConfig":{"clusterName":""}}"#,
                "awsAuthConfig.clusterName",
            ),
            (
                r#"{"awsAuthConfig":{"clusterName":"x","profile":"dev"}}"#,
                "awsAuthConfig.profile",
            ),
            (
                r#"{"awsAuthConfig":{"clusterName":"x","roleARN":"deployer"}}"#,
                "awsAuthConfig.roleARN",
            ),
            (
                r#"{"execProviderConfig":{"apiVersion":"client.authentication.k8s.io/v1"}}"#,
                "execProviderConfig.command",
            ),
            (
                r#"{"execProviderConfig":{"command":"c"}}"#,
                "execProviderConfig.apiVersion",
            ),
            (
                r#"{"execProviderConfig":{"command":"c","apiVersion":"client.authentication.k8s.io/v1alpha1"}}"#,
                "execProviderConfig.apiVersion",
            ),
            (
                r#"{"execProviderConfig":{"command":"c","apiVersion":"client.authentication.k8s.io/v1","env":{"A=B":"x"}}}"#,
                "execProviderConfig.env.A=B",
            ),
            (r#"{"proxyUrl":"ftp://proxy"}"#, "proxyUrl"),
            (r#"{"proxyUrl":"socks4://proxy:1080"}"#, "proxyUrl"),
            (
                r#"{"tlsClientConfig":{"certData":"eA=="}}"#,
                "tlsClientConfig.certData",
            ),
        ] {
            match config_error(config) {
                ClusterSecretError::InvalidConfig { field: f, .. } => {
                    assert_eq!(f, field, "{config}")
                }
                other => panic!("{config}: {other}"),
            }
        }
        // A proxy password never shows in the message.
        let e = config_error(r#"{"proxyUrl":"gopher://user:pw-s3cr3t@proxy"}"#);
        assert!(!e.to_string().contains("s3cr3t"), "{e}");
    }

    #[test]
    fn kube_config_carries_proxy_client_certificate_and_precedence() {
        let s = mk_secret(
            "p",
            &[
                ("server", "https://p:6443"),
                (
                    "config",
                    r#"{"bearerToken":"static","proxyUrl":"socks5://127.0.0.1:1080","disableCompression":true,
                        "tlsClientConfig":{"certData":"Y2VydA==","keyData":"a2V5"}}"#,
                ),
            ],
        );
        let c = Cluster::from_secret(&s).expect("valid");
        assert!(!c.has_expiring_credentials());
        let cfg = c.kube_config().expect("config");
        assert_eq!(
            cfg.proxy_url.map(|u| u.to_string()),
            Some("socks5://127.0.0.1:1080/".to_string())
        );
        assert!(cfg.disable_compression);
        assert_eq!(
            cfg.auth_info.client_certificate_data.as_deref(),
            Some("Y2VydA==")
        );
        assert!(cfg.auth_info.client_key_data.is_some());
        assert!(cfg.auth_info.token.is_some());

        // awsAuthConfig replaces the static token (as in Argo CD); the layer adds its own.
        let s = mk_secret(
            "e",
            &[
                ("server", "https://e:6443"),
                (
                    "config",
                    r#"{"bearerToken":"static","awsAuthConfig":{"clusterName":"prod"}}"#,
                ),
            ],
        );
        let c = Cluster::from_secret(&s).expect("valid");
        assert!(c.has_expiring_credentials());
        let cfg = c.kube_config().expect("config");
        assert!(cfg.auth_info.token.is_none() && cfg.auth_info.username.is_none());
        let shown = format!("{c:?}");
        assert!(!shown.contains("static"), "{shown}");
    }
}

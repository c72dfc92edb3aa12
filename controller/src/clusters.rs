//! The cluster registry's core: parse Argo CD cluster Secrets (`argocd.argoproj.io/secret-type:
//! cluster`; `name`, `server`, `config`, `project`) into destinations and `kube` client configs,
//! and resolve an Application's destination (by server or name, in-cluster included). A cluster
//! whose Secret names a `project` serves only Applications of that project.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use serde::Deserialize;

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
}

/// `config` of a cluster Secret (the fields Flotilla honours).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterConfig {
    #[serde(default)]
    pub bearer_token: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub tls_client_config: TlsClientConfig,
}

/// `config.tlsClientConfig`; the `*Data` fields are base64 PEM.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TlsClientConfig {
    #[serde(default)]
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
            Ok(text) => serde_json::from_str(&text).map_err(|e| ClusterSecretError::BadConfig {
                secret: secret.clone(),
                message: e.to_string(),
            })?,
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

    /// A `kube` client configuration for this cluster.
    pub fn kube_config(&self) -> Result<kube::Config, ClusterSecretError> {
        let uri = self
            .server
            .parse()
            .map_err(|_| ClusterSecretError::BadServer {
                secret: self.secret.clone().unwrap_or_default(),
                server: self.server.clone(),
            })?;
        let mut cfg = kube::Config::new(uri);
        cfg.auth_info.token = self.config.bearer_token.clone().map(Into::into);
        cfg.auth_info.username = self.config.username.clone();
        cfg.auth_info.password = self.config.password.clone().map(Into::into);
        let tls = &self.config.tls_client_config;
        cfg.accept_invalid_certs = tls.insecure;
        cfg.tls_server_name = tls.server_name.clone();
        if let Some(ca) = &tls.ca_data {
            use base64::Engine;
            let pem = base64::engine::general_purpose::STANDARD
                .decode(ca)
                .map_err(|e| ClusterSecretError::BadConfig {
                    secret: self.secret.clone().unwrap_or_default(),
                    message: format!("tlsClientConfig.caData: {e}"),
                })?;
            cfg.root_cert = Some(pem_certificates(&pem));
        }
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
}

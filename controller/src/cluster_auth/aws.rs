//! `awsAuthConfig`: EKS bearer tokens made in-process as `argocd-k8s-auth aws` makes them (a
//! presigned STS `GetCallerIdentity` URL naming the cluster), from the pod's credentials.
//!
//! Credentials, in the AWS SDKs' order: static `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`
//! (`AWS_SESSION_TOKEN`), else IRSA (`AWS_ROLE_ARN` + `AWS_WEB_IDENTITY_TOKEN_FILE` →
//! `AssumeRoleWithWebIdentity`); a cluster's `roleARN` is then assumed with them
//! (`AssumeRole`). STS is `sts.<AWS_REGION>.amazonaws.com`, `sts.amazonaws.com` without a
//! region, or `FLOTILLA_AWS_STS_ENDPOINT` when set (tests, VPC endpoints, proxies).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine;
use jiff::{SignedDuration, Timestamp};

use super::sigv4::{self, Credentials, Scope};

/// Overrides the STS endpoint (`https://host[:port]`, or `http://` for a local test STS).
pub const STS_ENDPOINT_ENV: &str = "FLOTILLA_AWS_STS_ENDPOINT";
/// How long a presigned `GetCallerIdentity` URL is valid (EKS requires 60 s or less).
pub const PRESIGN_EXPIRES_SECONDS: u64 = 60;
/// EKS accepts a token for 15 minutes after it was signed; Flotilla makes a new one after 10.
pub const TOKEN_REFRESH: SignedDuration = SignedDuration::from_mins(10);
const TOKEN_VALIDITY: SignedDuration = SignedDuration::from_mins(15);
/// STS credentials are replaced this long before they expire.
const CREDENTIALS_MARGIN: SignedDuration = SignedDuration::from_mins(5);
const STS_VERSION: &str = "2011-06-15";
const MAX_ANSWER: usize = 64 * 1024;
/// The header EKS's authenticator requires in the signed request.
pub const CLUSTER_ID_HEADER: &str = "x-k8s-aws-id";
pub const TOKEN_PREFIX: &str = "k8s-aws-v1.";

/// The IRSA settings a pod gets from the EKS webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebIdentity {
    pub role_arn: String,
    pub token_file: PathBuf,
    pub session_name: Option<String>,
}

/// Where credentials and STS come from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AwsSettings {
    /// [`STS_ENDPOINT_ENV`].
    pub sts_endpoint: Option<String>,
    /// `AWS_REGION`, else `AWS_DEFAULT_REGION`.
    pub region: Option<String>,
    pub static_credentials: Option<Credentials>,
    pub web_identity: Option<WebIdentity>,
}

impl AwsSettings {
    /// From this process's environment.
    pub fn from_env() -> Self {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// From the variables `get` returns (empty values count as unset).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let get = |k: &str| {
            get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let static_credentials = match (get("AWS_ACCESS_KEY_ID"), get("AWS_SECRET_ACCESS_KEY")) {
            (Some(access_key_id), Some(secret_access_key)) => Some(Credentials {
                access_key_id,
                secret_access_key,
                session_token: get("AWS_SESSION_TOKEN"),
            }),
            _ => None,
        };
        let web_identity = match (get("AWS_ROLE_ARN"), get("AWS_WEB_IDENTITY_TOKEN_FILE")) {
            (Some(role_arn), Some(file)) => Some(WebIdentity {
                role_arn,
                token_file: PathBuf::from(file),
                session_name: get("AWS_ROLE_SESSION_NAME"),
            }),
            _ => None,
        };
        Self {
            sts_endpoint: get(STS_ENDPOINT_ENV),
            region: get("AWS_REGION").or_else(|| get("AWS_DEFAULT_REGION")),
            static_credentials,
            web_identity,
        }
    }

    /// The STS endpoint and the region requests to it are signed for.
    pub fn endpoint(&self) -> Result<Endpoint, AwsError> {
        let region = match &self.region {
            Some(r) if !r.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') => {
                return Err(AwsError::Endpoint {
                    value: r.clone(),
                    reason: "AWS_REGION is not a region name".into(),
                });
            }
            Some(r) => Some(r.clone()),
            None => None,
        };
        let signing_region = region.clone().unwrap_or_else(|| "us-east-1".into());
        let Some(url) = &self.sts_endpoint else {
            let host = match &region {
                Some(r) if r.starts_with("cn-") => format!("sts.{r}.amazonaws.com.cn"),
                Some(r) => format!("sts.{r}.amazonaws.com"),
                None => "sts.amazonaws.com".into(),
            };
            return Ok(Endpoint {
                scheme: "https".into(),
                authority: host,
                region: signing_region,
            });
        };
        let bad = |reason: &str| AwsError::Endpoint {
            value: flotilla_core::redact::redact_url(url),
            reason: reason.into(),
        };
        let uri: http::Uri = url.parse().map_err(|_| bad("not a URL"))?;
        let scheme = match uri.scheme_str() {
            Some(s @ ("http" | "https")) => s.to_string(),
            _ => return Err(bad("the scheme must be https (or http)")),
        };
        let auth = uri.authority().ok_or_else(|| bad("no host"))?;
        if auth.as_str().contains('@') {
            return Err(bad("credentials in the URL are not allowed"));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(bad("a path or query is not allowed"));
        }
        let default_port = if scheme == "https" { 443 } else { 80 };
        let authority = match auth.port_u16() {
            Some(p) if p != default_port => format!("{}:{p}", auth.host()),
            _ => auth.host().to_string(),
        };
        Ok(Endpoint {
            scheme,
            authority,
            region: signing_region,
        })
    }
}

/// An STS endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub scheme: String,
    /// `host` or `host:port` (as the `Host` header carries it).
    pub authority: String,
    /// The region requests are signed for.
    pub region: String,
}

impl Endpoint {
    pub fn url(&self) -> String {
        format!("{}://{}/", self.scheme, self.authority)
    }
}

/// Why no EKS token could be made. Never carries a credential.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AwsError {
    #[error(
        "no AWS credentials: the controller needs IRSA (AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE) or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    )]
    NoCredentials,
    #[error("reading the web identity token file {path}: {message}")]
    TokenFile { path: String, message: String },
    #[error("STS endpoint {value:?} is not usable: {reason}")]
    Endpoint { value: String, reason: String },
    #[error("STS {action} at {endpoint}: {message}")]
    Http {
        action: &'static str,
        endpoint: String,
        message: String,
    },
    #[error("STS {action} at {endpoint} answered {status}: {code}: {message}")]
    Refused {
        action: &'static str,
        endpoint: String,
        status: u16,
        code: String,
        message: String,
    },
    #[error("STS {action} at {endpoint}: unexpected answer: {reason}")]
    BadAnswer {
        action: &'static str,
        endpoint: String,
        reason: String,
    },
}

/// A value with the time it must be replaced by (`None`: never).
#[derive(Debug, Clone)]
struct Timed<T> {
    value: T,
    expires: Option<Timestamp>,
}

impl<T> Timed<T> {
    fn fresh(&self, now: Timestamp) -> bool {
        self.expires.is_none_or(|e| now + CREDENTIALS_MARGIN < e)
    }
}

/// An EKS token and when to replace it.
#[derive(Clone, PartialEq, Eq)]
pub struct EksToken {
    pub token: String,
    /// Make a new one from then on.
    pub refresh_at: Timestamp,
    /// EKS refuses it from then on.
    pub expires_at: Timestamp,
}

impl std::fmt::Debug for EksToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EksToken")
            .field("token", &"***")
            .field("refresh_at", &self.refresh_at)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// `k8s-aws-v1.` + base64url(presigned `GetCallerIdentity` URL with `x-k8s-aws-id` signed),
/// as `argocd-k8s-auth aws` and `aws eks get-token` make it.
pub fn eks_token(
    endpoint: &Endpoint,
    cluster_name: &str,
    creds: &Credentials,
    time: Timestamp,
) -> String {
    let req = sigv4::Request {
        method: "GET",
        path: "/",
        query: vec![
            ("Action".into(), "GetCallerIdentity".into()),
            ("Version".into(), STS_VERSION.into()),
        ],
        headers: vec![
            ("host".into(), endpoint.authority.clone()),
            (CLUSTER_ID_HEADER.into(), cluster_name.into()),
        ],
        payload_hash: sigv4::EMPTY_SHA256,
    };
    let scope = Scope {
        service: "sts",
        region: &endpoint.region,
        time,
    };
    let query = sigv4::presign(&req, creds, &scope, PRESIGN_EXPIRES_SECONDS);
    let url = format!("{}?{query}", endpoint.url());
    format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(url)
    )
}

/// The text of the first `<tag>…</tag>` in `xml`, entities decoded.
fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&close)?;
    Some(
        xml[start..start + len]
            .trim()
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

/// The `<Credentials>` of an STS answer.
fn parse_credentials(xml: &str) -> Result<Timed<Credentials>, String> {
    let creds = xml_text(xml, "Credentials").ok_or("no Credentials element")?;
    let field = |t: &str| xml_text(&creds, t).ok_or_else(|| format!("no {t} element"));
    let expires = field("Expiration")?
        .parse::<Timestamp>()
        .map_err(|_| "Expiration is not a time".to_string())?;
    Ok(Timed {
        value: Credentials {
            access_key_id: field("AccessKeyId")?,
            secret_access_key: field("SecretAccessKey")?,
            session_token: Some(field("SessionToken")?),
        },
        expires: Some(expires),
    })
}

/// EKS tokens for clusters, with the pod's credentials and assumed roles cached.
pub struct AwsAuth {
    settings: AwsSettings,
    http: OnceLock<Result<reqwest::Client, String>>,
    base: tokio::sync::Mutex<Option<Timed<Credentials>>>,
    roles: tokio::sync::Mutex<HashMap<String, Timed<Credentials>>>,
}

impl std::fmt::Debug for AwsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsAuth")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl AwsAuth {
    pub fn new(settings: AwsSettings) -> Self {
        Self {
            settings,
            http: OnceLock::new(),
            base: tokio::sync::Mutex::new(None),
            roles: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    pub fn settings(&self) -> &AwsSettings {
        &self.settings
    }

    /// A token for EKS cluster `cluster_name`, made with `role_arn`'s credentials when set.
    pub async fn token(
        &self,
        cluster_name: &str,
        role_arn: Option<&str>,
    ) -> Result<EksToken, AwsError> {
        let endpoint = self.settings.endpoint()?;
        let creds = match role_arn {
            Some(role) => self.role_credentials(&endpoint, role).await?,
            None => self.base_credentials(&endpoint).await?,
        };
        let now = Timestamp::now();
        let mut refresh_at = now + TOKEN_REFRESH;
        if let Some(e) = creds.expires {
            refresh_at = refresh_at.min(e - SignedDuration::from_mins(1));
        }
        Ok(EksToken {
            token: eks_token(&endpoint, cluster_name, &creds.value, now),
            refresh_at: refresh_at.max(now + SignedDuration::from_secs(10)),
            expires_at: now + TOKEN_VALIDITY,
        })
    }

    /// The pod's credentials: static, or from its web identity (cached until near expiry).
    async fn base_credentials(&self, endpoint: &Endpoint) -> Result<Timed<Credentials>, AwsError> {
        if let Some(c) = &self.settings.static_credentials {
            return Ok(Timed {
                value: c.clone(),
                expires: None,
            });
        }
        let Some(wi) = &self.settings.web_identity else {
            return Err(AwsError::NoCredentials);
        };
        let mut cached = self.base.lock().await;
        if let Some(c) = cached.as_ref().filter(|c| c.fresh(Timestamp::now())) {
            return Ok(c.clone());
        }
        // Read on every renewal: the kubelet rotates the projected token.
        let token = tokio::fs::read_to_string(&wi.token_file)
            .await
            .map_err(|e| AwsError::TokenFile {
                path: wi.token_file.display().to_string(),
                message: e.kind().to_string(),
            })?;
        let form = vec![
            (
                "Action".to_string(),
                "AssumeRoleWithWebIdentity".to_string(),
            ),
            ("Version".to_string(), STS_VERSION.to_string()),
            ("RoleArn".to_string(), wi.role_arn.clone()),
            (
                "RoleSessionName".to_string(),
                session_name(wi.session_name.as_deref()),
            ),
            ("WebIdentityToken".to_string(), token.trim().to_string()),
        ];
        let xml = self
            .call(endpoint, "AssumeRoleWithWebIdentity", form, None)
            .await?;
        let creds = parse_credentials(&xml).map_err(|reason| AwsError::BadAnswer {
            action: "AssumeRoleWithWebIdentity",
            endpoint: endpoint.url(),
            reason,
        })?;
        tracing::info!(
            role = %wi.role_arn,
            expires = ?creds.expires,
            "AWS web identity credentials obtained"
        );
        *cached = Some(creds.clone());
        Ok(creds)
    }

    /// Credentials of `role`, assumed with the pod's (cached until near expiry).
    async fn role_credentials(
        &self,
        endpoint: &Endpoint,
        role: &str,
    ) -> Result<Timed<Credentials>, AwsError> {
        let mut roles = self.roles.lock().await;
        if let Some(c) = roles.get(role).filter(|c| c.fresh(Timestamp::now())) {
            return Ok(c.clone());
        }
        let base = self.base_credentials(endpoint).await?;
        let form = vec![
            ("Action".to_string(), "AssumeRole".to_string()),
            ("Version".to_string(), STS_VERSION.to_string()),
            ("RoleArn".to_string(), role.to_string()),
            ("RoleSessionName".to_string(), session_name(None)),
        ];
        let xml = self
            .call(endpoint, "AssumeRole", form, Some(&base.value))
            .await?;
        let creds = parse_credentials(&xml).map_err(|reason| AwsError::BadAnswer {
            action: "AssumeRole",
            endpoint: endpoint.url(),
            reason,
        })?;
        tracing::info!(role, expires = ?creds.expires, "AWS role assumed");
        roles.insert(role.to_string(), creds.clone());
        Ok(creds)
    }

    fn client(
        &self,
        endpoint: &Endpoint,
        action: &'static str,
    ) -> Result<reqwest::Client, AwsError> {
        self.http
            .get_or_init(|| {
                let _ = rustls::crypto::ring::default_provider().install_default();
                reqwest::Client::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .timeout(Duration::from_secs(15))
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .map_err(|e| e.without_url().to_string())
            })
            .clone()
            .map_err(|message| AwsError::Http {
                action,
                endpoint: endpoint.url(),
                message,
            })
    }

    /// POST an STS query-API call (signed with `sign` when given); the XML answer.
    async fn call(
        &self,
        endpoint: &Endpoint,
        action: &'static str,
        form: Vec<(String, String)>,
        sign: Option<&Credentials>,
    ) -> Result<String, AwsError> {
        let http_err = |message: String| AwsError::Http {
            action,
            endpoint: endpoint.url(),
            message,
        };
        let body = form
            .iter()
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    sigv4::uri_encode(k, false),
                    sigv4::uri_encode(v, false)
                )
            })
            .collect::<Vec<_>>()
            .join("&");
        let content_type = "application/x-www-form-urlencoded; charset=utf-8";
        let mut req = self
            .client(endpoint, action)?
            .post(endpoint.url())
            .header(http::header::CONTENT_TYPE, content_type)
            .header(http::header::ACCEPT, "text/xml");
        if let Some(creds) = sign {
            let payload_hash = sigv4::sha256_hex(body.as_bytes());
            let signed = sigv4::sign_headers(
                &sigv4::Request {
                    method: "POST",
                    path: "/",
                    query: Vec::new(),
                    headers: vec![
                        ("content-type".into(), content_type.into()),
                        ("host".into(), endpoint.authority.clone()),
                    ],
                    payload_hash: &payload_hash,
                },
                creds,
                &Scope {
                    service: "sts",
                    region: &endpoint.region,
                    time: Timestamp::now(),
                },
            );
            for (k, v) in signed {
                req = req.header(k, v);
            }
        }
        let mut resp = req
            .body(body)
            .send()
            .await
            .map_err(|e| http_err(e.without_url().to_string()))?;
        let status = resp.status();
        let mut answer = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| http_err(e.without_url().to_string()))?
        {
            if answer.len() + chunk.len() > MAX_ANSWER {
                return Err(http_err(format!("answer larger than {MAX_ANSWER} bytes")));
            }
            answer.extend_from_slice(&chunk);
        }
        let xml = String::from_utf8_lossy(&answer).to_string();
        if !status.is_success() {
            let clip = |s: String| s.chars().take(300).collect::<String>();
            return Err(AwsError::Refused {
                action,
                endpoint: endpoint.url(),
                status: status.as_u16(),
                code: xml_text(&xml, "Code").map(clip).unwrap_or_default(),
                message: xml_text(&xml, "Message").map(clip).unwrap_or_default(),
            });
        }
        Ok(xml)
    }
}

fn session_name(configured: Option<&str>) -> String {
    configured
        .map(str::to_string)
        .unwrap_or_else(|| format!("flotilla-{}", Timestamp::now().as_second()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query_of(token: &str) -> (String, Vec<(String, String)>) {
        let b64 = token.strip_prefix(TOKEN_PREFIX).expect("prefix");
        let url = String::from_utf8(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(b64)
                .expect("base64url without padding"),
        )
        .expect("utf-8");
        let (base, q) = url.split_once('?').expect("query");
        let pairs = q
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        (base.to_string(), pairs)
    }

    #[test]
    fn token_is_a_presigned_get_caller_identity_url() {
        let creds = Credentials {
            access_key_id: "ASIAEXAMPLE".into(),
            secret_access_key: "secret".into(),
            session_token: Some("sess/ion+token=".into()),
        };
        let ep = AwsSettings::default().endpoint().expect("default endpoint");
        assert_eq!(ep.url(), "https://sts.amazonaws.com/");
        assert_eq!(ep.region, "us-east-1");
        let t = eks_token(
            &ep,
            "prod",
            &creds,
            "2024-01-02T03:04:05Z".parse().expect("ts"),
        );
        assert!(!t.contains('=') && !t.contains('+') && !t.contains('/'));
        let (base, q) = query_of(&t);
        assert_eq!(base, "https://sts.amazonaws.com/");
        let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("Action"), Some("GetCallerIdentity"));
        assert_eq!(get("Version"), Some("2011-06-15"));
        assert_eq!(get("X-Amz-Algorithm"), Some("AWS4-HMAC-SHA256"));
        assert_eq!(get("X-Amz-Expires"), Some("60"));
        assert_eq!(get("X-Amz-SignedHeaders"), Some("host%3Bx-k8s-aws-id"));
        assert_eq!(
            get("X-Amz-Credential"),
            Some("ASIAEXAMPLE%2F20240102%2Fus-east-1%2Fsts%2Faws4_request")
        );
        assert_eq!(get("X-Amz-Date"), Some("20240102T030405Z"));
        assert_eq!(get("X-Amz-Security-Token"), Some("sess%2Fion%2Btoken%3D"));
        assert_eq!(get("X-Amz-Signature").map(str::len), Some(64));
    }

    #[test]
    fn endpoints_follow_region_and_override() {
        let s = |region: Option<&str>, ep: Option<&str>| AwsSettings {
            region: region.map(Into::into),
            sts_endpoint: ep.map(Into::into),
            ..Default::default()
        };
        let e = s(Some("eu-west-1"), None).endpoint().expect("regional");
        assert_eq!(
            (e.url().as_str(), e.region.as_str()),
            ("https://sts.eu-west-1.amazonaws.com/", "eu-west-1")
        );
        let e = s(Some("cn-north-1"), None).endpoint().expect("china");
        assert_eq!(e.authority, "sts.cn-north-1.amazonaws.com.cn");
        let e = s(None, Some("http://127.0.0.1:4566"))
            .endpoint()
            .expect("override");
        assert_eq!(
            (e.authority.as_str(), e.region.as_str()),
            ("127.0.0.1:4566", "us-east-1")
        );
        let e = s(None, Some("https://sts.internal:443/"))
            .endpoint()
            .expect("default port");
        assert_eq!(e.authority, "sts.internal");
        assert!(s(None, Some("ftp://x")).endpoint().is_err());
        assert!(s(None, Some("https://u:p@x")).endpoint().is_err());
        assert!(s(Some("eu-west-1.evil.com/"), None).endpoint().is_err());
    }

    #[test]
    fn settings_from_environment() {
        let env: HashMap<&str, &str> = HashMap::from([
            ("AWS_ROLE_ARN", "arn:aws:iam::1:role/r"),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/token"),
            ("AWS_DEFAULT_REGION", "eu-central-1"),
            ("AWS_ACCESS_KEY_ID", "AKID"),
            ("AWS_SECRET_ACCESS_KEY", ""),
        ]);
        let s = AwsSettings::from_lookup(|k| env.get(k).map(|v| v.to_string()));
        assert_eq!(s.region.as_deref(), Some("eu-central-1"));
        assert_eq!(s.static_credentials, None, "an empty secret key is no key");
        assert_eq!(
            s.web_identity.map(|w| w.token_file),
            Some(PathBuf::from("/var/run/token"))
        );
    }

    #[test]
    fn parses_sts_answers() {
        let xml = r#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <Credentials>
      <SessionToken>tok&amp;en</SessionToken>
      <SecretAccessKey>sec</SecretAccessKey>
      <Expiration>2030-01-01T00:00:00Z</Expiration>
      <AccessKeyId>ASIA1</AccessKeyId>
    </Credentials>
  </AssumeRoleWithWebIdentityResult>
</AssumeRoleWithWebIdentityResponse>"#;
        let c = parse_credentials(xml).expect("credentials");
        assert_eq!(c.value.access_key_id, "ASIA1");
        assert_eq!(c.value.session_token.as_deref(), Some("tok&en"));
        assert!(parse_credentials("<Error/>").is_err());
    }

    #[tokio::test]
    async fn missing_credentials_are_a_clear_error() {
        let auth = AwsAuth::new(AwsSettings::default());
        let e = auth.token("prod", None).await.expect_err("no credentials");
        assert_eq!(e, AwsError::NoCredentials);
    }
}

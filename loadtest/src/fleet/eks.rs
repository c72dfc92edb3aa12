//! EKS authentication for tests, without AWS: a loopback STS (`AssumeRoleWithWebIdentity`,
//! `AssumeRole`, presigned `GetCallerIdentity`) that checks SigV4 signatures with the secrets
//! it issued, and an EKS-like TLS front for a kubesim cluster that accepts `k8s-aws-v1.` tokens
//! only after STS verified them (as aws-iam-authenticator does), then forwards to kubesim.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use base64::Engine;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The account of every identity the fake STS issues.
pub const ACCOUNT: &str = "111122223333";

/// Credentials the fake STS issued.
#[derive(Debug, Clone)]
struct Issued {
    secret: String,
    session_token: String,
    /// The assumed-role ARN `GetCallerIdentity` answers with.
    arn: String,
}

/// What the fake STS saw.
#[derive(Debug, Clone, Default)]
pub struct StsLog {
    pub web_identity_calls: u64,
    pub assume_role_calls: u64,
    /// Roles assumed with `AssumeRole`, in order.
    pub assumed_roles: Vec<String>,
    /// `GetCallerIdentity` calls whose signature checked out: (x-k8s-aws-id, caller ARN).
    pub verified: Vec<(String, String)>,
    /// Why requests were refused.
    pub refused: Vec<String>,
}

#[derive(Default)]
struct StsState {
    issued: HashMap<String, Issued>,
    log: StsLog,
}

/// A loopback STS over plain HTTP.
pub struct FakeSts {
    pub addr: SocketAddr,
    state: Arc<Mutex<StsState>>,
    task: JoinHandle<()>,
}

impl Drop for FakeSts {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The IRSA identity the fake STS trusts: a role and the web identity token that may assume it.
#[derive(Debug, Clone)]
pub struct TrustedIdentity {
    pub role_arn: String,
    pub web_identity_token: String,
}

type Body = Full<Bytes>;

fn xml_reply(status: StatusCode, xml: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(xml)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/xml"),
    );
    r
}

fn sts_error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    xml_reply(
        status,
        format!(
            "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>fake</RequestId></ErrorResponse>"
        ),
    )
}

fn random_string(prefix: &str, len: usize) -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = rand::rng();
    let tail: String = (0..len)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect();
    format!("{prefix}{tail}")
}

/// SigV4 for checking signatures, written apart from the controller's signer on purpose.
mod check {
    use super::*;

    pub fn enc(s: &str) -> String {
        url::form_urlencoded::byte_serialize(s.as_bytes())
            .collect::<String>()
            // form encoding differs from SigV4's in three characters.
            .replace('+', "%20")
            .replace('*', "%2A")
            .replace("%7E", "~")
    }

    fn hmac(key: &[u8], data: &str) -> Vec<u8> {
        let Ok(mut m) = Hmac::<Sha256>::new_from_slice(key) else {
            return Vec::new();
        };
        m.update(data.as_bytes());
        m.finalize().into_bytes().to_vec()
    }

    /// The hex signature of `canonical_request` for `secret`, `amz_date` and `scope`
    /// (`date/region/service/aws4_request`).
    pub fn signature(secret: &str, amz_date: &str, scope: &str, canonical_request: &str) -> String {
        let mut parts = scope.split('/');
        let (date, region, service) = (
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
        );
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            hex::encode(Sha256::digest(canonical_request.as_bytes()))
        );
        let k = hmac(format!("AWS4{secret}").as_bytes(), date);
        let k = hmac(&k, region);
        let k = hmac(&k, service);
        let k = hmac(&k, "aws4_request");
        hex::encode(hmac(&k, &to_sign))
    }

    /// `name:value\n` lines and the `;` list for `signed` (lower-case names) from `headers`.
    pub fn headers(
        headers: &hyper::HeaderMap,
        signed: &str,
    ) -> std::result::Result<String, String> {
        let mut out = String::new();
        for name in signed.split(';') {
            let v = headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| format!("signed header {name} missing"))?;
            out.push_str(&format!(
                "{name}:{}\n",
                v.split_whitespace().collect::<Vec<_>>().join(" ")
            ));
        }
        Ok(out)
    }

    pub fn query(params: &[(String, String)]) -> String {
        let mut enc_params: Vec<(String, String)> =
            params.iter().map(|(k, v)| (enc(k), enc(v))).collect();
        enc_params.sort();
        enc_params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    }
}

/// Whether `amz_date` (`20240102T030405Z`) is within `minutes` of now.
fn recent(amz_date: &str, minutes: i64) -> bool {
    let Ok(t) = jiff::civil::DateTime::strptime("%Y%m%dT%H%M%SZ", amz_date) else {
        return false;
    };
    let Ok(t) = t.to_zoned(jiff::tz::TimeZone::UTC) else {
        return false;
    };
    let age = jiff::Timestamp::now().as_second() - t.timestamp().as_second();
    age.abs() <= minutes * 60
}

impl FakeSts {
    pub async fn start(trusted: TrustedIdentity) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(StsState::default()));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = shared.clone();
                let trusted = trusted.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let state = state.clone();
                        let trusted = trusted.clone();
                        async move { Ok::<_, Infallible>(sts_handle(&state, &trusted, req).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(Self { addr, state, task })
    }

    /// `http://127.0.0.1:port` (what `FLOTILLA_AWS_STS_ENDPOINT` is set to).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn log(&self) -> StsLog {
        self.state.lock().map(|s| s.log.clone()).unwrap_or_default()
    }

    /// Whether the access key id is one this STS issued.
    pub fn issued(&self, access_key_id: &str) -> bool {
        self.state
            .lock()
            .is_ok_and(|s| s.issued.contains_key(access_key_id))
    }
}

fn issue(state: &Mutex<StsState>, role_arn: &str, session: &str) -> (String, Issued) {
    let akid = random_string("ASIA", 16);
    let role_name = role_arn.rsplit('/').next().unwrap_or("role");
    let issued = Issued {
        secret: random_string("", 40),
        session_token: random_string("FQoGZXIvYXdzE", 60),
        arn: format!("arn:aws:sts::{ACCOUNT}:assumed-role/{role_name}/{session}"),
    };
    if let Ok(mut s) = state.lock() {
        s.issued.insert(akid.clone(), issued.clone());
    }
    (akid, issued)
}

fn credentials_xml(action: &str, akid: &str, issued: &Issued) -> String {
    let expires = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1))
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    format!(
        "<{action}Response xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><{action}Result><Credentials><AccessKeyId>{akid}</AccessKeyId><SecretAccessKey>{}</SecretAccessKey><SessionToken>{}</SessionToken><Expiration>{expires}</Expiration></Credentials><AssumedRoleUser><Arn>{}</Arn><AssumedRoleId>AROA:{akid}</AssumedRoleId></AssumedRoleUser></{action}Result><ResponseMetadata><RequestId>fake</RequestId></ResponseMetadata></{action}Response>",
        issued.secret, issued.session_token, issued.arn
    )
}

fn refuse(state: &Mutex<StsState>, status: StatusCode, code: &str, why: String) -> Response<Body> {
    if let Ok(mut s) = state.lock() {
        s.log.refused.push(why.clone());
    }
    sts_error(status, code, &why)
}

async fn sts_handle(
    state: &Mutex<StsState>,
    trusted: &TrustedIdentity,
    req: Request<Incoming>,
) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return sts_error(StatusCode::BAD_REQUEST, "InvalidRequest", "unreadable body");
    };
    let query: Vec<(String, String)> =
        url::form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let param = |list: &[(String, String)], k: &str| {
        list.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let action = if parts.method == hyper::Method::GET {
        param(&query, "Action")
    } else {
        param(&form, "Action")
    };
    match action.as_str() {
        "AssumeRoleWithWebIdentity" => {
            if let Ok(mut s) = state.lock() {
                s.log.web_identity_calls += 1;
            }
            if param(&form, "RoleArn") != trusted.role_arn
                || param(&form, "WebIdentityToken") != trusted.web_identity_token
            {
                return refuse(
                    state,
                    StatusCode::FORBIDDEN,
                    "InvalidIdentityToken",
                    "web identity token or role not trusted".into(),
                );
            }
            let (akid, issued) = issue(state, &trusted.role_arn, &param(&form, "RoleSessionName"));
            xml_reply(
                StatusCode::OK,
                credentials_xml("AssumeRoleWithWebIdentity", &akid, &issued),
            )
        }
        "AssumeRole" => {
            if let Ok(mut s) = state.lock() {
                s.log.assume_role_calls += 1;
            }
            if let Err(why) = verify_header_signature(state, &parts, &body) {
                return refuse(state, StatusCode::FORBIDDEN, "SignatureDoesNotMatch", why);
            }
            let role = param(&form, "RoleArn");
            let (akid, issued) = issue(state, &role, &param(&form, "RoleSessionName"));
            if let Ok(mut s) = state.lock() {
                s.log.assumed_roles.push(role);
            }
            xml_reply(
                StatusCode::OK,
                credentials_xml("AssumeRole", &akid, &issued),
            )
        }
        "GetCallerIdentity" if parts.method == hyper::Method::GET => {
            match verify_presigned(state, &parts, &query) {
                Ok((cluster, arn)) => {
                    if let Ok(mut s) = state.lock() {
                        s.log.verified.push((cluster, arn.clone()));
                    }
                    xml_reply(
                        StatusCode::OK,
                        format!(
                            "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><GetCallerIdentityResult><Arn>{arn}</Arn><UserId>AROA:x</UserId><Account>{ACCOUNT}</Account></GetCallerIdentityResult><ResponseMetadata><RequestId>fake</RequestId></ResponseMetadata></GetCallerIdentityResponse>"
                        ),
                    )
                }
                Err(why) => refuse(state, StatusCode::FORBIDDEN, "SignatureDoesNotMatch", why),
            }
        }
        other => refuse(
            state,
            StatusCode::BAD_REQUEST,
            "InvalidAction",
            format!("unsupported action {other:?}"),
        ),
    }
}

fn issued_for(state: &Mutex<StsState>, akid: &str) -> std::result::Result<Issued, String> {
    state
        .lock()
        .map_err(|_| "state poisoned".to_string())?
        .issued
        .get(akid)
        .cloned()
        .ok_or_else(|| format!("access key {akid} was never issued"))
}

/// Check an `Authorization: AWS4-HMAC-SHA256 …` header-signed POST.
fn verify_header_signature(
    state: &Mutex<StsState>,
    parts: &hyper::http::request::Parts,
    body: &[u8],
) -> std::result::Result<(), String> {
    let auth = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or("no Authorization header")?;
    let rest = auth
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or("not AWS4-HMAC-SHA256")?;
    let mut fields: HashMap<&str, &str> = HashMap::new();
    for part in rest.split(", ") {
        if let Some((k, v)) = part.split_once('=') {
            fields.insert(k, v);
        }
    }
    let credential = fields.get("Credential").ok_or("no Credential")?;
    let (akid, scope) = credential.split_once('/').ok_or("bad Credential")?;
    if !scope.ends_with("/sts/aws4_request") {
        return Err(format!("scope {scope} is not for sts"));
    }
    let signed = fields.get("SignedHeaders").ok_or("no SignedHeaders")?;
    if !signed.split(';').any(|h| h == "host") || !signed.contains("x-amz-date") {
        return Err("host and x-amz-date must be signed".into());
    }
    let issued = issued_for(state, akid)?;
    let token = parts
        .headers
        .get("x-amz-security-token")
        .and_then(|v| v.to_str().ok());
    if token != Some(issued.session_token.as_str()) {
        return Err("wrong or missing session token".into());
    }
    let amz_date = parts
        .headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or("no x-amz-date")?;
    if !recent(amz_date, 5) {
        return Err("request time too far from now".into());
    }
    let creq = format!(
        "{}\n{}\n{}\n{}\n{signed}\n{}",
        parts.method,
        parts.uri.path(),
        check::query(
            &url::form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
                .into_owned()
                .collect::<Vec<_>>()
        ),
        check::headers(&parts.headers, signed)?,
        hex::encode(Sha256::digest(body))
    );
    let expected = check::signature(&issued.secret, amz_date, scope, &creq);
    if fields.get("Signature") != Some(&expected.as_str()) {
        return Err("signature does not match".into());
    }
    Ok(())
}

/// Check a presigned `GetCallerIdentity` as STS (and aws-iam-authenticator) would; returns
/// (x-k8s-aws-id, caller ARN).
fn verify_presigned(
    state: &Mutex<StsState>,
    parts: &hyper::http::request::Parts,
    query: &[(String, String)],
) -> std::result::Result<(String, String), String> {
    let get = |k: &str| {
        query
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| format!("no {k}"))
    };
    if get("X-Amz-Algorithm")? != "AWS4-HMAC-SHA256" {
        return Err("wrong X-Amz-Algorithm".into());
    }
    if get("X-Amz-Expires")? != "60" {
        return Err("X-Amz-Expires must be 60".into());
    }
    let signed = get("X-Amz-SignedHeaders")?;
    if !signed.split(';').any(|h| h == "x-k8s-aws-id") {
        return Err("x-k8s-aws-id is not signed".into());
    }
    let amz_date = get("X-Amz-Date")?;
    if !recent(amz_date, 15) {
        return Err("token older than 15 minutes".into());
    }
    let (akid, scope) = get("X-Amz-Credential")?
        .split_once('/')
        .ok_or("bad X-Amz-Credential")?;
    if !scope.ends_with("/sts/aws4_request") {
        return Err(format!("scope {scope} is not for sts"));
    }
    let issued = issued_for(state, akid)?;
    if get("X-Amz-Security-Token")? != issued.session_token {
        return Err("wrong session token".into());
    }
    let unsigned: Vec<(String, String)> = query
        .iter()
        .filter(|(k, _)| k != "X-Amz-Signature")
        .cloned()
        .collect();
    let creq = format!(
        "GET\n{}\n{}\n{}\n{signed}\n{}",
        parts.uri.path(),
        check::query(&unsigned),
        check::headers(&parts.headers, signed)?,
        hex::encode(Sha256::digest(b""))
    );
    let expected = check::signature(&issued.secret, amz_date, scope, &creq);
    if get("X-Amz-Signature")? != expected {
        return Err("signature does not match".into());
    }
    let cluster = parts
        .headers
        .get("x-k8s-aws-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    Ok((cluster, issued.arn))
}

/// Where an [`EksFront`] forwards authenticated requests: a kubesim cluster over TLS.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub addr: SocketAddr,
    /// A token the upstream accepts (kubesim's cluster token).
    pub token: String,
    /// The upstream's CA (PEM).
    pub ca_pem: String,
}

/// What the front saw.
#[derive(Debug, Clone, Default)]
pub struct FrontLog {
    /// Requests forwarded after their token was verified.
    pub accepted: u64,
    /// Requests refused, with why.
    pub refused: Vec<String>,
    /// Distinct tokens verified (whole tokens: tests only).
    pub tokens: Vec<String>,
}

/// An EKS-like API server front: TLS, `k8s-aws-v1.` bearer tokens checked at the STS.
pub struct EksFront {
    pub addr: SocketAddr,
    /// The front's CA (PEM), for the cluster Secret's `caData`.
    pub ca_pem: String,
    log: Arc<Mutex<FrontLog>>,
    task: JoinHandle<()>,
}

impl Drop for EksFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct FrontCfg {
    cluster_name: String,
    sts: SocketAddr,
    upstream: Upstream,
    connector: tokio_rustls::TlsConnector,
    log: Arc<Mutex<FrontLog>>,
}

type FrontBody = Either<Incoming, Full<Bytes>>;

fn front_error(code: StatusCode, message: &str) -> Response<FrontBody> {
    let body = serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
        "message": message, "reason": "Unauthorized", "code": code.as_u16()});
    let mut r = Response::new(Either::Right(Full::new(Bytes::from(body.to_string()))));
    *r.status_mut() = code;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

impl EksFront {
    /// Serve EKS cluster `cluster_name`, verifying tokens at `sts`, forwarding to `upstream`.
    pub async fn start(cluster_name: &str, sts: SocketAddr, upstream: Upstream) -> Result<Self> {
        use rustls::pki_types::{CertificateDer, pem::PemObject};
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let tls = crate::kubesim::tls::Tls::generate(addr.ip()).map_err(anyhow::Error::msg)?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(upstream.ca_pem.as_bytes()) {
            roots.add(cert.context("upstream CA")?)?;
        }
        let client = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let log = Arc::new(Mutex::new(FrontLog::default()));
        let cfg = Arc::new(FrontCfg {
            cluster_name: cluster_name.to_string(),
            sts,
            upstream,
            connector: tokio_rustls::TlsConnector::from(Arc::new(client)),
            log: log.clone(),
        });
        let acceptor = tls.acceptor;
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let cfg = cfg.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    let svc = service_fn(move |req| {
                        let cfg = cfg.clone();
                        async move { Ok::<_, Infallible>(front_handle(&cfg, req).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(Self {
            addr,
            ca_pem: tls.ca_pem,
            log,
            task,
        })
    }

    /// `https://127.0.0.1:port`
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Base64 of the CA PEM (a cluster Secret's `tlsClientConfig.caData`).
    pub fn ca_data(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.ca_pem)
    }

    pub fn log(&self) -> FrontLog {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

/// Verify `token` the way aws-iam-authenticator does: decode the URL, insist it is a
/// `GetCallerIdentity` at our STS signing `x-k8s-aws-id`, and ask STS with the cluster's name.
async fn verify_token(cfg: &FrontCfg, token: &str) -> std::result::Result<String, String> {
    let b64 = token
        .strip_prefix("k8s-aws-v1.")
        .ok_or("not a k8s-aws-v1. token")?;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(b64)
        .map_err(|_| "token is not base64url without padding")?;
    let url = url::Url::parse(&String::from_utf8(raw).map_err(|_| "not UTF-8")?)
        .map_err(|_| "token does not hold a URL")?;
    let host = format!(
        "{}:{}",
        url.host_str().unwrap_or_default(),
        url.port_or_known_default().unwrap_or(0)
    );
    if host != cfg.sts.to_string() || url.path() != "/" {
        return Err(format!("token URL points at {host}, not our STS"));
    }
    let q: HashMap<String, String> = url.query_pairs().into_owned().collect();
    if q.get("Action").map(String::as_str) != Some("GetCallerIdentity") {
        return Err("token URL is not GetCallerIdentity".into());
    }
    let path = format!("/?{}", url.query().unwrap_or_default());
    let (status, _, body) = super::http_request(
        &cfg.sts.to_string(),
        "GET",
        &path,
        &[("x-k8s-aws-id", &cfg.cluster_name)],
        b"",
    )
    .await
    .map_err(|e| format!("STS unreachable: {e}"))?;
    if status != 200 {
        return Err(format!("STS refused the token ({status})"));
    }
    let arn = body
        .split("<Arn>")
        .nth(1)
        .and_then(|r| r.split("</Arn>").next())
        .ok_or("STS answer without Arn")?;
    Ok(arn.to_string())
}

async fn forward(cfg: &FrontCfg, mut req: Request<Incoming>) -> Result<Response<FrontBody>> {
    let up = &cfg.upstream;
    let tcp = TcpStream::connect(up.addr).await?;
    let name = rustls::pki_types::ServerName::IpAddress(up.addr.ip().into());
    let tls = cfg.connector.connect(name, tcp).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    *req.uri_mut() = path.parse()?;
    *req.version_mut() = hyper::Version::HTTP_11;
    let headers = req.headers_mut();
    headers.insert(
        hyper::header::AUTHORIZATION,
        format!("Bearer {}", up.token).parse()?,
    );
    headers.insert(hyper::header::HOST, up.addr.to_string().parse()?);
    let mut resp = sender.send_request(req).await?;
    for h in ["connection", "keep-alive", "transfer-encoding"] {
        resp.headers_mut().remove(h);
    }
    Ok(resp.map(Either::Left))
}

async fn front_handle(cfg: &FrontCfg, req: Request<Incoming>) -> Response<FrontBody> {
    let token = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_string());
    let refuse = |why: String| {
        if let Ok(mut l) = cfg.log.lock() {
            l.refused.push(why);
        }
        front_error(StatusCode::UNAUTHORIZED, "Unauthorized")
    };
    let Some(token) = token else {
        return refuse("no bearer token".into());
    };
    let known = cfg
        .log
        .lock()
        .is_ok_and(|l| l.tokens.iter().any(|t| t == &token));
    if !known {
        if let Err(why) = verify_token(cfg, &token).await {
            return refuse(why);
        }
        if let Ok(mut l) = cfg.log.lock() {
            l.tokens.push(token);
        }
    }
    if let Ok(mut l) = cfg.log.lock() {
        l.accepted += 1;
    }
    match forward(cfg, req).await {
        Ok(r) => r,
        Err(e) => front_error(StatusCode::BAD_GATEWAY, &format!("upstream: {e}")),
    }
}

/// Check that `FakeSts` reached the state a test expects, with its log in the error.
pub fn ensure_sts(sts: &FakeSts, what: &str, ok: impl Fn(&StsLog) -> bool) -> Result<()> {
    let log = sts.log();
    if !ok(&log) {
        bail!("fake STS: {what}; log: {log:?}");
    }
    Ok(())
}

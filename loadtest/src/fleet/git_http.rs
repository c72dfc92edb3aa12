//! Git over HTTP(S) for tests: Git's own `git http-backend` (CGI) behind a small server that
//! demands credentials (Basic or Bearer), optionally over TLS: a self-signed certificate, or
//! one from a test CA, optionally demanding client certificates from another.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// What the server accepts.
#[derive(Debug, Clone)]
pub enum Auth {
    Basic {
        username: String,
        password: String,
    },
    Bearer(String),
    /// Basic auth as `x-access-token` with any of these tokens (GitHub App installation
    /// tokens, as a fake GitHub API issues them).
    InstallationTokens(std::sync::Arc<std::sync::Mutex<Vec<String>>>),
}

/// A running smart-HTTP Git server over the bare repositories in a directory.
pub struct GitHttpServer {
    pub addr: SocketAddr,
    pub tls: bool,
    task: JoinHandle<()>,
}

impl Drop for GitHttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A TLS acceptor with a self-signed certificate for `addr`'s IP (and localhost) when `tls`.
pub(crate) fn self_signed(
    tls: bool,
    addr: SocketAddr,
) -> Result<Option<tokio_rustls::TlsAcceptor>> {
    if !tls {
        return Ok(None);
    }
    Ok(Some(
        crate::kubesim::tls::Tls::generate(addr.ip())
            .map_err(anyhow::Error::msg)?
            .acceptor,
    ))
}

/// A certificate authority for tests, issuing server and client certificates.
pub struct TestCa {
    /// The CA's certificate (what clients or servers are told to trust).
    pub pem: String,
    der: rustls::pki_types::CertificateDer<'static>,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    pub fn new(name: &str) -> Result<Self> {
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let cert = params.self_signed(&key)?;
        Ok(Self {
            pem: cert.pem(),
            der: cert.der().clone(),
            issuer: rcgen::Issuer::new(params, key),
        })
    }

    /// A certificate for the DNS names or IPs `names` (a server), or with only the common
    /// name `cn` (a client), as (certificate PEM, key PEM).
    pub fn issue(&self, names: &[&str], cn: &str) -> Result<(String, String)> {
        let key = rcgen::KeyPair::generate()?;
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// TLS of a [`GitHttpServer`] signed by a CA.
pub struct CaTls<'a> {
    /// Signs the server's certificate (for 127.0.0.1 and localhost).
    pub server: &'a TestCa,
    /// When set, clients must present a certificate this CA signed.
    pub clients: Option<&'a TestCa>,
}

pub(crate) fn ca_acceptor(tls: &CaTls<'_>) -> Result<tokio_rustls::TlsAcceptor> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    let (cert, key) = tls
        .server
        .issue(&["127.0.0.1", "localhost"], "git server")?;
    let chain = vec![CertificateDer::from_pem_slice(cert.as_bytes())?];
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes())?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match tls.clients {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.der.clone())?;
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                std::sync::Arc::new(roots),
                provider,
            )
            .build()?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config)))
}

impl GitHttpServer {
    /// Serve the bare repositories under `root` (e.g. `root/apps.git`) requiring `auth`.
    pub async fn start(root: &Path, auth: Auth, tls: bool) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let acceptor = self_signed(tls, addr)?;
        Self::serve(listener, root, auth, acceptor)
    }

    /// Serve over TLS with a certificate from a test CA (and client certificates, if asked).
    pub async fn start_with_ca(root: &Path, auth: Auth, tls: CaTls<'_>) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let acceptor = ca_acceptor(&tls)?;
        Self::serve(listener, root, auth, Some(acceptor))
    }

    fn serve(
        listener: TcpListener,
        root: &Path,
        auth: Auth,
        acceptor: Option<tokio_rustls::TlsAcceptor>,
    ) -> Result<Self> {
        let addr = listener.local_addr()?;
        let tls = acceptor.is_some();
        let root = root.to_path_buf();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let root = root.clone();
                let auth = auth.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let root = root.clone();
                        let auth = auth.clone();
                        async move { Ok::<_, Infallible>(handle(&root, &auth, req).await) }
                    });
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match acceptor {
                        Some(a) => {
                            if let Ok(s) = a.accept(stream).await {
                                let _ = builder.serve_connection(TokioIo::new(s), svc).await;
                            }
                        }
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                        }
                    }
                });
            }
        });
        Ok(Self { addr, tls, task })
    }

    /// The URL of repository `name` (e.g. `apps.git`).
    pub fn url(&self, name: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}/{name}", self.addr)
    }
}

fn authorized(auth: &Auth, header: Option<&str>) -> bool {
    use base64::Engine;
    match (auth, header) {
        (Auth::Basic { username, password }, Some(h)) => h
            .strip_prefix("Basic ")
            .and_then(|b| {
                base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .ok()
            })
            .is_some_and(|d| d == format!("{username}:{password}").as_bytes()),
        (Auth::Bearer(token), Some(h)) => h.strip_prefix("Bearer ") == Some(token.as_str()),
        (Auth::InstallationTokens(tokens), Some(h)) => h
            .strip_prefix("Basic ")
            .and_then(|b| {
                base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .ok()
            })
            .and_then(|d| String::from_utf8(d).ok())
            .and_then(|d| d.strip_prefix("x-access-token:").map(str::to_string))
            .is_some_and(|t| tokens.lock().is_ok_and(|list| list.contains(&t))),
        _ => false,
    }
}

fn reply(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            "WWW-Authenticate",
            hyper::header::HeaderValue::from_static("Basic realm=\"git\""),
        );
    }
    r
}

async fn handle(root: &Path, auth: &Auth, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let header = req
        .headers()
        .get("authorization")
        .and_then(|h| h.to_str().ok());
    if !authorized(auth, header) {
        return reply(StatusCode::UNAUTHORIZED, "authentication required");
    }
    match cgi(root, req).await {
        Ok(r) => r,
        Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}")),
    }
}

/// Run `git http-backend` for one request (CGI/1.1).
pub(crate) async fn cgi(root: &Path, req: Request<Incoming>) -> Result<Response<Full<Bytes>>> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let mut child = tokio::process::Command::new("git")
        .arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("PATH_INFO", parts.uri.path())
        .env("QUERY_STRING", parts.uri.query().unwrap_or(""))
        .env("CONTENT_TYPE", header("content-type"))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("HTTP_CONTENT_ENCODING", header("content-encoding"))
        .env("HTTP_GIT_PROTOCOL", header("git-protocol"))
        .env("REMOTE_USER", "test")
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting git http-backend")?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(&body).await?;
    }
    let out = child.wait_with_output().await?;
    let split = out
        .stdout
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| (p, 4))
        .or_else(|| {
            out.stdout
                .windows(2)
                .position(|w| w == b"\n\n")
                .map(|p| (p, 2))
        })
        .context("CGI output has no header end")?;
    let head = String::from_utf8_lossy(&out.stdout[..split.0]).to_string();
    let mut resp = Response::new(Full::new(Bytes::copy_from_slice(
        &out.stdout[split.0 + split.1..],
    )));
    for line in head.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        if k.eq_ignore_ascii_case("status") {
            let code: u16 = v
                .split(' ')
                .next()
                .and_then(|c| c.parse().ok())
                .unwrap_or(200);
            *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
        } else if let (Ok(name), Ok(value)) = (
            hyper::header::HeaderName::from_bytes(k.trim().as_bytes()),
            hyper::header::HeaderValue::from_str(v),
        ) {
            resp.headers_mut().append(name, value);
        }
    }
    Ok(resp)
}

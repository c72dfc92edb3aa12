//! A real OCI registry for tests: Debian's `docker-registry` (the CNCF distribution registry
//! v2) on loopback, over TLS with a certificate from a test CA or over plain HTTP, open or
//! behind htpasswd or token authentication (a small token service here issues the JWTs).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::git_http::TestCa;
use super::process::Proc;

/// The `service` (JWT audience) and `issuer` the registry is told to expect from the token
/// service.
const TOKEN_SERVICE: &str = "flotilla-test-registry";
const TOKEN_ISSUER: &str = "flotilla-test-token-issuer";

/// Who the registry lets in.
#[derive(Debug, Clone)]
pub enum RegistryAuth {
    /// Anyone may pull and push.
    Open,
    /// HTTP basic auth against an htpasswd file's text (bcrypt `$2y$`/`$2a$` lines).
    Htpasswd(String),
    /// Bearer tokens from a token service on loopback (HTTPS when the registry has TLS): this
    /// user and password get every action they ask for; anonymous callers get tokens that
    /// allow nothing; a wrong password gets 401.
    Token { username: String, password: String },
}

/// How to start a [`Registry`].
pub struct RegistryConfig<'a> {
    /// Serve TLS with a certificate (for 127.0.0.1 and localhost) from this CA; `None`: plain
    /// HTTP.
    pub tls: Option<&'a TestCa>,
    pub auth: RegistryAuth,
}

/// A running registry; stopped (and its storage deleted) when dropped.
pub struct Registry {
    pub addr: SocketAddr,
    pub tls: bool,
    proc: Proc,
    token: Option<TokenServer>,
    // Last, so the storage outlives the process.
    _dir: tempfile::TempDir,
}

/// The `docker-registry` binary: `FLOTILLA_REGISTRY`, else `docker-registry` (Debian) or
/// `registry` (upstream) on PATH.
pub fn find_registry() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("FLOTILLA_REGISTRY").map(PathBuf::from)
        && p.is_file()
    {
        return Some(p);
    }
    let path = std::env::var("PATH").unwrap_or_default();
    for name in ["docker-registry", "registry"] {
        if let Some(p) = std::env::split_paths(&path)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
        {
            return Some(p);
        }
    }
    let debian = PathBuf::from("/usr/bin/docker-registry");
    debian.is_file().then_some(debian)
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

impl Registry {
    /// Start a registry with storage in a fresh temporary directory.
    pub async fn start(cfg: RegistryConfig<'_>) -> Result<Self> {
        let bin = find_registry().context(
            "no docker-registry binary: install Debian's docker-registry package (scripts/lib.sh ensure_tools does)",
        )?;
        let mut last = None;
        // The port is picked, released and then bound by the registry: retry if another
        // process took it in between.
        for _ in 0..3 {
            match Self::try_start(&bin, &cfg).await {
                Ok(r) => return Ok(r),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("registry did not start")))
    }

    async fn try_start(bin: &Path, cfg: &RegistryConfig<'_>) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let mut yaml = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  \
             filesystem:\n    rootdirectory: {data}\n  delete:\n    enabled: true\nhttp:\n  \
             addr: {addr}\n  secret: {secret}\n",
            data = dir.path().join("data").display(),
            secret = uuid::Uuid::new_v4().simple(),
        );
        if let Some(ca) = cfg.tls {
            let (cert, key) = ca.issue(&["127.0.0.1", "localhost"], "test registry")?;
            let (c, k) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
            std::fs::write(&c, cert)?;
            std::fs::write(&k, key)?;
            yaml.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                c.display(),
                k.display()
            ));
        }
        yaml.push_str("health:\n  storagedriver:\n    enabled: false\n");
        let mut token = None;
        match &cfg.auth {
            RegistryAuth::Open => {}
            RegistryAuth::Htpasswd(text) => {
                let p = dir.path().join("htpasswd");
                std::fs::write(&p, text)?;
                yaml.push_str(&format!(
                    "auth:\n  htpasswd:\n    realm: flotilla-test\n    path: {}\n",
                    p.display()
                ));
            }
            RegistryAuth::Token { username, password } => {
                let signer = Signer::new()?;
                let bundle = dir.path().join("token-signer.pem");
                std::fs::write(&bundle, &signer.cert_pem)?;
                let server =
                    TokenServer::start(cfg.tls, signer, username.clone(), password.clone()).await?;
                yaml.push_str(&format!(
                    "auth:\n  token:\n    realm: {}\n    service: {TOKEN_SERVICE}\n    issuer: \
                     {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
                    server.realm(),
                    bundle.display()
                ));
                token = Some(server);
            }
        }
        let config = dir.path().join("config.yml");
        std::fs::write(&config, yaml)?;
        let mut proc = Proc::spawn(
            "docker-registry",
            bin,
            &["serve".to_string(), config.display().to_string()],
            dir.path().join("registry.log"),
            &[],
        )?;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                break;
            }
            if !proc.running() {
                bail!("docker-registry exited:\n{}", proc.tail(30));
            }
            if Instant::now() > deadline {
                bail!(
                    "docker-registry did not listen on {addr}:\n{}",
                    proc.tail(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Self {
            addr,
            tls: cfg.tls.is_some(),
            proc,
            token,
            _dir: dir,
        })
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `oci://127.0.0.1:<port>/<path>`.
    pub fn oci_url(&self, path: &str) -> String {
        format!("oci://{}/{}", self.addr, path.trim_start_matches('/'))
    }

    /// Requests the token service answered with a token so far (0 without one).
    pub fn tokens_issued(&self) -> usize {
        self.token
            .as_ref()
            .map_or(0, |t| t.issued.load(Ordering::SeqCst))
    }

    /// The last lines of the registry's log.
    pub fn log_tail(&self, n: usize) -> String {
        self.proc.tail(n)
    }
}

/// Signs registry tokens: an ECDSA P-256 key and its self-signed certificate (the registry's
/// `rootcertbundle`); tokens carry the certificate in `x5c`.
struct Signer {
    key: rcgen::KeyPair,
    cert_pem: String,
    cert_der: Vec<u8>,
}

impl Signer {
    fn new() -> Result<Self> {
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "flotilla test token signer");
        let cert = params.self_signed(&key)?;
        Ok(Self {
            key,
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
        })
    }

    /// A JWT (ES256) for `subject` with `access` entries `{type, name, actions}`.
    fn token(&self, subject: &str, access: &[serde_json::Value]) -> Result<String> {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let header = serde_json::json!({
            "typ": "JWT",
            "alg": "ES256",
            "x5c": [base64::engine::general_purpose::STANDARD.encode(&self.cert_der)],
        });
        let claims = serde_json::json!({
            "iss": TOKEN_ISSUER,
            "sub": subject,
            "aud": TOKEN_SERVICE,
            "exp": now + 300,
            "nbf": now - 60,
            "iat": now - 60,
            "jti": uuid::Uuid::new_v4().to_string(),
            "access": access,
        });
        let input = format!(
            "{}.{}",
            b64.encode(serde_json::to_vec(&header)?),
            b64.encode(serde_json::to_vec(&claims)?)
        );
        let der = rcgen::SigningKey::sign(&self.key, input.as_bytes())?;
        let raw = ecdsa_der_to_raw(&der)?;
        Ok(format!("{input}.{}", b64.encode(raw)))
    }
}

/// An ECDSA P-256 signature from DER (`SEQUENCE { INTEGER r, INTEGER s }`) to JWS's fixed
/// `r || s` (32 bytes each).
fn ecdsa_der_to_raw(der: &[u8]) -> Result<[u8; 64]> {
    ensure!(
        der.len() >= 8 && der[0] == 0x30 && der[1] < 0x80,
        "not a short DER sequence"
    );
    let mut out = [0u8; 64];
    let mut i = 2;
    for half in 0..2 {
        ensure!(
            der.get(i) == Some(&0x02),
            "expected an INTEGER in the signature"
        );
        let len = usize::from(*der.get(i + 1).context("truncated signature")?);
        let start = i + 2;
        let int = der.get(start..start + len).context("truncated signature")?;
        let trimmed: &[u8] = {
            let zeros = int.iter().take_while(|b| **b == 0).count();
            &int[zeros..]
        };
        ensure!(
            trimmed.len() <= 32,
            "signature integer longer than 32 bytes"
        );
        let end = 32 * (half + 1);
        out[end - trimmed.len()..end].copy_from_slice(trimmed);
        i = start + len;
    }
    Ok(out)
}

/// The registry's token service: `GET /token?service=…&scope=…` with optional basic auth.
struct TokenServer {
    addr: SocketAddr,
    tls: bool,
    issued: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn acceptor(ca: &TestCa) -> Result<tokio_rustls::TlsAcceptor> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    let (cert, key) = ca.issue(&["127.0.0.1", "localhost"], "test token service")?;
    let chain = vec![CertificateDer::from_pem_slice(cert.as_bytes())?];
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

struct TokenState {
    signer: Signer,
    basic: String,
    issued: Arc<AtomicUsize>,
}

fn reply(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r
}

fn answer(state: &TokenState, req: &Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    if req.uri().path() != "/token" {
        return reply(StatusCode::NOT_FOUND, Vec::new());
    }
    let authorization = req
        .headers()
        .get("authorization")
        .and_then(|h| h.to_str().ok());
    let subject = match authorization {
        None => None,
        Some(h) if h == state.basic => Some("user"),
        Some(_) => {
            let mut r = reply(StatusCode::UNAUTHORIZED, b"{\"errors\":[]}".to_vec());
            r.headers_mut().insert(
                "www-authenticate",
                hyper::header::HeaderValue::from_static("Basic realm=\"token\""),
            );
            return r;
        }
    };
    let mut access = Vec::new();
    if subject.is_some() {
        let query = req.uri().query().unwrap_or_default();
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            if k != "scope" {
                continue;
            }
            for scope in v.split(' ') {
                // repository:<name>:<actions>
                let mut parts = scope.splitn(3, ':');
                if let (Some(kind), Some(name), Some(actions)) =
                    (parts.next(), parts.next(), parts.next())
                {
                    access.push(serde_json::json!({
                        "type": kind,
                        "name": name,
                        "actions": actions.split(',').collect::<Vec<_>>(),
                    }));
                }
            }
        }
    }
    match state.signer.token(subject.unwrap_or_default(), &access) {
        Ok(token) => {
            state.issued.fetch_add(1, Ordering::SeqCst);
            let mut body = BTreeMap::new();
            body.insert("access_token", serde_json::Value::from(token));
            body.insert("expires_in", serde_json::Value::from(300));
            reply(
                StatusCode::OK,
                serde_json::to_vec(&body).unwrap_or_default(),
            )
        }
        Err(e) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            e.to_string().into_bytes(),
        ),
    }
}

impl TokenServer {
    async fn start(
        tls: Option<&TestCa>,
        signer: Signer,
        username: String,
        password: String,
    ) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let acceptor = tls.map(acceptor).transpose()?;
        let issued = Arc::new(AtomicUsize::new(0));
        let state = Arc::new(TokenState {
            signer,
            basic: format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
            ),
            issued: issued.clone(),
        });
        let is_tls = acceptor.is_some();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (state, acceptor) = (state.clone(), acceptor.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let r = answer(&state, &req);
                        async move { Ok::<_, Infallible>(r) }
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
        Ok(Self {
            addr,
            tls: is_tls,
            issued,
            task,
        })
    }

    fn realm(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}/token", self.addr)
    }
}

/// How charts are packaged and pushed: Helm's own code, as the PyPI helm-python-sdk that
/// `ensure_helm` installs (the `helm` shim there only templates), or a real `helm` binary.
enum Pusher {
    Sdk(PathBuf),
    Cli,
}

fn pusher() -> Result<Pusher> {
    let mut pythons = Vec::new();
    if let Some(home) = std::env::var_os("HOME") {
        pythons.push(PathBuf::from(home).join(".cache/flotilla/venv/bin/python"));
    }
    pythons.push(PathBuf::from("python3"));
    for py in pythons {
        let ok = Command::new(&py)
            .args(["-c", "import helm_python.registry"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Ok(Pusher::Sdk(py));
        }
    }
    let cli = Command::new("helm")
        .args(["push", "--help"])
        .output()
        .is_ok_and(|o| o.status.success());
    if cli {
        return Ok(Pusher::Cli);
    }
    bail!(
        "neither helm-python-sdk nor a helm binary with `helm push`: run `source scripts/lib.sh; ensure_helm`"
    )
}

const PUSH_PY: &str = r#"
import json, sys
from helm_python.chart import package
from helm_python.registry import RegistryClient, push
cfg = json.loads(sys.argv[1])
client = RegistryClient(credentials_file=cfg["creds_file"], plain_http=cfg["plain_http"])
if cfg["username"]:
    client.login(cfg["host"], cfg["username"], cfg["password"], plain_http=cfg["plain_http"])
for version in cfg["versions"]:
    archive = package(cfg["chart"], destination=cfg["dest"], version=version)
    push(archive, cfg["remote"], client=client, plain_http=cfg["plain_http"])
"#;

/// `helm package` the chart directory `chart` (named `name`) at each version and `helm push`
/// it to `<registry>/charts`, with Helm's configuration and caches in `work` (nothing goes to
/// the home directory). Uses Helm's own code: the PyPI helm-python-sdk that `ensure_helm`
/// installs, or a real `helm` binary.
pub fn push_chart(
    work: &Path,
    registry: &Registry,
    ca: Option<&Path>,
    login: Option<(&str, &str)>,
    chart: &Path,
    name: &str,
    versions: &[&str],
) -> Result<()> {
    let chart = chart.to_path_buf();
    let dest = work.join("packages");
    std::fs::create_dir_all(&dest)?;
    let home = work.join("helm-home");
    std::fs::create_dir_all(&home)?;
    let envs: Vec<(&str, PathBuf)> = vec![
        ("HOME", home.clone()),
        ("HELM_REGISTRY_CONFIG", home.join("registry/config.json")),
        ("HELM_CACHE_HOME", home.join("cache")),
        ("HELM_CONFIG_HOME", home.join("config")),
        ("HELM_DATA_HOME", home.join("data")),
    ];
    let plain_http = !registry.tls;
    let run = |mut cmd: Command, what: &str| -> Result<()> {
        for (k, v) in &envs {
            cmd.env(k, v);
        }
        // Go reads the CA bundle to trust from here (the push only; the repo-server is told
        // through its own settings).
        if let Some(ca) = ca {
            cmd.env("SSL_CERT_FILE", ca);
        }
        let out = cmd.output().with_context(|| format!("running {what}"))?;
        ensure!(
            out.status.success(),
            "{what} failed: {}{}\nregistry log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            registry.log_tail(20)
        );
        Ok(())
    };
    match pusher()? {
        Pusher::Sdk(python) => {
            let cfg = serde_json::json!({
                "creds_file": home.join("registry/config.json"),
                "plain_http": plain_http,
                "host": registry.host(),
                "username": login.map(|l| l.0).unwrap_or_default(),
                "password": login.map(|l| l.1).unwrap_or_default(),
                "versions": versions,
                "chart": chart,
                "dest": dest,
                "remote": registry.oci_url("charts"),
            });
            let mut cmd = Command::new(python);
            cmd.args(["-c", PUSH_PY, &cfg.to_string()]);
            run(cmd, "helm-python-sdk package/push")?;
        }
        Pusher::Cli => {
            let tls_args = |cmd: &mut Command| {
                if plain_http {
                    cmd.arg("--plain-http");
                } else if let Some(ca) = ca {
                    cmd.arg("--ca-file").arg(ca);
                }
            };
            if let Some((user, pass)) = login {
                let mut cmd = Command::new("helm");
                cmd.args([
                    "registry",
                    "login",
                    &registry.host(),
                    "-u",
                    user,
                    "-p",
                    pass,
                ]);
                if plain_http {
                    cmd.arg("--insecure");
                } else if let Some(ca) = ca {
                    cmd.arg("--ca-file").arg(ca);
                }
                run(cmd, "helm registry login")?;
            }
            for v in versions {
                let mut cmd = Command::new("helm");
                cmd.arg("package")
                    .arg(&chart)
                    .args(["--version", v, "-d"])
                    .arg(&dest);
                run(cmd, "helm package")?;
                let mut cmd = Command::new("helm");
                cmd.arg("push")
                    .arg(dest.join(format!("{name}-{v}.tgz")))
                    .arg(registry.oci_url("charts"));
                tls_args(&mut cmd);
                run(cmd, "helm push")?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_signatures_become_fixed_width() {
        // r with a leading zero byte (high bit set), s short.
        let mut der = vec![0x30, 0x00, 0x02, 33, 0x00];
        der.extend([0xff; 32]);
        der.extend([0x02, 2, 0x01, 0x02]);
        der[1] = (der.len() - 2) as u8;
        let raw = ecdsa_der_to_raw(&der).expect("converts");
        assert_eq!(&raw[..32], &[0xff; 32]);
        assert_eq!(&raw[32..62], &[0u8; 30]);
        assert_eq!(&raw[62..], &[1, 2]);
        assert!(ecdsa_der_to_raw(&[0x30, 2, 0x02, 5]).is_err());
    }
}

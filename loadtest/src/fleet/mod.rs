//! A whole Flotilla fleet on one machine, for end-to-end tests and the demo: kubesim (the
//! control plane and N target clusters), a Git repository behind `git daemon`, and the real
//! `flotilla-repo-server` and `flotilla-controller` binaries as child processes.

pub mod eks;
pub mod git;
pub mod git_http;
pub mod github_api;
pub mod lfs_http;
pub mod process;
pub mod proxy;
pub mod redis;
pub mod registry;
pub mod scm_api;
pub mod sshd;
pub mod static_http;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use serde_json::Value;

use crate::kubesim::{KubeSim, LatencyProfile, SimConfig, SimSettings};
pub use git::GitServer;
pub use process::Proc;

/// How to start a fleet.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// Target clusters (besides the control plane).
    pub clusters: usize,
    /// Delay before simulated workloads become ready.
    pub ready_delay: Duration,
    /// Files to seed the Git repository with (default: a README only).
    pub seed: Option<PathBuf>,
    /// The controller's periodic refresh, in seconds.
    pub refresh_seconds: u64,
    pub workers: usize,
    /// Controller replicas started with the fleet (tests of start-up behaviour use 0 and start
    /// them themselves).
    pub controllers: usize,
    /// The replicas' Lease duration and renew interval.
    pub lease_duration_seconds: u64,
    pub lease_renew_seconds: f64,
    /// Further arguments for every controller.
    pub controller_args: Vec<String>,
    /// Install the Application CRD the way Argo CD ships it: without the `/status`
    /// subresource (ours has one).
    pub argo_cd_crds: bool,
    /// Repo-server replicas (the controllers get them all as a static list).
    pub repo_servers: usize,
    /// Redis Cluster masters for the shared cache (0 = none: in-memory caches).
    pub redis_masters: usize,
    /// Serve the controllers' webhook receiver (on a free port), with this GitHub secret.
    pub webhook_github_secret: Option<String>,
    /// Further arguments for every repo-server.
    pub repo_server_args: Vec<String>,
    /// Run kubesim as its own `kubesim` process instead of inside this one (load tests, to
    /// measure its CPU and memory apart from the harness).
    pub kubesim_process: bool,
    /// Simulated Deployments get ReplicaSets and Pods (kubesim's `children`).
    pub workload_children: bool,
    /// Environment for every controller and repo-server (e.g. `OTEL_*`).
    pub env: Vec<(String, String)>,
    /// kubesim's `--latency-profile` for the target clusters: `none` (default), `realistic`
    /// or a YAML file.
    pub latency_profile: String,
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            clusters: 2,
            ready_delay: Duration::from_millis(200),
            seed: None,
            refresh_seconds: 180,
            workers: 4,
            controllers: 1,
            lease_duration_seconds: 10,
            lease_renew_seconds: 2.0,
            controller_args: Vec::new(),
            argo_cd_crds: false,
            repo_servers: 1,
            redis_masters: 0,
            webhook_github_secret: None,
            repo_server_args: Vec::new(),
            kubesim_process: false,
            workload_children: true,
            env: Vec::new(),
            latency_profile: "none".into(),
        }
    }
}

/// A running fleet; everything stops when it is dropped.
pub struct Fleet {
    pub sim: Sim,
    pub git: GitServer,
    pub kubeconfig: PathBuf,
    /// Running repo-servers, in start order.
    pub repo_servers: Vec<RepoServer>,
    /// The Redis Cluster of the shared cache, when configured.
    pub redis: Option<redis::RedisCluster>,
    /// Running controller replicas, in start order.
    pub controllers: Vec<Controller>,
    next_replica: usize,
    control: Client,
    cfg: FleetConfig,
    /// The shared repo-server token (`FLOTILLA_REPO_SERVER_TOKEN`), new for every fleet, as
    /// the chart generates one per release.
    pub repo_token: String,
    /// The repo-servers' TLS: a CA made for this fleet and a certificate it signed for
    /// 127.0.0.1 (as the chart generates them per release).
    pub repo_tls: RepoTls,
    // Last, so the directory outlives the processes writing into it.
    pub dir: tempfile::TempDir,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("FLOTILLA_FLEET_LOGS").is_some() {
            self.dump_logs();
        }
        if let Sim::InProcess(sim) = &self.sim {
            sim.shutdown();
        }
    }
}

/// TLS files of a fleet's repo-servers.
#[derive(Debug, Clone)]
pub struct RepoTls {
    /// The CA certificate controllers verify the repo-servers against.
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl RepoTls {
    /// A CA and a server certificate for 127.0.0.1 and localhost, written under `dir`.
    pub fn generate(dir: &std::path::Path) -> Result<Self> {
        let ca_key = rcgen::KeyPair::generate()?;
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "flotilla test CA");
        let ca = ca_params.self_signed(&ca_key)?;
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate()?;
        let params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])?;
        let cert = params.signed_by(&key, &issuer)?;
        let out = Self {
            ca: dir.join("repo-ca.crt"),
            cert: dir.join("repo-server.crt"),
            key: dir.join("repo-server.key"),
        };
        std::fs::write(&out.ca, ca.pem())?;
        std::fs::write(&out.cert, cert.pem())?;
        std::fs::write(&out.key, key.serialize_pem())?;
        Ok(out)
    }

    /// The client TLS settings a controller uses.
    pub fn client_config(&self) -> Result<tonic::transport::ClientTlsConfig> {
        let pem = std::fs::read(&self.ca)?;
        Ok(tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(pem)))
    }
}

/// Where kubesim runs.
pub enum Sim {
    /// Inside this process: tests reach its clusters' faults and request logs directly.
    InProcess(KubeSim),
    /// A child `kubesim` process, reached through its admin API.
    Process(SimProcess),
}

/// A kubesim child process.
pub struct SimProcess {
    pub proc: Proc,
    /// Its admin API (host:port).
    pub admin: String,
    control_plane: String,
    /// Cluster name → server URL.
    servers: std::collections::BTreeMap<String, String>,
}

impl Sim {
    /// The in-process simulator (tests that inject faults directly need it).
    pub fn in_process(&self) -> Result<&KubeSim> {
        match self {
            Sim::InProcess(s) => Ok(s),
            Sim::Process(_) => bail!("kubesim runs as a separate process in this fleet"),
        }
    }

    /// The control-plane cluster's name (its kubeconfig context).
    pub fn control_plane_name(&self) -> String {
        match self {
            Sim::InProcess(s) => s.control_plane().name.clone(),
            Sim::Process(p) => p.control_plane.clone(),
        }
    }

    /// Server URL of cluster `name`.
    pub fn server(&self, name: &str) -> Option<String> {
        match self {
            Sim::InProcess(s) => s.cluster(name).map(|c| c.url()),
            Sim::Process(p) => p.servers.get(name).cloned(),
        }
    }

    /// The admin API address (host:port).
    pub fn admin(&self) -> Option<String> {
        match self {
            Sim::InProcess(s) => s.admin_addr().map(|a| a.to_string()),
            Sim::Process(p) => Some(p.admin.clone()),
        }
    }

    /// The kubesim process's id, when it runs apart.
    pub fn pid(&self) -> Option<u32> {
        match self {
            Sim::InProcess(_) => None,
            Sim::Process(p) => p.proc.pid(),
        }
    }
}

/// Start `kubesim` as a child process and wait for its JSON start-up line.
async fn start_sim_process(dir: &Path, cfg: &FleetConfig, kubeconfig: &Path) -> Result<Sim> {
    let out = dir.join("kubesim.json");
    let log = dir.join("kubesim.log");
    let args: Vec<String> = vec![
        "--clusters".into(),
        cfg.clusters.to_string(),
        "--tls".into(),
        "--admin-port".into(),
        "0".into(),
        "--kubeconfig".into(),
        kubeconfig.display().to_string(),
        "--ready-delay-ms".into(),
        cfg.ready_delay.as_millis().to_string(),
        "--history".into(),
        "50000".into(),
        format!("--workload-children={}", cfg.workload_children),
        "--json-file".into(),
        out.display().to_string(),
        "--latency-profile".into(),
        cfg.latency_profile.clone(),
    ];
    let mut proc = Proc::spawn(
        "kubesim",
        &process::binary("kubesim")?,
        &args,
        log,
        &[("RUST_LOG", "warn")],
    )?;
    let doc = process::wait_address_file(&mut proc, &out, Duration::from_secs(60)).await?;
    let servers = doc["clusters"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .filter_map(|c| {
                    Some((
                        c["name"].as_str()?.to_string(),
                        c["server"].as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Sim::Process(SimProcess {
        proc,
        admin: doc["admin"]
            .as_str()
            .context("kubesim printed no admin address")?
            .to_string(),
        control_plane: doc["controlPlaneName"]
            .as_str()
            .context("kubesim printed no control-plane name")?
            .to_string(),
        servers,
    }))
}

/// One running repo-server.
pub struct RepoServer {
    pub name: String,
    pub proc: Proc,
    /// gRPC address (host:port).
    pub grpc: String,
    /// Address of its `/metrics`.
    pub metrics: String,
}

/// One running controller replica.
pub struct Controller {
    /// Its identity in the ring (also in its User-Agent: `flotilla-controller/<v> (<id>)`).
    pub identity: String,
    pub proc: Proc,
    /// Address of its `/metrics`, `/readyz` and `/status`.
    pub metrics: String,
    /// Address of its webhook receiver, when enabled.
    pub webhook: Option<String>,
}

/// The `X-Hub-Signature-256` header GitHub sends with a webhook `body` signed with `secret`.
pub fn github_signature(secret: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    // HMAC takes keys of any length; the error case cannot happen.
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The local admin token of API servers the fleet starts.
pub const ADMIN_TOKEN: &str = "fleet-admin-token";

/// The token the fleet's controllers require for their per-resource views.
pub const STATUS_TOKEN: &str = "fleet-status-token";

/// A plain HTTP/1.0 GET (status, body) to `addr` (host:port).
pub async fn http_get(addr: &str, path: &str) -> Result<(u16, String)> {
    http_get_with(addr, path, &[]).await
}

/// A plain HTTP/1.0 GET (status, body) to `addr` (host:port) with extra headers.
pub async fn http_get_with(
    addr: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, String)> {
    let (status, _, body) = http_request(addr, "GET", path, headers, b"").await?;
    Ok((status, body))
}

/// A plain HTTP/1.0 POST (status, body) of JSON to `addr` (host:port) with extra headers.
pub async fn http_post(
    addr: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(u16, String)> {
    let mut all = vec![("Content-Type", "application/json")];
    all.extend_from_slice(headers);
    let (status, _, body) = http_request(addr, "POST", path, &all, body).await?;
    Ok((status, body))
}

/// One plain HTTP/1.0 request to `addr` (host:port): (status, response head, body).
pub async fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(u16, String, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n");
    if !body.is_empty() || method != "GET" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await?;
    s.write_all(body).await?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).await?;
    let status = buf
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = buf.split_once("\r\n\r\n").unwrap_or((buf.as_str(), ""));
    Ok((status, head.to_string(), body.to_string()))
}

/// A client for one context of a kubeconfig file.
pub async fn client_for(kubeconfig: &Path, context: &str) -> Result<Client> {
    let kc = Kubeconfig::read_from(kubeconfig)?;
    let cfg = kube::Config::from_custom_kubeconfig(
        kc,
        &KubeConfigOptions {
            context: Some(context.to_string()),
            ..Default::default()
        },
    )
    .await?;
    Ok(Client::try_from(cfg)?)
}

/// Server-side apply every document of `yaml` through `client` (kinds found by discovery).
pub async fn apply_yaml(client: &Client, yaml: &str, manager: &str) -> Result<Vec<Value>> {
    use serde::Deserialize;
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let v = Value::deserialize(doc).context("parsing YAML")?;
        if v.is_null() {
            continue;
        }
        let api_version = v["apiVersion"].as_str().context("apiVersion")?;
        let kind = v["kind"].as_str().context("kind")?;
        let name = v["metadata"]["name"].as_str().context("metadata.name")?;
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let (ar, caps): (ApiResource, _) = kube::discovery::pinned_kind(client, &gvk)
            .await
            .with_context(|| format!("discovering {api_version} {kind}"))?;
        let api: Api<DynamicObject> = match (caps.scope, v["metadata"]["namespace"].as_str()) {
            (kube::discovery::Scope::Namespaced, Some(ns)) => {
                Api::namespaced_with(client.clone(), ns, &ar)
            }
            _ => Api::all_with(client.clone(), &ar),
        };
        let applied = api
            .patch(
                name,
                &PatchParams::apply(manager).force(),
                &Patch::Apply(&v),
            )
            .await
            .with_context(|| format!("applying {kind} {name}"))?;
        out.push(serde_json::to_value(applied)?);
    }
    Ok(out)
}

impl Fleet {
    fn product_env(&self) -> Vec<(&str, &str)> {
        std::iter::once(("FLOTILLA_REPO_SERVER_TOKEN", self.repo_token.as_str()))
            .chain(self.cfg.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .collect()
    }

    /// Start kubesim, Git, the repo-server and (unless asked not to) the controller, with the
    /// Argo CD CRDs installed.
    pub async fn start(cfg: FleetConfig) -> Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::Builder::new()
            .prefix("flotilla-fleet-")
            .tempdir()?;
        let kubeconfig = dir.path().join("kubeconfig");
        let sim = if cfg.kubesim_process {
            start_sim_process(dir.path(), &cfg, &kubeconfig).await?
        } else {
            let sim = KubeSim::start(SimConfig {
                clusters: cfg.clusters,
                admin_port: Some(0),
                tls: true,
                latency: LatencyProfile::from_arg(&cfg.latency_profile)?,
                sim: SimSettings {
                    ready_delay: cfg.ready_delay,
                    children: cfg.workload_children,
                    ..Default::default()
                },
                ..Default::default()
            })
            .await?;
            sim.write_kubeconfig(&kubeconfig)?;
            Sim::InProcess(sim)
        };
        let control = client_for(&kubeconfig, &sim.control_plane_name()).await?;
        // The CRDs, as the controller binary prints them.
        let out = std::process::Command::new(process::binary("flotilla-controller")?)
            .arg("--print-crds")
            .output()
            .context("printing CRDs")?;
        if !out.status.success() {
            bail!(
                "--print-crds failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut crds = String::from_utf8_lossy(&out.stdout).to_string();
        if cfg.argo_cd_crds {
            crds = without_status_subresource(&crds)?;
        }
        apply_yaml(&control, &crds, "flotilla-installer").await?;
        let git = GitServer::start(dir.path(), "apps", cfg.seed.as_deref())?;
        let redis = if cfg.redis_masters > 0 {
            Some(redis::RedisCluster::start(dir.path(), cfg.redis_masters).await?)
        } else {
            None
        };
        let mut fleet = Self {
            sim,
            git,
            kubeconfig,
            repo_servers: Vec::new(),
            redis,
            controllers: Vec::new(),
            repo_token: uuid::Uuid::new_v4().simple().to_string(),
            repo_tls: RepoTls::generate(dir.path())?,
            next_replica: 0,
            control,
            cfg,
            dir,
        };
        for i in 0..fleet.cfg.repo_servers.max(1) {
            fleet.start_repo_server(i).await?;
        }
        for _ in 0..fleet.cfg.controllers {
            fleet.start_controller().await?;
        }
        Ok(fleet)
    }

    /// Replace the extra arguments controllers started from now on get.
    pub fn set_controller_args(&mut self, args: Vec<String>) {
        self.cfg.controller_args = args;
    }

    /// Start repo-server number `i` (name `repo-server-<i>`, its own cache directory).
    pub async fn start_repo_server(&mut self, i: usize) -> Result<()> {
        let name = format!("repo-server-{i}");
        let addr_file = self.dir.path().join(format!("{name}.json"));
        let _ = std::fs::remove_file(&addr_file);
        let mut args: Vec<String> = vec![
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--metrics-listen".into(),
            "127.0.0.1:0".into(),
            "--cache-dir".into(),
            self.dir
                .path()
                .join(format!("{name}-cache"))
                .display()
                .to_string(),
            "--address-file".into(),
            addr_file.display().to_string(),
            "--identity".into(),
            name.clone(),
            "--tls-cert".into(),
            self.repo_tls.cert.display().to_string(),
            "--tls-key".into(),
            self.repo_tls.key.display().to_string(),
        ];
        if let Some(r) = &self.redis {
            args.push("--redis-url".into());
            args.push(r.url());
        }
        args.extend(self.cfg.repo_server_args.iter().cloned());
        let mut proc = Proc::spawn(
            &name,
            &process::binary("flotilla-repo-server")?,
            &args,
            self.dir.path().join(format!("{name}.log")),
            &self.product_env(),
        )?;
        let addrs =
            process::wait_address_file(&mut proc, &addr_file, Duration::from_secs(30)).await?;
        let server = RepoServer {
            name,
            proc,
            grpc: addrs["grpc"].as_str().unwrap_or_default().to_string(),
            metrics: addrs["metrics"].as_str().unwrap_or_default().to_string(),
        };
        self.repo_servers.retain(|r| r.name != server.name);
        self.repo_servers.push(server);
        Ok(())
    }

    /// Kill a repo-server with SIGKILL.
    pub fn kill_repo_server(&mut self, name: &str) -> Result<()> {
        let i = self
            .repo_servers
            .iter()
            .position(|r| r.name == name)
            .with_context(|| format!("no running {name}"))?;
        let mut r = self.repo_servers.remove(i);
        r.proc.kill9();
        Ok(())
    }

    /// The controllers' `--repo-server` value: every repo-server started so far.
    fn repo_server_list(&self) -> String {
        self.repo_servers
            .iter()
            .map(|r| format!("https://{}", r.grpc))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Start an API server (`flotilla-server`) on the control plane with the local admin token
    /// `ADMIN_TOKEN`, wait until its stores are synced; returns it and its address.
    pub async fn start_server(&self) -> Result<(process::Proc, String)> {
        self.start_server_with(&[]).await
    }

    /// [`Self::start_server`] with further arguments.
    pub async fn start_server_with(&self, extra: &[String]) -> Result<(process::Proc, String)> {
        let addr_file = self.dir.path().join("server.json");
        let _ = std::fs::remove_file(&addr_file);
        let mut args: Vec<String> = vec![
            "--kubeconfig".into(),
            self.kubeconfig.display().to_string(),
            "--context".into(),
            self.sim.control_plane_name(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--admin-token".into(),
            ADMIN_TOKEN.into(),
            "--status-token".into(),
            STATUS_TOKEN.into(),
            "--address-file".into(),
            addr_file.display().to_string(),
        ];
        args.extend(extra.iter().cloned());
        let mut proc = process::Proc::spawn(
            "flotilla-server",
            &process::binary("flotilla-server")?,
            &args,
            self.dir.path().join("server.log"),
            &self.product_env(),
        )?;
        let addrs =
            process::wait_address_file(&mut proc, &addr_file, Duration::from_secs(30)).await?;
        let api = addrs["api"].as_str().unwrap_or_default().to_string();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while !matches!(http_get(&api, "/readyz").await, Ok((200, _))) {
            if !proc.running() || tokio::time::Instant::now() > deadline {
                bail!("flotilla-server did not become ready:\n{}", proc.tail(40));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok((proc, api))
    }

    /// Start one more controller replica (identity `controller-<n>`) and wait until it is
    /// ready; returns its identity.
    pub async fn start_controller(&mut self) -> Result<String> {
        let identity = format!("controller-{}", self.next_replica);
        self.next_replica += 1;
        let addr_file = self.dir.path().join(format!("{identity}.json"));
        let _ = std::fs::remove_file(&addr_file);
        let mut args: Vec<String> = vec![
            "--kubeconfig".into(),
            self.kubeconfig.display().to_string(),
            "--context".into(),
            self.sim.control_plane_name(),
            "--repo-server".into(),
            self.repo_server_list(),
            "--repo-server-ca".into(),
            self.repo_tls.ca.display().to_string(),
            "--metrics-listen".into(),
            "127.0.0.1:0".into(),
            "--address-file".into(),
            addr_file.display().to_string(),
            "--refresh-seconds".into(),
            self.cfg.refresh_seconds.to_string(),
            "--status-endpoint".into(),
            "--status-token".into(),
            STATUS_TOKEN.into(),
            "--workers".into(),
            self.cfg.workers.to_string(),
            "--identity".into(),
            identity.clone(),
            "--lease-duration-seconds".into(),
            self.cfg.lease_duration_seconds.to_string(),
            "--lease-renew-seconds".into(),
            self.cfg.lease_renew_seconds.to_string(),
        ];
        if let Some(r) = &self.redis {
            args.push("--redis-url".into());
            args.push(r.url());
        }
        if let Some(secret) = &self.cfg.webhook_github_secret {
            args.push("--webhook-listen".into());
            args.push("127.0.0.1:0".into());
            args.push("--webhook-github-secret".into());
            args.push(secret.clone());
        }
        args.extend(self.cfg.controller_args.iter().cloned());
        let mut proc = Proc::spawn(
            &identity,
            &process::binary("flotilla-controller")?,
            &args,
            self.dir.path().join(format!("{identity}.log")),
            &self.product_env(),
        )?;
        let addrs =
            process::wait_address_file(&mut proc, &addr_file, Duration::from_secs(30)).await?;
        let metrics = addrs["metrics"].as_str().unwrap_or_default().to_string();
        let webhook = addrs["webhook"].as_str().map(str::to_string);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok((200, _)) = http_get(&metrics, "/readyz").await {
                break;
            }
            if !proc.running() || tokio::time::Instant::now() > deadline {
                bail!("{identity} did not become ready:\n{}", proc.tail(40));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.controllers.push(Controller {
            identity: identity.clone(),
            proc,
            metrics,
            webhook,
        });
        Ok(identity)
    }

    fn take_controller(&mut self, identity: &str) -> Result<Controller> {
        let i = self
            .controllers
            .iter()
            .position(|c| c.identity == identity)
            .with_context(|| format!("no running controller {identity}"))?;
        Ok(self.controllers.remove(i))
    }

    /// Stop a replica gracefully (SIGTERM; it hands its clusters over and exits).
    pub fn stop_controller(&mut self, identity: &str) -> Result<()> {
        let mut c = self.take_controller(identity)?;
        c.proc.stop(Duration::from_secs(30));
        Ok(())
    }

    /// Kill a replica with SIGKILL (no hand-over: its Lease must expire).
    pub fn kill_controller(&mut self, identity: &str) -> Result<()> {
        let mut c = self.take_controller(identity)?;
        c.proc.kill9();
        Ok(())
    }

    /// A running replica's `/status` document.
    pub async fn controller_status(&self, identity: &str) -> Result<Value> {
        let c = self
            .controllers
            .iter()
            .find(|c| c.identity == identity)
            .with_context(|| format!("no running controller {identity}"))?;
        let (code, body) = http_get(&c.metrics, "/status").await?;
        if code != 200 {
            bail!("{identity} /status answered {code}");
        }
        Ok(serde_json::from_str(&body)?)
    }

    /// Identities of the running replicas.
    pub fn controller_ids(&self) -> Vec<String> {
        self.controllers
            .iter()
            .map(|c| c.identity.clone())
            .collect()
    }

    /// The control-plane client.
    pub fn control(&self) -> &Client {
        &self.control
    }

    /// A client for target cluster `name` (e.g. `cluster-001`).
    pub async fn cluster(&self, name: &str) -> Result<Client> {
        client_for(&self.kubeconfig, name).await
    }

    /// The server URL of target cluster `name`.
    pub fn server(&self, name: &str) -> Result<String> {
        self.sim.server(name).context("no such cluster")
    }

    /// Server-side apply YAML into the control plane.
    pub async fn apply(&self, yaml: &str) -> Result<Vec<Value>> {
        apply_yaml(&self.control, yaml, "flotilla-test").await
    }

    /// The metrics/status address of the running controller `identity`.
    pub fn controller_address(&self, identity: &str) -> Result<String> {
        self.controllers
            .iter()
            .find(|c| c.identity == identity)
            .map(|c| c.metrics.clone())
            .with_context(|| format!("no running controller {identity}"))
    }

    /// GET `path` on the first running controller's endpoint, signed with the fleet's status token:
    /// (status code, body).
    pub async fn controller_get(&self, path: &str) -> Result<(u16, String)> {
        use flotilla_core::status_auth::{SIGNATURE_HEADER, TIME_HEADER, now, sign_request};
        let c = self.controllers.first().context("no controller running")?;
        // Signed for this replica's address as the API server signs (see status_auth).
        let t = now();
        let sig = sign_request(STATUS_TOKEN, t, "GET", &c.metrics, path, b"");
        http_get_with(
            &c.metrics,
            path,
            &[(TIME_HEADER, &t.to_string()), (SIGNATURE_HEADER, &sig)],
        )
        .await
    }

    /// The first running controller's Prometheus text.
    pub async fn controller_metrics(&self) -> Result<String> {
        let c = self.controllers.first().context("no controller running")?;
        Ok(http_get(&c.metrics, "/metrics").await?.1)
    }

    /// One replica's Prometheus text.
    pub async fn metrics_of(&self, identity: &str) -> Result<String> {
        let c = self
            .controllers
            .iter()
            .find(|c| c.identity == identity)
            .with_context(|| format!("no running controller {identity}"))?;
        Ok(http_get(&c.metrics, "/metrics").await?.1)
    }

    /// The first repo-server's Prometheus text.
    pub async fn repo_metrics(&self) -> Result<String> {
        let r = self
            .repo_servers
            .first()
            .context("no repo-server running")?;
        Ok(http_get(&r.metrics, "/metrics").await?.1)
    }

    /// Sum of metric `name` (with `labels`) over every running repo-server.
    pub async fn repo_metric_sum(&self, name: &str, labels: &[(&str, &str)]) -> Result<f64> {
        Ok(metric_sum(&self.repo_metric_texts().await?, name, labels))
    }

    /// Sum of metric `name` (with `labels`) over every running controller.
    pub async fn controller_metric_sum(&self, name: &str, labels: &[(&str, &str)]) -> Result<f64> {
        Ok(metric_sum(
            &self.controller_metric_texts().await?,
            name,
            labels,
        ))
    }

    /// Every running repo-server's Prometheus text (one scrape each).
    pub async fn repo_metric_texts(&self) -> Result<Vec<String>> {
        scrape(self.repo_servers.iter().map(|r| r.metrics.as_str())).await
    }

    /// Every running controller's Prometheus text (one scrape each).
    pub async fn controller_metric_texts(&self) -> Result<Vec<String>> {
        scrape(self.controllers.iter().map(|c| c.metrics.as_str())).await
    }

    /// Print the tail of every process log (used when a test fails).
    pub fn dump_logs(&self) {
        for p in self
            .repo_servers
            .iter()
            .map(|r| &r.proc)
            .chain(self.controllers.iter().map(|c| &c.proc))
        {
            eprintln!(
                "----- {} log ({}) -----\n{}",
                p.name,
                p.log.display(),
                p.tail(if std::env::var_os("FLOTILLA_FLEET_LOGS").is_some() {
                    400
                } else {
                    80
                })
            );
        }
    }
}

/// The CRDs with the Application's `/status` subresource removed, as in Argo CD's manifests.
fn without_status_subresource(yaml: &str) -> Result<String> {
    use serde::Deserialize;
    let mut out = String::new();
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let mut v = Value::deserialize(doc)?;
        if v["metadata"]["name"] == "applications.argoproj.io"
            && let Some(versions) = v["spec"]["versions"].as_array_mut()
        {
            for ver in versions {
                if let Some(o) = ver.as_object_mut() {
                    o.remove("subresources");
                }
            }
        }
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&v)?);
    }
    Ok(out)
}

/// `GET /metrics` of each address.
async fn scrape(addrs: impl Iterator<Item = &str>) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for a in addrs {
        out.push(http_get(a, "/metrics").await?.1);
    }
    Ok(out)
}

/// Sum of metric `name` (with `labels`) over several Prometheus texts.
pub fn metric_sum(texts: &[String], name: &str, labels: &[(&str, &str)]) -> f64 {
    texts
        .iter()
        .map(|t| metric_value(t, name, labels))
        .fold(0.0, |a, b| a + b)
}

/// Sum of the samples of metric `name` whose labels contain every `label="value"` in `labels`.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, rest) = match series.split_once('{') {
                Some((m, r)) => (m, r),
                None => (series, ""),
            };
            if metric != name {
                return None;
            }
            labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .fold(0.0, |a, b| a + b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_value_sums_matching_series() {
        let text = "# HELP x\nflotilla_syncs_total{phase=\"Succeeded\",trigger=\"manual\"} 2\nflotilla_syncs_total{phase=\"Succeeded\",trigger=\"automated\"} 3\nflotilla_syncs_total{phase=\"Failed\",trigger=\"automated\"} 1\nother 9\n";
        assert_eq!(
            metric_value(text, "flotilla_syncs_total", &[("phase", "Succeeded")]),
            5.0
        );
        assert_eq!(metric_value(text, "flotilla_syncs_total", &[]), 6.0);
        assert_eq!(metric_value(text, "other", &[]), 9.0);
        let missing = metric_value(text, "missing", &[]);
        assert!(
            missing == 0.0 && missing.is_sign_positive(),
            "prints as 0, not -0"
        );
    }
}

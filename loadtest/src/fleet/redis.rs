//! Real Redis for tests and load runs: a Cluster (N `redis-server` processes in cluster mode,
//! joined with `redis-cli --cluster create`), or a Sentinel set (master, replica and Debian's
//! `redis-sentinel`); each optionally with AUTH and TLS. Nodes can be killed and restarted.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::process::Proc;

/// One node of the cluster.
pub struct RedisNode {
    pub port: u16,
    proc: Option<Proc>,
}

/// A running Redis Cluster of masters (no replicas); stopped when dropped.
pub struct RedisCluster {
    pub nodes: Vec<RedisNode>,
    dir: PathBuf,
    security: RedisSecurity,
}

/// AUTH and TLS of a test Redis.
#[derive(Debug, Clone, Default)]
pub struct RedisSecurity {
    /// `requirepass` (and `masterauth`) of every data node.
    pub password: Option<String>,
    /// Serve TLS only (`--port 0 --tls-port …`), with a certificate from this CA.
    pub tls: Option<super::RepoTls>,
}

impl RedisSecurity {
    /// `redis-server` arguments for a node on `port` (`tls-cluster` / `tls-replication` so
    /// nodes talk TLS to each other too).
    fn server_args(&self, port: u16) -> Vec<String> {
        let mut out: Vec<String> = match &self.tls {
            Some(t) => vec![
                "--port".into(),
                "0".into(),
                "--tls-port".into(),
                port.to_string(),
                "--tls-cert-file".into(),
                t.cert.display().to_string(),
                "--tls-key-file".into(),
                t.key.display().to_string(),
                "--tls-ca-cert-file".into(),
                t.ca.display().to_string(),
                "--tls-auth-clients".into(),
                "no".into(),
                "--tls-cluster".into(),
                "yes".into(),
                "--tls-replication".into(),
                "yes".into(),
            ],
            None => vec!["--port".into(), port.to_string()],
        };
        if let Some(pw) = &self.password {
            out.extend([
                "--requirepass".into(),
                pw.clone(),
                "--masterauth".into(),
                pw.clone(),
            ]);
        }
        out
    }

    /// `redis-cli` arguments reaching such a node.
    fn cli_args(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(t) = &self.tls {
            out.extend([
                "--tls".into(),
                "--cacert".into(),
                t.ca.display().to_string(),
            ]);
        }
        if let Some(pw) = &self.password {
            out.extend(["-a".into(), pw.clone(), "--no-auth-warning".into()]);
        }
        out
    }

    /// `rediss` or `redis`, and `:password@` when there is one.
    fn scheme_and_auth(&self, kind: &str) -> String {
        let s = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        let kind = if kind.is_empty() {
            String::new()
        } else {
            format!("-{kind}")
        };
        match &self.password {
            Some(pw) => format!("{s}{kind}://:{pw}@"),
            None => format!("{s}{kind}://"),
        }
    }
}

fn free_port() -> Result<u16> {
    // Redis Cluster also listens on port + 10000 (the bus): pick ports whose bus port is free.
    for _ in 0..100 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        if port < 55_000 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free port pair for a Redis node")
}

fn cli_as(sec: &RedisSecurity, port: u16, args: &[&str]) -> Result<String> {
    let out = Command::new("redis-cli")
        .arg("-p")
        .arg(port.to_string())
        .args(sec.cli_args())
        .args(args)
        .output()
        .context("running redis-cli (apt-get install redis-tools)")?;
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

impl RedisCluster {
    /// (name, pid) of every running node, for CPU and memory sampling.
    pub fn pids(&self) -> Vec<(String, u32)> {
        self.nodes
            .iter()
            .filter_map(|n| Some((format!("redis-{}", n.port), n.proc.as_ref()?.pid()?)))
            .collect()
    }

    /// Start `masters` nodes (at least 3, as Redis Cluster requires) and create the cluster.
    pub async fn start(dir: &Path, masters: usize) -> Result<Self> {
        Self::start_with(dir, masters, RedisSecurity::default()).await
    }

    /// [`Self::start`] with AUTH and/or TLS.
    pub async fn start_with(dir: &Path, masters: usize, security: RedisSecurity) -> Result<Self> {
        if masters < 3 {
            bail!("a Redis Cluster needs at least 3 masters");
        }
        let dir = dir.join("redis");
        std::fs::create_dir_all(&dir)?;
        let mut cluster = Self {
            nodes: Vec::new(),
            dir,
            security,
        };
        for _ in 0..masters {
            let port = free_port()?;
            let mut node = RedisNode { port, proc: None };
            cluster.spawn(&mut node)?;
            cluster.nodes.push(node);
        }
        for n in &cluster.nodes {
            wait_until(Duration::from_secs(10), || {
                Ok(cli_as(&cluster.security, n.port, &["ping"])?.trim() == "PONG")
            })
            .await
            .with_context(|| format!("redis-server on {} did not answer", n.port))?;
        }
        let addrs: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .args(cluster.security.cli_args())
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .context("redis-cli --cluster create")?;
        if !out.status.success() {
            bail!(
                "redis-cli --cluster create failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        cluster.wait_healthy(Duration::from_secs(20)).await?;
        Ok(cluster)
    }

    fn spawn(&self, node: &mut RedisNode) -> Result<()> {
        let port = node.port.to_string();
        let mut args = self.security.server_args(node.port);
        args.extend(
            [
                "--bind",
                "127.0.0.1",
                "--protected-mode",
                "no",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                &format!("nodes-{port}.conf"),
                "--cluster-node-timeout",
                "2000",
                "--appendonly",
                "no",
                "--save",
                "",
                "--dir",
                &self.dir.display().to_string(),
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        node.proc = Some(Proc::spawn(
            &format!("redis-{port}"),
            Path::new("redis-server"),
            &args,
            self.dir.join(format!("redis-{port}.log")),
            &[],
        )?);
        Ok(())
    }

    /// Wait until every running node reports `cluster_state:ok`.
    pub async fn wait_healthy(&self, timeout: Duration) -> Result<()> {
        for n in self.nodes.iter().filter(|n| n.proc.is_some()) {
            wait_until(timeout, || {
                Ok(cli_as(&self.security, n.port, &["cluster", "info"])?
                    .contains("cluster_state:ok"))
            })
            .await
            .with_context(|| format!("Redis node {} not healthy", n.port))?;
        }
        Ok(())
    }

    /// The URL for fred: the first node, the others as `node=` seeds.
    pub fn url(&self) -> String {
        let mut nodes = self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port));
        let first = nodes.next().unwrap_or_default();
        let rest: Vec<String> = nodes.map(|n| format!("node={n}")).collect();
        let base = self.security.scheme_and_auth("cluster");
        if rest.is_empty() {
            format!("{base}{first}")
        } else {
            format!("{base}{first}?{}", rest.join("&"))
        }
    }

    /// SIGKILL node `i` (its slots become unavailable: the cluster degrades).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut p) = self.nodes.get_mut(i).and_then(|n| n.proc.take()) {
            p.kill9();
        }
    }

    /// Start node `i` again with its cluster config (it rejoins with its slots).
    pub async fn restart(&mut self, i: usize) -> Result<()> {
        let mut node = RedisNode {
            port: self.nodes.get(i).context("no such node")?.port,
            proc: None,
        };
        self.spawn(&mut node)?;
        self.nodes[i] = node;
        self.wait_healthy(Duration::from_secs(30)).await
    }

    /// Keys held by node `i` (`DBSIZE`).
    pub fn keys_on(&self, i: usize) -> Result<u64> {
        let port = self.nodes.get(i).context("no such node")?.port;
        Ok(cli_as(&self.security, port, &["dbsize"])?
            .trim()
            .parse()
            .unwrap_or(0))
    }
}

/// Redis as Argo CD runs it in HA: a master, a replica, and Sentinel watching them (quorum 1,
/// a master is declared down after one second).
pub struct RedisSentinel {
    pub master: RedisNode,
    pub replica: RedisNode,
    pub sentinel: RedisNode,
    dir: PathBuf,
    security: RedisSecurity,
}

/// The name Sentinel monitors the master under.
pub const SENTINEL_SERVICE: &str = "mymaster";

impl RedisSentinel {
    pub async fn start(dir: &Path, security: RedisSecurity) -> Result<Self> {
        let dir = dir.join("redis-sentinel");
        std::fs::create_dir_all(&dir)?;
        let spawn_node = |port: u16, extra: &[String]| -> Result<RedisNode> {
            let mut args = security.server_args(port);
            args.extend(
                [
                    "--bind",
                    "127.0.0.1",
                    "--protected-mode",
                    "no",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                ]
                .map(String::from),
            );
            args.push(dir.display().to_string());
            args.extend(extra.iter().cloned());
            Ok(RedisNode {
                port,
                proc: Some(Proc::spawn(
                    &format!("redis-{port}"),
                    Path::new("redis-server"),
                    &args,
                    dir.join(format!("redis-{port}.log")),
                    &[],
                )?),
            })
        };
        let master = spawn_node(free_port()?, &[])?;
        let replica_port = free_port()?;
        let replica = spawn_node(
            replica_port,
            &[
                "--replicaof".into(),
                "127.0.0.1".into(),
                master.port.to_string(),
            ],
        )?;
        for port in [master.port, replica.port] {
            wait_until(Duration::from_secs(10), || {
                Ok(cli_as(&security, port, &["ping"])?.trim() == "PONG")
            })
            .await
            .with_context(|| format!("redis-server on {port} did not answer"))?;
        }
        wait_until(Duration::from_secs(20), || {
            Ok(cli_as(&security, replica_port, &["info", "replication"])?
                .contains("master_link_status:up"))
        })
        .await
        .context("the replica did not sync with the master")?;
        let sentinel_port = free_port()?;
        let mut conf = match &security.tls {
            Some(t) => format!(
                "port 0\ntls-port {sentinel_port}\ntls-cert-file {}\ntls-key-file {}\ntls-ca-cert-file {}\ntls-auth-clients no\ntls-replication yes\n",
                t.cert.display(),
                t.key.display(),
                t.ca.display()
            ),
            None => format!("port {sentinel_port}\n"),
        };
        conf.push_str(&format!(
            "bind 127.0.0.1\nprotected-mode no\ndir {dir}\nsentinel monitor {SENTINEL_SERVICE} 127.0.0.1 {m} 1\nsentinel down-after-milliseconds {SENTINEL_SERVICE} 1000\nsentinel failover-timeout {SENTINEL_SERVICE} 5000\n",
            dir = dir.display(),
            m = master.port
        ));
        if let Some(pw) = &security.password {
            conf.push_str(&format!("sentinel auth-pass {SENTINEL_SERVICE} {pw}\n"));
        }
        let conf_path = dir.join("sentinel.conf");
        std::fs::write(&conf_path, conf)?;
        let sentinel = RedisNode {
            port: sentinel_port,
            proc: Some(Proc::spawn(
                "redis-sentinel",
                Path::new("redis-sentinel"),
                &[conf_path.display().to_string()],
                dir.join("sentinel.log"),
                &[],
            )?),
        };
        // Sentinel itself is not password-protected here: only the data nodes are.
        let sentinel_cli = RedisSecurity {
            password: None,
            ..security.clone()
        };
        wait_until(Duration::from_secs(20), || {
            let out = cli_as(
                &sentinel_cli,
                sentinel_port,
                &["sentinel", "replicas", SENTINEL_SERVICE],
            )?;
            Ok(out.contains(&replica_port.to_string()))
        })
        .await
        .context("Sentinel did not find the replica")?;
        Ok(Self {
            master,
            replica,
            sentinel,
            dir,
            security,
        })
    }

    /// The URL for fred.
    pub fn url(&self) -> String {
        format!(
            "{}127.0.0.1:{}/0?sentinelServiceName={SENTINEL_SERVICE}",
            self.security.scheme_and_auth("sentinel"),
            self.sentinel.port
        )
    }

    /// SIGKILL the master: Sentinel promotes the replica.
    pub fn kill_master(&mut self) {
        if let Some(mut p) = self.master.proc.take() {
            p.kill9();
        }
    }

    /// The port Sentinel currently names as master.
    pub fn current_master(&self) -> Result<u16> {
        let sentinel_cli = RedisSecurity {
            password: None,
            ..self.security.clone()
        };
        let out = cli_as(
            &sentinel_cli,
            self.sentinel.port,
            &["sentinel", "get-master-addr-by-name", SENTINEL_SERVICE],
        )?;
        out.lines()
            .nth(1)
            .and_then(|p| p.trim().parse().ok())
            .with_context(|| format!("no master in {out:?}"))
    }

    /// Keys held by the server on `port`.
    pub fn keys_on(&self, port: u16) -> Result<u64> {
        Ok(cli_as(&self.security, port, &["dbsize"])?
            .trim()
            .parse()
            .unwrap_or(0))
    }

    /// Where the logs are.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

async fn wait_until(timeout: Duration, mut ok: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if ok().unwrap_or(false) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

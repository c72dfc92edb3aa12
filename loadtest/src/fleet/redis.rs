//! A real Redis Cluster for tests and load runs: N `redis-server` processes in cluster mode,
//! joined with `redis-cli --cluster create`; nodes can be killed and restarted.

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

fn cli(port: u16, args: &[&str]) -> Result<String> {
    let out = Command::new("redis-cli")
        .arg("-p")
        .arg(port.to_string())
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
        if masters < 3 {
            bail!("a Redis Cluster needs at least 3 masters");
        }
        let dir = dir.join("redis");
        std::fs::create_dir_all(&dir)?;
        let mut cluster = Self {
            nodes: Vec::new(),
            dir,
        };
        for _ in 0..masters {
            let port = free_port()?;
            let mut node = RedisNode { port, proc: None };
            cluster.spawn(&mut node)?;
            cluster.nodes.push(node);
        }
        for n in &cluster.nodes {
            wait_until(Duration::from_secs(10), || {
                Ok(cli(n.port, &["ping"])?.trim() == "PONG")
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
        let args: Vec<String> = [
            "--port",
            &port,
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
        .map(|s| s.to_string())
        .collect();
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
                Ok(cli(n.port, &["cluster", "info"])?.contains("cluster_state:ok"))
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
        if rest.is_empty() {
            format!("redis-cluster://{first}")
        } else {
            format!("redis-cluster://{first}?{}", rest.join("&"))
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
        Ok(cli(port, &["dbsize"])?.trim().parse().unwrap_or(0))
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

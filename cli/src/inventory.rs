//! `flotilla proj|cluster|repo|fleet ...`: what the fleet is made of. Clusters and
//! repositories come without credentials (the API never returns them).

use clap::Subcommand;
use serde_json::Value;

use crate::client::{Api, ApiError};
use crate::output::{Format, print_value, table};

#[derive(Debug, Subcommand)]
pub enum ProjCommand {
    /// List AppProjects.
    List,
    /// One AppProject.
    Get { name: String },
    /// Create an AppProject from a YAML or JSON file (replace it with --upsert).
    Create {
        #[arg(long, short)]
        file: std::path::PathBuf,
        #[arg(long)]
        upsert: bool,
    },
    /// Delete an AppProject (refused while applications use it).
    Delete { name: String },
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// List destination clusters with their owning controller replica.
    List,
    /// One cluster, by server URL or name.
    Get {
        #[arg(value_name = "SERVER")]
        cluster: String,
    },
    /// Add a cluster (written to an Argo CD cluster Secret; credentials are never shown).
    Add {
        /// The cluster's API server URL (https://).
        #[arg(value_name = "SERVER")]
        cluster_url: String,
        #[arg(long)]
        name: Option<String>,
        /// Bearer token (or FLOTILLA_CLUSTER_TOKEN).
        #[arg(long, env = "FLOTILLA_CLUSTER_TOKEN", hide_env_values = true)]
        bearer_token: Option<String>,
        /// PEM file of the CA that signs the API server's certificate.
        #[arg(long)]
        ca_file: Option<std::path::PathBuf>,
        /// Skip TLS verification.
        #[arg(long)]
        insecure: bool,
        /// Scope it to one AppProject.
        #[arg(long)]
        project: Option<String>,
        /// Replace an existing cluster of the same URL.
        #[arg(long)]
        upsert: bool,
    },
    /// Remove a cluster (its Secret; nothing on the cluster is deleted).
    Rm {
        #[arg(value_name = "SERVER")]
        cluster_url: String,
    },
}

#[derive(Debug, Subcommand)]
#[expect(
    clippy::large_enum_variant,
    reason = "parsed once from the command line; boxing would only obscure the clap definition"
)]
pub enum RepoCommand {
    /// List repositories and credential templates.
    List,
    /// Add a repository (credentials go to its Secret and are never shown).
    Add {
        url: String,
        /// git or helm.
        #[arg(long, default_value = "git")]
        r#type: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        project: Option<String>,
        #[arg(long)]
        username: Option<String>,
        /// Password or token (or FLOTILLA_REPO_PASSWORD).
        #[arg(long, env = "FLOTILLA_REPO_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        /// Private key file for ssh:// and git@host:path URLs.
        #[arg(long)]
        ssh_private_key_path: Option<std::path::PathBuf>,
        /// Client certificate (PEM file) for https:// servers that ask for one.
        #[arg(long, requires = "tls_client_cert_key_path")]
        tls_client_cert_path: Option<std::path::PathBuf>,
        /// The client certificate's key (PEM file).
        #[arg(long, requires = "tls_client_cert_path")]
        tls_client_cert_key_path: Option<std::path::PathBuf>,
        /// HTTP(S) proxy for this repository.
        #[arg(long)]
        proxy: Option<String>,
        /// Hosts that bypass the proxy (comma-separated).
        #[arg(long)]
        no_proxy: Option<String>,
        /// Skip TLS verification (https) or host key checks (ssh).
        #[arg(long)]
        insecure: bool,
        #[arg(long)]
        upsert: bool,
    },
    /// Remove a repository.
    Rm { url: String },
}

#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// Controller replicas: liveness, owned clusters and applications, queue depth.
    Status,
}

fn s(v: &Value, k: &str) -> String {
    match &v[k] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn items(v: &Value) -> Vec<Value> {
    v["items"].as_array().cloned().unwrap_or_default()
}

pub async fn projects(api: &Api, cmd: ProjCommand, format: Format) -> Result<(), ApiError> {
    match cmd {
        ProjCommand::List => {
            let v = api.get("/api/v1/projects").await?;
            match format {
                Format::Json | Format::Yaml => print_value(&v, format),
                _ => {
                    let rows: Vec<Vec<String>> = items(&v)
                        .iter()
                        .map(|p| {
                            let n =
                                |k: &str| p["spec"][k].as_array().map_or(0, Vec::len).to_string();
                            vec![
                                p["metadata"]["name"].as_str().unwrap_or_default().into(),
                                p["spec"]["description"].as_str().unwrap_or_default().into(),
                                n("sourceRepos"),
                                n("destinations"),
                                n("roles"),
                            ]
                        })
                        .collect();
                    println!(
                        "{}",
                        table(
                            &["NAME", "DESCRIPTION", "SOURCES", "DESTINATIONS", "ROLES"],
                            &rows
                        )
                    );
                }
            }
        }
        ProjCommand::Get { name } => {
            let v = api
                .get(&format!(
                    "/api/v1/projects/{}",
                    crate::client::encode(&name)
                ))
                .await?;
            print_value(&v, format);
        }
        ProjCommand::Create { file, upsert } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| ApiError::Config(format!("{}: {e}", file.display())))?;
            let project: Value = serde_yaml::from_str(&text)
                .map_err(|e| ApiError::Config(format!("{}: {e}", file.display())))?;
            let v = api
                .post(
                    "/api/v1/projects",
                    &serde_json::json!({"project": project, "upsert": upsert}),
                )
                .await?;
            println!(
                "project {} {}",
                v["metadata"]["name"].as_str().unwrap_or_default(),
                if upsert { "written" } else { "created" }
            );
        }
        ProjCommand::Delete { name } => {
            api.delete(&format!(
                "/api/v1/projects/{}",
                crate::client::encode(&name)
            ))
            .await?;
            println!("project {name} deleted");
        }
    }
    Ok(())
}

pub async fn clusters(api: &Api, cmd: ClusterCommand, format: Format) -> Result<(), ApiError> {
    let cmd = match cmd {
        ClusterCommand::Add {
            cluster_url: server,
            name,
            bearer_token,
            ca_file,
            insecure,
            project,
            upsert,
        } => {
            let ca = match ca_file {
                Some(f) => Some(
                    std::fs::read(&f)
                        .map_err(|e| ApiError::Config(format!("{}: {e}", f.display())))?,
                ),
                None => None,
            };
            use base64::Engine;
            let config = serde_json::json!({
                "bearerToken": bearer_token,
                "tlsClientConfig": {"insecure": insecure,
                    "caData": ca.map(|c| base64::engine::general_purpose::STANDARD.encode(c))},
            });
            let v = api
                .post(
                    &format!("/api/v1/clusters?upsert={upsert}"),
                    &serde_json::json!({"server": server, "name": name, "config": config, "project": project}),
                )
                .await?;
            println!(
                "cluster {} added (Secret {})",
                s(&v, "server"),
                s(&v, "secret")
            );
            return Ok(());
        }
        ClusterCommand::Rm {
            cluster_url: server,
        } => {
            api.delete(&format!(
                "/api/v1/clusters/{}",
                crate::client::encode(&server)
            ))
            .await?;
            println!("cluster {server} removed");
            return Ok(());
        }
        other => other,
    };
    let v = match &cmd {
        ClusterCommand::Add { .. } | ClusterCommand::Rm { .. } => return Ok(()),
        ClusterCommand::List => api.get("/api/v1/clusters").await?,
        ClusterCommand::Get { cluster: server } => {
            api.get(&format!(
                "/api/v1/clusters/{}",
                crate::client::encode(server)
            ))
            .await?
        }
    };
    match (format, cmd) {
        (Format::Json | Format::Yaml, _) | (_, ClusterCommand::Get { .. }) => {
            print_value(&v, format)
        }
        (_, ClusterCommand::Add { .. } | ClusterCommand::Rm { .. }) => {}
        (_, ClusterCommand::List) => {
            let rows: Vec<Vec<String>> = items(&v)
                .iter()
                .map(|c| {
                    vec![
                        s(c, "name"),
                        s(c, "server"),
                        s(c, "project"),
                        s(c, "auth"),
                        s(c, "applications"),
                        s(c, "owner"),
                    ]
                })
                .collect();
            println!(
                "{}",
                table(
                    &["NAME", "SERVER", "PROJECT", "AUTH", "APPS", "OWNER"],
                    &rows
                )
            );
            for e in v["errors"].as_array().into_iter().flatten() {
                eprintln!("cluster Secret error: {}", e.as_str().unwrap_or_default());
            }
        }
    }
    Ok(())
}

pub async fn repositories(api: &Api, cmd: RepoCommand, format: Format) -> Result<(), ApiError> {
    match cmd {
        RepoCommand::List => {}
        RepoCommand::Add {
            url,
            r#type,
            name,
            project,
            username,
            password,
            ssh_private_key_path,
            tls_client_cert_path,
            tls_client_cert_key_path,
            proxy,
            no_proxy,
            insecure,
            upsert,
        } => {
            let read = |p: Option<std::path::PathBuf>| -> Result<Option<String>, ApiError> {
                p.map(|f| {
                    std::fs::read_to_string(&f)
                        .map_err(|e| ApiError::Config(format!("{}: {e}", f.display())))
                })
                .transpose()
            };
            let v = api
                .post(
                    &format!("/api/v1/repositories?upsert={upsert}"),
                    &serde_json::json!({"repo": url, "type": r#type, "name": name, "project": project,
                        "username": username, "password": password, "insecure": insecure,
                        "sshPrivateKey": read(ssh_private_key_path)?,
                        "tlsClientCertData": read(tls_client_cert_path)?,
                        "tlsClientCertKey": read(tls_client_cert_key_path)?,
                        "proxy": proxy, "noProxy": no_proxy}),
                )
                .await?;
            println!(
                "repository {} added (Secret {})",
                s(&v, "repo"),
                s(&v, "secret")
            );
            return Ok(());
        }
        RepoCommand::Rm { url } => {
            api.delete(&format!(
                "/api/v1/repositories/{}",
                crate::client::encode(&url)
            ))
            .await?;
            println!("repository {url} removed");
            return Ok(());
        }
    }
    let v = api.get("/api/v1/repositories").await?;
    match format {
        Format::Json | Format::Yaml => print_value(&v, format),
        _ => {
            let rows: Vec<Vec<String>> = items(&v)
                .iter()
                .map(|r| {
                    let creds = match (r["hasPassword"] == true, r["hasBearerToken"] == true) {
                        (true, _) => "password",
                        (_, true) => "bearerToken",
                        _ => "none",
                    };
                    vec![
                        s(r, "url"),
                        s(r, "type"),
                        s(r, "secretType"),
                        s(r, "project"),
                        s(r, "username"),
                        creds.into(),
                    ]
                })
                .collect();
            println!(
                "{}",
                table(
                    &["URL", "TYPE", "KIND", "PROJECT", "USERNAME", "CREDENTIALS"],
                    &rows
                )
            );
        }
    }
    Ok(())
}

pub async fn fleet(api: &Api, cmd: FleetCommand, format: Format) -> Result<(), ApiError> {
    let FleetCommand::Status = cmd;
    let v = api.get("/api/v1/fleet").await?;
    match format {
        Format::Json | Format::Yaml => print_value(&v, format),
        _ => println!("{}", render_fleet(&v)),
    }
    Ok(())
}

/// The fleet as a table of replicas, then the totals.
pub fn render_fleet(v: &Value) -> String {
    let rows: Vec<Vec<String>> = v["replicas"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let st = &r["status"];
            vec![
                s(r, "identity"),
                if r["live"] == true { "live" } else { "expired" }.into(),
                st["ownedClusters"]
                    .as_array()
                    .map_or_else(|| s(r, "claimedClusters"), |c| c.len().to_string()),
                s(st, "ownedApplications"),
                s(st, "queueDepth"),
                if st["fenced"] == true { "fenced" } else { "" }.into(),
                s(r, "error"),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "REPLICA", "LEASE", "CLUSTERS", "APPS", "QUEUE", "STATE", "ERROR",
        ],
        &rows,
    );
    out.push_str(&format!(
        "\n\n{} applications on {} clusters",
        s(v, "applications"),
        s(v, "clusters")
    ));
    if let Some(r) = v["manifestCacheHitRatio"].as_f64() {
        out.push_str(&format!("; manifest cache hit ratio {:.1} %", r * 100.0));
    }
    let unowned = v["unownedClusters"].as_array().map_or(0, Vec::len);
    if unowned > 0 {
        out.push_str(&format!("; {unowned} clusters without an owner right now"));
    }
    let repo: Vec<String> = v["repoServers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            format!(
                "{} ({})",
                s(e, "endpoint"),
                if e["up"] == true { "up" } else { "down" }
            )
        })
        .collect();
    if !repo.is_empty() {
        out.push_str(&format!("\nrepo-servers: {}", repo.join(", ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_fleet_reads_as_replicas_and_totals() {
        let v = json!({"replicas": [
            {"identity": "c-0", "live": true, "claimedClusters": 2,
             "status": {"ownedClusters": ["a", "b"], "ownedApplications": 10, "queueDepth": 3, "fenced": false}},
            {"identity": "c-1", "live": false, "claimedClusters": 1}],
            "applications": 10, "clusters": 3, "unownedClusters": ["c"], "manifestCacheHitRatio": 0.75,
            "repoServers": [{"endpoint": "https://r0:8081", "up": true}]});
        let t = render_fleet(&v);
        let lines: Vec<&str> = t.lines().collect();
        assert!(
            lines[1].starts_with("c-0      live     2         10    3"),
            "{t}"
        );
        assert!(lines[2].starts_with("c-1      expired  1"), "{t}");
        assert!(
            t.contains("10 applications on 3 clusters; manifest cache hit ratio 75.0 %; 1 clusters without an owner right now"),
            "{t}"
        );
        assert!(t.ends_with("repo-servers: https://r0:8081 (up)"), "{t}");
    }
}

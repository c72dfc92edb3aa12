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
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// List destination clusters with their owning controller replica.
    List,
    /// One cluster, by server URL or name.
    Get { server: String },
}

#[derive(Debug, Subcommand)]
pub enum RepoCommand {
    /// List repositories and credential templates.
    List,
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
    }
    Ok(())
}

pub async fn clusters(api: &Api, cmd: ClusterCommand, format: Format) -> Result<(), ApiError> {
    let v = match &cmd {
        ClusterCommand::List => api.get("/api/v1/clusters").await?,
        ClusterCommand::Get { server } => {
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
    let RepoCommand::List = cmd;
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
    let unowned = v["unownedClusters"].as_array().map_or(0, Vec::len);
    if unowned > 0 {
        out.push_str(&format!("; {unowned} clusters without an owner right now"));
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
            "applications": 10, "clusters": 3, "unownedClusters": ["c"]});
        let t = render_fleet(&v);
        let lines: Vec<&str> = t.lines().collect();
        assert!(
            lines[1].starts_with("c-0      live     2         10    3"),
            "{t}"
        );
        assert!(lines[2].starts_with("c-1      expired  1"), "{t}");
        assert!(
            t.ends_with("10 applications on 3 clusters; 1 clusters without an owner right now")
        );
    }
}

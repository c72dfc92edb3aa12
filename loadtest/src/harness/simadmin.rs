//! kubesim's admin API as the chaos and soak phases use it: per-cluster statistics (objects,
//! watches), cutting a cluster's watches, and the target clusters' writers' summaries.

use std::collections::{BTreeMap, BTreeSet};

use futures::{StreamExt, TryStreamExt};
use serde::Deserialize;

use crate::fleet::{http_get, http_post};
use crate::kubesim::audit::WriteSummary;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("this fleet's kubesim has no admin API")]
    NoAdmin,
    #[error("kubesim admin {path}: {message}")]
    Call { path: String, message: String },
}

/// What the harness reads of one cluster's `stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ClusterStats {
    pub objects: u64,
    pub watches_open: u64,
    pub watches_opened: u64,
}

#[derive(Deserialize)]
struct Named<T> {
    name: String,
    #[serde(flatten)]
    rest: T,
}

async fn get(admin: &str, path: &str) -> Result<String, AdminError> {
    let fail = |message: String| AdminError::Call {
        path: path.to_string(),
        message,
    };
    match http_get(admin, path).await {
        Ok((200, body)) => Ok(body),
        Ok((code, body)) => Err(fail(format!("answered {code}: {body}"))),
        Err(e) => Err(fail(format!("{e:#}"))),
    }
}

fn parse<T: for<'de> Deserialize<'de>>(path: &str, body: &str) -> Result<T, AdminError> {
    serde_json::from_str(body).map_err(|e| AdminError::Call {
        path: path.to_string(),
        message: e.to_string(),
    })
}

/// Every cluster's statistics, by cluster name.
pub async fn stats(admin: &str) -> Result<BTreeMap<String, ClusterStats>, AdminError> {
    let body = get(admin, "/stats").await?;
    let list: Vec<Named<ClusterStats>> = parse("/stats", &body)?;
    Ok(list.into_iter().map(|n| (n.name, n.rest)).collect())
}

/// One cluster's statistics.
pub async fn cluster_stats(admin: &str, cluster: &str) -> Result<ClusterStats, AdminError> {
    let path = format!("/clusters/{cluster}");
    let body = get(admin, &path).await?;
    parse(&path, &body)
}

/// End every open watch on `cluster`.
pub async fn cut_watches(admin: &str, cluster: &str) -> Result<(), AdminError> {
    let path = format!("/clusters/{cluster}/cut-watches");
    match http_post(admin, &path, &[], b"{}").await {
        Ok((200, _)) => Ok(()),
        Ok((code, body)) => Err(AdminError::Call {
            path,
            message: format!("answered {code}: {body}"),
        }),
        Err(e) => Err(AdminError::Call {
            path,
            message: format!("{e:#}"),
        }),
    }
}

/// The writers' summaries of `clusters`, by cluster name (one request each: the control
/// plane's summary, which every replica writes to, is large and not needed).
pub async fn writers(
    admin: &str,
    clusters: &BTreeSet<String>,
) -> Result<BTreeMap<String, WriteSummary>, AdminError> {
    futures::stream::iter(clusters.iter().cloned())
        .map(|cluster| async move {
            let path = format!("/clusters/{cluster}/writers");
            let body = get(admin, &path).await?;
            Ok::<_, AdminError>((cluster, parse::<WriteSummary>(&path, &body)?))
        })
        .buffer_unordered(8)
        .try_collect()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_and_writers_documents_parse() {
        let list: Vec<Named<ClusterStats>> = parse(
            "/stats",
            r#"[{"name":"cluster-001","objects":12,"watchesOpen":3,"watchesOpened":5,"requests":9}]"#,
        )
        .expect("stats");
        assert_eq!(list[0].name, "cluster-001");
        assert_eq!(list[0].rest.objects, 12);
        let w: WriteSummary = parse(
            "/clusters/cluster-001/writers",
            r#"{"runs":[{"user":"u","userAgent":"a","firstStartUs":1,"lastEndUs":2,"writes":1}],"writes":1}"#,
        )
        .expect("writers");
        assert_eq!(w.runs.len(), 1);
    }
}

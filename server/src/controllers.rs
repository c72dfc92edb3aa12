//! Reaching the controllers: which replica owns an application's cluster (from the shard
//! Leases' claims and their published status address), and asking it over HTTP for what only
//! the owner has (an app's live resources and diffs, the replica's own status).

use std::time::Duration;

use flotilla_controller::clusters::Registry;
use flotilla_controller::types::Application;
use flotilla_sharding::claims::{decode_claims, key_id};
use flotilla_sharding::membership::{CLAIMS_ANNOTATION, GROUP_LABEL, STATUS_ADDRESS_ANNOTATION};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::reflector::Store;
use serde_json::Value;

/// Why a controller could not answer.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("the destination cluster of {0} is not registered")]
    UnknownCluster(String),
    #[error("no live controller replica owns cluster {0} (a hand-over may be in progress)")]
    NoOwner(String),
    #[error("the controllers cannot be reached: no status token is configured (--status-token)")]
    NoToken,
    #[error("controller {replica}: {message}")]
    Replica { replica: String, message: String },
}

/// One replica as its Lease shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    pub identity: String,
    /// Where its status routes are served (`host:port`), when it published one.
    pub address: Option<String>,
    pub live: bool,
    claims: std::collections::BTreeSet<String>,
    renewed: Option<jiff::Timestamp>,
}

/// A controller's answer: its HTTP status and JSON body.
pub type Answer = (u16, Value);

/// Finds and asks the controller replicas.
pub struct Controllers {
    pub leases: Store<Lease>,
    pub clusters: Store<Secret>,
    /// The group's label value (`--shard-group`).
    pub group: String,
    pub token: Option<String>,
    /// A replica running without sharding (no Leases): every request goes there.
    pub fallback: Option<String>,
    /// Whether the control plane itself is a destination (`https://kubernetes.default.svc`).
    pub in_cluster: bool,
    pub http: reqwest::Client,
}

fn replica_of(lease: &Lease, now: jiff::Timestamp) -> Option<Replica> {
    let meta = &lease.metadata;
    let spec = lease.spec.as_ref()?;
    let identity = spec.holder_identity.clone().or_else(|| meta.name.clone())?;
    let renewed = spec.renew_time.as_ref().map(|t| t.0);
    let duration = spec.lease_duration_seconds.unwrap_or(10).max(1);
    // Live while renewed within its duration (plus as much again for clock skew: a stale
    // answer here only costs a retry on the next candidate).
    // A renewal in the future (beyond a little skew) is not believed: it would outrank every
    // honest replica.
    let live = renewed.is_some_and(|t| {
        let age = now.duration_since(t).as_secs();
        age > -FUTURE_SKEW_SECS && age < 2 * i64::from(duration)
    });
    let annotations = meta.annotations.as_ref();
    Some(Replica {
        identity,
        address: annotations
            .and_then(|a| a.get(STATUS_ADDRESS_ANNOTATION))
            .filter(|a| !a.is_empty())
            .cloned(),
        live,
        claims: annotations
            .and_then(|a| a.get(CLAIMS_ANNOTATION))
            .map(|c| decode_claims(c))
            .unwrap_or_default(),
        renewed,
    })
}

impl Replica {
    /// Whether it claims the key whose id is `id` (`flotilla_sharding::claims::key_id`).
    pub fn claims(&self, id: &str) -> bool {
        self.claims.contains(id)
    }
}

impl Controllers {
    /// The group's replicas, live ones first, most recently renewed first.
    pub fn replicas(&self) -> Vec<Replica> {
        let now = jiff::Timestamp::now();
        let mut out: Vec<Replica> = self
            .leases
            .state()
            .iter()
            .filter(|l| {
                l.metadata
                    .labels
                    .as_ref()
                    .and_then(|m| m.get(GROUP_LABEL))
                    .is_some_and(|g| *g == self.group)
            })
            .filter_map(|l| replica_of(l, now))
            .collect();
        out.sort_by(|a, b| b.live.cmp(&a.live).then(b.renewed.cmp(&a.renewed)));
        out
    }

    /// The destination cluster URL of `app` (by server, or by name through the cluster
    /// Secrets).
    pub fn cluster_of(&self, app: &Application) -> Result<String, RouteError> {
        let dest = &app.spec.destination;
        let in_cluster = self
            .in_cluster
            .then(flotilla_controller::clusters::Cluster::in_cluster);
        let secrets = self.clusters.state();
        let registry = Registry::from_secrets(secrets.iter().map(|s| s.as_ref()), in_cluster);
        registry
            .resolve(dest.server.as_deref(), dest.name.as_deref())
            .map(|c| c.server.clone())
            .ok_or_else(|| {
                UnknownCluster(
                    dest.server
                        .clone()
                        .or_else(|| dest.name.clone())
                        .unwrap_or_default(),
                )
            })
    }

    /// Addresses to ask about `server`'s applications, in order: the live replicas that
    /// claim it (during a hand-over two may), then the no-sharding fallback.
    pub fn owners_of(&self, server: &str) -> Vec<(String, String)> {
        let id = key_id(server);
        let mut out: Vec<(String, String)> = self
            .replicas()
            .into_iter()
            .filter(|r| r.live && r.claims.contains(&id))
            .filter_map(|r| Some((r.identity, r.address?)))
            .collect();
        if let Some(f) = &self.fallback {
            out.push(("fallback".into(), f.clone()));
        }
        out
    }

    /// GET `path` from the replica at `address` with the status token.
    pub async fn get(
        &self,
        replica: &str,
        address: &str,
        path: &str,
    ) -> Result<Answer, RouteError> {
        self.call(replica, address, path, None).await
    }

    /// GET `path` (POST `body` when given) at the replica at `address`, with the status token.
    async fn call(
        &self,
        replica: &str,
        address: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, RouteError> {
        let token = self.token.as_deref().ok_or(RouteError::NoToken)?;
        let failed = |message: String| RouteError::Replica {
            replica: replica.to_string(),
            message,
        };
        use flotilla_core::status_auth::{
            RESPONSE_SIGNATURE_HEADER, SIGNATURE_HEADER, TIME_HEADER, same, sign_request,
            sign_response,
        };
        let url = format!("http://{address}{path}");
        let payload = body.map(|b| b.to_string()).unwrap_or_default();
        let (method, req) = match body {
            None => ("GET", self.http.get(url)),
            Some(_) => (
                "POST",
                self.http
                    .post(url)
                    .header("content-type", "application/json")
                    .body(payload.clone()),
            ),
        };
        // Signed for this address, this path and body, now: the secret itself never travels.
        let time = flotilla_core::status_auth::now();
        let signature = sign_request(token, time, method, address, path, payload.as_bytes());
        let mut resp = req
            .header(TIME_HEADER, time.to_string())
            .header(SIGNATURE_HEADER, &signature)
            .send()
            .await
            .map_err(|e| failed(e.without_url().to_string()))?;
        let code = resp.status().as_u16();
        let answer_signature = resp
            .headers()
            .get(RESPONSE_SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut bytes = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| failed(e.without_url().to_string()))?
        {
            if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(failed(format!(
                    "answer larger than {MAX_ANSWER_BYTES} bytes"
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        // Only an answer signed with the shared secret for this request is believed.
        let expected = sign_response(token, &signature, code, &bytes);
        if !answer_signature.is_some_and(|a| same(&a, &expected)) {
            return Err(failed(format!(
                "answered {code} without a valid signature (a different --status-token, or not a Flotilla controller)"
            )));
        }
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok((code, body))
    }

    /// The owner's view of `app`'s resources (`explain`): tries each claimant in turn and
    /// skips one that answers "not mine" (421) or cannot be reached.
    pub async fn resources(&self, app: &Application) -> Result<Answer, RouteError> {
        self.ask_owner(app, "resources", None).await
    }

    /// The owner's view of `app`'s resources compared with `manifests` rendered elsewhere.
    pub async fn local_diff(
        &self,
        app: &Application,
        manifests: &Value,
    ) -> Result<Answer, RouteError> {
        self.ask_owner(app, "diff", Some(manifests)).await
    }

    async fn ask_owner(
        &self,
        app: &Application,
        what: &str,
        body: Option<&Value>,
    ) -> Result<Answer, RouteError> {
        let server = self.cluster_of(app)?;
        let ns = app.metadata.namespace.as_deref().unwrap_or_default();
        let name = app.metadata.name.as_deref().unwrap_or_default();
        let path = format!("/status/applications/{ns}/{name}/{what}");
        let mut last = RouteError::NoOwner(server.clone());
        for (replica, address) in self.owners_of(&server) {
            match self.call(&replica, &address, &path, body).await {
                Ok((421, _)) => continue,
                Ok(answer) => return Ok(answer),
                Err(e) => {
                    tracing::warn!(%replica, error = %e, "asking the owning controller");
                    last = e;
                }
            }
        }
        Err(last)
    }

    /// Every replica's own status (`/status/replica`), asked concurrently; a replica that
    /// does not answer is listed with its error.
    pub async fn fleet(&self) -> Vec<Value> {
        let replicas = self.replicas();
        let asks = replicas.iter().map(|r| async move {
            let mut v = serde_json::json!({"identity": r.identity, "live": r.live,
                "address": r.address, "claimedClusters": r.claims.len()});
            match (&r.address, r.live) {
                (Some(addr), true) => match self.get(&r.identity, addr, "/status/replica").await {
                    Ok((200, body)) => v["status"] = body,
                    Ok((code, _)) => v["error"] = format!("answered {code}").into(),
                    Err(e) => v["error"] = e.to_string().into(),
                },
                (None, _) => v["error"] = "no status address published".into(),
                (_, false) => {}
            }
            v
        });
        futures::future::join_all(asks).await
    }
}

use RouteError::UnknownCluster;

/// The largest answer read from a controller.
pub const MAX_ANSWER_BYTES: usize = 32 * 1024 * 1024;
/// How far in the future a Lease's renewal may be and still count (clock skew).
const FUTURE_SKEW_SECS: i64 = 5;

/// The HTTP client for the controllers: plain HTTP inside the cluster, short deadlines, no
/// redirects (an answer comes from the address asked, or not at all).
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(15))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(identity: &str, renewed_secs_ago: i64, claims: &[&str], addr: Option<&str>) -> Lease {
        let now = jiff::Timestamp::now();
        let renewed = now - jiff::SignedDuration::from_secs(renewed_secs_ago);
        let mut ann = serde_json::Map::new();
        ann.insert(
            CLAIMS_ANNOTATION.into(),
            flotilla_sharding::claims::encode_claims(
                claims
                    .iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .iter(),
            )
            .into(),
        );
        if let Some(a) = addr {
            ann.insert(STATUS_ADDRESS_ANNOTATION.into(), a.into());
        }
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("g-{identity}"), "labels": {GROUP_LABEL: "g"}, "annotations": ann},
            "spec": {"holderIdentity": identity, "leaseDurationSeconds": 10,
                     "renewTime": renewed.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()}
        }))
        .expect("lease")
    }

    #[test]
    fn a_lease_names_its_replica_claims_and_address() {
        let now = jiff::Timestamp::now();
        let r = replica_of(&lease("c-0", 1, &["https://a"], Some("10.0.0.1:8082")), now)
            .expect("replica");
        assert!(r.live);
        assert_eq!(r.address.as_deref(), Some("10.0.0.1:8082"));
        assert!(r.claims.contains(&key_id("https://a")));
        assert!(!r.claims.contains(&key_id("https://b")));
        // Not renewed for twice its duration: not live.
        let stale = replica_of(&lease("c-1", 25, &["https://a"], None), now).expect("replica");
        assert!(!stale.live);
        // Renewed "in the future" (a forged Lease that would outrank everyone): not live.
        let forged = replica_of(&lease("c-2", -60, &["https://a"], None), now).expect("replica");
        assert!(!forged.live);
    }
}

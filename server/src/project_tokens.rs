//! AppProject role tokens, as Argo CD issues them: HS256 JWTs signed with the server's key
//! (`argocd-secret` `server.secretkey`, shared by every replica) with `iss: argocd`,
//! `sub: proj:<project>:<role>`, `iat`, `nbf`, optional `exp` and `jti` (the token's id). Each
//! issued token is recorded in the role's `jwtTokens` (`{iat, exp, id}`); a token is valid only
//! while its project, its role and that record exist and it has not expired — deleting the
//! record revokes it.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use flotilla_controller::types::AppProject;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use kube::api::PostParams;
use kube::runtime::reflector::{ObjectRef, Store};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::api::Server;
use crate::auth::{AuthError, Principal};

/// The issuer of project tokens (Argo CD's).
pub const ISSUER: &str = "argocd";

/// One record of `spec.roles[].jwtTokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwtToken {
    pub iat: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
}

/// One `spec.roles[]` entry (what the API server uses of it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectRole {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub policies: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub jwt_tokens: Vec<JwtToken>,
}

/// The roles of a project (entries that do not parse are skipped).
pub fn roles(p: &AppProject) -> Vec<ProjectRole> {
    p.spec
        .roles
        .iter()
        .flatten()
        .filter_map(|r| serde_json::from_value(r.clone()).ok())
        .collect()
}

/// The claims of a project token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub iat: i64,
    #[serde(default)]
    pub nbf: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
}

/// `proj:<project>:<role>` → (project, role).
pub fn split_subject(sub: &str) -> Option<(&str, &str)> {
    let rest = sub.strip_prefix("proj:")?;
    let (p, r) = rest.split_once(':')?;
    (!p.is_empty() && !r.is_empty() && !r.contains(':')).then_some((p, r))
}

/// The longest lifetime a token may be given.
pub const MAX_EXPIRES_IN: i64 = 100 * 365 * 24 * 3600;

/// Sign a token for `project`/`role` issued at `iat`, expiring `expires_in` seconds later
/// (never when 0).
pub fn sign(
    key: &[u8],
    project: &str,
    role: &str,
    iat: i64,
    expires_in: i64,
    id: &str,
) -> Result<(String, JwtToken), String> {
    crate::jwt::install();
    if expires_in > MAX_EXPIRES_IN {
        return Err(format!(
            "expiresIn {expires_in} s is more than {MAX_EXPIRES_IN} s (100 years)"
        ));
    }
    let exp = match expires_in {
        0 => None,
        n => Some(iat.checked_add(n).ok_or("expiresIn overflows")?),
    };
    let claims = Claims {
        iss: ISSUER.into(),
        sub: format!("proj:{project}:{role}"),
        iat,
        nbf: Some(iat),
        exp,
        jti: (!id.is_empty()).then(|| id.to_string()),
    };
    let k = EncodingKey::from_secret(key).map_err(|e| e.to_string())?;
    let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &k)
        .map_err(|e| e.to_string())?;
    Ok((
        token,
        JwtToken {
            iat,
            exp,
            id: id.to_string(),
        },
    ))
}

/// Check a project token: signature (HS256 with `key`), issuer, expiry, and that the role's
/// `jwtTokens` in `project` (as now known) still record it. Returns its subject.
pub fn verify(
    key: &[u8],
    token: &str,
    project_of: impl Fn(&str) -> Option<Arc<AppProject>>,
) -> Result<Principal, AuthError> {
    crate::jwt::install();
    let k = DecodingKey::from_secret(key).map_err(|_| AuthError::Invalid)?;
    let mut v = Validation::new(Algorithm::HS256);
    v.set_issuer(&[ISSUER]);
    v.set_required_spec_claims(&["iss", "sub"]);
    v.validate_aud = false;
    v.validate_nbf = true;
    v.leeway = crate::oidc::LEEWAY;
    let claims = jsonwebtoken::decode::<Claims>(token, &k, &v)
        .map_err(|_| AuthError::Invalid)?
        .claims;
    let (project, role) = split_subject(&claims.sub).ok_or(AuthError::Invalid)?;
    let p = project_of(project).ok_or(AuthError::Invalid)?;
    let r = roles(&p)
        .into_iter()
        .find(|r| r.name == role)
        .ok_or(AuthError::Invalid)?;
    let recorded = r.jwt_tokens.iter().any(|t| {
        t.iat == claims.iat
            && match claims.jti.as_deref() {
                Some(id) => t.id == id,
                None => true,
            }
    });
    if !recorded {
        return Err(AuthError::Invalid);
    }
    Ok(Principal {
        subject: claims.sub.clone(),
        groups: Vec::new(),
    })
}

/// The project named `name` in a store.
pub fn project_in(
    store: &Store<AppProject>,
    namespace: &str,
    name: &str,
) -> Option<Arc<AppProject>> {
    store
        .get(&ObjectRef::new(name).within(namespace))
        .or_else(|| {
            store
                .state()
                .into_iter()
                .find(|p| p.metadata.name.as_deref() == Some(name))
        })
}

fn error(code: StatusCode, message: impl Into<String>) -> Response {
    (
        code,
        axum::Json(json!({"error": message.into(), "code": code.as_u16()})),
    )
        .into_response()
}

fn count(s: &Server, route: &'static str, resp: Response) -> Response {
    s.requests
        .get_or_create(&crate::api::RequestLabels {
            route,
            code: resp.status().as_u16(),
        })
        .inc();
    resp
}

/// Body of a token request (Argo CD's `ProjectTokenCreateRequest` fields).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateToken {
    /// Seconds until the token expires; 0 or absent: never.
    #[serde(default)]
    pub expires_in: i64,
    /// The token's id (`jti`); a random UUID when absent.
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

/// Read-modify-write the role `role` of AppProject `name` (retried on conflicts).
async fn update_role<T>(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    role: &str,
    mut f: impl FnMut(&mut Vec<Value>) -> Result<T, (StatusCode, String)>,
) -> Result<T, (StatusCode, String)> {
    let api: kube::Api<AppProject> = kube::Api::namespaced(client.clone(), namespace);
    for _ in 0..5 {
        let mut p = match api.get_opt(name).await {
            Ok(Some(p)) => p,
            Ok(None) => return Err((StatusCode::NOT_FOUND, format!("no project {name}"))),
            Err(e) => return Err((StatusCode::BAD_GATEWAY, e.to_string())),
        };
        let roles = p.spec.roles.get_or_insert_with(Vec::new);
        let Some(r) = roles
            .iter_mut()
            .find(|r| r.get("name").and_then(Value::as_str) == Some(role))
        else {
            return Err((
                StatusCode::NOT_FOUND,
                format!("project {name} has no role {role}"),
            ));
        };
        if !r.is_object() {
            return Err((
                StatusCode::CONFLICT,
                format!("role {role} is not an object"),
            ));
        }
        let tokens = r
            .as_object_mut()
            .map(|o| o.entry("jwtTokens").or_insert_with(|| json!([])))
            .ok_or((StatusCode::CONFLICT, "role".to_string()))?;
        if !tokens.is_array() {
            *tokens = json!([]);
        }
        let Some(list) = tokens.as_array_mut() else {
            return Err((StatusCode::CONFLICT, "jwtTokens".to_string()));
        };
        let out = f(list)?;
        p.metadata.managed_fields = None;
        match api.replace(name, &PostParams::default(), &p).await {
            Ok(_) => return Ok(out),
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => return Err((StatusCode::BAD_GATEWAY, e.to_string())),
        }
    }
    Err((
        StatusCode::CONFLICT,
        format!("project {name} kept changing; try again"),
    ))
}

/// `POST /api/v1/projects/{project}/roles/{role}/token`: issue a token (needs
/// `projects, update, <project>`).
pub async fn create(
    State(s): State<Arc<Server>>,
    headers: HeaderMap,
    Path((project, role)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let resp = async {
        let who = match s.auth.authenticate(&headers).await {
            Ok(p) => p,
            Err(e) => return crate::api::unauthenticated(e),
        };
        let req: CreateToken = if body.iter().all(u8::is_ascii_whitespace) {
            CreateToken::default()
        } else {
            match serde_json::from_slice(&body) {
                Ok(r) => r,
                Err(e) => return error(StatusCode::BAD_REQUEST, format!("token request: {e}")),
            }
        };
        if req.expires_in < 0 || req.expires_in > MAX_EXPIRES_IN {
            return error(
                StatusCode::BAD_REQUEST,
                format!("expiresIn must be between 0 and {MAX_EXPIRES_IN} seconds"),
            );
        }
        let id = req
            .id
            .clone()
            .filter(|i| !i.is_empty())
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        if id.len() > 256 || id.chars().any(char::is_control) {
            return error(
                StatusCode::BAD_REQUEST,
                "id: at most 256 printable characters",
            );
        }
        let namespace = s.auth.namespace().to_string();
        if project_in(&s.projects, &namespace, &project).is_none() {
            return error(StatusCode::NOT_FOUND, format!("no project {project}"));
        }
        if !s.can(&who, "projects", "update", &project) {
            return error(StatusCode::FORBIDDEN, "permission denied");
        }
        let Some(key) = s.auth.server_key() else {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server key is not loaded yet",
            );
        };
        let now = crate::oidc::now() as i64;
        let made = update_role(&s.actions.client, &namespace, &project, &role, |list| {
            let existing: Vec<JwtToken> = list
                .iter()
                .filter_map(|t| serde_json::from_value(t.clone()).ok())
                .collect();
            if existing.iter().any(|t| t.id == id) {
                return Err((
                    StatusCode::CONFLICT,
                    format!("token id {id:?} is already used in this role"),
                ));
            }
            // Tokens are told apart by iat: two in one second get consecutive ones.
            let iat = existing
                .iter()
                .map(|t| t.iat + 1)
                .filter(|i| *i > now)
                .max()
                .unwrap_or(now);
            let (token, record) = sign(&key, &project, &role, iat, req.expires_in, &id)
                .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e))?;
            list.push(serde_json::to_value(&record).unwrap_or(Value::Null));
            Ok((token, record))
        })
        .await;
        match made {
            Ok((token, record)) => {
                tracing::info!(
                    audit = true, who = %who.subject, action = "project-token-create",
                    project = %project, role = %role, id = %record.id, iat = record.iat,
                    exp = record.exp.unwrap_or(0), "project role token issued"
                );
                axum::Json(
                    json!({"token": token, "iat": record.iat, "exp": record.exp, "id": record.id}),
                )
                .into_response()
            }
            Err((code, m)) => error(code, m),
        }
    }
    .await;
    count(&s, "project_token_create", resp)
}

#[derive(Debug, Default, Deserialize)]
pub struct DeleteQuery {
    #[serde(default)]
    id: Option<String>,
}

/// `DELETE /api/v1/projects/{project}/roles/{role}/token/{iat}[?id=]`: revoke (needs
/// `projects, update, <project>`).
pub async fn delete(
    State(s): State<Arc<Server>>,
    headers: HeaderMap,
    Path((project, role, iat)): Path<(String, String, i64)>,
    q: Result<Query<DeleteQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let resp = async {
        let who = match s.auth.authenticate(&headers).await {
            Ok(p) => p,
            Err(e) => return crate::api::unauthenticated(e),
        };
        let Ok(Query(q)) = q else {
            return error(StatusCode::BAD_REQUEST, "bad query");
        };
        let namespace = s.auth.namespace().to_string();
        if project_in(&s.projects, &namespace, &project).is_none() {
            return error(StatusCode::NOT_FOUND, format!("no project {project}"));
        }
        if !s.can(&who, "projects", "update", &project) {
            return error(StatusCode::FORBIDDEN, "permission denied");
        }
        let removed = update_role(&s.actions.client, &namespace, &project, &role, |list| {
            let before = list.len();
            list.retain(|t| {
                let Ok(t) = serde_json::from_value::<JwtToken>(t.clone()) else {
                    return true;
                };
                !(t.iat == iat && q.id.as_deref().is_none_or(|id| id == t.id))
            });
            if list.len() == before {
                return Err((StatusCode::NOT_FOUND, format!("no token issued at {iat}")));
            }
            Ok(before - list.len())
        })
        .await;
        match removed {
            Ok(n) => {
                tracing::info!(
                    audit = true, who = %who.subject, action = "project-token-delete",
                    project = %project, role = %role, iat, "project role token revoked"
                );
                axum::Json(json!({"removed": n})).into_response()
            }
            Err((code, m)) => error(code, m),
        }
    }
    .await;
    count(&s, "project_token_delete", resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(tokens: Value) -> Arc<AppProject> {
        Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject",
                "metadata": {"name": "team-a", "namespace": "argocd"},
                "spec": {"roles": [{"name": "ci", "policies": [], "jwtTokens": tokens}]}
            }))
            .expect("project"),
        )
    }

    #[test]
    fn a_token_lives_as_long_as_its_record() {
        let now = crate::oidc::now() as i64;
        let (t, rec) = sign(b"k", "team-a", "ci", now, 0, "one").expect("sign");
        let p = project(json!([rec]));
        let who = verify(b"k", &t, |n| (n == "team-a").then(|| p.clone())).expect("valid");
        assert_eq!(who.subject, "proj:team-a:ci");
        // Revoked: the record is gone, or another id has that iat.
        let revoked = project(json!([]));
        assert_eq!(
            verify(b"k", &t, |_| Some(revoked.clone())),
            Err(AuthError::Invalid)
        );
        let other = project(json!([{"iat": now, "id": "two"}]));
        assert_eq!(
            verify(b"k", &t, |_| Some(other.clone())),
            Err(AuthError::Invalid)
        );
        // Project gone, role gone, another key.
        assert_eq!(verify(b"k", &t, |_| None), Err(AuthError::Invalid));
        assert_eq!(
            verify(b"x", &t, |_| Some(p.clone())),
            Err(AuthError::Invalid)
        );
        // Expired.
        let (old, rec) = sign(b"k", "team-a", "ci", now - 3600, 60, "old").expect("sign");
        let p = project(json!([rec]));
        assert_eq!(
            verify(b"k", &old, |_| Some(p.clone())),
            Err(AuthError::Invalid)
        );
        // A subject naming another project than the one whose record matches: refused.
        let (t2, rec2) = sign(b"k", "team-b", "ci", now, 0, "one").expect("sign");
        let _ = rec2;
        let p = project(json!([{"iat": now, "id": "one"}]));
        assert_eq!(
            verify(b"k", &t2, |n| (n == "team-a").then(|| p.clone())),
            Err(AuthError::Invalid)
        );
        assert_eq!(split_subject("proj:a:b"), Some(("a", "b")));
        assert_eq!(split_subject("proj:a:b:c"), None);
        assert_eq!(split_subject("a:b"), None);
    }
}

//! ServiceAccount tokens as the real API server issues and checks them: the TokenRequest
//! subresource (`POST /api/v1/namespaces/{ns}/serviceaccounts/{name}/token`) and TokenReview
//! (`POST /apis/authentication.k8s.io/v1/tokenreviews`).
//!
//! Tokens are JWTs with the claims kube-apiserver puts in them (`iss`, `aud`, `sub`
//! `system:serviceaccount:<ns>:<name>`, `exp`/`iat`/`nbf`, `jti`, `kubernetes.io` with the
//! ServiceAccount's name and uid and any bound Pod or Secret). They are signed with HS256 under a
//! key private to this kubesim process and this virtual cluster (a real server uses RS256/ES256
//! and publishes its keys; nobody but the issuing cluster can check a kubesim token). A token
//! stops authenticating when it expires, or when its ServiceAccount (or bound object) is deleted
//! or re-created with another uid — the checks kube-apiserver's validator makes.

use std::sync::LazyLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::Cluster;
use super::error::{ApiError, ApiResult};
use super::resources::ResourceType;

/// The issuer (and default audience) of a kind/kubeadm cluster's ServiceAccount tokens.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// The API server's own audiences (`--api-audiences`, defaulting to the issuer).
pub const API_AUDIENCES: &[&str] = &[ISSUER];

/// TokenRequest bounds (`pkg/apis/authentication/validation`).
const MIN_EXPIRATION: i64 = 10 * 60;
const MAX_EXPIRATION: i64 = 1 << 32;
const DEFAULT_EXPIRATION: i64 = 3600;

/// Leeway for `exp`/`nbf` and recently deleted objects (the server's `jwt.DefaultLeeway`).
const LEEWAY: i64 = 60;

/// The process's signing secret; each cluster signs with a key derived from it and its name.
static SECRET: LazyLock<[u8; 32]> = LazyLock::new(rand::random);

fn mac(cluster: &str) -> Hmac<Sha256> {
    let mut derive = <Hmac<Sha256> as Mac>::new_from_slice(&*SECRET).expect("HMAC takes any key");
    derive.update(b"kubesim serviceaccount token key\0");
    derive.update(cluster.as_bytes());
    let key = derive.finalize().into_bytes();
    <Hmac<Sha256> as Mac>::new_from_slice(&key).expect("HMAC takes any key")
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

fn sign(cluster: &str, claims: &Value) -> String {
    let header = B64.encode(br#"{"alg":"HS256","kid":"kubesim","typ":"JWT"}"#);
    let payload = B64.encode(claims.to_string());
    let mut m = mac(cluster);
    m.update(format!("{header}.{payload}").as_bytes());
    let sig = B64.encode(m.finalize().into_bytes());
    format!("{header}.{payload}.{sig}")
}

/// The claims of a token this cluster signed (signature checked, nothing else).
fn verified_claims(cluster: &str, token: &str) -> Option<Value> {
    let mut parts = token.split('.');
    let (h, p, s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let header: Value = serde_json::from_slice(&B64.decode(h).ok()?).ok()?;
    if header["alg"] != "HS256" {
        return None;
    }
    let mut m = mac(cluster);
    m.update(format!("{h}.{p}").as_bytes());
    m.verify_slice(&B64.decode(s).ok()?).ok()?;
    serde_json::from_slice(&B64.decode(p).ok()?).ok()
}

fn timestamp(secs: i64) -> String {
    jiff::Timestamp::from_second(secs)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

fn uid_of(obj: &Value) -> String {
    obj.pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

/// `TokenRequest.authentication.k8s.io "name" is invalid: field: detail` (422).
fn invalid(sa: &ResourceType, name: &str, field: &str, detail: &str) -> ApiError {
    let mut e = ApiError::invalid(
        "TokenRequest.authentication.k8s.io",
        sa,
        name,
        field,
        detail,
    );
    if let Some(d) = e.details.as_deref_mut() {
        d["group"] = json!("authentication.k8s.io");
        d["kind"] = json!("TokenRequest");
    }
    e
}

/// `POST .../serviceaccounts/{name}/token`: a token for ServiceAccount `ns/name` (which must
/// exist), valid for `spec.audiences` (default: the API server's) for `spec.expirationSeconds`
/// (default 3600, at least 600), optionally bound to a Pod or Secret of the namespace.
pub fn request(
    cluster: &Cluster,
    sa_type: &ResourceType,
    ns: &str,
    name: &str,
    body: Value,
) -> ApiResult<Value> {
    if !body.is_object() {
        return Err(ApiError::bad_request(
            "TokenRequest in version \"v1\" cannot be handled: the body is not an object",
        ));
    }
    if let Some(kind) = body.get("kind").and_then(Value::as_str)
        && kind != "TokenRequest"
    {
        return Err(ApiError::bad_request(format!(
            "not a TokenRequest: kind {kind:?}"
        )));
    }
    let spec = body.get("spec").cloned().unwrap_or(json!({}));
    let expiration = match spec.get("expirationSeconds") {
        None | Some(Value::Null) => DEFAULT_EXPIRATION,
        Some(v) => v.as_i64().ok_or_else(|| {
            ApiError::bad_request("TokenRequest.spec.expirationSeconds: expected an integer")
        })?,
    };
    if expiration < MIN_EXPIRATION {
        return Err(invalid(
            sa_type,
            name,
            "spec.expirationSeconds",
            &format!(
                "Invalid value: {expiration}: may not specify a duration less than 10 minutes"
            ),
        ));
    }
    if expiration > MAX_EXPIRATION {
        return Err(invalid(
            sa_type,
            name,
            "spec.expirationSeconds",
            &format!(
                "Invalid value: {expiration}: may not specify a duration larger than 2^32 seconds"
            ),
        ));
    }
    let mut audiences = strings(spec.get("audiences"));
    if audiences.is_empty() {
        audiences = API_AUDIENCES.iter().map(|a| a.to_string()).collect();
    }
    let sa = cluster.store.get_value(sa_type, ns, name)?;
    let mut k8s = json!({"namespace": ns, "serviceaccount": {"name": name, "uid": uid_of(&sa)}});
    let bound = spec.get("boundObjectRef").filter(|b| !b.is_null());
    if let Some(b) = bound {
        let kind = b.get("kind").and_then(Value::as_str).unwrap_or_default();
        let plural = match kind {
            "Pod" => "pods",
            "Secret" => "secrets",
            other => {
                return Err(ApiError::bad_request(format!(
                    "cannot bind token for object of kind {other:?}: only Pod and Secret are supported by kubesim"
                )));
            }
        };
        let obj_name = b.get("name").and_then(Value::as_str).unwrap_or_default();
        let rt = cluster
            .store
            .lookup("", "v1", plural)
            .ok_or_else(ApiError::no_route)?;
        let obj = cluster.store.get_value(&rt, ns, obj_name)?;
        let uid = uid_of(&obj);
        if let Some(want) = b.get("uid").and_then(Value::as_str)
            && !want.is_empty()
            && want != uid
        {
            return Err(ApiError::conflict(
                &rt,
                obj_name,
                &format!(
                    "the UID in the bound object reference ({want}) does not match the UID in record. The object might have been deleted and then recreated"
                ),
            ));
        }
        k8s[kind.to_lowercase()] = json!({"name": obj_name, "uid": uid});
    }
    let iat = now();
    let exp = iat + expiration;
    let claims = json!({
        "aud": audiences, "exp": exp, "iat": iat, "iss": ISSUER,
        "jti": uuid::Uuid::new_v4().to_string(), "kubernetes.io": k8s, "nbf": iat,
        "sub": format!("system:serviceaccount:{ns}:{name}"),
    });
    let mut out_spec = json!({"audiences": audiences, "expirationSeconds": expiration,
                              "boundObjectRef": Value::Null});
    if let Some(b) = bound {
        out_spec["boundObjectRef"] = b.clone();
    }
    Ok(json!({
        "kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": Value::Null},
        "spec": out_spec,
        "status": {"token": sign(&cluster.name, &claims), "expirationTimestamp": timestamp(exp)},
    }))
}

/// Who a ServiceAccount token of this cluster authenticates as, for the audiences `wanted`:
/// `Ok((claims, audiences))`, or why not (the validator's messages).
fn check(
    cluster: &Cluster,
    token: &str,
    wanted: &[String],
) -> Result<(Value, Vec<String>), String> {
    let claims = verified_claims(&cluster.name, token).ok_or("invalid bearer token")?;
    if claims["iss"] != ISSUER {
        return Err("invalid bearer token".into());
    }
    let t = now();
    if claims["exp"].as_i64().is_none_or(|e| t > e + LEEWAY) {
        return Err("service account token has expired".into());
    }
    if claims["nbf"].as_i64().is_some_and(|n| t + LEEWAY < n) {
        return Err("service account token is not valid yet".into());
    }
    let token_auds = strings(claims.get("aud"));
    let auds: Vec<String> = token_auds
        .iter()
        .filter(|a| wanted.contains(a))
        .cloned()
        .collect();
    if auds.is_empty() {
        return Err(format!(
            "token audiences {token_auds:?} is invalid for the target audiences {wanted:?}"
        ));
    }
    let k8s = &claims["kubernetes.io"];
    let ns = k8s["namespace"].as_str().unwrap_or_default();
    let lookup = |plural: &str, name: &str| {
        cluster
            .store
            .lookup("", "v1", plural)
            .and_then(|rt| cluster.store.get_value(&rt, ns, name).ok())
    };
    let sa_name = k8s["serviceaccount"]["name"].as_str().unwrap_or_default();
    let sa_uid = k8s["serviceaccount"]["uid"].as_str().unwrap_or_default();
    let sa = lookup("serviceaccounts", sa_name)
        .ok_or_else(|| format!("serviceaccounts \"{sa_name}\" not found"))?;
    if uid_of(&sa) != sa_uid {
        return Err(format!(
            "service account UID ({}) does not match claim ({sa_uid})",
            uid_of(&sa)
        ));
    }
    if sa.pointer("/metadata/deletionTimestamp").is_some() {
        return Err(format!("service account {ns}/{sa_name} has been deleted"));
    }
    for (kind, plural) in [("pod", "pods"), ("secret", "secrets")] {
        if let Some(r) = k8s.get(kind).filter(|r| r.is_object()) {
            let name = r["name"].as_str().unwrap_or_default();
            match lookup(plural, name) {
                Some(o)
                    if uid_of(&o) == r["uid"].as_str().unwrap_or_default()
                        && o.pointer("/metadata/deletionTimestamp").is_none() => {}
                _ => return Err("service account token has been invalidated".into()),
            }
        }
    }
    Ok((claims, auds))
}

/// The user a ServiceAccount token of this cluster stands for on ordinary requests (the API
/// server's own audiences).
pub fn user_for(cluster: &Cluster, token: &str) -> Option<String> {
    if token.matches('.').count() != 2 {
        return None;
    }
    let api: Vec<String> = API_AUDIENCES.iter().map(|a| a.to_string()).collect();
    check(cluster, token, &api)
        .ok()
        .and_then(|(c, _)| c["sub"].as_str().map(str::to_string))
}

/// `POST /apis/authentication.k8s.io/v1/tokenreviews`: whether `spec.token` authenticates
/// (for `spec.audiences`, default the API server's), and as whom. The spec is echoed.
pub fn review(cluster: &Cluster, rt: &ResourceType, mut body: Value) -> ApiResult<Value> {
    if !body.is_object() {
        return Err(ApiError::bad_request(format!(
            "{} in version {:?} cannot be handled: the body is not an object",
            rt.kind, rt.version
        )));
    }
    let token = body
        .pointer("/spec/token")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if token.is_empty() {
        return Err(ApiError::bad_request(
            "token is required for TokenReview in authentication",
        ));
    }
    let requested = strings(body.pointer("/spec/audiences"));
    let wanted: Vec<String> = if requested.is_empty() {
        API_AUDIENCES.iter().map(|a| a.to_string()).collect()
    } else {
        requested
    };
    body["apiVersion"] = json!(rt.api_version());
    body["kind"] = json!(rt.kind);
    if body.get("metadata").is_none_or(Value::is_null) {
        body["metadata"] = json!({});
    }
    body["metadata"]["creationTimestamp"] = Value::Null;
    // Static tokens (the cluster's and those added with `add_token`) are audience-agnostic.
    let static_user = if token == cluster.token {
        Some((
            "admin".to_string(),
            vec!["system:masters", "system:authenticated"],
        ))
    } else {
        cluster
            .static_user(&token)
            .map(|u| (u, vec!["system:authenticated"]))
    };
    body["status"] = if let Some((user, groups)) = static_user {
        json!({"authenticated": true, "user": {"username": user, "groups": groups},
               "audiences": wanted})
    } else if token.matches('.').count() != 2 {
        json!({"authenticated": false, "user": {}, "error": "[invalid bearer token]"})
    } else {
        match check(cluster, &token, &wanted) {
            Ok((claims, auds)) => {
                let k8s = &claims["kubernetes.io"];
                let ns = k8s["namespace"].as_str().unwrap_or_default();
                let mut extra = json!({
                    "authentication.kubernetes.io/credential-id": [format!("JTI={}", claims["jti"].as_str().unwrap_or_default())],
                });
                if let Some(p) = k8s.get("pod").filter(|p| p.is_object()) {
                    extra["authentication.kubernetes.io/pod-name"] = json!([p["name"]]);
                    extra["authentication.kubernetes.io/pod-uid"] = json!([p["uid"]]);
                }
                json!({"authenticated": true, "audiences": auds, "user": {
                    "username": claims["sub"],
                    "uid": k8s["serviceaccount"]["uid"],
                    "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{ns}"), "system:authenticated"],
                    "extra": extra,
                }})
            }
            Err(why) => json!({"authenticated": false, "user": {},
                               "error": format!("[invalid bearer token, {why}]")}),
        }
    };
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_per_cluster_and_tamper_evident() {
        let claims = json!({"iss": ISSUER, "sub": "system:serviceaccount:a:b"});
        let t = sign("one", &claims);
        assert_eq!(verified_claims("one", &t), Some(claims.clone()));
        assert_eq!(verified_claims("two", &t), None, "another cluster's token");
        let mut parts: Vec<&str> = t.split('.').collect();
        let forged = B64.encode(json!({"iss": ISSUER, "sub": "system:admin"}).to_string());
        parts[1] = &forged;
        assert_eq!(verified_claims("one", &parts.join(".")), None);
        assert_eq!(verified_claims("one", "a.b"), None);
    }
}

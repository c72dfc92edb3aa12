//! AWS Signature Version 4, the two forms Flotilla needs: header-signed requests (STS
//! `AssumeRole`) and query-string presigned URLs (the EKS token's `GetCallerIdentity` URL).

use std::fmt;

use hmac::{Hmac, Mac};
use jiff::Timestamp;
use sha2::{Digest, Sha256};

/// SHA-256 of the empty payload (hex), the payload hash of a presigned GET outside S3.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// AWS credentials. `Debug` never shows the secret key or the session token.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"***")
            .field("session_token", &self.session_token.as_ref().map(|_| "***"))
            .finish()
    }
}

/// What every signature is scoped to.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub service: &'a str,
    pub region: &'a str,
    pub time: Timestamp,
}

impl Scope<'_> {
    /// `20150830T123600Z`
    pub fn amz_date(&self) -> String {
        self.time.strftime("%Y%m%dT%H%M%SZ").to_string()
    }

    /// `20150830/us-east-1/sts/aws4_request`
    pub fn credential_scope(&self) -> String {
        format!(
            "{}/{}/{}/aws4_request",
            self.time.strftime("%Y%m%d"),
            self.region,
            self.service
        )
    }
}

/// Percent-encoding as SigV4 wants it: everything but `A-Z a-z 0-9 - _ . ~` (and `/` when
/// `keep_slash`), upper-case hex. Also a valid `application/x-www-form-urlencoded` encoding.
pub fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `k=v&…` of `params`, each part encoded, sorted by key then value (the canonical query).
pub fn canonical_query(params: &[(String, String)]) -> String {
    let mut enc: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (uri_encode(k, false), uri_encode(v, false)))
        .collect();
    enc.sort();
    enc.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length: the error case cannot happen.
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// The signature of `canonical_request` under `secret` in `scope` (hex).
fn signature(secret: &str, scope: &Scope<'_>, canonical_request: &str) -> String {
    let string_to_sign = format!(
        "{ALGORITHM}\n{}\n{}\n{}",
        scope.amz_date(),
        scope.credential_scope(),
        sha256_hex(canonical_request.as_bytes())
    );
    let date = scope.time.strftime("%Y%m%d").to_string();
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, scope.region.as_bytes());
    let k_service = hmac(&k_region, scope.service.as_bytes());
    let k_signing = hmac(&k_service, b"aws4_request");
    hex::encode(hmac(&k_signing, string_to_sign.as_bytes()))
}

/// Lower-cased, trimmed, sorted headers: (canonical header block, signed header list).
fn canonical_headers(headers: &[(String, String)]) -> (String, String) {
    let mut hs: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| {
            (
                k.to_ascii_lowercase(),
                v.split_whitespace().collect::<Vec<_>>().join(" "),
            )
        })
        .collect();
    hs.sort();
    let block = hs.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed = hs
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    (block, signed)
}

/// One request to sign.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The absolute path (`/`), not yet encoded.
    pub path: &'a str,
    /// Query parameters, not yet encoded.
    pub query: Vec<(String, String)>,
    /// Headers to sign, `host` included (its value as the `Host` header carries it).
    pub headers: Vec<(String, String)>,
    /// Hex SHA-256 of the body, or `UNSIGNED-PAYLOAD`.
    pub payload_hash: &'a str,
}

fn canonical_request(req: &Request<'_>, query: &str, headers: &str, signed: &str) -> String {
    format!(
        "{}\n{}\n{query}\n{headers}\n{signed}\n{}",
        req.method,
        uri_encode(req.path, true),
        req.payload_hash
    )
}

/// Query-string signing: the canonical query (`X-Amz-*` parameters added, the signature
/// last) to append after `?`. `expires` is `X-Amz-Expires` in seconds.
pub fn presign(req: &Request<'_>, creds: &Credentials, scope: &Scope<'_>, expires: u64) -> String {
    let (headers, signed) = canonical_headers(&req.headers);
    let mut query = req.query.clone();
    query.extend([
        ("X-Amz-Algorithm".to_string(), ALGORITHM.to_string()),
        (
            "X-Amz-Credential".to_string(),
            format!("{}/{}", creds.access_key_id, scope.credential_scope()),
        ),
        ("X-Amz-Date".to_string(), scope.amz_date()),
        ("X-Amz-Expires".to_string(), expires.to_string()),
        ("X-Amz-SignedHeaders".to_string(), signed.clone()),
    ]);
    if let Some(token) = &creds.session_token {
        query.push(("X-Amz-Security-Token".to_string(), token.clone()));
    }
    let query = canonical_query(&query);
    let creq = canonical_request(req, &query, &headers, &signed);
    let sig = signature(&creds.secret_access_key, scope, &creq);
    format!("{query}&X-Amz-Signature={sig}")
}

/// Header signing: the headers to add to `req` (`x-amz-date`, `x-amz-security-token` when
/// the credentials have one, and `authorization`), which are signed along with `req.headers`.
pub fn sign_headers(
    req: &Request<'_>,
    creds: &Credentials,
    scope: &Scope<'_>,
) -> Vec<(String, String)> {
    let mut added = vec![("x-amz-date".to_string(), scope.amz_date())];
    if let Some(token) = &creds.session_token {
        added.push(("x-amz-security-token".to_string(), token.clone()));
    }
    let mut all = req.headers.clone();
    all.extend(added.iter().cloned());
    let (headers, signed) = canonical_headers(&all);
    let creq = canonical_request(req, &canonical_query(&req.query), &headers, &signed);
    let sig = signature(&creds.secret_access_key, scope, &creq);
    added.push((
        "authorization".to_string(),
        format!(
            "{ALGORITHM} Credential={}/{}, SignedHeaders={signed}, Signature={sig}",
            creds.access_key_id,
            scope.credential_scope()
        ),
    ));
    added
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().expect("test timestamp")
    }

    /// AWS's documented presigned URL example (S3 `GET /test.txt`, "Authenticating Requests:
    /// Using Query Parameters").
    #[test]
    fn presign_matches_the_aws_documented_example() {
        let creds = Credentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        };
        let req = Request {
            method: "GET",
            path: "/test.txt",
            query: Vec::new(),
            headers: vec![("Host".into(), "examplebucket.s3.amazonaws.com".into())],
            payload_hash: "UNSIGNED-PAYLOAD",
        };
        let scope = Scope {
            service: "s3",
            region: "us-east-1",
            time: at("2013-05-24T00:00:00Z"),
        };
        let q = presign(&req, &creds, &scope, 86400);
        assert_eq!(
            q,
            "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
        );
    }

    /// The SigV4 test suite's `get-vanilla` case (header signing).
    #[test]
    fn header_signing_matches_the_sigv4_test_suite() {
        let creds = Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        };
        let req = Request {
            method: "GET",
            path: "/",
            query: Vec::new(),
            headers: vec![("Host".into(), "example.amazonaws.com".into())],
            payload_hash: EMPTY_SHA256,
        };
        let scope = Scope {
            service: "service",
            region: "us-east-1",
            time: at("2015-08-30T12:36:00Z"),
        };
        let added = sign_headers(&req, &creds, &scope);
        let auth = added
            .iter()
            .find(|(k, _)| k == "authorization")
            .map(|(_, v)| v.as_str());
        assert_eq!(
            auth,
            Some(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
            )
        );
    }

    #[test]
    fn encoding_and_canonical_query() {
        assert_eq!(uri_encode("a b/c~d+e=", false), "a%20b%2Fc~d%2Be%3D");
        assert_eq!(uri_encode("/x y/", true), "/x%20y/");
        let q = canonical_query(&[
            ("b".into(), "2".into()),
            ("a".into(), "z".into()),
            ("a".into(), "y".into()),
        ]);
        assert_eq!(q, "a=y&a=z&b=2");
    }

    #[test]
    fn debug_hides_secrets() {
        let c = Credentials {
            access_key_id: "AKID".into(),
            secret_access_key: "very-secret".into(),
            session_token: Some("session-secret".into()),
        };
        let shown = format!("{c:?}");
        assert!(shown.contains("AKID"));
        assert!(!shown.contains("very-secret") && !shown.contains("session-secret"));
    }
}

//! How the API server and the controllers prove themselves to each other on the controllers'
//! status routes without ever sending their shared secret: each request is signed for one
//! method, path, body, time and *destination address*, and each answer is signed back.
//!
//! The server finds controllers through Lease annotations that anything able to write Leases
//! can forge. With signatures, a forged address receives only a request it can neither reuse
//! elsewhere (bound to that address, valid for [`MAX_SKEW_SECS`]) nor answer convincingly (the
//! server drops answers without a valid response signature).

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Header carrying the request time (Unix seconds).
pub const TIME_HEADER: &str = "x-flotilla-time";
/// Header carrying the request signature (hex).
pub const SIGNATURE_HEADER: &str = "x-flotilla-signature";
/// Header carrying the response signature (hex).
pub const RESPONSE_SIGNATURE_HEADER: &str = "x-flotilla-response-signature";
/// How far a request's time may be from the receiver's clock.
pub const MAX_SKEW_SECS: i64 = 60;

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &str, parts: &[&[u8]]) -> Vec<u8> {
    // HMAC takes keys of any length.
    let mut m = match HmacSha256::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => return Vec::new(),
    };
    for p in parts {
        m.update(&(p.len() as u64).to_be_bytes());
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

/// The signature of a request to `address` (`host:port`, as published on the Lease).
pub fn sign_request(
    secret: &str,
    time: i64,
    method: &str,
    address: &str,
    path: &str,
    body: &[u8],
) -> String {
    let digest = Sha256::digest(body);
    hex::encode(mac(
        secret,
        &[
            b"flotilla-status-request-v1",
            time.to_string().as_bytes(),
            method.as_bytes(),
            address.as_bytes(),
            path.as_bytes(),
            &digest,
        ],
    ))
}

/// The signature of an answer to the request signed `request_signature`.
pub fn sign_response(secret: &str, request_signature: &str, status: u16, body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    hex::encode(mac(
        secret,
        &[
            b"flotilla-status-response-v1",
            request_signature.as_bytes(),
            status.to_string().as_bytes(),
            &digest,
        ],
    ))
}

/// Constant-time equality of two signatures.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Why a signed request is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("no signature")]
    Missing,
    #[error("the request time is more than {MAX_SKEW_SECS} s off")]
    Stale,
    #[error("the signature does not match")]
    Invalid,
}

/// Check a request this replica (reachable at `address`) received at `now`.
#[allow(clippy::too_many_arguments)]
pub fn verify_request(
    secret: &str,
    now: i64,
    time: Option<&str>,
    signature: Option<&str>,
    method: &str,
    address: &str,
    path: &str,
    body: &[u8],
) -> Result<(), SignatureError> {
    let (Some(time), Some(signature)) = (time, signature) else {
        return Err(SignatureError::Missing);
    };
    let t: i64 = time.parse().map_err(|_| SignatureError::Invalid)?;
    if (now - t).abs() > MAX_SKEW_SECS {
        return Err(SignatureError::Stale);
    }
    let want = sign_request(secret, t, method, address, path, body);
    if same(&want, signature) {
        Ok(())
    } else {
        Err(SignatureError::Invalid)
    }
}

/// Now, in Unix seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_bound_to_its_secret_time_address_path_and_body() {
        let sig = sign_request(
            "s3cret",
            1000,
            "GET",
            "10.0.0.1:8082",
            "/status/replica",
            b"",
        );
        let ok = |secret, now, addr, path, body: &[u8]| {
            verify_request(
                secret,
                now,
                Some("1000"),
                Some(&sig),
                "GET",
                addr,
                path,
                body,
            )
        };
        assert_eq!(
            ok("s3cret", 1010, "10.0.0.1:8082", "/status/replica", b""),
            Ok(())
        );
        assert_eq!(
            ok("other", 1010, "10.0.0.1:8082", "/status/replica", b""),
            Err(SignatureError::Invalid)
        );
        // Replayed at another replica (a forged Lease's address got it first): refused.
        assert_eq!(
            ok("s3cret", 1010, "10.0.0.2:8082", "/status/replica", b""),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            ok(
                "s3cret",
                1010,
                "10.0.0.1:8082",
                "/status/applications/a/b/resources",
                b""
            ),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            ok("s3cret", 1010, "10.0.0.1:8082", "/status/replica", b"x"),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            ok(
                "s3cret",
                1000 + MAX_SKEW_SECS + 1,
                "10.0.0.1:8082",
                "/status/replica",
                b""
            ),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify_request("s3cret", 1000, None, Some(&sig), "GET", "a", "/", b""),
            Err(SignatureError::Missing)
        );
        let r = sign_response("s3cret", &sig, 200, b"{}");
        assert!(same(&r, &sign_response("s3cret", &sig, 200, b"{}")));
        assert!(!same(&r, &sign_response("s3cret", &sig, 200, b"{\"x\":1}")));
        assert!(!same(&r, &sign_response("other", &sig, 200, b"{}")));
    }
}

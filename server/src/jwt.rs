//! JSON Web Tokens through `jsonwebtoken`, with its cryptography done by `ring` (the one crypto
//! library already in the tree, as rustls uses it): HMAC-SHA2 signatures (project tokens) and
//! the verification of RSA PKCS#1 / PSS, ECDSA P-256 / P-384 and Ed25519 signatures (ID tokens
//! of identity providers). Asymmetric signing is not needed by the server and is refused.

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{Error, ErrorKind};
use jsonwebtoken::jwk::{EllipticCurve, ThumbprintHash};
use jsonwebtoken::signature::{self, Signer, Verifier};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::{hmac, signature as sig};

/// Make the `ring` provider the process's `jsonwebtoken` provider (idempotent).
pub fn install() {
    let _ = PROVIDER.install_default();
}

struct HmacSigner(hmac::Key, Algorithm);

impl Signer<Vec<u8>> for HmacSigner {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        Ok(hmac::sign(&self.0, msg).as_ref().to_vec())
    }
}

impl JwtSigner for HmacSigner {
    fn algorithm(&self) -> Algorithm {
        self.1
    }
}

struct HmacVerifier(hmac::Key, Algorithm);

impl Verifier<Vec<u8>> for HmacVerifier {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> Result<(), signature::Error> {
        hmac::verify(&self.0, msg, signature).map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for HmacVerifier {
    fn algorithm(&self) -> Algorithm {
        self.1
    }
}

/// An asymmetric verifier: the public key (DER/SEC1/raw bytes, or RSA components) and the
/// ring algorithm for the JWT algorithm.
struct PublicVerifier {
    key: DecodingKey,
    alg: Algorithm,
}

fn rsa_params(alg: Algorithm) -> Option<&'static sig::RsaParameters> {
    Some(match alg {
        Algorithm::RS256 => &sig::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &sig::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &sig::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &sig::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &sig::RSA_PSS_2048_8192_SHA512,
        _ => return None,
    })
}

impl Verifier<Vec<u8>> for PublicVerifier {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> Result<(), signature::Error> {
        let bad = |_| signature::Error::new();
        if let Some(params) = rsa_params(self.alg) {
            return match self.key.kind() {
                DecodingKeyKind::RsaModulusExponent { n, e } => {
                    sig::RsaPublicKeyComponents { n, e }
                        .verify(params, msg, signature)
                        .map_err(bad)
                }
                DecodingKeyKind::SecretOrDer(der) => sig::UnparsedPublicKey::new(params, der)
                    .verify(msg, signature)
                    .map_err(bad),
            };
        }
        let alg: &'static dyn sig::VerificationAlgorithm = match self.alg {
            Algorithm::ES256 => &sig::ECDSA_P256_SHA256_FIXED,
            Algorithm::ES384 => &sig::ECDSA_P384_SHA384_FIXED,
            Algorithm::EdDSA => &sig::ED25519,
            _ => return Err(signature::Error::new()),
        };
        let bytes = self
            .key
            .try_get_as_bytes()
            .map_err(|_| signature::Error::new())?;
        sig::UnparsedPublicKey::new(alg, bytes)
            .verify(msg, signature)
            .map_err(bad)
    }
}

impl JwtVerifier for PublicVerifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

fn hmac_alg(alg: Algorithm) -> Option<hmac::Algorithm> {
    match alg {
        Algorithm::HS256 => Some(hmac::HMAC_SHA256),
        Algorithm::HS384 => Some(hmac::HMAC_SHA384),
        Algorithm::HS512 => Some(hmac::HMAC_SHA512),
        _ => None,
    }
}

fn new_signer(alg: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>, Error> {
    match hmac_alg(*alg) {
        Some(h) if key.family() == AlgorithmFamily::Hmac => Ok(Box::new(HmacSigner(
            hmac::Key::new(h, key.as_bytes()),
            *alg,
        ))),
        Some(_) => Err(ErrorKind::InvalidKeyFormat.into()),
        None => Err(ErrorKind::UnsupportedAlgorithm.into()),
    }
}

fn new_verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>, Error> {
    // The key's family must be the algorithm's: an RSA or EC public key is never an HMAC
    // secret (the classic HS256-with-the-public-key confusion), nor the other way round.
    if key.family() != alg.family() {
        return Err(ErrorKind::InvalidKeyFormat.into());
    }
    if let Some(h) = hmac_alg(*alg) {
        let secret = key.try_get_as_bytes()?;
        return Ok(Box::new(HmacVerifier(hmac::Key::new(h, secret), *alg)));
    }
    Ok(Box::new(PublicVerifier {
        key: key.clone(),
        alg: *alg,
    }))
}

fn unsupported_components(_: &[u8]) -> Result<(Vec<u8>, Vec<u8>), Error> {
    Err(ErrorKind::UnsupportedAlgorithm.into())
}

fn unsupported_ec(_: &[u8], _: Algorithm) -> Result<(EllipticCurve, Vec<u8>, Vec<u8>), Error> {
    Err(ErrorKind::UnsupportedAlgorithm.into())
}

fn unsupported_ed(_: &[u8], _: &EllipticCurve) -> Result<Vec<u8>, Error> {
    Err(ErrorKind::UnsupportedAlgorithm.into())
}

fn digest(data: &[u8], hash: ThumbprintHash) -> Result<Vec<u8>, Error> {
    let alg = match hash {
        ThumbprintHash::SHA256 => &ring::digest::SHA256,
        ThumbprintHash::SHA384 => &ring::digest::SHA384,
        ThumbprintHash::SHA512 => &ring::digest::SHA512,
        _ => return Err(ErrorKind::UnsupportedAlgorithm.into()),
    };
    Ok(ring::digest::digest(alg, data).as_ref().to_vec())
}

static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: new_signer,
    verifier_factory: new_verifier,
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key: unsupported_components,
        rsa_pub_components_from_public_key: unsupported_components,
        ec_pub_components_from_private_key: unsupported_ec,
        ed_pub_components_from_private_key: unsupported_ed,
        compute_digest: digest,
    },
};

/// Base64url without padding (the JWT alphabet).
pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Decode base64url (padding tolerated).
pub fn b64_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .ok()
}

/// The claims of a compact JWT, *unverified*: only to route a token to the verifier that
/// owns it (never to trust anything in it).
pub fn peek_claims(token: &str) -> Option<serde_json::Value> {
    let mut parts = token.split('.');
    let (_, payload, _) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    serde_json::from_slice(&b64_decode(payload)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{Header, Validation, decode, encode};
    use serde_json::{Value, json};

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    /// Sign `claims` with ES256 by hand (ring), as an identity provider would.
    fn es256(pkcs8: &[u8], kid: &str, claims: &Value) -> String {
        let rng = ring::rand::SystemRandom::new();
        let key = sig::EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &rng)
            .expect("key");
        let h = b64(json!({"alg": "ES256", "kid": kid, "typ": "JWT"}).to_string());
        let p = b64(claims.to_string());
        let s = key.sign(&rng, format!("{h}.{p}").as_bytes()).expect("sign");
        format!("{h}.{p}.{}", b64(s.as_ref()))
    }

    fn ec_key() -> (Vec<u8>, DecodingKey) {
        use ring::signature::KeyPair;
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = sig::EcdsaKeyPair::generate_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("generate");
        let pair = sig::EcdsaKeyPair::from_pkcs8(
            &sig::ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8.as_ref(),
            &rng,
        )
        .expect("key");
        let public = pair.public_key().as_ref();
        let key = DecodingKey::from_ec_components(&b64(&public[1..33]), &b64(&public[33..]))
            .expect("components");
        (pkcs8.as_ref().to_vec(), key)
    }

    #[test]
    fn hmac_round_trip_and_tampering() {
        install();
        let claims = json!({"sub": "proj:a:b", "exp": now() + 60});
        let t = encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"k").expect("key"),
        )
        .expect("encode");
        let v = Validation::new(Algorithm::HS256);
        let ok = decode::<Value>(&t, &DecodingKey::from_secret(b"k").expect("key"), &v);
        assert_eq!(ok.expect("valid").claims["sub"], "proj:a:b");
        assert!(decode::<Value>(&t, &DecodingKey::from_secret(b"x").expect("key"), &v).is_err());
    }

    #[test]
    fn ecdsa_verifies_and_refuses_confusion() {
        install();
        let (pkcs8, public) = ec_key();
        let claims = json!({"sub": "alice", "exp": now() + 60});
        let t = es256(&pkcs8, "k1", &claims);
        let v = Validation::new(Algorithm::ES256);
        assert_eq!(
            decode::<Value>(&t, &public, &v).expect("valid").claims["sub"],
            "alice"
        );
        // Another key: refused.
        let (_, other) = ec_key();
        assert!(decode::<Value>(&t, &other, &v).is_err());
        // HS256 signed with the public key's bytes, verified against that public key: refused
        // whatever the validation allows.
        let bytes = public.try_get_as_bytes().expect("bytes").to_vec();
        let forged = encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&bytes).expect("key"),
        )
        .expect("encode");
        assert!(decode::<Value>(&forged, &public, &Validation::new(Algorithm::HS256)).is_err());
        assert!(decode::<Value>(&forged, &public, &v).is_err());
        // alg none: not even a header we accept.
        let none = format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64(claims.to_string()));
        assert!(decode::<Value>(&none, &public, &v).is_err());
        assert_eq!(peek_claims(&t).expect("claims")["sub"], "alice");
        assert!(peek_claims("a.b").is_none());
    }
}

//! JWKS parsing with the algorithms each key may verify pinned from the key
//! itself. Symmetric and weak keys refuse the whole set.

use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;
/// Largest JWKS document accepted, in bytes.
pub const MAX_JWKS_BYTES: usize = 512 * 1024;
/// More keys than any identity provider publishes (Keycloak: a handful): a
/// set with more is refused whole, the last good set stays.
pub const MAX_JWKS_KEYS: usize = 100;

/// A verification key and the only algorithms it may be used with.
pub struct VerifyKey {
    pub kid: Option<String>,
    pub key: DecodingKey,
    pub algorithms: Vec<Algorithm>,
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyKey")
            .field("kid", &self.kid)
            .field("algorithms", &self.algorithms)
            .finish()
    }
}

/// The signing keys of one issuer.
#[derive(Debug, Default)]
pub struct KeySet {
    pub keys: Vec<VerifyKey>,
}

impl KeySet {
    /// The key for a token header's `kid`; without a `kid`, only an unambiguous single key.
    pub fn find(&self, kid: Option<&str>) -> Option<&VerifyKey> {
        match kid {
            Some(k) => self.keys.iter().find(|v| v.kid.as_deref() == Some(k)),
            None if self.keys.len() == 1 => self.keys.first(),
            None => None,
        }
    }

    pub fn kids(&self) -> Vec<String> {
        self.keys.iter().filter_map(|k| k.kid.clone()).collect()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwksError {
    #[error("JWKS is not valid JSON with a \"keys\" array")]
    NotJson,
    #[error("JWKS is larger than {MAX_JWKS_BYTES} bytes")]
    TooLarge,
    #[error(
        "JWKS contains a symmetric (oct) key; a public key set must never carry shared secrets"
    )]
    SymmetricKey,
    #[error("JWKS key {0:?} is an RSA key shorter than {MIN_RSA_BITS} bits")]
    WeakRsaKey(String),
    #[error("JWKS key {0:?} cannot be used: {1}")]
    BadKey(String, String),
    #[error("JWKS has two keys with kid {0:?}")]
    DuplicateKid(String),
    #[error("JWKS has no usable signing key")]
    Empty,
    #[error("JWKS has more than {MAX_JWKS_KEYS} keys")]
    TooManyKeys,
}

fn b64url(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .ok()
}

fn rsa_algorithms(declared: Option<KeyAlgorithm>) -> Result<Vec<Algorithm>, String> {
    use Algorithm::*;
    match declared {
        None => Ok(vec![RS256, RS384, RS512, PS256, PS384, PS512]),
        Some(KeyAlgorithm::RS256) => Ok(vec![RS256]),
        Some(KeyAlgorithm::RS384) => Ok(vec![RS384]),
        Some(KeyAlgorithm::RS512) => Ok(vec![RS512]),
        Some(KeyAlgorithm::PS256) => Ok(vec![PS256]),
        Some(KeyAlgorithm::PS384) => Ok(vec![PS384]),
        Some(KeyAlgorithm::PS512) => Ok(vec![PS512]),
        Some(other) => Err(format!("RSA key declares alg {other:?}")),
    }
}

/// Parses a JWKS document. Encryption keys are skipped; anything dangerous refuses all.
pub fn parse_jwks(bytes: &[u8]) -> Result<KeySet, JwksError> {
    if bytes.len() > MAX_JWKS_BYTES {
        return Err(JwksError::TooLarge);
    }
    let doc: serde_json::Value = serde_json::from_slice(bytes).map_err(|_| JwksError::NotJson)?;
    let keys = doc
        .get("keys")
        .and_then(|k| k.as_array())
        .ok_or(JwksError::NotJson)?;
    if keys.len() > MAX_JWKS_KEYS {
        return Err(JwksError::TooManyKeys);
    }
    let mut out = Vec::new();
    for raw in keys {
        let kty = raw.get("kty").and_then(|v| v.as_str()).unwrap_or("");
        let kid_s = raw
            .get("kid")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string();
        if kty == "oct" {
            return Err(JwksError::SymmetricKey);
        }
        if raw.get("use").and_then(|v| v.as_str()) == Some("enc") {
            continue;
        }
        if !matches!(kty, "RSA" | "EC" | "OKP") {
            tracing::warn!(kid = %kid_s, kty, "skipping JWKS key of unsupported type");
            continue;
        }
        if raw.get("d").is_some() {
            // A private key in a public document: the IdP is misconfigured; do not trust it.
            return Err(JwksError::BadKey(
                kid_s,
                "contains private key material".into(),
            ));
        }
        let jwk: Jwk = serde_json::from_value(raw.clone())
            .map_err(|e| JwksError::BadKey(kid_s.clone(), e.to_string()))?;
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        let declared = jwk.common.key_algorithm;
        let algorithms = match &jwk.algorithm {
            AlgorithmParameters::RSA(p) => {
                let n =
                    b64url(&p.n).ok_or_else(|| JwksError::BadKey(kid_s.clone(), "bad n".into()))?;
                let lead = n.iter().take_while(|b| **b == 0).count();
                let bits =
                    (n.len() - lead) * 8 - n.get(lead).map_or(8, |b| b.leading_zeros() as usize);
                if bits < MIN_RSA_BITS {
                    return Err(JwksError::WeakRsaKey(kid_s));
                }
                rsa_algorithms(declared).map_err(|e| JwksError::BadKey(kid_s.clone(), e))?
            }
            AlgorithmParameters::EllipticCurve(p) => {
                let (alg, want) = match p.curve {
                    EllipticCurve::P256 => (Algorithm::ES256, KeyAlgorithm::ES256),
                    EllipticCurve::P384 => (Algorithm::ES384, KeyAlgorithm::ES384),
                    ref c => {
                        tracing::warn!(kid = %kid_s, curve = ?c, "skipping EC key on an unsupported curve");
                        continue;
                    }
                };
                // Each coordinate is exactly the curve's size.
                let size = if alg == Algorithm::ES256 { 32 } else { 48 };
                if [&p.x, &p.y]
                    .iter()
                    .any(|c| b64url(c).is_none_or(|b| b.len() != size))
                {
                    return Err(JwksError::BadKey(
                        kid_s,
                        "EC coordinates of the wrong size".into(),
                    ));
                }
                if declared.is_some_and(|d| d != want) {
                    return Err(JwksError::BadKey(
                        kid_s,
                        "alg does not match the curve".into(),
                    ));
                }
                vec![alg]
            }
            AlgorithmParameters::OctetKeyPair(p) => {
                if p.curve != EllipticCurve::Ed25519 {
                    tracing::warn!(kid = %kid_s, "skipping OKP key that is not Ed25519");
                    continue;
                }
                if b64url(&p.x).is_none_or(|b| b.len() != 32) {
                    return Err(JwksError::BadKey(
                        kid_s,
                        "an Ed25519 public key is 32 bytes".into(),
                    ));
                }
                if declared.is_some_and(|d| d != KeyAlgorithm::EdDSA) {
                    return Err(JwksError::BadKey(
                        kid_s,
                        "alg does not match Ed25519".into(),
                    ));
                }
                vec![Algorithm::EdDSA]
            }
            AlgorithmParameters::OctetKey(_) => return Err(JwksError::SymmetricKey),
            _ => continue,
        };
        let key = DecodingKey::from_jwk(&jwk)
            .map_err(|e| JwksError::BadKey(kid_s.clone(), e.to_string()))?;
        let kid = jwk.common.key_id.clone();
        if let Some(k) = &kid {
            if out.iter().any(|v: &VerifyKey| v.kid.as_deref() == Some(k)) {
                return Err(JwksError::DuplicateKid(k.clone()));
            }
        }
        out.push(VerifyKey {
            kid,
            key,
            algorithms,
        });
    }
    if out.is_empty() {
        return Err(JwksError::Empty);
    }
    Ok(KeySet { keys: out })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str = r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"ed"}"#;

    #[test]
    fn refuses_symmetric_and_private_and_weak() {
        let oct = format!(r#"{{"keys":[{ED},{{"kty":"oct","k":"c2VjcmV0","kid":"h"}}]}}"#);
        assert_eq!(
            parse_jwks(oct.as_bytes()).unwrap_err(),
            JwksError::SymmetricKey
        );
        let private = r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","d":"x","kid":"p"}]}"#;
        assert!(matches!(
            parse_jwks(private.as_bytes()),
            Err(JwksError::BadKey(..))
        ));
        // 1024-bit modulus
        let n = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([0xC5u8; 128]);
        let weak = format!(r#"{{"keys":[{{"kty":"RSA","n":"{n}","e":"AQAB","kid":"w"}}]}}"#);
        assert_eq!(
            parse_jwks(weak.as_bytes()).unwrap_err(),
            JwksError::WeakRsaKey("w".into())
        );
        assert_eq!(parse_jwks(b"{}").unwrap_err(), JwksError::NotJson);
        assert_eq!(parse_jwks(br#"{"keys":[]}"#).unwrap_err(), JwksError::Empty);
        let dup = format!(r#"{{"keys":[{ED},{ED}]}}"#);
        assert_eq!(
            parse_jwks(dup.as_bytes()).unwrap_err(),
            JwksError::DuplicateKid("ed".into())
        );
    }

    #[test]
    fn pins_algorithms_from_keys_and_skips_encryption_keys() {
        let n = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([0xC5u8; 256]);
        let doc = format!(
            r#"{{"keys":[{ED},{{"kty":"RSA","n":"{n}","e":"AQAB","kid":"r","alg":"RS256"}},{{"kty":"RSA","n":"{n}","e":"AQAB","kid":"enc","use":"enc","alg":"RSA-OAEP"}}]}}"#
        );
        let ks = parse_jwks(doc.as_bytes()).unwrap();
        assert_eq!(ks.keys.len(), 2);
        assert_eq!(
            ks.find(Some("ed")).unwrap().algorithms,
            vec![Algorithm::EdDSA]
        );
        assert_eq!(
            ks.find(Some("r")).unwrap().algorithms,
            vec![Algorithm::RS256]
        );
        assert!(ks.find(Some("enc")).is_none());
        assert!(ks.find(None).is_none(), "no kid with two keys is ambiguous");
    }

    #[test]
    fn junk_keys_and_too_many_keys_refuse_the_set() {
        let short = r#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"a","x":"AA"}]}"#;
        assert!(matches!(
            parse_jwks(short.as_bytes()),
            Err(JwksError::BadKey(..))
        ));
        let bad_ec = r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"e","x":"AA","y":"AA"}]}"#;
        assert!(matches!(
            parse_jwks(bad_ec.as_bytes()),
            Err(JwksError::BadKey(..))
        ));
        let one =
            r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#;
        let many = format!("{{\"keys\":[{}]}}", vec![one; MAX_JWKS_KEYS + 1].join(","));
        assert!(matches!(
            parse_jwks(many.as_bytes()),
            Err(JwksError::TooManyKeys)
        ));
    }
}

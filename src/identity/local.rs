//! The local issuer: a signing key of gatehouse's own (Ed25519 or P-256, PKCS#8
//! PEM) for `gatehouse token mint`, the quickstart, tests and service accounts.

use std::io::Write;
use std::path::Path;

use crate::crypto::Sha256;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
};
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use super::jwt::IssuerHandle;
use super::keys::{parse_jwks, KeySet};
use crate::config::LocalIssuerConfig;

/// Where the local issuer keeps roles in the tokens it mints (Keycloak's shape).
pub const LOCAL_ROLES_CLAIMS: &[&str] = &["realm_access.roles", "groups"];

/// The local signing key, ready to mint and to verify.
pub struct LocalSigner {
    pub issuer: String,
    pub audience: String,
    pub max_ttl_secs: i64,
    alg: Algorithm,
    kid: String,
    encoding: EncodingKey,
    public_jwk: Value,
}

impl std::fmt::Debug for LocalSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalSigner")
            .field("issuer", &self.issuer)
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish()
    }
}

fn pem_to_der(pem: &str) -> Result<Vec<u8>, String> {
    let body: String = pem
        .lines()
        .map(str::trim)
        .skip_while(|l| *l != "-----BEGIN PRIVATE KEY-----")
        .skip(1)
        .take_while(|l| *l != "-----END PRIVATE KEY-----")
        .collect();
    if body.is_empty() {
        return Err("not a PKCS#8 PEM private key (expected -----BEGIN PRIVATE KEY-----)".into());
    }
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|_| "PEM body is not base64".to_string())
}

fn der_to_pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN PRIVATE KEY-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END PRIVATE KEY-----\n");
    out
}

fn b64u(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// Creates a new Ed25519 key file, readable only by its owner; never overwrites.
pub fn create_key_file(path: &Path) -> Result<(), String> {
    let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
        .map_err(|_| "cannot generate an Ed25519 key".to_string())?;
    write_private_file(path, der_to_pem(doc.as_ref()).as_bytes())
}

/// Writes a new file readable only by its owner (0600), synced; fails rather
/// than overwrite one that exists.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

impl LocalSigner {
    /// Loads the configured key; creates the key file first when `create` and it is missing.
    pub fn load(cfg: &LocalIssuerConfig, create: bool) -> Result<Self, String> {
        let pem = match (&cfg.signing_key, &cfg.signing_key_file) {
            (Some(inline), _) => inline.expose().to_string(),
            (None, Some(path)) => {
                if create && !path.exists() {
                    create_key_file(path)?;
                    tracing::info!(path = %path.display(), "created a new local signing key");
                }
                std::fs::read_to_string(path).map_err(|e| {
                    format!(
                        "local_issuer.signing_key_file: cannot read {}: {e}; start `gatehouse serve` once to create it",
                        path.display()
                    )
                })?
            }
            (None, None) => return Err("local_issuer has no signing key".into()),
        };
        Self::from_pem(cfg, &pem)
    }

    pub fn from_pem(cfg: &LocalIssuerConfig, pem: &str) -> Result<Self, String> {
        let der = pem_to_der(pem).map_err(|e| format!("local_issuer.signing_key_file: {e}"))?;
        let (alg, public_jwk, encoding) = if let Ok(kp) = Ed25519KeyPair::from_pkcs8(&der) {
            let x = b64u(kp.public_key().as_ref());
            (
                Algorithm::EdDSA,
                json!({"kty": "OKP", "crv": "Ed25519", "x": x, "alg": "EdDSA", "use": "sig"}),
                EncodingKey::from_ed_pem(pem.as_bytes()).map_err(|e| e.to_string())?,
            )
        } else if let Ok(kp) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der) {
            let point = kp.public_key().as_ref();
            if point.len() != 65 || point[0] != 4 {
                return Err(
                    "local_issuer.signing_key_file: unexpected P-256 public key form".into(),
                );
            }
            (
                Algorithm::ES256,
                json!({"kty": "EC", "crv": "P-256", "x": b64u(&point[1..33]), "y": b64u(&point[33..]), "alg": "ES256", "use": "sig"}),
                EncodingKey::from_ec_pem(pem.as_bytes()).map_err(|e| e.to_string())?,
            )
        } else {
            return Err("local_issuer.signing_key_file: not an Ed25519 or P-256 PKCS#8 key".into());
        };
        let thumb = Sha256::digest(public_jwk.to_string().as_bytes());
        let kid = b64u(&thumb[..12]);
        let mut public_jwk = public_jwk;
        public_jwk["kid"] = Value::String(kid.clone());
        Ok(LocalSigner {
            issuer: cfg.issuer.clone(),
            audience: cfg.audience.clone(),
            max_ttl_secs: cfg.max_ttl.as_secs() as i64,
            alg,
            kid,
            encoding,
            public_jwk,
        })
    }

    /// The public key set, as served at `/.well-known/jwks.json`.
    pub fn jwks(&self) -> Value {
        json!({"keys": [self.public_jwk]})
    }

    pub fn key_set(&self) -> KeySet {
        parse_jwks(self.jwks().to_string().as_bytes()).expect("own public key is a valid JWKS")
    }

    /// An issuer handle that verifies this key's tokens.
    pub fn issuer_handle(&self) -> IssuerHandle {
        IssuerHandle::with_static_keys(
            &self.issuer,
            &self.audience,
            self.key_set(),
            LOCAL_ROLES_CLAIMS,
        )
    }

    /// Signs an access token shaped like Keycloak's.
    pub fn mint(&self, req: &MintRequest, now: i64) -> Result<String, String> {
        if req.sub.is_empty() {
            return Err("--sub must not be empty".into());
        }
        if req.ttl_secs <= 0 || req.ttl_secs > self.max_ttl_secs {
            return Err(format!(
                "--ttl must be between 1s and local_issuer.max_ttl ({}s)",
                self.max_ttl_secs
            ));
        }
        let mut jti = [0u8; 16];
        aws_lc_rs::rand::fill(&mut jti).map_err(|_| "no randomness".to_string())?;
        let mut claims = json!({
            "iss": self.issuer,
            "aud": self.audience,
            "sub": req.sub,
            "preferred_username": req.sub,
            "typ": "Bearer",
            "iat": now,
            "nbf": now,
            "exp": now + req.ttl_secs,
            "jti": b64u(&jti),
            "realm_access": {"roles": req.roles},
        });
        for (k, v) in [
            ("email", &req.email),
            ("name", &req.name),
            ("acr", &req.acr),
            ("sid", &req.sid),
        ] {
            if let Some(v) = v {
                claims[k] = Value::String(v.clone());
            }
        }
        if !req.amr.is_empty() {
            claims["amr"] = json!(req.amr);
        }
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        header.typ = Some("at+jwt".into());
        jsonwebtoken::encode(&header, &claims, &self.encoding).map_err(|e| e.to_string())
    }
}

/// What `gatehouse token mint` asks for.
#[derive(Debug, Clone, Default)]
pub struct MintRequest {
    pub sub: String,
    pub roles: Vec<String>,
    pub ttl_secs: i64,
    pub email: Option<String>,
    pub name: Option<String>,
    pub acr: Option<String>,
    pub amr: Vec<String>,
    pub sid: Option<String>,
}

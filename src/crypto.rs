//! SHA-256, HMAC-SHA256 and constant-time comparison from aws-lc-rs, the one
//! crypto library in the binary (jsonwebtoken and rustls use it too).

use aws_lc_rs::{constant_time, digest, hmac};

/// A reqwest client builder whose TLS runs on aws-lc-rs: the provider is
/// installed as the process default once (reqwest is built without one).
pub fn http_client() -> reqwest::ClientBuilder {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        // Err only if a default is already installed, which is what we want.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    });
    reqwest::Client::builder()
}

/// A TLS server configuration (rustls on aws-lc-rs, TLS 1.2 and 1.3,
/// HTTP/1.1) from a PEM certificate chain and a PEM private key; the error
/// names the file and what is wrong with it.
pub fn tls_server_config(
    cert_file: &std::path::Path,
    key_file: &std::path::Path,
) -> Result<rustls::ServerConfig, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .and_then(|i| i.collect::<Result<_, _>>())
        .map_err(|e| format!("{}: {e}", cert_file.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in it", cert_file.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| format!("{}: no PEM private key in it ({e})", key_file.display()))?;
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("{} and {}: {e}", cert_file.display(), key_file.display()))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Incremental SHA-256 with the shape the callers use.
#[derive(Clone)]
pub struct Sha256(digest::Context);

impl Sha256 {
    pub fn new() -> Self {
        Sha256(digest::Context::new(&digest::SHA256))
    }

    pub fn update(&mut self, bytes: impl AsRef<[u8]>) {
        self.0.update(bytes.as_ref());
    }

    pub fn finalize(self) -> [u8; 32] {
        to_array(self.0.finish().as_ref())
    }

    /// One-shot digest.
    pub fn digest(bytes: impl AsRef<[u8]>) -> [u8; 32] {
        to_array(digest::digest(&digest::SHA256, bytes.as_ref()).as_ref())
    }
}

impl Default for Sha256 {
    fn default() -> Self {
        Self::new()
    }
}

fn to_array(b: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(b);
    out
}

/// HMAC-SHA256 over `parts`, each length-prefixed (so no two part lists collide).
pub fn hmac_sha256_framed(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = hmac::Context::with_key(&hmac::Key::new(hmac::HMAC_SHA256, key));
    for p in parts {
        ctx.update(&(p.len() as u64).to_be_bytes());
        ctx.update(p);
    }
    to_array(ctx.sign().as_ref())
}

/// Compares two secrets without an early exit on the first difference.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    constant_time::verify_slices_are_equal(a, b).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_http_client_builds_its_tls_on_aws_lc() {
        // reqwest panics ("No provider set") at build() without a provider.
        crate::crypto::http_client().build().unwrap();
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    }

    #[test]
    fn known_answers() {
        // FIPS 180-2 "abc"; RFC 4231 test case 2 (unframed, for the primitive).
        let abc = Sha256::digest(b"abc");
        assert_eq!(
            abc[..4],
            [0xba, 0x78, 0x16, 0xbf],
            "SHA-256(abc) starts ba7816bf"
        );
        let mut h = Sha256::new();
        h.update(b"a");
        h.update(b"bc");
        assert_eq!(h.finalize(), abc);
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"Jefe");
        let tag = hmac::sign(&key, b"what do ya want for nothing?");
        assert_eq!(tag.as_ref()[..4], [0x5b, 0xdc, 0xc1, 0x46]);
        assert_ne!(
            hmac_sha256_framed(b"k", &[b"ab", b"c"]),
            hmac_sha256_framed(b"k", &[b"a", b"bc"])
        );
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}

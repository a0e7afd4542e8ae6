//! Authenticated encryption (AES-256-GCM) for what gatehouse hands to browsers
//! or keeps at rest that nobody else may read or alter: the pre-login cookie
//! (state, nonce, PKCE verifier, return URL) and stored refresh tokens. Each use
//! gets its own key, derived from the session secret with a label.

use std::path::Path;

use crate::crypto::Sha256;
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// Random bytes from the operating system's generator, base64url without padding.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut buf).expect("the system random generator failed");
    URL_SAFE_NO_PAD.encode(buf)
}

/// One sealing key; `label` separates uses so a sealed value of one kind can
/// never be opened as another.
pub struct Sealer {
    key: LessSafeKey,
    label: &'static str,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealer({})", self.label)
    }
}

impl Sealer {
    pub fn new(secret: &[u8], label: &'static str) -> Self {
        let mut h = Sha256::new();
        h.update(b"gatehouse seal v1\0");
        h.update(label.as_bytes());
        h.update(b"\0");
        h.update(secret);
        let key = UnboundKey::new(&AES_256_GCM, &h.finalize()).expect("32-byte key");
        Sealer {
            key: LessSafeKey::new(key),
            label,
        }
    }

    /// `base64url(nonce || ciphertext || tag)`.
    pub fn seal(&self, plaintext: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).expect("the system random generator failed");
        let mut buf = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(self.label.as_bytes()),
                &mut buf,
            )
            .expect("sealing cannot fail for in-memory buffers");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// The plaintext, or `None` for anything altered, truncated or sealed with
    /// another key or label.
    pub fn open(&self, sealed: &str) -> Option<Vec<u8>> {
        if sealed.len() > 16 * 1024 {
            return None;
        }
        let raw = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        if raw.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return None;
        }
        let (nonce, rest) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = rest.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(self.label.as_bytes()), &mut buf)
            .ok()?;
        Some(plain.to_vec())
    }
}

/// Reads the session secret from `path`, or creates it (32 random bytes, hex,
/// mode 0600) when the file does not exist yet.
pub fn load_or_create_secret(path: &Path) -> Result<Vec<u8>, String> {
    match std::fs::read(path) {
        Ok(raw) => secret_of(path, raw),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut raw = [0u8; 32];
            aws_lc_rs::rand::fill(&mut raw).map_err(|_| "no system randomness".to_string())?;
            let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
            super::local::write_private_file(path, format!("{hex}\n").as_bytes())?;
            tracing::info!(path = %path.display(), "created a new secret file");
            Ok(hex.into_bytes())
        }
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Reads a secret file that must exist (text or raw bytes, at least 32 bytes).
pub fn read_secret(path: &Path) -> Result<Vec<u8>, String> {
    let raw = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    secret_of(path, raw)
}

fn secret_of(path: &Path, raw: Vec<u8>) -> Result<Vec<u8>, String> {
    // Text (a trailing newline is not part of it) or raw bytes.
    let key: &[u8] = match std::str::from_utf8(&raw) {
        Ok(s) => s.trim_end_matches(['\r', '\n']).as_bytes(),
        Err(_) => &raw,
    };
    if key.len() < 32 {
        return Err(format!(
            "{} holds fewer than 32 bytes; use a longer secret or delete the file to have one created",
            path.display()
        ));
    }
    Ok(key.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_files_hold_text_or_raw_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("text");
        std::fs::write(&text, "0123456789abcdef0123456789abcdef\n").unwrap();
        assert_eq!(
            load_or_create_secret(&text).unwrap(),
            b"0123456789abcdef0123456789abcdef"
        );
        let raw = dir.path().join("raw");
        let bytes: Vec<u8> = (0u8..32).map(|b| b.wrapping_mul(37) | 0x80).collect();
        std::fs::write(&raw, &bytes).unwrap();
        assert_eq!(
            load_or_create_secret(&raw).unwrap(),
            bytes,
            "not UTF-8: used as is"
        );
        std::fs::write(&raw, [0xffu8; 8]).unwrap();
        assert!(load_or_create_secret(&raw)
            .unwrap_err()
            .contains("fewer than 32 bytes"));
        let made = dir.path().join("made");
        let first = load_or_create_secret(&made).unwrap();
        assert_eq!(
            load_or_create_secret(&made).unwrap(),
            first,
            "created once, then kept"
        );
    }

    #[test]
    fn round_trip_and_tamper() {
        let s = Sealer::new(b"0123456789abcdef0123456789abcdef", "login");
        let sealed = s.seal(b"hello");
        assert_eq!(s.open(&sealed).as_deref(), Some(&b"hello"[..]));
        // another label or another secret cannot open it
        assert!(Sealer::new(b"0123456789abcdef0123456789abcdef", "refresh")
            .open(&sealed)
            .is_none());
        assert!(Sealer::new(b"another secret, also 32 chars...", "login")
            .open(&sealed)
            .is_none());
        // every single-character change is refused
        let bytes = sealed.as_bytes();
        for i in 0..bytes.len() {
            let mut t = bytes.to_vec();
            t[i] = if t[i] == b'A' { b'B' } else { b'A' };
            let t = String::from_utf8(t).unwrap();
            if t != sealed {
                assert!(s.open(&t).is_none(), "changed at {i}");
            }
        }
        assert!(s.open(&sealed[..sealed.len() - 2]).is_none());
        assert!(s.open("").is_none());
        assert!(s.open("!!!").is_none());
        // two seals of the same text differ (fresh nonce)
        assert_ne!(s.seal(b"x"), s.seal(b"x"));
    }

    #[test]
    fn secret_file_is_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("secret");
        let a = load_or_create_secret(&p).unwrap();
        let b = load_or_create_secret(&p).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&p, "short").unwrap();
        assert!(load_or_create_secret(&p).is_err());
    }
}

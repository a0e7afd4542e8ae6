//! A Sipeed NanoKVM's ATX power and reset buttons and its power LED, through
//! the device's own HTTP API, as its firmware defines it (sipeed/NanoKVM:
//! `server/router/auth.go`, `server/router/vm.go`, `server/service/vm/gpio.go`,
//! `server/middleware/jwt.go`, `server/proto/response.go`):
//!
//! - every answer is `{"code","msg","data"}` with HTTP 200, `code` 0 for
//!   success (a wrong password is `code` -2); a missing or stale session is
//!   HTTP 401;
//! - `POST /api/auth/login` `{"username","password"}` — the password as the
//!   web UI sends it: CryptoJS AES-256-CBC with the firmware's public
//!   passphrase (`Salted__` + salt + ciphertext, key and IV from OpenSSL's
//!   `EVP_BytesToKey` with MD5), base64, URL-encoded; firmware that takes the
//!   password in plain text is tried next. The session token comes back as
//!   the `nano-kvm-token` cookie (and in `data.token` on older firmware) and
//!   goes with every later request as that cookie;
//! - `GET /api/vm/gpio` → `data.pwr`: the power LED (`On`/`Off`);
//! - `POST /api/vm/gpio` `{"type":"power"|"reset","duration":ms}` holds the
//!   button that long; the device answers after the press.
//!
//! The obfuscation is the device's, not security (its key is public): TLS
//! with a verified certificate (`ca_file` for a private CA) is what protects
//! the password.

use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Value};

use super::redfish::{device_client, request_error, PowerError};
use crate::config::{PowerConfig, Secret};

/// The passphrase the NanoKVM web UI obfuscates passwords with (public).
const PASSPHRASE: &[u8] = b"nanokvm-sipeed-2024";
const COOKIE: &str = "nano-kvm-token";
/// How long the button is held: a press, and a hold that forces the machine off.
const SHORT_PRESS_MS: u64 = 800;
const LONG_PRESS_MS: u64 = 6000;

/// OpenSSL's `EVP_BytesToKey` with MD5, one round: a 32-byte key and a 16-byte IV.
fn evp_bytes_to_key(pass: &[u8], salt: &[u8; 8]) -> ([u8; 32], [u8; 16]) {
    use md5::{Digest, Md5};
    let mut out = Vec::with_capacity(48);
    let mut prev: Vec<u8> = Vec::new();
    while out.len() < 48 {
        let mut h = Md5::new();
        h.update(&prev);
        h.update(pass);
        h.update(salt);
        prev = h.finalize().to_vec();
        out.extend_from_slice(&prev);
    }
    let mut key = [0u8; 32];
    let mut iv = [0u8; 16];
    key.copy_from_slice(&out[..32]);
    iv.copy_from_slice(&out[32..48]);
    (key, iv)
}

/// The password as the NanoKVM web UI sends it (see the module docs).
pub fn obfuscate(password: &str, salt: [u8; 8]) -> Result<String, PowerError> {
    use aws_lc_rs::cipher::{
        EncryptionContext, PaddedBlockEncryptingKey, UnboundCipherKey, AES_256,
    };
    use base64::Engine;
    let (key, iv) = evp_bytes_to_key(PASSPHRASE, &salt);
    let bad = |_| PowerError("cannot obfuscate the password".into());
    let key =
        PaddedBlockEncryptingKey::cbc_pkcs7(UnboundCipherKey::new(&AES_256, &key).map_err(bad)?)
            .map_err(bad)?;
    let mut data = password.as_bytes().to_vec();
    key.less_safe_encrypt(&mut data, EncryptionContext::Iv128(iv.into()))
        .map_err(bad)?;
    let mut raw = b"Salted__".to_vec();
    raw.extend_from_slice(&salt);
    raw.extend_from_slice(&data);
    let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
    Ok(url::form_urlencoded::byte_serialize(b64.as_bytes()).collect())
}

pub struct NanoKvm {
    http: reqwest::Client,
    base: url::Url,
    username: String,
    password: Secret,
    timeout: Duration,
    token: Mutex<Option<String>>,
}

impl std::fmt::Debug for NanoKvm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NanoKvm")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

/// The `data` of a `{"code":0,...}` answer, or the device's own message.
fn envelope(what: &str, v: Value) -> Result<Value, PowerError> {
    match v["code"].as_i64() {
        Some(0) => Ok(v["data"].clone()),
        Some(code) => Err(PowerError(format!(
            "{what}: the NanoKVM answered code {code}: {}",
            v["msg"]
                .as_str()
                .unwrap_or("")
                .chars()
                .take(100)
                .collect::<String>()
        ))),
        None => Err(PowerError(format!("{what}: not a NanoKVM answer"))),
    }
}

enum Call {
    Get(&'static str),
    Post(&'static str, Value),
}

impl NanoKvm {
    pub fn new(cfg: &PowerConfig) -> Result<NanoKvm, PowerError> {
        Ok(NanoKvm {
            http: device_client(cfg)?,
            base: cfg.url.clone(),
            username: cfg.username.clone().unwrap_or_else(|| "admin".into()),
            password: cfg
                .password
                .clone()
                .ok_or_else(|| PowerError("no password configured".into()))?,
            timeout: cfg.timeout,
            token: Mutex::new(None),
        })
    }

    fn url(&self, path: &str) -> Result<url::Url, PowerError> {
        self.base
            .join(path)
            .map_err(|e| PowerError(format!("bad path {path}: {e}")))
    }

    async fn login(&self) -> Result<String, PowerError> {
        let mut salt = [0u8; 8];
        aws_lc_rs::rand::fill(&mut salt).map_err(|_| PowerError("no randomness".into()))?;
        // The web UI's obfuscated form first, then plain text (newer firmware).
        let forms = [
            obfuscate(self.password.expose(), salt)?,
            self.password.expose().to_string(),
        ];
        let mut last = None;
        for password in forms {
            let r = self
                .http
                .post(self.url("/api/auth/login")?)
                .json(&json!({"username": self.username, "password": password}))
                .send()
                .await
                .map_err(request_error)?;
            let cookie = r
                .headers()
                .get_all(reqwest::header::SET_COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .filter_map(|v| {
                    v.split(';')
                        .next()?
                        .trim()
                        .strip_prefix(COOKIE)?
                        .strip_prefix('=')
                })
                .map(str::to_string)
                .next();
            if !r.status().is_success() {
                return Err(PowerError(format!("login: HTTP {}", r.status().as_u16())));
            }
            let v: Value = r
                .json()
                .await
                .map_err(|_| PowerError("login: not JSON".into()))?;
            match envelope("login", v) {
                Ok(data) => {
                    let token = cookie
                        .or_else(|| data["token"].as_str().map(str::to_string))
                        .filter(|t| !t.is_empty())
                        .ok_or_else(|| {
                            PowerError("login: no session token in the answer".into())
                        })?;
                    *self.token.lock().unwrap_or_else(|e| e.into_inner()) = Some(token.clone());
                    return Ok(token);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| PowerError("login failed".into())))
    }

    /// One API call with the session cookie; a 401 logs in again, once.
    async fn call(&self, call: Call, extra: Duration) -> Result<Value, PowerError> {
        for attempt in 0..2 {
            let cached = self.token.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let token = match cached {
                Some(t) if attempt == 0 => t,
                _ => self.login().await?,
            };
            let (what, req) = match &call {
                Call::Get(p) => (*p, self.http.get(self.url(p)?)),
                Call::Post(p, body) => (*p, self.http.post(self.url(p)?).json(body)),
            };
            let r = req
                .header("Cookie", format!("{COOKIE}={token}"))
                .timeout(self.timeout + extra)
                .send()
                .await
                .map_err(request_error)?;
            if r.status() == reqwest::StatusCode::UNAUTHORIZED {
                *self.token.lock().unwrap_or_else(|e| e.into_inner()) = None;
                continue;
            }
            if !r.status().is_success() {
                return Err(PowerError(format!("{what}: HTTP {}", r.status().as_u16())));
            }
            let v: Value = r
                .json()
                .await
                .map_err(|_| PowerError(format!("{what}: not JSON")))?;
            return envelope(what, v);
        }
        Err(PowerError(
            "the NanoKVM refused the session after a fresh login".into(),
        ))
    }

    /// `On` or `Off`, from the power LED.
    pub async fn power_state(&self) -> Result<String, PowerError> {
        let data = self.call(Call::Get("/api/vm/gpio"), Duration::ZERO).await?;
        match data["pwr"].as_bool() {
            Some(true) => Ok("On".into()),
            Some(false) => Ok("Off".into()),
            None => Err(PowerError("/api/vm/gpio: no pwr in the answer".into())),
        }
    }

    async fn press(&self, button: &'static str, ms: u64) -> Result<(), PowerError> {
        self.call(
            Call::Post("/api/vm/gpio", json!({"type": button, "duration": ms})),
            Duration::from_millis(ms),
        )
        .await
        .map(|_| ())
    }

    /// A Redfish `ResetType` as button presses: `On` and `GracefulShutdown`
    /// press power (only when the LED says the machine is in the other state:
    /// a press toggles), `ForceOff` holds it, `ForceRestart` presses reset.
    pub async fn reset(&self, kind: &str) -> Result<(), PowerError> {
        match kind {
            "On" | "GracefulShutdown" => {
                let want_on = kind == "On";
                if (self.power_state().await? == "On") == want_on {
                    return Ok(());
                }
                self.press("power", SHORT_PRESS_MS).await
            }
            "ForceOff" => self.press("power", LONG_PRESS_MS).await,
            "ForceRestart" => self.press("reset", SHORT_PRESS_MS).await,
            other => Err(PowerError(format!("a NanoKVM cannot do {other}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A known answer: `printf admin | openssl enc -aes-256-cbc -md md5 -S
    /// 0102030405060708 -pass pass:nanokvm-sipeed-2024 -a` (OpenSSL leaves the
    /// `Salted__` header out when the salt is given; CryptoJS puts it in).
    #[test]
    fn obfuscation_matches_openssl() {
        use base64::Engine;
        let salt = [1, 2, 3, 4, 5, 6, 7, 8];
        let out = obfuscate("admin", salt).unwrap();
        let b64: String = url::form_urlencoded::parse(format!("x={out}").as_bytes())
            .next()
            .unwrap()
            .1
            .into_owned();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        assert_eq!(&raw[..8], b"Salted__");
        assert_eq!(raw[8..16], salt);
        let openssl = base64::engine::general_purpose::STANDARD
            .decode("OqpDa3FQkTKaK482DKBwZA==")
            .unwrap();
        assert_eq!(raw[16..], openssl[..]);
        assert!(out.contains("%3D"), "URL-encoded like the web UI: {out}");
    }
}

//! A DMTF Redfish BMC (iDRAC, iLO, OpenBMC, …): HTTP Basic authentication,
//! the ComputerSystem's `PowerState`, and its `#ComputerSystem.Reset` action
//! with a `ResetType` (`On`, `GracefulShutdown`, `ForceOff`, `ForceRestart`,
//! `GracefulRestart`). Paths follow the Redfish specification (DSP0266) and
//! schema (`ComputerSystem.v1`): the service root `/redfish/v1`, its `Systems`
//! collection, a system's `Actions."#ComputerSystem.Reset".target`.
//! TLS verification is always on; a private CA is added from `ca_file`.

use std::time::Duration;

use serde_json::{json, Value};

use crate::config::{PowerBackend, PowerConfig, Secret};

/// The power state a device reports (the contract's `On`/`Off`/`Unknown`;
/// Redfish's `PoweringOn`/`PoweringOff` are reported as they are).
pub type PowerState = String;

/// Why a request to the device failed; the message never carries the password.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct PowerError(pub String);

#[derive(Clone)]
pub struct Redfish {
    http: reqwest::Client,
    base: url::Url,
    system: Option<String>,
    username: Option<String>,
    password: Option<Secret>,
}

impl std::fmt::Debug for Redfish {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redfish")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

/// An HTTP client for a device: rustls on the one crypto provider, the
/// device's private CA if configured, no redirects, a time limit.
pub fn device_client(cfg: &PowerConfig) -> Result<reqwest::Client, PowerError> {
    let mut b = crate::crypto::http_client()
        // A hung device must not hold an action: every request has a limit.
        .timeout(cfg.timeout)
        .connect_timeout(cfg.timeout.min(Duration::from_secs(5)))
        .redirect(reqwest::redirect::Policy::none());
    if let Some(ca) = &cfg.ca_file {
        let pem =
            std::fs::read(ca).map_err(|e| PowerError(format!("ca_file {}: {e}", ca.display())))?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| PowerError(format!("ca_file {}: {e}", ca.display())))?
        {
            b = b.add_root_certificate(cert);
        }
    }
    b.build()
        .map_err(|e| PowerError(format!("TLS client: {e}")))
}

/// A request that failed, with its innermost cause (an unknown certificate
/// issuer, a refused connection); never the credentials.
pub(crate) fn request_error(e: reqwest::Error) -> PowerError {
    // reqwest's message names the URL but never the credentials we send in a header.
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let e = e.without_url();
    // The innermost cause says why (an unknown certificate issuer, a refused connection).
    let mut cause: &dyn std::error::Error = &e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let root = cause.to_string();
    if root == e.to_string() {
        PowerError(format!("{what}: {e}"))
    } else {
        PowerError(format!("{what}: {e}: {root}"))
    }
}

impl Redfish {
    pub fn new(cfg: &PowerConfig) -> Result<Redfish, PowerError> {
        let system = match &cfg.backend {
            PowerBackend::Redfish { system } => system.clone(),
            other => {
                return Err(PowerError(format!(
                    "not a redfish machine: {}",
                    other.as_str()
                )))
            }
        };
        Ok(Redfish {
            http: device_client(cfg)?,
            base: cfg.url.clone(),
            system,
            username: cfg.username.clone(),
            password: cfg.password.clone(),
        })
    }

    fn url(&self, path: &str) -> Result<url::Url, PowerError> {
        if !path.starts_with("/redfish/v1") {
            return Err(PowerError(format!(
                "the BMC named a path outside /redfish/v1: {path:?}"
            )));
        }
        self.base
            .join(path)
            .map_err(|e| PowerError(format!("bad path {path:?}: {e}")))
    }

    fn auth(&self, r: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match (&self.username, &self.password) {
            (Some(u), Some(p)) => r.basic_auth(u, Some(p.expose())),
            _ => r,
        }
    }

    async fn get(&self, path: &str) -> Result<Value, PowerError> {
        let r = self
            .auth(self.http.get(self.url(path)?))
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(request_error)?;
        let status = r.status();
        if !status.is_success() {
            return Err(PowerError(format!("GET {path}: HTTP {}", status.as_u16())));
        }
        r.json()
            .await
            .map_err(|e| PowerError(format!("GET {path}: not JSON: {}", e.without_url())))
    }

    /// The ComputerSystem's path: configured, else the only member of `Systems`.
    async fn system(&self) -> Result<String, PowerError> {
        if let Some(s) = &self.system {
            return Ok(s.clone());
        }
        let systems = self.get("/redfish/v1/Systems").await?;
        let members: Vec<&str> = systems["Members"]
            .as_array()
            .map(|m| m.iter().filter_map(|x| x["@odata.id"].as_str()).collect())
            .unwrap_or_default();
        match members.as_slice() {
            [one] => Ok(one.to_string()),
            [] => Err(PowerError("the BMC lists no systems".into())),
            many => Err(PowerError(format!(
                "the BMC lists {} systems; set system to one of {}",
                many.len(),
                many.join(", ")
            ))),
        }
    }

    /// `PowerState` of the system.
    pub async fn power_state(&self) -> Result<PowerState, PowerError> {
        let sys = self.get(&self.system().await?).await?;
        sys["PowerState"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| PowerError("the system has no PowerState".into()))
    }

    /// `#ComputerSystem.Reset` with this `ResetType`.
    pub async fn reset(&self, reset_type: &str) -> Result<(), PowerError> {
        let path = self.system().await?;
        let sys = self.get(&path).await?;
        let target = sys["Actions"]["#ComputerSystem.Reset"]["target"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("{path}/Actions/ComputerSystem.Reset"));
        if let Some(allowed) =
            sys["Actions"]["#ComputerSystem.Reset"]["ResetType@Redfish.AllowableValues"].as_array()
        {
            if !allowed.iter().any(|a| a == reset_type) {
                return Err(PowerError(format!(
                    "the BMC does not offer ResetType {reset_type} (it offers {})",
                    allowed
                        .iter()
                        .filter_map(|a| a.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        let r = self
            .auth(self.http.post(self.url(&target)?))
            .json(&json!({ "ResetType": reset_type }))
            .send()
            .await
            .map_err(request_error)?;
        let status = r.status();
        if status.is_success() {
            Ok(())
        } else {
            let body = r.text().await.unwrap_or_default();
            let msg = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
                .unwrap_or_default();
            Err(PowerError(format!(
                "Reset {reset_type}: HTTP {} {}",
                status.as_u16(),
                msg.chars().take(200).collect::<String>()
            )))
        }
    }
}

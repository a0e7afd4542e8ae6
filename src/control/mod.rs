//! The backends that touch the machine: commands run without a shell
//! ([`command`]) and systemd units through `systemctl` ([`systemd`]). They know
//! nothing of permissions or the audit log — `service::control` decides who may
//! call them and records every call.

pub mod command;
pub mod nanokvm;
pub mod redfish;
pub mod systemd;

use serde::Serialize;

/// A service's state as its backend reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceState {
    Running,
    Stopped,
    Failed,
    /// No status command, or it could not be asked (timeout, missing program).
    Unknown,
}

impl ServiceState {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceState::Running => "running",
            ServiceState::Stopped => "stopped",
            ServiceState::Failed => "failed",
            ServiceState::Unknown => "unknown",
        }
    }
}

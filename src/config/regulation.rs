//! `[regulation]`: bans after repeated refused credentials.

use std::time::Duration;

use serde::Deserialize;

use super::values::V;

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub(super) struct RawRegulation {
    enabled: Option<bool>,
    max_failures: Option<u32>,
    window: Option<String>,
    ban_time: Option<String>,
    ban_users: Option<bool>,
}

/// Brute-force regulation: `max_failures` refused credentials within `window`
/// from one client address (or, with `ban_users`, for one verified user) ban
/// it for `ban_time`.
#[derive(Debug, Clone)]
pub struct RegulationConfig {
    pub enabled: bool,
    pub max_failures: u32,
    pub window: Duration,
    pub ban_time: Duration,
    pub ban_users: bool,
}

impl RawRegulation {
    pub(super) fn validate(self, v: &mut V) -> RegulationConfig {
        let raw = self;
        let max_failures = raw.max_failures.unwrap_or(10);
        if max_failures == 0 {
            v.err(
                "regulation.max_failures",
                "must be at least 1; to switch regulation off set regulation.enabled = false",
            );
        }
        RegulationConfig {
            enabled: raw.enabled.unwrap_or(true),
            max_failures: max_failures.max(1),
            window: v.duration("regulation.window", raw.window.as_deref(), "2m"),
            ban_time: v.duration("regulation.ban_time", raw.ban_time.as_deref(), "15m"),
            ban_users: raw.ban_users.unwrap_or(true),
        }
    }
}

//! `[admin]`: who administers gatehouse — `roles` hold every permission, and
//! `[admin.permissions]` grants other roles the permissions listed for them.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::values::V;
use crate::permission::{Grants, Permission};

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub(super) struct RawAdmin {
    roles: Option<Vec<String>>,
    permissions: BTreeMap<String, Vec<String>>,
    live: RawLive,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct RawLive {
    stats_interval: Option<String>,
    ping_interval: Option<String>,
    idle_timeout: Option<String>,
    send_timeout: Option<String>,
    denials_per_second: Option<u32>,
}

/// `[admin.live]`: the admin event stream (`/api/v1/ws`).
#[derive(Debug, Clone)]
pub struct LiveConfig {
    /// `stats_update` comes this often without being asked.
    pub stats_interval: Duration,
    /// The server pings an idle socket this often ...
    pub ping_interval: Duration,
    /// ... and closes it when nothing (not even a pong) came for this long.
    pub idle_timeout: Duration,
    /// A socket whose one message cannot be written for this long is closed
    /// (the slowest consumer is dropped; the server never waits on it longer).
    pub send_timeout: Duration,
    /// Denial events at most this many per second, over all sockets (the
    /// rest are counted in the next one's `skipped`).
    pub denials_per_second: u32,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Roles that hold every permission.
    pub roles: Vec<String>,
    /// More roles, each with the permissions it grants.
    pub permissions: BTreeMap<String, Grants>,
    pub live: LiveConfig,
}

impl RawAdmin {
    pub(super) fn validate(self, v: &mut V) -> AdminConfig {
        let roles = self.roles.unwrap_or_else(|| vec!["admin".into()]);
        if roles.is_empty() {
            v.err(
                "admin.roles",
                "at least one role is needed, or nobody can administer gatehouse",
            );
        }
        let mut permissions = BTreeMap::new();
        for (role, names) in self.permissions {
            let key = |i: usize| format!("admin.permissions.{role}[{i}]");
            if role.is_empty() {
                v.err("admin.permissions", "a role name must not be empty");
                continue;
            }
            let mut grants = Grants::NONE;
            for (i, name) in names.iter().enumerate() {
                match (name.as_str(), Permission::parse(name)) {
                    ("*", _) => grants = Grants::all(),
                    (_, Some(p)) => grants = grants.with(p),
                    (_, None) => v.err(
                        key(i),
                        format!(
                            "{name:?} is not a permission; use \"*\" or one of: {}",
                            Grants::all().names().join(", ")
                        ),
                    ),
                }
            }
            if names.is_empty() {
                v.err(
                    format!("admin.permissions.{role}"),
                    "grants nothing; list permissions or remove the role",
                );
            }
            permissions.insert(role, grants);
        }
        let l = self.live;
        let live = LiveConfig {
            stats_interval: v.duration(
                "admin.live.stats_interval",
                l.stats_interval.as_deref(),
                "5s",
            ),
            ping_interval: v.duration(
                "admin.live.ping_interval",
                l.ping_interval.as_deref(),
                "30s",
            ),
            idle_timeout: v.duration("admin.live.idle_timeout", l.idle_timeout.as_deref(), "90s"),
            send_timeout: v.duration("admin.live.send_timeout", l.send_timeout.as_deref(), "10s"),
            denials_per_second: l.denials_per_second.unwrap_or(10),
        };
        for (key, d) in [
            ("admin.live.stats_interval", live.stats_interval),
            ("admin.live.ping_interval", live.ping_interval),
            ("admin.live.send_timeout", live.send_timeout),
        ] {
            if d < Duration::from_millis(100) {
                v.err(key, "must be at least 100ms");
            }
        }
        if live.idle_timeout <= live.ping_interval {
            v.err(
                "admin.live.idle_timeout",
                "must be longer than admin.live.ping_interval, or a quiet but healthy socket is closed",
            );
        }
        AdminConfig {
            roles,
            permissions,
            live,
        }
    }
}

//! `[admin]`: who administers gatehouse.

use serde::Deserialize;

use super::values::V;

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub(super) struct RawAdmin {
    roles: Option<Vec<String>>,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub roles: Vec<String>,
}

impl RawAdmin {
    pub(super) fn validate(self, v: &mut V) -> AdminConfig {
        let raw = self;
        let admin_roles = raw.roles.unwrap_or_else(|| vec!["admin".into()]);
        if admin_roles.is_empty() {
            v.err(
                "admin.roles",
                "at least one role is needed, or nobody can administer gatehouse",
            );
        }

        AdminConfig { roles: admin_roles }
    }
}

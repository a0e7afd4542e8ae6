//! `[admin]`: who administers gatehouse — `roles` hold every permission, and
//! `[admin.permissions]` grants other roles the permissions listed for them.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::values::V;
use crate::permission::{Grants, Permission};

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub(super) struct RawAdmin {
    roles: Option<Vec<String>>,
    permissions: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Roles that hold every permission.
    pub roles: Vec<String>,
    /// More roles, each with the permissions it grants.
    pub permissions: BTreeMap<String, Grants>,
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
        AdminConfig { roles, permissions }
    }
}

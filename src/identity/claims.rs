//! Keycloak-shaped claims mapped into an [`Identity`]: roles and groups from the
//! configured claim paths into one normalised set.

use serde_json::{Map, Value};

use crate::decision::{Principal, PrincipalParts};

/// A claim path such as `resource_access.my.client.roles`, pre-split once.
#[derive(Debug, Clone)]
pub struct ClaimPath(Vec<String>);

impl ClaimPath {
    pub fn parse(s: &str) -> Self {
        ClaimPath(s.split('.').map(str::to_string).collect())
    }

    /// Walks the claims; a segment may span several dotted parts, because client
    /// ids such as `my.client` contain dots. The longest key that exists wins.
    pub fn lookup<'a>(&self, claims: &'a Map<String, Value>) -> Option<&'a Value> {
        walk(claims, &self.0)
    }
}

fn walk<'a>(obj: &'a Map<String, Value>, parts: &[String]) -> Option<&'a Value> {
    for take in (1..=parts.len()).rev() {
        let key = parts[..take].join(".");
        if let Some(v) = obj.get(&key) {
            if take == parts.len() {
                return Some(v);
            }
            if let Value::Object(inner) = v {
                if let Some(found) = walk(inner, &parts[take..]) {
                    return Some(found);
                }
            }
        }
    }
    None
}

/// Why a verified token's claims cannot become an identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimsError {
    MissingSub,
    BadRolesClaim,
    BadClaimType,
}

impl ClaimsError {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MissingSub => "missing_sub",
            Self::BadRolesClaim => "bad_roles_claim",
            Self::BadClaimType => "bad_claim_type",
        }
    }
}

fn opt_string(claims: &Map<String, Value>, key: &str) -> Result<Option<String>, ClaimsError> {
    match claims.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ClaimsError::BadClaimType),
    }
}

fn string_list(v: &Value) -> Result<Vec<String>, ClaimsError> {
    match v {
        Value::Null => Ok(vec![]),
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_string)
                    .ok_or(ClaimsError::BadRolesClaim)
            })
            .collect(),
        _ => Err(ClaimsError::BadRolesClaim),
    }
}

/// Builds who the verified claims say the holder is (the token's instants
/// are the caller's to pair with it).
pub fn principal_from_claims(
    issuer: &str,
    claims: &Map<String, Value>,
    roles_claims: &[ClaimPath],
) -> Result<Principal, ClaimsError> {
    let sub = match claims.get("sub") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(ClaimsError::MissingSub),
    };
    let mut groups = Vec::new();
    for path in roles_claims {
        if let Some(v) = path.lookup(claims) {
            for g in string_list(v)? {
                // Keycloak's group mapper may send full paths ("/ops/admins").
                let g = g.strip_prefix('/').unwrap_or(&g).to_string();
                if !g.is_empty() {
                    groups.push(g);
                }
            }
        }
    }
    let amr = match claims.get("amr") {
        None | Some(Value::Null) => vec![],
        Some(v) => string_list(v).map_err(|_| ClaimsError::BadClaimType)?,
    };
    Ok(Principal::new(PrincipalParts {
        issuer: issuer.to_string(),
        sub,
        preferred_username: opt_string(claims, "preferred_username")?.filter(|s| !s.is_empty()),
        email: opt_string(claims, "email")?,
        name: opt_string(claims, "name")?,
        groups,
        acr: opt_string(claims, "acr")?,
        amr,
        sid: opt_string(claims, "sid")?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn keycloak_shaped_roles() {
        let c = obj(json!({
            "sub": "f1c2", "preferred_username": "alice", "email": "a@example.com",
            "realm_access": {"roles": ["admin", "offline_access"]},
            "resource_access": {"my.client": {"roles": ["editor", "admin"]}, "other": {"roles": ["x"]}},
            "groups": ["/operators", "/ops/admins"],
            "acr": "gold", "amr": ["pwd", "otp"], "sid": "s1"
        }));
        let paths: Vec<ClaimPath> = [
            "realm_access.roles",
            "resource_access.my.client.roles",
            "groups",
        ]
        .iter()
        .map(|p| ClaimPath::parse(p))
        .collect();
        let id = principal_from_claims("iss", &c, &paths).unwrap();
        assert_eq!(id.user, "alice");
        assert_eq!(
            id.groups,
            vec![
                "admin",
                "editor",
                "offline_access",
                "operators",
                "ops/admins"
            ]
        );
        assert_eq!(
            id.remote_groups,
            "admin,editor,offline_access,operators,ops/admins"
        );
        assert_eq!(id.acr.as_deref(), Some("gold"));
        assert_eq!(id.amr, vec!["pwd", "otp"]);
        assert_eq!(id.sid.as_deref(), Some("s1"));
    }

    #[test]
    fn malformed_claims_refuse() {
        let paths = vec![ClaimPath::parse("realm_access.roles")];
        let no_sub = obj(json!({"preferred_username": "x"}));
        assert_eq!(
            principal_from_claims("i", &no_sub, &paths).unwrap_err(),
            ClaimsError::MissingSub
        );
        let bad_roles = obj(json!({"sub": "x", "realm_access": {"roles": [1, 2]}}));
        assert_eq!(
            principal_from_claims("i", &bad_roles, &paths).unwrap_err(),
            ClaimsError::BadRolesClaim
        );
        let bad_email = obj(json!({"sub": "x", "email": ["a", "b"]}));
        assert_eq!(
            principal_from_claims("i", &bad_email, &paths).unwrap_err(),
            ClaimsError::BadClaimType
        );
        let sub_only = obj(json!({"sub": "x"}));
        assert_eq!(
            principal_from_claims("i", &sub_only, &paths).unwrap().user,
            "x"
        );
    }
}

//! Revoked bearer tokens, as an immutable in-memory snapshot the decision path
//! consults after every token validation (cached or not), so a termination takes
//! effect on the very next request. The store keeps the durable copy.

use std::collections::HashMap;

use crate::decision::Identity;
use crate::store::{Revocation, RevocationKind};

/// Issuer value meaning "any issuer" (user-wide revocations from the API).
pub const ANY_ISSUER: &str = "*";

#[derive(Debug, Default, Clone)]
pub struct Revocations {
    /// sid → issuers whose tokens with that sid are revoked.
    sids: HashMap<String, Vec<String>>,
    /// user (username or sub) → (issuer, not_before): tokens issued at or before are revoked.
    users: HashMap<String, Vec<(String, i64)>>,
}

impl Revocations {
    /// Builds the snapshot from the live revocations in the store.
    pub fn from_records(records: &[Revocation]) -> Self {
        let mut r = Revocations::default();
        for rec in records {
            match rec.kind {
                RevocationKind::Sid => r
                    .sids
                    .entry(rec.value.clone())
                    .or_default()
                    .push(rec.issuer.clone()),
                RevocationKind::Sub => r
                    .users
                    .entry(rec.value.clone())
                    .or_default()
                    .push((rec.issuer.clone(), rec.not_before)),
            }
        }
        r
    }

    pub fn is_empty(&self) -> bool {
        self.sids.is_empty() && self.users.is_empty()
    }

    /// Whether this identity's token is revoked. A user-wide revocation also
    /// catches tokens without `iat` (their age is unknown: fail closed).
    pub fn is_revoked(&self, id: &Identity) -> bool {
        // The usual case on the hot path: nothing revoked, nothing to hash.
        if self.is_empty() {
            return false;
        }
        let issuer_matches = |i: &str| i == ANY_ISSUER || i == id.issuer;
        if let Some(sid) = &id.sid {
            if self
                .sids
                .get(sid)
                .is_some_and(|iss| iss.iter().any(|i| issuer_matches(i)))
            {
                return true;
            }
        }
        let user_hit = |name: &str| {
            self.users.get(name).is_some_and(|entries| {
                entries.iter().any(|(i, not_before)| {
                    issuer_matches(i) && id.iat.is_none_or(|iat| iat <= *not_before)
                })
            })
        };
        user_hit(&id.user) || (id.sub != id.user && user_hit(&id.sub))
    }
}

impl crate::snapshot::Emptiness for Revocations {
    fn is_empty(&self) -> bool {
        Revocations::is_empty(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::PrincipalParts;

    fn id(user: &str, sid: Option<&str>, iat: Option<i64>) -> Identity {
        Identity::new(
            PrincipalParts {
                issuer: "https://idp".into(),
                sub: format!("sub-{user}"),
                preferred_username: Some(user.into()),
                sid: sid.map(str::to_string),
                ..Default::default()
            },
            iat,
            9_999,
        )
    }

    fn rec(kind: RevocationKind, value: &str, issuer: &str, not_before: i64) -> Revocation {
        Revocation {
            issuer: issuer.into(),
            kind,
            value: value.into(),
            not_before,
            created_at: not_before,
            expires_at: not_before + 100,
        }
    }

    #[test]
    fn sid_and_user_revocations() {
        let r = Revocations::from_records(&[
            rec(RevocationKind::Sid, "s1", "https://idp", 100),
            rec(RevocationKind::Sid, "s2", "https://other", 100),
            rec(RevocationKind::Sub, "alice", ANY_ISSUER, 100),
            rec(RevocationKind::Sub, "sub-carol", "https://idp", 100),
        ]);
        assert!(r.is_revoked(&id("bob", Some("s1"), Some(50))));
        assert!(
            !r.is_revoked(&id("bob", Some("s2"), Some(50))),
            "sid of another issuer"
        );
        assert!(!r.is_revoked(&id("bob", Some("s3"), Some(50))));
        assert!(r.is_revoked(&id("alice", None, Some(99))));
        assert!(
            r.is_revoked(&id("alice", None, Some(100))),
            "same second: fail closed"
        );
        assert!(
            !r.is_revoked(&id("alice", None, Some(101))),
            "issued after the revocation"
        );
        assert!(
            r.is_revoked(&id("alice", None, None)),
            "no iat: fail closed"
        );
        assert!(r.is_revoked(&id("carol", None, Some(1))), "by sub");
        assert!(!Revocations::default().is_revoked(&id("alice", Some("s1"), None)));
    }
}

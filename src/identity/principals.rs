//! One [`Principal`] per distinct "who": a user's tokens (a new one every few
//! minutes from each client, all saying the same roles and names) share one
//! instead of each holding its own copy of every string and header value.
//! Used on the verification path only (after a signature check), never on a
//! cache hit.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, Weak};

use crate::decision::Principal;

/// Entries are swept (those no identity holds any more) when the table has
/// grown to twice what was alive at the last sweep, and at least this many.
const MIN_SWEEP: usize = 1024;

/// See the module documentation.
#[derive(Debug)]
pub struct Principals {
    table: Mutex<Table>,
    hasher: std::collections::hash_map::RandomState,
}

#[derive(Debug)]
struct Table {
    /// By a keyed hash of the principal; a collision is resolved by comparing
    /// whole principals (and not sharing), never by trusting the hash.
    map: HashMap<u64, Weak<Principal>>,
    sweep_at: usize,
}

impl Default for Principals {
    fn default() -> Self {
        Principals {
            table: Mutex::new(Table {
                map: HashMap::new(),
                sweep_at: MIN_SWEEP,
            }),
            hasher: Default::default(),
        }
    }
}

impl Principals {
    /// The shared principal equal to `p`, or `p` itself (now shared).
    pub fn intern(&self, p: Principal) -> Arc<Principal> {
        let h = self.hasher.hash_one(&p);
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(existing) = t.map.get(&h).and_then(Weak::upgrade) {
            if *existing == p {
                return existing;
            }
            // Same hash, different principal: keep the one in the table.
            return Arc::new(p);
        }
        let p = Arc::new(p);
        t.map.insert(h, Arc::downgrade(&p));
        if t.map.len() >= t.sweep_at {
            t.map.retain(|_, w| w.strong_count() > 0);
            t.map.shrink_to_fit();
            t.sweep_at = (2 * t.map.len()).max(MIN_SWEEP);
        }
        p
    }

    /// Distinct principals in the table (some perhaps no longer held).
    pub fn len(&self) -> usize {
        self.table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::PrincipalParts;

    fn p(user: &str, groups: &[&str]) -> Principal {
        Principal::new(PrincipalParts {
            issuer: "https://issuer.example".into(),
            sub: user.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Default::default()
        })
    }

    #[test]
    fn equal_principals_are_shared_and_different_ones_are_not() {
        let t = Principals::default();
        let a = t.intern(p("alice", &["ops"]));
        let b = t.intern(p("alice", &["ops"]));
        assert!(Arc::ptr_eq(&a, &b));
        let c = t.intern(p("alice", &["ops", "admins"]));
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(c.groups, vec!["admins", "ops"]);
        let d = t.intern(p("bob", &["ops"]));
        assert_eq!(d.user, "bob");
    }

    #[test]
    fn principals_nobody_holds_are_swept() {
        let t = Principals::default();
        let kept = t.intern(p("kept", &[]));
        for i in 0..10 * MIN_SWEEP {
            drop(t.intern(p(&format!("user{i}"), &[])));
        }
        assert!(t.len() <= MIN_SWEEP, "{}", t.len());
        assert!(Arc::ptr_eq(&kept, &t.intern(p("kept", &[]))));
    }
}

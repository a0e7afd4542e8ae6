//! Compiled access rules: ordered, first match wins. Pure.

use ipnet::IpNet;
use regex::Regex;

use super::target::Target;
use super::Identity;

/// A domain as written in a rule: exact, or `*.suffix` for any subdomain depth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainPattern {
    Exact(String),
    /// Stored with the leading dot: `.ops.example.com`.
    AnySubdomainOf(String),
}

impl DomainPattern {
    pub fn parse(s: &str) -> Result<Self, String> {
        let lower = s.trim().to_ascii_lowercase();
        let lower = lower.strip_suffix('.').unwrap_or(&lower).to_string();
        let (wild, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest.to_string()),
            None => (false, lower.clone()),
        };
        let valid = !name.is_empty()
            && name.split('.').all(|l| {
                !l.is_empty()
                    && l.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if !valid {
            return Err(format!(
                "{s:?} is not a domain; write \"app.example.com\" or \"*.example.com\" (a '*' only as the whole first label)"
            ));
        }
        Ok(if wild {
            Self::AnySubdomainOf(format!(".{name}"))
        } else {
            Self::Exact(name)
        })
    }

    pub fn matches(&self, host: &str) -> bool {
        match self {
            Self::Exact(d) => d == host,
            Self::AnySubdomainOf(suffix) => {
                host.len() > suffix.len() && host.ends_with(suffix.as_str())
            }
        }
    }
}

/// One entry of a rule's `subjects`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectMatcher {
    User(String),
    /// `group:` and `role:` both test the identity's normalised role/group set.
    Group(String),
}

impl SubjectMatcher {
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || {
            format!("{s:?} is not a subject; write \"user:alice\", \"group:operators\" or \"role:admin\"")
        };
        let (kind, name) = s.split_once(':').ok_or_else(bad)?;
        if name.is_empty() {
            return Err(bad());
        }
        match kind {
            "user" => Ok(Self::User(name.to_string())),
            "group" | "role" => Ok(Self::Group(name.trim_start_matches('/').to_string())),
            _ => Err(bad()),
        }
    }

    pub fn matches(&self, id: &Identity) -> bool {
        match self {
            Self::User(u) => *u == id.user || *u == id.sub,
            Self::Group(g) => id.groups.binary_search(g).is_ok(),
        }
    }
}

/// Access policy levels, from most open to closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyLevel {
    Bypass,
    OneFactor,
    TwoFactor,
    Deny,
}

impl PolicyLevel {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "bypass" => Some(Self::Bypass),
            "one_factor" => Some(Self::OneFactor),
            "two_factor" => Some(Self::TwoFactor),
            "deny" => Some(Self::Deny),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bypass => "bypass",
            Self::OneFactor => "one_factor",
            Self::TwoFactor => "two_factor",
            Self::Deny => "deny",
        }
    }
}

/// A rule ready to be matched.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Position in the configuration, for logs and usage statistics.
    pub index: usize,
    pub domains: Vec<DomainPattern>,
    pub paths: Vec<Regex>,
    pub methods: Vec<String>,
    pub networks: Vec<IpNet>,
    pub subjects: Vec<SubjectMatcher>,
    pub policy: PolicyLevel,
}

impl Rule {
    /// Whether the request part (everything but `subjects`) matches.
    pub fn matches_request(&self, t: &Target<'_>) -> bool {
        (self.domains.is_empty() || self.domains.iter().any(|d| d.matches(&t.host)))
            && (self.methods.is_empty() || self.methods.iter().any(|m| *m == *t.method))
            && (self.networks.is_empty() || self.networks.iter().any(|n| n.contains(&t.client)))
            && (self.paths.is_empty() || self.paths.iter().any(|r| r.is_match(&t.path)))
    }

    pub fn matches_subject(&self, id: &Identity) -> bool {
        self.subjects.is_empty() || self.subjects.iter().any(|s| s.matches(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_patterns() {
        let exact = DomainPattern::parse("Grafana.Example.com").unwrap();
        assert!(exact.matches("grafana.example.com"));
        assert!(!exact.matches("x.grafana.example.com"));
        let wild = DomainPattern::parse("*.ops.example.com").unwrap();
        assert!(wild.matches("a.ops.example.com"));
        assert!(wild.matches("a.b.ops.example.com"));
        assert!(!wild.matches("ops.example.com"));
        assert!(!wild.matches("evilops.example.com"));
        assert!(!wild.matches("a.ops.example.com.evil.net"));
        for bad in ["", "*", "*.", "a.*.com", "*example.com", "a..b", "a b"] {
            assert!(DomainPattern::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn subject_matchers() {
        assert_eq!(
            SubjectMatcher::parse("user:alice").unwrap(),
            SubjectMatcher::User("alice".into())
        );
        assert_eq!(
            SubjectMatcher::parse("group:/ops").unwrap(),
            SubjectMatcher::Group("ops".into())
        );
        assert_eq!(
            SubjectMatcher::parse("role:admin").unwrap(),
            SubjectMatcher::Group("admin".into())
        );
        for bad in ["alice", "user:", "team:x", ""] {
            assert!(SubjectMatcher::parse(bad).is_err(), "{bad:?}");
        }
    }
}

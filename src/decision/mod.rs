//! The verdict: `decide(&Policy, &Subject, &Target)` is a pure function returning
//! `Allow | Unauthenticated | Forbidden`. No HTTP, no I/O, no clock of its own.

pub mod rules;
pub mod target;

use std::sync::Arc;

use ipnet::IpNet;

pub use rules::{PolicyLevel, Rule};
pub use target::{Scheme, Target, TargetError};

/// Who the request is from, as the identity engine established it: who
/// ([`Principal`], shared by every credential that says the same, read
/// through `Deref`) and the instants of this one credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    principal: Arc<Principal>,
    /// `iat` of a token; the authentication time of a session.
    pub iat: Option<i64>,
    /// `exp` of a token; the end of a session's lifetime.
    pub exp: i64,
}

impl std::ops::Deref for Identity {
    type Target = Principal;
    fn deref(&self) -> &Principal {
        &self.principal
    }
}

/// Everything an identity says except its credential's instants: a user's
/// tokens (a new one every few minutes, one per client) share one.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Principal {
    pub issuer: String,
    pub sub: String,
    /// `preferred_username`, else `sub`.
    pub user: String,
    pub email: Option<String>,
    pub name: Option<String>,
    /// Roles and groups from the configured claims: sorted, deduplicated.
    pub groups: Vec<String>,
    pub acr: Option<String>,
    pub amr: Vec<String>,
    pub sid: Option<String>,
    /// `Remote-Groups`, precomputed once.
    pub remote_groups: String,
    /// Every identity header value is printable and unambiguous.
    pub headers_representable: bool,
    /// `Remote-User`, `-Groups`, `-Email`, `-Name` as ready header values, built
    /// once so that an allowed request copies, never re-validates.
    pub header_values: [Option<http::HeaderValue>; 4],
    /// The same as HTTP/1.1 header lines (`remote-user: ...\r\n` ...), in
    /// that order: what the fast path copies into an allowed answer.
    pub header_lines: Box<[u8]>,
}

/// What a principal is made of (an identity provider's claims, or a stored
/// session's copy of them), field by field: [`Principal::new`] sorts the
/// groups and computes the header form.
#[derive(Debug, Default)]
pub struct PrincipalParts {
    pub issuer: String,
    pub sub: String,
    /// `Remote-User`; `sub` when absent.
    pub preferred_username: Option<String>,
    pub email: Option<String>,
    pub name: Option<String>,
    /// Roles and groups, in any order, repeats allowed.
    pub groups: Vec<String>,
    pub acr: Option<String>,
    pub amr: Vec<String>,
    pub sid: Option<String>,
}

/// The names of [`Principal::header_values`], in order.
pub const IDENTITY_HEADERS: [&str; 4] = [
    "remote-user",
    "remote-groups",
    "remote-email",
    "remote-name",
];

impl Identity {
    /// Builds an identity and precomputes its header form.
    pub fn new(parts: PrincipalParts, iat: Option<i64>, exp: i64) -> Self {
        Identity::of(Arc::new(Principal::new(parts)), iat, exp)
    }

    /// An identity for a principal already built (shared).
    pub fn of(principal: Arc<Principal>, iat: Option<i64>, exp: i64) -> Self {
        Identity {
            principal,
            iat,
            exp,
        }
    }

    pub fn principal(&self) -> &Arc<Principal> {
        &self.principal
    }

    /// The bytes this identity holds, its principal counted whole (even when
    /// other identities share it).
    pub fn approx_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.principal.approx_bytes()
    }
}

impl Principal {
    /// Builds a principal and precomputes its header form.
    pub fn new(parts: PrincipalParts) -> Self {
        let PrincipalParts {
            issuer,
            sub,
            preferred_username,
            email,
            name,
            mut groups,
            acr,
            amr,
            sid,
        } = parts;
        groups.sort();
        groups.dedup();
        let user = preferred_username.unwrap_or_else(|| sub.clone());
        let remote_groups = groups.join(",");
        let headers_representable = header_safe(&user)
            && email.as_deref().is_none_or(header_safe)
            && name.as_deref().is_none_or(header_safe)
            && groups.iter().all(|g| header_safe(g) && !g.contains(','));
        let hv = |v: Option<&str>| {
            v.filter(|v| !v.is_empty())
                .and_then(|v| http::HeaderValue::from_str(v).ok())
        };
        let header_values = if headers_representable {
            [
                hv(Some(&user)),
                hv(Some(&remote_groups)),
                hv(email.as_deref()),
                hv(name.as_deref()),
            ]
        } else {
            Default::default()
        };
        let mut header_lines = Vec::new();
        for (name, v) in IDENTITY_HEADERS.iter().zip(&header_values) {
            if let Some(v) = v {
                header_lines.extend_from_slice(name.as_bytes());
                header_lines.extend_from_slice(b": ");
                header_lines.extend_from_slice(v.as_bytes());
                header_lines.extend_from_slice(b"\r\n");
            }
        }
        Principal {
            issuer,
            sub,
            user,
            email,
            name,
            groups,
            acr,
            amr,
            sid,
            remote_groups,
            headers_representable,
            header_values,
            header_lines: header_lines.into_boxed_slice(),
        }
    }
}

impl Principal {
    /// The bytes this principal holds: the struct and every heap allocation of
    /// its strings, lists and ready header values (allocator rounding aside).
    pub fn approx_bytes(&self) -> usize {
        let s = |v: &String| v.capacity();
        let o = |v: &Option<String>| v.as_ref().map_or(0, String::capacity);
        let list = |v: &Vec<String>| {
            v.capacity() * std::mem::size_of::<String>()
                + v.iter().map(String::capacity).sum::<usize>()
        };
        std::mem::size_of::<Self>()
            + s(&self.issuer)
            + s(&self.sub)
            + s(&self.user)
            + o(&self.email)
            + o(&self.name)
            + list(&self.groups)
            + o(&self.acr)
            + list(&self.amr)
            + o(&self.sid)
            + s(&self.remote_groups)
            + self
                .header_values
                .iter()
                .flatten()
                .map(|h| h.len())
                .sum::<usize>()
            + self.header_lines.len()
    }
}

/// A value can travel in a header without changing meaning: not empty where it
/// matters, no control characters (CR, LF, NUL, TAB, DEL), no surrounding spaces.
pub fn header_safe(s: &str) -> bool {
    !s.is_empty() && s.len() <= 4096 && !s.chars().any(|c| c.is_control()) && s.trim() == s
}

/// Why presented credentials were refused (never the token itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialError {
    Malformed,
    Invalid(&'static str),
}

/// The identity engine's answer for one request.
#[derive(Debug, Clone)]
pub enum Subject {
    Anonymous,
    /// Credentials were presented and refused: treated as anonymous, reported as such.
    Refused(CredentialError),
    User(Arc<Identity>),
}

/// Stable reason codes for logs, metrics and usage statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    Bypass,
    Authorized,
    NoCredentials,
    InvalidCredentials,
    NotAllowlisted,
    PolicyDeny,
    DefaultDeny,
    TwoFactorRequired,
    UnrepresentableClaim,
    /// The client address or user is banned (brute-force regulation).
    Banned,
    /// The kill switch is engaged with `engage_deny`: only bypass rules pass.
    KillSwitch,
    /// A session could not be checked against the shared store for longer
    /// than `store.max_staleness` (other replicas may have ended it).
    StoreUnavailable,
    BadRequest(TargetError),
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bypass => "bypass",
            Self::Authorized => "authorized",
            Self::NoCredentials => "no_credentials",
            Self::InvalidCredentials => "invalid_credentials",
            Self::NotAllowlisted => "not_allowlisted",
            Self::PolicyDeny => "policy_deny",
            Self::DefaultDeny => "default_deny",
            Self::TwoFactorRequired => "two_factor_required",
            Self::UnrepresentableClaim => "unrepresentable_claim",
            Self::Banned => "banned",
            Self::KillSwitch => "kill_switch",
            Self::StoreUnavailable => "store_unavailable",
            Self::BadRequest(e) => e.as_str(),
        }
    }
}

/// The verdict.
#[derive(Debug, Clone)]
pub enum Decision {
    Allow {
        identity: Option<Arc<Identity>>,
        rule: Option<usize>,
        reason: Reason,
    },
    Unauthenticated {
        rule: Option<usize>,
        reason: Reason,
    },
    Forbidden {
        rule: Option<usize>,
        reason: Reason,
    },
}

impl Decision {
    pub fn reason(&self) -> Reason {
        match self {
            Self::Allow { reason, .. }
            | Self::Unauthenticated { reason, .. }
            | Self::Forbidden { reason, .. } => *reason,
        }
    }
    pub fn result(&self) -> &'static str {
        match self {
            Self::Allow { .. } => "allow",
            Self::Unauthenticated { .. } => "unauthenticated",
            Self::Forbidden { .. } => "forbidden",
        }
    }
    pub fn rule(&self) -> Option<usize> {
        match self {
            Self::Allow { rule, .. }
            | Self::Unauthenticated { rule, .. }
            | Self::Forbidden { rule, .. } => *rule,
        }
    }
}

/// One allowlist entry; `expires_at` in seconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowEntry {
    pub net: IpNet,
    pub expires_at: Option<i64>,
}

/// An immutable allowlist snapshot; the runtime list replaces it as a whole.
#[derive(Debug, Clone, Default)]
pub struct Allowlist {
    entries: Vec<AllowEntry>,
}

impl Allowlist {
    pub fn new(entries: Vec<AllowEntry>) -> Self {
        Allowlist { entries }
    }
    pub fn contains(&self, ip: std::net::IpAddr, at: i64) -> bool {
        self.entries
            .iter()
            .any(|e| e.net.contains(&ip) && e.expires_at.is_none_or(|x| at < x))
    }
    pub fn entries(&self) -> &[AllowEntry] {
        &self.entries
    }
}

/// Everything `decide` needs besides the request; swapped as a whole at runtime.
#[derive(Debug, Clone)]
pub struct Policy {
    pub rules: Arc<[Rule]>,
    pub default_policy: PolicyLevel,
    pub allowlist_enforced: bool,
    pub allowlist: Arc<Allowlist>,
    pub two_factor_acr: Arc<[String]>,
    pub two_factor_amr: Arc<[String]>,
    /// The kill switch engaged with `engage_deny`: every non-bypass rule denies.
    pub lockdown: bool,
}

impl Policy {
    /// The same policy with another allowlist snapshot.
    pub fn with_allowlist(&self, allowlist: Allowlist) -> Self {
        self.with_allowlist_arc(Arc::new(allowlist))
    }

    /// The same policy with this (shared) allowlist snapshot.
    pub fn with_allowlist_arc(&self, allowlist: Arc<Allowlist>) -> Self {
        Policy {
            allowlist,
            ..self.clone()
        }
    }

    /// The same policy with the kill switch's deny engaged or released.
    pub fn with_lockdown(&self, lockdown: bool) -> Self {
        Policy {
            lockdown,
            ..self.clone()
        }
    }

    /// Whether the identity's `acr` or `amr` counts as a second factor.
    pub fn is_two_factor(&self, id: &Identity) -> bool {
        id.acr
            .as_deref()
            .is_some_and(|acr| self.two_factor_acr.iter().any(|a| a == acr))
            || id.amr.iter().any(|m| self.two_factor_amr.contains(m))
    }
}

/// Decides one request. Fails closed: every path that is not an explicit allow denies.
pub fn decide(policy: &Policy, subject: &Subject, target: &Target<'_>) -> Decision {
    if policy.allowlist_enforced && !policy.allowlist.contains(target.client, target.at) {
        return Decision::Forbidden {
            rule: None,
            reason: Reason::NotAllowlisted,
        };
    }
    for rule in policy.rules.iter() {
        if !rule.matches_request(target) {
            continue;
        }
        if !rule.subjects.is_empty() {
            match subject {
                // Who they are decides whether the rule applies: identify them first.
                Subject::Anonymous | Subject::Refused(_) => {
                    return unauthenticated(Some(rule.index), subject)
                }
                Subject::User(id) if !rule.matches_subject(id) => continue,
                Subject::User(_) => {}
            }
        }
        return apply(policy, rule.policy, Some(rule.index), subject);
    }
    apply(policy, policy.default_policy, None, subject)
}

fn unauthenticated(rule: Option<usize>, subject: &Subject) -> Decision {
    Decision::Unauthenticated {
        rule,
        reason: match subject {
            Subject::Refused(_) => Reason::InvalidCredentials,
            _ => Reason::NoCredentials,
        },
    }
}

fn apply(policy: &Policy, level: PolicyLevel, rule: Option<usize>, subject: &Subject) -> Decision {
    if policy.lockdown && level != PolicyLevel::Bypass {
        return Decision::Forbidden {
            rule,
            reason: Reason::KillSwitch,
        };
    }
    match level {
        PolicyLevel::Deny => Decision::Forbidden {
            rule,
            reason: if rule.is_some() {
                Reason::PolicyDeny
            } else {
                Reason::DefaultDeny
            },
        },
        PolicyLevel::Bypass => Decision::Allow {
            identity: None,
            rule,
            reason: Reason::Bypass,
        },
        PolicyLevel::OneFactor | PolicyLevel::TwoFactor => {
            let id = match subject {
                Subject::User(id) => id,
                _ => return unauthenticated(rule, subject),
            };
            if !id.headers_representable {
                return Decision::Forbidden {
                    rule,
                    reason: Reason::UnrepresentableClaim,
                };
            }
            if level == PolicyLevel::TwoFactor && !policy.is_two_factor(id) {
                return Decision::Forbidden {
                    rule,
                    reason: Reason::TwoFactorRequired,
                };
            }
            Decision::Allow {
                identity: Some(id.clone()),
                rule,
                reason: Reason::Authorized,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn policy(toml: &str) -> Policy {
        let env = [(
            "GATEHOUSE_SESSION__INSECURE_HTTP".to_string(),
            "true".to_string(),
        )];
        let cfg = Config::from_toml_str(toml, std::path::Path::new("."), "t", &env).unwrap();
        cfg.access.policy().unwrap()
    }

    fn target(host: &str, path: &str, method: &str, client: &str) -> Target<'static> {
        Target {
            scheme: Scheme::Https,
            host: host.to_string().into(),
            port: None,
            path: path.to_string().into(),
            raw_path_and_query: path.to_string().into(),
            method: method.to_string().into(),
            client: client.parse().unwrap(),
            websocket: false,
            at: 1_000,
        }
    }

    fn user(name: &str, groups: &[&str], acr: Option<&str>, amr: &[&str]) -> Subject {
        Subject::User(Arc::new(Identity::new(
            PrincipalParts {
                issuer: "iss".into(),
                sub: format!("sub-{name}"),
                preferred_username: Some(name.into()),
                email: Some(format!("{name}@example.com")),
                name: Some("A Name".into()),
                groups: groups.iter().map(|s| s.to_string()).collect(),
                acr: acr.map(str::to_string),
                amr: amr.iter().map(|s| s.to_string()).collect(),
                sid: None,
            },
            None,
            2_000,
        )))
    }

    const RULES: &str = r#"
[access]
default_policy = "deny"
two_factor_acr = ["gold"]
two_factor_amr = ["otp"]
[[access.rules]]
domains = ["public.example.com"]
policy = "bypass"
[[access.rules]]
domains = ["grafana.example.com"]
paths = ["^/api/admin"]
subjects = ["role:admin"]
policy = "two_factor"
[[access.rules]]
domains = ["grafana.example.com"]
paths = ["^/api/admin"]
policy = "deny"
[[access.rules]]
domains = ["grafana.example.com", "*.ops.example.com"]
methods = ["GET", "HEAD"]
policy = "one_factor"
[[access.rules]]
domains = ["lan.example.com"]
networks = ["10.0.0.0/8"]
policy = "bypass"
[[access.rules]]
domains = ["lan.example.com"]
subjects = ["user:alice", "group:operators"]
policy = "one_factor"
"#;

    #[test]
    fn decision_table() {
        let p = policy(RULES);
        let anon = Subject::Anonymous;
        let bad = Subject::Refused(CredentialError::Invalid("bad_signature"));
        let bob = user("bob", &["viewer"], None, &[]);
        let admin1 = user("root", &["admin"], None, &["pwd"]);
        let admin2 = user("root", &["admin"], Some("gold"), &[]);
        let admin_otp = user("root", &["admin"], None, &["pwd", "otp"]);
        let alice = user("alice", &[], None, &[]);
        let op = user("carol", &["operators"], None, &[]);
        let cases: Vec<(&Subject, Target, &str, &str, Option<usize>)> = vec![
            (
                &anon,
                target("public.example.com", "/x", "POST", "1.2.3.4"),
                "allow",
                "bypass",
                Some(0),
            ),
            (
                &bad,
                target("public.example.com", "/x", "GET", "1.2.3.4"),
                "allow",
                "bypass",
                Some(0),
            ),
            (
                &anon,
                target("grafana.example.com", "/", "GET", "1.2.3.4"),
                "unauthenticated",
                "no_credentials",
                Some(3),
            ),
            (
                &bad,
                target("grafana.example.com", "/", "GET", "1.2.3.4"),
                "unauthenticated",
                "invalid_credentials",
                Some(3),
            ),
            (
                &bob,
                target("grafana.example.com", "/", "GET", "1.2.3.4"),
                "allow",
                "authorized",
                Some(3),
            ),
            (
                &bob,
                target("grafana.example.com", "/", "POST", "1.2.3.4"),
                "forbidden",
                "default_deny",
                None,
            ),
            (
                &bob,
                target("a.ops.example.com", "/x", "HEAD", "1.2.3.4"),
                "allow",
                "authorized",
                Some(3),
            ),
            // subject rule: anonymous must identify first
            (
                &anon,
                target("grafana.example.com", "/api/admin/x", "GET", "1.2.3.4"),
                "unauthenticated",
                "no_credentials",
                Some(1),
            ),
            // subject rule not matching falls through to the deny rule
            (
                &bob,
                target("grafana.example.com", "/api/admin/x", "GET", "1.2.3.4"),
                "forbidden",
                "policy_deny",
                Some(2),
            ),
            (
                &admin1,
                target("grafana.example.com", "/api/admin/x", "GET", "1.2.3.4"),
                "forbidden",
                "two_factor_required",
                Some(1),
            ),
            (
                &admin2,
                target("grafana.example.com", "/api/admin/x", "GET", "1.2.3.4"),
                "allow",
                "authorized",
                Some(1),
            ),
            (
                &admin_otp,
                target("grafana.example.com", "/api/admin/x", "GET", "1.2.3.4"),
                "allow",
                "authorized",
                Some(1),
            ),
            (
                &anon,
                target("lan.example.com", "/", "GET", "10.1.1.1"),
                "allow",
                "bypass",
                Some(4),
            ),
            (
                &anon,
                target("lan.example.com", "/", "GET", "11.1.1.1"),
                "unauthenticated",
                "no_credentials",
                Some(5),
            ),
            (
                &alice,
                target("lan.example.com", "/", "GET", "11.1.1.1"),
                "allow",
                "authorized",
                Some(5),
            ),
            (
                &op,
                target("lan.example.com", "/", "GET", "11.1.1.1"),
                "allow",
                "authorized",
                Some(5),
            ),
            (
                &bob,
                target("lan.example.com", "/", "GET", "11.1.1.1"),
                "forbidden",
                "default_deny",
                None,
            ),
            (
                &anon,
                target("other.example.com", "/", "GET", "1.2.3.4"),
                "forbidden",
                "default_deny",
                None,
            ),
        ];
        for (i, (s, t, result, reason, rule)) in cases.into_iter().enumerate() {
            let d = decide(&p, s, &t);
            assert_eq!(
                (d.result(), d.reason().as_str(), d.rule()),
                (result, reason, rule),
                "case {i}: {t:?}"
            );
        }
    }

    #[test]
    fn allowlist_enforced_and_swappable() {
        let p = policy("[access]\ndefault_policy = \"bypass\"\nallowlist_enforced = true\nallowlist = [\"192.168.1.0/24\"]\n");
        let inside = target("a.example.com", "/", "GET", "192.168.1.9");
        let outside = target("a.example.com", "/", "GET", "192.168.2.9");
        assert_eq!(decide(&p, &Subject::Anonymous, &inside).result(), "allow");
        assert_eq!(
            decide(&p, &Subject::Anonymous, &outside).reason(),
            Reason::NotAllowlisted
        );
        let p2 = p.with_allowlist(Allowlist::new(vec![AllowEntry {
            net: "192.168.2.0/24".parse().unwrap(),
            expires_at: Some(1_001),
        }]));
        assert_eq!(decide(&p2, &Subject::Anonymous, &outside).result(), "allow");
        assert_eq!(
            decide(&p2, &Subject::Anonymous, &inside).result(),
            "forbidden"
        );
        let later = Target {
            at: 1_001,
            ..outside
        };
        assert_eq!(
            decide(&p2, &Subject::Anonymous, &later).reason(),
            Reason::NotAllowlisted
        );
    }

    #[test]
    fn unrepresentable_claims_deny() {
        let p = policy("[access]\ndefault_policy = \"one_factor\"\n");
        let t = target("a.example.com", "/", "GET", "1.1.1.1");
        for (name, groups) in [
            ("bob\r\nX-Evil: 1", vec![]),
            ("bob", vec!["a,b"]),
            (" bob", vec![]),
            ("bob\0", vec![]),
        ] {
            let s = user(name, &groups, None, &[]);
            assert_eq!(
                decide(&p, &s, &t).reason(),
                Reason::UnrepresentableClaim,
                "{name:?} {groups:?}"
            );
        }
        let ok = user("Jos\u{e9}", &["a b"], None, &[]);
        assert_eq!(decide(&p, &ok, &t).result(), "allow");
    }
}

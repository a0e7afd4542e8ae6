//! `[access]`: the default policy, the static IP allowlist, what counts as
//! a second factor, and the rules; compiled into the decision core's
//! [`Policy`].

use std::sync::Arc;

use ipnet::IpNet;
use serde::Deserialize;

use super::values::V;
pub use crate::decision::rules::PolicyLevel;
use crate::decision::rules::{DomainPattern, Rule, SubjectMatcher};
use crate::decision::{AllowEntry, Allowlist, Policy};

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub(super) struct RawAccess {
    default_policy: Option<String>,
    allowlist_enforced: Option<bool>,
    allowlist: Vec<String>,
    pub(super) two_factor_acr: Vec<String>,
    two_factor_amr: Option<Vec<String>>,
    rules: Vec<RawRule>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub(super) struct RawRule {
    domains: Vec<String>,
    paths: Vec<String>,
    methods: Vec<String>,
    networks: Vec<String>,
    subjects: Vec<String>,
    policy: Option<String>,
}

#[derive(Debug, Clone)]
pub struct AccessConfig {
    pub default_policy: PolicyLevel,
    pub allowlist_enforced: bool,
    pub allowlist: Vec<IpNet>,
    pub two_factor_acr: Vec<String>,
    pub two_factor_amr: Vec<String>,
    pub rules: Vec<RuleConfig>,
}

#[derive(Debug, Clone)]
pub struct RuleConfig {
    pub domains: Vec<String>,
    pub paths: Vec<String>,
    pub methods: Vec<String>,
    pub networks: Vec<IpNet>,
    pub subjects: Vec<String>,
    pub policy: PolicyLevel,
}

impl RawAccess {
    pub(super) fn validate(self, v: &mut V) -> AccessConfig {
        let raw = self;
        let default_policy_s = raw.default_policy.unwrap_or_else(|| "deny".into());
        let default_policy = PolicyLevel::parse(&default_policy_s).unwrap_or_else(|| {
            v.err(
                "access.default_policy",
                format!(
                "{default_policy_s:?} is not a policy; use deny, one_factor, two_factor or bypass"
            ),
            );
            PolicyLevel::Deny
        });
        let allowlist = raw
            .allowlist
            .iter()
            .enumerate()
            .filter_map(|(i, s)| v.cidr(&format!("access.allowlist[{i}]"), s))
            .collect();
        let mut rules = Vec::new();
        for (i, rr) in raw.rules.into_iter().enumerate() {
            let k = |f: &str| format!("access.rules[{i}].{f}");
            let policy = match rr.policy.as_deref() {
                None => {
                    v.err(
                        k("policy"),
                        "missing; use deny, one_factor, two_factor or bypass",
                    );
                    PolicyLevel::Deny
                }
                Some(p) => PolicyLevel::parse(p).unwrap_or_else(|| {
                    v.err(
                        k("policy"),
                        format!(
                            "{p:?} is not a policy; use deny, one_factor, two_factor or bypass"
                        ),
                    );
                    PolicyLevel::Deny
                }),
            };
            for (j, d) in rr.domains.iter().enumerate() {
                if let Err(e) = DomainPattern::parse(d) {
                    v.err(k(&format!("domains[{j}]")), e);
                }
            }
            for (j, p) in rr.paths.iter().enumerate() {
                if let Err(e) = regex::Regex::new(p) {
                    let e = e.to_string().replace('\n', " ");
                    let e = e.split_whitespace().collect::<Vec<_>>().join(" ");
                    v.err(k(&format!("paths[{j}]")), format!("invalid regex: {e}"));
                }
            }
            let mut methods = Vec::new();
            for (j, m) in rr.methods.iter().enumerate() {
                let up = m.to_ascii_uppercase();
                if up.is_empty() || !up.bytes().all(|b| b.is_ascii_uppercase()) {
                    v.err(
                        k(&format!("methods[{j}]")),
                        format!("{m:?} is not an HTTP method"),
                    );
                } else {
                    methods.push(up);
                }
            }
            let networks = rr
                .networks
                .iter()
                .enumerate()
                .filter_map(|(j, s)| v.cidr(&k(&format!("networks[{j}]")), s))
                .collect();
            for (j, s) in rr.subjects.iter().enumerate() {
                if let Err(e) = SubjectMatcher::parse(s) {
                    v.err(k(&format!("subjects[{j}]")), e);
                }
            }
            if policy == PolicyLevel::Bypass && !rr.subjects.is_empty() {
                v.err(
                k("subjects"),
                "a bypass rule cannot name subjects (nobody is identified on a bypass); use one_factor",
            );
            }
            rules.push(RuleConfig {
                domains: rr.domains,
                paths: rr.paths,
                methods,
                networks,
                subjects: rr.subjects,
                policy,
            });
        }

        AccessConfig {
            default_policy,
            allowlist_enforced: raw.allowlist_enforced.unwrap_or(false),
            allowlist,
            two_factor_acr: raw.two_factor_acr,
            two_factor_amr: raw
                .two_factor_amr
                .unwrap_or_else(|| vec!["otp".into(), "hwk".into(), "mfa".into()]),
            rules,
        }
    }
}

impl AccessConfig {
    /// The decision core's policy for this section (the allowlist holds the
    /// static entries; the runtime ones are added by `service::allowlist`).
    pub fn policy(&self) -> Result<Policy, String> {
        let rules = self
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| r.compile(i))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Policy {
            rules: rules.into(),
            default_policy: self.default_policy,
            allowlist_enforced: self.allowlist_enforced,
            allowlist: Arc::new(Allowlist::new(
                self.allowlist
                    .iter()
                    .map(|n| AllowEntry {
                        net: *n,
                        expires_at: None,
                    })
                    .collect(),
            )),
            two_factor_acr: self.two_factor_acr.clone().into(),
            two_factor_amr: self.two_factor_amr.clone().into(),
            lockdown: false,
        })
    }
}

impl RuleConfig {
    /// Compiles a validated rule; validation already reported errors.
    pub fn compile(&self, index: usize) -> Result<Rule, String> {
        Ok(Rule {
            index,
            domains: self
                .domains
                .iter()
                .map(|d| DomainPattern::parse(d))
                .collect::<Result<_, _>>()?,
            paths: self
                .paths
                .iter()
                .map(|p| regex::Regex::new(p).map_err(|e| e.to_string()))
                .collect::<Result<_, _>>()?,
            methods: self.methods.clone(),
            networks: self.networks.clone(),
            subjects: self
                .subjects
                .iter()
                .map(|s| SubjectMatcher::parse(s))
                .collect::<Result<_, _>>()?,
            policy: self.policy,
        })
    }
}

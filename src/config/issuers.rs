//! `[[issuers]]` (the identity providers whose tokens are accepted) and
//! `[local_issuer]` (gatehouse's own signing key for service tokens).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::values::{Secret, V};

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub(super) struct RawIssuer {
    issuer: Option<String>,
    audiences: Vec<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    client_secret_file: Option<String>,
    roles_claims: Option<Vec<String>>,
    jwks_file: Option<String>,
    accept_azp_as_audience: Option<bool>,
    leeway: Option<String>,
    jwks_refresh_interval: Option<String>,
    jwks_min_refetch_interval: Option<String>,
    allow_insecure_http: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub(super) struct RawLocalIssuer {
    issuer: Option<String>,
    signing_key: Option<String>,
    signing_key_file: Option<String>,
    audience: Option<String>,
    max_ttl: Option<String>,
}

#[derive(Debug, Clone)]
pub struct IssuerConfig {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    pub roles_claims: Vec<String>,
    pub jwks_file: Option<PathBuf>,
    pub accept_azp_as_audience: bool,
    pub leeway: Duration,
    pub jwks_refresh_interval: Duration,
    pub jwks_min_refetch_interval: Duration,
}

#[derive(Debug, Clone)]
pub struct LocalIssuerConfig {
    pub issuer: String,
    pub signing_key_file: Option<PathBuf>,
    pub signing_key: Option<Secret>,
    pub audience: String,
    pub max_ttl: Duration,
}

/// The issuers, and their names (the local issuer must not reuse one).
pub(super) fn validate(raw: Vec<RawIssuer>, v: &mut V) -> (Vec<IssuerConfig>, BTreeSet<String>) {
    let mut issuers = Vec::new();
    let mut seen_issuers = BTreeSet::new();
    for (i, ri) in raw.into_iter().enumerate() {
        let k = |f: &str| format!("issuers[{i}].{f}");
        let issuer = match ri.issuer {
            Some(s) => s,
            None => {
                v.err(
                    k("issuer"),
                    "missing; the issuer URL exactly as it appears in tokens' iss claim",
                );
                continue;
            }
        };
        let allow_http = ri.allow_insecure_http.unwrap_or(false);
        match url::Url::parse(&issuer) {
            Ok(u) if u.scheme() == "https" || (u.scheme() == "http" && allow_http) => {}
            Ok(u) if u.scheme() == "http" => v.err(
                k("issuer"),
                "http:// issuers are refused (keys could be swapped in transit); use https://, or set allow_insecure_http = true for a loopback test IdP",
            ),
            _ => v.err(k("issuer"), format!("{issuer:?} is not an https URL")),
        }
        if !seen_issuers.insert(issuer.clone()) {
            v.err(k("issuer"), "the same issuer is configured twice");
        }
        if ri.audiences.is_empty() && !ri.accept_azp_as_audience.unwrap_or(false) {
            v.err(
                k("audiences"),
                "at least one audience is required (tokens for other services must not pass); add e.g. [\"gatehouse\"] and a Keycloak audience mapper",
            );
        }
        let accept_azp = ri.accept_azp_as_audience.unwrap_or(false);
        if accept_azp && ri.client_id.is_none() {
            v.err(
                k("accept_azp_as_audience"),
                "needs client_id to compare azp with",
            );
        }
        let client_secret = v.secret(
            &k("client_secret"),
            ri.client_secret,
            ri.client_secret_file.as_deref(),
        );
        let roles_claims = ri.roles_claims.unwrap_or_else(|| {
            let mut c = vec!["realm_access.roles".to_string(), "groups".to_string()];
            if let Some(cid) = &ri.client_id {
                c.insert(1, format!("resource_access.{cid}.roles"));
            }
            c
        });
        for (j, c) in roles_claims.iter().enumerate() {
            if c.is_empty() || c.split('.').any(str::is_empty) {
                v.err(k(&format!("roles_claims[{j}]")), "empty claim path segment");
            }
        }
        let leeway = v.duration(&k("leeway"), ri.leeway.as_deref(), "30s");
        if leeway > Duration::from_secs(300) {
            v.err(
                k("leeway"),
                "more than 5m of clock leeway keeps expired tokens alive; use at most \"5m\"",
            );
        }
        let refresh = v.duration(
            &k("jwks_refresh_interval"),
            ri.jwks_refresh_interval.as_deref(),
            "5m",
        );
        let min_refetch = v.duration(
            &k("jwks_min_refetch_interval"),
            ri.jwks_min_refetch_interval.as_deref(),
            "30s",
        );
        issuers.push(IssuerConfig {
            issuer,
            audiences: ri.audiences,
            client_id: ri.client_id,
            client_secret,
            roles_claims,
            jwks_file: ri.jwks_file.as_deref().map(|p| v.path(p)),
            accept_azp_as_audience: accept_azp,
            leeway,
            jwks_refresh_interval: refresh,
            jwks_min_refetch_interval: min_refetch,
        });
    }

    (issuers, seen_issuers)
}

pub(super) fn validate_local(
    raw: Option<RawLocalIssuer>,
    seen_issuers: &BTreeSet<String>,
    v: &mut V,
) -> Option<LocalIssuerConfig> {
    raw.map(|li| {
        let issuer = li.issuer.unwrap_or_else(|| "gatehouse-local".into());
        if seen_issuers.contains(&issuer) {
            v.err(
                "local_issuer.issuer",
                "collides with an [[issuers]] entry; pick another name",
            );
        }
        let signing_key_file = li.signing_key_file.as_deref().map(|p| v.path(p));
        let signing_key = li.signing_key.map(Secret::new);
        if signing_key.is_some() && signing_key_file.is_some() {
            v.err(
                "local_issuer.signing_key",
                "both signing_key and signing_key_file are set; keep one of them",
            );
        }
        let (signing_key_file, signing_key) = if signing_key.is_none() && signing_key_file.is_none()
        {
            (Some(v.path("gatehouse-local-key.pem")), None)
        } else {
            (signing_key_file, signing_key)
        };
        let max_ttl = v.duration("local_issuer.max_ttl", li.max_ttl.as_deref(), "24h");
        LocalIssuerConfig {
            issuer,
            signing_key_file,
            signing_key,
            audience: li.audience.unwrap_or_else(|| "gatehouse".into()),
            max_ttl,
        }
    })
}

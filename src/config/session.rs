//! `[session]`: the browser session cookie, its lifetimes and secret, where
//! browsers may be sent after login and logout, step-up logins.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::values::{Secret, V};
use crate::decision::rules::DomainPattern;

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub(super) struct RawSession {
    cookie_name: Option<String>,
    cookie_domain: Option<String>,
    inactivity: Option<String>,
    lifetime: Option<String>,
    pub(super) insecure_http: Option<bool>,
    secret: Option<String>,
    secret_file: Option<String>,
    per_process_secret: Option<bool>,
    redirect_domains: Option<Vec<String>>,
    default_redirect: Option<String>,
    step_up_acr_values: Option<String>,
    step_up_max_age: Option<String>,
    login_issuer: Option<String>,
}

#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub cookie_name: String,
    pub cookie_domain: Option<String>,
    pub inactivity: Duration,
    pub lifetime: Duration,
    pub insecure_http: bool,
    /// Seals the pre-login cookie and stored IdP tokens; inline or from the environment.
    pub secret: Option<Secret>,
    /// A file holding the secret; created (0600) on first start if missing.
    /// Without `secret`, `secret_file` or `per_process_secret`, a file beside
    /// the SQLite database (or the configuration file) is used.
    pub secret_file: Option<PathBuf>,
    /// A random secret for this process only (logins in progress, stored
    /// refresh tokens and logout hints do not survive a restart).
    pub per_process_secret: bool,
    /// Where `rd` may point after login or logout.
    pub redirect_domains: Vec<crate::decision::rules::DomainPattern>,
    /// Where browsers go when `rd` is missing or refused.
    pub default_redirect: String,
    /// `acr_values` sent to the IdP when a rule needs a second factor the session lacks.
    pub step_up_acr_values: Option<String>,
    /// `max_age` sent with a step-up login, so the IdP authenticates again.
    pub step_up_max_age: Option<Duration>,
    /// The issuer browsers log in at (an `[[issuers]]` entry with a `client_id`).
    pub login_issuer: Option<String>,
}

impl RawSession {
    /// `public_url` is `server.public_url` (its host is a default redirect
    /// domain); `two_factor_acr` is `access.two_factor_acr` (the default
    /// step-up `acr_values`).
    /// `default_secret_file`: where the secret is kept when none is configured.
    pub(super) fn validate(
        self,
        public_url: &url::Url,
        two_factor_acr: &[String],
        default_secret_file: PathBuf,
        v: &mut V,
    ) -> SessionConfig {
        let raw = self;
        let insecure_http = raw.insecure_http.unwrap_or(false);
        let cookie_name = raw
            .cookie_name
            .unwrap_or_else(|| "gatehouse_session".into());
        if cookie_name.is_empty()
            || !cookie_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            v.err(
                "session.cookie_name",
                "use letters, digits, '_' or '-' only",
            );
        }
        let cookie_domain = raw
            .cookie_domain
            .map(|d| d.trim_start_matches('.').to_ascii_lowercase());
        let inactivity = v.duration("session.inactivity", raw.inactivity.as_deref(), "30m");
        let lifetime = v.duration("session.lifetime", raw.lifetime.as_deref(), "12h");
        if inactivity > lifetime {
            v.err(
                "session.inactivity",
                "is longer than session.lifetime; it would never apply",
            );
        }

        let session_secret = v.secret("session.secret", raw.secret, None);
        if session_secret
            .as_ref()
            .is_some_and(|s| s.expose().len() < 32)
        {
            v.err(
            "session.secret",
            "is shorter than 32 characters; use a long random value (e.g. `openssl rand -hex 32`)",
        );
        }
        if session_secret.is_some() && raw.secret_file.is_some() {
            v.err(
                "session.secret",
                "both session.secret and session.secret_file are set; keep one of them",
            );
        }
        let per_process_secret = raw.per_process_secret.unwrap_or(false);
        if per_process_secret && (session_secret.is_some() || raw.secret_file.is_some()) {
            v.err(
                "session.per_process_secret",
                "is set with session.secret or session.secret_file; keep one of them",
            );
        }
        let session_secret_file = match (&raw.secret_file, &session_secret, per_process_secret) {
            (Some(f), _, _) => Some(v.path(f)),
            (None, None, false) => Some(default_secret_file),
            _ => None,
        };
        let mut redirect_domains = Vec::new();
        match &raw.redirect_domains {
            Some(list) => {
                for (i, d) in list.iter().enumerate() {
                    match DomainPattern::parse(d) {
                        Ok(p) => redirect_domains.push(p),
                        Err(e) => v.err(format!("session.redirect_domains[{i}]"), e),
                    }
                }
            }
            None => {
                // The cookie's domain and its subdomains, and gatehouse's own host.
                if let Some(d) = &cookie_domain {
                    for p in [d.clone(), format!("*.{d}")] {
                        if let Ok(p) = DomainPattern::parse(&p) {
                            redirect_domains.push(p);
                        }
                    }
                }
                if let Some(h) = public_url.host_str() {
                    if let Ok(p) = DomainPattern::parse(h) {
                        redirect_domains.push(p);
                    }
                }
            }
        }
        let default_redirect = match raw.default_redirect {
            Some(d) => match url::Url::parse(&d) {
                Ok(u) if u.scheme() == "https" || (insecure_http && u.scheme() == "http") => {
                    u.to_string()
                }
                _ => {
                    v.err(
                    "session.default_redirect",
                    "must be an absolute https:// URL (http:// only with session.insecure_http)",
                );
                    String::new()
                }
            },
            None => format!("{}/", public_url.as_str().trim_end_matches('/')),
        };
        let step_up_max_age = raw
            .step_up_max_age
            .as_deref()
            .map(|s| v.duration("session.step_up_max_age", Some(s), "0s"));
        let step_up_acr_values = raw
            .step_up_acr_values
            .or_else(|| (!two_factor_acr.is_empty()).then(|| two_factor_acr.join(" ")));

        SessionConfig {
            cookie_name,
            cookie_domain,
            inactivity,
            lifetime,
            insecure_http,
            secret: session_secret,
            secret_file: session_secret_file,
            per_process_secret,
            redirect_domains,
            default_redirect,
            step_up_acr_values,
            step_up_max_age,
            login_issuer: raw.login_issuer,
        }
    }
}

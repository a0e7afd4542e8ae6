//! Typed configuration: embedded defaults → TOML file → `GATEHOUSE_*` environment, with
//! `*_file` secrets, every validation error reported at once, and a redacted `Debug`.

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

/// The embedded defaults: what `gatehouse serve` runs on without a config file.
pub const EMBEDDED_DEFAULTS: &str = include_str!("defaults.toml");

/// A secret value: never printed by `Debug` or `Display`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The only way to read the value; grep for it when auditing secret handling.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// One configuration problem: the key path it concerns and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Every problem found in one load, so that an operator fixes them in one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "configuration has {} error(s):", self.0.len())?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

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

// ---------------------------------------------------------------------------
// Raw (as written) configuration. Strings where validation is needed, so that a
// bad value is reported by our validator with a hint instead of stopping serde.
// ---------------------------------------------------------------------------

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct RawConfig {
    server: RawServer,
    store: RawStore,
    issuers: Vec<RawIssuer>,
    local_issuer: Option<RawLocalIssuer>,
    session: RawSession,
    access: RawAccess,
    admin: RawAdmin,
    audit: RawAudit,
    regulation: RawRegulation,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct RawRegulation {
    enabled: Option<bool>,
    max_failures: Option<u32>,
    window: Option<String>,
    ban_time: Option<String>,
    ban_users: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct RawServer {
    listen: Option<String>,
    public_url: Option<String>,
    trusted_proxies: Option<Vec<String>>,
    log_format: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct RawStore {
    url: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct RawIssuer {
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
struct RawLocalIssuer {
    issuer: Option<String>,
    signing_key: Option<String>,
    signing_key_file: Option<String>,
    audience: Option<String>,
    max_ttl: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct RawSession {
    cookie_name: Option<String>,
    cookie_domain: Option<String>,
    inactivity: Option<String>,
    lifetime: Option<String>,
    insecure_http: Option<bool>,
    secret: Option<String>,
    secret_file: Option<String>,
    redirect_domains: Option<Vec<String>>,
    default_redirect: Option<String>,
    step_up_acr_values: Option<String>,
    step_up_max_age: Option<String>,
    login_issuer: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct RawAccess {
    default_policy: Option<String>,
    allowlist_enforced: Option<bool>,
    allowlist: Vec<String>,
    two_factor_acr: Vec<String>,
    two_factor_amr: Option<Vec<String>>,
    rules: Vec<RawRule>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct RawRule {
    domains: Vec<String>,
    paths: Vec<String>,
    methods: Vec<String>,
    networks: Vec<String>,
    subjects: Vec<String>,
    policy: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct RawAdmin {
    roles: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct RawAudit {
    jsonl_file: Option<String>,
    checkpoint_key: Option<String>,
    checkpoint_key_file: Option<String>,
    checkpoint_file: Option<String>,
    checkpoint_every: Option<u64>,
    checkpoint_interval: Option<String>,
    syslog: Option<String>,
    webhook: Option<String>,
    jsonl_max_bytes: Option<u64>,
    jsonl_keep: Option<u32>,
}

// ---------------------------------------------------------------------------
// Validated configuration.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub issuers: Vec<IssuerConfig>,
    pub local_issuer: Option<LocalIssuerConfig>,
    pub session: SessionConfig,
    pub access: AccessConfig,
    pub admin: AdminConfig,
    pub audit: AuditConfig,
    pub regulation: RegulationConfig,
    /// Where the configuration came from, for the one-line summary.
    pub source: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub public_url: url::Url,
    pub trusted_proxies: Vec<IpNet>,
    pub log_format: LogFormat,
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub url: String,
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
    pub secret_file: Option<PathBuf>,
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

/// Brute-force regulation: `max_failures` refused credentials within `window`
/// from one client address (or, with `ban_users`, for one verified user) ban
/// it for `ban_time`.
#[derive(Debug, Clone)]
pub struct RegulationConfig {
    pub enabled: bool,
    pub max_failures: u32,
    pub window: Duration,
    pub ban_time: Duration,
    pub ban_users: bool,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub roles: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct AuditConfig {
    pub jsonl_file: Option<PathBuf>,
    pub checkpoint_key_file: Option<PathBuf>,
    pub checkpoint_key: Option<Secret>,
    pub checkpoint_file: Option<PathBuf>,
    pub checkpoint_every: u64,
    pub checkpoint_interval: Duration,
    pub syslog: Option<String>,
    /// Checkpoints are also POSTed here as JSON.
    pub webhook: Option<url::Url>,
    /// The JSON-lines mirror is rotated when it would grow past this.
    pub jsonl_max_bytes: u64,
    /// Rotated mirror files kept (`audit.jsonl.1` ... `.N`).
    pub jsonl_keep: u32,
}

/// Parses durations such as `90s`, `30m`, `12h`, `7d` or `1h30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut total: u64 = 0;
    let mut num = String::new();
    let mut saw_unit = false;
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let mult = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => return Err(format!("unexpected character {c:?} in duration {s:?}")),
        };
        let n: u64 = num
            .parse()
            .map_err(|_| format!("missing number before '{c}' in duration {s:?}"))?;
        total = n
            .checked_mul(mult)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("duration {s:?} is too large"))?;
        num.clear();
        saw_unit = true;
    }
    if !num.is_empty() || !saw_unit {
        return Err(format!(
            "duration {s:?} needs a unit on every number (s, m, h or d); write e.g. \"30s\", \"5m\" or \"1h30m\""
        ));
    }
    Ok(Duration::from_secs(total))
}

/// Where a configuration load reads from.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    /// An explicit path (from `--config` or `$GATEHOUSE_CONFIG`): it must exist.
    Explicit(PathBuf),
    /// `./gatehouse.toml` if present, else the embedded defaults.
    Default,
}

impl ConfigSource {
    /// `--config`, else `$GATEHOUSE_CONFIG`, else the default.
    pub fn resolve(cli: Option<PathBuf>) -> Self {
        if let Some(p) = cli {
            return Self::Explicit(p);
        }
        match std::env::var_os("GATEHOUSE_CONFIG") {
            Some(p) if !p.is_empty() => Self::Explicit(PathBuf::from(p)),
            _ => Self::Default,
        }
    }
}

/// Environment variables with the `GATEHOUSE_` prefix that are not config keys.
const RESERVED_ENV: &[&str] = &["GATEHOUSE_CONFIG", "GATEHOUSE_LOG"];

impl Config {
    /// Loads from `source` with overrides from the process environment.
    pub fn load(source: &ConfigSource) -> Result<Config, ConfigErrors> {
        let env: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| k.starts_with("GATEHOUSE_"))
            .collect();
        Self::load_with_env(source, &env)
    }

    /// Loads with an explicit environment (tests pass their own).
    pub fn load_with_env(
        source: &ConfigSource,
        env: &[(String, String)],
    ) -> Result<Config, ConfigErrors> {
        let (text, base_dir, label) = match source {
            ConfigSource::Explicit(p) => match std::fs::read_to_string(p) {
                Ok(t) => (
                    t,
                    p.parent().map(Path::to_path_buf).unwrap_or_default(),
                    p.display().to_string(),
                ),
                Err(e) => {
                    return Err(one_error(
                        "--config",
                        format!(
                            "cannot read {}: {e}; pass an existing file or omit --config to use ./gatehouse.toml or the embedded defaults",
                            p.display()
                        ),
                    ))
                }
            },
            ConfigSource::Default => {
                let p = PathBuf::from("gatehouse.toml");
                match std::fs::read_to_string(&p) {
                    Ok(t) => (t, PathBuf::from("."), "./gatehouse.toml".to_string()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => (
                        EMBEDDED_DEFAULTS.to_string(),
                        PathBuf::from("."),
                        "embedded defaults".to_string(),
                    ),
                    Err(e) => {
                        return Err(one_error(
                            "--config",
                            format!("cannot read ./gatehouse.toml: {e}"),
                        ))
                    }
                }
            }
        };
        Self::from_toml_str(&text, &base_dir, &label, env)
    }

    /// Parses and validates TOML text; relative paths resolve against `base_dir`.
    pub fn from_toml_str(
        text: &str,
        base_dir: &Path,
        label: &str,
        env: &[(String, String)],
    ) -> Result<Config, ConfigErrors> {
        let mut errors = Vec::new();
        let mut value: toml::Value = match toml::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                let msg = e.message().to_string();
                let at = e
                    .span()
                    .map(|s| {
                        let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                        format!(" (line {line})")
                    })
                    .unwrap_or_default();
                return Err(one_error(label, format!("not valid TOML{at}: {msg}")));
            }
        };
        apply_env(&mut value, env, &mut errors);

        let mut unknown = Vec::new();
        let raw: RawConfig =
            match serde_ignored::deserialize(value, |path| unknown.push(path.to_string())) {
                Ok(r) => r,
                Err(e) => {
                    // toml names the key as "...\nin `server.listen`"; lift it out.
                    let text = e.to_string();
                    let (message, key) = match text.trim_end().rsplit_once("\nin `") {
                        Some((m, k)) => (m.to_string(), bracket_indexes(k.trim_end_matches('`'))),
                        None => (text.clone(), label.to_string()),
                    };
                    errors.push(ConfigError {
                        key,
                        message: message.replace('\n', " "),
                    });
                    return Err(ConfigErrors(errors));
                }
            };
        for key in unknown {
            errors.push(ConfigError {
                key: bracket_indexes(&key),
                message: "unknown key; check the spelling against docs/configuration.md".into(),
            });
        }
        let cfg = validate(raw, base_dir, label, &mut errors);
        if errors.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// The one-line summary printed by `check-config`.
    pub fn summary(&self) -> String {
        format!(
            "ok: {} — listen {}, {} issuer(s){}, {} rule(s), default policy {}, store {}",
            self.source,
            self.server.listen,
            self.issuers.len(),
            if self.local_issuer.is_some() {
                " + local issuer"
            } else {
                ""
            },
            self.access.rules.len(),
            self.access.default_policy.as_str(),
            redact_url(&self.store.url),
        )
    }
}

/// `access.rules.0.domain` → `access.rules[0].domain`, as every other error names keys.
fn bracket_indexes(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 4);
    for seg in path.split('.') {
        if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
            out.push('[');
            out.push_str(seg);
            out.push(']');
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(seg);
        }
    }
    out
}

fn one_error(key: &str, message: String) -> ConfigErrors {
    ConfigErrors(vec![ConfigError {
        key: key.into(),
        message,
    }])
}

/// Drops a password from a store URL before it is shown.
pub fn redact_url(u: &str) -> String {
    match url::Url::parse(u) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => u.to_string(),
    }
}

/// Applies `GATEHOUSE_SECTION__KEY=value` overrides; `__` separates levels and a
/// numeric level indexes an array (`GATEHOUSE_ISSUERS__0__CLIENT_SECRET`).
fn apply_env(root: &mut toml::Value, env: &[(String, String)], errors: &mut Vec<ConfigError>) {
    let mut vars: Vec<&(String, String)> = env.iter().collect();
    vars.sort();
    for (name, raw_value) in vars {
        if RESERVED_ENV.contains(&name.as_str()) {
            continue;
        }
        let Some(rest) = name.strip_prefix("GATEHOUSE_") else {
            continue;
        };
        if !rest.contains("__") {
            tracing::warn!(variable = %name, "ignoring GATEHOUSE_ variable that is not a config override (use GATEHOUSE_SECTION__KEY)");
            continue;
        }
        let parts: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
        if parts.iter().any(|p| p.is_empty()) {
            errors.push(ConfigError {
                key: name.clone(),
                message: "empty path segment; use GATEHOUSE_SECTION__KEY".into(),
            });
            continue;
        }
        if let Err(msg) = set_path(root, &parts, raw_value) {
            errors.push(ConfigError {
                key: name.clone(),
                message: msg,
            });
        }
    }
}

fn env_value(existing: Option<&toml::Value>, raw: &str) -> toml::Value {
    // A string stays a string; otherwise try TOML syntax (true, 42, ["a","b"]).
    if let Some(toml::Value::String(_)) = existing {
        return toml::Value::String(raw.to_string());
    }
    let doc = format!("v = {raw}");
    match toml::from_str::<toml::Table>(&doc) {
        Ok(mut t) => t.remove("v").unwrap_or(toml::Value::String(raw.into())),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

fn set_path(root: &mut toml::Value, parts: &[String], raw: &str) -> Result<(), String> {
    let mut cur = root;
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        if let Ok(idx) = part.parse::<usize>() {
            let arr = cur
                .as_array_mut()
                .ok_or_else(|| format!("segment {part} indexes something that is not a list"))?;
            if idx > arr.len() {
                return Err(format!(
                    "index {idx} skips entries; the list has {} entries",
                    arr.len()
                ));
            }
            if idx == arr.len() {
                arr.push(toml::Value::Table(toml::Table::new()));
            }
            if last {
                let v = env_value(Some(&arr[idx]), raw);
                arr[idx] = v;
                return Ok(());
            }
            cur = &mut arr[idx];
        } else {
            let table = cur
                .as_table_mut()
                .ok_or_else(|| format!("segment {part} is inside something that is not a table"))?;
            if last {
                let v = env_value(table.get(part.as_str()), raw);
                table.insert(part.clone(), v);
                return Ok(());
            }
            let next_is_index = parts[i + 1].parse::<usize>().is_ok();
            cur = table.entry(part.clone()).or_insert_with(|| {
                if next_is_index {
                    toml::Value::Array(Vec::new())
                } else {
                    toml::Value::Table(toml::Table::new())
                }
            });
        }
    }
    Ok(())
}

struct V<'a> {
    errors: &'a mut Vec<ConfigError>,
    base_dir: &'a Path,
}

impl V<'_> {
    fn err(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            key: key.into(),
            message: message.into(),
        });
    }

    fn duration(&mut self, key: &str, v: Option<&str>, default: &str) -> Duration {
        let s = v.unwrap_or(default);
        match parse_duration(s) {
            Ok(d) => d,
            Err(e) => {
                self.err(key, e);
                parse_duration(default).unwrap_or_default()
            }
        }
    }

    fn path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    /// Inline value, or the contents of `*_file`; both is an error.
    fn secret(&mut self, key: &str, inline: Option<String>, file: Option<&str>) -> Option<Secret> {
        match (inline, file) {
            (Some(_), Some(_)) => {
                self.err(
                    key,
                    format!("both {key} and {key}_file are set; keep one of them"),
                );
                None
            }
            (Some(s), None) => Some(Secret::new(s)),
            (None, Some(f)) => {
                let path = self.path(f);
                match std::fs::read_to_string(&path) {
                    Ok(s) => Some(Secret::new(s.trim_end_matches(['\r', '\n']).to_string())),
                    Err(e) => {
                        self.err(
                            format!("{key}_file"),
                            format!("cannot read {}: {e}", path.display()),
                        );
                        None
                    }
                }
            }
            (None, None) => None,
        }
    }

    fn cidr(&mut self, key: &str, s: &str) -> Option<IpNet> {
        parse_cidr(s).map_err(|e| self.err(key, e)).ok()
    }
}

/// Parses a CIDR or a bare address (as a host route), normalised to its network.
pub fn parse_cidr(s: &str) -> Result<IpNet, String> {
    let t = s.trim();
    if let Ok(n) = t.parse::<IpNet>() {
        if n.network() != n.addr() {
            return Err(format!(
                "{t:?} has host bits set; did you mean {}?",
                n.trunc()
            ));
        }
        return Ok(n);
    }
    if let Ok(a) = t.parse::<std::net::IpAddr>() {
        return Ok(IpNet::from(a));
    }
    Err(format!(
        "{t:?} is not an IP network; write e.g. \"192.168.1.0/24\" or \"2001:db8::/32\""
    ))
}

fn validate(raw: RawConfig, base_dir: &Path, label: &str, errors: &mut Vec<ConfigError>) -> Config {
    let mut v = V { errors, base_dir };

    // [server]
    let listen_s = raw.server.listen.unwrap_or_else(|| "127.0.0.1:9091".into());
    let listen = listen_s.parse::<SocketAddr>().unwrap_or_else(|_| {
        v.err(
            "server.listen",
            format!("{listen_s:?} is not an address:port; write e.g. \"127.0.0.1:9091\""),
        );
        SocketAddr::from(([127, 0, 0, 1], 9091))
    });
    let insecure_http = raw.session.insecure_http.unwrap_or(false);
    let public_missing = raw.server.public_url.is_none();
    let public_s = raw
        .server
        .public_url
        .unwrap_or_else(|| format!("http://{listen}"));
    let public_url = match url::Url::parse(&public_s) {
        Ok(u) if u.scheme() == "https" || (u.scheme() == "http" && insecure_http) => {
            if u.query().is_some() || u.fragment().is_some() || !u.username().is_empty() {
                v.err(
                    "server.public_url",
                    "must not carry a query, fragment or user info",
                );
            }
            u
        }
        Ok(u) if u.scheme() == "http" => {
            v.err(
                "server.public_url",
                if public_missing {
                    "missing; set the https:// URL where browsers reach gatehouse, e.g. \"https://auth.example.com\""
                } else {
                    "http:// is only allowed with session.insecure_http = true (local development); use https://"
                },
            );
            u
        }
        _ => {
            v.err(
                "server.public_url",
                format!(
                    "{public_s:?} is not an https URL; write e.g. \"https://auth.example.com\""
                ),
            );
            url::Url::parse("http://127.0.0.1:9091").expect("static url")
        }
    };
    let trusted_proxies = raw
        .server
        .trusted_proxies
        .unwrap_or_else(|| vec!["127.0.0.1/32".into(), "::1/128".into()])
        .iter()
        .enumerate()
        .filter_map(|(i, s)| v.cidr(&format!("server.trusted_proxies[{i}]"), s))
        .collect();
    let log_format = match raw.server.log_format.as_deref().unwrap_or("text") {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => {
            v.err(
                "server.log_format",
                format!("{other:?} is not a log format; use \"text\" or \"json\""),
            );
            LogFormat::Text
        }
    };

    // [store]
    let store_url = raw
        .store
        .url
        .unwrap_or_else(|| "sqlite://gatehouse.db".into());
    if !(store_url.starts_with("sqlite:")
        || store_url.starts_with("postgres://")
        || store_url.starts_with("postgresql://"))
    {
        v.err(
            "store.url",
            "must start with sqlite:// (embedded) or postgres:// (shared); e.g. \"sqlite://gatehouse.db\"",
        );
    }
    // A relative SQLite path resolves against the config file's directory, like every path.
    let store_url = match store_url.strip_prefix("sqlite://") {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') && !rest.starts_with(':') => {
            format!("sqlite://{}", v.path(rest).display())
        }
        _ => store_url,
    };

    // [[issuers]]
    let mut issuers = Vec::new();
    let mut seen_issuers = BTreeSet::new();
    for (i, ri) in raw.issuers.into_iter().enumerate() {
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

    // [local_issuer]
    let local_issuer = raw.local_issuer.map(|li| {
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
    });

    // [session]
    let cookie_name = raw
        .session
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
        .session
        .cookie_domain
        .map(|d| d.trim_start_matches('.').to_ascii_lowercase());
    let inactivity = v.duration(
        "session.inactivity",
        raw.session.inactivity.as_deref(),
        "30m",
    );
    let lifetime = v.duration("session.lifetime", raw.session.lifetime.as_deref(), "12h");
    if inactivity > lifetime {
        v.err(
            "session.inactivity",
            "is longer than session.lifetime; it would never apply",
        );
    }

    let session_secret = v.secret("session.secret", raw.session.secret, None);
    if session_secret
        .as_ref()
        .is_some_and(|s| s.expose().len() < 32)
    {
        v.err(
            "session.secret",
            "is shorter than 32 characters; use a long random value (e.g. `openssl rand -hex 32`)",
        );
    }
    if session_secret.is_some() && raw.session.secret_file.is_some() {
        v.err(
            "session.secret",
            "both session.secret and session.secret_file are set; keep one of them",
        );
    }
    let session_secret_file = raw.session.secret_file.as_deref().map(|f| v.path(f));
    let mut redirect_domains = Vec::new();
    match &raw.session.redirect_domains {
        Some(list) => {
            for (i, d) in list.iter().enumerate() {
                match crate::decision::rules::DomainPattern::parse(d) {
                    Ok(p) => redirect_domains.push(p),
                    Err(e) => v.err(format!("session.redirect_domains[{i}]"), e),
                }
            }
        }
        None => {
            // The cookie's domain and its subdomains, and gatehouse's own host.
            if let Some(d) = &cookie_domain {
                for p in [d.clone(), format!("*.{d}")] {
                    if let Ok(p) = crate::decision::rules::DomainPattern::parse(&p) {
                        redirect_domains.push(p);
                    }
                }
            }
            if let Some(h) = public_url.host_str() {
                if let Ok(p) = crate::decision::rules::DomainPattern::parse(h) {
                    redirect_domains.push(p);
                }
            }
        }
    }
    let default_redirect = match raw.session.default_redirect {
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
        .session
        .step_up_max_age
        .as_deref()
        .map(|s| v.duration("session.step_up_max_age", Some(s), "0s"));
    let step_up_acr_values = raw.session.step_up_acr_values.or_else(|| {
        (!raw.access.two_factor_acr.is_empty()).then(|| raw.access.two_factor_acr.join(" "))
    });

    // [access]
    let default_policy_s = raw.access.default_policy.unwrap_or_else(|| "deny".into());
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
        .access
        .allowlist
        .iter()
        .enumerate()
        .filter_map(|(i, s)| v.cidr(&format!("access.allowlist[{i}]"), s))
        .collect();
    let mut rules = Vec::new();
    for (i, rr) in raw.access.rules.into_iter().enumerate() {
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
                    format!("{p:?} is not a policy; use deny, one_factor, two_factor or bypass"),
                );
                PolicyLevel::Deny
            }),
        };
        for (j, d) in rr.domains.iter().enumerate() {
            if let Err(e) = crate::decision::rules::DomainPattern::parse(d) {
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
            if let Err(e) = crate::decision::rules::SubjectMatcher::parse(s) {
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

    // [regulation]
    let max_failures = raw.regulation.max_failures.unwrap_or(10);
    if max_failures == 0 {
        v.err(
            "regulation.max_failures",
            "must be at least 1; to switch regulation off set regulation.enabled = false",
        );
    }
    let regulation = RegulationConfig {
        enabled: raw.regulation.enabled.unwrap_or(true),
        max_failures: max_failures.max(1),
        window: v.duration("regulation.window", raw.regulation.window.as_deref(), "2m"),
        ban_time: v.duration(
            "regulation.ban_time",
            raw.regulation.ban_time.as_deref(),
            "15m",
        ),
        ban_users: raw.regulation.ban_users.unwrap_or(true),
    };

    // [admin]
    let admin_roles = raw.admin.roles.unwrap_or_else(|| vec!["admin".into()]);
    if admin_roles.is_empty() {
        v.err(
            "admin.roles",
            "at least one role is needed, or nobody can administer gatehouse",
        );
    }

    // [audit]
    let checkpoint_key = raw.audit.checkpoint_key.map(Secret::new);
    let checkpoint_interval = v.duration(
        "audit.checkpoint_interval",
        raw.audit.checkpoint_interval.as_deref(),
        "5m",
    );
    let checkpoint_every = raw.audit.checkpoint_every.unwrap_or(100);
    if checkpoint_every == 0 {
        v.err("audit.checkpoint_every", "must be at least 1");
    }
    if let Some(s) = &raw.audit.syslog {
        if !(s.starts_with("udp://") || s.starts_with("tcp://")) {
            v.err("audit.syslog", "use udp://host:port or tcp://host:port");
        }
    }
    if checkpoint_key
        .as_ref()
        .is_some_and(|k| k.expose().len() < 32)
    {
        v.err(
            "audit.checkpoint_key",
            "is shorter than 32 characters; use a long random value (e.g. `openssl rand -hex 32`)",
        );
    }
    if checkpoint_key.is_some() && raw.audit.checkpoint_key_file.is_some() {
        v.err(
            "audit.checkpoint_key",
            "both audit.checkpoint_key and audit.checkpoint_key_file are set; keep one of them",
        );
    }
    let has_key = checkpoint_key.is_some() || raw.audit.checkpoint_key_file.is_some();
    if has_key != raw.audit.checkpoint_file.is_some() {
        v.err(
            "audit.checkpoint_file",
            "checkpoints need both a key (audit.checkpoint_key_file) and a file to append them to (audit.checkpoint_file)",
        );
    }
    let webhook = raw
        .audit
        .webhook
        .as_deref()
        .and_then(|w| match url::Url::parse(w) {
            Ok(u) if u.scheme() == "https" || u.scheme() == "http" => Some(u),
            _ => {
                v.err("audit.webhook", "must be an http:// or https:// URL");
                None
            }
        });
    let audit = AuditConfig {
        jsonl_file: raw.audit.jsonl_file.as_deref().map(|p| v.path(p)),
        checkpoint_key_file: raw.audit.checkpoint_key_file.as_deref().map(|p| v.path(p)),
        checkpoint_key,
        checkpoint_file: raw.audit.checkpoint_file.as_deref().map(|p| v.path(p)),
        checkpoint_every,
        checkpoint_interval,
        syslog: raw.audit.syslog,
        webhook,
        jsonl_max_bytes: raw
            .audit
            .jsonl_max_bytes
            .unwrap_or(10 * 1024 * 1024)
            .max(4096),
        jsonl_keep: raw.audit.jsonl_keep.unwrap_or(5),
    };

    Config {
        server: ServerConfig {
            listen,
            public_url,
            trusted_proxies,
            log_format,
        },
        store: StoreConfig { url: store_url },
        issuers,
        local_issuer,
        session: SessionConfig {
            cookie_name,
            cookie_domain,
            inactivity,
            lifetime,
            insecure_http,
            secret: session_secret,
            secret_file: session_secret_file,
            redirect_domains,
            default_redirect,
            step_up_acr_values,
            step_up_max_age,
            login_issuer: raw.session.login_issuer,
        },
        access: AccessConfig {
            default_policy,
            allowlist_enforced: raw.access.allowlist_enforced.unwrap_or(false),
            allowlist,
            two_factor_acr: raw.access.two_factor_acr,
            two_factor_amr: raw
                .access
                .two_factor_amr
                .unwrap_or_else(|| vec!["otp".into(), "hwk".into(), "mfa".into()]),
            rules,
        },
        admin: AdminConfig { roles: admin_roles },
        audit,
        regulation,
        source: label.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
        // Plain-http public URL for brevity; the override path is exercised on the way.
        let env: Vec<(String, String)> = env
            .iter()
            .chain([("GATEHOUSE_SESSION__INSECURE_HTTP", "true")].iter())
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        Config::from_toml_str(text, Path::new("/etc/gatehouse"), "test.toml", &env)
    }

    fn keys(e: &ConfigErrors) -> Vec<&str> {
        e.0.iter().map(|e| e.key.as_str()).collect()
    }

    #[test]
    fn public_url_must_be_https_unless_insecure_http() {
        let e = Config::from_toml_str("", Path::new("."), "t", &[]).unwrap_err();
        assert_eq!(keys(&e), vec!["server.public_url"]);
        let c = Config::from_toml_str(
            "[server]\npublic_url = \"https://auth.example.com/\"\n",
            Path::new("."),
            "t",
            &[],
        )
        .unwrap();
        assert_eq!(c.server.public_url.as_str(), "https://auth.example.com/");
    }

    #[test]
    fn embedded_defaults_are_valid() {
        let c = load(EMBEDDED_DEFAULTS, &[]).expect("defaults must validate");
        assert!(c.local_issuer.is_some());
        assert!(c.store.url.starts_with("sqlite:"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172800));
        for bad in ["", "30", "m", "3x", "1h30", "-5m", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn every_error_is_reported_with_its_key() {
        let e = load(
            r#"
[server]
listen = "nope"
public_url = "ftp://x"
trusted_proxies = ["10.0.0.1/8"]
[access]
default_policy = "maybe"
allowlist = ["300.1.1.1"]
[[access.rules]]
domains = ["*bad*.example.com"]
paths = ["(["]
policy = "sometimes"
subjects = ["team:x"]
[session]
inactivity = "10"
"#,
            &[],
        )
        .unwrap_err();
        let k = keys(&e);
        for want in [
            "server.listen",
            "server.public_url",
            "server.trusted_proxies[0]",
            "access.default_policy",
            "access.allowlist[0]",
            "access.rules[0].domains[0]",
            "access.rules[0].paths[0]",
            "access.rules[0].policy",
            "access.rules[0].subjects[0]",
            "session.inactivity",
        ] {
            assert!(k.contains(&want), "missing {want} in {k:?}");
        }
    }

    #[test]
    fn unknown_keys_are_errors() {
        let e = load(
            "[server]\nlisten_addr = \"1.2.3.4:5\"\n[acess]\nx=1\n[[access.rules]]\npolicy = \"deny\"\ndomain = [\"a\"]\n",
            &[],
        )
        .unwrap_err();
        let k = keys(&e);
        assert!(k.contains(&"server.listen_addr"), "{k:?}");
        assert!(k.contains(&"acess"), "{k:?}");
        assert!(k.contains(&"access.rules[0].domain"), "{k:?}");
    }

    #[test]
    fn type_errors_name_their_key() {
        let e = load("[server]\nlisten = 5\n", &[]).unwrap_err();
        assert_eq!(keys(&e), vec!["server.listen"]);
        assert!(!e.0[0].message.contains('\n'));
    }

    #[test]
    fn env_overrides() {
        let c = load(
            "[server]\nlisten = \"127.0.0.1:1\"\n[[issuers]]\nissuer = \"https://idp.example\"\naudiences = [\"a\"]\n",
            &[
                ("GATEHOUSE_SERVER__LISTEN", "127.0.0.1:2"),
                ("GATEHOUSE_ACCESS__ALLOWLIST_ENFORCED", "true"),
                ("GATEHOUSE_ACCESS__ALLOWLIST", "[\"10.0.0.0/8\"]"),
                ("GATEHOUSE_ISSUERS__0__CLIENT_SECRET", "s3cret"),
                ("GATEHOUSE_CONFIG", "ignored"),
            ],
        )
        .unwrap();
        assert_eq!(c.server.listen.port(), 2);
        assert!(c.access.allowlist_enforced);
        assert_eq!(c.access.allowlist.len(), 1);
        assert_eq!(
            c.issuers[0].client_secret.as_ref().unwrap().expose(),
            "s3cret"
        );
        let e = load("", &[("GATEHOUSE_SERVER__NOPE", "1")]).unwrap_err();
        assert_eq!(keys(&e), vec!["server.nope"]);
    }

    #[test]
    fn secrets_never_print() {
        let c = load(
            "[[issuers]]\nissuer = \"https://idp.example\"\naudiences = [\"a\"]\nclient_secret = \"hunter2\"\n",
            &[],
        )
        .unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("hunter2"));
        assert!(dbg.contains("***"));
    }

    #[test]
    fn secret_file_and_inline_conflict() {
        let e = load(
            "[[issuers]]\nissuer = \"https://idp.example\"\naudiences = [\"a\"]\nclient_secret = \"x\"\nclient_secret_file = \"/nonexistent\"\n",
            &[],
        )
        .unwrap_err();
        assert_eq!(keys(&e), vec!["issuers[0].client_secret"]);
        let e = load(
            "[[issuers]]\nissuer = \"https://idp.example\"\naudiences = [\"a\"]\nclient_secret_file = \"/nonexistent/x\"\n",
            &[],
        )
        .unwrap_err();
        assert_eq!(keys(&e), vec!["issuers[0].client_secret_file"]);
    }

    #[test]
    fn issuer_rules() {
        let e = load("[[issuers]]\nissuer = \"http://idp.example\"\n", &[]).unwrap_err();
        let k = keys(&e);
        assert!(k.contains(&"issuers[0].issuer"));
        assert!(k.contains(&"issuers[0].audiences"));
        let c = load(
            "[[issuers]]\nissuer = \"http://127.0.0.1:1\"\nallow_insecure_http = true\naudiences=[\"x\"]\nclient_id = \"gh\"\n",
            &[],
        )
        .unwrap();
        assert_eq!(
            c.issuers[0].roles_claims,
            vec!["realm_access.roles", "resource_access.gh.roles", "groups"]
        );
    }

    #[test]
    fn relative_paths_resolve_against_the_config_dir() {
        let c = load("[local_issuer]\nsigning_key_file = \"k.pem\"\n", &[]).unwrap();
        assert_eq!(
            c.local_issuer.unwrap().signing_key_file.unwrap(),
            PathBuf::from("/etc/gatehouse/k.pem")
        );
    }

    #[test]
    fn sqlite_paths_resolve_against_the_config_dir() {
        let c = load("[store]\nurl = \"sqlite://data/g.db\"\n", &[]).unwrap();
        assert_eq!(c.store.url, "sqlite:///etc/gatehouse/data/g.db");
        let c = load("[store]\nurl = \"sqlite:///var/lib/g.db\"\n", &[]).unwrap();
        assert_eq!(c.store.url, "sqlite:///var/lib/g.db");
        let c = load("[store]\nurl = \"postgres://u@h/db\"\n", &[]).unwrap();
        assert_eq!(c.store.url, "postgres://u@h/db");
    }

    #[test]
    fn cidrs_are_strict() {
        assert!(parse_cidr("10.0.0.0/8").is_ok());
        assert!(parse_cidr("10.0.0.1").is_ok());
        assert!(parse_cidr("10.0.0.1/8").is_err());
        assert!(parse_cidr("2001:db8::/32").is_ok());
        assert!(parse_cidr("banana").is_err());
    }
}

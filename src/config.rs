//! Typed configuration: embedded defaults → TOML file → `GATEHOUSE_*` environment, with
//! `*_file` secrets, every validation error reported at once, and a redacted `Debug`.
//! Each section's raw form, validated form and checks live in its own module.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

mod access;
mod actions;
mod admin;
mod audit;
mod control;
mod env;
mod issuers;
mod notify;
mod regulation;
mod server;
mod session;
mod store;
mod values;

pub use access::{AccessConfig, PolicyLevel, RuleConfig};
pub use actions::{placeholder, ActionConfig, ParamKind, ParamSpec};
pub use admin::AdminConfig;
pub use audit::AuditConfig;
pub use control::{
    ControlConfig, KillSwitchConfig, PowerBackend, PowerConfig, ServiceBackend, ServiceConfig,
};
pub use issuers::{IssuerConfig, LocalIssuerConfig};
pub use notify::{NotifyConfig, SmtpConfig, SmtpTls, TelegramConfig, WebhookConfig, EVENTS};
pub use regulation::RegulationConfig;
pub use server::{LogFormat, ServerConfig, TlsFiles};
pub use session::SessionConfig;
pub use store::StoreConfig;
pub use values::{parse_cidr, parse_duration, Secret};

use env::apply_env;
use values::V;

/// The embedded defaults: what `gatehouse serve` runs on without a config file.
pub const EMBEDDED_DEFAULTS: &str = include_str!("defaults.toml");

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

/// The configuration as written: each section deserialised into its raw form,
/// strings where validation is needed so that a bad value gets our message.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct RawConfig {
    server: server::RawServer,
    store: store::RawStore,
    issuers: Vec<issuers::RawIssuer>,
    local_issuer: Option<issuers::RawLocalIssuer>,
    session: session::RawSession,
    access: access::RawAccess,
    admin: admin::RawAdmin,
    audit: audit::RawAudit,
    regulation: regulation::RawRegulation,
    control: control::RawControl,
    actions: Vec<actions::RawAction>,
    notify: notify::RawNotify,
}

/// The validated configuration.
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
    pub control: ControlConfig,
    pub actions: Vec<ActionConfig>,
    pub notify: NotifyConfig,
    /// Where the configuration came from, for the one-line summary.
    pub source: String,
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

/// Validates every section, each next to its type; a section's checks that
/// need another's values get them passed in.
fn validate(raw: RawConfig, base_dir: &Path, label: &str, errors: &mut Vec<ConfigError>) -> Config {
    let mut v = V { errors, base_dir };
    let insecure_http = raw.session.insecure_http.unwrap_or(false);
    let server = raw.server.validate(insecure_http, &mut v);
    let store = raw.store.validate(&mut v);
    let (issuers, issuer_names) = issuers::validate(raw.issuers, &mut v);
    let local_issuer = issuers::validate_local(raw.local_issuer, &issuer_names, &mut v);
    // Without a configured secret, one kept in a file beside the SQLite
    // database (or, for PostgreSQL, the configuration file) survives restarts.
    let secret_dir = crate::store::sqlite_path(&store.url)
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or_else(|| base_dir.to_path_buf());
    let session = raw.session.validate(
        &server.public_url,
        &raw.access.two_factor_acr,
        secret_dir.join("gatehouse-session-secret"),
        &mut v,
    );
    let access = raw.access.validate(&mut v);
    let regulation = raw.regulation.validate(&mut v);
    let admin = raw.admin.validate(&mut v);
    let audit = raw.audit.validate(&mut v);
    let control = raw.control.validate(&mut v);
    let actions = actions::validate(raw.actions, &mut v);
    let notify = raw.notify.validate(&mut v);
    Config {
        server,
        store,
        issuers,
        local_issuer,
        session,
        access,
        admin,
        audit,
        regulation,
        control,
        actions,
        notify,
        source: label.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(
            parse_duration("1m30s500ms").unwrap(),
            Duration::from_millis(90_500)
        );
        assert!(parse_duration("5mss").is_err());
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
    fn control_and_permissions_errors_name_their_keys() {
        let e = load(
            r#"
[admin.permissions]
ops = ["control:services", "control:everything"]
idle = []
[control]
fresh_auth = "soon"
[control.kill_switch]
services = ["feed", "ghost"]
after = [["no-such-program-here", "FLUSHALL"], ["true"]]
[[control.services]]
name = "feed"
start = ["bin/feedd"]
stop = ["/usr/bin/feedctl", "stop"]
[[control.services]]
name = "feed"
backend = "systemd"
[[control.services]]
name = "bad name"
start = ["/bin/true"]
stop = ["/bin/true"]
[[control.services]]
name = "unit"
backend = "systemd"
unit = "x.service"
start = ["/bin/true"]
[[control.services]]
name = "odd"
backend = "launchd"
"#,
            &[],
        )
        .unwrap_err();
        let k = keys(&e);
        for want in [
            "admin.permissions.ops[1]",
            "admin.permissions.idle",
            "control.fresh_auth",
            "control.kill_switch.services[1]",
            "control.kill_switch.after[0]",
            "control.services[0].start",
            "control.services[1].name",
            "control.services[1].unit",
            "control.services[2].name",
            "control.services[3].start",
            "control.services[4].backend",
        ] {
            assert!(k.contains(&want), "missing {want} in {k:?}");
        }
        assert!(e.to_string().contains("absolute path"), "{e}");
        assert!(
            !k.contains(&"control.kill_switch.after[1]"),
            "`true` is found: {k:?}"
        );
        assert!(
            e.to_string().contains("control:services"),
            "lists the names: {e}"
        );
    }

    #[test]
    fn power_errors_name_their_keys() {
        let e = load(
            r#"
[[control.power]]
name = "a"
backend = "redfish"
url = "http://bmc.lan"
username = "admin"
[[control.power]]
name = "b"
backend = "nanokvm"
url = "https://kvm.lan"
[[control.power]]
name = "c"
backend = "redfish"
url = "https://bmc.lan"
system = "/somewhere"
services = ["ghost"]
ca_file = "/nonexistent/ca.pem"
graceful_timeout = "later"
[[control.power]]
name = "d"
backend = "ipmi"
url = "https://x"
"#,
            &[],
        )
        .unwrap_err();
        let k = keys(&e);
        for want in [
            "control.power[0].url",
            "control.power[0].password_file",
            "control.power[1].password_file",
            "control.power[2].system",
            "control.power[2].services[0]",
            "control.power[2].ca_file",
            "control.power[2].graceful_timeout",
            "control.power[3].backend",
        ] {
            assert!(k.contains(&want), "missing {want} in {k:?}");
        }
        assert!(e.to_string().contains("password in the clear"), "{e}");
    }

    #[test]
    fn action_errors_name_their_keys() {
        let e = load(
            r#"
[[actions]]
name = "a"
argv = ["/bin/echo", "--days={days}", "{ghost}"]
params = { days = { type = "integer", min = 9, max = 1 }, unused = { type = "enum" } }
[[actions]]
name = "b"
argv = ["{prog}"]
params = { prog = { type = "string" }, x = { type = "float" } }
permission = "root"
"#,
            &[],
        )
        .unwrap_err();
        let k = keys(&e);
        for want in [
            "actions[0].argv[1]",
            "actions[0].argv[2]",
            "actions[0].params.days.min",
            "actions[0].params.unused.values",
            "actions[1].argv[0]",
            "actions[1].params.prog.pattern",
            "actions[1].params.x.type",
            "actions[1].permission",
        ] {
            assert!(k.contains(&want), "missing {want} in {k:?}");
        }
    }

    #[test]
    fn notify_errors_name_their_keys() {
        let e = load(
            r#"
[notify]
events = ["kill_switch", "lunch"]
webhook = [{ url = "http://hooks.example.com/x" }, { secret = "s" }]
telegram = { chat_id = "" }
smtp = { host = "mail.example.com", tls = "none", from = "nobody", to = [], username = "u" }
"#,
            &[],
        )
        .unwrap_err();
        let k = keys(&e);
        for want in [
            "notify.events[1]",
            "notify.webhook[0].url",
            "notify.webhook[1].url",
            "notify.telegram.bot_token_file",
            "notify.telegram.chat_id",
            "notify.smtp.tls",
            "notify.smtp.from",
            "notify.smtp.to",
            "notify.smtp.password_file",
        ] {
            assert!(k.contains(&want), "missing {want} in {k:?}");
        }
    }

    #[test]
    fn control_and_permissions_load() {
        let c = load(
            r#"
[admin.permissions]
ops = ["control:services", "control:kill"]
all = ["*"]
[control.kill_switch]
services = ["feed"]
after = [["true"]]
engage_deny = true
[[control.services]]
name = "feed"
start = ["/usr/bin/feed", "--daemon"]
stop = ["/usr/bin/feedctl", "stop"]
env = { FEED_HOME = "/var/lib/feed" }
working_dir = "state"
[[control.services]]
name = "engine"
backend = "systemd"
unit = "engine.service"
"#,
            &[],
        )
        .unwrap();
        assert_eq!(
            c.admin.permissions["ops"].names(),
            vec!["control:services", "control:kill"]
        );
        assert!(c.admin.permissions["all"].is_all());
        assert_eq!(c.control.fresh_auth, Duration::from_secs(600));
        assert!(c.control.kill_switch.engage_deny);
        assert!(
            c.control.kill_switch.after[0][0].ends_with("/true")
                && c.control.kill_switch.after[0][0].starts_with('/'),
            "resolved once at load: {:?}",
            c.control.kill_switch.after
        );
        match &c.control.services[0].backend {
            ServiceBackend::Command {
                working_dir,
                env,
                status,
                ..
            } => {
                assert!(working_dir.as_ref().unwrap().ends_with("state"));
                assert_eq!(env["FEED_HOME"], "/var/lib/feed");
                assert!(status.is_none());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(c.control.services[1].backend.as_str(), "systemd");
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
    fn the_session_secret_is_kept_beside_the_database_unless_chosen_otherwise() {
        let c = load("[store]\nurl = \"sqlite:///var/lib/gh/db.sqlite\"\n", &[]).unwrap();
        assert_eq!(
            c.session.secret_file.as_deref(),
            Some(Path::new("/var/lib/gh/gatehouse-session-secret"))
        );
        let c = load("[session]\nper_process_secret = true\n", &[]).unwrap();
        assert_eq!(
            (c.session.secret_file, c.session.per_process_secret),
            (None, true)
        );
        let c = load(
            "[session]\nsecret = \"0123456789abcdef0123456789abcdef\"\n",
            &[],
        )
        .unwrap();
        assert!(c.session.secret_file.is_none());
        let e = load(
            "[session]\nper_process_secret = true\nsecret_file = \"s\"\n",
            &[],
        )
        .unwrap_err();
        assert_eq!(keys(&e), vec!["session.per_process_secret"]);
    }

    #[test]
    fn origins_and_the_live_stream_are_checked() {
        let e = load(
            "[server]\nallowed_origins = [\"https://ok.example\", \"https://a.example/path\", \"ftp://b.example\", \"nonsense\"]\n[admin.live]\nping_interval = \"30s\"\nidle_timeout = \"10s\"\nstats_interval = \"1ms\"\n",
            &[],
        )
        .unwrap_err();
        assert_eq!(
            keys(&e),
            vec![
                "server.allowed_origins[1]",
                "server.allowed_origins[2]",
                "server.allowed_origins[3]",
                "admin.live.stats_interval",
                "admin.live.idle_timeout",
            ]
        );
        let c = load(
            "[server]\nallowed_origins = [\"https://Admin.Example:8443/\"]\n",
            &[],
        )
        .unwrap();
        assert!(c.server.origin_allowed("https://admin.example:8443"));
        assert!(!c.server.origin_allowed("https://admin.example"));
        assert_eq!(
            c.admin.live.idle_timeout,
            std::time::Duration::from_secs(90)
        );
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

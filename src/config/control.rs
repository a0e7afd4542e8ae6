//! `[control]`: the kill switch and the services gatehouse may start and stop
//! (the only ones: nothing else can be touched), and how recent an
//! authentication must be for the kill switch and power.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::values::{Secret, V};

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub(super) struct RawControl {
    fresh_auth: Option<String>,
    kill_switch: RawKillSwitch,
    services: Vec<RawService>,
    power: Vec<RawPower>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct RawPower {
    name: Option<String>,
    backend: Option<String>,
    url: Option<String>,
    system: Option<String>,
    username: Option<String>,
    password: Option<String>,
    password_file: Option<String>,
    ca_file: Option<String>,
    services: Vec<String>,
    graceful_timeout: Option<String>,
    poll_interval: Option<String>,
    timeout: Option<String>,
    allow_insecure_http: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct RawKillSwitch {
    services: Vec<String>,
    after: Vec<Vec<String>>,
    timeout: Option<String>,
    engage_deny: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct RawService {
    name: Option<String>,
    backend: Option<String>,
    start: Option<Vec<String>>,
    stop: Option<Vec<String>>,
    status: Option<Vec<String>>,
    unit: Option<String>,
    timeout: Option<String>,
    env: BTreeMap<String, String>,
    working_dir: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ControlConfig {
    /// The kill switch and power need an authentication (with a second
    /// factor) no older than this.
    pub fresh_auth: Duration,
    pub kill_switch: KillSwitchConfig,
    pub services: Vec<ServiceConfig>,
    pub power: Vec<PowerConfig>,
}

/// A machine whose power gatehouse may switch.
#[derive(Debug, Clone)]
pub struct PowerConfig {
    pub name: String,
    pub backend: PowerBackend,
    /// The BMC's or the KVM's base URL.
    pub url: url::Url,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// A private CA that signs the device's certificate (verification is never off).
    pub ca_file: Option<PathBuf>,
    /// Services (by name) stopped before a graceful power-off.
    pub services: Vec<String>,
    /// How long a graceful power-off may take before the hard one.
    pub graceful_timeout: Duration,
    /// How often the power state is read while waiting.
    pub poll_interval: Duration,
    /// Time limit of each request to the device.
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PowerBackend {
    /// A DMTF Redfish BMC; `system` is the ComputerSystem's path (default: the
    /// only member of `/redfish/v1/Systems`).
    Redfish { system: Option<String> },
    /// A Sipeed NanoKVM's ATX power and reset buttons.
    NanoKvm,
}

impl PowerBackend {
    pub fn as_str(&self) -> &'static str {
        match self {
            PowerBackend::Redfish { .. } => "redfish",
            PowerBackend::NanoKvm => "nanokvm",
        }
    }
}

#[derive(Debug, Clone)]
pub struct KillSwitchConfig {
    /// Services (by name) stopped in parallel.
    pub services: Vec<String>,
    /// Commands run after the stops, in order.
    pub after: Vec<Vec<String>>,
    /// Each stop's and each command's time limit.
    pub timeout: Duration,
    /// Also deny every non-bypass rule until released.
    pub engage_deny: bool,
}

#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub name: String,
    pub backend: ServiceBackend,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub enum ServiceBackend {
    /// Argv lists run without a shell, in a cleared environment plus `env`.
    Command {
        start: Vec<String>,
        stop: Vec<String>,
        status: Option<Vec<String>>,
        env: BTreeMap<String, String>,
        working_dir: Option<PathBuf>,
    },
    /// A systemd unit, through `systemctl`.
    Systemd { unit: String },
}

impl ServiceBackend {
    pub fn as_str(&self) -> &'static str {
        match self {
            ServiceBackend::Command { .. } => "command",
            ServiceBackend::Systemd { .. } => "systemd",
        }
    }
}

/// A name an operator types in a URL: letters, digits, `-`, `_`, `.`.
pub(super) fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The `name` of the `key` entry of a list: present, valid, and not taken
/// before (`seen`); `missing` says what the name is for.
pub(super) fn entry_name(
    v: &mut V,
    key: &str,
    name: Option<String>,
    missing: &str,
    seen: &mut BTreeSet<String>,
) -> Option<String> {
    let name = match name {
        Some(n) if valid_name(&n) => n,
        Some(n) => {
            v.err(
                key,
                format!("{n:?}: use letters, digits, '-', '_' or '.' (at most 64)"),
            );
            return None;
        }
        None => {
            v.err(key, format!("missing; {missing}"));
            return None;
        }
    };
    if !seen.insert(name.clone()) {
        v.err(key, format!("{name:?} is configured twice"));
    }
    Some(name)
}

/// Where a bare program name is looked up, once, when the configuration
/// loads (commands run with a cleared environment: no `PATH` of their own).
pub const PROGRAM_DIRS: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

fn executable(p: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// An argv list: not empty, no NUL bytes, and a program given by absolute
/// path or as a bare name found in [`PROGRAM_DIRS`] (replaced by its absolute
/// path here, so what runs is fixed when the configuration loads).
pub(super) fn check_argv(v: &mut V, key: &str, argv: &mut [String]) -> bool {
    let Some(program) = argv.first().cloned() else {
        v.err(
            key,
            "is empty; write the program and its arguments, e.g. [\"/usr/bin/feedctl\", \"stop\"]",
        );
        return false;
    };
    if argv.iter().any(|a| a.contains('\0')) {
        v.err(key, "contains a NUL byte");
        return false;
    }
    if program.starts_with('/') {
        return true;
    }
    if program.contains('/') || program.is_empty() {
        v.err(
            key,
            format!("{program:?} is a relative path; commands run without a shell, so name the program by absolute path"),
        );
        return false;
    }
    match PROGRAM_DIRS
        .iter()
        .map(|d| std::path::Path::new(d).join(&program))
        .find(|p| executable(p))
    {
        Some(found) => {
            argv[0] = found.display().to_string();
            true
        }
        None => {
            v.err(
                key,
                format!(
                    "{program:?} is not in {}; install it or write its absolute path",
                    PROGRAM_DIRS.join(":")
                ),
            );
            false
        }
    }
}

impl RawControl {
    pub(super) fn validate(self, v: &mut V) -> ControlConfig {
        let fresh_auth = v.duration("control.fresh_auth", self.fresh_auth.as_deref(), "10m");
        let mut services = Vec::new();
        let mut names = BTreeSet::new();
        for (i, s) in self.services.into_iter().enumerate() {
            let k = |f: &str| format!("control.services[{i}].{f}");
            let Some(name) = entry_name(
                v,
                &k("name"),
                s.name,
                "the name used in the API and the kill switch",
                &mut names,
            ) else {
                continue;
            };
            let timeout = v.duration(&k("timeout"), s.timeout.as_deref(), "30s");
            let backend = match s.backend.as_deref().unwrap_or("command") {
                "command" => {
                    if s.unit.is_some() {
                        v.err(k("unit"), "is for backend = \"systemd\"");
                    }
                    let mut argv = |f: &str, a: Option<Vec<String>>, required: bool| match a {
                        Some(mut a) => check_argv(v, &k(f), &mut a).then_some(a),
                        None if required => {
                            v.err(
                                k(f),
                                "missing; the command backend needs start and stop argv lists",
                            );
                            None
                        }
                        None => None,
                    };
                    let start = argv("start", s.start, true);
                    let stop = argv("stop", s.stop, true);
                    let status = argv("status", s.status, false);
                    for key in s.env.keys() {
                        if key.is_empty() || key.contains('=') || key.contains('\0') {
                            v.err(k(&format!("env.{key}")), "is not a valid variable name");
                        }
                    }
                    let working_dir = s.working_dir.as_deref().map(|p| v.path(p));
                    ServiceBackend::Command {
                        start: start.unwrap_or_default(),
                        stop: stop.unwrap_or_default(),
                        status,
                        env: s.env,
                        working_dir,
                    }
                }
                "systemd" => {
                    for (f, set) in [
                        ("start", s.start.is_some()),
                        ("stop", s.stop.is_some()),
                        ("status", s.status.is_some()),
                        ("working_dir", s.working_dir.is_some()),
                        ("env", !s.env.is_empty()),
                    ] {
                        if set {
                            v.err(
                                k(f),
                                "is for backend = \"command\"; a systemd unit has its own",
                            );
                        }
                    }
                    match s.unit {
                        Some(u)
                            if !u.is_empty()
                                && !u.starts_with('-')
                                && u.bytes().all(|b| {
                                    b.is_ascii_alphanumeric() || b":-_.@\\".contains(&b)
                                }) =>
                        {
                            ServiceBackend::Systemd { unit: u }
                        }
                        Some(u) => {
                            v.err(
                                k("unit"),
                                format!("{u:?} is not a unit name, e.g. \"feed.service\""),
                            );
                            continue;
                        }
                        None => {
                            v.err(
                                k("unit"),
                                "missing; the unit to control, e.g. \"feed.service\"",
                            );
                            continue;
                        }
                    }
                }
                other => {
                    v.err(
                        k("backend"),
                        format!(
                            "{other:?} is not a service backend; use \"command\" or \"systemd\""
                        ),
                    );
                    continue;
                }
            };
            services.push(ServiceConfig {
                name,
                backend,
                timeout,
            });
        }
        let mut ks = self.kill_switch;
        for (i, n) in ks.services.iter().enumerate() {
            if !names.contains(n) {
                v.err(
                    format!("control.kill_switch.services[{i}]"),
                    format!("{n:?} is not a [[control.services]] name"),
                );
            }
        }
        for (i, a) in ks.after.iter_mut().enumerate() {
            check_argv(v, &format!("control.kill_switch.after[{i}]"), a);
        }
        let mut power = Vec::new();
        let mut machines = BTreeSet::new();
        for (i, p) in self.power.into_iter().enumerate() {
            let k = |f: &str| format!("control.power[{i}].{f}");
            let Some(name) = entry_name(
                v,
                &k("name"),
                p.name,
                "the machine's name in the API",
                &mut machines,
            ) else {
                continue;
            };
            let backend = match p.backend.as_deref() {
                Some("redfish") => PowerBackend::Redfish {
                    system: p.system.clone(),
                },
                Some("nanokvm") => PowerBackend::NanoKvm,
                Some(other) => {
                    v.err(
                        k("backend"),
                        format!("{other:?} is not a power backend; use \"redfish\" or \"nanokvm\""),
                    );
                    continue;
                }
                None => {
                    v.err(k("backend"), "missing; \"redfish\" (a BMC) or \"nanokvm\"");
                    continue;
                }
            };
            if let Some(sys) = &p.system {
                if backend
                    != (PowerBackend::Redfish {
                        system: p.system.clone(),
                    })
                {
                    v.err(k("system"), "is for backend = \"redfish\"");
                } else if !sys.starts_with("/redfish/v1/Systems/") {
                    v.err(
                        k("system"),
                        "must be a path such as \"/redfish/v1/Systems/1\"",
                    );
                }
            }
            let allow_http = p.allow_insecure_http.unwrap_or(false);
            let url = match p.url.as_deref().map(url::Url::parse) {
                Some(Ok(u)) if u.scheme() == "https" || (u.scheme() == "http" && allow_http) => {
                    if !u.username().is_empty() || u.password().is_some() {
                        v.err(
                            k("url"),
                            "must not carry credentials; use username and password_file",
                        );
                    }
                    u
                }
                Some(Ok(u)) if u.scheme() == "http" => {
                    v.err(k("url"), "http:// sends the password in the clear; use https:// (with ca_file for a private CA), or allow_insecure_http = true for a loopback emulator");
                    u
                }
                Some(_) => {
                    v.err(k("url"), "is not a URL; e.g. \"https://bmc.lan\"");
                    continue;
                }
                None => {
                    v.err(
                        k("url"),
                        "missing; the BMC's or the NanoKVM's address, e.g. \"https://bmc.lan\"",
                    );
                    continue;
                }
            };
            let password = v.secret(&k("password"), p.password, p.password_file.as_deref());
            if p.username.is_some() != password.is_some()
                && matches!(backend, PowerBackend::Redfish { .. })
            {
                v.err(k("password_file"), "username and password go together");
            }
            if backend == PowerBackend::NanoKvm && password.is_none() {
                v.err(k("password_file"), "missing; the NanoKVM's web password");
            }
            let ca_file = p.ca_file.as_deref().map(|f| v.path(f));
            if let Some(ca) = &ca_file {
                match std::fs::read(ca) {
                    Ok(pem) if pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") => {}
                    Ok(_) => v.err(
                        k("ca_file"),
                        format!("{} holds no PEM certificate", ca.display()),
                    ),
                    Err(e) => v.err(k("ca_file"), format!("cannot read {}: {e}", ca.display())),
                }
            }
            for (j, s) in p.services.iter().enumerate() {
                if !names.contains(s) {
                    v.err(
                        k(&format!("services[{j}]")),
                        format!("{s:?} is not a [[control.services]] name"),
                    );
                }
            }
            power.push(PowerConfig {
                name,
                backend,
                url,
                username: p.username,
                password,
                ca_file,
                services: p.services,
                graceful_timeout: v.duration(
                    &k("graceful_timeout"),
                    p.graceful_timeout.as_deref(),
                    "120s",
                ),
                poll_interval: v.duration(&k("poll_interval"), p.poll_interval.as_deref(), "2s"),
                timeout: v.duration(&k("timeout"), p.timeout.as_deref(), "10s"),
            });
        }
        ControlConfig {
            fresh_auth,
            power,
            kill_switch: KillSwitchConfig {
                services: ks.services,
                after: ks.after,
                timeout: v.duration("control.kill_switch.timeout", ks.timeout.as_deref(), "30s"),
                engage_deny: ks.engage_deny.unwrap_or(false),
            },
            services,
        }
    }
}

//! The value types and checks every section shares: secrets that never
//! print, durations, CIDRs, paths relative to the configuration file, and
//! [`V`], which collects every error with its key.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

use super::ConfigError;

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

/// Parses durations such as `500ms`, `90s`, `30m`, `12h`, `7d` or `1h30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut total_ms: u64 = 0;
    let mut num = String::new();
    let mut saw_unit = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let (unit, mult_ms) = match c {
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                ("ms", 1)
            }
            's' => ("s", 1_000),
            'm' => ("m", 60_000),
            'h' => ("h", 3_600_000),
            'd' => ("d", 86_400_000),
            _ => return Err(format!("unexpected character {c:?} in duration {s:?}")),
        };
        let n: u64 = num
            .parse()
            .map_err(|_| format!("missing number before '{unit}' in duration {s:?}"))?;
        total_ms = n
            .checked_mul(mult_ms)
            .and_then(|v| total_ms.checked_add(v))
            .ok_or_else(|| format!("duration {s:?} is too large"))?;
        num.clear();
        saw_unit = true;
    }
    if !num.is_empty() || !saw_unit {
        return Err(format!(
            "duration {s:?} needs a unit on every number (ms, s, m, h or d); write e.g. \"30s\", \"5m\" or \"1h30m\""
        ));
    }
    Ok(Duration::from_millis(total_ms))
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

/// The validator's state: the errors so far and the directory relative paths
/// resolve against.
pub(super) struct V<'a> {
    pub(super) errors: &'a mut Vec<ConfigError>,
    pub(super) base_dir: &'a Path,
}

impl V<'_> {
    pub(super) fn err(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            key: key.into(),
            message: message.into(),
        });
    }

    pub(super) fn duration(&mut self, key: &str, v: Option<&str>, default: &str) -> Duration {
        let s = v.unwrap_or(default);
        match parse_duration(s) {
            Ok(d) => d,
            Err(e) => {
                self.err(key, e);
                parse_duration(default).unwrap_or_default()
            }
        }
    }

    pub(super) fn path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    /// Inline value, or the contents of `*_file`; both is an error.
    pub(super) fn secret(
        &mut self,
        key: &str,
        inline: Option<String>,
        file: Option<&str>,
    ) -> Option<Secret> {
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

    pub(super) fn cidr(&mut self, key: &str, s: &str) -> Option<IpNet> {
        parse_cidr(s).map_err(|e| self.err(key, e)).ok()
    }
}

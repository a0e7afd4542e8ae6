//! `[[actions]]`: pre-registered commands admins may run — an argv template
//! whose parameters (typed and constrained) each fill one whole argv
//! element, a time limit and the permission it needs. No shell, no uploaded
//! scripts.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Deserialize;

use super::control::{check_argv, entry_name, valid_name};
use super::values::V;
use crate::permission::Permission;

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub(super) struct RawAction {
    name: Option<String>,
    description: Option<String>,
    argv: Vec<String>,
    params: BTreeMap<String, RawParam>,
    timeout: Option<String>,
    permission: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawParam {
    #[serde(rename = "type")]
    kind: Option<String>,
    min: Option<i64>,
    max: Option<i64>,
    pattern: Option<String>,
    max_len: Option<usize>,
    values: Option<Vec<String>>,
    description: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ActionConfig {
    pub name: String,
    pub description: String,
    /// Program and arguments; an element `{param}` is replaced by that
    /// parameter's value, whole.
    pub argv: Vec<String>,
    pub params: BTreeMap<String, ParamSpec>,
    pub timeout: Duration,
    pub permission: Permission,
}

#[derive(Debug, Clone)]
pub struct ParamSpec {
    pub kind: ParamKind,
    pub description: String,
}

#[derive(Debug, Clone)]
pub enum ParamKind {
    Integer {
        min: i64,
        max: i64,
    },
    /// Matched whole against `pattern`; at most `max_len` characters.
    String {
        pattern: regex::Regex,
        max_len: usize,
    },
    Enum {
        values: Vec<String>,
    },
}

impl ParamKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            ParamKind::Integer { .. } => "integer",
            ParamKind::String { .. } => "string",
            ParamKind::Enum { .. } => "enum",
        }
    }
}

/// `{name}` of a whole argv element, if it is one.
pub fn placeholder(arg: &str) -> Option<&str> {
    arg.strip_prefix('{')?.strip_suffix('}')
}

fn param(v: &mut V, key: &str, p: RawParam) -> Option<ParamSpec> {
    let description = p.description.unwrap_or_default();
    let kind = match p.kind.as_deref() {
        Some("integer") => {
            let (min, max) = (p.min.unwrap_or(i64::MIN), p.max.unwrap_or(i64::MAX));
            if min > max {
                v.err(format!("{key}.min"), "is greater than max");
            }
            ParamKind::Integer { min, max }
        }
        Some("string") => {
            let Some(pat) = p.pattern else {
                v.err(
                    format!("{key}.pattern"),
                    "missing; a string parameter needs the pattern its value must match whole, e.g. \"^[a-z0-9-]+$\"",
                );
                return None;
            };
            match regex::Regex::new(&format!("^(?:{pat})$")) {
                Ok(pattern) => ParamKind::String {
                    pattern,
                    max_len: p.max_len.unwrap_or(256).min(4096),
                },
                Err(e) => {
                    let e = e
                        .to_string()
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" ");
                    v.err(format!("{key}.pattern"), format!("invalid regex: {e}"));
                    return None;
                }
            }
        }
        Some("enum") => match p.values {
            Some(values) if !values.is_empty() => ParamKind::Enum { values },
            _ => {
                v.err(
                    format!("{key}.values"),
                    "missing; the values an enum parameter may take",
                );
                return None;
            }
        },
        Some(other) => {
            v.err(
                format!("{key}.type"),
                format!(
                    "{other:?} is not a parameter type; use \"integer\", \"string\" or \"enum\""
                ),
            );
            return None;
        }
        None => {
            v.err(
                format!("{key}.type"),
                "missing; \"integer\", \"string\" or \"enum\"",
            );
            return None;
        }
    };
    Some(ParamSpec { kind, description })
}

pub(super) fn validate(raw: Vec<RawAction>, v: &mut V) -> Vec<ActionConfig> {
    let mut out = Vec::new();
    let mut names = BTreeSet::new();
    for (i, a) in raw.into_iter().enumerate() {
        let k = |f: &str| format!("actions[{i}].{f}");
        let Some(name) = entry_name(
            v,
            &k("name"),
            a.name,
            "the name used in the API",
            &mut names,
        ) else {
            continue;
        };
        let mut params = BTreeMap::new();
        for (pname, p) in a.params {
            if !valid_name(&pname) {
                v.err(
                    k(&format!("params.{pname}")),
                    "is not a valid parameter name",
                );
                continue;
            }
            if let Some(spec) = param(v, &k(&format!("params.{pname}")), p) {
                params.insert(pname, spec);
            }
        }
        let mut argv = a.argv;
        let mut used = BTreeSet::new();
        for (j, arg) in argv.iter().enumerate() {
            match placeholder(arg) {
                Some(p) if params.contains_key(p) => {
                    used.insert(p.to_string());
                }
                Some(p) => v.err(
                    k(&format!("argv[{j}]")),
                    format!("{{{p}}} is not a declared parameter"),
                ),
                None if arg.contains('{') || arg.contains('}') => v.err(
                    k(&format!("argv[{j}]")),
                    "a parameter must be a whole argv element (\"{days}\", not \"--days={days}\")",
                ),
                None => {}
            }
        }
        if argv.first().is_some_and(|p| placeholder(p).is_some()) {
            v.err(k("argv[0]"), "the program cannot be a parameter");
        } else {
            check_argv(v, &k("argv"), &mut argv);
        }
        for p in params.keys() {
            if !used.contains(p) {
                v.err(k(&format!("params.{p}")), "is not used in argv");
            }
        }
        let permission = match a.permission.as_deref() {
            None => Permission::ActionsRun,
            Some(p) => match Permission::parse(p) {
                Some(p) => p,
                None => {
                    v.err(k("permission"), format!("{p:?} is not a permission"));
                    Permission::ActionsRun
                }
            },
        };
        out.push(ActionConfig {
            name,
            description: a.description.unwrap_or_default(),
            argv,
            params,
            timeout: v.duration(&k("timeout"), a.timeout.as_deref(), "60s"),
            permission,
        });
    }
    out
}

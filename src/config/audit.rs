//! `[audit]`: the JSON-lines mirror, signed checkpoints, syslog and webhook.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::values::{Secret, V};

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub(super) struct RawAudit {
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

impl RawAudit {
    pub(super) fn validate(self, v: &mut V) -> AuditConfig {
        let raw = self;
        let checkpoint_key = raw.checkpoint_key.map(Secret::new);
        let checkpoint_interval = v.duration(
            "audit.checkpoint_interval",
            raw.checkpoint_interval.as_deref(),
            "5m",
        );
        let checkpoint_every = raw.checkpoint_every.unwrap_or(100);
        if checkpoint_every == 0 {
            v.err("audit.checkpoint_every", "must be at least 1");
        }
        if let Some(s) = &raw.syslog {
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
        if checkpoint_key.is_some() && raw.checkpoint_key_file.is_some() {
            v.err(
                "audit.checkpoint_key",
                "both audit.checkpoint_key and audit.checkpoint_key_file are set; keep one of them",
            );
        }
        let has_key = checkpoint_key.is_some() || raw.checkpoint_key_file.is_some();
        if has_key != raw.checkpoint_file.is_some() {
            v.err(
            "audit.checkpoint_file",
            "checkpoints need both a key (audit.checkpoint_key_file) and a file to append them to (audit.checkpoint_file)",
        );
        }
        let webhook = raw
            .webhook
            .as_deref()
            .and_then(|w| match url::Url::parse(w) {
                Ok(u) if u.scheme() == "https" || u.scheme() == "http" => Some(u),
                _ => {
                    v.err("audit.webhook", "must be an http:// or https:// URL");
                    None
                }
            });
        AuditConfig {
            jsonl_file: raw.jsonl_file.as_deref().map(|p| v.path(p)),
            checkpoint_key_file: raw.checkpoint_key_file.as_deref().map(|p| v.path(p)),
            checkpoint_key,
            checkpoint_file: raw.checkpoint_file.as_deref().map(|p| v.path(p)),
            checkpoint_every,
            checkpoint_interval,
            syslog: raw.syslog,
            webhook,
            jsonl_max_bytes: raw.jsonl_max_bytes.unwrap_or(10 * 1024 * 1024).max(4096),
            jsonl_keep: raw.jsonl_keep.unwrap_or(5),
        }
    }
}

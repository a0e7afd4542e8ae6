//! `[notify]`: where to tell operators what happened (a webhook, Telegram,
//! e-mail) and about which events. Delivery never blocks or fails the action.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::Deserialize;

use super::values::{Secret, V};

/// The events a notification can be about.
pub const EVENTS: &[&str] = &[
    "kill_switch",
    "power",
    "service_failed",
    "audit_failed",
    "ban",
    "config_reload",
];

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub(super) struct RawNotify {
    events: Option<Vec<String>>,
    webhook: Vec<RawWebhook>,
    telegram: Option<RawTelegram>,
    smtp: Option<RawSmtp>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawWebhook {
    url: Option<String>,
    secret: Option<String>,
    secret_file: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawTelegram {
    bot_token: Option<String>,
    bot_token_file: Option<String>,
    chat_id: Option<String>,
    api_base: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawSmtp {
    host: Option<String>,
    port: Option<u16>,
    tls: Option<String>,
    username: Option<String>,
    password: Option<String>,
    password_file: Option<String>,
    from: Option<String>,
    to: Vec<String>,
    ca_file: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct NotifyConfig {
    pub events: BTreeSet<String>,
    pub webhooks: Vec<WebhookConfig>,
    pub telegram: Option<TelegramConfig>,
    pub smtp: Option<SmtpConfig>,
}

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub url: url::Url,
    /// Signs the body: `X-Gatehouse-Signature: sha256=<hex HMAC-SHA256>`.
    pub secret: Option<Secret>,
}

#[derive(Debug, Clone)]
pub struct TelegramConfig {
    pub bot_token: Secret,
    pub chat_id: String,
    /// The Bot API's base (a self-hosted Bot API server, or a test's).
    pub api_base: url::Url,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// STARTTLS on the submission port (587), required.
    StartTls,
    /// TLS from the first byte (465).
    Tls,
    /// No TLS: loopback relays only.
    None,
}

#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub from: String,
    pub to: Vec<String>,
    /// A private CA that signs the relay's certificate.
    pub ca_file: Option<PathBuf>,
}

fn loopback(host: &str) -> bool {
    matches!(host, "localhost" | "127.0.0.1" | "::1" | "[::1]")
}

/// An http(s) URL; plain http only to loopback (it would carry secrets or
/// event details in the clear).
fn url(v: &mut V, key: &str, s: Option<&str>, example: &str) -> Option<url::Url> {
    match s.map(url::Url::parse) {
        Some(Ok(u)) if u.scheme() == "https" => Some(u),
        Some(Ok(u)) if u.scheme() == "http" && u.host_str().is_some_and(loopback) => Some(u),
        Some(Ok(u)) if u.scheme() == "http" => {
            v.err(key, "http:// is only allowed to loopback; use https://");
            None
        }
        Some(_) => {
            v.err(key, format!("is not an https URL, e.g. {example:?}"));
            None
        }
        None => {
            v.err(key, format!("missing, e.g. {example:?}"));
            None
        }
    }
}

fn address(v: &mut V, key: &str, a: &str) -> bool {
    let ok = a.len() <= 254
        && a.split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') || d == "localhost")
        && !a
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '<' || c == '>');
    if !ok {
        v.err(key, format!("{a:?} is not an e-mail address"));
    }
    ok
}

impl RawNotify {
    pub(super) fn validate(self, v: &mut V) -> NotifyConfig {
        let events: BTreeSet<String> = match self.events {
            None => EVENTS.iter().map(|e| e.to_string()).collect(),
            Some(list) => list
                .into_iter()
                .enumerate()
                .filter_map(|(i, e)| {
                    if EVENTS.contains(&e.as_str()) {
                        Some(e)
                    } else {
                        v.err(
                            format!("notify.events[{i}]"),
                            format!("{e:?} is not an event; use {}", EVENTS.join(", ")),
                        );
                        None
                    }
                })
                .collect(),
        };
        let webhooks = self
            .webhook
            .into_iter()
            .enumerate()
            .filter_map(|(i, w)| {
                let k = |f: &str| format!("notify.webhook[{i}].{f}");
                let secret = v.secret(&k("secret"), w.secret, w.secret_file.as_deref());
                let url = url(
                    v,
                    &k("url"),
                    w.url.as_deref(),
                    "https://hooks.example.com/gatehouse",
                )?;
                Some(WebhookConfig { url, secret })
            })
            .collect();
        let telegram = self.telegram.and_then(|t| {
            let token = v.secret(
                "notify.telegram.bot_token",
                t.bot_token,
                t.bot_token_file.as_deref(),
            );
            if token.is_none() {
                v.err(
                    "notify.telegram.bot_token_file",
                    "missing; the bot's token from @BotFather",
                );
            }
            let chat_id = t.chat_id.filter(|c| !c.is_empty() && c.len() <= 64);
            if chat_id.is_none() {
                v.err(
                    "notify.telegram.chat_id",
                    "missing; the chat to post to, e.g. \"-100123\"",
                );
            }
            let api_base = url(
                v,
                "notify.telegram.api_base",
                Some(t.api_base.as_deref().unwrap_or("https://api.telegram.org")),
                "https://api.telegram.org",
            );
            Some(TelegramConfig {
                bot_token: token?,
                chat_id: chat_id?,
                api_base: api_base?,
            })
        });
        let smtp = self.smtp.and_then(|s| {
            let host = s.host.filter(|h| !h.is_empty());
            if host.is_none() {
                v.err("notify.smtp.host", "missing; the mail relay, e.g. \"mail.example.com\"");
            }
            let tls = match s.tls.as_deref().unwrap_or("starttls") {
                "starttls" => SmtpTls::StartTls,
                "tls" => SmtpTls::Tls,
                "none" => {
                    if !host.as_deref().is_some_and(loopback) {
                        v.err(
                            "notify.smtp.tls",
                            "\"none\" sends the password and the messages in the clear; it is for a relay on loopback only",
                        );
                    }
                    SmtpTls::None
                }
                other => {
                    v.err("notify.smtp.tls", format!("{other:?}: use \"starttls\", \"tls\" or \"none\" (loopback)"));
                    SmtpTls::StartTls
                }
            };
            let password = v.secret("notify.smtp.password", s.password, s.password_file.as_deref());
            if s.username.is_some() != password.is_some() {
                v.err("notify.smtp.password_file", "username and password go together");
            }
            let from = s.from.filter(|f| address(v, "notify.smtp.from", f));
            if from.is_none() {
                v.err("notify.smtp.from", "missing or not an address, e.g. \"gatehouse@example.com\"");
            }
            if s.to.is_empty() {
                v.err("notify.smtp.to", "at least one recipient");
            }
            let to: Vec<String> = s
                .to
                .into_iter()
                .enumerate()
                .filter(|(i, a)| address(v, &format!("notify.smtp.to[{i}]"), a))
                .map(|(_, a)| a)
                .collect();
            Some(SmtpConfig {
                port: s.port.unwrap_or(match tls {
                    SmtpTls::Tls => 465,
                    SmtpTls::StartTls => 587,
                    SmtpTls::None => 25,
                }),
                host: host?,
                tls,
                username: s.username,
                password,
                from: from?,
                to,
                ca_file: s.ca_file.as_deref().map(|f| v.path(f)),
            })
        });
        NotifyConfig {
            events,
            webhooks,
            telegram,
            smtp,
        }
    }
}

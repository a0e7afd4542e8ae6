//! Notifications: the services that act hand a [`Note`] to [`Notifier::notify`],
//! which never waits (a bounded channel; a full one drops and counts); a task
//! of its own delivers each note to every configured channel — a webhook
//! (JSON, signed with HMAC-SHA256 when a secret is set), Telegram's Bot API,
//! e-mail over SMTP (lettre, STARTTLS or TLS) — each with retries. A channel
//! that fails is logged and counted in `gatehouse_notifications_total`; the
//! action it reports on is never held up or failed by it.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::clock::{rfc3339, SharedClock};
use crate::config::{NotifyConfig, SmtpConfig, SmtpTls, TelegramConfig, WebhookConfig};
use crate::metrics::Metrics;

/// Notes waiting for delivery before new ones are dropped.
const QUEUE: usize = 1000;
/// Delivery attempts per channel, and the waits between them.
const BACKOFF: [Duration; 2] = [Duration::from_millis(500), Duration::from_secs(2)];

/// What happened, for people.
#[derive(Debug, Clone)]
pub struct Note {
    /// One of `config::EVENTS`.
    pub event: &'static str,
    pub title: String,
    pub details: Value,
    pub at: i64,
}

impl Note {
    fn text(&self) -> String {
        let mut t = format!("gatehouse: {}\n{}", self.title, rfc3339(self.at));
        if let Some(obj) = self.details.as_object() {
            for (k, v) in obj {
                let v = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                t.push_str(&format!(
                    "\n{k}: {}",
                    v.chars().take(500).collect::<String>()
                ));
            }
        }
        t
    }
}

#[derive(Clone)]
pub struct Notifier {
    tx: Option<mpsc::Sender<Note>>,
    events: Arc<std::collections::BTreeSet<String>>,
    clock: SharedClock,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

impl Notifier {
    /// Starts the delivery task when a channel is configured (needs a runtime).
    pub fn new(cfg: &NotifyConfig, clock: SharedClock, metrics: Arc<Metrics>) -> Self {
        let any = !cfg.webhooks.is_empty() || cfg.telegram.is_some() || cfg.smtp.is_some();
        let tx = any.then(|| {
            let (tx, rx) = mpsc::channel(QUEUE);
            tokio::spawn(deliver_all(cfg.clone(), rx, metrics.clone()));
            tx
        });
        Notifier {
            tx,
            events: Arc::new(cfg.events.clone()),
            clock,
            metrics,
        }
    }

    /// Queues a note about `event` if operators asked for it. Never waits.
    pub fn notify(&self, event: &'static str, title: impl Into<String>, details: Value) {
        let Some(tx) = &self.tx else { return };
        if !self.events.contains(event) {
            return;
        }
        let note = Note {
            event,
            title: title.into(),
            details,
            at: self.clock.now(),
        };
        if tx.try_send(note).is_err() {
            self.metrics.notifications.inc(&["queue", "dropped"]);
            tracing::warn!(event, "notification dropped: the queue is full");
        }
    }
}

async fn deliver_all(cfg: NotifyConfig, mut rx: mpsc::Receiver<Note>, metrics: Arc<Metrics>) {
    let http = crate::crypto::http_client()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("the TLS backend initialises");
    let smtp = cfg.smtp.as_ref().map(|s| (s.clone(), smtp_transport(s)));
    while let Some(note) = rx.recv().await {
        let note = Arc::new(note);
        // Channels deliver side by side: a slow one does not delay the others.
        for w in &cfg.webhooks {
            let (w, http, note, m) = (w.clone(), http.clone(), note.clone(), metrics.clone());
            tokio::spawn(async move { retried("webhook", &m, || webhook(&http, &w, &note)).await });
        }
        if let Some(t) = &cfg.telegram {
            let (t, http, note, m) = (t.clone(), http.clone(), note.clone(), metrics.clone());
            tokio::spawn(
                async move { retried("telegram", &m, || telegram(&http, &t, &note)).await },
            );
        }
        if let Some((s, transport)) = &smtp {
            let (s, transport, note, m) =
                (s.clone(), transport.clone(), note.clone(), metrics.clone());
            tokio::spawn(async move { retried("smtp", &m, || email(&transport, &s, &note)).await });
        }
    }
}

async fn retried<F, Fut>(channel: &'static str, metrics: &Metrics, mut send: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let mut last = String::new();
    for attempt in 0..=BACKOFF.len() {
        match send().await {
            Ok(()) => {
                metrics.notifications.inc(&[channel, "ok"]);
                return;
            }
            Err(e) => last = e,
        }
        if let Some(wait) = BACKOFF.get(attempt) {
            tokio::time::sleep(*wait).await;
        }
    }
    metrics.notifications.inc(&[channel, "failed"]);
    tracing::error!(channel, error = %last, "notification not delivered after retries");
}

fn http_error(e: reqwest::Error) -> String {
    // Never the URL: a Telegram URL carries the bot token.
    e.without_url().to_string()
}

async fn webhook(http: &reqwest::Client, w: &WebhookConfig, note: &Note) -> Result<(), String> {
    let body = json!({
        "event": note.event,
        "title": note.title,
        "details": note.details,
        "at": rfc3339(note.at),
    })
    .to_string();
    let mut req = http
        .post(w.url.clone())
        .header("Content-Type", "application/json")
        .header("X-Gatehouse-Event", note.event);
    if let Some(secret) = &w.secret {
        let key =
            aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.expose().as_bytes());
        let tag = aws_lc_rs::hmac::sign(&key, body.as_bytes());
        let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        req = req.header("X-Gatehouse-Signature", format!("sha256={hex}"));
    }
    let r = req.body(body).send().await.map_err(http_error)?;
    if r.status().is_success() {
        Ok(())
    } else {
        Err(format!("webhook answered HTTP {}", r.status().as_u16()))
    }
}

async fn telegram(http: &reqwest::Client, t: &TelegramConfig, note: &Note) -> Result<(), String> {
    let base = t.api_base.as_str().trim_end_matches('/');
    let url = format!("{base}/bot{}/sendMessage", t.bot_token.expose());
    let r = http
        .post(url)
        .json(&json!({"chat_id": t.chat_id, "text": note.text(), "disable_web_page_preview": true}))
        .send()
        .await
        .map_err(http_error)?;
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    if status.is_success() && v["ok"] == true {
        Ok(())
    } else {
        Err(format!(
            "Telegram answered HTTP {}: {}",
            status.as_u16(),
            v["description"]
                .as_str()
                .unwrap_or("")
                .chars()
                .take(200)
                .collect::<String>()
        ))
    }
}

type Transport = Result<lettre::AsyncSmtpTransport<lettre::Tokio1Executor>, String>;

fn smtp_transport(s: &SmtpConfig) -> Transport {
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
    use lettre::AsyncSmtpTransport;
    let params = || -> Result<TlsParameters, String> {
        let mut b = TlsParameters::builder(s.host.clone());
        if let Some(ca) = &s.ca_file {
            let pem = std::fs::read(ca).map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
            b = b.add_root_certificate(
                Certificate::from_pem(&pem)
                    .map_err(|e| format!("ca_file {}: {e}", ca.display()))?,
            );
        }
        b.build_rustls().map_err(|e| format!("TLS: {e}"))
    };
    let mut b = AsyncSmtpTransport::<lettre::Tokio1Executor>::builder_dangerous(s.host.clone())
        .port(s.port)
        .timeout(Some(Duration::from_secs(15)));
    b = match s.tls {
        SmtpTls::StartTls => b.tls(Tls::Required(params()?)),
        SmtpTls::Tls => b.tls(Tls::Wrapper(params()?)),
        SmtpTls::None => b.tls(Tls::None),
    };
    if let (Some(u), Some(p)) = (&s.username, &s.password) {
        b = b.credentials(Credentials::new(u.clone(), p.expose().to_string()));
    }
    Ok(b.build())
}

async fn email(transport: &Transport, s: &SmtpConfig, note: &Note) -> Result<(), String> {
    use lettre::AsyncTransport;
    let transport = transport.as_ref().map_err(Clone::clone)?;
    let mut m = lettre::Message::builder()
        .from(s.from.parse().map_err(|e| format!("from: {e}"))?)
        .subject(format!("gatehouse: {}", note.title));
    for to in &s.to {
        m = m.to(to.parse().map_err(|e| format!("to {to}: {e}"))?);
    }
    let msg = m
        .header(lettre::message::header::ContentType::TEXT_PLAIN)
        .body(note.text())
        .map_err(|e| format!("message: {e}"))?;
    transport
        .send(msg)
        .await
        .map(|_| ())
        .map_err(|e| format!("SMTP: {e}"))
}

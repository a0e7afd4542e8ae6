//! Bans and brute-force regulation: refused credentials counted against the
//! client address and the user (a ban that results is in force at once and
//! written in the background), and bans by hand: list, ban an address or a
//! user, lift. A change is in the decision path's snapshot before the call
//! returns.

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use serde_json::json;

use super::access::{Admin, Permission};
use super::audit::audited;
use super::notify::Notifier;
use super::DomainError;
use crate::audit::log::AuditLog;
use crate::audit::NewEntry;
use crate::clock::SharedClock;
use crate::identity::regulation::{BanKey, Regulation};
use crate::metrics::Metrics;
use crate::store::{Ban, Store, StoreError};

/// Whether a refusal reason counts towards a ban: signs of forgery or guessing,
/// not the ordinary end of a credential's life (expired tokens, stale session
/// cookies) nor an IdP outage.
pub fn counts_as_failure(reason: &str) -> bool {
    !matches!(
        reason,
        "expired"
            | "not_yet_valid"
            | "issued_in_future"
            | "keys_unavailable"
            | "session_expired"
            | "session_inactive"
            | "session_unknown"
    )
}

/// What a [`Bans`] is built from.
pub struct BansParts {
    pub store: Store,
    pub clock: SharedClock,
    pub audit: Arc<AuditLog>,
    pub metrics: Arc<Metrics>,
    pub regulation: Arc<Regulation>,
    pub trusted_proxies: Arc<[IpNet]>,
    pub default_ban_secs: i64,
    pub notify: Notifier,
}

#[derive(Debug, Clone)]
pub struct Bans {
    store: Store,
    clock: SharedClock,
    audit: Arc<AuditLog>,
    metrics: Arc<Metrics>,
    /// Failure counters and the bans in force, read by the decision path.
    regulation: Arc<Regulation>,
    /// Never banned by address: that would ban everyone behind them.
    trusted_proxies: Arc<[IpNet]>,
    /// `regulation.ban_time` in seconds: a manual ban's default length.
    default_ban_secs: i64,
    notify: Notifier,
}

impl Bans {
    pub fn new(p: BansParts) -> Self {
        Bans {
            store: p.store,
            clock: p.clock,
            audit: p.audit,
            metrics: p.metrics,
            regulation: p.regulation,
            trusted_proxies: p.trusted_proxies,
            default_ban_secs: p.default_ban_secs,
            notify: p.notify,
        }
    }

    /// Counts a refused credential against the client address (never a trusted
    /// proxy's) and, when known, the user; a ban that results is in force at
    /// once and written to the store (and audited) in the background.
    pub fn note_failure(&self, client: Option<IpAddr>, user: Option<&str>, reason: &str) {
        let now = self.clock.now();
        let mut keys = vec![];
        if let Some(client) = client.map(|c| c.to_canonical()) {
            if !crate::decision::target::in_nets(client, &self.trusted_proxies) {
                keys.push(BanKey::Ip(client));
            }
        }
        if let Some(u) = user {
            keys.push(BanKey::User(u.to_string()));
        }
        for key in keys {
            if let Some(ban) = self.regulation.failure(key, reason, now) {
                tracing::warn!(
                    target: "gatehouse::regulation",
                    kind = %ban.kind, value = %ban.value, reason, until = ban.expires_at,
                    "banned after repeated refused credentials"
                );
                self.metrics.auth_failures.inc(["banned"]);
                self.metrics.bans.inc(&[ban.kind.as_str(), "regulation"]);
                self.notify.notify(
                    "ban",
                    format!("{} {} banned after {} refused credentials", ban.kind, ban.value, ban.failures),
                    json!({"kind": ban.kind, "value": ban.value, "reason": ban.reason, "until": crate::clock::rfc3339(ban.expires_at)}),
                );
                let this = self.clone();
                tokio::spawn(async move { this.store_automatic(ban).await });
            }
        }
    }

    async fn store_automatic(&self, ban: Ban) {
        match self.store.insert_ban(&ban).await {
            Ok(id) => {
                self.audit
                    .record(NewEntry::new(
                        "gatehouse",
                        "",
                        "ban.add",
                        &format!("{}:{}", ban.kind, ban.value),
                        "ok",
                        json!({"id": id, "reason": ban.reason, "failures": ban.failures, "expires_at": ban.expires_at}),
                    ))
                    .await
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot store a ban; it holds in this process only")
            }
        }
    }

    /// Whether a ban on this user is in force.
    pub fn user_banned(&self, user: &str, now: i64) -> bool {
        self.regulation.user_banned(user, now)
    }

    /// Re-reads the bans in force (other processes' too) into the snapshot.
    pub async fn reload(&self) -> Result<Vec<Ban>, StoreError> {
        let bans = self.store.live_bans(self.clock.now()).await?;
        self.regulation.load(&bans);
        Ok(bans)
    }

    /// Bans in force (re-read, so other processes' bans show too).
    pub async fn list(&self, who: &Admin) -> Result<Vec<Ban>, DomainError> {
        who.require(Permission::BansRead)?;
        Ok(self.reload().await?)
    }

    /// Bans an address or a user now (audited).
    pub async fn add(&self, who: &Admin, req: &NewBan) -> Result<Ban, DomainError> {
        who.require(Permission::BansWrite)?;
        let key = match req.kind.as_str() {
            "ip" => BanKey::Ip(
                req.value
                    .trim()
                    .parse::<std::net::IpAddr>()
                    .map_err(|_| {
                        DomainError::Invalid(format!("{:?} is not an IP address", req.value))
                    })?
                    .to_canonical(),
            ),
            "user"
                if !req.value.is_empty()
                    && req.value.len() <= 256
                    && !req.value.chars().any(char::is_control) =>
            {
                BanKey::User(req.value.clone())
            }
            "user" => {
                return Err(DomainError::Invalid(
                    "value is not a valid user name".into(),
                ))
            }
            other => {
                return Err(DomainError::Invalid(format!(
                    "kind {other:?} is neither \"ip\" nor \"user\""
                )))
            }
        };
        let secs = match &req.duration {
            Some(d) => crate::config::parse_duration(d)
                .map_err(|e| DomainError::Invalid(format!("duration: {e}")))?
                .as_secs() as i64,
            None => self.default_ban_secs,
        };
        if secs <= 0 {
            return Err(DomainError::Invalid("duration must be positive".into()));
        }
        let now = self.clock.now();
        let mut ban = Ban {
            id: 0,
            kind: key.kind().into(),
            value: key.value(),
            reason: format!(
                "manual by {}: {}",
                who.actor(),
                req.reason
                    .as_deref()
                    .unwrap_or("")
                    .chars()
                    .take(200)
                    .collect::<String>()
            ),
            failures: 0,
            created_at: now,
            expires_at: now.saturating_add(secs),
            lifted_at: None,
            lifted_by: None,
        };
        let target = format!("{}:{}", ban.kind, ban.value);
        let details = json!({"expires_at": ban.expires_at, "reason": ban.reason});
        ban.id = audited(&self.audit, who, "ban.add", &target, details, async {
            let id = self.store.insert_ban(&ban).await?;
            self.reload().await?;
            Ok::<_, DomainError>(id)
        })
        .await?;
        tracing::warn!(actor = %who.actor(), kind = %ban.kind, value = %ban.value, "ban added by hand");
        self.metrics.bans.inc(&[ban.kind.as_str(), "admin"]);
        self.notify.notify(
            "ban",
            format!("{} {} banned by {}", ban.kind, ban.value, who.actor()),
            json!({"kind": ban.kind, "value": ban.value, "reason": ban.reason, "until": crate::clock::rfc3339(ban.expires_at)}),
        );
        Ok(ban)
    }

    /// Lifts a ban in force by id (audited).
    pub async fn lift(&self, who: &Admin, id: &str) -> Result<i64, DomainError> {
        who.require(Permission::BansWrite)?;
        let id: i64 = id.parse().map_err(|_| DomainError::NotFound("ban"))?;
        let now = self.clock.now();
        let live = self.store.live_bans(now).await?;
        let Some(ban) = live.iter().find(|b| b.id == id) else {
            return Err(DomainError::NotFound("ban"));
        };
        let target = format!("{}:{}", ban.kind, ban.value);
        audited(
            &self.audit,
            who,
            "ban.lift",
            &target,
            json!({"id": id}),
            async {
                if !self.store.lift_ban(id, now, who.actor()).await? {
                    return Err(DomainError::NotFound("ban"));
                }
                if let Some(k) = BanKey::of(ban) {
                    self.regulation.forgive(&k);
                }
                self.reload().await?;
                Ok(())
            },
        )
        .await?;
        tracing::info!(actor = %who.actor(), kind = %ban.kind, value = %ban.value, "ban lifted");
        Ok(id)
    }
}

/// A ban as a caller asks for it.
#[derive(Debug, Clone)]
pub struct NewBan {
    /// `ip` or `user`.
    pub kind: String,
    pub value: String,
    /// e.g. `1h`; default `regulation.ban_time`.
    pub duration: Option<String>,
    pub reason: Option<String>,
}

//! Brute-force regulation bans by hand: list, ban an address or a user, lift.
//! A change is in the decision path's snapshot before the call returns.

use serde_json::json;

use super::access::{Admin, Permission};
use super::audit::audited;
use super::DomainError;
use crate::app::Inner;
use crate::identity::regulation::BanKey;
use crate::store::Ban;

async fn reload(st: &Inner) -> Result<Vec<Ban>, DomainError> {
    let bans = st.store.live_bans(st.clock.now()).await?;
    st.regulation.load(&bans);
    Ok(bans)
}

/// Bans in force (re-read, so other processes' bans show too).
pub async fn list(st: &Inner, who: &Admin) -> Result<Vec<Ban>, DomainError> {
    who.require(Permission::BansRead)?;
    reload(st).await
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

/// Bans an address or a user now (audited).
pub async fn add(st: &Inner, who: &Admin, req: &NewBan) -> Result<Ban, DomainError> {
    who.require(Permission::BansWrite)?;
    let key = match req.kind.as_str() {
        "ip" => BanKey::Ip(
            req.value
                .trim()
                .parse::<std::net::IpAddr>()
                .map_err(|_| DomainError::Invalid(format!("{:?} is not an IP address", req.value)))?
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
        None => st.config.regulation.ban_time.as_secs() as i64,
    };
    if secs <= 0 {
        return Err(DomainError::Invalid("duration must be positive".into()));
    }
    let now = st.clock.now();
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
    ban.id = audited(&st.audit, who, "ban.add", &target, details, async {
        let id = st.store.insert_ban(&ban).await?;
        reload(st).await?;
        Ok::<_, DomainError>(id)
    })
    .await?;
    tracing::warn!(actor = %who.actor(), kind = %ban.kind, value = %ban.value, "ban added by hand");
    Ok(ban)
}

/// Lifts a ban in force by id (audited).
pub async fn lift(st: &Inner, who: &Admin, id: &str) -> Result<i64, DomainError> {
    who.require(Permission::BansWrite)?;
    let id: i64 = id.parse().map_err(|_| DomainError::NotFound("ban"))?;
    let now = st.clock.now();
    let live = st.store.live_bans(now).await?;
    let Some(ban) = live.iter().find(|b| b.id == id) else {
        return Err(DomainError::NotFound("ban"));
    };
    let target = format!("{}:{}", ban.kind, ban.value);
    audited(
        &st.audit,
        who,
        "ban.lift",
        &target,
        json!({"id": id}),
        async {
            if !st.store.lift_ban(id, now, who.actor()).await? {
                return Err(DomainError::NotFound("ban"));
            }
            if let Some(k) = BanKey::of(ban) {
                st.regulation.forgive(&k);
            }
            reload(st).await?;
            Ok(())
        },
    )
    .await?;
    tracing::info!(actor = %who.actor(), kind = %ban.kind, value = %ban.value, "ban lifted");
    Ok(id)
}

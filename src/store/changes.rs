//! Changes other gatehouse processes must learn of at once, on PostgreSQL:
//! every write that the decision path depends on (sessions, revocations,
//! bans, the allowlist, the kill switch) and every audit entry is announced
//! with `pg_notify` on [`CHANNEL`], naming what changed and which process
//! changed it; the others `LISTEN` and reload that piece. On SQLite (one
//! process per database file) nothing is announced.

use std::sync::Arc;

use sqlx::postgres::PgListener;

use super::{Backend, Store, StoreError};

/// The PostgreSQL notification channel.
pub const CHANNEL: &str = "gatehouse_changes";

/// What changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// One session was created, updated or ended.
    Session(String),
    /// Several sessions ended (a termination of a user's or of all).
    Sessions,
    Revocations,
    Bans,
    Allowlist,
    Control,
    /// An audit entry was appended.
    Audit,
}

impl Change {
    fn encode(&self) -> String {
        match self {
            Change::Session(id) => format!("session:{id}"),
            Change::Sessions => "sessions".into(),
            Change::Revocations => "revocations".into(),
            Change::Bans => "bans".into(),
            Change::Allowlist => "allowlist".into(),
            Change::Control => "control".into(),
            Change::Audit => "audit".into(),
        }
    }

    fn decode(s: &str) -> Option<Change> {
        Some(match s {
            "sessions" => Change::Sessions,
            "revocations" => Change::Revocations,
            "bans" => Change::Bans,
            "allowlist" => Change::Allowlist,
            "control" => Change::Control,
            "audit" => Change::Audit,
            _ => {
                let id = s.strip_prefix("session:")?;
                if id.is_empty()
                    || id.len() > 128
                    || !id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                {
                    return None;
                }
                Change::Session(id.to_string())
            }
        })
    }
}

/// A notification as received: which process, what changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announced {
    pub origin: String,
    pub change: Change,
}

fn payload(origin: &str, c: &Change) -> String {
    format!("{origin} {}", c.encode())
}

fn parse(p: &str) -> Option<Announced> {
    let (origin, rest) = p.split_once(' ')?;
    Some(Announced {
        origin: origin.to_string(),
        change: Change::decode(rest)?,
    })
}

impl Store {
    /// This process's name in announcements (random per process).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Tells the other processes on this PostgreSQL what changed. Best
    /// effort: a lost announcement is caught up by the periodic reload.
    pub(super) async fn announce(&self, c: Change) {
        if self.backend != Backend::Postgres {
            return;
        }
        let r = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(payload(&self.origin, &c))
            .execute(&self.pool)
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, change = ?c, "cannot announce a change; other replicas see it at their next periodic reload");
        }
    }

    /// Starts listening for the other processes' changes (PostgreSQL only;
    /// `None` on SQLite).
    pub async fn listen(&self) -> Result<Option<ChangeListener>, StoreError> {
        if self.backend != Backend::Postgres {
            return Ok(None);
        }
        let mut l = PgListener::connect(&self.url).await?;
        l.listen(CHANNEL).await?;
        Ok(Some(ChangeListener {
            inner: l,
            origin: self.origin.clone(),
        }))
    }
}

/// The receiving end of [`CHANNEL`].
pub struct ChangeListener {
    inner: PgListener,
    origin: Arc<str>,
}

/// What the listener saw.
#[derive(Debug)]
pub enum Heard {
    /// Another process changed this.
    Change(Change),
    /// The connection was lost and made again: notifications in between are
    /// lost, so everything must be read again.
    Reconnected,
}

impl ChangeListener {
    /// The next change by another process (this process's own are skipped),
    /// or word that the connection was lost and has been made again.
    pub async fn next(&mut self) -> Result<Heard, StoreError> {
        loop {
            match self.inner.try_recv().await? {
                None => return Ok(Heard::Reconnected),
                Some(n) => match parse(n.payload()) {
                    Some(a) if *a.origin == *self.origin => continue,
                    Some(a) => return Ok(Heard::Change(a.change)),
                    None => {
                        tracing::warn!(
                            payload = n.payload(),
                            "ignoring a malformed change notification"
                        );
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_junk_is_refused() {
        for c in [
            Change::Session("abc123".into()),
            Change::Sessions,
            Change::Revocations,
            Change::Bans,
            Change::Allowlist,
            Change::Control,
            Change::Audit,
        ] {
            let p = payload("p1", &c);
            assert_eq!(
                parse(&p),
                Some(Announced {
                    origin: "p1".into(),
                    change: c
                })
            );
        }
        for junk in [
            "",
            "p1",
            "p1 weather",
            "p1 session:",
            "p1 session:a b",
            "p1 session:'; DROP",
        ] {
            assert_eq!(parse(junk), None, "{junk:?}");
        }
    }
}

//! The login's domain half: verifying the tokens a token endpoint returned
//! (ID token claims, roles from the access token) and the background refresh of
//! sessions' IdP tokens, which keeps role changes flowing and ends sessions the
//! IdP no longer honours. The browser half (cookies, redirects) is `http::login`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use serde_json::{json, Map, Value};

use super::bans::Bans;
use super::sessions::Sessions;
use super::DomainError;
use crate::audit::log::AuditLog;
use crate::audit::NewEntry;
use crate::clock::SharedClock;
use crate::config::Secret;
use crate::decision::{Identity, PrincipalParts};
use crate::identity::claims::principal_from_claims;
use crate::identity::oidc::{
    check_id_token, check_logout_token, token_request, Endpoints, LoginError, TokenSet,
    REFRESH_MARGIN_SECS,
};
use crate::identity::seal::{random_token, Sealer};
use crate::identity::session::{
    session_id, session_identity, LiveSession, SessionTable, SESSION_COOKIE_BYTES,
};
use crate::identity::{IssuerHandle, TokenKind, TokenValidator};
use crate::store::{SessionRecord, SessionUpdate, Store};

/// The issuer and client the browser login uses.
#[derive(Debug)]
pub struct LoginSetup {
    pub issuer: Arc<IssuerHandle>,
    pub client_id: String,
    pub client_secret: Option<Secret>,
    /// `{public_url}/callback`.
    pub redirect_uri: String,
    /// The issuer is http:// (development only, `allow_insecure_http`).
    pub allow_http: bool,
}

/// Most logout token ids remembered (each only until its token expires).
const MAX_REMEMBERED_JTIS: usize = 100_000;

/// How long to wait after a refresh that failed for a passing reason.
pub const REFRESH_RETRY_SECS: i64 = 60;

/// The login service and the handles it works on.
#[derive(Clone)]
pub struct Login {
    setup: Option<Arc<LoginSetup>>,
    validator: Arc<TokenValidator>,
    store: Store,
    clock: SharedClock,
    audit: Arc<AuditLog>,
    sessions: Sessions,
    bans: Bans,
    /// The live table the decision path reads.
    table: Arc<SessionTable>,
    /// Seals IdP tokens kept in the store.
    token_sealer: Arc<Sealer>,
    /// For the IdP's token endpoint.
    http: reqwest::Client,
    /// `session.lifetime` and `session.inactivity`, in seconds.
    lifetime: i64,
    inactivity: i64,
    /// Back-channel logout token ids already used, with their expiry.
    logout_jtis: Arc<Mutex<HashMap<String, i64>>>,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("setup", &self.setup)
            .finish_non_exhaustive()
    }
}

/// What a login needs besides the handles: the checked callback and the
/// browser's pre-login values.
#[derive(Debug)]
pub struct Callback<'a> {
    pub code: &'a str,
    pub verifier: &'a str,
    pub nonce: &'a str,
    pub max_age: Option<i64>,
    pub issuer: &'a str,
    /// The session a step-up replaces.
    pub upgrade: Option<&'a str>,
    pub client: IpAddr,
    pub user_agent: Option<&'a str>,
}

/// A login that went through: the new cookie value and its session.
#[derive(Debug)]
pub enum Completed {
    Session {
        cookie: String,
        record: Box<SessionRecord>,
    },
    /// The identity is banned: no session.
    Banned,
}

/// A refused login; `unavailable` when the fault is ours or the IdP's
/// (store, discovery), not the browser's.
#[derive(Debug)]
pub struct Failure {
    pub error: LoginError,
    pub unavailable: bool,
}

impl Failure {
    fn refused(error: LoginError) -> Self {
        Failure {
            error,
            unavailable: false,
        }
    }
    fn unavailable(error: LoginError) -> Self {
        Failure {
            error,
            unavailable: true,
        }
    }
}

/// Why a back-channel logout was not done.
#[derive(Debug)]
pub enum BackchannelError {
    /// The logout token or request is not acceptable (400).
    Refused(LoginError),
    /// The sessions could not be read or ended (503).
    Unavailable,
}

/// The parts a [`Login`] is built from.
pub struct LoginParts {
    pub setup: Option<Arc<LoginSetup>>,
    pub validator: Arc<TokenValidator>,
    pub store: Store,
    pub clock: SharedClock,
    pub audit: Arc<AuditLog>,
    pub sessions: Sessions,
    pub bans: Bans,
    pub table: Arc<SessionTable>,
    pub token_sealer: Sealer,
    pub http: reqwest::Client,
    pub lifetime: i64,
    pub inactivity: i64,
}

impl Login {
    pub fn new(p: LoginParts) -> Self {
        Login {
            setup: p.setup,
            validator: p.validator,
            store: p.store,
            clock: p.clock,
            audit: p.audit,
            sessions: p.sessions,
            bans: p.bans,
            table: p.table,
            token_sealer: Arc::new(p.token_sealer),
            http: p.http,
            lifetime: p.lifetime,
            inactivity: p.inactivity,
            logout_jtis: Default::default(),
        }
    }

    /// The browser login's issuer and client, when one is configured.
    pub fn setup(&self) -> Option<&LoginSetup> {
        self.setup.as_deref()
    }

    /// Audits a refused login; failures that point at tampering count towards
    /// a ban of the address.
    pub async fn refused(&self, client: IpAddr, f: &Failure) {
        if !f.unavailable
            && matches!(
                f.error,
                LoginError::StateMismatch | LoginError::IdToken(_) | LoginError::TokenEndpoint(_)
            )
        {
            self.bans.note_failure(Some(client), None, f.error.code());
        }
        self.audit
            .record(NewEntry::new(
                "",
                &client.to_string(),
                "login",
                "",
                "failed",
                json!({"error": f.error.code()}),
            ))
            .await;
    }

    /// Completes a login whose callback the browser side checked: exchanges
    /// the code (with the PKCE verifier), verifies the tokens, and creates the
    /// session (replacing the one a step-up upgrades). Audited when it succeeds;
    /// a failure is for the caller to pass to [`Login::refused`].
    pub async fn complete(&self, cb: &Callback<'_>) -> Result<Completed, Failure> {
        let setup = self
            .setup()
            .ok_or(Failure::refused(LoginError::NotConfigured(
                "no [[issuers]] entry has a client_id",
            )))?;
        let now = self.clock.now();
        let ep = Endpoints::of(&setup.issuer, setup.allow_http).map_err(Failure::unavailable)?;
        let tokens = token_request(
            &self.http,
            &ep,
            &setup.client_id,
            setup.client_secret.as_ref().map(|s| s.expose()),
            &[
                ("grant_type", "authorization_code"),
                ("code", cb.code),
                ("redirect_uri", &setup.redirect_uri),
                ("code_verifier", cb.verifier),
            ],
        )
        .await
        .map_err(Failure::refused)?;
        let (identity, id_token) = self
            .verify_tokens(&tokens, Some(cb.nonce), cb.max_age, cb.issuer)
            .await
            .map_err(Failure::refused)?;
        if self.bans.user_banned(&identity.user, now) {
            return Ok(Completed::Banned);
        }
        let cookie = random_token(SESSION_COOKIE_BYTES);
        let record = SessionRecord {
            id: session_id(&cookie),
            issuer: identity.issuer.clone(),
            subject: identity.sub.clone(),
            username: identity.user.clone(),
            groups: identity.groups.clone(),
            email: identity.email.clone(),
            name: identity.name.clone(),
            acr: identity.acr.clone(),
            amr: identity.amr.clone(),
            auth_time: identity.iat,
            sid: identity.sid.clone(),
            client_addr: Some(cb.client.to_string()),
            user_agent: cb.user_agent.map(|s| s.chars().take(256).collect()),
            created_at: now,
            last_seen: now,
            expires_at: now + self.lifetime,
            terminated_at: None,
            terminated_by: None,
            id_token: Some(self.token_sealer.seal(id_token.as_bytes())),
            refresh_token: tokens
                .refresh_token
                .as_deref()
                .map(|t| self.token_sealer.seal(t.as_bytes())),
            refresh_at: tokens
                .refresh_token
                .as_ref()
                .map(|_| next_refresh(tokens.expires_in, now)),
        };
        {
            let _gate = self.table.write_gate.lock().await;
            // A step-up replaces the session it upgrades: a new cookie for new rights.
            if let Some(old) = cb.upgrade {
                if let Err(e) = self.store.terminate_session(old, now, "step-up").await {
                    return Err(Failure::unavailable(LoginError::TokenEndpoint(format!(
                        "store: {e}"
                    ))));
                }
                self.table.remove(old);
            }
            if let Err(e) = self.store.insert_session(&record).await {
                tracing::error!(error = %e, "cannot store a new session");
                return Err(Failure::unavailable(LoginError::TokenEndpoint(
                    "the session could not be stored".into(),
                )));
            }
            self.table.insert(LiveSession::from_record(&record));
        }
        tracing::info!(
            target: "gatehouse::login",
            user = %record.username,
            client = %cb.client,
            step_up = cb.upgrade.is_some(),
            "login"
        );
        self.audit
            .record(NewEntry::new(
                &record.username,
                &cb.client.to_string(),
                "login",
                "",
                "ok",
                json!({
                    // The session id's first 16 hex digits: enough to find it, never the cookie.
                    "session": &record.id[..16],
                    "acr": record.acr, "amr": record.amr, "sid": record.sid,
                    "step_up": cb.upgrade.is_some(),
                }),
            ))
            .await;
        Ok(Completed::Session {
            cookie,
            record: Box::new(record),
        })
    }

    /// Ends the session a logout's cookie names (audited) and returns its ID
    /// token for the IdP's `id_token_hint`. An unknown cookie is no error.
    pub async fn logout(&self, cookie_value: &str) -> Result<Option<Vec<u8>>, DomainError> {
        let now = self.clock.now();
        let Ok(Some(rec)) = self.store.session(&session_id(cookie_value)).await else {
            return Ok(None);
        };
        let hint = rec
            .id_token
            .as_deref()
            .and_then(|t| self.token_sealer.open(t));
        if rec.terminated_at.is_none() {
            self.sessions
                .end(std::slice::from_ref(&rec), now, "logout")
                .await?;
            tracing::info!(target: "gatehouse::login", user = %rec.username, "logout");
            self.audit
                .record(NewEntry::new(
                    &rec.username,
                    rec.client_addr.as_deref().unwrap_or(""),
                    "logout",
                    &rec.id[..16],
                    "ok",
                    json!({}),
                ))
                .await;
        }
        Ok(hint)
    }

    /// OIDC back-channel logout: a `sid` ends that IdP session's sessions here;
    /// a token with only `sub` ends all of that user's. Each token id is used
    /// once. Returns how many sessions ended.
    pub async fn backchannel_logout(&self, token: &str) -> Result<usize, BackchannelError> {
        let refused = BackchannelError::Refused;
        let (issuer, claims) = self
            .validator
            .verify_signed(token, TokenKind::Logout)
            .await
            .map_err(|e| refused(LoginError::LogoutToken(e.as_str())))?;
        let Some(client_id) = issuer.client_id() else {
            return Err(refused(LoginError::LogoutToken(
                "the issuer has no client_id here",
            )));
        };
        let now = self.clock.wall();
        let req = check_logout_token(&issuer, &claims, client_id, now).map_err(refused)?;
        {
            let mut seen = self.logout_jtis.lock().unwrap_or_else(|e| e.into_inner());
            seen.retain(|_, exp| *exp + issuer.leeway_secs() > now);
            let key = format!("{}\u{0}{}", req.issuer, req.jti);
            if seen.contains_key(&key) {
                return Err(refused(LoginError::LogoutToken(
                    "replayed (jti already used)",
                )));
            }
            if seen.len() >= MAX_REMEMBERED_JTIS {
                // Forget the soonest-expiring: a logout must never be refused for space.
                if let Some(k) = seen.iter().min_by_key(|(_, e)| **e).map(|(k, _)| k.clone()) {
                    seen.remove(&k);
                }
            }
            seen.insert(key, req.exp);
        }
        // With a sid the sid decides (the sub is checked below).
        let by_sub = if req.sid.is_none() {
            req.sub.as_deref()
        } else {
            None
        };
        let sessions = self
            .store
            .live_sessions_by_idp(now, &req.issuer, req.sid.as_deref(), by_sub)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "back-channel logout cannot read sessions");
                BackchannelError::Unavailable
            })?;
        // With both, the sid decides, and the sub must agree.
        let sessions: Vec<SessionRecord> = sessions
            .into_iter()
            .filter(|s| req.sub.as_deref().is_none_or(|sub| s.subject == sub))
            .collect();
        if let Err(e) = self
            .sessions
            .end(&sessions, now, "backchannel-logout")
            .await
        {
            tracing::error!(error = ?e, "back-channel logout cannot end sessions");
            return Err(BackchannelError::Unavailable);
        }
        let by = if req.sid.is_some() { "sid" } else { "sub" };
        tracing::info!(target: "gatehouse::login", sessions = sessions.len(), by, "back-channel logout");
        self.audit
            .record(NewEntry::new(
                &req.issuer,
                "",
                "session.backchannel_logout",
                req.sub.as_deref().unwrap_or(""),
                "ok",
                json!({
                    "by": by,
                    "sessions": sessions.iter().map(|s| &s.id[..16]).collect::<Vec<_>>(),
                }),
            ))
            .await;
        Ok(sessions.len())
    }

    /// The session identity from a verified ID token and, for roles, the access
    /// token the token endpoint returned with it (Keycloak puts realm and client
    /// roles only there) when that token verifies as one of this issuer's.
    async fn identity_from_tokens(
        &self,
        issuer: &crate::identity::IssuerHandle,
        id_claims: &Map<String, Value>,
        access_token: Option<&str>,
        expires_at: i64,
    ) -> Result<Identity, LoginError> {
        let base = principal_from_claims(&issuer.issuer, id_claims, issuer.roles_claims())
            .map_err(|e| LoginError::IdToken(e.as_str()))?;
        let mut groups = base.groups.clone();
        if let Some(at) = access_token {
            if let Ok((h, claims)) = self.validator.verify_signed(at, TokenKind::Access).await {
                let same_subject =
                    claims.get("sub").and_then(Value::as_str) == Some(base.sub.as_str());
                if h.issuer == issuer.issuer && same_subject {
                    if let Ok(a) =
                        principal_from_claims(&issuer.issuer, &claims, issuer.roles_claims())
                    {
                        groups.extend(a.groups);
                    }
                }
            }
        }
        let auth_time = id_claims.get("auth_time").and_then(Value::as_i64);
        Ok(Identity::new(
            PrincipalParts {
                issuer: base.issuer,
                sub: base.sub,
                preferred_username: Some(base.user),
                email: base.email,
                name: base.name,
                groups,
                acr: base.acr,
                amr: base.amr,
                sid: base.sid,
            },
            auth_time,
            expires_at,
        ))
    }

    /// Verifies the ID token of a token response; returns the session identity.
    pub async fn verify_tokens(
        &self,
        tokens: &TokenSet,
        nonce: Option<&str>,
        max_age: Option<i64>,
        expected_issuer: &str,
    ) -> Result<(Identity, String), LoginError> {
        let setup = self
            .setup()
            .ok_or(LoginError::NotConfigured("no login issuer"))?;
        let id_token = tokens
            .id_token
            .as_deref()
            .ok_or(LoginError::IdToken("the token response has no ID token"))?;
        let (issuer, claims) = self
            .validator
            .verify_signed(id_token, TokenKind::Id)
            .await
            .map_err(|e| LoginError::IdToken(e.as_str()))?;
        check_id_token(
            &issuer,
            expected_issuer,
            &claims,
            &setup.client_id,
            nonce,
            max_age,
            self.clock.wall(),
        )?;
        let now = self.clock.now();
        let lifetime = self.lifetime;
        let identity = self
            .identity_from_tokens(
                &issuer,
                &claims,
                tokens.access_token.as_deref(),
                now + lifetime,
            )
            .await?;
        Ok((identity, id_token.to_string()))
    }

    /// Refreshes the IdP tokens of sessions whose access token is about to expire,
    /// so that role changes at the IdP reach gatehouse. A refused refresh ends the
    /// session; an unreachable IdP is tried again on the next round.
    pub async fn refresh_due(&self) {
        let Some(setup) = self.setup.as_deref() else {
            return;
        };
        let now = self.clock.now();
        let inactivity = self.inactivity;
        for live in self.table.due_for_refresh(now, inactivity) {
            if let Err(e) = self.refresh_one(setup, &live.id, now).await {
                // Try again in a minute, not on every 5-second round.
                live.retry_after.store(
                    now + REFRESH_RETRY_SECS,
                    std::sync::atomic::Ordering::Relaxed,
                );
                tracing::warn!(target: "gatehouse::login", session = %&live.id[..16], reason = %e, "session refresh failed");
            }
        }
    }

    async fn refresh_one(&self, setup: &LoginSetup, id: &str, now: i64) -> Result<(), LoginError> {
        let Ok(Some(rec)) = self.store.session(id).await else {
            return Ok(());
        };
        if rec.terminated_at.is_some() {
            return Ok(());
        }
        let Some(rt) = rec
            .refresh_token
            .as_deref()
            .and_then(|t| self.token_sealer.open(t))
            .and_then(|b| String::from_utf8(b).ok())
        else {
            // Unreadable (another secret): the session cannot be kept current.
            self.end_after_failed_refresh(&rec, now).await;
            return Err(LoginError::TokenEndpoint(
                "the stored refresh token cannot be opened".into(),
            ));
        };
        let ep = Endpoints::of(&setup.issuer, setup.allow_http)?;
        let tokens = match token_request(
            &self.http,
            &ep,
            &setup.client_id,
            setup.client_secret.as_ref().map(|s| s.expose()),
            &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
        )
        .await
        {
            Ok(t) => t,
            Err(LoginError::TokenEndpoint(code))
                if code.starts_with("invalid_grant")
                    || code.starts_with("HTTP 4")
                    || code == "unauthorized_client" =>
            {
                self.end_after_failed_refresh(&rec, now).await;
                return Err(LoginError::TokenEndpoint(code));
            }
            Err(e) => return Err(e),
        };
        let (identity, id_token) = if tokens.id_token.is_some() {
            match self.verify_tokens(&tokens, None, None, &rec.issuer).await {
                Ok((i, t)) if i.sub == rec.subject => (i, Some(t)),
                _ => {
                    self.end_after_failed_refresh(&rec, now).await;
                    return Err(LoginError::IdToken(
                        "the refreshed ID token does not match the session",
                    ));
                }
            }
        } else {
            // No new ID token: roles from the new access token, the rest unchanged.
            let mut claims = Map::new();
            claims.insert("sub".into(), Value::String(rec.subject.clone()));
            let access = tokens.access_token.as_deref();
            let ident = self
                .identity_from_tokens(&setup.issuer, &claims, access, rec.expires_at)
                .await?;
            let groups = if access.is_none() {
                rec.groups.clone()
            } else {
                ident.groups.clone()
            };
            (session_identity(&rec, groups), None)
        };
        let update = SessionUpdate {
            groups: identity.groups.clone(),
            email: identity.email.clone(),
            name: identity.name.clone(),
            acr: identity.acr.clone().or(rec.acr.clone()),
            amr: if identity.amr.is_empty() {
                rec.amr.clone()
            } else {
                identity.amr.clone()
            },
            auth_time: identity.iat.or(rec.auth_time),
            id_token: id_token
                .map(|t| self.token_sealer.seal(t.as_bytes()))
                .or(rec.id_token.clone()),
            refresh_token: tokens
                .refresh_token
                .as_deref()
                .map(|t| self.token_sealer.seal(t.as_bytes()))
                .or(rec.refresh_token.clone()),
            // The old refresh token is kept when no new one came: still refreshable.
            refresh_at: Some(next_refresh(tokens.expires_in, now)),
        };
        let _gate = self.table.write_gate.lock().await;
        match self.store.update_session(&rec.id, &update).await {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(e) => return Err(LoginError::TokenEndpoint(format!("store: {e}"))),
        }
        if let Ok(Some(fresh)) = self.store.session(&rec.id).await {
            self.table.replace(LiveSession::from_record(&fresh));
        }
        tracing::info!(target: "gatehouse::login", user = %rec.username, "session refreshed");
        Ok(())
    }

    async fn end_after_failed_refresh(&self, rec: &SessionRecord, now: i64) {
        self.audit
            .record(crate::audit::NewEntry::new(
                "gatehouse",
                "",
                "session.refresh_failed",
                &rec.id[..rec.id.len().min(16)],
                "ok",
                serde_json::json!({"user": rec.username}),
            ))
            .await;
        if let Err(e) = self
            .sessions
            .end(std::slice::from_ref(rec), now, "refresh-failed")
            .await
        {
            tracing::error!(error = ?e, "cannot end a session whose refresh failed");
        }
    }
}

/// When to refresh tokens that live `expires_in` seconds (default 5 minutes):
/// a margin before they expire, and never sooner than half their life.
pub fn next_refresh(expires_in: Option<i64>, now: i64) -> i64 {
    let life = expires_in.unwrap_or(300).clamp(30, 24 * 3600);
    now + (life - REFRESH_MARGIN_SECS).max(life / 2)
}

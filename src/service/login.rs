//! The login's domain half: verifying the tokens a token endpoint returned
//! (ID token claims, roles from the access token) and the background refresh of
//! sessions' IdP tokens, which keeps role changes flowing and ends sessions the
//! IdP no longer honours. The browser half (cookies, redirects) is `http::login`.

use serde_json::{Map, Value};

use crate::app::Inner;
use crate::decision::Identity;
use crate::identity::claims::identity_from_claims;
use crate::identity::oidc::{
    check_id_token, token_request, Endpoints, LoginError, TokenSet, REFRESH_MARGIN_SECS,
};
use crate::identity::session::LiveSession;
use crate::identity::TokenKind;
use crate::store::{SessionRecord, SessionUpdate};

/// The session identity from a verified ID token and, for roles, the access
/// token the token endpoint returned with it (Keycloak puts realm and client
/// roles only there) when that token verifies as one of this issuer's.
async fn identity_from_tokens(
    st: &Inner,
    issuer: &crate::identity::IssuerHandle,
    id_claims: &Map<String, Value>,
    access_token: Option<&str>,
    expires_at: i64,
) -> Result<Identity, LoginError> {
    let base = identity_from_claims(
        &issuer.issuer,
        id_claims,
        issuer.roles_claims(),
        expires_at,
        None,
    )
    .map_err(|e| LoginError::IdToken(e.as_str()))?;
    let mut groups = base.groups.clone();
    if let Some(at) = access_token {
        if let Ok((h, claims)) = st.validator.verify_signed(at, TokenKind::Access).await {
            let same_subject = claims.get("sub").and_then(Value::as_str) == Some(base.sub.as_str());
            if h.issuer == issuer.issuer && same_subject {
                if let Ok(a) = identity_from_claims(
                    &issuer.issuer,
                    &claims,
                    issuer.roles_claims(),
                    expires_at,
                    None,
                ) {
                    groups.extend(a.groups);
                }
            }
        }
    }
    let auth_time = id_claims.get("auth_time").and_then(Value::as_i64);
    Ok(Identity::new(
        base.issuer,
        base.sub,
        Some(base.user),
        base.email,
        base.name,
        groups,
        base.acr,
        base.amr,
        base.sid,
        auth_time,
        expires_at,
    ))
}

/// When to refresh tokens that live `expires_in` seconds (default 5 minutes):
/// a margin before they expire, and never sooner than half their life.
pub fn next_refresh(expires_in: Option<i64>, now: i64) -> i64 {
    let life = expires_in.unwrap_or(300).clamp(30, 24 * 3600);
    now + (life - REFRESH_MARGIN_SECS).max(life / 2)
}

/// Verifies the ID token of a token response; returns the session identity.
pub async fn verify_login_tokens(
    st: &Inner,
    tokens: &TokenSet,
    nonce: Option<&str>,
    max_age: Option<i64>,
    expected_issuer: &str,
) -> Result<(Identity, String), LoginError> {
    let setup = st
        .login
        .as_ref()
        .ok_or(LoginError::NotConfigured("no login issuer"))?;
    let id_token = tokens
        .id_token
        .as_deref()
        .ok_or(LoginError::IdToken("the token response has no ID token"))?;
    let (issuer, claims) = st
        .validator
        .verify_signed(id_token, TokenKind::Id)
        .await
        .map_err(|e| LoginError::IdToken(e.as_str()))?;
    let now = st.clock.now();
    check_id_token(
        &issuer,
        expected_issuer,
        &claims,
        &setup.client_id,
        nonce,
        max_age,
        now,
    )?;
    let lifetime = st.config.session.lifetime.as_secs() as i64;
    let identity = identity_from_tokens(
        st,
        &issuer,
        &claims,
        tokens.access_token.as_deref(),
        now + lifetime,
    )
    .await?;
    Ok((identity, id_token.to_string()))
}

/// How long to wait after a refresh that failed for a passing reason.
pub const REFRESH_RETRY_SECS: i64 = 60;

/// Refreshes the IdP tokens of sessions whose access token is about to expire,
/// so that role changes at the IdP reach gatehouse. A refused refresh ends the
/// session; an unreachable IdP is tried again on the next round.
pub async fn refresh_due_sessions(st: &Inner) {
    let Some(setup) = &st.login else {
        return;
    };
    let now = st.clock.now();
    let inactivity = st.config.session.inactivity.as_secs() as i64;
    for live in st.sessions.due_for_refresh(now, inactivity) {
        if let Err(e) = refresh_one(st, setup, &live.id, now).await {
            // Try again in a minute, not on every 5-second round.
            live.retry_after.store(
                now + REFRESH_RETRY_SECS,
                std::sync::atomic::Ordering::Relaxed,
            );
            tracing::warn!(target: "gatehouse::login", session = %&live.id[..16], reason = %e, "session refresh failed");
        }
    }
}

async fn refresh_one(
    st: &Inner,
    setup: &crate::app::LoginSetup,
    id: &str,
    now: i64,
) -> Result<(), LoginError> {
    let Ok(Some(rec)) = st.store.session(id).await else {
        return Ok(());
    };
    if rec.terminated_at.is_some() {
        return Ok(());
    }
    let Some(rt) = rec
        .refresh_token
        .as_deref()
        .and_then(|t| st.token_sealer.open(t))
        .and_then(|b| String::from_utf8(b).ok())
    else {
        // Unreadable (another secret): the session cannot be kept current.
        end_after_failed_refresh(st, &rec, now).await;
        return Err(LoginError::TokenEndpoint(
            "the stored refresh token cannot be opened".into(),
        ));
    };
    let ep = Endpoints::of(&setup.issuer, setup.allow_http)?;
    let tokens = match token_request(
        &st.oidc_http,
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
            end_after_failed_refresh(st, &rec, now).await;
            return Err(LoginError::TokenEndpoint(code));
        }
        Err(e) => return Err(e),
    };
    let (identity, id_token) = if tokens.id_token.is_some() {
        match verify_login_tokens(st, &tokens, None, None, &rec.issuer).await {
            Ok((i, t)) if i.sub == rec.subject => (i, Some(t)),
            _ => {
                end_after_failed_refresh(st, &rec, now).await;
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
        let ident =
            identity_from_tokens(st, &setup.issuer, &claims, access, rec.expires_at).await?;
        let groups = if access.is_none() {
            rec.groups.clone()
        } else {
            ident.groups
        };
        (
            Identity::new(
                rec.issuer.clone(),
                rec.subject.clone(),
                Some(rec.username.clone()),
                rec.email.clone(),
                rec.name.clone(),
                groups,
                rec.acr.clone(),
                rec.amr.clone(),
                rec.sid.clone(),
                rec.auth_time,
                rec.expires_at,
            ),
            None,
        )
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
            .map(|t| st.token_sealer.seal(t.as_bytes()))
            .or(rec.id_token.clone()),
        refresh_token: tokens
            .refresh_token
            .as_deref()
            .map(|t| st.token_sealer.seal(t.as_bytes()))
            .or(rec.refresh_token.clone()),
        // The old refresh token is kept when no new one came: still refreshable.
        refresh_at: Some(next_refresh(tokens.expires_in, now)),
    };
    let _gate = st.sessions.write_gate.lock().await;
    match st.store.update_session(&rec.id, &update).await {
        Ok(true) => {}
        Ok(false) => return Ok(()),
        Err(e) => return Err(LoginError::TokenEndpoint(format!("store: {e}"))),
    }
    if let Ok(Some(fresh)) = st.store.session(&rec.id).await {
        st.sessions.replace(LiveSession::from_record(&fresh));
    }
    tracing::info!(target: "gatehouse::login", user = %rec.username, "session refreshed");
    Ok(())
}

async fn end_after_failed_refresh(st: &Inner, rec: &SessionRecord, now: i64) {
    st.audit
        .record(crate::audit::NewEntry::new(
            "gatehouse",
            "",
            "session.refresh_failed",
            &rec.id[..rec.id.len().min(16)],
            "ok",
            serde_json::json!({"user": rec.username}),
        ))
        .await;
    if let Err(e) =
        crate::service::sessions::end_sessions(st, std::slice::from_ref(rec), now, "refresh-failed")
            .await
    {
        tracing::error!(error = ?e, "cannot end a session whose refresh failed");
    }
}

//! The browser side: `GET /login`, `GET /callback`, `GET|POST /logout`,
//! `POST /backchannel-logout`. The protocol checks live in `identity::oidc`,
//! the sessions, tokens and audit entries in `service::login`; this module
//! moves cookies and redirects.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::app::{AppState, Inner};
use crate::http::api::{error_response, request_client};
use crate::identity::oidc::{
    authorization_url, constant_time_eq, safe_redirect, short_code, Endpoints, LoginError,
    PreLogin, LOGIN_TTL_SECS,
};
use crate::identity::seal::random_token;
use crate::identity::session::LiveSession;
use crate::service::login::{BackchannelError, Callback, Completed, Failure};

/// A cookie name that appears more than once: ambiguous, so refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DuplicateCookie;

/// The value of one cookie; `Err` when the name appears more than once (a
/// second cookie with our name, e.g. set by a sibling subdomain, is ambiguous).
pub fn cookie_value<'a>(h: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, DuplicateCookie> {
    cookie_in(
        h.get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok()),
        name,
    )
}

/// [`cookie_value`] over `Cookie` header values already read as text (values
/// that are not text are skipped by the caller).
pub fn cookie_in<'a>(
    values: impl Iterator<Item = &'a str>,
    name: &str,
) -> Result<Option<&'a str>, DuplicateCookie> {
    let mut found = None;
    for v in values {
        for pair in v.split(';') {
            let (k, val) = match pair.trim().split_once('=') {
                Some(kv) => kv,
                None => continue,
            };
            if k == name {
                if found.is_some() {
                    return Err(DuplicateCookie);
                }
                found = Some(val.trim_matches('"'));
            }
        }
    }
    Ok(found)
}

fn set_cookie(st: &Inner, name: &str, value: &str, max_age: i64, domain_wide: bool) -> HeaderValue {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}");
    if !st.config.session.insecure_http {
        c.push_str("; Secure");
    }
    if domain_wide {
        if let Some(d) = &st.config.session.cookie_domain {
            c.push_str("; Domain=");
            c.push_str(d);
        }
    }
    HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
}

/// The pre-login cookie of one login attempt: several tabs may log in at once.
fn prelogin_cookie_name(st: &Inner, state: &str) -> String {
    format!(
        "{}_login_{}",
        st.config.session.cookie_name,
        state.get(..10).unwrap_or(state)
    )
}

fn redirect(to: &str) -> Response {
    let mut r = StatusCode::FOUND.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    no_store(&mut r);
    r
}

fn no_store(r: &mut Response) {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

fn login_failed(status: StatusCode, e: &LoginError) -> Response {
    tracing::warn!(target: "gatehouse::login", code = e.code(), reason = %e, "login failed");
    let mut r = error_response(status, e.code(), e.to_string());
    no_store(&mut r);
    r
}

fn banned_page() -> Response {
    let mut r = error_response(
        StatusCode::FORBIDDEN,
        "banned",
        "too many refused credentials; try again later".into(),
    );
    no_store(&mut r);
    r
}

/// Where to send the browser: `rd` if it is safe, else the configured default.
pub fn safe_rd(st: &Inner, rd: Option<&str>) -> String {
    rd.and_then(|rd| {
        safe_redirect(
            rd,
            &st.config.session.redirect_domains,
            st.config.session.insecure_http,
        )
    })
    .unwrap_or_else(|| st.config.session.default_redirect.clone())
}

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    pub rd: Option<String>,
    /// Set by the decision endpoints when a rule needs a second factor.
    pub step_up: Option<String>,
}

/// `GET /login?rd=URL[&step_up=1]` — starts the authorization code flow.
pub async fn login(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> Response {
    let client = request_client(&st, peer.ip(), &headers);
    if st.regulation.ip_banned(client, st.clock.now()) {
        return banned_page();
    }
    let Some(setup) = st.services.login.setup() else {
        return login_failed(
            StatusCode::NOT_FOUND,
            &LoginError::NotConfigured("no [[issuers]] entry has a client_id"),
        );
    };
    let ep = match Endpoints::of(&setup.issuer, setup.allow_http) {
        Ok(ep) => ep,
        Err(e) => return login_failed(StatusCode::SERVICE_UNAVAILABLE, &e),
    };
    let now = st.clock.now();
    let step_up = q.step_up.as_deref() == Some("1");
    // A step-up upgrades the browser's current session, if it has one.
    let upgrade = if step_up {
        current_session(&st, &headers, now).map(|s| s.id.clone())
    } else {
        None
    };
    let pre = PreLogin {
        state: random_token(32),
        nonce: random_token(32),
        verifier: random_token(48),
        rd: safe_rd(&st, q.rd.as_deref()),
        issuer: setup.issuer.issuer.clone(),
        exp: now + LOGIN_TTL_SECS,
        max_age: if step_up {
            st.config
                .session
                .step_up_max_age
                .map(|d| d.as_secs() as i64)
        } else {
            None
        },
        upgrade,
    };
    let acr = if step_up {
        st.config.session.step_up_acr_values.as_deref()
    } else {
        None
    };
    let url = authorization_url(&ep, &setup.client_id, &setup.redirect_uri, &pre, acr);
    let sealed = st
        .login_sealer
        .seal(&serde_json::to_vec(&pre).unwrap_or_default());
    let mut r = redirect(&url);
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(
            &st,
            &prelogin_cookie_name(&st, &pre.state),
            &sealed,
            LOGIN_TTL_SECS,
            false,
        ),
    );
    r
}

/// The live session the browser's cookie names, if any.
fn current_session(st: &Inner, headers: &HeaderMap, now: i64) -> Option<Arc<LiveSession>> {
    let v = cookie_value(headers, &st.config.session.cookie_name).ok()??;
    st.sessions
        .lookup(v, now, st.config.session.inactivity.as_secs() as i64)
        .ok()
}

#[derive(Debug, Deserialize)]
pub struct CallbackQuery {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    /// RFC 9207: when present, the issuer the answer comes from.
    pub iss: Option<String>,
}

/// A callback refused: the status, the error (audited by the wrapper) and
/// whether the pre-login cookie is cleared with it.
struct Refused {
    status: StatusCode,
    failure: Failure,
    clear: Option<HeaderValue>,
}

/// `GET /callback` — the IdP's answer: checks state against the pre-login
/// cookie, then `service::login` exchanges the code (with the PKCE verifier),
/// verifies the ID token and creates the session; the browser goes to `rd`.
/// Every refusal is audited once, here.
pub async fn callback(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    q: Query<CallbackQuery>,
) -> Response {
    let client = request_client(&st, peer.ip(), &headers);
    match callback_inner(&st, client, headers, q).await {
        Ok(r) => r,
        Err(x) => {
            st.services.login.refused(client, &x.failure).await;
            let mut r = login_failed(x.status, &x.failure.error);
            if let Some(c) = x.clear {
                r.headers_mut().append(header::SET_COOKIE, c);
            }
            r
        }
    }
}

async fn callback_inner(
    st: &AppState,
    client: std::net::IpAddr,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Result<Response, Refused> {
    let refuse = |status, error, clear: Option<&HeaderValue>| Refused {
        status,
        failure: Failure {
            error,
            unavailable: false,
        },
        clear: clear.cloned(),
    };
    let login = &st.services.login;
    let Some(setup) = login.setup() else {
        return Err(refuse(
            StatusCode::NOT_FOUND,
            LoginError::NotConfigured("no [[issuers]] entry has a client_id"),
            None,
        ));
    };
    let now = st.clock.now();
    if st.regulation.ip_banned(client, now) {
        return Ok(banned_page());
    }
    let state = q.state.as_deref().unwrap_or("");
    if state.len() != 43 {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            LoginError::StateMismatch,
            None,
        ));
    }
    let cookie_name = prelogin_cookie_name(st, state);
    let clear = set_cookie(st, &cookie_name, "", 0, false);
    let with_clear = |mut r: Response| {
        r.headers_mut().append(header::SET_COOKIE, clear.clone());
        r
    };
    let pre: Option<PreLogin> = match cookie_value(&headers, &cookie_name) {
        Ok(Some(v)) => st
            .login_sealer
            .open(v)
            .and_then(|b| serde_json::from_slice(&b).ok()),
        _ => None,
    };
    let Some(pre) = pre.filter(|p| p.exp > now && p.issuer == setup.issuer.issuer) else {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            LoginError::BadPreLogin,
            Some(&clear),
        ));
    };
    if !constant_time_eq(pre.state.as_bytes(), state.as_bytes()) {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            LoginError::StateMismatch,
            Some(&clear),
        ));
    }
    if q.iss.as_deref().is_some_and(|i| i != pre.issuer) {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            LoginError::IdpError("the answer names another issuer".into()),
            Some(&clear),
        ));
    }
    if let Some(e) = &q.error {
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            LoginError::IdpError(short_code(e)),
            Some(&clear),
        ));
    }
    let Some(code) = q
        .code
        .as_deref()
        .filter(|c| !c.is_empty() && c.len() <= 2048)
    else {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            LoginError::IdpError("no code".into()),
            Some(&clear),
        ));
    };
    let done = login
        .complete(&Callback {
            code,
            verifier: &pre.verifier,
            nonce: &pre.nonce,
            max_age: pre.max_age,
            issuer: &pre.issuer,
            upgrade: pre.upgrade.as_deref(),
            client,
            user_agent: headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok()),
        })
        .await
        .map_err(|failure| Refused {
            status: if failure.unavailable {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::UNAUTHORIZED
            },
            failure,
            clear: Some(clear.clone()),
        })?;
    let Completed::Session { cookie, .. } = done else {
        return Ok(with_clear(banned_page()));
    };
    let lifetime = st.config.session.lifetime.as_secs() as i64;
    let mut r = with_clear(redirect(&pre.rd));
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(st, &st.config.session.cookie_name, &cookie, lifetime, true),
    );
    Ok(r)
}

#[derive(Debug, Deserialize)]
pub struct LogoutQuery {
    pub rd: Option<String>,
}

/// `GET|POST /logout[?rd=URL]` — ends the browser's session here and at the IdP.
pub async fn logout(
    State(st): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<LogoutQuery>,
) -> Response {
    let rd = safe_rd(&st, q.rd.as_deref());
    let mut id_token_hint = None;
    if let Ok(Some(v)) = cookie_value(&headers, &st.config.session.cookie_name) {
        match st.services.login.logout(v).await {
            Ok(hint) => id_token_hint = hint,
            Err(e) => {
                tracing::error!(error = %e, "logout could not end the session");
                return login_failed(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &LoginError::TokenEndpoint("the session could not be ended; try again".into()),
                );
            }
        }
    }
    let target = match st
        .services
        .login
        .setup()
        .and_then(|s| {
            Endpoints::of(&s.issuer, s.allow_http)
                .ok()
                .map(|ep| (s, ep))
        })
        .and_then(|(s, ep)| ep.end_session.map(|u| (s, u)))
    {
        Some((setup, mut u)) => {
            {
                let mut qp = u.query_pairs_mut();
                qp.append_pair("client_id", &setup.client_id);
                if let Some(h) = id_token_hint
                    .as_deref()
                    .and_then(|b| std::str::from_utf8(b).ok())
                {
                    qp.append_pair("id_token_hint", h);
                }
                if q.rd.is_some() {
                    qp.append_pair("post_logout_redirect_uri", &rd);
                }
            }
            u.to_string()
        }
        None => rd,
    };
    let mut r = redirect(&target);
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&st, &st.config.session.cookie_name, "", 0, true),
    );
    r
}

#[derive(Debug, Deserialize)]
pub struct BackchannelForm {
    pub logout_token: Option<String>,
}

fn backchannel_error(e: &LoginError) -> Response {
    tracing::warn!(target: "gatehouse::login", reason = %e, "back-channel logout refused");
    let mut r = error_response(StatusCode::BAD_REQUEST, "invalid_request", e.to_string());
    no_store(&mut r);
    r
}

/// `POST /backchannel-logout` — OIDC back-channel logout (see
/// `service::login::Login::backchannel_logout`).
pub async fn backchannel_logout(State(st): State<AppState>, body: axum::body::Bytes) -> Response {
    let form: BackchannelForm = match serde_urlencoded_form(&body) {
        Some(f) => f,
        None => return backchannel_error(&LoginError::LogoutToken("the body is not a form")),
    };
    let Some(token) = form.logout_token.filter(|t| !t.is_empty()) else {
        return backchannel_error(&LoginError::LogoutToken("no logout_token"));
    };
    match st.services.login.backchannel_logout(&token).await {
        Ok(_) => {
            let mut r = StatusCode::OK.into_response();
            no_store(&mut r);
            r
        }
        Err(BackchannelError::Refused(e)) => backchannel_error(&e),
        Err(BackchannelError::Unavailable) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

fn serde_urlencoded_form(body: &[u8]) -> Option<BackchannelForm> {
    if body.len() > 64 * 1024 {
        return None;
    }
    let mut token = None;
    for (k, v) in url::form_urlencoded::parse(body) {
        if k == "logout_token" {
            if token.is_some() {
                return None;
            }
            token = Some(v.into_owned());
        }
    }
    Some(BackchannelForm {
        logout_token: token,
    })
}

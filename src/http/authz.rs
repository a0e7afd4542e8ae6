//! The decision endpoints. One strict header set per proxy flavour turns the
//! request into a `Target`; `decide()` gives the verdict; the answer takes the
//! shape that flavour's proxy understands. Nothing here waits on a database.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

use crate::app::{counts_as_failure, note_failure, AppState, Inner};
use crate::decision::target::{
    canonical_host, canonical_method, canonical_path, client_address, split_absolute_url,
    split_origin_form, Scheme,
};
use crate::decision::{
    decide, CredentialError, Decision, Identity, Reason, Subject, Target, TargetError,
};
use crate::http::login::cookie_value;

/// Which proxy convention a request arrived under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// nginx `auth_request`, ingress-nginx `auth-url`: `X-Original-URL`, 401 + `Location`.
    Nginx,
    /// Caddy `forward_auth`, Traefik `ForwardAuth`: `X-Forwarded-*`, 302 to login.
    Forward,
}

impl Flavour {
    fn as_str(self) -> &'static str {
        match self {
            Self::Nginx => "nginx",
            Self::Forward => "forward",
        }
    }
}

// Pre-parsed names: looking a header up by &str re-parses and re-hashes the name.
static X_ORIGINAL_URL: HeaderName = HeaderName::from_static("x-original-url");
static X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
static X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
static X_REQUESTED_WITH: HeaderName = HeaderName::from_static("x-requested-with");
static SEC_FETCH_MODE: HeaderName = HeaderName::from_static("sec-fetch-mode");
static REMOTE_USER: HeaderName = HeaderName::from_static("remote-user");
static REMOTE_GROUPS: HeaderName = HeaderName::from_static("remote-groups");
static REMOTE_EMAIL: HeaderName = HeaderName::from_static("remote-email");
static REMOTE_NAME: HeaderName = HeaderName::from_static("remote-name");

// The handlers take the whole request rather than the `HeaderMap` extractor,
// which would clone every header on the hot path.
pub async fn nginx(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    answer(&st, Flavour::Nginx, peer.ip(), req.headers()).await
}

pub async fn forward(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    answer(&st, Flavour::Forward, peer.ip(), req.headers()).await
}

/// Exactly one value of a header, as text; several values are ambiguous.
fn single<'a>(h: &'a HeaderMap, name: &'static HeaderName) -> Result<Option<&'a str>, TargetError> {
    let mut it = h.get_all(name).iter();
    let first = match it.next() {
        None => return Ok(None),
        Some(v) => v,
    };
    if it.next().is_some() {
        return Err(TargetError::DuplicateHeader(name.as_str()));
    }
    first
        .to_str()
        .map(Some)
        .map_err(|_| TargetError::MissingHeader(name.as_str()))
}

fn required<'a>(h: &'a HeaderMap, name: &'static HeaderName) -> Result<&'a str, TargetError> {
    single(h, name)?.ok_or(TargetError::MissingHeader(name.as_str()))
}

/// The WebSocket handshake headers that survive every proxy (see PROXY-NOTES).
fn is_websocket(h: &HeaderMap) -> bool {
    h.contains_key(header::SEC_WEBSOCKET_KEY) && h.contains_key(header::SEC_WEBSOCKET_VERSION)
}

/// Reads the proxy's description of the request. Forwarded headers count only
/// when the socket peer is a trusted proxy; otherwise there is no target at all.
pub fn parse_target(
    flavour: Flavour,
    trusted: &[ipnet::IpNet],
    peer: IpAddr,
    h: &HeaderMap,
    now: i64,
) -> Result<Target, TargetError> {
    let peer = peer.to_canonical();
    if !crate::decision::target::in_nets(peer, trusted) {
        return Err(TargetError::UntrustedCaller);
    }
    let xff_values = h.get_all(&X_FORWARDED_FOR);
    if xff_values.iter().any(|v| v.to_str().is_err()) {
        return Err(TargetError::BadForwardedFor);
    }
    let xff = || xff_values.iter().filter_map(|v| v.to_str().ok());
    let has_xff = xff_values.iter().next().is_some();
    let (scheme, authority, path_and_query, method, client) = match flavour {
        Flavour::Nginx => {
            let url = required(h, &X_ORIGINAL_URL)?;
            let (scheme, authority, pq) = split_absolute_url(url)?;
            let method = single(h, &X_ORIGINAL_METHOD)?.unwrap_or("GET");
            let client = if has_xff {
                client_address(peer, trusted, xff())?
            } else {
                match single(h, &X_REAL_IP)? {
                    Some(ip) => client_address(peer, trusted, [ip])?,
                    None => peer,
                }
            };
            (scheme, authority, pq, method, client)
        }
        Flavour::Forward => {
            let scheme = Scheme::parse(required(h, &X_FORWARDED_PROTO)?)?;
            let authority = required(h, &X_FORWARDED_HOST)?;
            let uri = required(h, &X_FORWARDED_URI)?;
            let method = required(h, &X_FORWARDED_METHOD)?;
            let client = client_address(peer, trusted, xff())?;
            (scheme, authority, uri, method, client)
        }
    };
    let (path, _query) = split_origin_form(path_and_query)?;
    let (host, port) = canonical_host(authority, scheme)?;
    Ok(Target {
        scheme,
        host,
        port,
        path: canonical_path(path)?,
        raw_path_and_query: path_and_query.to_string(),
        method: canonical_method(method)?,
        client,
        websocket: is_websocket(h),
        at: now,
    })
}

/// The bearer token of `Authorization`: `None` without one (another scheme, such
/// as Basic for the upstream's own login, is not ours), `Err` when ambiguous or
/// malformed (two headers, an empty token, non-text).
pub fn bearer(h: &HeaderMap) -> Option<Result<&str, ()>> {
    let mut auth = h.get_all(header::AUTHORIZATION).iter();
    match (auth.next(), auth.next()) {
        (Some(_), Some(_)) => Some(Err(())),
        (Some(v), None) => match v.to_str() {
            Ok(s) => match s.split_once(' ') {
                Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => {
                    let t = rest.trim();
                    Some(if t.is_empty() { Err(()) } else { Ok(t) })
                }
                _ => None,
            },
            Err(_) => Some(Err(())),
        },
        _ => None,
    }
}

/// Validates a token and applies revocations, on every request (cached token
/// or not), so a termination is immediate. The error is a reason code.
pub async fn authenticate(st: &AppState, token: &str) -> Result<Arc<Identity>, &'static str> {
    let reason = match st.validator.validate(token).await {
        Ok(id) if !st.revocations.load().is_revoked(&id) => return Ok(id),
        Ok(id) => {
            // A verified user insisting with revoked tokens counts against the user.
            note_failure(st, None, Some(&id.user), "revoked");
            "revoked"
        }
        Err(e) => e.as_str(),
    };
    st.metrics.auth_failures.inc([reason]);
    Err(reason)
}

/// Where the subject's credentials came from (step-up applies to sessions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    None,
    Bearer,
    Session,
    QueryToken,
}

/// The session cookie's subject, with revocations applied (a session whose IdP
/// `sid` was revoked ends with it). The error is a reason code.
pub fn session_subject(st: &Inner, value: &str, now: i64) -> Result<Arc<Identity>, &'static str> {
    let inactivity = st.config.session.inactivity.as_secs() as i64;
    let reason = match st.sessions.lookup(value, now, inactivity) {
        Ok(s) if !st.revocations.load().is_revoked(&s.identity) => return Ok(s.identity.clone()),
        Ok(_) => "revoked",
        Err(miss) => miss.as_str(),
    };
    st.metrics.auth_failures.inc([reason]);
    Err(reason)
}

/// Finds the credentials in the documented order: `Authorization: Bearer`, the
/// session cookie, then `?token=` on WebSocket upgrades.
async fn identify(
    st: &AppState,
    h: &HeaderMap,
    target: &Target,
) -> (Subject, Source, Option<&'static str>) {
    let query_token;
    let (token, source) = match bearer(h) {
        Some(t) => (Some(t), Source::Bearer),
        None => match cookie_value(h, &st.config.session.cookie_name) {
            Err(_) => (Some(Err(())), Source::Session),
            Ok(Some(v)) => {
                return match session_subject(st, v, target.at) {
                    Ok(id) => (Subject::User(id), Source::Session, None),
                    Err(reason) => (
                        Subject::Refused(CredentialError::Invalid(reason)),
                        Source::Session,
                        Some(reason),
                    ),
                }
            }
            Ok(None) if target.websocket => {
                query_token = ws_query_token(&target.raw_path_and_query);
                (
                    query_token.as_ref().map(|r| r.as_deref().map_err(|_| ())),
                    Source::QueryToken,
                )
            }
            Ok(None) => (None, Source::None),
        },
    };
    match token {
        None => (Subject::Anonymous, Source::None, None),
        Some(Err(())) => (
            Subject::Refused(CredentialError::Malformed),
            source,
            Some("malformed_authorization"),
        ),
        Some(Ok(t)) => match authenticate(st, t).await {
            Ok(id) => (Subject::User(id), source, None),
            Err(reason) => (
                Subject::Refused(CredentialError::Invalid(reason)),
                source,
                Some(reason),
            ),
        },
    }
}

/// The `token` query parameter of the forwarded URI; two of them are ambiguous.
fn ws_query_token(path_and_query: &str) -> Option<Result<String, ()>> {
    let (_, q) = path_and_query.split_once('?')?;
    let mut found = None;
    for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
        if k == "token" {
            if found.is_some() {
                return Some(Err(()));
            }
            found = Some(v.into_owned());
        }
    }
    found.map(Ok)
}

/// A browser navigation gets a redirect to the login page; API clients get 401.
fn is_browser_navigation(h: &HeaderMap, target: &Target) -> bool {
    if target.websocket || h.contains_key(header::AUTHORIZATION) {
        return false;
    }
    let hv = |n: &HeaderName| h.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    if hv(&X_REQUESTED_WITH).eq_ignore_ascii_case("xmlhttprequest") {
        return false;
    }
    match h.get(&SEC_FETCH_MODE).and_then(|v| v.to_str().ok()) {
        Some(mode) => mode.eq_ignore_ascii_case("navigate"),
        None => hv(&header::ACCEPT).contains("text/html"),
    }
}

fn login_url(st: &AppState, target: &Target, step_up: bool) -> String {
    let rd: String =
        url::form_urlencoded::byte_serialize(target.original_url().as_bytes()).collect();
    let extra = if step_up { "&step_up=1" } else { "" };
    format!("{}/login?rd={rd}{extra}", st.public_base)
}

/// A redirect to the login page in the shape each flavour's proxy passes on:
/// 302/303 for Caddy and Traefik, 401 with `Location` for nginx's `error_page`.
fn login_redirect(flavour: Flavour, target: &Target, login: &str, invalid: bool) -> Response {
    let mut resp = match flavour {
        Flavour::Forward => match target.method.as_str() {
            "GET" | "HEAD" => StatusCode::FOUND,
            _ => StatusCode::SEE_OTHER,
        }
        .into_response(),
        Flavour::Nginx => {
            let mut r = json_error(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "login required",
            );
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, www_authenticate(invalid));
            r
        }
    };
    if let Ok(v) = HeaderValue::from_str(login) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

fn json_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({"error": {"code": code, "message": message}});
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn www_authenticate(invalid: bool) -> HeaderValue {
    HeaderValue::from_static(if invalid {
        "Bearer realm=\"gatehouse\", error=\"invalid_token\""
    } else {
        "Bearer realm=\"gatehouse\""
    })
}

/// The decision for one request, as the proxy of `flavour` expects it.
pub async fn answer(st: &AppState, flavour: Flavour, peer: IpAddr, h: &HeaderMap) -> Response {
    let started = Instant::now();
    let now = st.clock.now();
    let mut who: Option<Arc<Identity>> = None;
    let (decision, target, source, detail) =
        match parse_target(flavour, &st.trusted_proxies, peer, h, now) {
            Ok(target) if st.regulation.ip_banned(target.client, now) => {
                (banned(), Some(target), Source::None, Some("address_banned"))
            }
            Ok(target) => {
                let (subject, source, detail) = identify(st, h, &target).await;
                if let Subject::User(id) = &subject {
                    who = Some(id.clone());
                }
                let decision = match &subject {
                    Subject::User(id) if st.regulation.user_banned(&id.user, now) => banned(),
                    _ => {
                        if let (Subject::Refused(_), Some(reason)) = (&subject, detail) {
                            if counts_as_failure(reason) {
                                note_failure(st, Some(target.client), None, reason);
                            }
                        }
                        decide(&st.policy.load(), &subject, &target)
                    }
                };
                (decision, Some(target), source, detail)
            }
            Err(e) => (
                Decision::Forbidden {
                    rule: None,
                    reason: Reason::BadRequest(e),
                },
                None,
                Source::None,
                None,
            ),
        };
    let response = respond(st, flavour, &decision, target.as_ref(), source, h);
    st.metrics.decisions.inc([
        flavour.as_str(),
        decision.result(),
        decision.reason().as_str(),
    ]);
    st.metrics.decision_duration.observe(started.elapsed());
    st.usage.record(
        now,
        who.as_ref().map(|id| id.user.as_str()),
        target.as_ref().map_or("", |t| t.host.as_str()),
        decision.rule(),
        decision.result(),
        decision.reason().as_str(),
    );
    if !matches!(decision, Decision::Allow { .. }) {
        log_denial(flavour, &decision, target.as_ref(), peer, detail);
    }
    response
}

fn banned() -> Decision {
    Decision::Forbidden {
        rule: None,
        reason: Reason::Banned,
    }
}

fn log_denial(
    flavour: Flavour,
    d: &Decision,
    t: Option<&Target>,
    peer: IpAddr,
    detail: Option<&str>,
) {
    tracing::info!(
        target: "gatehouse::decision",
        endpoint = flavour.as_str(),
        result = d.result(),
        reason = d.reason().as_str(),
        detail = detail.unwrap_or(""),
        rule = d.rule().map(|r| r as i64).unwrap_or(-1),
        method = t.map(|t| t.method.as_str()).unwrap_or(""),
        host = t.map(|t| t.host.as_str()).unwrap_or(""),
        path = t.map(|t| t.path.as_str()).unwrap_or(""),
        client = %t.map(|t| t.client).unwrap_or(peer),
        "denied"
    );
}

fn identity_headers(resp: &mut Response, id: &crate::decision::Identity) {
    // decide() refused identities whose values are not header-safe; the values
    // were built once, with the identity.
    let hm = resp.headers_mut();
    hm.reserve(4);
    for (name, v) in [&REMOTE_USER, &REMOTE_GROUPS, &REMOTE_EMAIL, &REMOTE_NAME]
        .into_iter()
        .zip(&id.header_values)
    {
        if let Some(v) = v {
            hm.insert(name.clone(), v.clone());
        }
    }
}

fn respond(
    st: &AppState,
    flavour: Flavour,
    d: &Decision,
    target: Option<&Target>,
    source: Source,
    h: &HeaderMap,
) -> Response {
    match d {
        Decision::Allow { identity, .. } => {
            let mut resp = StatusCode::OK.into_response();
            if let Some(id) = identity {
                identity_headers(&mut resp, id);
            }
            resp
        }
        Decision::Unauthenticated { reason, .. } => {
            let invalid = *reason == Reason::InvalidCredentials;
            match target.filter(|t| is_browser_navigation(h, t)) {
                Some(t) => login_redirect(flavour, t, &login_url(st, t, false), invalid),
                None => {
                    let (code, msg) = if invalid {
                        (
                            "invalid_token",
                            "the presented credentials were not accepted",
                        )
                    } else {
                        ("unauthenticated", "credentials are required")
                    };
                    let mut resp = json_error(StatusCode::UNAUTHORIZED, code, msg);
                    resp.headers_mut()
                        .insert(header::WWW_AUTHENTICATE, www_authenticate(invalid));
                    resp
                }
            }
        }
        Decision::Forbidden { reason, .. } => {
            // A session without the second factor a rule needs: back to the IdP
            // with the step-up acr_values, when login is available.
            if *reason == Reason::TwoFactorRequired
                && source == Source::Session
                && st.login.is_some()
            {
                if let Some(t) = target.filter(|t| is_browser_navigation(h, t)) {
                    return login_redirect(flavour, t, &login_url(st, t, true), false);
                }
            }
            let msg = match reason {
                Reason::BadRequest(_) => "the request could not be understood unambiguously",
                Reason::NotAllowlisted => "the client address is not allowed",
                Reason::TwoFactorRequired => "this resource needs a second factor",
                Reason::Banned => "too many refused credentials; try again later",
                _ => "access denied",
            };
            json_error(StatusCode::FORBIDDEN, reason.as_str(), msg)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hm(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn trusted() -> Vec<ipnet::IpNet> {
        vec!["127.0.0.1/32".parse().unwrap()]
    }

    const LO: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn forward_headers() {
        let h = hm(&[
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "App.Example.com"),
            ("x-forwarded-uri", "/a/../b?x=1"),
            ("x-forwarded-method", "post"),
            ("x-forwarded-for", "6.6.6.6, 198.51.100.2"),
            // never read by the forward flavour
            ("x-original-url", "https://evil.example.com/admin"),
            ("x-real-ip", "7.7.7.7"),
        ]);
        let t = parse_target(Flavour::Forward, &trusted(), LO, &h, 0).unwrap();
        assert_eq!(t.host, "app.example.com");
        assert_eq!(t.path, "/b");
        assert_eq!(t.raw_path_and_query, "/a/../b?x=1");
        assert_eq!(t.method, "POST");
        assert_eq!(t.client, "198.51.100.2".parse::<IpAddr>().unwrap());
        assert!(!t.websocket);
    }

    #[test]
    fn nginx_headers() {
        let h = hm(&[
            ("x-original-url", "https://app.example.com/x?token=1"),
            ("x-original-method", "GET"),
            ("x-real-ip", "198.51.100.3"),
        ]);
        let t = parse_target(Flavour::Nginx, &trusted(), LO, &h, 0).unwrap();
        assert_eq!(
            (t.host.as_str(), t.path.as_str()),
            ("app.example.com", "/x")
        );
        assert_eq!(t.client, "198.51.100.3".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn strictness() {
        let base = [
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "app.example.com"),
            ("x-forwarded-uri", "/"),
            ("x-forwarded-method", "GET"),
        ];
        assert!(parse_target(Flavour::Forward, &trusted(), LO, &hm(&base), 0).is_ok());
        // untrusted peer: nothing is believed
        let other: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(
            parse_target(Flavour::Forward, &trusted(), other, &hm(&base), 0),
            Err(TargetError::UntrustedCaller)
        );
        for (i, _) in base.iter().enumerate() {
            let mut missing = base.to_vec();
            missing.remove(i);
            assert!(parse_target(Flavour::Forward, &trusted(), LO, &hm(&missing), 0).is_err());
        }
        let mut dup = base.to_vec();
        dup.push(("x-forwarded-host", "evil.example.com"));
        assert_eq!(
            parse_target(Flavour::Forward, &trusted(), LO, &hm(&dup), 0),
            Err(TargetError::DuplicateHeader("x-forwarded-host"))
        );
        for (k, v) in [
            ("x-forwarded-uri", "http://evil/x"),
            ("x-forwarded-uri", "/admin%2F"),
            ("x-forwarded-host", "a.com, b.com"),
            ("x-forwarded-host", "user@a.com"),
            ("x-forwarded-proto", "gopher"),
            ("x-forwarded-method", "G T"),
        ] {
            let mut bad: Vec<(&str, &str)> =
                base.iter().filter(|(n, _)| *n != k).copied().collect();
            bad.push((k, v));
            assert!(
                parse_target(Flavour::Forward, &trusted(), LO, &hm(&bad), 0).is_err(),
                "{k}: {v}"
            );
        }
        // nginx flavour needs X-Original-URL and ignores X-Forwarded-Uri
        let h = hm(&[("x-forwarded-uri", "/"), ("x-forwarded-host", "a.com")]);
        assert_eq!(
            parse_target(Flavour::Nginx, &trusted(), LO, &h, 0),
            Err(TargetError::MissingHeader("x-original-url"))
        );
    }

    #[test]
    fn query_tokens() {
        assert_eq!(ws_query_token("/ws?token=abc&x=1"), Some(Ok("abc".into())));
        assert_eq!(ws_query_token("/ws?x=1"), None);
        assert_eq!(ws_query_token("/ws?token=a&token=b"), Some(Err(())));
    }

    #[test]
    fn browser_detection() {
        let t = Target {
            scheme: Scheme::Https,
            host: "a".into(),
            port: None,
            path: "/".into(),
            raw_path_and_query: "/".into(),
            method: "GET".into(),
            client: LO,
            websocket: false,
            at: 0,
        };
        assert!(is_browser_navigation(
            &hm(&[("accept", "text/html,application/xhtml+xml")]),
            &t
        ));
        assert!(is_browser_navigation(
            &hm(&[("sec-fetch-mode", "navigate")]),
            &t
        ));
        assert!(!is_browser_navigation(
            &hm(&[("sec-fetch-mode", "cors"), ("accept", "text/html")]),
            &t
        ));
        assert!(!is_browser_navigation(
            &hm(&[("accept", "application/json")]),
            &t
        ));
        assert!(!is_browser_navigation(
            &hm(&[
                ("accept", "text/html"),
                ("x-requested-with", "XMLHttpRequest")
            ]),
            &t
        ));
        assert!(!is_browser_navigation(
            &hm(&[("accept", "text/html"), ("authorization", "Bearer x")]),
            &t
        ));
    }
}

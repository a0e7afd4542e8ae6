//! The OpenID Connect relying party behind `/login`, `/callback`, `/logout` and
//! `/backchannel-logout`: authorization code flow with PKCE (S256), `state` and
//! `nonce` carried in a sealed pre-login cookie, the code exchange, ID-token and
//! logout-token checks, and refresh. Signatures go through the same verifier as
//! bearer tokens (`TokenValidator::verify_signed`: algorithms pinned per key,
//! key rotation, forbidden headers), so there is one JWT path for every kind.

use std::time::Duration;

use crate::crypto::Sha256;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::jwt::IssuerHandle;
use crate::decision::rules::DomainPattern;

/// How long a started login may take before its pre-login cookie is refused.
pub const LOGIN_TTL_SECS: i64 = 600;
/// Refresh this long before the access token would expire.
pub const REFRESH_MARGIN_SECS: i64 = 60;
/// The OIDC back-channel logout event.
pub const BACKCHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// A logout token may not claim a longer life than this (`exp - iat`).
pub const LOGOUT_TOKEN_MAX_LIFE: i64 = 600;
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_TOKEN_RESPONSE: usize = 256 * 1024;

/// Why a login, refresh or logout step failed. Carries no token or secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginError {
    NotConfigured(&'static str),
    NoDiscovery,
    BadPreLogin,
    StateMismatch,
    IdpError(String),
    TokenEndpoint(String),
    IdToken(&'static str),
    LogoutToken(&'static str),
}

impl LoginError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotConfigured(_) => "login_not_configured",
            Self::NoDiscovery => "idp_unavailable",
            Self::BadPreLogin => "login_expired",
            Self::StateMismatch => "state_mismatch",
            Self::IdpError(_) => "idp_error",
            Self::TokenEndpoint(_) => "code_exchange_failed",
            Self::IdToken(_) => "bad_id_token",
            Self::LogoutToken(_) => "bad_logout_token",
        }
    }
}

impl std::fmt::Display for LoginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotConfigured(why) => write!(f, "login is not configured: {why}"),
            Self::NoDiscovery => {
                f.write_str("the identity provider's discovery document is not loaded")
            }
            Self::BadPreLogin => {
                f.write_str("the login was not started here, or took too long; start again")
            }
            Self::StateMismatch => {
                f.write_str("the callback's state does not belong to this browser's login")
            }
            Self::IdpError(e) => write!(f, "the identity provider refused the login: {e}"),
            Self::TokenEndpoint(e) => write!(f, "the code exchange failed: {e}"),
            Self::IdToken(e) => write!(f, "the ID token was refused: {e}"),
            Self::LogoutToken(e) => write!(f, "the logout token was refused: {e}"),
        }
    }
}

/// What the browser carries between `/login` and `/callback`, sealed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PreLogin {
    pub state: String,
    pub nonce: String,
    pub verifier: String,
    pub rd: String,
    pub issuer: String,
    pub exp: i64,
    /// `max_age` sent to the IdP (step-up), so `auth_time` is checked on return.
    pub max_age: Option<i64>,
    /// The session being upgraded by a step-up login, if any.
    pub upgrade: Option<String>,
}

/// `BASE64URL(SHA256(verifier))`, the S256 PKCE challenge.
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

pub use crate::crypto::constant_time_eq;

/// The IdP's endpoints, from its discovery document.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub authorization: url::Url,
    pub token: url::Url,
    pub end_session: Option<url::Url>,
}

impl Endpoints {
    pub fn of(issuer: &IssuerHandle, allow_http: bool) -> Result<Endpoints, LoginError> {
        let doc = issuer.discovery.load();
        let doc = (**doc).as_ref().ok_or(LoginError::NoDiscovery)?;
        let get = |k: &str| -> Option<url::Url> {
            let u = url::Url::parse(doc.get(k)?.as_str()?).ok()?;
            (u.scheme() == "https" || (allow_http && u.scheme() == "http")).then_some(u)
        };
        Ok(Endpoints {
            authorization: get("authorization_endpoint").ok_or(LoginError::NoDiscovery)?,
            token: get("token_endpoint").ok_or(LoginError::NoDiscovery)?,
            end_session: get("end_session_endpoint"),
        })
    }
}

/// The authorization request for a pre-login.
pub fn authorization_url(
    ep: &Endpoints,
    client_id: &str,
    redirect_uri: &str,
    pre: &PreLogin,
    acr_values: Option<&str>,
) -> String {
    let mut u = ep.authorization.clone();
    {
        let mut q = u.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", "openid profile email")
            .append_pair("state", &pre.state)
            .append_pair("nonce", &pre.nonce)
            .append_pair("code_challenge", &pkce_challenge(&pre.verifier))
            .append_pair("code_challenge_method", "S256");
        if let Some(a) = acr_values {
            q.append_pair("acr_values", a);
        }
        if let Some(m) = pre.max_age {
            q.append_pair("max_age", &m.to_string());
        }
    }
    u.to_string()
}

/// Tokens from the token endpoint.
#[derive(Debug, Clone, Deserialize)]
pub struct TokenSet {
    pub id_token: Option<String>,
    pub access_token: Option<String>,
    pub refresh_token: Option<String>,
    pub expires_in: Option<i64>,
}

/// An HTTP client for the token endpoint: no redirects, bounded time.
pub fn http_client() -> reqwest::Client {
    crate::crypto::http_client()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(HTTP_TIMEOUT)
        .build()
        .expect("the TLS backend initialises")
}

/// POSTs a grant to the token endpoint with the client's credentials
/// (`client_secret_basic` when there is a secret, else a public client).
pub async fn token_request(
    http: &reqwest::Client,
    ep: &Endpoints,
    client_id: &str,
    client_secret: Option<&str>,
    form: &[(&str, &str)],
) -> Result<TokenSet, LoginError> {
    let mut fields: Vec<(&str, &str)> = form.to_vec();
    let mut req = http.post(ep.token.clone());
    match client_secret {
        Some(secret) => {
            // RFC 6749 2.3.1: form-encode the id and secret before Basic.
            let enc = |s: &str| -> String {
                url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
            };
            req = req.basic_auth(enc(client_id), Some(enc(secret)));
        }
        None => fields.push(("client_id", client_id)),
    }
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    let resp = req
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .header(reqwest::header::ACCEPT, "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| {
            LoginError::TokenEndpoint(if e.is_timeout() {
                "timed out".into()
            } else {
                "unreachable".into()
            })
        })?;
    let status = resp.status();
    let bytes = resp
        .bytes()
        .await
        .map_err(|_| LoginError::TokenEndpoint("the answer was cut off".into()))?;
    if bytes.len() > MAX_TOKEN_RESPONSE {
        return Err(LoginError::TokenEndpoint("the answer is too large".into()));
    }
    if !status.is_success() {
        // The OAuth error code only: descriptions may echo request data.
        let code = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(short_code))
            .unwrap_or_else(|| format!("HTTP {}", status.as_u16()));
        return Err(LoginError::TokenEndpoint(code));
    }
    serde_json::from_slice(&bytes)
        .map_err(|_| LoginError::TokenEndpoint("the answer is not a token response".into()))
}

/// An OAuth error code as safe text for logs and pages: `[a-z_]`, bounded.
pub fn short_code(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(64)
        .collect()
}

fn audience_contains(claims: &Map<String, Value>, who: &str) -> (bool, usize) {
    match claims.get("aud") {
        Some(Value::String(a)) => (a == who, 1),
        Some(Value::Array(list)) => (list.iter().any(|a| a.as_str() == Some(who)), list.len()),
        _ => (false, 0),
    }
}

fn int_claim(claims: &Map<String, Value>, k: &str) -> Option<i64> {
    claims.get(k).and_then(|v| {
        v.as_i64().or_else(|| {
            v.as_f64()
                .filter(|f| f.is_finite())
                .map(|f| f.floor() as i64)
        })
    })
}

/// OpenID Connect Core 3.1.3.7 on a signature-checked ID token: issuer, audience
/// and `azp`, `exp`, `iat`, `nonce`, `auth_time` against `max_age`, and that it
/// is an ID token (not an access, refresh or logout token).
pub fn check_id_token(
    issuer: &IssuerHandle,
    expected_issuer: &str,
    claims: &Map<String, Value>,
    client_id: &str,
    nonce: Option<&str>,
    max_age: Option<i64>,
    now: i64,
) -> Result<(), LoginError> {
    let leeway = issuer.leeway_secs();
    if issuer.issuer != expected_issuer
        || claims.get("iss").and_then(Value::as_str) != Some(expected_issuer)
    {
        return Err(LoginError::IdToken("issued by another issuer"));
    }
    let (has_aud, n_aud) = audience_contains(claims, client_id);
    if !has_aud {
        return Err(LoginError::IdToken("not issued to this client"));
    }
    match claims.get("azp") {
        Some(Value::String(a)) if a != client_id => {
            return Err(LoginError::IdToken("azp names another client"))
        }
        None if n_aud > 1 => return Err(LoginError::IdToken("several audiences and no azp")),
        _ => {}
    }
    let exp = int_claim(claims, "exp").ok_or(LoginError::IdToken("no exp"))?;
    if exp + leeway <= now {
        return Err(LoginError::IdToken("expired"));
    }
    let iat = int_claim(claims, "iat").ok_or(LoginError::IdToken("no iat"))?;
    if iat > now + leeway {
        return Err(LoginError::IdToken("issued in the future"));
    }
    match claims.get("typ") {
        None => {}
        Some(Value::String(t)) if t.eq_ignore_ascii_case("ID") => {}
        Some(_) => return Err(LoginError::IdToken("not an ID token")),
    }
    if claims.contains_key("events") {
        return Err(LoginError::IdToken("a logout token"));
    }
    match (nonce, claims.get("nonce").and_then(Value::as_str)) {
        (Some(want), Some(got)) if constant_time_eq(want.as_bytes(), got.as_bytes()) => {}
        (Some(_), _) => return Err(LoginError::IdToken("nonce does not match this login")),
        // A refreshed ID token carries no nonce, or the original one.
        (None, _) => {}
    }
    if let Some(max_age) = max_age {
        let at = int_claim(claims, "auth_time").ok_or(LoginError::IdToken(
            "no auth_time although max_age was asked",
        ))?;
        if now - at > max_age + leeway {
            return Err(LoginError::IdToken(
                "the authentication is older than max_age",
            ));
        }
    }
    match claims.get("sub") {
        Some(Value::String(s)) if !s.is_empty() => Ok(()),
        _ => Err(LoginError::IdToken("no sub")),
    }
}

/// What a back-channel logout token asks to end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutRequest {
    pub issuer: String,
    pub sid: Option<String>,
    pub sub: Option<String>,
    pub jti: String,
    pub exp: i64,
}

/// OpenID Connect Back-Channel Logout 1.0, 2.6, on a signature-checked logout
/// token: issuer, audience, `iat`, a short `exp`, `jti`, the back-channel event,
/// no `nonce`, and a `sid` or `sub`.
pub fn check_logout_token(
    issuer: &IssuerHandle,
    claims: &Map<String, Value>,
    client_id: &str,
    now: i64,
) -> Result<LogoutRequest, LoginError> {
    let leeway = issuer.leeway_secs();
    if claims.get("iss").and_then(Value::as_str) != Some(issuer.issuer.as_str()) {
        return Err(LoginError::LogoutToken("issued by another issuer"));
    }
    if !audience_contains(claims, client_id).0 {
        return Err(LoginError::LogoutToken("not issued to this client"));
    }
    let iat = int_claim(claims, "iat").ok_or(LoginError::LogoutToken("no iat"))?;
    if iat > now + leeway {
        return Err(LoginError::LogoutToken("issued in the future"));
    }
    let exp = int_claim(claims, "exp").ok_or(LoginError::LogoutToken("no exp"))?;
    if exp + leeway <= now {
        return Err(LoginError::LogoutToken("expired"));
    }
    if exp - iat > LOGOUT_TOKEN_MAX_LIFE {
        return Err(LoginError::LogoutToken("claims too long a life"));
    }
    if claims.contains_key("nonce") {
        return Err(LoginError::LogoutToken("carries a nonce"));
    }
    match claims.get("typ") {
        None => {}
        Some(Value::String(t)) if t.eq_ignore_ascii_case("Logout") => {}
        Some(_) => return Err(LoginError::LogoutToken("not a logout token")),
    }
    let event_ok = claims
        .get("events")
        .and_then(Value::as_object)
        .and_then(|e| e.get(BACKCHANNEL_EVENT))
        .is_some_and(Value::is_object);
    if !event_ok {
        return Err(LoginError::LogoutToken("no back-channel logout event"));
    }
    let jti = match claims.get("jti") {
        Some(Value::String(j)) if !j.is_empty() && j.len() <= 256 => j.clone(),
        _ => return Err(LoginError::LogoutToken("no jti")),
    };
    let text = |k: &str| match claims.get(k) {
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        None => Ok(None),
        Some(_) => Err(LoginError::LogoutToken("a malformed sid or sub")),
    };
    let (sid, sub) = (text("sid")?, text("sub")?);
    if sid.is_none() && sub.is_none() {
        return Err(LoginError::LogoutToken("neither sid nor sub"));
    }
    Ok(LogoutRequest {
        issuer: issuer.issuer.clone(),
        sid,
        sub,
        jti,
        exp,
    })
}

/// Where a browser may be sent after login or logout: an absolute `https` URL
/// (or `http` with `allow_http`) whose host matches one of `allowed`, with no
/// user info and nothing that browsers and servers might read differently.
/// Anything else is `None`, and the caller uses its safe default.
pub fn safe_redirect(rd: &str, allowed: &[DomainPattern], allow_http: bool) -> Option<String> {
    if rd.is_empty() || rd.len() > 4096 {
        return None;
    }
    // Control characters, spaces and backslashes are read differently by
    // browsers ("/\evil", tabs inside "//") than by URL parsers: refuse them all.
    if rd.bytes().any(|b| b <= 0x20 || b >= 0x7f || b == b'\\') {
        return None;
    }
    let lower = rd.get(..8).unwrap_or("").to_ascii_lowercase();
    let https = lower.starts_with("https://");
    let http = lower.starts_with("http://");
    if !(https || (allow_http && http)) {
        return None;
    }
    let u = url::Url::parse(rd).ok()?;
    if !(u.scheme() == "https" || (allow_http && u.scheme() == "http")) {
        return None;
    }
    if !u.username().is_empty() || u.password().is_some() {
        return None;
    }
    // The authority as written must be exactly what the parser understood:
    // "https://good.example.com@evil" and similar never get here (user info),
    // and percent-encoded or IDN hosts are compared in their parsed form.
    let host = match u.host()? {
        url::Host::Domain(d) => d.to_ascii_lowercase(),
        _ => return None,
    };
    let host = host.strip_suffix('.').unwrap_or(&host);
    if !allowed.iter().any(|p| p.matches(host)) {
        return None;
    }
    Some(u.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed() -> Vec<DomainPattern> {
        vec![
            DomainPattern::parse("example.com").unwrap(),
            DomainPattern::parse("*.example.com").unwrap(),
        ]
    }

    #[test]
    fn open_redirect_corpus() {
        let good = [
            "https://example.com/",
            "https://app.example.com/d/abc?orgId=1#x",
            "https://a.b.example.com:8443/x",
            "HTTPS://APP.EXAMPLE.COM/x",
            // Found by the `rd` fuzz target: a trailing dot names the same host.
            "https://SSSSSSascSS.example.com.",
        ];
        for rd in good {
            assert!(safe_redirect(rd, &allowed(), false).is_some(), "{rd}");
        }
        let bad = [
            "",
            "/relative",
            "//evil.com",
            "///evil.com",
            "/\\evil.com",
            "\\\\evil.com",
            "https:evil.com",
            "https:/evil.com",
            "https://evil.com",
            "https://example.com.evil.com/",
            "https://evilexample.com/",
            "https://example.com@evil.com/",
            "https://user:pw@app.example.com/",
            "https://app.example.com\\@evil.com/",
            "https://evil.com\\.example.com/",
            "https://evil.com#.example.com",
            "https://evil.com?.example.com",
            "https://evil.com/.example.com",
            "https://\tevil.com",
            "https:/\t/evil.com",
            "ht\ttps://evil.com",
            "https://app.example.com\n.evil.com",
            " https://app.example.com/",
            "javascript:alert(1)//https://app.example.com",
            "JavaScript://app.example.com/%0aalert(1)",
            "data:text/html,https://app.example.com",
            "http://app.example.com/",
            "ftp://app.example.com/",
            "https://127.0.0.1/",
            "https://[::1]/",
            "https://app.example.com%2eevil.com/",
            "https://evil.com%2f.example.com/",
            "https://xn--exmple-cua.com/",
        ];
        for rd in bad {
            assert_eq!(safe_redirect(rd, &allowed(), false), None, "{rd:?}");
        }
        // http only where allowed for development
        assert!(safe_redirect("http://app.example.com/", &allowed(), true).is_some());
        assert_eq!(safe_redirect("http://evil.com/", &allowed(), true), None);
    }

    #[test]
    fn pkce_is_rfc7636() {
        // RFC 7636 appendix B
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn constant_time() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}

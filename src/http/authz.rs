//! The decision endpoints. One strict header set per proxy flavour turns the
//! request into a `Target`; `decide()` gives the verdict; the answer takes the
//! shape that flavour's proxy understands. Nothing here waits on a database.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

use crate::app::{AppState, Inner};
use crate::decision::target::{
    canonical_host, canonical_method, canonical_path, client_address, split_absolute_url,
    split_origin_form, Scheme,
};
use crate::decision::{
    decide, CredentialError, Decision, Identity, Reason, Subject, Target, TargetError,
};
use crate::http::login::{cookie_in, DuplicateCookie};
use crate::service::bans::counts_as_failure;

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

// The identity headers given to the proxy, ready-made.
/// `Remote-User`, `-Groups`, `-Email`, `-Name`: the names the principal's
/// ready header lines use too.
static IDENTITY_HEADER_NAMES: [HeaderName; 4] = [
    HeaderName::from_static(crate::decision::IDENTITY_HEADERS[0]),
    HeaderName::from_static(crate::decision::IDENTITY_HEADERS[1]),
    HeaderName::from_static(crate::decision::IDENTITY_HEADERS[2]),
    HeaderName::from_static(crate::decision::IDENTITY_HEADERS[3]),
];

// The handlers take the whole request rather than the `HeaderMap` extractor,
// which would clone every header on the hot path. `http::server::serve_on` calls
// [`answer`] directly, before routing; these serve the router (tests, benches).
pub async fn nginx(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let seen = Seen::from_map(req.headers());
    answer(&st, Flavour::Nginx, peer.ip(), &seen)
        .await
        .into_response()
}

pub async fn forward(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let seen = Seen::from_map(req.headers());
    answer(&st, Flavour::Forward, peer.ip(), &seen)
        .await
        .into_response()
}

/// The values one header name had in a request, as the decision reads them.
#[derive(Debug, Clone, Copy, Default)]
struct One<'a> {
    /// The first value: `Err` when it is not visible ASCII text.
    first: Option<Result<&'a str, ()>>,
    count: u8,
}

impl<'a> One<'a> {
    fn add(&mut self, v: Option<&'a str>) {
        if self.first.is_none() {
            self.first = Some(v.ok_or(()));
        }
        self.count = self.count.saturating_add(1);
    }

    fn present(&self) -> bool {
        self.count > 0
    }

    /// Exactly one value, as text; several values are ambiguous.
    fn single(&self, name: &'static str) -> Result<Option<&'a str>, TargetError> {
        match (self.first, self.count) {
            (None, _) => Ok(None),
            (Some(_), 2..) => Err(TargetError::DuplicateHeader(name)),
            (Some(Ok(v)), _) => Ok(Some(v)),
            (Some(Err(())), _) => Err(TargetError::MissingHeader(name)),
        }
    }

    fn required(&self, name: &'static str) -> Result<&'a str, TargetError> {
        self.single(name)?.ok_or(TargetError::MissingHeader(name))
    }

    /// The first value when it is text (what `HeaderMap::get` would give).
    fn first_text(&self) -> Option<&'a str> {
        self.first.and_then(Result::ok)
    }
}

/// One header's values as bytes: the first, and how many there were.
#[derive(Debug, Clone, Copy, Default)]
struct Raw<'a> {
    first: Option<&'a [u8]>,
    count: u8,
}

impl<'a> Raw<'a> {
    fn add(&mut self, v: &'a [u8]) {
        if self.first.is_none() {
            self.first = Some(v);
        }
        self.count = self.count.saturating_add(1);
    }

    fn present(&self) -> bool {
        self.count > 0
    }
}

/// Several values of one header name, in order (at most [`MANY`]).
#[derive(Debug, Clone, Copy, Default)]
struct Many<'a> {
    values: [&'a str; MANY],
    len: usize,
    /// A value was not text, or there were more than [`MANY`].
    unusable: bool,
}

/// More header lines of one list-valued name than any proxy sends.
const MANY: usize = 8;

impl<'a> Many<'a> {
    fn add(&mut self, v: Option<&'a str>) {
        match v {
            Some(v) if self.len < MANY => {
                self.values[self.len] = v;
                self.len += 1;
            }
            _ => self.unusable = true,
        }
    }

    fn iter(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.values[..self.len].iter().copied()
    }
}

/// The request headers the decision reads, gathered in one pass over the
/// request (from hyper's `HeaderMap`, or from the parsed head on the fast path),
/// so both paths read them the same way.
#[derive(Debug, Default)]
pub struct Seen<'a> {
    x_original_url: One<'a>,
    x_original_method: One<'a>,
    x_real_ip: One<'a>,
    x_forwarded_proto: One<'a>,
    x_forwarded_host: One<'a>,
    x_forwarded_uri: One<'a>,
    x_forwarded_method: One<'a>,
    x_forwarded_for: Many<'a>,
    /// Kept as bytes: a token seen before is found by its bytes alone
    /// ([`Seen::cached_bearer`]); only one that is not is read as text.
    authorization: Raw<'a>,
    cookie: Many<'a>,
    accept: One<'a>,
    x_requested_with: One<'a>,
    sec_fetch_mode: One<'a>,
    sec_websocket_key: One<'a>,
    sec_websocket_version: One<'a>,
}

impl<'a> Seen<'a> {
    pub fn from_map(h: &'a HeaderMap) -> Self {
        let mut seen = Seen::default();
        for (name, value) in h {
            seen.add(name.as_str().as_bytes(), value.as_bytes());
        }
        seen
    }

    /// Adds one header line. Names compare case-insensitively; a value counts
    /// as text by the rule of `HeaderValue::to_str` (see [`header_text`]), and
    /// only the values of the names read here are looked at.
    pub fn add(&mut self, name: &[u8], value: &'a [u8]) {
        self.put::<false>(Field::of(name), value);
    }

    /// Adds the value of a header whose name is already known. `VISIBLE`: the
    /// caller has checked that the value is visible ASCII, spaces and tabs
    /// (as `http::head` checks every value it reads), so only the UTF-8 view of
    /// it is left to take.
    pub(crate) fn put<const VISIBLE: bool>(&mut self, field: Field, value: &'a [u8]) {
        let text = |v: &'a [u8]| {
            if VISIBLE {
                std::str::from_utf8(v).ok()
            } else {
                header_text(v)
            }
        };
        let slot = match field {
            Field::Accept => &mut self.accept,
            Field::Cookie => {
                // Cookie values that are not text are skipped, as cookie_value does.
                if let Some(v) = text(value) {
                    self.cookie.add(Some(v));
                }
                return;
            }
            Field::XRealIp => &mut self.x_real_ip,
            Field::Authorization => {
                self.authorization.add(value);
                return;
            }
            Field::XOriginalUrl => &mut self.x_original_url,
            Field::SecFetchMode => &mut self.sec_fetch_mode,
            Field::XForwardedFor => {
                self.x_forwarded_for.add(text(value));
                return;
            }
            Field::XForwardedUri => &mut self.x_forwarded_uri,
            Field::XForwardedHost => &mut self.x_forwarded_host,
            Field::XRequestedWith => &mut self.x_requested_with,
            Field::XForwardedProto => &mut self.x_forwarded_proto,
            Field::XOriginalMethod => &mut self.x_original_method,
            Field::SecWebsocketKey => &mut self.sec_websocket_key,
            Field::XForwardedMethod => &mut self.x_forwarded_method,
            Field::SecWebsocketVersion => &mut self.sec_websocket_version,
            Field::ContentLength
            | Field::TransferEncoding
            | Field::Upgrade
            | Field::Expect
            | Field::Connection
            | Field::Other => return,
        };
        slot.add(common(value).or_else(|| text(value)));
    }

    /// The WebSocket handshake headers that survive every proxy (see PROXY-NOTES).
    fn is_websocket(&self) -> bool {
        self.sec_websocket_key.present() && self.sec_websocket_version.present()
    }

    /// The session cookie; several `Cookie` lines beyond [`MANY`] are refused.
    fn cookie(&self, name: &str) -> Result<Option<&'a str>, DuplicateCookie> {
        if self.cookie.unusable {
            return Err(DuplicateCookie);
        }
        cookie_in(self.cookie.iter(), name)
    }

    /// See [`bearer`].
    fn bearer(&self) -> Option<Result<&'a str, ()>> {
        match (self.authorization.first, self.authorization.count) {
            (None, _) => None,
            (Some(_), 2..) => Some(Err(())),
            (Some(v), _) => match header_text(v) {
                Some(s) => bearer_text(s),
                None => Some(Err(())),
            },
        }
    }

    /// The bearer token's bytes, found as [`Seen::bearer`] finds it but
    /// without reading the value as text first: for a cache lookup only. A
    /// token found in the cache was verified whole (base64url and dots), so
    /// [`Seen::bearer`] would have found the same token; any other value takes
    /// the full path.
    fn cached_bearer(&self) -> Option<&'a [u8]> {
        let v = match (self.authorization.first, self.authorization.count) {
            (Some(v), 1) => v,
            _ => return None,
        };
        let token = &v[bearer_range(v)?];
        (!token.is_empty()).then_some(token)
    }
}

/// A header value as text, by the rule of `HeaderValue::to_str`: visible ASCII
/// and tabs only.
pub fn header_text(v: &[u8]) -> Option<&str> {
    if visible_ascii(v) {
        std::str::from_utf8(v).ok()
    } else {
        None
    }
}

/// The schemes and methods a proxy sends on nearly every request, found by
/// their bytes: on values this short the UTF-8 check runs byte by byte (~100
/// instructions a value, measured). Each is text, so the answer is the same as
/// [`header_text`]'s.
fn common(v: &[u8]) -> Option<&'static str> {
    match v {
        b"https" => Some("https"),
        b"http" => Some("http"),
        b"GET" => Some("GET"),
        b"HEAD" => Some("HEAD"),
        b"POST" => Some("POST"),
        b"PUT" => Some("PUT"),
        b"PATCH" => Some("PATCH"),
        b"DELETE" => Some("DELETE"),
        b"OPTIONS" => Some("OPTIONS"),
        _ => None,
    }
}

/// The header names the decision path tells apart: the ones [`Seen`] reads and
/// the ones that frame a request (which `http::head` reads). Found once per
/// header line, by length and then by words compared ignoring ASCII case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    Accept,
    Cookie,
    XRealIp,
    Authorization,
    XOriginalUrl,
    SecFetchMode,
    XForwardedFor,
    XForwardedUri,
    XForwardedHost,
    XRequestedWith,
    XForwardedProto,
    XOriginalMethod,
    SecWebsocketKey,
    XForwardedMethod,
    SecWebsocketVersion,
    ContentLength,
    TransferEncoding,
    Upgrade,
    Expect,
    Connection,
    /// Any other name (including ones that are not tokens).
    Other,
}

impl Field {
    pub(crate) fn of(name: &[u8]) -> Field {
        let is = |lower: &[u8]| named(name, lower);
        match name.len() {
            6 if is(b"accept") => Field::Accept,
            6 if is(b"cookie") => Field::Cookie,
            6 if is(b"expect") => Field::Expect,
            7 if is(b"upgrade") => Field::Upgrade,
            9 if is(b"x-real-ip") => Field::XRealIp,
            10 if is(b"connection") => Field::Connection,
            13 if is(b"authorization") => Field::Authorization,
            14 if is(b"x-original-url") => Field::XOriginalUrl,
            14 if is(b"sec-fetch-mode") => Field::SecFetchMode,
            14 if is(b"content-length") => Field::ContentLength,
            15 if is(b"x-forwarded-for") => Field::XForwardedFor,
            15 if is(b"x-forwarded-uri") => Field::XForwardedUri,
            16 if is(b"x-forwarded-host") => Field::XForwardedHost,
            16 if is(b"x-requested-with") => Field::XRequestedWith,
            17 if is(b"x-forwarded-proto") => Field::XForwardedProto,
            17 if is(b"x-original-method") => Field::XOriginalMethod,
            17 if is(b"sec-websocket-key") => Field::SecWebsocketKey,
            17 if is(b"transfer-encoding") => Field::TransferEncoding,
            18 if is(b"x-forwarded-method") => Field::XForwardedMethod,
            21 if is(b"sec-websocket-version") => Field::SecWebsocketVersion,
            _ => Field::Other,
        }
    }
}

/// `name` is `lower` (at least four lowercase letters and dashes) in any ASCII
/// case, compared a word at a time: in each word, the letters' case bit is set
/// in `name` before comparing, which makes exactly an upper- or lowercase
/// letter equal a lowercase one, and a dash must be a dash. The words overlap
/// at the end rather than running past it.
#[inline(always)]
fn named(name: &[u8], lower: &[u8]) -> bool {
    debug_assert!(lower.len() >= 4 && lower.iter().all(|b| b.is_ascii_lowercase() || *b == b'-'));
    let n = lower.len();
    if name.len() != n {
        return false;
    }
    if n < 4 {
        return name.eq_ignore_ascii_case(lower);
    }
    if n >= 8 {
        let word = |s: &[u8], i: usize| {
            u64::from_le_bytes(
                s.get(i..i + 8)
                    .and_then(|w| w.try_into().ok())
                    .unwrap_or([0xff; 8]),
            )
        };
        let mut diff = 0;
        let mut i = 0;
        loop {
            let at = i.min(n - 8);
            let want = word(lower, at);
            diff |= (word(name, at) | ((want & 0x4040_4040_4040_4040) >> 1)) ^ want;
            if at == n - 8 {
                break;
            }
            i += 8;
        }
        diff == 0
    } else {
        let word = |s: &[u8], i: usize| {
            u32::from_le_bytes(
                s.get(i..i + 4)
                    .and_then(|w| w.try_into().ok())
                    .unwrap_or([0xff; 4]),
            )
        };
        [0, n.saturating_sub(4)].iter().fold(0, |diff, &at| {
            let want = word(lower, at);
            diff | ((word(name, at) | ((want & 0x4040_4040) >> 1)) ^ want)
        }) == 0
    }
}

/// Every byte is visible ASCII (0x20..=0x7E) or a tab. No early exit, so the
/// check runs a vector's width at a time (measured: faster than eight bytes
/// at a time in a word, or 32-byte blocks with an exit).
pub(crate) fn visible_ascii(v: &[u8]) -> bool {
    v.iter()
        .fold(true, |ok, &b| ok & ((b == b'\t') | (32..127).contains(&b)))
}

/// Reads the proxy's description of the request. Forwarded headers count only
/// when the socket peer is a trusted proxy; otherwise there is no target at all.
pub fn parse_target<'a>(
    flavour: Flavour,
    trusted: &[ipnet::IpNet],
    peer: IpAddr,
    h: &Seen<'a>,
    now: i64,
) -> Result<Target<'a>, TargetError> {
    let peer = peer.to_canonical();
    if !crate::decision::target::in_nets(peer, trusted) {
        return Err(TargetError::UntrustedCaller);
    }
    if h.x_forwarded_for.unusable {
        return Err(TargetError::BadForwardedFor);
    }
    let xff = || h.x_forwarded_for.iter();
    let has_xff = h.x_forwarded_for.len > 0;
    let (scheme, authority, path_and_query, method, client) = match flavour {
        Flavour::Nginx => {
            let url = h.x_original_url.required("x-original-url")?;
            let (scheme, authority, pq) = split_absolute_url(url)?;
            let method = h
                .x_original_method
                .single("x-original-method")?
                .unwrap_or("GET");
            let client = if has_xff {
                client_address(peer, trusted, xff())?
            } else {
                match h.x_real_ip.single("x-real-ip")? {
                    Some(ip) => client_address(peer, trusted, [ip])?,
                    None => peer,
                }
            };
            (scheme, authority, pq, method, client)
        }
        Flavour::Forward => {
            let scheme = Scheme::parse(h.x_forwarded_proto.required("x-forwarded-proto")?)?;
            let authority = h.x_forwarded_host.required("x-forwarded-host")?;
            let uri = h.x_forwarded_uri.required("x-forwarded-uri")?;
            let method = h.x_forwarded_method.required("x-forwarded-method")?;
            let client = client_address(peer, trusted, xff())?;
            (scheme, authority, uri, method, client)
        }
    };
    let (path, _query) = split_origin_form(path_and_query)?;
    let (host, port) = host_of(authority, scheme)?;
    Ok(Target {
        scheme,
        host,
        port,
        path: canonical_path(path)?,
        raw_path_and_query: Cow::Borrowed(path_and_query),
        method: canonical_method(method)?,
        client,
        websocket: h.is_websocket(),
        at: now,
    })
}

/// [`canonical_host`], remembering (per thread) the last few host names that
/// are canonical as they are: a proxy asks about the same few hosts over and
/// over, and checking a name's labels costs more than comparing it.
fn host_of(authority: &str, scheme: Scheme) -> Result<(Cow<'_, str>, Option<u16>), TargetError> {
    const KEPT: usize = 4;
    thread_local! {
        static CANONICAL: std::cell::RefCell<([String; KEPT], usize)> = Default::default();
    }
    let known =
        !authority.is_empty() && CANONICAL.with(|c| c.borrow().0.iter().any(|h| h == authority));
    if known {
        // No port (it would not equal the name) and nothing to change.
        return Ok((Cow::Borrowed(authority), None));
    }
    let (host, port) = canonical_host(authority, scheme)?;
    if port.is_none() && matches!(host, Cow::Borrowed(h) if h.len() == authority.len()) {
        CANONICAL.with(|c| {
            let (kept, next) = &mut *c.borrow_mut();
            kept[*next] = authority.to_string();
            *next = (*next + 1) % KEPT;
        });
    }
    Ok((host, port))
}

/// The bearer token of `Authorization`: `None` without one (another scheme, such
/// as Basic for the upstream's own login, is not ours), `Err` when ambiguous or
/// malformed (two headers, an empty token, non-text).
pub fn bearer(h: &HeaderMap) -> Option<Result<&str, ()>> {
    let mut auth = h.get_all(header::AUTHORIZATION).iter();
    match (auth.next(), auth.next()) {
        (Some(_), Some(_)) => Some(Err(())),
        (Some(v), None) => match v.to_str() {
            Ok(s) => bearer_text(s),
            Err(_) => Some(Err(())),
        },
        _ => None,
    }
}

/// [`bearer`] for the one `Authorization` value, as text.
fn bearer_text(s: &str) -> Option<Result<&str, ()>> {
    let t = s.get(bearer_range(s.as_bytes())?).unwrap_or("");
    Some(if t.is_empty() { Err(()) } else { Ok(t) })
}

/// Where the token is in an `Authorization` value of the `Bearer` scheme
/// (case-insensitive, up to the first space), spaces and tabs trimmed; empty
/// when there is none. Byte searches: the value is a token of a few hundred
/// bytes. Shared by [`bearer_text`] and the cache lookup by bytes.
fn bearer_range(v: &[u8]) -> Option<std::ops::Range<usize>> {
    let space = v.iter().position(|&b| b == b' ')?;
    if !v[..space].eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let rest = space + 1;
    let start = v[rest..]
        .iter()
        .position(|b| !blank(b))
        .map_or(v.len(), |i| rest + i);
    let end = v[start..]
        .iter()
        .rposition(|b| !blank(b))
        .map_or(start, |i| start + i + 1);
    Some(start..end)
}

/// Validates a token and applies revocations, on every request (cached token
/// or not), so a termination is immediate. The error is a reason code.
pub async fn authenticate(st: &AppState, token: &str) -> Result<Arc<Identity>, &'static str> {
    checked(st, st.validator.validate(token).await)
}

/// [`authenticate`] after validation: revocations, and the failure counted.
fn checked(
    st: &AppState,
    validated: Result<Arc<Identity>, crate::identity::TokenError>,
) -> Result<Arc<Identity>, &'static str> {
    let reason = match validated {
        Ok(id) if !revoked(st, &id) => return Ok(id),
        Ok(id) => {
            // A verified user insisting with revoked tokens counts against the user.
            st.services
                .bans
                .note_failure(None, Some(&id.user), "revoked");
            "revoked"
        }
        Err(e) => e.as_str(),
    };
    st.metrics.auth_failures.inc([reason]);
    Err(reason)
}

/// The identity's token or session was revoked (one plain atomic read while
/// nothing is).
fn revoked(st: &Inner, id: &Identity) -> bool {
    st.revocations.nonempty().is_some_and(|r| r.is_revoked(id))
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
        Ok(s) if !revoked(st, &s.identity) => return Ok(s.identity.clone()),
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
    h: &Seen<'_>,
    target: &Target<'_>,
    wall: i64,
) -> (Subject, Source, Option<&'static str>) {
    if let Some(t) = h.cached_bearer() {
        if let Some(id) = st.validator.cached(t, wall) {
            return match checked(st, Ok(id)) {
                Ok(id) => (Subject::User(id), Source::Bearer, None),
                Err(reason) => (
                    Subject::Refused(CredentialError::Invalid(reason)),
                    Source::Bearer,
                    Some(reason),
                ),
            };
        }
    }
    let query_token;
    let (token, source) = match h.bearer() {
        Some(t) => (Some(t), Source::Bearer),
        None => match h.cookie(&st.config.session.cookie_name) {
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
fn is_browser_navigation(h: &Seen<'_>, target: &Target<'_>) -> bool {
    if target.websocket || h.authorization.present() {
        return false;
    }
    if h.x_requested_with
        .first_text()
        .unwrap_or("")
        .eq_ignore_ascii_case("xmlhttprequest")
    {
        return false;
    }
    // A value that is not text counts as absent, as `HeaderMap::get` + `to_str`.
    match h.sec_fetch_mode.first_text() {
        Some(mode) => mode.eq_ignore_ascii_case("navigate"),
        None => h.accept.first_text().unwrap_or("").contains("text/html"),
    }
}

fn login_url(st: &AppState, target: &Target<'_>, step_up: bool) -> String {
    let rd: String =
        url::form_urlencoded::byte_serialize(target.original_url().as_bytes()).collect();
    let extra = if step_up { "&step_up=1" } else { "" };
    format!("{}/login?rd={rd}{extra}", st.public_base)
}

/// What a decision endpoint answers, before it takes a wire form: an axum
/// response ([`Verdict::into_response`]) or HTTP/1.1 bytes on the fast path
/// ([`Verdict::encode`]). Both come from the same fields, so they cannot differ.
#[derive(Debug)]
pub struct Verdict {
    pub status: StatusCode,
    /// Allowed with an identity: its ready `Remote-*` values.
    identity: Option<Arc<Identity>>,
    location: Option<HeaderValue>,
    www_authenticate: Option<&'static str>,
    /// A JSON error body: code and message.
    error: Option<(&'static str, &'static str)>,
    /// The wall clock's second when it was reached ([`Clock::wall`]): the
    /// fast path's `Date` (hyper writes its own).
    ///
    /// [`Clock::wall`]: crate::clock::Clock::wall
    pub wall: i64,
}

const CHALLENGE: &str = "Bearer realm=\"gatehouse\"";
const CHALLENGE_INVALID: &str = "Bearer realm=\"gatehouse\", error=\"invalid_token\"";

impl Verdict {
    fn plain(status: StatusCode) -> Self {
        Verdict {
            status,
            identity: None,
            location: None,
            www_authenticate: None,
            error: None,
            wall: 0,
        }
    }

    fn error(status: StatusCode, code: &'static str, message: &'static str) -> Self {
        Verdict {
            error: Some((code, message)),
            ..Verdict::plain(status)
        }
    }

    fn challenge(mut self, invalid: bool) -> Self {
        self.www_authenticate = Some(if invalid {
            CHALLENGE_INVALID
        } else {
            CHALLENGE
        });
        self
    }

    /// The identity headers to copy upstream, with their values.
    fn identity_headers(&self) -> impl Iterator<Item = (&'static HeaderName, &HeaderValue)> {
        // decide() refused identities whose values are not header-safe; the values
        // were built once, with the identity.
        self.identity.iter().flat_map(|id| {
            IDENTITY_HEADER_NAMES
                .iter()
                .zip(&id.header_values)
                .filter_map(|(name, v)| v.as_ref().map(|v| (name, v)))
        })
    }

    fn body(&self) -> Vec<u8> {
        match self.error {
            Some((code, message)) => {
                serde_json::to_vec(&crate::http::api::ErrorBody::new(code, message.to_string()))
                    .unwrap_or_default()
            }
            None => Vec::new(),
        }
    }

    pub fn into_response(self) -> Response {
        let body = self.body();
        let mut resp = if body.is_empty() {
            self.status.into_response()
        } else {
            (
                self.status,
                [(header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response()
        };
        let hm = resp.headers_mut();
        for (name, v) in self.identity_headers() {
            hm.insert(name.clone(), v.clone());
        }
        if let Some(c) = self.www_authenticate {
            hm.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(c));
        }
        if let Some(l) = self.location {
            hm.insert(header::LOCATION, l);
        }
        resp
    }

    /// Appends the whole HTTP/1.1 response to `out`: status line, headers (with
    /// `date`, and `connection: close` when the connection ends after it), body.
    pub fn encode(&self, out: &mut Vec<u8>, date: &[u8], close: bool) {
        match self.status {
            StatusCode::OK => out.extend_from_slice(b"HTTP/1.1 200 OK\r\n"),
            status => {
                out.extend_from_slice(b"HTTP/1.1 ");
                out.extend_from_slice(status.as_str().as_bytes());
                out.push(b' ');
                out.extend_from_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
        fn line(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        // The order into_response gives hyper.
        let body = self.body();
        if !body.is_empty() {
            line(out, b"content-type", b"application/json");
        }
        if let Some(id) = &self.identity {
            // The lines identity_headers() gives hyper, built with the identity.
            out.extend_from_slice(&id.header_lines);
        }
        if let Some(c) = self.www_authenticate {
            line(out, b"www-authenticate", c.as_bytes());
        }
        if let Some(l) = &self.location {
            line(out, b"location", l.as_bytes());
        }
        if close {
            out.extend_from_slice(b"connection: close\r\n");
        }
        let mut len = [0u8; 20];
        line(out, b"content-length", decimal(body.len(), &mut len));
        line(out, b"date", date);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&body);
    }
}

/// `n` in decimal, written into `buf`.
fn decimal(mut n: usize, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// A redirect to the login page in the shape each flavour's proxy passes on:
/// 302/303 for Caddy and Traefik, 401 with `Location` for nginx's `error_page`.
fn login_redirect(flavour: Flavour, target: &Target<'_>, login: &str, invalid: bool) -> Verdict {
    let mut v = match flavour {
        Flavour::Forward => Verdict::plain(match &*target.method {
            "GET" | "HEAD" => StatusCode::FOUND,
            _ => StatusCode::SEE_OTHER,
        }),
        Flavour::Nginx => Verdict::error(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "login required",
        )
        .challenge(invalid),
    };
    v.location = HeaderValue::from_str(login).ok();
    v
}

/// The decision for one request, as the proxy of `flavour` expects it.
pub async fn answer(st: &AppState, flavour: Flavour, peer: IpAddr, h: &Seen<'_>) -> Verdict {
    // One look at the time to decide with (and to time the decision from).
    let (now, wall, started) = st.clock.now_wall_stamp();
    // Kept to the end, so that the user's name is borrowed, not its identity cloned.
    let mut subject = Subject::Anonymous;
    let (decision, target, source, detail) =
        match parse_target(flavour, &st.trusted_proxies, peer, h, now) {
            Ok(target) if st.regulation.ip_banned(target.client, now) => {
                (banned(), Some(target), Source::None, Some("address_banned"))
            }
            Ok(target) => {
                let (identified, source, detail) = identify(st, h, &target, wall).await;
                subject = identified;
                let decision = match &subject {
                    Subject::User(id) if st.regulation.user_banned(&id.user, now) => banned(),
                    Subject::User(_)
                        if source == Source::Session && st.services.replicas.stale(now) =>
                    {
                        Decision::Forbidden {
                            rule: None,
                            reason: Reason::StoreUnavailable,
                        }
                    }
                    _ => {
                        if let (Subject::Refused(_), Some(reason)) = (&subject, detail) {
                            if counts_as_failure(reason) {
                                st.services
                                    .bans
                                    .note_failure(Some(target.client), None, reason);
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
    let who = match &subject {
        Subject::User(id) => Some(id),
        _ => None,
    };
    let mut response = respond(st, flavour, &decision, target.as_ref(), source, h);
    response.wall = wall;
    st.metrics.decisions.inc([
        flavour.as_str(),
        decision.result(),
        decision.reason().as_str(),
    ]);
    let took = st.clock.stamp().saturating_sub(started);
    st.metrics
        .decision_duration
        .observe(Duration::from_nanos(took.try_into().unwrap_or(0)));
    st.usage.record(
        now,
        who.as_ref().map(|id| id.user.as_str()),
        target.as_ref().map_or("", |t| &*t.host),
        decision.rule(),
        decision.result(),
        decision.reason().as_str(),
    );
    if !matches!(decision, Decision::Allow { .. }) {
        log_denial(flavour, &decision, target.as_ref(), peer, detail);
        st.denials.offer(now, |skipped| crate::live::Denial {
            time: now,
            endpoint: flavour.as_str(),
            result: decision.result(),
            reason: decision.reason().as_str(),
            detail,
            rule: decision.rule(),
            user: who.as_ref().map(|id| id.user.clone()),
            method: target
                .as_ref()
                .map(|t| t.method.to_string())
                .unwrap_or_default(),
            host: target
                .as_ref()
                .map(|t| t.host.to_string())
                .unwrap_or_default(),
            path: target
                .as_ref()
                .map(|t| t.path.to_string())
                .unwrap_or_default(),
            client: target.as_ref().map_or(peer, |t| t.client),
            skipped,
        });
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
    t: Option<&Target<'_>>,
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
        method = t.map(|t| &*t.method).unwrap_or(""),
        host = t.map(|t| &*t.host).unwrap_or(""),
        path = t.map(|t| &*t.path).unwrap_or(""),
        client = %t.map(|t| t.client).unwrap_or(peer),
        "denied"
    );
}

fn respond(
    st: &AppState,
    flavour: Flavour,
    d: &Decision,
    target: Option<&Target<'_>>,
    source: Source,
    h: &Seen<'_>,
) -> Verdict {
    match d {
        Decision::Allow { identity, .. } => Verdict {
            identity: identity.clone(),
            ..Verdict::plain(StatusCode::OK)
        },
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
                    Verdict::error(StatusCode::UNAUTHORIZED, code, msg).challenge(invalid)
                }
            }
        }
        Decision::Forbidden { reason, .. } => {
            // A session without the second factor a rule needs: back to the IdP
            // with the step-up acr_values, when login is available.
            if *reason == Reason::TwoFactorRequired
                && source == Source::Session
                && st.services.login.setup().is_some()
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
                Reason::StoreUnavailable => {
                    "sessions cannot be checked while the store is unreachable; bearer tokens still work"
                }
                _ => "access denied",
            };
            Verdict::error(StatusCode::FORBIDDEN, reason.as_str(), msg)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_lookup_finds_only_what_the_full_reading_finds() {
        // Every value over a small alphabet, up to 9 bytes after a few prefixes:
        // whenever the byte-level lookup yields something a cache could hold
        // (base64url and dots), the text-level reading yields the same token.
        let alphabet: &[u8] = b" \tx.-\x0c\x80\x7f";
        let cacheable = |t: &[u8]| {
            !t.is_empty()
                && t.iter()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(b))
        };
        let mut checked = 0;
        for prefix in [
            &b"Bearer"[..],
            b"bearer",
            b"BEARER",
            b"Bearer ",
            b"Basic",
            b"",
        ] {
            for len in 0..=5u32 {
                for n in 0..alphabet.len().pow(len) {
                    let mut v = prefix.to_vec();
                    let mut k = n;
                    for _ in 0..len {
                        v.push(alphabet[k % alphabet.len()]);
                        k /= alphabet.len();
                    }
                    for twice in [false, true] {
                        let mut h = Seen::default();
                        h.add(b"authorization", &v);
                        if twice {
                            h.add(b"Authorization", &v);
                        }
                        if let Some(t) = h.cached_bearer().filter(|t| cacheable(t)) {
                            assert!(!twice);
                            assert_eq!(
                                h.bearer(),
                                Some(Ok(std::str::from_utf8(t).unwrap())),
                                "{v:?}"
                            );
                            checked += 1;
                        }
                    }
                }
            }
        }
        assert!(checked > 100, "{checked}");
    }

    #[test]
    fn remembered_hosts_answer_as_the_canonicaliser_does() {
        let hosts = [
            "app.example.com",
            "",
            "APP.example.com",
            "app.example.com.",
            "app.example.com:443",
            "app.example.com:8443",
            "a@app.example.com",
            "-app.example.com",
            "[::1]",
            "grafana",
            "app.example.com:0",
        ];
        for _ in 0..3 {
            for h in hosts {
                for scheme in [Scheme::Http, Scheme::Https] {
                    assert_eq!(host_of(h, scheme), canonical_host(h, scheme), "{h:?}");
                }
            }
        }
    }

    #[test]
    fn names_are_found_in_any_case_and_only_exactly() {
        let names: [&[u8]; 20] = [
            b"accept",
            b"cookie",
            b"expect",
            b"upgrade",
            b"x-real-ip",
            b"connection",
            b"authorization",
            b"x-original-url",
            b"sec-fetch-mode",
            b"content-length",
            b"x-forwarded-for",
            b"x-forwarded-uri",
            b"x-forwarded-host",
            b"x-requested-with",
            b"x-forwarded-proto",
            b"x-original-method",
            b"sec-websocket-key",
            b"transfer-encoding",
            b"x-forwarded-method",
            b"sec-websocket-version",
        ];
        let fields: Vec<Field> = names.iter().map(|n| Field::of(n)).collect();
        assert!(!fields.contains(&Field::Other));
        for (i, f) in fields.iter().enumerate() {
            assert!(!fields[..i].contains(f), "{f:?} twice");
        }
        // Against the plain rule: every single-byte change of every name (every
        // byte value), upper and mixed case, and a few lengths around.
        let plain = |name: &[u8]| {
            names
                .iter()
                .zip(&fields)
                .find(|(n, _)| name.eq_ignore_ascii_case(n))
                .map_or(Field::Other, |(_, f)| *f)
        };
        for n in names {
            let upper = n.to_ascii_uppercase();
            assert_eq!(Field::of(&upper), plain(&upper));
            let mixed: Vec<u8> = n
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    if i % 2 == 0 {
                        b.to_ascii_uppercase()
                    } else {
                        *b
                    }
                })
                .collect();
            assert_eq!(Field::of(&mixed), plain(&mixed));
            for at in 0..n.len() {
                for b in 0..=255u8 {
                    let mut w = n.to_vec();
                    w[at] = b;
                    assert_eq!(
                        Field::of(&w),
                        plain(&w),
                        "{:?}",
                        String::from_utf8_lossy(&w)
                    );
                }
            }
            assert_eq!(Field::of(&n[..n.len() - 1]), Field::Other);
            assert_eq!(Field::of(&[n, &b"s"[..]].concat()), Field::Other);
        }
        for short in [&b""[..], b"a", b"ab", b"abc", b"-", b"acce"] {
            assert_eq!(Field::of(short), Field::Other);
        }
    }

    #[test]
    fn common_values_are_header_text() {
        fn common_text(v: &[u8]) -> Option<&str> {
            common(v).or_else(|| header_text(v))
        }
        let listed = [
            "https", "http", "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS",
        ];
        let others = [
            "get", "Https", "GETX", "GE", "", " GET", "GET ", "\tPUT", "CONNECT", "TRACE",
        ];
        for v in listed.iter().chain(&others) {
            let v = v.as_bytes();
            assert_eq!(common_text(v), header_text(v), "{v:?}");
            // Every single-byte change of it, controls and non-ASCII bytes included.
            for at in 0..v.len() {
                for b in 0..=255u8 {
                    let mut w = v.to_vec();
                    w[at] = b;
                    assert_eq!(common_text(&w), header_text(&w), "{w:?}");
                }
            }
        }
    }

    #[test]
    fn visible_ascii_is_exactly_the_byte_rule() {
        let naive = |v: &[u8]| v.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b));
        for len in 0..24 {
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut v = vec![b'a'; len];
                    v[at] = b;
                    assert_eq!(visible_ascii(&v), naive(&v), "{v:?}");
                    // Two odd bytes in one word.
                    v[(at + 3) % len] = 0x7f;
                    assert_eq!(visible_ascii(&v), naive(&v), "{v:?}");
                }
            }
        }
    }

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

    fn seen(pairs: &[(&str, &str)]) -> Seen<'static> {
        // Leaked: a test-only convenience so the view can outlive the map.
        Seen::from_map(Box::leak(Box::new(hm(pairs))))
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
        let t = parse_target(Flavour::Forward, &trusted(), LO, &Seen::from_map(&h), 0).unwrap();
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
        let t = parse_target(Flavour::Nginx, &trusted(), LO, &Seen::from_map(&h), 0).unwrap();
        assert_eq!((&*t.host, &*t.path), ("app.example.com", "/x"));
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
        assert!(parse_target(
            Flavour::Forward,
            &trusted(),
            LO,
            &Seen::from_map(&hm(&base)),
            0
        )
        .is_ok());
        // untrusted peer: nothing is believed
        let other: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(
            parse_target(
                Flavour::Forward,
                &trusted(),
                other,
                &Seen::from_map(&hm(&base)),
                0
            ),
            Err(TargetError::UntrustedCaller)
        );
        for (i, _) in base.iter().enumerate() {
            let mut missing = base.to_vec();
            missing.remove(i);
            assert!(parse_target(
                Flavour::Forward,
                &trusted(),
                LO,
                &Seen::from_map(&hm(&missing)),
                0
            )
            .is_err());
        }
        let mut dup = base.to_vec();
        dup.push(("x-forwarded-host", "evil.example.com"));
        assert_eq!(
            parse_target(
                Flavour::Forward,
                &trusted(),
                LO,
                &Seen::from_map(&hm(&dup)),
                0
            ),
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
                parse_target(
                    Flavour::Forward,
                    &trusted(),
                    LO,
                    &Seen::from_map(&hm(&bad)),
                    0
                )
                .is_err(),
                "{k}: {v}"
            );
        }
        // nginx flavour needs X-Original-URL and ignores X-Forwarded-Uri
        let h = hm(&[("x-forwarded-uri", "/"), ("x-forwarded-host", "a.com")]);
        assert_eq!(
            parse_target(Flavour::Nginx, &trusted(), LO, &Seen::from_map(&h), 0),
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
            &seen(&[("accept", "text/html,application/xhtml+xml")]),
            &t
        ));
        assert!(is_browser_navigation(
            &seen(&[("sec-fetch-mode", "navigate")]),
            &t
        ));
        assert!(!is_browser_navigation(
            &seen(&[("sec-fetch-mode", "cors"), ("accept", "text/html")]),
            &t
        ));
        assert!(!is_browser_navigation(
            &seen(&[("accept", "application/json")]),
            &t
        ));
        assert!(!is_browser_navigation(
            &seen(&[
                ("accept", "text/html"),
                ("x-requested-with", "XMLHttpRequest")
            ]),
            &t
        ));
        assert!(!is_browser_navigation(
            &seen(&[("accept", "text/html"), ("authorization", "Bearer x")]),
            &t
        ));
    }
}

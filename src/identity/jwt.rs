//! Bearer-token validation for one or more issuers: keys from discovery, a pinned
//! file or the local signing key; algorithms pinned per key; strict headers and
//! claims; a validated-token cache so the hot path rarely verifies a signature.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use base64::Engine;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use super::claims::{principal_from_claims, ClaimPath, ClaimsError};
use super::digest_memo;
use super::keys::{parse_jwks, KeySet, MAX_JWKS_BYTES};
use super::principals::Principals;
use super::token_cache::{TokenCache, ENTRY_OVERHEAD};
use crate::clock::SharedClock;
use crate::config::IssuerConfig;
use crate::decision::Identity;
use crate::metrics::Metrics;

/// Longest bearer token considered at all, in bytes.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Longest a validated token is served from the cache, whatever its `exp`.
pub const MAX_CACHE_TTL: Duration = Duration::from_secs(300);
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a token was refused. Never carries the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    TooLarge,
    Malformed,
    BadHeader,
    ForbiddenHeader(&'static str),
    WrongTokenType,
    UnknownIssuer,
    UnknownKey,
    KeysUnavailable,
    AlgorithmNotAllowed,
    BadSignature,
    MissingExp,
    Expired,
    NotYetValid,
    IssuedInFuture,
    BadAudience,
    Claims(ClaimsError),
}

impl TokenError {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TooLarge => "token_too_large",
            Self::Malformed => "token_malformed",
            Self::BadHeader => "bad_header",
            Self::ForbiddenHeader(_) => "forbidden_header",
            Self::WrongTokenType => "wrong_token_type",
            Self::UnknownIssuer => "unknown_issuer",
            Self::UnknownKey => "unknown_key",
            Self::KeysUnavailable => "keys_unavailable",
            Self::AlgorithmNotAllowed => "algorithm_not_allowed",
            Self::BadSignature => "bad_signature",
            Self::MissingExp => "missing_exp",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::IssuedInFuture => "issued_in_future",
            Self::BadAudience => "bad_audience",
            Self::Claims(c) => c.as_str(),
        }
    }
}

/// Where an issuer's keys come from.
#[derive(Debug)]
enum KeySource {
    Discovery { allow_http: bool },
    File(std::path::PathBuf),
    Static,
}

/// One trusted issuer and its current keys.
#[derive(Debug)]
pub struct IssuerHandle {
    pub issuer: String,
    audiences: Vec<String>,
    client_id: Option<String>,
    accept_azp: bool,
    roles_claims: Vec<ClaimPath>,
    leeway: i64,
    refresh_interval: Duration,
    min_refetch: Duration,
    source: KeySource,
    keys: ArcSwap<KeySet>,
    loaded: AtomicBool,
    /// When the keys were last fetched successfully (Unix seconds; 0: never).
    last_refresh: std::sync::atomic::AtomicI64,
    /// Time of the last on-demand fetch; held only while fetching, never on the hot path.
    refetch_gate: tokio::sync::Mutex<Option<Instant>>,
    /// The discovery document, once fetched (the login flow reads its endpoints).
    pub discovery: ArcSwap<Option<Value>>,
}

impl IssuerHandle {
    pub fn from_config(c: &IssuerConfig, allow_http: bool) -> Self {
        IssuerHandle {
            issuer: c.issuer.clone(),
            audiences: c.audiences.clone(),
            client_id: c.client_id.clone(),
            accept_azp: c.accept_azp_as_audience,
            roles_claims: c.roles_claims.iter().map(|p| ClaimPath::parse(p)).collect(),
            leeway: c.leeway.as_secs() as i64,
            refresh_interval: c.jwks_refresh_interval,
            min_refetch: c.jwks_min_refetch_interval,
            source: match &c.jwks_file {
                Some(p) => KeySource::File(p.clone()),
                None => KeySource::Discovery { allow_http },
            },
            keys: ArcSwap::from_pointee(KeySet::default()),
            loaded: AtomicBool::new(false),
            last_refresh: Default::default(),
            refetch_gate: tokio::sync::Mutex::new(None),
            discovery: ArcSwap::from_pointee(None),
        }
    }

    /// An issuer with fixed keys (the local signing key).
    pub fn with_static_keys(
        issuer: &str,
        audience: &str,
        keys: KeySet,
        roles_claims: &[&str],
    ) -> Self {
        IssuerHandle {
            issuer: issuer.to_string(),
            audiences: vec![audience.to_string()],
            client_id: None,
            accept_azp: false,
            roles_claims: roles_claims.iter().map(|p| ClaimPath::parse(p)).collect(),
            leeway: 30,
            refresh_interval: Duration::from_secs(3600),
            min_refetch: Duration::from_secs(3600),
            source: KeySource::Static,
            keys: ArcSwap::from_pointee(keys),
            loaded: AtomicBool::new(true),
            last_refresh: Default::default(),
            refetch_gate: tokio::sync::Mutex::new(None),
            discovery: ArcSwap::from_pointee(None),
        }
    }

    /// Clock tolerance for `exp`, `nbf` and `iat`, in seconds.
    pub fn leeway_secs(&self) -> i64 {
        self.leeway
    }

    /// The OAuth client gatehouse is at this issuer (browser login), if any.
    pub fn client_id(&self) -> Option<&str> {
        self.client_id.as_deref()
    }

    /// The configured roles claim paths.
    pub fn roles_claims(&self) -> &[ClaimPath] {
        &self.roles_claims
    }

    /// When the keys were last fetched successfully (Unix seconds), if ever.
    pub fn last_refresh(&self) -> Option<i64> {
        Some(self.last_refresh.load(Ordering::Relaxed)).filter(|t| *t > 0)
    }

    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    pub fn key_ids(&self) -> Vec<String> {
        self.keys.load().kids()
    }

    /// Fetches the keys now; on failure the last good keys stay in place.
    /// Returns whether a previously known key disappeared.
    async fn fetch(&self, http: &reqwest::Client) -> Result<bool, String> {
        let bytes = match &self.source {
            KeySource::Static => return Ok(false),
            KeySource::File(p) => tokio::fs::read(p)
                .await
                .map_err(|e| format!("cannot read {}: {e}", p.display()))?,
            KeySource::Discovery { allow_http } => {
                let base = self.issuer.trim_end_matches('/');
                let url = format!("{base}/.well-known/openid-configuration");
                let doc: Value = serde_json::from_slice(&get_limited(http, &url).await?)
                    .map_err(|_| format!("discovery document at {url} is not JSON"))?;
                if doc.get("issuer").and_then(Value::as_str) != Some(self.issuer.as_str()) {
                    return Err(format!(
                        "discovery document at {url} names another issuer; refusing it"
                    ));
                }
                let jwks_uri = doc
                    .get("jwks_uri")
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("discovery document at {url} has no jwks_uri"))?
                    .to_string();
                let ok_scheme = jwks_uri.starts_with("https://")
                    || (*allow_http && jwks_uri.starts_with("http://"));
                if !ok_scheme {
                    return Err(format!("jwks_uri {jwks_uri} is not https"));
                }
                self.discovery.store(Arc::new(Some(doc)));
                get_limited(http, &jwks_uri).await?
            }
        };
        let set = parse_jwks(&bytes).map_err(|e| e.to_string())?;
        let old = self.keys.load();
        let new_kids = set.kids();
        let removed = old.kids().iter().any(|k| !new_kids.contains(k));
        self.keys.store(Arc::new(set));
        self.loaded.store(true, Ordering::Release);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        self.last_refresh.store(now, Ordering::Relaxed);
        Ok(removed)
    }
}

async fn get_limited(http: &reqwest::Client, url: &str) -> Result<Vec<u8>, String> {
    let mut resp = http
        .get(url)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {}", without_url(&e)))?;
    if !resp.status().is_success() {
        return Err(format!("GET {url}: HTTP {}", resp.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("GET {url}: {}", without_url(&e)))?
    {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_JWKS_BYTES {
            return Err(format!(
                "GET {url}: response larger than {MAX_JWKS_BYTES} bytes"
            ));
        }
    }
    Ok(body)
}

fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(u) = e.url() {
        s = s.replace(u.as_str(), "");
    }
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else {
        s
    }
}

/// The bytes one cached token holds (its weight in the cache, so that the
/// cache is bounded by bytes: tokens with many groups or long claims count
/// for more).
fn cache_weight(identity: &Identity) -> usize {
    ENTRY_OVERHEAD + identity.approx_bytes()
}

/// Which kind of JWT is being verified: each accepts its own header `typ`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// Bearer access tokens (`JWT`, `at+jwt`).
    Access,
    /// OpenID Connect ID tokens from the login flow (`JWT`).
    Id,
    /// Back-channel logout tokens (`JWT`, `logout+jwt`).
    Logout,
}

/// Validates bearer tokens against every configured issuer.
pub struct TokenValidator {
    issuers: HashMap<String, Arc<IssuerHandle>>,
    cache: TokenCache,
    principals: Principals,
    clock: SharedClock,
    metrics: Arc<Metrics>,
    http: reqwest::Client,
}

impl std::fmt::Debug for TokenValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenValidator")
            .field("issuers", &self.issuers.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn b64_json(segment: &str) -> Option<Map<String, Value>> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segment)
        .ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

fn numeric_date(v: Option<&Value>) -> Result<Option<i64>, ()> {
    match v {
        None => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                Ok(Some(i))
            } else if let Some(f) = n.as_f64().filter(|f| f.is_finite() && f.abs() < 1e15) {
                Ok(Some(f.floor() as i64))
            } else {
                Err(())
            }
        }
        Some(_) => Err(()),
    }
}

fn parse_alg(s: &str) -> Option<Algorithm> {
    use Algorithm::*;
    Some(match s {
        "RS256" => RS256,
        "RS384" => RS384,
        "RS512" => RS512,
        "PS256" => PS256,
        "PS384" => PS384,
        "PS512" => PS512,
        "ES256" => ES256,
        "ES384" => ES384,
        "EdDSA" => EdDSA,
        _ => return None,
    })
}

/// Header parameters that let a token choose its own key or change processing.
const FORBIDDEN_HEADERS: &[&str] = &[
    "jku", "jwk", "x5u", "x5c", "crit", "b64", "zip", "enc", "cty",
];

impl TokenValidator {
    pub fn new(
        issuers: Vec<Arc<IssuerHandle>>,
        clock: SharedClock,
        metrics: Arc<Metrics>,
        cache_bytes: u64,
    ) -> Self {
        let http = crate::crypto::http_client()
            .timeout(HTTP_TIMEOUT)
            .connect_timeout(Duration::from_secs(3))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("gatehouse/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("static reqwest configuration");
        TokenValidator {
            issuers: issuers.into_iter().map(|i| (i.issuer.clone(), i)).collect(),
            cache: TokenCache::new(cache_bytes),
            principals: Principals::default(),
            clock,
            metrics,
            http,
        }
    }

    pub fn issuers(&self) -> impl Iterator<Item = &Arc<IssuerHandle>> {
        self.issuers.values()
    }

    /// Every issuer has keys.
    pub fn ready(&self) -> bool {
        self.issuers.values().all(|i| i.is_loaded())
    }

    /// Fetches keys for one issuer and records the outcome.
    pub async fn refresh_issuer(&self, issuer: &IssuerHandle, trigger: &'static str) -> bool {
        match issuer.fetch(&self.http).await {
            Ok(removed) => {
                self.metrics
                    .jwks_refreshes
                    .inc(&[&issuer.issuer, trigger, "ok"]);
                if removed {
                    // A key was withdrawn: tokens it signed must not live on in the cache.
                    self.cache.clear();
                }
                tracing::debug!(issuer = %issuer.issuer, trigger, kids = ?issuer.key_ids(), "keys loaded");
                true
            }
            Err(e) => {
                self.metrics
                    .jwks_refreshes
                    .inc(&[&issuer.issuer, trigger, "error"]);
                tracing::warn!(issuer = %issuer.issuer, trigger, error = %e, "key fetch failed; keeping the last good keys");
                false
            }
        }
    }

    /// Loads every issuer's keys once; failures are retried by the refreshers.
    pub async fn load_all(&self) {
        for i in self.issuers.values() {
            if !matches!(i.source, KeySource::Static) {
                self.refresh_issuer(i, "startup").await;
            }
        }
    }

    /// Background refresh: every `jwks_refresh_interval`, with backoff while failing.
    pub fn spawn_refreshers(self: &Arc<Self>) -> Vec<tokio::task::JoinHandle<()>> {
        let mut handles = Vec::new();
        for issuer in self.issuers.values() {
            if matches!(issuer.source, KeySource::Static) {
                continue;
            }
            let me = Arc::clone(self);
            let issuer = Arc::clone(issuer);
            handles.push(tokio::spawn(async move {
                let mut backoff = Duration::from_secs(1);
                loop {
                    let wait = if issuer.is_loaded() {
                        issuer.refresh_interval
                    } else {
                        backoff
                    };
                    tokio::time::sleep(wait).await;
                    if me.refresh_issuer(&issuer, "periodic").await {
                        backoff = Duration::from_secs(1);
                    } else {
                        backoff = (backoff * 2).min(Duration::from_secs(60));
                    }
                }
            }));
        }
        handles
    }

    /// The identity a token proved when it was verified, if it is cached and
    /// still valid (counted as a hit). Any bytes may be asked about: only
    /// verified tokens are in the cache.
    /// `wall` is the wall clock's reading ([`crate::clock::Clock::wall`]).
    pub fn cached(&self, token: &[u8], wall: i64) -> Option<Arc<Identity>> {
        if token.len() > MAX_TOKEN_BYTES {
            return None;
        }
        self.lookup(token, wall).1
    }

    /// The cache lookup behind [`Self::cached`] and [`Self::validate`]: the
    /// token's SHA-256 (the cache key; remembered per thread, see
    /// [`digest_memo`]) and the identity cached under it, if any (counted as
    /// a hit; the digest of a token found is remembered).
    fn lookup(&self, token: &[u8], wall: i64) -> ([u8; 32], Option<Arc<Identity>>) {
        let (hash, remembered) = digest_memo::sha256(token);
        let identity = self.cache.get(&hash, wall);
        if identity.is_some() {
            self.metrics
                .token_cache_hits
                .fetch_add(1, Ordering::Relaxed);
            if !remembered {
                digest_memo::remember(token, &hash);
            }
        }
        (hash, identity)
    }

    /// Validates a bearer token: cache first, then full verification.
    pub async fn validate(&self, token: &str) -> Result<Arc<Identity>, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLarge);
        }
        let (hash, cached) = self.lookup(token.as_bytes(), self.clock.wall());
        if let Some(identity) = cached {
            return Ok(identity);
        }
        self.metrics
            .token_cache_misses
            .fetch_add(1, Ordering::Relaxed);
        let (identity, ttl) = self.verify(token).await?;
        let identity = Arc::new(identity);
        let now = self.clock.wall();
        let weight = cache_weight(&identity);
        self.cache.insert(
            hash,
            identity.clone(),
            now + ttl.as_secs() as i64,
            weight,
            now,
        );
        digest_memo::remember(token.as_bytes(), &hash);
        Ok(identity)
    }

    /// Full verification, no cache. Returns the identity and how long it may be cached.
    pub async fn verify(&self, token: &str) -> Result<(Identity, Duration), TokenError> {
        let (issuer, claims) = self.verify_signed(token, TokenKind::Access).await?;
        // The signature covers the payload; now its claims.
        self.check_claims(&issuer, &claims)
    }

    /// The header and signature checks every token kind shares: size, shape,
    /// forbidden headers, an asymmetric algorithm the key allows, a known issuer,
    /// a valid signature. Returns the issuer and the (signed) claims.
    pub async fn verify_signed(
        &self,
        token: &str,
        kind: TokenKind,
    ) -> Result<(Arc<IssuerHandle>, Map<String, Value>), TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLarge);
        }
        let mut parts = token.split('.');
        let (h, p, s) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(h), Some(p), Some(s), None)
                if !h.is_empty() && !p.is_empty() && !s.is_empty() =>
            {
                (h, p, s)
            }
            _ => return Err(TokenError::Malformed),
        };
        let b64ok = |x: &str| {
            x.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if !(b64ok(h) && b64ok(p) && b64ok(s)) {
            return Err(TokenError::Malformed);
        }
        let header = b64_json(h).ok_or(TokenError::BadHeader)?;
        for name in FORBIDDEN_HEADERS {
            if header.contains_key(*name) {
                return Err(TokenError::ForbiddenHeader(name));
            }
        }
        match header.get("typ") {
            None => {}
            Some(Value::String(t)) if t.eq_ignore_ascii_case("JWT") => {}
            Some(Value::String(t))
                if kind == TokenKind::Access
                    && (t.eq_ignore_ascii_case("at+jwt")
                        || t.eq_ignore_ascii_case("application/at+jwt")) => {}
            Some(Value::String(t))
                if kind == TokenKind::Logout
                    && (t.eq_ignore_ascii_case("logout+jwt")
                        || t.eq_ignore_ascii_case("application/logout+jwt")) => {}
            Some(_) => return Err(TokenError::WrongTokenType),
        }
        let alg = header
            .get("alg")
            .and_then(Value::as_str)
            .ok_or(TokenError::BadHeader)?;
        // Anything not on the asymmetric list (none, HS*, ...) stops here.
        let alg = parse_alg(alg).ok_or(TokenError::AlgorithmNotAllowed)?;
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(k)) => Some(k.as_str()),
            Some(_) => return Err(TokenError::BadHeader),
        };
        let claims = b64_json(p).ok_or(TokenError::Malformed)?;
        let iss = claims
            .get("iss")
            .and_then(Value::as_str)
            .ok_or(TokenError::UnknownIssuer)?;
        let issuer = self.issuers.get(iss).ok_or(TokenError::UnknownIssuer)?;

        let mut keys = issuer.keys.load_full();
        if keys.find(kid).is_none() {
            if !self.refetch_for_unknown_key(issuer).await {
                return Err(if issuer.is_loaded() {
                    TokenError::UnknownKey
                } else {
                    TokenError::KeysUnavailable
                });
            }
            keys = issuer.keys.load_full();
        }
        let key = keys.find(kid).ok_or(if issuer.is_loaded() {
            TokenError::UnknownKey
        } else {
            TokenError::KeysUnavailable
        })?;
        if !key.algorithms.contains(&alg) {
            return Err(TokenError::AlgorithmNotAllowed);
        }
        let mut v = Validation::new(alg);
        v.validate_exp = false;
        v.validate_nbf = false;
        v.validate_aud = false;
        v.required_spec_claims.clear();
        jsonwebtoken::decode::<serde::de::IgnoredAny>(token, &key.key, &v)
            .map_err(|_| TokenError::BadSignature)?;
        Ok((issuer.clone(), claims))
    }

    /// The issuer handle for an issuer URL, if configured.
    pub fn issuer(&self, iss: &str) -> Option<&Arc<IssuerHandle>> {
        self.issuers.get(iss)
    }

    fn check_claims(
        &self,
        issuer: &IssuerHandle,
        claims: &Map<String, Value>,
    ) -> Result<(Identity, Duration), TokenError> {
        // The issuer's instants against the wall clock (never going back).
        let now = self.clock.wall();
        let leeway = issuer.leeway;
        let exp = numeric_date(claims.get("exp"))
            .map_err(|_| TokenError::MissingExp)?
            .ok_or(TokenError::MissingExp)?;
        if exp + leeway <= now {
            return Err(TokenError::Expired);
        }
        let nbf = numeric_date(claims.get("nbf")).map_err(|_| TokenError::NotYetValid)?;
        if nbf.is_some_and(|n| n > now + leeway) {
            return Err(TokenError::NotYetValid);
        }
        let iat = numeric_date(claims.get("iat")).map_err(|_| TokenError::IssuedInFuture)?;
        if iat.is_some_and(|i| i > now + leeway) {
            return Err(TokenError::IssuedInFuture);
        }
        // Keycloak marks ID, refresh and logout tokens in `typ`; only access tokens pass.
        match claims.get("typ") {
            None => {}
            Some(Value::String(t)) if t.eq_ignore_ascii_case("Bearer") => {}
            Some(_) => return Err(TokenError::WrongTokenType),
        }
        if claims.contains_key("events") {
            return Err(TokenError::WrongTokenType);
        }
        let aud_ok = match claims.get("aud") {
            Some(Value::String(a)) => issuer.audiences.iter().any(|x| x == a),
            Some(Value::Array(list)) => list.iter().any(|a| {
                a.as_str()
                    .is_some_and(|a| issuer.audiences.iter().any(|x| x == a))
            }),
            _ => false,
        };
        let azp_ok = issuer.accept_azp
            && issuer.client_id.is_some()
            && claims.get("azp").and_then(Value::as_str) == issuer.client_id.as_deref();
        if !(aud_ok || azp_ok) {
            return Err(TokenError::BadAudience);
        }
        let principal = principal_from_claims(&issuer.issuer, claims, &issuer.roles_claims)
            .map_err(TokenError::Claims)?;
        let identity = Identity::of(self.principals.intern(principal), iat, exp);
        let remaining = (exp + leeway - now).max(0) as u64;
        Ok((identity, Duration::from_secs(remaining).min(MAX_CACHE_TTL)))
    }

    /// An unknown `kid` may mean the IdP rotated keys: refetch, at most once per
    /// `jwks_min_refetch_interval` per issuer. True when keys were fetched now or
    /// by a concurrent request while this one waited.
    async fn refetch_for_unknown_key(&self, issuer: &IssuerHandle) -> bool {
        if matches!(issuer.source, KeySource::Static) {
            return false;
        }
        let before = issuer.keys.load_full();
        let mut gate = issuer.refetch_gate.lock().await;
        if !Arc::ptr_eq(&before, &issuer.keys.load_full()) {
            return true;
        }
        if gate.is_some_and(|t| t.elapsed() < issuer.min_refetch) {
            return false;
        }
        *gate = Some(Instant::now());
        self.refresh_issuer(issuer, "unknown_kid").await
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Drops every cached validation (tests, key withdrawal).
    pub fn clear_cache(&self) {
        self.cache.clear();
    }
}

#[cfg(test)]
mod cache_tests {
    use super::*;
    use crate::decision::PrincipalParts;

    fn identity(groups: usize) -> Identity {
        Identity::new(
            PrincipalParts {
                issuer: "https://issuer.example/realms/main".into(),
                sub: "0b6f3c2e-5a41-4c6f-9d7e-2f1a8b3c4d5e".into(),
                preferred_username: Some("alice".into()),
                email: Some("alice@example.com".into()),
                name: Some("Alice Example".into()),
                groups: (0..groups).map(|i| format!("group-{i:04}")).collect(),
                amr: vec!["pwd".into()],
                ..Default::default()
            },
            Some(1),
            2,
        )
    }

    #[test]
    fn a_cached_token_weighs_what_its_identity_holds() {
        let small = cache_weight(&identity(2));
        let large = cache_weight(&identity(1000));
        assert!(
            (ENTRY_OVERHEAD + 300..ENTRY_OVERHEAD + 1500).contains(&small),
            "{small}"
        );
        // A thousand groups: the list and the Remote-Groups value (twice).
        assert!(large > small + 2 * 1000 * 10, "{large}");
        let cache = TokenCache::new(512 * 1024);
        for i in 0..2000u32 {
            let mut k = [0u8; 32];
            k[..4].copy_from_slice(&i.to_be_bytes());
            k[31] = i as u8;
            let id = identity(if i % 2 == 0 { 2 } else { 1000 });
            let w = cache_weight(&id);
            cache.insert(k, Arc::new(id), 100, w, 1);
        }
        assert!(cache.bytes() <= 512 * 1024, "{}", cache.bytes());
        assert!(cache.len() < 2000);
    }
}

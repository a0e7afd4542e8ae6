//! The companion API under `/api/v1`: JSON in and out, errors as
//! `{"error":{"code","message"}}`. Every request authenticates itself through the
//! same identity engine as the decision endpoints (bearer token for now); it
//! never trusts `Remote-*` headers from the network.

pub mod actions;
pub mod allowlist;
pub mod audit;
pub mod bans;
pub mod control;
pub mod monitoring;
pub mod sessions;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::app::AppState;
use crate::decision::Identity;
use std::net::{IpAddr, SocketAddr};

use crate::decision::target::client_address;
use crate::http::authz::{authenticate, bearer, session_subject};
use crate::http::login::cookie_value;
use crate::service::access::{self, Admin, Permission};
use crate::service::audit::Coded;
use crate::service::bans::counts_as_failure;
use crate::service::DomainError;

/// The body of every API error.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

impl ErrorBody {
    pub fn new(code: &str, message: String) -> Self {
        ErrorBody {
            error: ErrorDetail {
                code: code.to_string(),
                message,
                lines: None,
                login_url: None,
                params: None,
                outcome: None,
            },
        }
    }
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: unauthenticated, invalid_token, forbidden,
    /// banned, cross_site_request, not_found, bad_request, invalid_import,
    /// step_up_required, confirmation_required, busy, action_failed,
    /// invalid_params, too_many_sockets, store_unavailable, internal.
    pub code: String,
    pub message: String,
    /// Import errors only: every bad line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lines: Option<Vec<LineError>>,
    /// `step_up_required` only: where to authenticate again (with a second factor).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login_url: Option<String>,
    /// `invalid_params` only: every bad parameter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub params: Option<Vec<ParamError>>,
    /// `action_failed` only: what ran, step by step.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub outcome: Option<serde_json::Value>,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ParamError {
    pub name: String,
    pub message: String,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct LineError {
    pub line: usize,
    pub message: String,
}

/// The OpenAPI document, generated from the handlers' annotations.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "gatehouse companion API", description = "Sessions, bans, the IP allowlist, the audit log, usage monitoring and control. JSON in and out; errors are {\"error\":{\"code\",\"message\"}}."),
    paths(
        me,
        sessions::list, sessions::terminate_one, sessions::terminate_all,
        bans::list, bans::create, bans::lift,
        allowlist::list, allowlist::add, allowlist::remove, allowlist::import,
        audit::list, audit::verify,
        monitoring::usage,
        control::services, control::service_action,
        control::kill_switch, control::press, control::release, control::status,
        control::power, control::power_action,
        actions::list, actions::run, actions::get_run,
        crate::http::ws::ws,
        crate::http::ui::index, crate::http::ui::file,
        openapi,
    ),
    components(schemas(ErrorBody, ErrorDetail, LineError, ParamError, actions::RunRequest, bans::NewBan, allowlist::NewEntry, control::Press, control::PowerRequest)),
    modifiers(&Security),
)]
pub struct ApiDoc;

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme,
        };
        let c = doc.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        c.add_security_scheme(
            "session_cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "gatehouse_session",
                "the browser session (session.cookie_name); changes must come from gatehouse's origin as JSON",
            ))),
        );
    }
}

/// The document as served and as committed in docs/openapi.json.
pub fn openapi_json() -> String {
    use utoipa::OpenApi;
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc.to_pretty_json().unwrap_or_default() + "\n"
}

/// `GET /api/v1/openapi.json` — this API's OpenAPI document.
/// **Permissions**: none (it describes, it does not reveal).
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "meta", responses((status = 200, description = "the OpenAPI 3.1 document")))]
pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], openapi_json()).into_response()
}

/// Every way an API call can fail; `into_response` is the one mapping to HTTP.
#[derive(Debug)]
pub enum ApiError {
    Unauthenticated,
    InvalidToken,
    /// The caller lacks this permission.
    Forbidden(Permission),
    /// A cookie-authenticated change that does not come from gatehouse's origin.
    CrossSite,
    /// The client address or user is banned (brute-force regulation).
    Banned,
    NotFound(&'static str),
    BadRequest(String),
    /// A batch refused as a whole: every bad line, numbered.
    InvalidImport(Vec<(usize, String)>),
    /// A second factor or a fresher authentication is needed (with where to get it).
    StepUp {
        message: &'static str,
        login_url: Option<String>,
    },
    /// The body lacks the exact confirmation phrase.
    ConfirmationRequired(&'static str),
    /// An operation on the same service or machine is running.
    Busy(String),
    /// The backend ran and failed: the outcome, step by step.
    ActionFailed(Box<serde_json::Value>),
    /// An action's parameters: every bad one, named.
    InvalidParams(Vec<(String, String)>),
    /// Too many admin sockets open (for this user, or in all).
    TooManySockets,
    /// Details go to the log once; the client gets a generic message.
    Internal(String),
    /// The store does not answer (503); nothing was changed.
    Unavailable(String),
}

impl ApiError {
    /// The stable error code of the JSON body.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthenticated => "unauthenticated",
            ApiError::InvalidToken => "invalid_token",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::CrossSite => "cross_site_request",
            ApiError::Banned => "banned",
            ApiError::NotFound(_) => "not_found",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::InvalidImport(_) => "invalid_import",
            ApiError::StepUp { .. } => "step_up_required",
            ApiError::ConfirmationRequired(_) => "confirmation_required",
            ApiError::Busy(_) => "busy",
            ApiError::ActionFailed(_) => "action_failed",
            ApiError::InvalidParams(_) => "invalid_params",
            ApiError::TooManySockets => "too_many_sockets",
            ApiError::Internal(_) => "internal",
            ApiError::Unavailable(_) => "store_unavailable",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut lines = None;
        let mut login_url = None;
        let mut outcome = None;
        let mut params = None;
        let (status, code, message) = match self {
            ApiError::Unauthenticated => (
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "credentials are required".to_string(),
            ),
            ApiError::InvalidToken => (
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "the presented credentials were not accepted".to_string(),
            ),
            ApiError::Forbidden(p) => (
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("this needs the permission {}", p.as_str()),
            ),
            ApiError::Banned => (
                StatusCode::FORBIDDEN,
                "banned",
                "too many refused credentials; try again later".to_string(),
            ),
            ApiError::CrossSite => (
                StatusCode::FORBIDDEN,
                "cross_site_request",
                "a change made with the session cookie must come from gatehouse's own pages, as JSON"
                    .to_string(),
            ),
            ApiError::NotFound(what) => (
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no such {what}"),
            ),
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, "bad_request", m),
            ApiError::InvalidImport(bad) => {
                let n = bad.len();
                lines = Some(
                    bad.into_iter()
                        .map(|(line, message)| LineError { line, message })
                        .collect(),
                );
                (
                    StatusCode::BAD_REQUEST,
                    "invalid_import",
                    format!("{n} line(s) are not valid; nothing was imported"),
                )
            }
            ApiError::StepUp {
                message,
                login_url: url,
            } => {
                login_url = url;
                (StatusCode::FORBIDDEN, "step_up_required", message.to_string())
            }
            ApiError::ConfirmationRequired(phrase) => (
                StatusCode::BAD_REQUEST,
                "confirmation_required",
                format!("this action needs {{\"confirm\":\"{phrase}\"}} in the body; nothing was done"),
            ),
            ApiError::Busy(what) => (
                StatusCode::CONFLICT,
                "busy",
                format!("an operation on {what} is running; try again when it ends"),
            ),
            ApiError::ActionFailed(o) => {
                outcome = Some(*o);
                (
                    StatusCode::BAD_GATEWAY,
                    "action_failed",
                    "the action ran and failed; see outcome".to_string(),
                )
            }
            ApiError::InvalidParams(bad) => {
                let n = bad.len();
                params = Some(
                    bad.into_iter()
                        .map(|(name, message)| ParamError { name, message })
                        .collect(),
                );
                (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_params",
                    format!("{n} parameter(s) are not valid; nothing was run"),
                )
            }
            ApiError::TooManySockets => (
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_sockets",
                "too many admin sockets are open; close one first".to_string(),
            ),
            ApiError::Unavailable(detail) => {
                tracing::warn!(error = %detail, "the store does not answer; change refused");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the store does not answer; nothing was changed, try again shortly".to_string(),
                )
            }
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "companion API failure");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; see the server log".to_string(),
                )
            }
        };
        let mut body = ErrorBody::new(code, message);
        body.error.lines = lines;
        body.error.login_url = login_url;
        body.error.outcome = outcome;
        body.error.params = params;
        let mut resp = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"gatehouse\""),
            );
        }
        resp
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        if e.is_unavailable() {
            ApiError::Unavailable(e.to_string())
        } else {
            ApiError::Internal(e.to_string())
        }
    }
}

/// The one mapping from the services' errors to the API's.
impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::Forbidden(p) => ApiError::Forbidden(p),
            DomainError::NotFound(what) => ApiError::NotFound(what),
            DomainError::Invalid(m) => ApiError::BadRequest(m),
            DomainError::InvalidLines(l) => ApiError::InvalidImport(l),
            DomainError::StepUpRequired(message) => ApiError::StepUp {
                message,
                login_url: None,
            },
            DomainError::ConfirmationRequired(p) => ApiError::ConfirmationRequired(p),
            DomainError::Busy(w) => ApiError::Busy(w),
            DomainError::ActionFailed(o) => ApiError::ActionFailed(o),
            DomainError::InvalidParams(p) => ApiError::InvalidParams(p),
            DomainError::Internal(m) => ApiError::Internal(m),
            DomainError::Unavailable(m) => ApiError::Unavailable(m),
        }
    }
}

impl Coded for ApiError {
    fn code(&self) -> &'static str {
        ApiError::code(self)
    }
}

/// Every JSON error the product answers, in the one shape ([`ErrorBody`]).
pub fn error_response(status: StatusCode, code: &str, message: String) -> Response {
    error_with_lines(status, code, message, None)
}

/// [`error_response`] with the bad lines of an import.
pub fn error_with_lines(
    status: StatusCode,
    code: &str,
    message: String,
    lines: Option<Vec<LineError>>,
) -> Response {
    let mut body = ErrorBody::new(code, message);
    body.error.lines = lines;
    (status, Json(body)).into_response()
}

/// Query parameters whose errors (unknown or malformed) answer in the API's
/// JSON error shape, not axum's plain text.
#[derive(Debug, Clone)]
pub struct ApiQuery<T>(pub T);

impl<T: serde::de::DeserializeOwned + Send> axum::extract::FromRequestParts<AppState>
    for ApiQuery<T>
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _st: &AppState,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| ApiQuery(q.0))
            .map_err(|e| ApiError::BadRequest(format!("query: {}", e.body_text())))
    }
}

/// What the API needs to know about a request to authenticate it: method,
/// headers and the client address (through trusted proxies, as the decision
/// endpoints read it).
#[derive(Debug, Clone)]
pub struct Ask {
    pub method: Method,
    pub headers: HeaderMap,
    pub client: IpAddr,
}

impl axum::extract::FromRequestParts<AppState> for Ask {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        st: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .ok_or_else(|| ApiError::Internal("no peer address".into()))?;
        Ok(Ask {
            method: parts.method.clone(),
            client: request_client(st, peer, &parts.headers),
            headers: parts.headers.clone(),
        })
    }
}

/// The client address of a request to gatehouse's own endpoints: the
/// right-most untrusted `X-Forwarded-For` hop when the peer is a trusted proxy.
pub fn request_client(st: &AppState, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    let xff = headers
        .get_all(header::HeaderName::from_static("x-forwarded-for"))
        .iter()
        .filter_map(|v| v.to_str().ok());
    client_address(peer, &st.trusted_proxies, xff).unwrap_or(peer.to_canonical())
}

/// The caller, identified exactly as the decision endpoints identify them (same
/// parsing, validation and revocations): `Authorization: Bearer`, else the
/// session cookie. A state-changing request authenticated by cookie must come
/// from gatehouse's own origin (see [`same_origin`]). Banned addresses and
/// users are refused; refused credentials count towards a ban.
pub async fn caller(st: &AppState, ask: &Ask) -> Result<Arc<Identity>, ApiError> {
    let now = st.clock.now();
    if st.regulation.ip_banned(ask.client, now) {
        return Err(ApiError::Banned);
    }
    let headers = &ask.headers;
    let bearer = bearer(headers);
    let by_cookie = bearer.is_none();
    let result = match bearer {
        Some(Err(())) => Err(("malformed_authorization", ApiError::InvalidToken)),
        Some(Ok(token)) => authenticate(st, token)
            .await
            .map_err(|r| (r, ApiError::InvalidToken)),
        None => match cookie_value(headers, &st.config.session.cookie_name) {
            Err(_) => Err(("duplicate_cookie", ApiError::InvalidToken)),
            Ok(None) => return Err(ApiError::Unauthenticated),
            Ok(Some(v)) => session_subject(st, v, now).map_err(|r| (r, ApiError::InvalidToken)),
        },
    };
    let id = match result {
        Ok(id) => id,
        Err((reason, e)) => {
            if counts_as_failure(reason) {
                st.services
                    .bans
                    .note_failure(Some(ask.client), None, reason);
            }
            return Err(e);
        }
    };
    if st.regulation.user_banned(&id.user, now) {
        return Err(ApiError::Banned);
    }
    if by_cookie && !matches!(ask.method, Method::GET | Method::HEAD | Method::OPTIONS) {
        same_origin(st, &ask.method, headers)?;
    }
    Ok(id)
}

/// Cross-site request protection for cookie-authenticated changes: the browser
/// must say the request comes from gatehouse's own origin (`Sec-Fetch-Site:
/// same-origin`, or an `Origin` equal to `server.public_url`'s), and a request
/// with a body must be JSON, which a cross-site form cannot send.
fn same_origin(st: &AppState, method: &Method, h: &HeaderMap) -> Result<(), ApiError> {
    let text = |n: header::HeaderName| h.get(n).and_then(|v| v.to_str().ok());
    let own = st.config.server.public_url.origin().ascii_serialization();
    let site = text(header::HeaderName::from_static("sec-fetch-site"));
    if site.is_some_and(|s| s != "same-origin") {
        return Err(ApiError::CrossSite);
    }
    let site_ok = site.is_some();
    let origin = text(header::ORIGIN);
    let origin_ok = origin == Some(own.as_str());
    if origin.is_some() && !origin_ok {
        return Err(ApiError::CrossSite);
    }
    if !(site_ok || origin_ok) {
        return Err(ApiError::CrossSite);
    }
    if matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
        let json = text(header::CONTENT_TYPE).is_some_and(|c| {
            c.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        });
        if !json {
            return Err(ApiError::CrossSite);
        }
    }
    Ok(())
}

/// The caller, authenticated and authorised for `need`: the capability that
/// admin service methods take (see [`crate::service::access`]).
pub async fn admin(st: &AppState, ask: &Ask, need: Permission) -> Result<Admin, ApiError> {
    let id = caller(st, ask).await?;
    Ok(access::admit(&st.config, id, ask.client, need)?)
}

/// `GET /api/v1/me` — the caller as the decision engine sees it.
/// **Permissions**: any authenticated caller.
#[utoipa::path(get, path = "/api/v1/me", tag = "identity", responses((status = 200, description = "the caller's identity"), (status = 400, description = "invalid input", body = ErrorBody), (status = 401, description = "no or refused credentials", body = ErrorBody), (status = 403, description = "not an admin, banned, or a cross-site request", body = ErrorBody)), security(("bearer" = []), ("session_cookie" = [])))]
pub async fn me(State(st): State<AppState>, ask: Ask) -> Result<Json<serde_json::Value>, ApiError> {
    let id = caller(&st, &ask).await?;
    let grants = access::grants_of(&st.config, &id);
    Ok(Json(json!({
        "user": id.user,
        "sub": id.sub,
        "issuer": id.issuer,
        "groups": id.groups,
        "email": id.email,
        "name": id.name,
        "acr": id.acr,
        "amr": id.amr,
        "sid": id.sid,
        "expires_at": id.exp,
        "admin": grants.is_all(),
        "permissions": grants.names(),
    })))
}

/// A known path with a method it does not take: 405 in the API's error shape.
pub async fn method_not_allowed() -> Response {
    let mut r = error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this path does not take that method".into(),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    r
}

/// Unknown `/api/v1` paths and methods answer in the API's error shape.
pub async fn not_found() -> ApiError {
    ApiError::NotFound("endpoint")
}

//! Services: the domain operations under the HTTP adapters. They take plain
//! values and an [`access::Admin`] capability where an operation is dangerous,
//! and return [`DomainError`]; `src/http/` maps that to a status and the one
//! JSON error body. Nothing here names axum, hyper or `crate::http`.
//!
//! - [`access`]: permissions and the admin capability only authorisation makes.
//! - [`audit`]: intent → change → outcome around an admin change.
//! - [`sessions`]: list and end sessions (store, live table, revocations).
//! - [`login`]: the OIDC token checks of a login and the background refresh.

pub mod access;
pub mod audit;
pub mod login;
pub mod sessions;

/// Why a domain operation did not happen. One `From<DomainError> for ApiError`
/// (in `http::api`) turns it into a status and the JSON error body.
#[derive(Debug)]
pub enum DomainError {
    /// The capability does not carry this permission.
    Forbidden(access::Permission),
    NotFound(&'static str),
    /// Bad input; the message says what and how to fix it.
    Invalid(String),
    /// Details go to the log once; callers get a generic message.
    Internal(String),
}

impl DomainError {
    /// The stable error code (the JSON body's `code`, and audit outcomes' `error`).
    pub fn code(&self) -> &'static str {
        match self {
            DomainError::Forbidden(_) => "forbidden",
            DomainError::NotFound(_) => "not_found",
            DomainError::Invalid(_) => "bad_request",
            DomainError::Internal(_) => "internal",
        }
    }
}

impl std::fmt::Display for DomainError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DomainError::Forbidden(p) => write!(f, "this needs the permission {}", p.as_str()),
            DomainError::NotFound(what) => write!(f, "no such {what}"),
            DomainError::Invalid(m) | DomainError::Internal(m) => f.write_str(m),
        }
    }
}

impl From<crate::store::StoreError> for DomainError {
    fn from(e: crate::store::StoreError) -> Self {
        DomainError::Internal(e.to_string())
    }
}

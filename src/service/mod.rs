//! Services: the domain operations under the HTTP adapters. They take plain
//! values and an [`access::Admin`] capability where an operation is dangerous,
//! and return [`DomainError`]; `src/http/` maps that to a status and the one
//! JSON error body. Nothing here names axum, hyper or `crate::http`.
//!
//! - [`access`]: permissions and the admin capability only authorisation makes.
//! - [`audit`]: intent → change → outcome around an admin change.
//! - [`sessions`]: list and end sessions (store, live table, revocations).
//! - [`login`]: the OIDC token checks of a login and the background refresh.
//! - [`allowlist`], [`bans`], [`usage`]: the runtime allowlist, bans and
//!   brute-force regulation, usage reports; [`audit`] also pages and verifies
//!   the chain.
//! - [`reload`]: the configuration reload; [`jobs`]: the background round;
//!   [`status`]: the health of what gatehouse depends on.
//!
//! Each service holds the handles it works on (the store, the clock, the audit
//! log, the snapshots the decision path reads) and nothing else; [`Services`]
//! is the set the HTTP adapters and the background jobs call. None of them
//! knows `crate::app`.

pub mod access;
pub mod actions;
pub mod allowlist;
pub mod audit;
pub mod bans;
pub mod control;
pub mod jobs;
pub mod login;
pub mod notify;
pub mod power;
pub mod reload;
pub mod replicas;
pub mod retention;
pub mod sessions;
pub mod status;
pub mod usage;

/// Every service, built once at start (see `app::build_state`).
#[derive(Debug, Clone)]
pub struct Services {
    pub sessions: sessions::Sessions,
    pub allowlist: allowlist::Allowlist,
    pub bans: bans::Bans,
    pub audit: audit::Audit,
    pub usage: usage::UsageReports,
    pub status: status::Status,
    pub login: login::Login,
    pub reload: reload::Reload,
    pub control: control::Control,
    pub power: power::Power,
    pub actions: actions::Actions,
    pub notify: notify::Notifier,
    pub replicas: replicas::Replicas,
    pub retention: retention::Retention,
}

/// Why a domain operation did not happen. One `From<DomainError> for ApiError`
/// (in `http::api`) turns it into a status and the JSON error body.
#[derive(Debug)]
pub enum DomainError {
    /// The capability does not carry this permission.
    Forbidden(access::Permission),
    NotFound(&'static str),
    /// Bad input; the message says what and how to fix it.
    Invalid(String),
    /// Bad lines of a batch (an import), each numbered; nothing was changed.
    InvalidLines(Vec<(usize, String)>),
    /// A second factor, or a more recent authentication, is needed.
    StepUpRequired(&'static str),
    /// The request must carry this exact confirmation phrase.
    ConfirmationRequired(&'static str),
    /// An operation on this service or machine is running.
    Busy(String),
    /// Parameters of an action that are not acceptable, each named.
    InvalidParams(Vec<(String, String)>),
    /// The backend ran and failed; the outcome (each step) is attached.
    ActionFailed(Box<serde_json::Value>),
    /// The store does not answer: nothing was changed; try again later.
    Unavailable(String),
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
            DomainError::InvalidLines(_) => "invalid_import",
            DomainError::StepUpRequired(_) => "step_up_required",
            DomainError::ConfirmationRequired(_) => "confirmation_required",
            DomainError::Busy(_) => "busy",
            DomainError::ActionFailed(_) => "action_failed",
            DomainError::InvalidParams(_) => "invalid_params",
            DomainError::Unavailable(_) => "store_unavailable",
            DomainError::Internal(_) => "internal",
        }
    }
}

impl std::fmt::Display for DomainError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DomainError::Forbidden(p) => write!(f, "this needs the permission {}", p.as_str()),
            DomainError::NotFound(what) => write!(f, "no such {what}"),
            DomainError::Invalid(m) | DomainError::Internal(m) | DomainError::Unavailable(m) => {
                f.write_str(m)
            }
            DomainError::InvalidLines(l) => write!(f, "{} line(s) are not valid", l.len()),
            DomainError::StepUpRequired(m) => f.write_str(m),
            DomainError::ConfirmationRequired(phrase) => {
                write!(
                    f,
                    "this action needs {{\"confirm\":\"{phrase}\"}} in the body"
                )
            }
            DomainError::Busy(what) => write!(
                f,
                "an operation on {what} is running; try again when it ends"
            ),
            DomainError::ActionFailed(_) => f.write_str("the action failed; see each step"),
            DomainError::InvalidParams(p) => write!(f, "{} parameter(s) are not valid", p.len()),
        }
    }
}

impl From<crate::store::StoreError> for DomainError {
    fn from(e: crate::store::StoreError) -> Self {
        if e.is_unavailable() {
            DomainError::Unavailable(e.to_string())
        } else {
            DomainError::Internal(e.to_string())
        }
    }
}

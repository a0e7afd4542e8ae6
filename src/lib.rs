//! gatehouse: a ForwardAuth sidecar. Reverse proxies ask it, for every request,
//! who is this and may they pass.
//!
//! - [`config`]: typed configuration, validated all at once.
//! - [`decision`]: the pure verdict — target canonicalisation, rules, `decide()`.
//! - [`identity`]: bearer-token validation, JWKS, the local issuer.
//! - [`http`]: axum adapters — the decision endpoints, health and metrics.
//! - [`app`]: application state, the router, serving and shutdown.

pub mod app;
pub mod audit;
pub mod clock;
pub mod config;
pub mod decision;
pub mod http;
pub mod identity;
pub mod metrics;
pub mod store;
pub mod usage;

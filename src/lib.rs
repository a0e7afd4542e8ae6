//! gatehouse: a ForwardAuth sidecar. Reverse proxies ask it, for every request,
//! who is this and may they pass.
//!
//! - [`config`]: typed configuration, validated all at once.
//! - [`decision`]: the pure verdict — target canonicalisation, rules, `decide()`.
//! - [`identity`]: bearer-token validation, JWKS, the local issuer.
//! - [`service`]: domain operations under the adapters; admin capabilities.
//! - [`http`]: axum/hyper adapters — the decision endpoints, login, the companion
//!   API, health and metrics, the router and the accept loop.
//! - [`app`]: application state, background jobs, shutdown.

pub mod app;
pub mod audit;
pub mod clock;
pub mod config;
pub mod control;
pub mod crypto;
pub mod decision;
pub mod http;
pub mod identity;
pub mod live;
pub mod metrics;
pub mod permission;
pub mod service;
pub mod snapshot;
pub mod store;
pub mod usage;

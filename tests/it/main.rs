//! The one integration-test crate: every black-box test is a module here, so the
//! whole library (aws-lc, sqlx) is linked once, not once per file. Each module
//! owns its data and starts what it needs; `common` is the shared harness.

mod common;

mod actions;
mod allowlist;
mod architecture;
mod audit;
mod cli;
mod clock;
mod control;
mod debian;
mod hostile;
mod hostile_idp;
mod idp_tokens;
mod login;
mod monitoring;
mod notify;
mod openapi;
mod operator_kit;
mod power;
mod proxies;
mod regulation;
mod replicas;
mod sessions_api;
mod store;
mod tls;
mod ui;
mod wire;
mod ws;

//! axum adapters only: each handler translates HTTP to library calls and back.

pub mod api;
pub mod authz;
pub mod head;
pub mod login;
pub mod ops;
pub mod server;
pub mod tls;
pub mod ui;
pub mod wire;
pub mod ws;

//! The tamper-evident audit log: [`chain`] is the pure hashing and verification;
//! [`log`] appends entries through the store (one linear chain, also across
//! processes), mirrors them to a JSON-lines file and writes signed checkpoints
//! to a file, syslog and a webhook.

pub mod chain;
pub mod log;
pub mod mirror;

pub use chain::{Break, Checkpoint, Entry, NewEntry, Report};

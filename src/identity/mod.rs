//! Who is asking: bearer JWTs (remote issuers and the local signing key) turned
//! into a [`Subject`](crate::decision::Subject). Any error means "not identified".

pub mod claims;
pub mod jwt;
pub mod keys;
pub mod local;
pub mod revocation;

pub use jwt::{IssuerHandle, TokenError, TokenValidator};
pub use local::{LocalSigner, MintRequest};

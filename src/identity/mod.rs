//! Who is asking: bearer JWTs (remote issuers and the local signing key) turned
//! into a [`Subject`](crate::decision::Subject). Any error means "not identified".

pub mod claims;
pub mod digest_memo;
pub mod jwt;
pub mod keys;
pub mod local;
pub mod oidc;
pub mod principals;
pub mod regulation;
pub mod revocation;
pub mod seal;
pub mod session;
pub mod token_cache;

pub use jwt::{IssuerHandle, TokenError, TokenKind, TokenValidator};
pub use local::{LocalSigner, MintRequest};

//! The OAuth 2 protocol engine: the token endpoint and its grants, client
//! authentication, and the error catalog of RFC 6749 section 5.2. One file per grant;
//! nothing here renders HTML.

pub mod access_token;
pub mod authorize;
pub mod client_auth;
pub mod client_credentials;
pub mod code;
pub mod error;
pub mod introspection;
pub mod issue;
pub mod pkce;
pub mod redirect;
pub mod refresh;
pub mod rfc7523;
pub mod token;

pub use error::OAuthError;

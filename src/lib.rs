//! gatehouse: an OpenID Connect identity provider with hierarchical role-based
//! access control built in.
//!
//! The layers, from the outside in (dependencies point down this list):
//!
//! - [`cli`]: the command line (`serve`, `bootstrap`, `keys`, `migrate`); `main.rs` only
//!   calls [`cli::run`].
//! - [`server`]: starts a node from a [`config::Config`]: opens the stores, loads the
//!   key ring, keeps the in-memory view current from the change sequence, serves HTTP
//!   and shuts down gracefully.
//! - [`http`]: the router ([`http::app`]), request ids, metrics and access logs,
//!   health and readiness probes.
//! - [`admin`]: the admin API under `/v1`: bearer tokens for the admin API, one
//!   permission per route, RFC 9457 problems; the operations are [`access`]'s.
//! - [`ui`]: the browser pages (login, consent, the authorization endpoint) rendered
//!   from `templates/`, sessions and CSRF tokens.
//! - [`oidc`]: discovery, the JWKS, ID tokens, userinfo and logout.
//! - [`oauth2`]: the protocol engine: the token endpoint and its grants, client
//!   authentication, introspection and revocation, PKCE and redirect checks.
//! - [`access`]: IAM operations (policies, group members, principal lifecycle):
//!   permission, granting rule and last-owner rule checked against the evaluator, then
//!   one audited transaction.
//! - [`bootstrap`]: the first organization, its owner, the admin client and an optional
//!   service account, written in one transaction.
//! - [`crypto`]: the key-encryption key, the signing key ring, JWT signing
//!   (aws-lc-rs, parsed keys held in memory) and verification (jsonwebtoken),
//!   password hashing and client secrets.
//! - [`iam`]: the IAM model, pure: names and reach, permissions, role catalogs, the
//!   evaluator, the `roles` claim, role migration.
//! - [`store`]: the durable store (SQLite or PostgreSQL through one set of queries and
//!   migrations), the change sequence and the audit log.
//! - [`ephemeral`]: short-lived state with time-to-live (in memory or Redis) and change
//!   notices.
//! - [`mail`]: outgoing mail over SMTP, or into an outbox directory.
//! - [`config`]: layered configuration (defaults, TOML file, `GATEHOUSE_*` variables).

pub mod access;
pub mod admin;
pub mod bootstrap;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod ephemeral;
pub mod federation;
pub mod http;
pub mod iam;
pub mod identity;
pub mod mail;
pub mod oauth2;
pub mod oidc;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod ui;
pub mod verify;

/// Milliseconds since the Unix epoch, for ordering events within one second.
pub fn now_millis() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
        .unwrap_or(i64::MAX)
}

/// Seconds since the Unix epoch, the unit every stored timestamp uses.
pub fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

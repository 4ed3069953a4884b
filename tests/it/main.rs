#![allow(unreachable_pub)]
//! gatehouse's integration tests: one binary, one module per feature. Each test
//! starts what it needs (a server on a free port, a temporary SQLite file, a fresh
//! PostgreSQL schema); PostgreSQL and Redis suites run when
//! `GATEHOUSE_TEST_DATABASE_URL` and `GATEHOUSE_TEST_REDIS_URL` are set.

mod account_mail;
mod admin_api;
mod bootstrap_cli;
mod client_credentials;
mod discovery;
mod ephemeral_contract;
mod evaluator_sync;
mod federation;
mod iam_ops;
mod keys;
mod lifecycle;
mod oidc_flow;
mod policies;
mod readiness;
mod roles_migrate;
mod signup_invite;
mod store_contract;
mod support;
mod two_nodes;
mod verify_kit;
mod verify_kit_attacks;

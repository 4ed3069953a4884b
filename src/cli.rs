//! The command line. Every command reads the same configuration (file and
//! `GATEHOUSE_*` variables), so `bootstrap` and `serve` given the same environment act
//! on the same instance. Commands that change data print one JSON object on standard
//! output; logs and errors go to standard error.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde_json::json;

use crate::config::{Config, SigningAlg};
use crate::crypto::keyring::{self, KeyRing};
use crate::server::{self, StartError, sync};

/// gatehouse: an OpenID Connect identity provider with hierarchical RBAC.
#[derive(Debug, Parser)]
#[command(name = "gatehouse", version, about)]
pub struct Cli {
    /// TOML configuration file (also `GATEHOUSE_CONFIG`).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve,
    /// Create the first organization, its owner and the admin client (idempotent).
    /// The owner's password comes from GATEHOUSE_BOOTSTRAP_PASSWORD or --owner-password-file.
    Bootstrap {
        /// Slug of the organization.
        #[arg(long)]
        org: String,
        /// Email address of its owner.
        #[arg(long)]
        owner_email: String,
        /// File holding the owner's password (first line).
        #[arg(long)]
        owner_password_file: Option<PathBuf>,
        /// Also create a service account with this slug that owns the organization.
        #[arg(long)]
        service_account: Option<String>,
    },
    /// Manage signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Apply database migrations.
    Migrate,
    /// Role catalog operations.
    Roles {
        #[command(subcommand)]
        command: RolesCommand,
    },
    /// Token operations for operators.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Verify an access token against this instance's keys; with --permission and
    /// --resource, decide it offline from the token's roles claim as a resource
    /// server would.
    Verify {
        /// The token.
        jwt: String,
        /// The audience to require (default: the admin API, <issuer>/v1).
        #[arg(long)]
        audience: Option<String>,
        /// A permission to decide.
        #[arg(long, requires = "resource")]
        permission: Option<String>,
        /// The resource to decide it on.
        #[arg(long, requires = "permission")]
        resource: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum RolesCommand {
    /// Rewrite bindings of deprecated roles to their replacements. Without --apply it
    /// only lists the plan, every widening of access included.
    Migrate {
        /// Apply the plan.
        #[arg(long)]
        apply: bool,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Add a new signing key; it is published now and signs after the JWKS cache lifetime.
    Rotate {
        /// Algorithm of the new key (default: the configured one).
        #[arg(long)]
        alg: Option<String>,
    },
    /// Revoke a key: it disappears from the JWKS at once.
    Revoke {
        /// The key id.
        kid: String,
    },
    /// List stored keys and their lifecycle times.
    List,
}

/// Runs the command line; the process exit code.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gatehouse: {e}");
            return ExitCode::from(2);
        }
    };
    let _guard = crate::telemetry::init_logging(&config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("gatehouse: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve => server::run(config).await,
            Command::Bootstrap {
                org,
                owner_email,
                owner_password_file,
                service_account,
            } => {
                bootstrap(
                    config,
                    org,
                    owner_email,
                    owner_password_file,
                    service_account,
                )
                .await
            }
            Command::Keys { command } => keys(config, command).await,
            Command::Roles {
                command: RolesCommand::Migrate { apply },
            } => roles_migrate(config, apply).await,
            Command::Token {
                command:
                    TokenCommand::Verify {
                        jwt,
                        audience,
                        permission,
                        resource,
                    },
            } => token_verify(config, jwt, audience, permission.zip(resource)).await,
            Command::Migrate => {
                server::open_store(&config).await?;
                print(json!({ "migrated": true }));
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gatehouse: {e}");
            ExitCode::FAILURE
        }
    }
}

fn print(value: serde_json::Value) {
    println!("{value}");
}

fn owner_password(file: Option<PathBuf>) -> Result<String, StartError> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(&path).map_err(|e| {
            StartError(format!(
                "--owner-password-file: cannot read {}: {e}",
                path.display()
            ))
        })?;
        return Ok(text.lines().next().unwrap_or("").to_owned());
    }
    std::env::var("GATEHOUSE_BOOTSTRAP_PASSWORD").map_err(|_| {
        StartError(
            "GATEHOUSE_BOOTSTRAP_PASSWORD: set it or pass --owner-password-file (never on the command line)"
                .into(),
        )
    })
}

async fn bootstrap(
    config: Config,
    org: String,
    owner_email: String,
    owner_password_file: Option<PathBuf>,
    service_account: Option<String>,
) -> Result<(), StartError> {
    let owner_password = owner_password(owner_password_file)?;
    let catalog = server::open_catalog(&config)?;
    let store = server::open_store(&config).await?;
    let ephemeral = server::open_ephemeral(&config).await?;
    let (kek, _) = server::open_keys(&config, &store).await?;
    let request = crate::bootstrap::Request {
        org,
        owner_email,
        owner_password,
        service_account,
    };
    let (out, seq) = crate::bootstrap::run(&store, &kek, &config.issuer(), &catalog, request)
        .await
        .map_err(|e| StartError(e.to_string()))?;
    if let Some(seq) = seq {
        sync::announce(&ephemeral, seq).await;
    }
    print(out);
    Ok(())
}

async fn keys(config: Config, command: KeysCommand) -> Result<(), StartError> {
    let store = server::open_store(&config).await?;
    let ephemeral = server::open_ephemeral(&config).await?;
    let (kek, ring) = server::open_keys(&config, &store).await?;
    let now = crate::now_unix();
    let db = |e: crate::store::StoreError| StartError(format!("GATEHOUSE_DATABASE_URL: {e}"));
    match command {
        KeysCommand::Rotate { alg } => {
            let alg = match alg {
                Some(a) => a.parse::<SigningAlg>().map_err(|_| {
                    StartError(format!(
                        "--alg: expected one of RS256, ES256, EdDSA, got {a:?}"
                    ))
                })?,
                None => config.signing_alg,
            };
            // Whole seconds: one more, so that the key signs no sooner than a full
            // cache lifetime after it is published, wherever in the second this runs.
            let activates_at = now + secs(config.jwks_cache_secs) + 1;
            let row = keyring::new_row(alg, &kek, now, activates_at).map_err(StartError)?;
            // Tokens signed just before retirement stay verifiable until they expire,
            // plus a minute of clock leeway.
            let publish_after = secs(config.max_signed_token_ttl_secs()) + 60;
            store
                .rotate_signing_key(&row, publish_after, "system:keys")
                .await
                .map_err(db)?;
            let _ = store.purge_signing_keys(now - 86_400).await;
            sync::announce(&ephemeral, store.current_seq().await.map_err(db)?).await;
            print(
                json!({ "kid": row.kid, "alg": row.alg, "published_at": now, "activates_at": activates_at }),
            );
        }
        KeysCommand::Revoke { kid } => {
            let replacement = needs_replacement(&ring, &kid, now)
                .then(|| keyring::new_row(config.signing_alg, &kek, now, now))
                .transpose()
                .map_err(StartError)?;
            let found = store
                .revoke_signing_key(&kid, replacement.as_ref(), "system:keys")
                .await
                .map_err(db)?;
            if !found {
                return Err(StartError(format!(
                    "no unrevoked signing key has kid {kid:?}"
                )));
            }
            sync::announce(&ephemeral, store.current_seq().await.map_err(db)?).await;
            print(json!({ "revoked": kid, "replacement": replacement.map(|r| r.kid) }));
        }
        KeysCommand::List => {
            let rows = store.signing_keys().await.map_err(db)?;
            let list: Vec<_> = rows
                .iter()
                .map(|r| {
                    let state = if r.revoked_at.is_some() {
                        "revoked"
                    } else if r.expires_at.is_some_and(|e| e <= now) {
                        "expired"
                    } else if ring.signer(now).is_some_and(|s| s.kid == r.kid) {
                        "signing"
                    } else if r.activates_at > now {
                        "pending"
                    } else {
                        "published"
                    };
                    json!({
                        "kid": r.kid, "alg": r.alg, "state": state, "created_at": r.created_at,
                        "activates_at": r.activates_at, "retires_at": r.retires_at,
                        "expires_at": r.expires_at, "revoked_at": r.revoked_at,
                    })
                })
                .collect();
            print(json!({ "keys": list }));
        }
    }
    Ok(())
}

/// Whether revoking `kid` would leave no key able to sign at `now`; then a
/// replacement must sign at once (a compromised key cannot wait for caches).
fn needs_replacement(ring: &KeyRing, kid: &str, now: i64) -> bool {
    !ring
        .published(now)
        .any(|k| k.kid != kid && k.activates_at <= now)
}

fn secs(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX / 4)
}

async fn roles_migrate(config: Config, apply: bool) -> Result<(), StartError> {
    let catalog = server::open_catalog(&config)?;
    let store = server::open_store(&config).await?;
    let db = |e: crate::store::StoreError| StartError(format!("GATEHOUSE_DATABASE_URL: {e}"));
    let data = store.load_iam().await.map_err(db)?;
    let roles = crate::iam::Roles::resolve(catalog, &data.permissions, &data.custom_roles)
        .map_err(|e| StartError(format!("GATEHOUSE_CATALOG: {e}")))?;
    let steps = crate::iam::migrate::plan(&roles, &data.bindings);
    let widenings = steps.iter().filter(|s| s.widens()).count();
    if apply && !steps.is_empty() {
        let seq = store
            .apply_role_migration(&steps, "system:roles-migrate")
            .await
            .map_err(db)?;
        let ephemeral = server::open_ephemeral(&config).await?;
        sync::announce(&ephemeral, seq).await;
    }
    print(json!({
        "applied": apply && !steps.is_empty(),
        "steps": steps.len(),
        "widenings": widenings,
        "plan": steps.iter().map(|s| json!({
            "binding": s.binding,
            "principal": format!("{}:{}", s.principal.kind.as_str(), s.principal.id),
            "scope": s.scope,
            "from": s.from,
            "to": s.to,
            "widens": s.widens(),
            "widens_reach": s.widens_reach,
            "added_permissions": s.added_permissions,
            "duplicate": s.duplicate,
        })).collect::<Vec<_>>(),
    }));
    Ok(())
}

async fn token_verify(
    config: Config,
    token: String,
    audience: Option<String>,
    decide: Option<(String, String)>,
) -> Result<(), StartError> {
    let catalog = server::open_catalog(&config)?;
    let store = server::open_store(&config).await?;
    let (_, ring) = server::open_keys(&config, &store).await?;
    let db = |e: crate::store::StoreError| StartError(format!("GATEHOUSE_DATABASE_URL: {e}"));
    let data = store.load_iam().await.map_err(db)?;
    let roles = crate::iam::Roles::resolve(catalog, &data.permissions, &data.custom_roles)
        .map_err(|e| StartError(format!("GATEHOUSE_CATALOG: {e}")))?;
    let issuer = config.issuer();
    let audience = audience.unwrap_or_else(|| format!("{issuer}/v1"));
    let header =
        jsonwebtoken::decode_header(&token).map_err(|e| StartError(format!("not a JWT: {e}")))?;
    if header.typ.as_deref() != Some("at+jwt") {
        return Err(StartError("not an access token (typ is not at+jwt)".into()));
    }
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.set_issuer(&[issuer.as_str()]);
    v.set_audience(&[audience.as_str()]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    let claims: serde_json::Value =
        crate::crypto::jwt::verify(&ring, crate::now_unix(), &token, &v)
            .map_err(|e| StartError(format!("invalid token: {e}")))?;
    let mut out = json!({ "valid": true, "kid": header.kid, "claims": claims });
    if let Some((permission, resource)) = decide {
        let entries: Vec<String> = claims["roles"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let allowed = crate::iam::claim::claim_allows(&roles, &entries, &permission, &resource);
        out["decision"] =
            json!({ "permission": permission, "resource": resource, "allowed": allowed });
    }
    print(out);
    Ok(())
}

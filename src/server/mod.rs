//! Starting, running and stopping a node.
//!
//! [`open`] connects the stores (refusing to start half-configured: every failure is
//! one line naming the setting), loads or creates the signing keys and loads the IAM
//! view; [`serve`] runs the HTTP server and the change follower until shutdown, then
//! lets in-flight requests finish. `gatehouse serve` is [`run`]; tests call [`open`]
//! and [`serve`] on `127.0.0.1:0`.

pub mod events;
pub mod state;
pub mod sync;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::AtomicI64;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Config;
use crate::crypto::kek;
use crate::crypto::keyring::{self, KeyRing};
use crate::crypto::password::Passwords;
use crate::ephemeral::Ephemeral;
use crate::store::Store;
use crate::telemetry::Metrics;
pub use state::{AppState, Document, Shared, View};

/// A node that could not start, with one line naming the setting at fault.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartError(pub String);

/// Opens the durable store at `config`'s database URL and migrates it.
pub async fn open_store(config: &Config) -> Result<Store, StartError> {
    let store = Store::connect(&config.database_url(), config.database_max_connections)
        .await
        .map_err(|e| {
            StartError(format!(
                "GATEHOUSE_DATABASE_URL: cannot open the database: {e}"
            ))
        })?;
    store
        .migrate()
        .await
        .map_err(|e| StartError(format!("GATEHOUSE_DATABASE_URL: {e}")))?;
    Ok(store)
}

/// Opens short-lived state (Redis when configured).
pub async fn open_ephemeral(config: &Config) -> Result<Ephemeral, StartError> {
    Ephemeral::open(config.redis_url.as_ref().map(|s| s.0.as_str()))
        .await
        .map_err(|e| StartError(format!("GATEHOUSE_REDIS_URL: cannot connect: {e}")))
}

/// Loads the key-encryption key and the key ring, creating the instance's first
/// signing key when no usable one is stored.
pub async fn open_keys(config: &Config, store: &Store) -> Result<(kek::Kek, KeyRing), StartError> {
    let rows = store.signing_keys().await.map_err(db_error)?;
    let kek = kek::load_or_create(config, !rows.is_empty()).map_err(StartError)?;
    let now = crate::now_unix();
    let ring = KeyRing::from_rows(&rows, &kek, now).map_err(|e| StartError(e.to_string()))?;
    if ring.signer(now).is_some() {
        return Ok((kek, ring));
    }
    let row = keyring::new_row(config.signing_alg, &kek, now, now).map_err(StartError)?;
    store
        .insert_initial_key(&row, now)
        .await
        .map_err(db_error)?;
    let rows = store.signing_keys().await.map_err(db_error)?;
    let ring = KeyRing::from_rows(&rows, &kek, now).map_err(|e| StartError(e.to_string()))?;
    Ok((kek, ring))
}

fn db_error(e: crate::store::StoreError) -> StartError {
    StartError(format!("GATEHOUSE_DATABASE_URL: {e}"))
}

/// Opens everything a node needs and loads its in-memory state.
pub async fn open(config: Config) -> Result<AppState, StartError> {
    let store = open_store(&config).await?;
    let ephemeral = open_ephemeral(&config).await?;
    let (kek, ring) = open_keys(&config, &store).await?;
    let _ = store.purge_signing_keys(crate::now_unix() - 86_400).await;
    let issuer = config.issuer();
    let now = crate::now_unix();
    let catalog = open_catalog(&config)?;
    register_configured_apis(&config, &store, &catalog).await?;
    let mailer = crate::mail::Mailer::from_config(&config).map_err(StartError)?;
    let mail_from = config
        .mail_from
        .parse()
        .map_err(|_| StartError("GATEHOUSE_MAIL_FROM: not a mailbox".into()))?;
    let state = AppState::new(Shared {
        catalog,
        discovery: Document::new(&crate::oidc::discovery(&issuer, &config)),
        jwks: ArcSwap::from_pointee(Document::new(&ring.jwks(now))),
        role_catalog: ArcSwap::from_pointee(Document::new(&serde_json::Value::Null)),
        keys: ArcSwap::from_pointee(ring),
        view: ArcSwap::from_pointee(None),
        applied_seq: AtomicI64::new(0),
        upstreams: crate::federation::Upstreams::new(),
        passwords: Passwords::new(),
        pages: crate::ui::Pages::new(&config.instance_name),
        mailer,
        mail_from,
        metrics: Metrics::new(),
        events: events::Events::start(store.clone()),
        issuer,
        config,
        store,
        ephemeral,
        kek,
    });
    sync::reload(&state).await.map_err(|e| {
        if e.starts_with("GATEHOUSE_") {
            StartError(e)
        } else {
            StartError(format!("GATEHOUSE_DATABASE_URL: cannot load IAM data: {e}"))
        }
    })?;
    crate::federation::reload(&state)
        .await
        .map_err(|e| StartError(format!("federation: {e}")))?;
    Ok(state)
}

/// Registers the APIs of the configuration file (`[[apis]]`), skipping those already
/// stored as configured, so a restart writes nothing.
pub async fn register_configured_apis(
    config: &Config,
    store: &Store,
    catalog: &crate::iam::Catalog,
) -> Result<(), StartError> {
    let issuer = config.issuer();
    for (i, api) in config.apis.iter().enumerate() {
        let at = |e: String| StartError(format!("config file apis[{i}] ({}): {e}", api.identifier));
        crate::access::definitions::validate_api(
            &issuer,
            catalog,
            &api.identifier,
            &api.permissions,
        )
        .map_err(|e| at(e.to_string()))?;
        let mut wanted = api.permissions.clone();
        wanted.sort_by(|a, b| a.name.cmp(&b.name));
        if store.api(&api.identifier).await.map_err(db_error)?
            == Some((api.display_name.clone(), wanted))
        {
            continue;
        }
        let mut tx = store.begin().await.map_err(db_error)?;
        let seq = crate::store::bump_change(&mut tx, "api", &api.identifier)
            .await
            .map_err(db_error)?;
        crate::store::directory::register_api(
            &mut tx,
            &api.identifier,
            &api.display_name,
            &api.permissions,
        )
        .await
        .map_err(|e| at(e.to_string()))?;
        let names: Vec<&str> = api.permissions.iter().map(|p| p.name.as_str()).collect();
        crate::store::audit::append(
            &mut tx,
            seq,
            crate::store::audit::NewAuditEvent {
                actor: "system:config",
                action: "api.register",
                target: &api.identifier,
                scope: "*",
                before: None,
                after: Some(
                    serde_json::json!({ "identifier": api.identifier, "permissions": names }),
                ),
            },
        )
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(|e| db_error(e.into()))?;
    }
    Ok(())
}

/// The active role catalog.
pub fn open_catalog(config: &Config) -> Result<std::sync::Arc<crate::iam::Catalog>, StartError> {
    crate::iam::Catalog::named(&config.catalog)
        .map(std::sync::Arc::new)
        .map_err(|e| StartError(format!("GATEHOUSE_CATALOG: {e}")))
}

/// Serves HTTP on `listener` and follows the change sequence until `shutdown`
/// completes; then stops accepting, lets in-flight requests finish (at most the
/// configured grace period) and closes the stores.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let follower = tokio::spawn(sync::follow(state.clone(), stop_rx.clone()));
    let upstreams = tokio::spawn(crate::federation::follow(state.clone(), stop_rx.clone()));
    let app = crate::http::app(state.clone());
    let mut on_stop = stop_rx.clone();
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let _ = on_stop.wait_for(|stop| *stop).await;
    });
    let grace = Duration::from_secs(state.config.shutdown_grace_secs);
    let mut deadline = stop_rx.clone();
    let result = tokio::select! {
        result = server => result,
        _ = async move {
            let _ = deadline.wait_for(|stop| *stop).await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!("shutdown grace period over; dropping open connections");
            Ok(())
        }
    };
    follower.abort();
    upstreams.abort();
    state.events.drain(Duration::from_secs(2)).await;
    state.store.close().await;
    result
}

/// `gatehouse serve`: binds the configured address and serves until SIGTERM or
/// Ctrl-C.
pub async fn run(config: Config) -> Result<(), StartError> {
    let listen = config.listen;
    let started = std::time::Instant::now();
    let cannot_listen =
        |e: std::io::Error| StartError(format!("GATEHOUSE_LISTEN: cannot listen on {listen}: {e}"));
    // Listen first: while the stores open and the IAM data loads, /readyz answers 503.
    let socket = std::net::TcpListener::bind(listen).map_err(cannot_listen)?;
    socket.set_nonblocking(true).map_err(cannot_listen)?;
    let early =
        TcpListener::from_std(socket.try_clone().map_err(cannot_listen)?).map_err(cannot_listen)?;
    let (loaded_tx, loaded_rx) = tokio::sync::oneshot::channel::<()>();
    let starting = axum::serve(early, crate::http::health::starting_app()).with_graceful_shutdown(
        async move {
            let _ = loaded_rx.await;
        },
    );
    let loading = tokio::spawn(async move { starting.await });
    let opened = tokio::select! {
        opened = open(config) => opened,
        _ = shutdown_signal() => Err(StartError("stopped while starting".into())),
    };
    let _ = loaded_tx.send(());
    let _ = loading.await;
    let state = opened?;
    let listener = TcpListener::from_std(socket).map_err(cannot_listen)?;
    tracing::info!(
        listen = %listen,
        issuer = %state.issuer,
        database = ?state.store.kind(),
        short_lived_state = state.ephemeral.backend(),
        ready_ms = started.elapsed().as_millis() as u64,
        "gatehouse is serving"
    );
    serve(listener, state, shutdown_signal())
        .await
        .map_err(|e| StartError(format!("server error: {e}")))?;
    tracing::info!("gatehouse stopped");
    Ok(())
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested; finishing in-flight requests");
}

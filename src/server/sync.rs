//! Following the change sequence: every IAM change bumps a durable sequence number;
//! a node reloads what it holds in memory when a Redis notice arrives and also polls
//! the sequence, so a lost notice delays a change by one poll interval at most.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;

use super::state::{AppState, Document, View};
use crate::crypto::keyring::KeyRing;
use crate::ephemeral::{Ephemeral, EphemeralStore};
use crate::iam::{Catalog, Evaluator, Roles};
use crate::store::Store;

/// The notice channel for change-sequence bumps.
pub const CHANGES: &str = "changes";

/// Tells other nodes that the change sequence reached `seq` (best effort: they poll
/// anyway).
pub async fn announce(ephemeral: &Ephemeral, seq: i64) {
    if let Err(e) = ephemeral.publish(CHANGES, &seq.to_string()).await {
        tracing::debug!(error = %e, "change notice not sent; nodes will see it when they poll");
    }
}

/// Reloads keys and IAM data from the store, then records the sequence they reflect.
pub async fn reload(state: &AppState) -> Result<(), String> {
    // Read the sequence first: anything committed after it is picked up next time.
    let seq = state.store.current_seq().await.map_err(|e| e.to_string())?;
    let rows = state
        .store
        .signing_keys()
        .await
        .map_err(|e| e.to_string())?;
    let now = crate::now_unix();
    match KeyRing::from_rows(&rows, &state.kek, now) {
        Ok(ring) => {
            state
                .jwks
                .store(std::sync::Arc::new(Document::new(&ring.jwks(now))));
            state.keys.store(std::sync::Arc::new(ring));
        }
        // Keep signing with what we have; the store holds a key we cannot open.
        Err(e) => tracing::error!(error = %e, "stored signing keys changed but cannot be loaded"),
    }
    let evaluator = load_evaluator(&state.store, &state.catalog).await?;
    let published = Document::new(&evaluator.roles().published(None));
    if published.etag != state.role_catalog.load().etag {
        state.role_catalog.store(Arc::new(published));
    }
    let service_accounts = state
        .store
        .service_account_credentials()
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|c| (c.client_id.clone(), c))
        .collect();
    let clients = state
        .store
        .clients()
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|c| (c.client_id.clone(), Arc::new(c)))
        .collect();
    let apis = state
        .store
        .api_identifiers()
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .collect();
    // Two reloads may overlap (the follower, and a write that reloads at once): the
    // one that read the older sequence must not replace a newer view.
    let fresh = Arc::new(Some(View {
        seq,
        evaluator,
        service_accounts,
        clients,
        apis,
    }));
    state.view.rcu(|current| match current.as_ref() {
        Some(v) if v.seq > seq => current.clone(),
        _ => fresh.clone(),
    });
    state.applied_seq.fetch_max(seq, Ordering::AcqRel);
    Ok(())
}

/// Builds the evaluator from the store under `catalog`; a stored binding whose role
/// the catalog lacks is an error that names it.
pub async fn load_evaluator(store: &Store, catalog: &Arc<Catalog>) -> Result<Evaluator, String> {
    let data = store.load_iam().await.map_err(|e| e.to_string())?;
    let roles = Roles::resolve(catalog.clone(), &data.permissions, &data.custom_roles)
        .map_err(|e| e.to_string())?;
    Evaluator::build(
        Arc::new(roles),
        &data.principals,
        &data.memberships,
        &data.bindings,
    )
    .map_err(|e| format!("GATEHOUSE_CATALOG: catalog {:?}: {e}", catalog.name))
}

/// Runs until `stop` turns true: reloads on notices and on each poll that finds a
/// higher sequence, and refreshes the JWKS when a key's lifecycle time passes.
pub async fn follow(state: AppState, mut stop: watch::Receiver<bool>) {
    let mut notices = state.ephemeral.subscribe();
    let mut tick = tokio::time::interval(Duration::from_millis(state.config.poll_interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    let mut last_upkeep = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            notice = notices.recv() => match notice {
                Ok(n) if n.channel == CHANGES => {}
                Ok(_) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                    notices = state.ephemeral.subscribe();
                }
            },
            _ = stop.wait_for(|s| *s) => return,
        }
        match state.store.current_seq().await {
            Ok(seq) if seq > state.applied_seq() => {
                if let Err(e) = reload(&state).await {
                    tracing::warn!(error = %e, "reload after change failed; retrying");
                }
                failing = false;
            }
            Ok(_) => {
                if failing {
                    tracing::info!("store reachable again");
                }
                failing = false;
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "cannot read the change sequence");
                }
                failing = true;
            }
        }
        refresh_key_transitions(&state);
        if last_upkeep.elapsed() >= Duration::from_secs(5) {
            state.metrics.upkeep();
            last_upkeep = tokio::time::Instant::now();
        }
    }
}

/// Rebuilds the JWKS when a key became published, active or expired since it was
/// built; keys change state by time alone between reloads.
fn refresh_key_transitions(state: &AppState) {
    let now = crate::now_unix();
    let ring = state.keys.load();
    let fresh = Document::new(&ring.jwks(now));
    if fresh.etag != state.jwks.load().etag {
        state.jwks.store(std::sync::Arc::new(fresh));
    }
}

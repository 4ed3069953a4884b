//! Following the change sequence: every IAM change bumps a durable sequence number;
//! a node reloads what it holds in memory when a Redis notice arrives and also polls
//! the sequence, so a lost notice delays a change by one poll interval at most.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;

use super::state::{AppState, Document, View};
use crate::crypto::keyring::KeyRing;
use crate::ephemeral::{Ephemeral, EphemeralStore};
use crate::iam::evaluator::Delta;
use crate::iam::{Catalog, Evaluator, PrincipalRef, Roles};
use crate::store::Store;
use crate::store::directory::ServiceAccountCredentials;
use crate::store::iam::ClientRow;

/// The notice channel for change-sequence bumps.
pub const CHANGES: &str = "changes";

/// Tells other nodes that the change sequence reached `seq` (best effort: they poll
/// anyway).
pub async fn announce(ephemeral: &Ephemeral, seq: i64) {
    if let Err(e) = ephemeral.publish(CHANGES, &seq.to_string()).await {
        tracing::debug!(error = %e, "change notice not sent; nodes will see it when they poll");
    }
}

/// At most this many changes are applied as a delta; more reload everything.
const MAX_DELTA: i64 = 1_000;

/// What a run of changes touched, beyond the keys (which are always reread).
#[derive(Default)]
struct Touched {
    /// Something only a full reload covers (roles, APIs, the catalog, bootstrap).
    everything: bool,
    principals: Vec<PrincipalRef>,
    scopes: Vec<(String, bool)>,
    service_accounts: bool,
    clients: bool,
    providers: bool,
}

/// Maps the recorded changes to what they touched. Each kind names what its writers
/// change: a policy its scope's bindings; a user, service account or group itself
/// (state, memberships, bindings); a resource its bindings and those beneath it; an
/// invitation the invited person's bindings.
async fn touched(store: &Store, changes: &[(i64, String, String)]) -> Result<Touched, String> {
    let mut t = Touched::default();
    let err = |e: crate::store::StoreError| e.to_string();
    for (_, kind, target) in changes {
        match kind.as_str() {
            "policy" => t.scopes.push((target.clone(), false)),
            "resource" => {
                t.scopes.push((target.clone(), true));
                t.clients = true;
            }
            "user" => t.principals.push(PrincipalRef::user(target.clone())),
            "invitation" => {
                if let Some(u) = store.user_by_email(target).await.map_err(err)? {
                    t.principals.push(PrincipalRef::user(u.id));
                }
            }
            "service_account" => {
                t.service_accounts = true;
                // Written by name when it is created or given credentials, by id when
                // it is disabled or deleted (its name may be gone by then).
                if target.contains('/') {
                    if let Some(sa) = store.service_account_by_name(target).await.map_err(err)? {
                        t.principals.push(PrincipalRef::service_account(sa.id));
                    }
                } else {
                    t.principals
                        .push(PrincipalRef::service_account(target.clone()));
                }
            }
            "group" => {
                if let Some(g) = store.group_by_name(target).await.map_err(err)? {
                    t.principals.push(PrincipalRef::group(g.id));
                }
            }
            "client" => t.clients = true,
            "identity_provider" => t.providers = true,
            "keys" => {}
            _ => t.everything = true,
        }
    }
    t.principals.sort();
    t.principals.dedup();
    t.scopes.sort();
    t.scopes.dedup();
    Ok(t)
}

/// Reloads keys and IAM data from the store, then records the sequence they reflect.
/// A short run of changes since the view held is applied to a copy of it; anything
/// else (no view yet, many changes, a change to roles) rebuilds it from the store.
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
    let current = state.view.load_full();
    let mut providers = current.is_some();
    let fresh = match current.as_ref() {
        Some(v) if v.seq >= seq => return Ok(()),
        Some(v) if seq - v.seq <= MAX_DELTA => match apply_changes(state, v, seq).await? {
            Some((view, touched)) => {
                providers = touched;
                view
            }
            None => load_view(state, seq).await?,
        },
        _ => load_view(state, seq).await?,
    };
    // Two reloads may overlap (the follower, and a write that reloads at once): the
    // one that read the older sequence must not replace a newer view.
    let fresh = Arc::new(Some(fresh));
    state.view.rcu(|current| match current.as_ref() {
        Some(v) if v.seq > seq => current.clone(),
        _ => fresh.clone(),
    });
    state.applied_seq.fetch_max(seq, Ordering::AcqRel);
    if providers && let Err(e) = crate::federation::reload(state).await {
        tracing::warn!(error = %e, "identity providers not reloaded");
    }
    Ok(())
}

/// The view at `seq` built from `base` and the changes after it, and whether they
/// touched identity providers; `None` when they need a full reload.
async fn apply_changes(
    state: &AppState,
    base: &View,
    seq: i64,
) -> Result<Option<(View, bool)>, String> {
    let err = |e: crate::store::StoreError| e.to_string();
    let changes = state
        .store
        .changes_between(base.seq, seq, MAX_DELTA)
        .await
        .map_err(err)?;
    // Every number in between must be there, or something is unaccounted for.
    if changes.len() as i64 != seq - base.seq {
        return Ok(None);
    }
    let t = touched(&state.store, &changes).await?;
    if t.everything {
        return Ok(None);
    }
    let mut delta = Delta::default();
    for p in &t.principals {
        delta
            .principals
            .push(state.store.principal_slice(p).await.map_err(err)?);
    }
    for (scope, subtree) in &t.scopes {
        delta.scopes.push(
            state
                .store
                .scope_slice(scope, *subtree)
                .await
                .map_err(err)?,
        );
    }
    let service_accounts = match t.service_accounts {
        true => Arc::new(load_service_accounts(&state.store).await?),
        false => base.service_accounts.clone(),
    };
    let clients = match t.clients {
        true => Arc::new(load_clients(&state.store).await?),
        false => base.clients.clone(),
    };
    // Copying a large evaluator takes a while: off the request threads.
    let evaluator = base.evaluator.clone();
    let applied = tokio::task::spawn_blocking(move || evaluator.apply(&delta))
        .await
        .map_err(|e| e.to_string())?;
    let evaluator = match applied {
        Ok(ev) => ev,
        Err(e) => {
            tracing::warn!(error = %e, "change not applicable as a delta; reloading everything");
            return Ok(None);
        }
    };
    // Replaced bindings take memory until a rebuild; rebuild once they are many.
    if evaluator.dead_bindings() > evaluator.binding_count().max(100_000) {
        return Ok(None);
    }
    let view = View {
        seq,
        evaluator: Arc::new(evaluator),
        service_accounts,
        clients,
        apis: base.apis.clone(),
    };
    Ok(Some((view, t.providers)))
}

/// Everything from the store, at `seq` or later.
async fn load_view(state: &AppState, seq: i64) -> Result<View, String> {
    let evaluator = load_evaluator(&state.store, &state.catalog).await?;
    let published = Document::new(&evaluator.roles().published(None));
    if published.etag != state.role_catalog.load().etag {
        state.role_catalog.store(Arc::new(published));
    }
    let apis = state
        .store
        .api_identifiers()
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .collect();
    Ok(View {
        seq,
        evaluator: Arc::new(evaluator),
        service_accounts: Arc::new(load_service_accounts(&state.store).await?),
        clients: Arc::new(load_clients(&state.store).await?),
        apis: Arc::new(apis),
    })
}

async fn load_service_accounts(
    store: &Store,
) -> Result<HashMap<String, ServiceAccountCredentials>, String> {
    Ok(store
        .service_account_credentials()
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|c| (c.client_id.clone(), c))
        .collect())
}

async fn load_clients(store: &Store) -> Result<HashMap<String, Arc<ClientRow>>, String> {
    Ok(store
        .clients()
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|c| (c.client_id.clone(), Arc::new(c)))
        .collect())
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

//! Federation: people log in through upstream OpenID providers, with the
//! openidconnect crate as the client side (DESIGN.md section 5).
//!
//! Providers come from the configuration file (`[[federation.providers]]`) and from
//! the admin API (`/v1/identity-providers`, stored with sealed client secrets). Each
//! node discovers every provider from its issuer at start and again every
//! `federation_refresh_secs`; one that cannot be reached is retried within
//! [`RETRY`] and, until then, shows a disabled button instead of breaking the login
//! page. [`flow`] runs the browser flow, [`matching`] decides which account a
//! verified upstream identity is.

pub mod flow;
pub mod matching;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use openidconnect::core::CoreProviderMetadata;
use openidconnect::{IssuerUrl, reqwest};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::config::{GroupMapping, ProviderConfig, Secret};
use crate::crypto::kek::Kek;
use crate::server::AppState;
use crate::store::federation::ProviderRow;

/// How soon an unreachable provider is tried again.
pub const RETRY: Duration = Duration::from_secs(15);

/// How long an upstream may take to answer one request.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(10);

/// A provider's settings as stored (everything but its id and secret).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredSettings {
    /// See [`ProviderConfig`].
    pub display_name: String,
    /// See [`ProviderConfig`].
    pub issuer: String,
    /// See [`ProviderConfig`].
    pub client_id: String,
    /// See [`ProviderConfig`].
    pub scopes: Vec<String>,
    /// See [`ProviderConfig`].
    pub trust_email: bool,
    /// See [`ProviderConfig`].
    pub provision: bool,
    /// See [`ProviderConfig`].
    #[serde(default)]
    pub groups_claim: Option<String>,
    /// See [`ProviderConfig`].
    #[serde(default)]
    pub group_mappings: Vec<GroupMapping>,
}

impl StoredSettings {
    /// The stored part of `p`.
    pub fn of(p: &ProviderConfig) -> StoredSettings {
        StoredSettings {
            display_name: p.display_name.clone(),
            issuer: p.issuer.clone(),
            client_id: p.client_id.clone(),
            scopes: p.scopes.clone(),
            trust_email: p.trust_email,
            provision: p.provision,
            groups_claim: p.groups_claim.clone(),
            group_mappings: p.group_mappings.clone(),
        }
    }
}

/// The associated data a stored provider's secret is sealed with.
pub fn secret_aad(id: &str) -> String {
    format!("idp:{id}")
}

/// A stored provider, its secret opened.
pub fn from_row(row: &ProviderRow, kek: &Kek) -> Result<ProviderConfig, String> {
    let s: StoredSettings = serde_json::from_str(&row.settings)
        .map_err(|e| format!("identity provider {}: settings: {e}", row.id))?;
    let secret = kek
        .open(&secret_aad(&row.id), &row.client_secret)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            format!(
                "identity provider {}: the key-encryption key cannot open its client secret",
                row.id
            )
        })?;
    Ok(ProviderConfig {
        id: row.id.clone(),
        display_name: s.display_name,
        issuer: s.issuer,
        client_id: s.client_id,
        client_secret: Secret(secret),
        scopes: s.scopes,
        trust_email: s.trust_email,
        provision: s.provision,
        groups_claim: s.groups_claim,
        group_mappings: s.group_mappings,
    })
}

/// Where a provider is defined.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// The configuration file (read-only through the API; its mappings act with the
    /// instance's authority).
    Config,
    /// The admin API; its mappings act with the rights of whoever created it.
    Api {
        /// The creator, written like a member.
        created_by: String,
    },
}

/// One provider as this node knows it.
pub struct Upstream {
    /// Its definition.
    pub def: ProviderConfig,
    /// Where it is defined.
    pub source: Source,
    /// Its discovery document and keys, once read.
    pub metadata: Option<Arc<CoreProviderMetadata>>,
    /// Why the last discovery failed, if it did.
    pub error: Option<String>,
    /// When discovery last ran.
    pub checked: Option<Instant>,
}

impl Upstream {
    /// Whether its button works.
    pub fn available(&self) -> bool {
        self.metadata.is_some() && self.error.is_none()
    }

    fn due(&self, refresh: Duration) -> bool {
        match (self.checked, &self.error) {
            (None, _) => true,
            (Some(at), Some(_)) => at.elapsed() >= RETRY,
            (Some(at), None) => at.elapsed() >= refresh,
        }
    }
}

/// The providers this node knows, in button order (the file's first).
pub struct Upstreams {
    list: ArcSwap<Vec<Arc<Upstream>>>,
    http: reqwest::Client,
}

impl Default for Upstreams {
    fn default() -> Self {
        Upstreams::new()
    }
}

impl Upstreams {
    /// None yet.
    pub fn new() -> Upstreams {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(UPSTREAM_TIMEOUT)
            .user_agent(concat!("gatehouse/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Upstreams {
            list: ArcSwap::from_pointee(Vec::new()),
            http,
        }
    }

    /// Every provider.
    pub fn list(&self) -> Arc<Vec<Arc<Upstream>>> {
        self.list.load_full()
    }

    /// One provider by id.
    pub fn get(&self, id: &str) -> Option<Arc<Upstream>> {
        self.list.load().iter().find(|u| u.def.id == id).cloned()
    }

    /// The HTTP client for upstream requests (no redirects followed, bounded time).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    fn replace(&self, id: &str, fresh: Upstream) {
        let fresh = Arc::new(fresh);
        self.list.rcu(|list| {
            list.iter()
                .map(|u| {
                    if u.def.id == id && u.def == fresh.def {
                        fresh.clone()
                    } else {
                        u.clone()
                    }
                })
                .collect::<Vec<_>>()
        });
    }
}

/// Rebuilds the provider list from the configuration file and the store, keeping
/// what was discovered for providers whose definition did not change.
pub async fn reload(state: &AppState) -> Result<(), String> {
    let rows = state
        .store
        .identity_providers()
        .await
        .map_err(|e| e.to_string())?;
    let mut defs: Vec<(ProviderConfig, Source)> = state
        .config
        .federation
        .providers
        .iter()
        .map(|p| (p.clone(), Source::Config))
        .collect();
    for row in &rows {
        if defs.iter().any(|(d, _)| d.id == row.id) {
            continue;
        }
        match from_row(row, &state.kek) {
            Ok(def) => defs.push((
                def,
                Source::Api {
                    created_by: row.created_by.clone(),
                },
            )),
            Err(e) => tracing::error!(error = %e, "identity provider not loaded"),
        }
    }
    let before: HashMap<String, Arc<Upstream>> = state
        .upstreams
        .list()
        .iter()
        .map(|u| (u.def.id.clone(), u.clone()))
        .collect();
    let list = defs
        .into_iter()
        .map(|(def, source)| match before.get(&def.id) {
            Some(old) if old.def == def => Arc::new(Upstream {
                def,
                source,
                metadata: old.metadata.clone(),
                error: old.error.clone(),
                checked: old.checked,
            }),
            _ => Arc::new(Upstream {
                def,
                source,
                metadata: None,
                error: None,
                checked: None,
            }),
        })
        .collect();
    state.upstreams.list.store(Arc::new(list));
    Ok(())
}

/// Reads a provider's discovery document and keys.
pub async fn discover(
    http: &reqwest::Client,
    issuer: &str,
) -> Result<CoreProviderMetadata, String> {
    let issuer = IssuerUrl::new(issuer.to_owned()).map_err(|e| e.to_string())?;
    CoreProviderMetadata::discover_async(issuer, http)
        .await
        .map_err(|e| {
            let mut msg = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                msg = format!("{msg}: {s}");
                source = s.source();
            }
            msg
        })
}

/// Discovers `u` now and records the outcome.
pub async fn refresh_one(state: &AppState, u: &Upstream) {
    let outcome = discover(state.upstreams.http(), &u.def.issuer).await;
    let (metadata, error) = match outcome {
        Ok(m) => {
            if u.error.is_some() || u.metadata.is_none() {
                tracing::info!(provider = %u.def.id, "upstream provider discovered");
            }
            (Some(Arc::new(m)), None)
        }
        Err(e) => {
            if u.error.is_none() {
                tracing::warn!(provider = %u.def.id, error = %e, "upstream provider unreachable");
            }
            (u.metadata.clone(), Some(e))
        }
    };
    state.upstreams.replace(
        &u.def.id,
        Upstream {
            def: u.def.clone(),
            source: u.source.clone(),
            metadata,
            error,
            checked: Some(Instant::now()),
        },
    );
}

/// Discovers every provider that is due.
pub async fn refresh_due(state: &AppState) {
    let refresh = Duration::from_secs(state.config.federation_refresh_secs);
    let due: Vec<Arc<Upstream>> = state
        .upstreams
        .list()
        .iter()
        .filter(|u| u.due(refresh))
        .cloned()
        .collect();
    let runs = due.iter().map(|u| refresh_one(state, u));
    futures_util::future::join_all(runs).await;
}

/// Runs until `stop` turns true, discovering providers as they fall due.
pub async fn follow(state: AppState, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        refresh_due(&state).await;
    }
}

//! The state a node shares between requests: configuration, stores, the key ring
//! and the in-memory view of IAM data, each swapped whole when the change sequence
//! moves so that readers never lock.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;

use crate::config::Config;
use crate::crypto::kek::Kek;
use crate::crypto::keyring::KeyRing;
use crate::crypto::password::Passwords;
use crate::ephemeral::{Ephemeral, EphemeralStore};
use crate::iam::{Catalog, Evaluator};
use crate::store::Store;
use crate::store::directory::ServiceAccountCredentials;
use crate::store::iam::ClientRow;
use crate::telemetry::Metrics;

/// A JSON document served as is, with its validator.
pub struct Document {
    /// The body.
    pub body: Bytes,
    /// Strong entity tag (quoted).
    pub etag: String,
}

impl Document {
    /// Serializes `value` and derives its entity tag from the bytes.
    pub fn new(value: &serde_json::Value) -> Document {
        let body = Bytes::from(value.to_string());
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &body);
        let etag = format!("\"{}\"", crate::crypto::b64(&digest.as_ref()[..12]));
        Document { body, etag }
    }
}

/// The IAM data held in memory, loaded from the store at one change sequence.
pub struct View {
    /// The change sequence it reflects.
    pub seq: i64,
    /// Every binding, membership and principal state, ready to evaluate.
    pub evaluator: Arc<Evaluator>,
    /// Service-account credentials by client id, so client credentials read no
    /// database.
    pub service_accounts: Arc<HashMap<String, ServiceAccountCredentials>>,
    /// OAuth clients for browser login, by client id.
    pub clients: Arc<HashMap<String, Arc<ClientRow>>>,
    /// Identifiers of the registered APIs (valid `resource` values besides the admin
    /// API).
    pub apis: Arc<HashSet<String>>,
}

/// Shared node state; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] points to.
pub struct Shared {
    /// The resolved configuration.
    pub config: Config,
    /// The issuer URL.
    pub issuer: String,
    /// The durable store.
    pub store: Store,
    /// Short-lived state.
    pub ephemeral: Ephemeral,
    /// The key-encryption key.
    pub kek: Kek,
    /// The active role catalog.
    pub catalog: Arc<Catalog>,
    /// Password hashing with bounded concurrency.
    pub passwords: Passwords,
    /// The node's metrics.
    pub metrics: Metrics,
    /// Authentication events on their way to the audit log.
    pub events: super::events::Events,
    /// The signing keys.
    pub keys: ArcSwap<KeyRing>,
    /// The JWKS document for the current key ring.
    pub jwks: ArcSwap<Document>,
    /// The discovery document.
    pub discovery: Document,
    /// The published role catalog (predefined roles).
    pub role_catalog: ArcSwap<Document>,
    /// The browser pages.
    pub pages: crate::ui::Pages,
    /// Outgoing mail.
    pub mailer: crate::mail::Mailer,
    /// The sender of outgoing mail.
    pub mail_from: lettre::message::Mailbox,
    /// IAM data in memory; `None` until first loaded.
    pub view: ArcSwap<Option<View>>,
    /// Highest change sequence applied.
    pub applied_seq: AtomicI64,
    /// Upstream OpenID providers for federation.
    pub upstreams: crate::federation::Upstreams,
}

impl AppState {
    /// Wraps the parts into shared state.
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }

    /// The change sequence this node has applied.
    pub fn applied_seq(&self) -> i64 {
        self.applied_seq.load(Ordering::Acquire)
    }

    /// Why the node is not ready, if it is not: the store or short-lived state is
    /// unreachable, or the IAM view or the key ring is not loaded.
    pub async fn readiness(&self) -> Result<(), String> {
        let timeout = Duration::from_secs(1);
        match tokio::time::timeout(timeout, self.store.ping()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("store: {e}")),
            Err(_) => return Err("store: no answer within 1s".into()),
        }
        match tokio::time::timeout(timeout, self.ephemeral.ping()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return Err(format!(
                    "short-lived state ({}): {e}",
                    self.ephemeral.backend()
                ));
            }
            Err(_) => {
                return Err(format!(
                    "short-lived state ({}): no answer within 1s",
                    self.ephemeral.backend()
                ));
            }
        }
        if self.view.load().is_none() {
            return Err("evaluator: IAM data not loaded".into());
        }
        if self.keys.load().signer(crate::now_unix()).is_none() {
            return Err("keys: no signing key is active".into());
        }
        Ok(())
    }
}

//! Identities: how people and clients prove who they are: the throttle that slows
//! down repeated failures, and where browser sessions are kept.

pub mod throttle;

/// Short-lived-state key of the browser session whose id hashes to `sid`.
pub fn session_key(sid: &str) -> String {
    format!("session:{sid}")
}

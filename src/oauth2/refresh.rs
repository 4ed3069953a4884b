//! The refresh-token grant (RFC 6749 section 6), with rotation: every use returns a
//! new refresh token and retires the one presented. Presenting a retired token again
//! is taken as theft and revokes the whole family (RFC 9700 section 4.14.2), unless
//! the optional grace window is on and the same client comes back within it, when
//! it gets the identical response (two tabs refreshing at once).

use std::time::Duration;

use axum::http::HeaderMap;
use serde_json::json;

use super::token::{Form, TokenResponse};
use super::{OAuthError, client_auth, issue};
use crate::ephemeral::EphemeralStore;
use crate::server::AppState;
use crate::server::events::AuthEvent;
use crate::store::iam::ClientRow;
use crate::store::oidc::FamilyRow;

fn store_down<E>(_: E) -> OAuthError {
    OAuthError::temporarily_unavailable("the store is unavailable")
}

fn grace_key(hash: &str) -> String {
    format!("refresh-grace:{hash}")
}

/// `grant_type=refresh_token`.
pub async fn grant(
    state: &AppState,
    headers: &HeaderMap,
    form: &Form,
    addr: &str,
) -> Result<TokenResponse, OAuthError> {
    let view = state.view.load();
    let view = view
        .as_ref()
        .as_ref()
        .ok_or_else(|| OAuthError::temporarily_unavailable("the server is starting"))?;
    let client = client_auth::authenticate_app(state, view, headers, form, addr).await?;
    let presented = form
        .get("refresh_token")
        .ok_or_else(|| OAuthError::invalid_request("refresh_token is required"))?;
    let old_hash = issue::refresh_hash(presented);
    let now = crate::now_unix();
    let invalid = || OAuthError::invalid_grant("the refresh token is invalid, expired or revoked");
    // Everything that can refuse the request is checked before the token is rotated,
    // so a refused request leaves it usable.
    let presented = state
        .store
        .presented_refresh(&old_hash)
        .await
        .map_err(store_down)?
        .filter(|p| p.family.client_id == client.client_id)
        .ok_or_else(invalid)?;
    let family = &presented.family;
    if family.revoked_at.is_some() || family.expires_at <= now {
        return Err(invalid());
    }
    if presented.used {
        return reuse(state, &client, family, &old_hash, now).await;
    }
    let granted: Vec<String> = family.scope.split(' ').map(str::to_owned).collect();
    let scopes = match form.get("scope") {
        None => granted,
        Some(asked) => {
            let asked: Vec<String> = asked
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            if let Some(extra) = asked.iter().find(|s| !granted.contains(s)) {
                return Err(OAuthError::invalid_scope(format!(
                    "{extra} was not granted to this refresh token"
                )));
            }
            asked
        }
    };
    let resource = match form.all("resource").as_slice() {
        [] => family.resource.clone(),
        [one] if family.resource.as_deref() == Some(*one) => Some((*one).to_owned()),
        _ => {
            return Err(OAuthError::invalid_target(
                "a refresh token is good only for the API it was granted for",
            ));
        }
    };
    let Some(user) = presented
        .user
        .as_ref()
        .filter(|u| u.email_verified && !u.disabled)
    else {
        state
            .store
            .revoke_family(&family.id, "account_inactive", now)
            .await
            .map_err(store_down)?;
        return Err(invalid());
    };
    // Without offline_access, the grant lasts as long as the browser session.
    if let Some(sid) = &family.session
        && state
            .ephemeral
            .get(&crate::identity::session_key(sid))
            .await
            .map_err(store_down)?
            .is_none()
    {
        state
            .store
            .revoke_family(&family.id, "session_ended", now)
            .await
            .map_err(store_down)?;
        return Err(invalid());
    }
    let amr: Vec<String> = family.amr.split_whitespace().map(str::to_owned).collect();
    let grant = issue::UserGrant {
        user_id: &family.user_id,
        scopes: &scopes,
        resource: resource.as_deref(),
        nonce: None,
        auth_time: family.auth_time,
        sid: family.session.as_deref().unwrap_or(""),
        amr: &amr,
    };
    let new_token = issue::new_refresh_token();
    let jti = super::access_token::new_jti();
    let issued = issue::build(state, view, &client, user, &grant, new_token.clone(), jti).await?;
    let won = state
        .store
        .rotate_presented(
            &old_hash,
            &issue::refresh_hash(&new_token),
            &family.id,
            presented.generation,
            now,
        )
        .await
        .map_err(store_down)?;
    if !won {
        return reuse(state, &client, family, &old_hash, now).await;
    }
    issue::record(state, &client, &family.user_id, &issued).await;
    let grace = state.config.refresh_reuse_grace_secs;
    if grace > 0 && !client.public_client {
        let body = serde_json::to_vec(&issued.response).unwrap_or_default();
        state
            .ephemeral
            .put(&grace_key(&old_hash), &body, Duration::from_secs(grace))
            .await
            .map_err(store_down)?;
    }
    Ok(issued.response)
}

/// A rotated token presented again: the response of its rotation within the grace
/// window (confidential clients only), else the family is revoked.
async fn reuse(
    state: &AppState,
    client: &ClientRow,
    family: &FamilyRow,
    old_hash: &str,
    now: i64,
) -> Result<TokenResponse, OAuthError> {
    if state.config.refresh_reuse_grace_secs > 0
        && !client.public_client
        && let Some(response) = graced(state, old_hash).await?
    {
        return Ok(response);
    }
    revoke_for_reuse(state, family, now).await?;
    Err(OAuthError::invalid_grant(
        "the refresh token is invalid, expired or revoked",
    ))
}

/// The response given for a token rotated within the grace window. The request that
/// rotated it may still be storing it (two tabs at once): wait for it briefly.
async fn graced(state: &AppState, old_hash: &str) -> Result<Option<TokenResponse>, OAuthError> {
    for _ in 0..20 {
        if let Some(raw) = state
            .ephemeral
            .get(&grace_key(old_hash))
            .await
            .map_err(store_down)?
        {
            return Ok(serde_json::from_slice(&raw).ok());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Ok(None)
}

/// A retired token came back: revoke its family and say so in the audit log.
async fn revoke_for_reuse(
    state: &AppState,
    family: &FamilyRow,
    now: i64,
) -> Result<(), OAuthError> {
    state
        .store
        .revoke_family(&family.id, "reuse", now)
        .await
        .map_err(store_down)?;
    state
        .events
        .record(AuthEvent::new(
            format!("user:{}", family.user_id),
            "token.refresh_reuse",
            "*",
            json!({ "client_id": family.client_id, "family": family.id, "revoked": true }),
        ))
        .await;
    Ok(())
}

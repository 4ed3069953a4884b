//! The authorization-code grant (RFC 6749 section 4.1.3, RFC 7636).
//!
//! A code is 256 random bits, stored in short-lived state under its hash for less
//! than a minute and taken atomically, so of concurrent redemptions exactly one wins.
//! A redeemed code leaves a marker: presenting it again fails and revokes the
//! refresh-token family and the access token the first redemption issued (RFC 6749
//! section 4.1.2).

use std::time::Duration;

use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::token::{Form, TokenResponse};
use super::{OAuthError, client_auth, issue, pkce};
use crate::ephemeral::{EphemeralError, EphemeralStore};
use crate::server::AppState;
use crate::server::events::AuthEvent;

/// How long a code is valid.
pub const CODE_TTL: Duration = Duration::from_secs(50);

/// What a code stands for.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct CodeGrant {
    /// The client it was issued to.
    pub client_id: String,
    /// The redirect URI of the authorization request.
    pub redirect_uri: String,
    /// The user who authorized it.
    pub user_id: String,
    /// The granted scopes.
    pub scopes: Vec<String>,
    /// The client's nonce, for the ID token.
    pub nonce: Option<String>,
    /// The PKCE challenge (S256).
    pub code_challenge: Option<String>,
    /// When the user authenticated.
    pub auth_time: i64,
    /// The API asked for.
    pub resource: Option<String>,
    /// The browser session (hash), the `sid` of the ID token.
    pub sid: String,
    /// How the user authenticated (`amr`).
    #[serde(default)]
    pub amr: Vec<String>,
}

/// What a redeemed code issued, kept to undo it if the code comes back.
#[derive(Debug, Serialize, Deserialize)]
struct Redeemed {
    family: Option<String>,
    jti: String,
    exp: i64,
}

/// A grant as stored, with the names of what its exchange will issue, chosen now so
/// that a replay can revoke them whenever it comes.
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    grant: CodeGrant,
    family: String,
    jti: String,
}

/// Stores a grant and returns its code.
pub async fn issue(state: &AppState, grant: &CodeGrant) -> Result<String, EphemeralError> {
    let code = crate::crypto::new_token();
    let stored = Stored {
        grant: grant.clone(),
        family: uuid::Uuid::now_v7().to_string(),
        jti: super::access_token::new_jti(),
    };
    let body = serde_json::to_vec(&stored).unwrap_or_default();
    state
        .ephemeral
        .put(
            &format!("code:{}", crate::crypto::token_hash(&code)),
            &body,
            CODE_TTL,
        )
        .await?;
    Ok(code)
}

fn unavailable(_: EphemeralError) -> OAuthError {
    OAuthError::temporarily_unavailable("short-lived state is unavailable")
}

/// `grant_type=authorization_code`.
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
    let code = form
        .get("code")
        .ok_or_else(|| OAuthError::invalid_request("code is required"))?;
    let hash = crate::crypto::token_hash(code);
    let invalid = || OAuthError::invalid_grant("the code is invalid, expired or already used");
    let Some(raw) = state
        .ephemeral
        .get(&format!("code:{hash}"))
        .await
        .map_err(unavailable)?
    else {
        // Gone: expired, or redeemed (its claim says what to revoke).
        if let Some(marker) = state
            .ephemeral
            .get(&format!("code-used:{hash}"))
            .await
            .map_err(unavailable)?
            .and_then(|raw| serde_json::from_slice::<Redeemed>(&raw).ok())
        {
            replayed(state, &hash, &marker, &client.client_id).await?;
        }
        return Err(invalid());
    };
    let Stored { grant, family, jti } = serde_json::from_slice(&raw).map_err(|_| invalid())?;
    // Exactly one exchange claims the code, atomically; every other one is a replay
    // and revokes what the claim issues (or will issue: the names are chosen).
    let marker = Redeemed {
        family: Some(family.clone()),
        jti: jti.clone(),
        exp: crate::now_unix() + i64::try_from(state.config.access_token_ttl_secs).unwrap_or(0),
    };
    let keep = Duration::from_secs(state.config.access_token_ttl_secs + 60);
    let claimed = state
        .ephemeral
        .put_if_absent(
            &format!("code-used:{hash}"),
            &serde_json::to_vec(&marker).unwrap_or_default(),
            keep,
        )
        .await
        .map_err(unavailable)?;
    if !claimed {
        replayed(state, &hash, &marker, &client.client_id).await?;
        return Err(invalid());
    }
    let _ = state.ephemeral.delete(&format!("code:{hash}")).await;
    if grant.client_id != client.client_id {
        return Err(OAuthError::invalid_grant(
            "the code was issued to another client",
        ));
    }
    if form.get("redirect_uri") != Some(grant.redirect_uri.as_str()) {
        return Err(OAuthError::invalid_grant(
            "redirect_uri differs from the authorization request",
        ));
    }
    match (&grant.code_challenge, form.get("code_verifier")) {
        (Some(challenge), Some(verifier)) => {
            if !pkce::verify(verifier, challenge) {
                return Err(OAuthError::invalid_grant(
                    "the code_verifier does not match",
                ));
            }
        }
        (Some(_), None) => {
            return Err(OAuthError::invalid_grant("code_verifier is required"));
        }
        (None, Some(_)) => {
            return Err(OAuthError::invalid_grant(
                "code_verifier given, but the authorization request had no code_challenge",
            ));
        }
        (None, None) => {}
    }
    let user_grant = issue::UserGrant {
        user_id: &grant.user_id,
        scopes: &grant.scopes,
        resource: grant.resource.as_deref(),
        nonce: grant.nonce.as_deref(),
        auth_time: grant.auth_time,
        sid: &grant.sid,
        amr: &grant.amr,
    };
    let refresh_token = issue::new_refresh_token();
    let user = issue::active_user(state, &grant.user_id)
        .await?
        .ok_or_else(|| OAuthError::invalid_grant("the account is no longer active"))?;
    let issued = issue::build(
        state,
        view,
        &client,
        &user,
        &user_grant,
        refresh_token.clone(),
        jti,
    )
    .await?;
    issue::new_family(state, &family, &client, &user_grant, &refresh_token).await?;
    // A replay that came while the tokens were built flagged the code: undo.
    if state
        .ephemeral
        .get(&format!("code-replayed:{hash}"))
        .await
        .map_err(unavailable)?
        .is_some()
    {
        undo(state, &marker, &client.client_id).await?;
        return Err(OAuthError::invalid_grant(
            "the code is invalid, expired or already used",
        ));
    }
    issue::record(state, &client, &grant.user_id, &issued).await;
    Ok(issued.response)
}

/// A code presented again: flag it (for an exchange still running) and revoke what
/// its claim issued.
async fn replayed(
    state: &AppState,
    hash: &str,
    marker: &Redeemed,
    client_id: &str,
) -> Result<(), OAuthError> {
    state
        .ephemeral
        .put(&format!("code-replayed:{hash}"), b"1", CODE_TTL * 2)
        .await
        .map_err(unavailable)?;
    undo(state, marker, client_id).await
}

/// Revokes the family and the access token a redemption issued.
async fn undo(state: &AppState, marker: &Redeemed, client_id: &str) -> Result<(), OAuthError> {
    let now = crate::now_unix();
    if let Some(family) = &marker.family {
        state
            .store
            .revoke_family(family, "code_reuse", now)
            .await
            .map_err(|_| OAuthError::temporarily_unavailable("the store is unavailable"))?;
    }
    super::introspection::revoke_jti(state, &marker.jti, marker.exp - now).await?;
    state
        .events
        .record(AuthEvent::new(
            format!("client:{client_id}"),
            "token.code_reuse",
            "*",
            json!({ "revoked_family": marker.family, "revoked_jti": marker.jti }),
        ))
        .await;
    Ok(())
}

//! The client-credentials grant (RFC 6749 section 4.4) for service accounts. It reads
//! only memory: credentials, bindings and registered APIs come from the node's view,
//! kept current by the change sequence; the audit event is written in the background.
//!
//! The secret is compared in constant time, and an unknown client costs the same as
//! a wrong secret. Tokens are narrowed to the service account's organization or
//! project, `aud` is the `resource` asked for (a registered API) or the admin API.

use axum::http::HeaderMap;
use serde_json::json;

use super::OAuthError;
use super::access_token::{self, Claims};
use super::client_auth;
use super::token::{Form, TokenResponse};
use crate::iam::PrincipalKind;
use crate::iam::claim::roles_claim;
use crate::server::AppState;
use crate::server::events::AuthEvent;

/// The scopes a service account may ask for: `roles` and `roles:<resource>`.
fn parse_scope(scope: Option<&str>) -> Result<(bool, Vec<&str>), OAuthError> {
    let mut roles = false;
    let mut narrow = Vec::new();
    for s in scope.unwrap_or("").split(' ').filter(|s| !s.is_empty()) {
        if s == "roles" {
            roles = true;
        } else if let Some(name) = s.strip_prefix("roles:") {
            if name.is_empty() {
                return Err(OAuthError::invalid_scope("roles: needs a resource name"));
            }
            roles = true;
            narrow.push(name);
        } else {
            return Err(OAuthError::invalid_scope(format!(
                "scope {s:?} is not available to service accounts"
            )));
        }
    }
    Ok((roles, narrow))
}

/// Issues an access token to an authenticated service account.
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
    let now = crate::now_unix();
    let sa = client_auth::authenticate(state, view, headers, form, addr, now).await?;
    let (want_roles, narrow) = parse_scope(form.get("scope"))?;
    let admin_api = format!("{}/v1", state.issuer);
    let aud = match form.all("resource").as_slice() {
        [] => admin_api,
        [one] if *one == admin_api || view.apis.contains(*one) => (*one).to_owned(),
        [one] => {
            return Err(OAuthError::invalid_target(format!(
                "{one:?} is not a registered API"
            )));
        }
        _ => return Err(OAuthError::invalid_target("ask for one resource per token")),
    };
    let claim = if want_roles {
        Some(
            roles_claim(
                &view.evaluator,
                PrincipalKind::ServiceAccount,
                &sa.id,
                &narrow,
                &sa.parent,
                now,
            )
            .map_err(|e| OAuthError::invalid_scope(e.to_string()))?,
        )
    } else {
        None
    };
    let exp = access_token::expiry(
        now,
        state.config.access_token_ttl_secs,
        claim.as_ref().and_then(|c| c.expires_at),
    );
    let scope = form
        .get("scope")
        .unwrap_or("")
        .split(' ')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let mut claims = Claims {
        iss: &state.issuer,
        sub: &sa.id,
        aud: &aud,
        client_id: &sa.client_id,
        scope: &scope,
        jti: access_token::new_jti(),
        iat: now,
        exp,
        roles: claim.map(|c| c.roles),
    };
    let token = access_token::sign(&state.keys.load(), now, &mut claims).map_err(|e| {
        tracing::error!(error = %e, "cannot sign an access token");
        OAuthError::temporarily_unavailable("no signing key is available")
    })?;
    state
        .metrics
        .count("tokens_issued_total", &[("grant", "client_credentials")]);
    state
        .events
        .record(AuthEvent::new(
            format!("serviceAccount:{}", sa.client_id),
            "token.issue",
            &sa.parent,
            json!({ "aud": aud, "scope": scope, "jti": claims.jti, "exp": claims.exp }),
        ))
        .await;
    Ok(TokenResponse {
        access_token: token,
        token_type: "Bearer".into(),
        expires_in: claims.exp - now,
        scope,
        refresh_token: None,
        id_token: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_role_scopes_are_offered() {
        assert_eq!(parse_scope(None).expect("none"), (false, vec![]));
        assert_eq!(parse_scope(Some("roles")).expect("roles"), (true, vec![]));
        assert_eq!(
            parse_scope(Some("roles:orgs/a roles:orgs/b")).expect("narrow"),
            (true, vec!["orgs/a", "orgs/b"])
        );
        for bad in ["openid", "roles: x", "roles:", "admin"] {
            assert_eq!(
                parse_scope(Some(bad)).expect_err(bad).code,
                "invalid_scope",
                "{bad}"
            );
        }
    }
}

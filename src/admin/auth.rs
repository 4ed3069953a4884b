//! Who calls the admin API: a bearer access token (`typ: at+jwt`, signed here, not
//! expired, not revoked) whose `aud` contains `<issuer>/v1`, of a principal that is
//! still active. Cookies are never looked at. The token's `roles` are ignored: the
//! caller's permissions are evaluated live.

use axum::http::{HeaderMap, header};
use serde_json::Value;

use super::problem::{Kind, Problem};
use crate::access::Actor;
use crate::iam::evaluator::PrincipalRef;
use crate::oauth2::{introspection, issue};
use crate::server::AppState;

fn unauthenticated(detail: &str) -> Problem {
    Problem::new(Kind::Unauthenticated, detail)
}

/// The caller of a request, from its `Authorization: Bearer` header.
pub async fn caller(state: &AppState, headers: &HeaderMap) -> Result<Actor, Problem> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| unauthenticated("send an access token: Authorization: Bearer <token>"))?;
    let claims = introspection::verified(state, token)
        .ok_or_else(|| unauthenticated("the access token is invalid or expired"))?;
    let admin_api = format!("{}/v1", state.issuer);
    let for_us = match &claims["aud"] {
        Value::String(a) => *a == admin_api,
        Value::Array(list) => list.iter().any(|a| *a == admin_api.as_str()),
        _ => false,
    };
    if !for_us {
        return Err(unauthenticated(&format!(
            "the access token is not for the admin API (its aud must contain {admin_api})"
        )));
    }
    let revoked = introspection::is_revoked(state, claims["jti"].as_str().unwrap_or(""))
        .await
        .map_err(|_| Problem::new(Kind::Unavailable, "short-lived state is unavailable"))?;
    if revoked {
        return Err(unauthenticated("the access token was revoked"));
    }
    let sub = claims["sub"].as_str().unwrap_or("");
    let client_id = claims["client_id"].as_str().unwrap_or("");
    let service_account = state.view.load().as_ref().as_ref().and_then(|v| {
        v.service_accounts
            .get(client_id)
            .filter(|sa| sa.id == sub)
            .map(|sa| (sa.disabled, sa.client_id.clone()))
    });
    if let Some((disabled, client_id)) = service_account {
        if disabled {
            return Err(unauthenticated("the service account is disabled"));
        }
        return Ok(Actor {
            principal: PrincipalRef::service_account(sub),
            label: format!("serviceAccount:{client_id}"),
        });
    }
    let user = issue::active_user(state, sub)
        .await
        .map_err(|_| Problem::new(Kind::Unavailable, "the store is unavailable"))?
        .ok_or_else(|| unauthenticated("the account is no longer active"))?;
    Ok(Actor {
        principal: PrincipalRef::user(sub),
        label: format!("user:{}", user.email),
    })
}

//! The admin API under `/v1` (DESIGN.md section 3): JSON in and out, bearer access
//! tokens for the admin API only ([`auth`]), every route authorized by exactly one
//! permission through the evaluator before anything else happens ([`routes`]),
//! errors as RFC 9457 problems ([`problem`]). The operations themselves are the
//! `access` layer's, which checks the invariants and writes one audited transaction.

pub mod auth;
pub mod bodies;
pub mod openapi;
pub mod problem;
pub mod routes;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::access::{self, AccessError, Actor, Ctx, parse_member};
use crate::iam::evaluator::{PrincipalKind, PrincipalRef};
use crate::server::AppState;
use crate::store::iam::ResourceRow;
use bodies::*;
use problem::{Kind, Problem};
use routes::{Op, Route};

/// The largest request body the admin API reads.
pub const BODY_LIMIT: usize = 64 * 1024;

/// Every request under `/v1`.
pub async fn dispatch(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    match serve(&state, &method, &uri, &headers, body).await {
        Ok(r) => r,
        Err(p) => p.into_response(),
    }
}

async fn serve(
    state: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: axum::body::Body,
) -> Result<Response, Problem> {
    if method == Method::GET && uri.path() == openapi::PATH {
        return Ok(Json(openapi::document(&state.issuer)).into_response());
    }
    let actor = auth::caller(state, headers).await?;
    let route = routes::resolve(method, uri.path())?;
    let view = state.view.load();
    let view = view
        .as_ref()
        .as_ref()
        .ok_or_else(|| Problem::new(Kind::Unavailable, "the server is starting"))?;
    let ctx = Ctx {
        store: &state.store,
        evaluator: &view.evaluator,
        ephemeral: &state.ephemeral,
        now: crate::now_unix(),
    };
    // The route's one permission, before anything else; for the audit log it applies
    // to the scope asked about.
    let at = match route.op {
        Op::AuditEvents => {
            query_param(uri.query(), "scope").unwrap_or_else(|| route.resource.clone())
        }
        _ => route.resource.clone(),
    };
    if route.op != Op::Check {
        ctx.require(&actor, &route.permission, &at)?;
    }
    // Read only after the route's permission held, and only up to the limit.
    let body = axum::body::to_bytes(body, BODY_LIMIT).await.map_err(|_| {
        Problem::new(
            Kind::PayloadTooLarge,
            format!("the body may have at most {BODY_LIMIT} bytes"),
        )
    })?;
    run(state, &ctx, &actor, route, uri.query(), headers, &body).await
}

/// A query parameter.
fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(k, v)| k == name && !v.is_empty())
        .map(|(_, v)| v.into_owned())
}

/// Largest page of a list.
const MAX_PAGE: i64 = 500;

/// The `cursor` (opaque: where the last page ended) and `limit` of a list request.
fn page(query: Option<&str>) -> Result<(Option<String>, i64), Problem> {
    let limit = match query_param(query, "limit") {
        None => 100,
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| Problem::field("limit", format!("1 to {MAX_PAGE}")))?,
    };
    let after = match query_param(query, "cursor") {
        None => None,
        Some(c) => Some(
            crate::crypto::unb64(&c)
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| Problem::field("cursor", "not a cursor from this API"))?,
        ),
    };
    Ok((after, limit))
}

/// Parses a JSON body; the problem names the field at fault.
fn json_body<T: DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, Problem> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(Problem::new(
            Kind::UnsupportedMediaType,
            "send the body as application/json",
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    let parsed: Result<T, _> = serde_path_to_error::deserialize(de);
    parsed.map_err(|e| {
        let message = e.inner().to_string();
        let mut field = e.path().to_string();
        // An unknown or missing field is named by the message, below the path.
        if let Some(name) = message
            .split('`')
            .nth(1)
            .filter(|_| message.contains(" field `"))
        {
            field = if field == "." || field.is_empty() {
                name.to_owned()
            } else if field.ends_with(name) {
                field
            } else {
                format!("{field}.{name}")
            };
        }
        if field == "." || field == "?" || field.is_empty() {
            field = "body".into();
        }
        Problem::field(field, message)
    })
}

fn resource_json(r: &ResourceRow) -> Value {
    json!({
        "name": r.name,
        "kind": r.kind,
        "parent": r.parent,
        "slug": r.slug,
        "display_name": r.display_name,
        "created_at": r.created_at,
    })
}

fn user_json(u: &crate::store::iam::UserRow) -> Value {
    json!({
        "id": u.id, "email": u.email, "display_name": u.display_name,
        "email_verified": u.email_verified, "disabled": u.disabled,
    })
}

async fn run(
    state: &AppState,
    ctx: &Ctx<'_>,
    actor: &Actor,
    route: Route,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, Problem> {
    Ok(match route.op {
        Op::CreateResource { parent, kind } => {
            let b: NewResource = json_body(headers, body)?;
            let row = access::resources::create(
                ctx,
                actor,
                parent.as_deref(),
                kind,
                &b.slug,
                &b.display_name,
            )
            .await?;
            (StatusCode::CREATED, Json(resource_json(&row))).into_response()
        }
        Op::GetResource(name) => match state
            .store
            .resource(&name)
            .await
            .map_err(AccessError::from)?
        {
            Some(r) if r.deleted_at.is_none() => Json(resource_json(&r)).into_response(),
            _ => return Err(AccessError::NotFound(name).into()),
        },
        Op::UpdateResource(name) => {
            let b: ResourcePatch = json_body(headers, body)?;
            access::resources::rename(ctx, actor, &name, &b.display_name).await?;
            match state
                .store
                .resource(&name)
                .await
                .map_err(AccessError::from)?
            {
                Some(r) => Json(resource_json(&r)).into_response(),
                None => return Err(AccessError::NotFound(name).into()),
            }
        }
        Op::ListResources { parent, kind } => {
            if let Some(p) = &parent
                && !resource_live(state, p).await?
            {
                return Err(AccessError::NotFound(p.clone()).into());
            }
            let (after, limit) = page(query)?;
            let rows = state
                .store
                .children(
                    parent.as_deref(),
                    kind.as_str(),
                    after.as_deref().unwrap_or(""),
                    limit,
                )
                .await
                .map_err(AccessError::from)?;
            let next = (rows.len() as i64 == limit)
                .then(|| rows.last().map(|r| crate::crypto::b64(r.name.as_bytes())))
                .flatten();
            let items: Vec<Value> = rows.iter().map(resource_json).collect();
            Json(json!({ "items": items, "next_cursor": next })).into_response()
        }
        Op::ListRoles(org) => Json(ctx.evaluator.roles().published(org.as_deref())).into_response(),
        Op::PutRole(org) => {
            let b: NewRole = json_body(headers, body)?;
            let role = access::definitions::put_custom_role(
                ctx,
                actor,
                &org,
                &b.slug,
                &b.description,
                &b.permissions,
            )
            .await?;
            (StatusCode::CREATED, Json(json!({ "id": role.id, "description": role.description, "permissions": role.permissions }))).into_response()
        }
        Op::DeleteResource(name) => {
            access::resources::delete(ctx, actor, &name).await?;
            StatusCode::NO_CONTENT.into_response()
        }
        Op::GetPolicy(scope) => {
            Json(access::policy::get(ctx, actor, &scope).await?).into_response()
        }
        Op::SetPolicy(scope) => {
            let b: NewPolicy = json_body(headers, body)?;
            let written = access::policy::set(ctx, actor, &scope, &b.etag, &b.bindings).await?;
            Json(json!({
                "etag": written.policy.etag,
                "bindings": written.policy.bindings,
                "warnings": problem::warnings(&written.warnings),
            }))
            .into_response()
        }
        Op::Access(name) => {
            if name != crate::iam::names::ROOT && !resource_live(state, &name).await? {
                return Err(AccessError::NotFound(name).into());
            }
            let holders = ctx.evaluator.holders(&name, ctx.now);
            Json(json!({ "resource": name, "holders": holders })).into_response()
        }
        Op::CreateUser => {
            let b: NewUser = json_body(headers, body)?;
            let u = access::accounts::create_user(
                ctx,
                &state.passwords,
                actor,
                &b.email,
                &b.display_name,
                b.password,
                b.email_verified,
            )
            .await?;
            (StatusCode::CREATED, Json(user_json(&u))).into_response()
        }
        Op::FindUser => {
            let email = url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .find(|(k, _)| k == "email")
                .map(|(_, v)| v.into_owned())
                .ok_or_else(|| Problem::field("email", "GET /v1/users needs ?email="))?;
            let email = crate::bootstrap::normalize_email(&email)
                .map_err(|m| Problem::field("email", m))?;
            let users: Vec<Value> = state
                .store
                .user_by_email(&email)
                .await
                .map_err(AccessError::from)?
                .iter()
                .map(user_json)
                .collect();
            Json(json!({ "users": users })).into_response()
        }
        Op::UpdateUser(id) => {
            let b: UserPatch = json_body(headers, body)?;
            if b.display_name.is_none() && b.disabled.is_none() {
                return Err(Problem::field(
                    "body",
                    "give display_name or disabled (or both)",
                ));
            }
            // Checked first, so that the two changes below cannot half happen for a bad
            // name; the one that can be refused by an invariant goes first.
            if b.display_name
                .as_ref()
                .is_some_and(|n| n.trim().is_empty() || n.trim().len() > 200)
            {
                return Err(Problem::field("display_name", "must be 1 to 200 bytes"));
            }
            ctx.require(actor, "iam.users.update", crate::iam::names::ROOT)?;
            let mut warnings = Vec::new();
            if let Some(disabled) = b.disabled {
                let change = if disabled {
                    access::principals::Change::Disable
                } else {
                    access::principals::Change::Enable
                };
                warnings = access::principals::change(
                    ctx,
                    actor,
                    &PrincipalRef::user(id.clone()),
                    crate::iam::names::ROOT,
                    change,
                )
                .await?;
            }
            if let Some(name) = &b.display_name {
                access::accounts::rename_user(ctx, actor, &id, name).await?;
            }
            let user = state
                .store
                .user_by_id(&id)
                .await
                .map_err(AccessError::from)?
                .ok_or_else(|| AccessError::NotFound(format!("user:{id}")))?;
            let mut out = user_json(&user);
            out["warnings"] = problem::warnings(&warnings);
            Json(out).into_response()
        }
        Op::DeleteUser(id) => {
            access::principals::change(
                ctx,
                actor,
                &PrincipalRef::user(id),
                crate::iam::names::ROOT,
                access::principals::Change::Delete,
            )
            .await?;
            StatusCode::NO_CONTENT.into_response()
        }
        Op::CreateServiceAccount(parent) => {
            let b: NewServiceAccount = json_body(headers, body)?;
            let sa = access::accounts::create_service_account(
                ctx,
                actor,
                &parent,
                &b.slug,
                &b.display_name,
                &b.description,
            )
            .await?;
            let out = json!({
                "id": sa.id, "name": sa.name, "client_id": sa.client_id, "parent": sa.parent,
                "slug": sa.slug, "display_name": sa.display_name, "description": sa.description,
                "disabled": sa.disabled,
            });
            (StatusCode::CREATED, Json(out)).into_response()
        }
        Op::MintSecret(account) => {
            let b: NewSecret = if body.is_empty() {
                NewSecret::default()
            } else {
                json_body(headers, body)?
            };
            let m = access::accounts::mint_secret(ctx, &state.kek, actor, &account, b.expires_at)
                .await?;
            let mut r = (
                StatusCode::CREATED,
                Json(json!({ "id": m.id, "client_secret": m.client_secret, "expires_at": m.expires_at })),
            )
                .into_response();
            r.headers_mut().insert(
                header::CACHE_CONTROL,
                axum::http::HeaderValue::from_static("no-store"),
            );
            r
        }
        Op::RevokeSecret(account, id) => {
            access::accounts::revoke_secret(ctx, actor, &account, &id).await?;
            StatusCode::NO_CONTENT.into_response()
        }
        Op::AddKey(account) => {
            let b: NewKey = json_body(headers, body)?;
            let id = access::accounts::add_key(ctx, actor, &account, &b.public_key_pem).await?;
            (StatusCode::CREATED, Json(json!({ "id": id }))).into_response()
        }
        Op::Invite(org) => {
            let b: NewInvitation = json_body(headers, body)?;
            let inv =
                access::invitations::invite(ctx, actor, &org, &b.email, &b.role, &b.scope).await?;
            crate::ui::invite::send(state, &inv.email, &inv.role, &inv.scope, &actor.label)
                .await
                .map_err(|_| Problem::new(Kind::Unavailable, "short-lived state is unavailable"))?;
            let out = json!({ "id": inv.id, "email": inv.email, "role": inv.role, "scope": inv.scope, "invited_by": inv.invited_by });
            (StatusCode::CREATED, Json(out)).into_response()
        }
        Op::CreateGroup(org) => {
            let b: NewResource = json_body(headers, body)?;
            let g = access::definitions::create_group(ctx, actor, &org, &b.slug, &b.display_name)
                .await?;
            let out = json!({ "id": g.id, "name": g.name, "org": g.org, "slug": g.slug, "display_name": g.display_name });
            (StatusCode::CREATED, Json(out)).into_response()
        }
        Op::AddMember(group, member) => {
            access::groups::add_member(ctx, actor, &group, &member).await?;
            StatusCode::NO_CONTENT.into_response()
        }
        Op::RemoveMember(group, member) => {
            let warnings = access::groups::remove_member(ctx, actor, &group, &member).await?;
            Json(json!({ "warnings": problem::warnings(&warnings) })).into_response()
        }
        Op::AuditEvents => {
            let since = match query_param(query, "since") {
                None => None,
                Some(v) => Some(
                    v.parse::<i64>()
                        .map_err(|_| Problem::field("since", "give Unix seconds"))?,
                ),
            };
            let (after, limit) = page(query)?;
            let filter = crate::store::audit::AuditFilter {
                scope: query_param(query, "scope"),
                actor: query_param(query, "actor"),
                since,
            };
            let events = state
                .store
                .audit_page(&filter, after.as_deref(), limit)
                .await
                .map_err(AccessError::from)?;
            let next = (events.len() as i64 == limit)
                .then(|| events.last().map(|e| crate::crypto::b64(e.id.as_bytes())))
                .flatten();
            Json(json!({ "events": events, "next_cursor": next })).into_response()
        }
        Op::CreateClient(parent) => {
            let b: NewClient = json_body(headers, body)?;
            let created = access::clients::create(
                ctx,
                &state.kek,
                actor,
                &state.issuer,
                &parent,
                access::clients::NewClient {
                    display_name: b.display_name,
                    redirect_uris: b.redirect_uris,
                    public: b.public,
                    default_api: b.default_api,
                    first_party: b.first_party,
                },
            )
            .await?;
            let c = &created.client;
            let out = json!({
                "client_id": c.client_id, "client_secret": created.client_secret,
                "parent": c.parent, "display_name": c.display_name,
                "redirect_uris": c.redirect_uris, "public": c.public_client,
                "first_party": c.first_party, "default_api": c.default_api,
            });
            let mut r = (StatusCode::CREATED, Json(out)).into_response();
            r.headers_mut().insert(
                header::CACHE_CONTROL,
                axum::http::HeaderValue::from_static("no-store"),
            );
            r
        }
        Op::ListApis => {
            let store_err = |e| Problem::from(AccessError::Store(e));
            let mut apis = Vec::new();
            for id in state.store.api_identifiers().await.map_err(store_err)? {
                if let Some((display_name, permissions)) =
                    state.store.api(&id).await.map_err(store_err)?
                {
                    apis.push(json!({ "identifier": id, "display_name": display_name, "permissions": permissions }));
                }
            }
            Json(json!({ "apis": apis })).into_response()
        }
        Op::RegisterApi => {
            let b: NewApi = json_body(headers, body)?;
            access::definitions::register_api(
                ctx,
                actor,
                &state.issuer,
                &b.identifier,
                &b.display_name,
                &b.permissions,
            )
            .await?;
            let out = json!({ "identifier": b.identifier, "display_name": b.display_name, "permissions": b.permissions });
            (StatusCode::CREATED, Json(out)).into_response()
        }
        Op::ListIdentityProviders => {
            let list: Vec<Value> = state
                .upstreams
                .list()
                .iter()
                .map(|u| identity_provider_json(state, u))
                .collect();
            Json(json!({ "identity_providers": list })).into_response()
        }
        Op::GetIdentityProvider(id) => match state.upstreams.get(&id) {
            Some(u) => Json(identity_provider_json(state, &u)).into_response(),
            None => {
                return Err(Problem::new(
                    Kind::NotFound,
                    format!("identity-providers/{id} does not exist"),
                ));
            }
        },
        Op::CreateIdentityProvider => {
            let def = json_body::<NewIdentityProvider>(headers, body)?.into_config();
            access::federation::create_provider(
                ctx,
                &state.kek,
                &state.config.federation.providers,
                actor,
                &def,
            )
            .await?;
            created_provider(state, &def.id).await?
        }
        Op::UpdateIdentityProvider(id) => {
            let b: IdentityProviderUpdate = json_body(headers, body)?;
            let Some(existing) = state.upstreams.get(&id) else {
                return Err(Problem::new(
                    Kind::NotFound,
                    format!("identity-providers/{id} does not exist"),
                ));
            };
            let def = b.into_config(id.clone(), existing.def.client_secret.0.clone());
            access::federation::update_provider(
                ctx,
                &state.kek,
                &state.config.federation.providers,
                actor,
                &def,
            )
            .await?;
            crate::federation::reload(state)
                .await
                .map_err(|e| Problem::new(Kind::Unavailable, e))?;
            match state.upstreams.get(&id) {
                Some(u) => Json(identity_provider_json(state, &u)).into_response(),
                None => StatusCode::NO_CONTENT.into_response(),
            }
        }
        Op::DeleteIdentityProvider(id) => {
            access::federation::delete_provider(
                ctx,
                &state.config.federation.providers,
                actor,
                &id,
            )
            .await?;
            crate::federation::reload(state)
                .await
                .map_err(|e| Problem::new(Kind::Unavailable, e))?;
            StatusCode::NO_CONTENT.into_response()
        }
        Op::Check => {
            let b: CheckRequest = json_body(headers, body)?;
            ctx.require(actor, &route.permission, &b.resource)?;
            let principal = principal(state, &b.principal).await?;
            let granted_by = ctx.evaluator.explain(
                principal.kind,
                &principal.id,
                &b.permission,
                &b.resource,
                ctx.now,
            );
            Json(json!({ "allowed": !granted_by.is_empty(), "granted_by": granted_by }))
                .into_response()
        }
    })
}

/// A provider as the API shows it: never its secret.
fn identity_provider_json(state: &AppState, u: &crate::federation::Upstream) -> Value {
    let d = &u.def;
    json!({
        "id": d.id,
        "display_name": d.display_name,
        "issuer": d.issuer,
        "client_id": d.client_id,
        "scopes": d.scopes,
        "trust_email": d.trust_email,
        "provision": d.provision,
        "groups_claim": d.groups_claim,
        "group_mappings": d.group_mappings,
        "redirect_uri": crate::federation::flow::callback_url(state, &d.id),
        "source": match &u.source {
            crate::federation::Source::Config => "config",
            crate::federation::Source::Api { .. } => "api",
        },
        "available": u.available(),
        "error": u.error,
    })
}

/// Loads a just-created provider on this node, discovers it, and answers 201.
async fn created_provider(state: &AppState, id: &str) -> Result<Response, Problem> {
    crate::federation::reload(state)
        .await
        .map_err(|e| Problem::new(Kind::Unavailable, e))?;
    let Some(u) = state.upstreams.get(id) else {
        return Err(Problem::new(
            Kind::Unavailable,
            "the provider was not loaded",
        ));
    };
    crate::federation::refresh_one(state, &u).await;
    let u = state.upstreams.get(id).unwrap_or(u);
    Ok((StatusCode::CREATED, Json(identity_provider_json(state, &u))).into_response())
}

async fn resource_live(state: &AppState, name: &str) -> Result<bool, Problem> {
    Ok(state
        .store
        .resource(name)
        .await
        .map_err(AccessError::from)?
        .is_some_and(|r| r.deleted_at.is_none()))
}

/// A principal written like a policy member.
async fn principal(state: &AppState, member: &str) -> Result<PrincipalRef, Problem> {
    let (kind, key) = parse_member(member).ok_or_else(|| {
        Problem::field(
            "principal",
            "write it like a policy member: user:<email>, serviceAccount:<client_id> or group:<name>",
        )
    })?;
    let unknown = || Problem::new(Kind::NotFound, format!("{member} does not exist"));
    let store_err = |e| Problem::from(AccessError::Store(e));
    Ok(match kind {
        PrincipalKind::User => {
            let email = crate::bootstrap::normalize_email(key)
                .map_err(|m| Problem::field("principal", m))?;
            let u = state.store.user_by_email(&email).await.map_err(store_err)?;
            PrincipalRef::user(u.ok_or_else(unknown)?.id)
        }
        PrincipalKind::ServiceAccount => {
            let sa = state
                .store
                .service_account_by_client_id(key)
                .await
                .map_err(store_err)?;
            PrincipalRef::service_account(sa.ok_or_else(unknown)?.id)
        }
        PrincipalKind::Group => {
            let g = state.store.group_by_name(key).await.map_err(store_err)?;
            PrincipalRef::group(g.ok_or_else(unknown)?.id)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(body: &str) -> String {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        );
        match json_body::<NewPolicy>(&h, body.as_bytes()) {
            Ok(_) => "ok".into(),
            Err(p) => p.field.unwrap_or_default(),
        }
    }

    #[test]
    fn validation_problems_name_the_field() {
        assert_eq!(field_of(r#"{"bindings": []}"#), "etag");
        assert_eq!(field_of(r#"{"etag": 7, "bindings": []}"#), "etag");
        assert_eq!(
            field_of(r#"{"etag": "0", "bindings": [{"role": "owner", "colour": 1}]}"#),
            "bindings[0].colour"
        );
        assert_eq!(
            field_of(r#"{"etag": "0", "bindings": [{"role": 5}]}"#),
            "bindings[0].role"
        );
        assert_eq!(field_of("{nope"), "body");
        assert_eq!(field_of(r#"{"etag": "0", "bindings": []}"#), "ok");
    }
}

//! Definitions: groups of an organization, registered APIs and their permissions (on
//! the instance), and custom roles of an organization. Registering permissions
//! re-resolves every wildcard role on the next reload.

use serde_json::json;

use super::{AccessError, Actor, Ctx, finish};
use crate::iam::catalog::{RoleDef, RoleKind};
use crate::iam::names::{self, Kind, ROOT};
use crate::iam::permissions::{self, Permission};
use crate::store::directory::{self, GroupRow};
use crate::store::{self, StoreError};

fn invalid(field: &str, message: String) -> AccessError {
    AccessError::Invalid {
        field: field.into(),
        message,
    }
}

fn org(name: &str) -> Result<&str, AccessError> {
    match names::parse(name) {
        Some(p) if p.kind == Kind::Organization => Ok(p.org),
        _ => Err(invalid("org", format!("{name:?} is not an organization"))),
    }
}

/// Creates a group `orgs/<org>/groups/<slug>` (`iam.groups.create` on the org).
pub async fn create_group(
    ctx: &Ctx<'_>,
    actor: &Actor,
    org_name: &str,
    slug: &str,
    display_name: &str,
) -> Result<GroupRow, AccessError> {
    let org = org(org_name)?;
    ctx.require(actor, "iam.groups.create", org)?;
    super::check_slug("slug", slug)?;
    let g = GroupRow {
        id: uuid::Uuid::new_v4().to_string(),
        name: format!("{org}/groups/{slug}"),
        org: org.to_owned(),
        slug: slug.to_owned(),
        display_name: display_name.to_owned(),
    };
    let mut tx = ctx.store.begin().await?;
    let seq = store::bump_change(&mut tx, "group", &g.name).await?;
    directory::insert_group(&mut tx, &g)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => AccessError::Refused(format!("{} exists", g.name)),
            e => e.into(),
        })?;
    finish(
        ctx,
        tx,
        seq,
        actor,
        "group.create",
        &g.name,
        org,
        json!({ "name": g.name }),
    )
    .await?;
    Ok(g)
}

/// Whether `identifier` is an acceptable API identifier: an https URL, an http URL
/// on loopback, or a URN.
fn valid_identifier(identifier: &str) -> bool {
    if identifier.starts_with("urn:") {
        return identifier.len() > 4 && !identifier.contains(char::is_whitespace);
    }
    match url::Url::parse(identifier) {
        Ok(u) if u.fragment().is_none() => match u.scheme() {
            "https" => u.host().is_some(),
            "http" => matches!(u.host_str(), Some("127.0.0.1" | "localhost" | "[::1]")),
            _ => false,
        },
        _ => false,
    }
}

/// Checks an API before it is registered: its identifier, its permission names, and
/// that it claims no service of gatehouse's or of the catalog's.
pub fn validate_api(
    issuer: &str,
    catalog: &crate::iam::Catalog,
    identifier: &str,
    permissions: &[Permission],
) -> Result<(), AccessError> {
    if !valid_identifier(identifier) || identifier == format!("{issuer}/v1") {
        return Err(invalid(
            "identifier",
            format!(
                "{identifier:?} is not an https URL, a loopback http URL or a URN of another API"
            ),
        ));
    }
    let builtin: Vec<String> = crate::iam::catalog::builtin_permissions()
        .into_iter()
        .chain(catalog.permissions.iter().cloned())
        .map(|p| p.name)
        .collect();
    let reserved = |name: &str| {
        let service = name.split('.').next().unwrap_or("");
        builtin.iter().any(|b| b.split('.').next() == Some(service))
    };
    for (i, p) in permissions.iter().enumerate() {
        if !permissions::valid_name(&p.name) {
            return Err(invalid(
                &format!("permissions[{i}].name"),
                format!("{:?} is not service.resource.verb", p.name),
            ));
        }
        if reserved(&p.name) {
            return Err(invalid(
                &format!("permissions[{i}].name"),
                format!("the service of {} is reserved", p.name),
            ));
        }
    }
    Ok(())
}

/// Registers an API and its permissions (`iam.apis.create` on the instance). Its
/// services may not be gatehouse's own (`iam`, `resourcemanager`) or a catalog's.
pub async fn register_api(
    ctx: &Ctx<'_>,
    actor: &Actor,
    issuer: &str,
    identifier: &str,
    display_name: &str,
    permissions: &[Permission],
) -> Result<(), AccessError> {
    ctx.require(actor, "iam.apis.create", ROOT)?;
    validate_api(
        issuer,
        ctx.evaluator.roles().catalog(),
        identifier,
        permissions,
    )?;
    let mut tx = ctx.store.begin().await?;
    let seq = store::bump_change(&mut tx, "api", identifier).await?;
    directory::register_api(&mut tx, identifier, display_name, permissions)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(m) => AccessError::Refused(m),
            e => e.into(),
        })?;
    let names: Vec<&str> = permissions.iter().map(|p| p.name.as_str()).collect();
    finish(
        ctx,
        tx,
        seq,
        actor,
        "api.register",
        identifier,
        ROOT,
        json!({ "identifier": identifier, "permissions": names }),
    )
    .await
}

/// Defines or replaces the custom role `orgs/<org>/roles/<slug>` (`iam.roles.create`
/// on the org) from registered permissions or patterns over them.
pub async fn put_custom_role(
    ctx: &Ctx<'_>,
    actor: &Actor,
    org_name: &str,
    slug: &str,
    description: &str,
    perms: &[String],
) -> Result<RoleDef, AccessError> {
    let org = org(org_name)?;
    let id = format!("{org}/roles/{slug}");
    let replacing = ctx.evaluator.roles().get(&id).is_some();
    ctx.require(
        actor,
        if replacing {
            "iam.roles.update"
        } else {
            "iam.roles.create"
        },
        org,
    )?;
    super::check_slug("slug", slug)?;
    if perms.is_empty() {
        return Err(invalid(
            "permissions",
            "a role needs at least one permission".into(),
        ));
    }
    let registry = ctx.evaluator.roles().registry();
    for (i, p) in perms.iter().enumerate() {
        let known = if p.contains('*') {
            permissions::valid_pattern(p)
        } else {
            registry.id(p).is_some()
        };
        if !known {
            return Err(invalid(
                &format!("permissions[{i}]"),
                format!("{p:?} is not a registered permission or a valid pattern"),
            ));
        }
    }
    // A definition (or a redefinition, which widens every existing binding of the role
    // at once) may hold only what the actor holds everywhere in the organization.
    let wanted = registry.resolve(perms, &[]);
    let held = ctx.evaluator.held(&actor.principal, org, true, ctx.now);
    if !wanted.is_subset(&held) {
        let missing = wanted
            .ids()
            .find(|p| !held.contains(*p))
            .and_then(|p| registry.get(p))
            .map(|p| p.name.clone())
            .unwrap_or_default();
        return Err(AccessError::CannotGrant(format!(
            "a role defined in {org} may only hold permissions its author holds on all of {org}; {missing} is missing"
        )));
    }
    let role = RoleDef {
        id,
        kind: RoleKind::Custom,
        description: description.to_owned(),
        permissions: perms.to_vec(),
        exclude: Vec::new(),
        deprecated: None,
        protected: false,
    };
    let mut tx = ctx.store.begin().await?;
    let seq = store::bump_change(&mut tx, "role", &role.id).await?;
    directory::put_custom_role(&mut tx, &role, org).await?;
    finish(
        ctx,
        tx,
        seq,
        actor,
        "role.put",
        &role.id,
        org,
        json!({ "id": role.id, "permissions": role.permissions }),
    )
    .await?;
    Ok(role)
}

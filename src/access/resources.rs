//! The resource tree: creating organizations, folders, projects and environments by
//! path (slugs validated and immutable, names of deleted resources reserved),
//! renaming them, and deleting them (refused while they have children).

use serde_json::json;

use super::{AccessError, Actor, Ctx};
use crate::iam::names::{self, Kind, ROOT};
use crate::server::sync;
use crate::store::iam::{self, BindingRow, ResourceRow};
use crate::store::{self, StoreError, audit};

fn plural(kind: Kind) -> &'static str {
    match kind {
        Kind::Organization => "organizations",
        Kind::Folder => "folders",
        Kind::Project => "projects",
        Kind::Environment => "environments",
    }
}

fn kind_of(row: &ResourceRow) -> Result<Kind, AccessError> {
    Kind::parse(&row.kind)
        .ok_or_else(|| StoreError::Corrupt(format!("resource kind {:?}", row.kind)).into())
}

/// Creates a resource of `kind` named `slug` under `parent` (`None`: an organization
/// at the instance root) with `resourcemanager.<kinds>.create` on the parent. A new
/// organization gets its creator as owner and the catalog's default project.
pub async fn create(
    ctx: &Ctx<'_>,
    actor: &Actor,
    parent: Option<&str>,
    kind: Kind,
    slug: &str,
    display_name: &str,
) -> Result<ResourceRow, AccessError> {
    let on = parent.unwrap_or(ROOT);
    ctx.require(
        actor,
        &format!("resourcemanager.{}.create", plural(kind)),
        on,
    )?;
    create_as(ctx, actor, parent, kind, slug, display_name).await
}

/// [`create`] without its permission check, for an actor that may create the resource
/// by other means (a person whose self-service sign-up creates an organization).
pub(crate) async fn create_as(
    ctx: &Ctx<'_>,
    actor: &Actor,
    parent: Option<&str>,
    kind: Kind,
    slug: &str,
    display_name: &str,
) -> Result<ResourceRow, AccessError> {
    let invalid = |field: &str, message: String| AccessError::Invalid {
        field: field.into(),
        message,
    };
    let on = parent.unwrap_or(ROOT);
    super::check_slug("slug", slug)?;
    if display_name.trim().is_empty() || display_name.len() > 200 {
        return Err(invalid("display_name", "must be 1 to 200 bytes".into()));
    }
    let catalog = ctx.evaluator.roles().catalog();
    if !catalog.uses_kind(kind) {
        return Err(invalid(
            "kind",
            format!("the {} catalog has no {}s", catalog.name, kind.as_str()),
        ));
    }
    let parent_kind = match parent {
        None => None,
        Some(p) => match ctx.store.resource(p).await? {
            Some(r) if r.deleted_at.is_none() => Some(kind_of(&r)?),
            _ => return Err(AccessError::NotFound(p.to_owned())),
        },
    };
    if !kind.allowed_under(parent_kind) {
        return Err(invalid(
            "kind",
            format!("a {} cannot be created under {on}", kind.as_str()),
        ));
    }
    let name = match parent {
        None => format!("{}/{slug}", kind.segment()),
        Some(p) => format!("{p}/{}/{slug}", kind.segment()),
    };
    let now = ctx.now;
    let row = ResourceRow {
        id: uuid::Uuid::new_v4().to_string(),
        name: name.clone(),
        kind: kind.as_str().into(),
        parent: parent.map(str::to_owned),
        slug: slug.into(),
        display_name: display_name.into(),
        created_at: now,
        deleted_at: None,
    };
    let mut tx = ctx.store.begin().await?;
    let seq = store::bump_change(&mut tx, "resource", &name).await?;
    if let Some(p) = parent
        && !iam::resource_live_in(&mut tx, p).await?
    {
        return Err(AccessError::NotFound(p.to_owned()));
    }
    iam::insert_resource(&mut tx, &row)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => AccessError::Refused(format!(
                "{name} exists or was used before; names are never reused"
            )),
            e => e.into(),
        })?;
    let mut created = vec![name.clone()];
    if kind == Kind::Organization {
        iam::insert_binding(
            &mut tx,
            &BindingRow {
                id: uuid::Uuid::new_v4().to_string(),
                scope: name.clone(),
                role: catalog.owner_role.clone(),
                principal_kind: actor.principal.kind.as_str().into(),
                principal_id: actor.principal.id.clone(),
                expires_at: None,
            },
        )
        .await?;
        if let Some(d) = &catalog.on_organization_create.default_project {
            let project = ResourceRow {
                id: uuid::Uuid::new_v4().to_string(),
                name: format!("{name}/projects/{}", d.slug),
                kind: Kind::Project.as_str().into(),
                parent: Some(name.clone()),
                slug: d.slug.clone(),
                display_name: d.display_name.clone(),
                created_at: now,
                deleted_at: None,
            };
            iam::insert_resource(&mut tx, &project).await?;
            created.push(project.name);
        }
    }
    for n in &created {
        audit::append(
            &mut tx,
            seq,
            audit::NewAuditEvent {
                actor: &actor.label,
                action: "resource.create",
                target: n,
                scope: n,
                before: None,
                after: Some(json!({ "name": n, "display_name": display_name })),
            },
        )
        .await?;
    }
    tx.commit().await.map_err(StoreError::from)?;
    sync::announce(ctx.ephemeral, seq).await;
    Ok(row)
}

/// Changes a resource's display name (`resourcemanager.<kind>.update`); its name and
/// slug never change.
pub async fn rename(
    ctx: &Ctx<'_>,
    actor: &Actor,
    name: &str,
    display_name: &str,
) -> Result<(), AccessError> {
    let parsed = names::parse(name).ok_or_else(|| AccessError::NotFound(name.to_owned()))?;
    ctx.require(
        actor,
        &format!("resourcemanager.{}.update", plural(parsed.kind)),
        name,
    )?;
    let display_name = display_name.trim();
    if display_name.is_empty() || display_name.len() > 200 {
        return Err(AccessError::Invalid {
            field: "display_name".into(),
            message: "must be 1 to 200 bytes".into(),
        });
    }
    let mut tx = ctx.store.begin().await?;
    let seq = store::bump_change(&mut tx, "resource", name).await?;
    if !iam::set_resource_display_name(&mut tx, name, display_name).await? {
        return Err(AccessError::NotFound(name.to_owned()));
    }
    super::finish(
        ctx,
        tx,
        seq,
        actor,
        &format!("{}.update", parsed.kind.as_str()),
        name,
        name,
        json!({ "display_name": display_name }),
    )
    .await
}

/// Deletes a resource with `resourcemanager.<kinds>.delete` on it; refused while it
/// has children. Its bindings go with it; its name stays reserved.
pub async fn delete(ctx: &Ctx<'_>, actor: &Actor, name: &str) -> Result<(), AccessError> {
    let parsed = names::parse(name).ok_or_else(|| AccessError::NotFound(name.to_owned()))?;
    ctx.require(
        actor,
        &format!("resourcemanager.{}.delete", plural(parsed.kind)),
        name,
    )?;
    let mut tx = ctx.store.begin().await?;
    let seq = store::bump_change(&mut tx, "resource", name).await?;
    let children = iam::live_children(&mut tx, name).await?;
    if children > 0 {
        return Err(AccessError::Refused(format!(
            "{name} still has {children} child resource(s); delete them first"
        )));
    }
    if !iam::delete_resource(&mut tx, name).await? {
        return Err(AccessError::NotFound(name.to_owned()));
    }
    audit::append(
        &mut tx,
        seq,
        audit::NewAuditEvent {
            actor: &actor.label,
            action: "resource.delete",
            target: name,
            scope: name,
            before: None,
            after: None,
        },
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    sync::announce(ctx.ephemeral, seq).await;
    Ok(())
}

//! IAM operations: each one checks its permission and the invariants of DESIGN.md
//! section 1 against the evaluator, then writes through the store in one
//! transaction with its audit event and a change-sequence bump, and tells other nodes.
//!
//! It sits between the HTTP handlers and the store; it knows nothing of HTTP. The
//! evaluator it is given may trail the store by one poll interval; concurrent edits
//! of one policy are caught by its etag.

pub mod accounts;
pub mod clients;
pub mod definitions;
pub mod federation;
pub mod groups;
pub mod invitations;
pub mod policy;
pub mod principals;
pub mod resources;

use serde::Serialize;

use crate::ephemeral::Ephemeral;
use crate::iam::Evaluator;
use crate::iam::evaluator::{PrincipalKind, PrincipalRef};
use crate::store::{Store, StoreError};

/// Why an operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// The caller lacks the operation's permission.
    #[error("{permission} on {resource} is required")]
    Forbidden {
        /// The permission.
        permission: String,
        /// Where.
        resource: String,
    },
    /// The granting rule refuses: the caller cannot give what it does not hold.
    #[error("{0}")]
    CannotGrant(String),
    /// The target does not exist.
    #[error("{0} does not exist")]
    NotFound(String),
    /// An input is invalid; `field` names it.
    #[error("{field}: {message}")]
    Invalid {
        /// The field, e.g. `bindings[2].members[0]`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The policy changed since the caller read it.
    #[error("the policy changed since it was read (stale etag)")]
    StaleEtag,
    /// An invariant refuses the change (last owner, protected binding).
    #[error("{0}")]
    Refused(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Something the caller should know about a change that was made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Warning {
    /// A deprecated role was bound.
    DeprecatedRole {
        /// The role.
        role: String,
        /// What to use instead.
        replacement: Option<String>,
        /// When it goes away.
        end_of_life: String,
    },
    /// The organization has only one owner.
    FewerThanTwoOwners {
        /// The organization.
        org: String,
    },
}

/// Who is acting: the principal, and how it is written in the audit log.
#[derive(Clone, Debug)]
pub struct Actor {
    /// The principal.
    pub principal: PrincipalRef,
    /// `user:<email>`, `serviceAccount:<client_id>` or `system:<command>`.
    pub label: String,
}

/// What an operation works with.
pub struct Ctx<'a> {
    /// The durable store.
    pub store: &'a Store,
    /// The current evaluator.
    pub evaluator: &'a Evaluator,
    /// Short-lived state, to announce changes.
    pub ephemeral: &'a Ephemeral,
    /// Unix seconds.
    pub now: i64,
}

impl Ctx<'_> {
    /// Requires `permission` on `resource` for the actor.
    pub fn require(
        &self,
        actor: &Actor,
        permission: &str,
        resource: &str,
    ) -> Result<(), AccessError> {
        let p = &actor.principal;
        if self
            .evaluator
            .check(p.kind, &p.id, permission, resource, self.now)
        {
            Ok(())
        } else {
            Err(AccessError::Forbidden {
                permission: permission.into(),
                resource: resource.into(),
            })
        }
    }

    /// Checks the last-owner rule for `orgs` after a change; warns on one owner left.
    fn keep_owners(
        &self,
        orgs: &[String],
        change: &crate::iam::evaluator::OwnerChange<'_>,
        warnings: &mut Vec<Warning>,
    ) -> Result<(), AccessError> {
        for org in orgs {
            match self.evaluator.org_owner_count(org, change) {
                0 => {
                    return Err(AccessError::Refused(format!(
                        "{org} would have no owner: it needs a direct, non-expiring {} binding to an active principal",
                        self.evaluator.roles().catalog().owner_role
                    )));
                }
                1 => warnings.push(Warning::FewerThanTwoOwners { org: org.clone() }),
                _ => {}
            }
        }
        Ok(())
    }
}

/// Checks a slug, naming `field` when it is invalid.
pub(crate) fn check_slug(field: &str, slug: &str) -> Result<(), AccessError> {
    if crate::iam::names::valid_slug(slug) {
        Ok(())
    } else {
        Err(AccessError::Invalid {
            field: field.into(),
            message: format!("{slug:?} must match [a-z0-9][a-z0-9-]{{1,62}}"),
        })
    }
}

/// The last-owner rule again, on the rows of the transaction that made the change
/// (after it): the evaluator may trail the store, this cannot.
pub(crate) async fn keep_owners_in(
    tx: &mut sqlx::AnyConnection,
    owner_role: &str,
    orgs: &[String],
) -> Result<(), AccessError> {
    for org in orgs {
        let is_org = crate::iam::names::parse(org)
            .is_some_and(|p| p.kind == crate::iam::names::Kind::Organization);
        if is_org && crate::store::directory::owner_count_in(tx, org, owner_role).await? == 0 {
            return Err(AccessError::Refused(format!(
                "{org} would have no owner: it needs a direct, non-expiring {owner_role} binding to an active principal"
            )));
        }
    }
    Ok(())
}

/// Parses a member as written in policies: `user:<email>`,
/// `serviceAccount:<client_id>` or `group:orgs/<org>/groups/<slug>`.
pub fn parse_member(member: &str) -> Option<(PrincipalKind, &str)> {
    let (kind, rest) = member.split_once(':')?;
    let kind = PrincipalKind::parse(kind)?;
    (!rest.is_empty()).then_some((kind, rest))
}

/// Appends the operation's audit event, commits and tells other nodes.
#[allow(clippy::too_many_arguments)]
async fn finish(
    ctx: &Ctx<'_>,
    mut tx: crate::store::Tx,
    seq: i64,
    actor: &Actor,
    action: &str,
    target: &str,
    scope: &str,
    after: serde_json::Value,
) -> Result<(), AccessError> {
    crate::store::audit::append(
        &mut tx,
        seq,
        crate::store::audit::NewAuditEvent {
            actor: &actor.label,
            action,
            target,
            scope,
            before: None,
            after: Some(after),
        },
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    crate::server::sync::announce(ctx.ephemeral, seq).await;
    Ok(())
}

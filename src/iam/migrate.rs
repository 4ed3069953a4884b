//! Role migration: rewriting bindings of deprecated roles to their replacements
//! (seed 001: `organization.owner`, `organization.admin`, `project.owner`,
//! `project.admin` to `owner`; `project.member` to `editor`; `project.auditor` to
//! `viewer`). A migration can widen access (an organization-only admin becomes an
//! inheriting owner), so the plan lists every widening before anything is applied.

use serde::Serialize;

use super::catalog::Roles;
use super::evaluator::{BindingInput, PrincipalRef};

/// One binding to rewrite.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Step {
    /// The binding's id.
    pub binding: String,
    /// Who holds it.
    pub principal: PrincipalRef,
    /// Where.
    pub scope: String,
    /// The deprecated role.
    pub from: String,
    /// Its replacement.
    pub to: String,
    /// The replacement reaches below the scope and the old role did not.
    pub widens_reach: bool,
    /// Permissions the replacement grants that the old role did not.
    pub added_permissions: Vec<String>,
    /// The principal already holds the replacement there: the old binding is removed.
    pub duplicate: bool,
}

impl Step {
    /// Whether applying the step gives the principal more access than it had.
    pub fn widens(&self) -> bool {
        self.widens_reach || !self.added_permissions.is_empty()
    }
}

/// The plan for `bindings` under `roles`: one step per binding of a deprecated role
/// that has a replacement.
pub fn plan(roles: &Roles, bindings: &[BindingInput]) -> Vec<Step> {
    let mut steps = Vec::new();
    for b in bindings {
        let Some(old) = roles.get(&b.role) else {
            continue;
        };
        let Some(to) = old
            .def
            .deprecated
            .as_ref()
            .and_then(|d| d.replacement.clone())
        else {
            continue;
        };
        let Some(new) = roles.get(&to) else { continue };
        let added = new
            .perms
            .ids()
            .filter(|p| !old.perms.contains(*p))
            .filter_map(|p| roles.registry().get(p).map(|p| p.name.clone()))
            .collect();
        let duplicate = bindings
            .iter()
            .any(|o| o.role == to && o.scope == b.scope && o.principal == b.principal);
        steps.push(Step {
            binding: b.id.clone(),
            principal: b.principal.clone(),
            scope: b.scope.clone(),
            from: b.role.clone(),
            to,
            widens_reach: new.inherits() && !old.inherits(),
            added_permissions: added,
            duplicate,
        });
    }
    steps
}

//! The `roles` claim (DESIGN.md section 2): `"<role>@<scope>"` strings, `/*` after
//! the scope of an inheriting role, `*` for the instance root; groups expanded,
//! expired bindings left out.
//!
//! The claim is narrowed to the bindings that reach a requested resource or lie
//! beneath it (`roles:<name>` scopes), and always to the subtree of the resource the
//! client is registered under. It is bounded at 8 KiB: entries covered by an
//! inheriting entry above them are dropped first, and if it is still too large the
//! request fails (`invalid_scope`) rather than carry a truncated claim.

use std::collections::HashMap;

use super::evaluator::{Evaluator, PrincipalKind};
use super::names::{self, ROOT};

/// The largest claim, in bytes of its JSON array.
pub const MAX_CLAIM_BYTES: usize = 8192;

/// A built claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// The entries, sorted by scope then role.
    pub roles: Vec<String>,
    /// The earliest expiry among the bindings it carries: a token carrying it must
    /// not outlive that.
    pub expires_at: Option<i64>,
}

/// Why the claim cannot be built; both are `invalid_scope` at the OAuth endpoints.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClaimError {
    /// A `roles:<name>` outside the client's subtree.
    #[error("roles:{requested} is outside {client_root}, where the client is registered")]
    OutsideClient {
        /// The requested resource.
        requested: String,
        /// The client's resource.
        client_root: String,
    },
    /// Too large even after dropping covered entries.
    #[error(
        "the roles claim would be {bytes} bytes (limit {MAX_CLAIM_BYTES}); request roles:<resource> to narrow it"
    )]
    TooLarge {
        /// Its size.
        bytes: usize,
    },
}

struct Entry<'a> {
    role: u32,
    scope: &'a str,
    inherits: bool,
    expires_at: i64,
}

impl Entry<'_> {
    fn text(&self, roles: &super::catalog::Roles) -> String {
        let id = &roles.at(self.role).def.id;
        let mut s = String::with_capacity(id.len() + self.scope.len() + 3);
        s.push_str(id);
        s.push('@');
        s.push_str(self.scope);
        if self.inherits && self.scope != ROOT {
            s.push_str("/*");
        }
        s
    }

    fn json_len(&self, roles: &super::catalog::Roles) -> usize {
        // "id@scope/*" plus the comma; ids and names need no escaping
        let id = roles.at(self.role).def.id.len();
        id + 1
            + self.scope.len()
            + if self.inherits && self.scope != ROOT {
                2
            } else {
                0
            }
            + 3
    }
}

/// Builds the claim for a principal. `narrow` are the `roles:<name>` scopes asked
/// for; `client_root` is the resource the client is registered under (`*` for the
/// instance).
pub fn roles_claim(
    ev: &Evaluator,
    kind: PrincipalKind,
    id: &str,
    narrow: &[&str],
    client_root: &str,
    now: i64,
) -> Result<Claim, ClaimError> {
    for n in narrow {
        if !names::within(n, client_root) {
            return Err(ClaimError::OutsideClient {
                requested: (*n).to_owned(),
                client_root: client_root.to_owned(),
            });
        }
    }
    let filters: Vec<&str> = if narrow.is_empty() {
        if client_root == ROOT {
            Vec::new()
        } else {
            vec![client_root]
        }
    } else {
        narrow.to_vec()
    };
    let roles = ev.roles();
    // (role, scope) -> entry; a duplicate (direct and via a group) keeps the later expiry
    let mut entries: HashMap<(u32, &str), Entry<'_>> = HashMap::new();
    for (b, _) in ev.grants_of(kind, id, now) {
        let (role, scope, expires_at) = ev.binding_parts(b);
        let inherits = roles.at(role).inherits();
        let keep = filters.is_empty()
            || filters
                .iter()
                .any(|f| names::reaches(scope, inherits, f) || names::within(scope, f));
        if !keep {
            continue;
        }
        entries
            .entry((role, scope))
            .and_modify(|e| e.expires_at = e.expires_at.max(expires_at))
            .or_insert(Entry {
                role,
                scope,
                inherits,
                expires_at,
            });
    }
    let mut list: Vec<Entry<'_>> = entries.into_values().collect();
    let size = |l: &[Entry<'_>]| 1 + l.iter().map(|e| e.json_len(roles)).sum::<usize>();
    if size(&list) > MAX_CLAIM_BYTES {
        list = drop_covered(list, roles);
        let bytes = size(&list);
        if bytes > MAX_CLAIM_BYTES {
            return Err(ClaimError::TooLarge { bytes });
        }
    }
    list.sort_by(|a, b| {
        (a.scope, &roles.at(a.role).def.id).cmp(&(b.scope, &roles.at(b.role).def.id))
    });
    let expires_at = list
        .iter()
        .map(|e| e.expires_at)
        .min()
        .filter(|e| *e != i64::MAX);
    Ok(Claim {
        roles: list.iter().map(|e| e.text(roles)).collect(),
        expires_at,
    })
}

/// Drops entries whose access an inheriting entry at or above their scope already
/// gives (its permissions include theirs), keeping the claim's meaning.
fn drop_covered<'a>(mut list: Vec<Entry<'a>>, roles: &super::catalog::Roles) -> Vec<Entry<'a>> {
    // Broader candidates first: shorter scopes, then more permissions.
    list.sort_by_key(|e| {
        (
            e.scope.len(),
            std::cmp::Reverse(roles.at(e.role).perms.ids().count()),
        )
    });
    let mut kept: Vec<Entry<'a>> = Vec::with_capacity(list.len());
    for e in list {
        let covered = kept.iter().any(|k| {
            k.inherits
                && names::within(e.scope, k.scope)
                && (k.scope != e.scope || !e.inherits || k.role != e.role)
                && roles.at(e.role).perms.is_subset(&roles.at(k.role).perms)
                && k.expires_at >= e.expires_at
        });
        if !covered {
            kept.push(e);
        }
    }
    kept
}

/// How a resource server decides offline (DESIGN.md section 2): whether any entry of a
/// `roles` claim names a role holding `permission` whose scope reaches `resource`
/// (`<scope>/*` reaches the scope and everything beneath it, `<scope>` that resource
/// alone, `*` everything). Entries with roles the catalog lacks grant nothing.
pub fn claim_allows(
    roles: &super::catalog::Roles,
    entries: &[String],
    permission: &str,
    resource: &str,
) -> bool {
    let Some(perm) = roles.registry().id(permission) else {
        return false;
    };
    entries.iter().any(|entry| {
        let Some((role, scope)) = entry.split_once('@') else {
            return false;
        };
        let Some(role) = roles.get(role) else {
            return false;
        };
        if !role.perms.contains(perm) {
            return false;
        }
        match scope.strip_suffix("/*") {
            _ if scope == ROOT => true,
            Some(base) => names::within(resource, base),
            None => scope == resource,
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::iam::catalog::{Catalog, Roles};

    #[test]
    fn resource_servers_apply_the_reach_rule_to_the_claim() {
        let roles = Roles::resolve(
            Arc::new(Catalog::named("default").expect("catalog")),
            &[],
            &[],
        )
        .expect("roles");
        let alice = vec!["owner@orgs/test/*".to_string()];
        let bob = vec![
            "organization.member@orgs/test".to_string(),
            "project.member@orgs/test/projects/backend".to_string(),
        ];
        let root = vec!["viewer@*".to_string()];
        let cases: &[(&[String], &str, &str, bool)] = &[
            (
                &alice,
                "iam.policies.set",
                "orgs/test/projects/backend/buckets/logs",
                true,
            ),
            (&alice, "iam.policies.set", "orgs/test", true),
            (&alice, "iam.policies.set", "orgs/testing", false),
            (&alice, "iam.policies.set", "orgs/testing/projects/x", false),
            (
                &bob,
                "resourcemanager.projects.update",
                "orgs/test/projects/backend",
                true,
            ),
            (
                &bob,
                "resourcemanager.projects.update",
                "orgs/test/projects/backend/envs/dev",
                false,
            ),
            (
                &bob,
                "resourcemanager.projects.update",
                "orgs/test/projects/frontend",
                false,
            ),
            (
                &root,
                "resourcemanager.projects.get",
                "orgs/anything/projects/x",
                true,
            ),
            (
                &root,
                "resourcemanager.projects.delete",
                "orgs/anything",
                false,
            ),
            (&alice, "no.such.permission", "orgs/test", false),
        ];
        for (entries, perm, resource, want) in cases {
            assert_eq!(
                claim_allows(&roles, entries, perm, resource),
                *want,
                "{entries:?} {perm} {resource}"
            );
        }
        let junk = vec!["no-at-sign".to_string(), "ghost@orgs/test/*".to_string()];
        assert!(!claim_allows(
            &roles,
            &junk,
            "iam.policies.set",
            "orgs/test"
        ));
    }
}

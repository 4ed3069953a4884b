//! The evaluator: every binding, group membership and principal's state in memory,
//! indexed by principal (for checks and claims) and by scope (for "who holds what").
//! Pure and immutable: a change builds a new one, which readers pick up whole.
//!
//! A check looks at the bindings of the principal and of its groups only, so its cost
//! does not grow with unrelated bindings; answering "why" (the granting bindings)
//! walks the same short list.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;

use super::catalog::Roles;
use super::names;
use super::permissions::PermSet;

/// What kind of principal a binding names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum PrincipalKind {
    /// A human.
    #[serde(rename = "user")]
    User,
    /// A non-human client.
    #[serde(rename = "serviceAccount")]
    ServiceAccount,
    /// A set of users and service accounts of one organization.
    #[serde(rename = "group")]
    Group,
}

impl PrincipalKind {
    /// The stored and written form.
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::User => "user",
            PrincipalKind::ServiceAccount => "serviceAccount",
            PrincipalKind::Group => "group",
        }
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<PrincipalKind> {
        Some(match s {
            "user" => PrincipalKind::User,
            "serviceAccount" => PrincipalKind::ServiceAccount,
            "group" => PrincipalKind::Group,
            _ => return None,
        })
    }

    fn slot(self) -> usize {
        self as usize
    }
}

/// A principal by kind and id.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct PrincipalRef {
    /// Its kind.
    pub kind: PrincipalKind,
    /// Its id.
    pub id: String,
}

impl PrincipalRef {
    /// A user.
    pub fn user(id: impl Into<String>) -> PrincipalRef {
        PrincipalRef {
            kind: PrincipalKind::User,
            id: id.into(),
        }
    }
    /// A service account.
    pub fn service_account(id: impl Into<String>) -> PrincipalRef {
        PrincipalRef {
            kind: PrincipalKind::ServiceAccount,
            id: id.into(),
        }
    }
    /// A group.
    pub fn group(id: impl Into<String>) -> PrincipalRef {
        PrincipalRef {
            kind: PrincipalKind::Group,
            id: id.into(),
        }
    }
}

/// A principal as loaded: users are active once verified and while not disabled;
/// service accounts while not disabled; groups always (they count by members).
#[derive(Clone, Debug)]
pub struct PrincipalInput {
    /// Who.
    pub principal: PrincipalRef,
    /// Whether it may hold access now.
    pub active: bool,
}

/// A group membership as loaded.
#[derive(Clone, Debug)]
pub struct MembershipInput {
    /// The group's id.
    pub group: String,
    /// The member (a user or a service account).
    pub member: PrincipalRef,
}

/// A binding as loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindingInput {
    /// Its id (a UUID).
    pub id: String,
    /// The resource name it is bound on; `*` for the root.
    pub scope: String,
    /// The role id.
    pub role: String,
    /// Who holds it.
    pub principal: PrincipalRef,
    /// Unix seconds after which it no longer grants.
    pub expires_at: Option<i64>,
}

/// The data could not be loaded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LoadError {
    /// A stored binding uses a role the active catalog lacks.
    #[error("binding {binding} uses role {role:?}, which the active catalog lacks")]
    UnknownRole {
        /// The binding's id.
        binding: String,
        /// The role.
        role: String,
    },
}

const NEVER: i64 = i64::MAX;

struct Binding {
    id: u128,
    scope: u32,
    role: u32,
    principal: u32,
    expires_at: i64,
}

struct Node {
    kind: PrincipalKind,
    id: Box<str>,
    active: bool,
    groups: Vec<u32>,
    members: Vec<u32>,
    bindings: Vec<u32>,
}

/// A binding that grants, as answered to "why".
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Grant {
    /// The binding's id.
    pub binding: String,
    /// Its role.
    pub role: String,
    /// Its scope.
    pub scope: String,
    /// Who holds it: the principal itself or the group it is in.
    pub holder: PrincipalRef,
    /// When it stops granting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

/// Who holds which role on a resource, as answered by [`Evaluator::holders`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Holder {
    /// The principal that has the access (group members expanded).
    pub principal: PrincipalRef,
    /// The binding that gives it.
    #[serde(flatten)]
    pub grant: Grant,
    /// Whether the binding sits on an ancestor.
    pub inherited: bool,
}

/// Why a grant is refused by the granting rule.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GrantError {
    /// The role does not exist.
    #[error("unknown role {0:?}")]
    UnknownRole(String),
    /// The granter lacks a permission of the role somewhere the binding would reach.
    #[error(
        "granting {role} on {scope} needs {permission} on {reach}, which the granter does not hold"
    )]
    Missing {
        /// The role being granted.
        role: String,
        /// Where.
        scope: String,
        /// The first missing permission.
        permission: String,
        /// Where it is missing: the scope, or the scope and everything beneath it.
        reach: String,
    },
}

/// A proposed change, for the last-owner rule.
#[derive(Clone, Debug, Default)]
pub struct OwnerChange<'a> {
    /// The organization's own policy as it would be written (replacing its bindings).
    pub policy: Option<&'a [BindingInput]>,
    /// Principals that would be deleted or disabled.
    pub removed: &'a [PrincipalRef],
    /// Group memberships that would end: (group id, member).
    pub removed_members: &'a [(String, PrincipalRef)],
}

/// The evaluator.
pub struct Evaluator {
    pub(super) roles: Arc<Roles>,
    lookup: [HashMap<Box<str>, u32>; 3],
    nodes: Vec<Node>,
    bindings: Vec<Binding>,
    scopes: Vec<Box<str>>,
    scope_ids: HashMap<Box<str>, u32>,
    by_scope: Vec<Vec<u32>>,
}

fn parse_id(id: &str) -> u128 {
    uuid::Uuid::parse_str(id)
        .map(|u| u.as_u128())
        .unwrap_or_else(|_| {
            // Not a UUID (never written by gatehouse): keep a stable stand-in.
            let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, id.as_bytes());
            u128::from_be_bytes(d.as_ref()[..16].try_into().unwrap_or([0; 16]))
        })
}

impl Evaluator {
    /// Builds the evaluator. Principals referenced by memberships or bindings but not
    /// listed are treated as inactive (they hold nothing).
    pub fn build(
        roles: Arc<Roles>,
        principals: &[PrincipalInput],
        memberships: &[MembershipInput],
        bindings: &[BindingInput],
    ) -> Result<Evaluator, LoadError> {
        let mut ev = Evaluator {
            roles,
            lookup: [HashMap::new(), HashMap::new(), HashMap::new()],
            nodes: Vec::with_capacity(principals.len()),
            bindings: Vec::with_capacity(bindings.len()),
            scopes: Vec::new(),
            scope_ids: HashMap::new(),
            by_scope: Vec::new(),
        };
        for p in principals {
            let n = ev.node(&p.principal);
            ev.nodes[n as usize].active = p.active || p.principal.kind == PrincipalKind::Group;
        }
        for m in memberships {
            let g = ev.node(&PrincipalRef::group(m.group.clone()));
            let member = ev.node(&m.member);
            ev.nodes[g as usize].members.push(member);
            ev.nodes[member as usize].groups.push(g);
        }
        for b in bindings {
            let role = ev
                .roles
                .index(&b.role)
                .ok_or_else(|| LoadError::UnknownRole {
                    binding: b.id.clone(),
                    role: b.role.clone(),
                })?;
            let principal = ev.node(&b.principal);
            let scope = ev.scope(&b.scope);
            let idx = ev.bindings.len() as u32;
            ev.bindings.push(Binding {
                id: parse_id(&b.id),
                scope,
                role,
                principal,
                expires_at: b.expires_at.unwrap_or(NEVER),
            });
            ev.nodes[principal as usize].bindings.push(idx);
            ev.by_scope[scope as usize].push(idx);
        }
        Ok(ev)
    }

    fn node(&mut self, p: &PrincipalRef) -> u32 {
        if let Some(n) = self.lookup[p.kind.slot()].get(p.id.as_str()) {
            return *n;
        }
        let n = self.nodes.len() as u32;
        self.nodes.push(Node {
            kind: p.kind,
            id: p.id.as_str().into(),
            active: p.kind == PrincipalKind::Group,
            groups: Vec::new(),
            members: Vec::new(),
            bindings: Vec::new(),
        });
        self.lookup[p.kind.slot()].insert(p.id.as_str().into(), n);
        n
    }

    fn scope(&mut self, s: &str) -> u32 {
        if let Some(i) = self.scope_ids.get(s) {
            return *i;
        }
        let i = self.scopes.len() as u32;
        self.scopes.push(s.into());
        self.scope_ids.insert(s.into(), i);
        self.by_scope.push(Vec::new());
        i
    }

    /// The resolved roles it evaluates with.
    pub fn roles(&self) -> &Arc<Roles> {
        &self.roles
    }

    /// How many bindings it holds.
    pub fn binding_count(&self) -> usize {
        self.bindings.len()
    }

    fn find(&self, kind: PrincipalKind, id: &str) -> Option<u32> {
        self.lookup[kind.slot()].get(id).copied()
    }

    /// Every (binding, holder) that applies to an active principal: its own and those
    /// of its groups, unexpired at `now`.
    pub(super) fn grants_of(
        &self,
        kind: PrincipalKind,
        id: &str,
        now: i64,
    ) -> impl Iterator<Item = (u32, u32)> + '_ {
        let node = self
            .find(kind, id)
            .filter(|n| self.nodes[*n as usize].active && kind != PrincipalKind::Group);
        node.into_iter()
            .flat_map(move |n| {
                let own = self.nodes[n as usize].bindings.iter().map(move |b| (*b, n));
                let via = self.nodes[n as usize].groups.iter().flat_map(move |g| {
                    self.nodes[*g as usize]
                        .bindings
                        .iter()
                        .map(move |b| (*b, *g))
                });
                own.chain(via)
            })
            .filter(move |(b, _)| self.bindings[*b as usize].expires_at > now)
    }

    pub(super) fn binding_parts(&self, b: u32) -> (u32, &str, i64) {
        let b = &self.bindings[b as usize];
        (b.role, &self.scopes[b.scope as usize], b.expires_at)
    }

    fn grant(&self, b: u32, holder: u32) -> Grant {
        let bind = &self.bindings[b as usize];
        let node = &self.nodes[holder as usize];
        Grant {
            binding: uuid::Uuid::from_u128(bind.id).to_string(),
            role: self.roles.at(bind.role).def.id.clone(),
            scope: self.scopes[bind.scope as usize].to_string(),
            holder: PrincipalRef {
                kind: node.kind,
                id: node.id.to_string(),
            },
            expires_at: (bind.expires_at != NEVER).then_some(bind.expires_at),
        }
    }

    fn grants(&self, b: u32, perm: u32, resource: &str) -> bool {
        let bind = &self.bindings[b as usize];
        let role = self.roles.at(bind.role);
        role.perms.contains(perm)
            && names::reaches(&self.scopes[bind.scope as usize], role.inherits(), resource)
    }

    /// Whether the principal holds `permission` on `resource` at `now`.
    pub fn check(
        &self,
        kind: PrincipalKind,
        id: &str,
        permission: &str,
        resource: &str,
        now: i64,
    ) -> bool {
        let Some(perm) = self.roles.registry().id(permission) else {
            return false;
        };
        self.grants_of(kind, id, now)
            .any(|(b, _)| self.grants(b, perm, resource))
    }

    /// The bindings that give the principal `permission` on `resource` (empty: denied).
    pub fn explain(
        &self,
        kind: PrincipalKind,
        id: &str,
        permission: &str,
        resource: &str,
        now: i64,
    ) -> Vec<Grant> {
        let Some(perm) = self.roles.registry().id(permission) else {
            return Vec::new();
        };
        self.grants_of(kind, id, now)
            .filter(|(b, _)| self.grants(*b, perm, resource))
            .map(|(b, h)| self.grant(b, h))
            .collect()
    }

    /// The roles the principal holds on `resource`, with the bindings that give them.
    pub fn effective_roles(
        &self,
        kind: PrincipalKind,
        id: &str,
        resource: &str,
        now: i64,
    ) -> Vec<Grant> {
        self.grants_of(kind, id, now)
            .filter(|(b, _)| {
                let (role, scope, _) = self.binding_parts(*b);
                names::reaches(scope, self.roles.at(role).inherits(), resource)
            })
            .map(|(b, h)| self.grant(b, h))
            .collect()
    }

    /// Who holds which role on `resource`, inherited bindings included and groups
    /// expanded to their active members; sorted by principal, then role.
    pub fn holders(&self, resource: &str, now: i64) -> Vec<Holder> {
        let mut out = Vec::new();
        for scope in names::scopes_reaching(resource) {
            let Some(s) = self.scope_ids.get(scope) else {
                continue;
            };
            for b in &self.by_scope[*s as usize] {
                let bind = &self.bindings[*b as usize];
                let role = self.roles.at(bind.role);
                if bind.expires_at <= now || !names::reaches(scope, role.inherits(), resource) {
                    continue;
                }
                let holder = &self.nodes[bind.principal as usize];
                let inherited = scope != resource;
                let members: Vec<u32> = if holder.kind == PrincipalKind::Group {
                    holder.members.clone()
                } else {
                    vec![bind.principal]
                };
                for m in members {
                    let node = &self.nodes[m as usize];
                    if node.active {
                        out.push(Holder {
                            principal: PrincipalRef {
                                kind: node.kind,
                                id: node.id.to_string(),
                            },
                            grant: self.grant(*b, bind.principal),
                            inherited,
                        });
                    }
                }
            }
        }
        out.sort_by(|a, b| {
            (&a.principal, &a.grant.role, &a.grant.scope).cmp(&(
                &b.principal,
                &b.grant.role,
                &b.grant.scope,
            ))
        });
        out
    }

    /// The permissions `p` holds on `scope` and, with `beneath`, on everything beneath
    /// it too (only inheriting bindings at the scope or above give those).
    pub fn held(&self, p: &PrincipalRef, scope: &str, beneath: bool, now: i64) -> PermSet {
        let mut held = PermSet::default();
        for (b, _) in self.grants_of(p.kind, &p.id, now) {
            let (r, s, _) = self.binding_parts(b);
            let r = self.roles.at(r);
            let covers = if beneath {
                r.inherits() && names::within(scope, s)
            } else {
                names::reaches(s, r.inherits(), scope)
            };
            if covers {
                held.union_with(&r.perms);
            }
        }
        held
    }

    /// Every unexpired binding that applies to `p`, its own and its groups', whether
    /// or not `p` is active now (what it would hold once enabled again).
    pub fn grants_for(&self, p: &PrincipalRef, now: i64) -> Vec<Grant> {
        let Some(n) = self.find(p.kind, &p.id) else {
            return Vec::new();
        };
        let node = &self.nodes[n as usize];
        let own = node.bindings.iter().map(|b| (*b, n));
        let via = node.groups.iter().flat_map(|g| {
            self.nodes[*g as usize]
                .bindings
                .iter()
                .map(move |b| (*b, *g))
        });
        own.chain(via)
            .filter(|(b, _)| self.bindings[*b as usize].expires_at > now)
            .map(|(b, h)| self.grant(b, h))
            .collect()
    }

    /// The granting rule: `granter` may bind `role` at `scope` only if it holds every
    /// permission of the role on every resource the binding would reach. For an
    /// inheriting role that is the scope and everything beneath it, which only an
    /// inheriting binding at the scope or above covers.
    pub fn can_grant(
        &self,
        granter: &PrincipalRef,
        role: &str,
        scope: &str,
        now: i64,
    ) -> Result<(), GrantError> {
        let target = self
            .roles
            .get(role)
            .ok_or_else(|| GrantError::UnknownRole(role.to_owned()))?;
        let held = self.held(granter, scope, target.inherits(), now);
        if target.perms.is_subset(&held) {
            return Ok(());
        }
        let missing = target
            .perms
            .ids()
            .find(|p| !held.contains(*p))
            .and_then(|p| self.roles.registry().get(p))
            .map(|p| p.name.clone())
            .unwrap_or_default();
        Err(GrantError::Missing {
            role: role.to_owned(),
            scope: scope.to_owned(),
            permission: missing,
            reach: if target.inherits() {
                format!("{scope} and everything beneath it")
            } else {
                scope.to_owned()
            },
        })
    }

    /// Adding a member to a group grants every binding of the group: the granting
    /// rule applies to each.
    pub fn can_add_member(
        &self,
        granter: &PrincipalRef,
        group: &str,
        now: i64,
    ) -> Result<(), GrantError> {
        let Some(g) = self.find(PrincipalKind::Group, group) else {
            return Ok(());
        };
        for b in &self.nodes[g as usize].bindings {
            let bind = &self.bindings[*b as usize];
            if bind.expires_at <= now {
                continue;
            }
            let role = &self.roles.at(bind.role).def.id;
            self.can_grant(granter, role, &self.scopes[bind.scope as usize], now)?;
        }
        Ok(())
    }

    /// The bindings held directly by a principal (for revocation and listing).
    pub fn bindings_of(&self, p: &PrincipalRef) -> Vec<Grant> {
        let Some(n) = self.find(p.kind, &p.id) else {
            return Vec::new();
        };
        self.nodes[n as usize]
            .bindings
            .iter()
            .map(|b| self.grant(*b, n))
            .collect()
    }

    /// Organizations where `p` holds the owner role on the organization itself,
    /// directly or through a group: the ones a change to `p` must keep owned.
    pub fn owned_orgs(&self, p: &PrincipalRef) -> Vec<String> {
        let Some(n) = self.find(p.kind, &p.id) else {
            return Vec::new();
        };
        let owner = self.roles.owner_index();
        let node = &self.nodes[n as usize];
        let mut orgs: Vec<String> = node
            .bindings
            .iter()
            .chain(
                node.groups
                    .iter()
                    .flat_map(|g| self.nodes[*g as usize].bindings.iter()),
            )
            .map(|b| &self.bindings[*b as usize])
            .filter(|b| b.role == owner)
            .map(|b| &self.scopes[b.scope as usize])
            .filter(|s| names::parse(s).is_some_and(|p| p.kind == names::Kind::Organization))
            .map(|s| s.to_string())
            .collect();
        orgs.sort();
        orgs.dedup();
        orgs
    }

    /// The members of a group.
    pub fn members(&self, group: &str) -> Vec<PrincipalRef> {
        let Some(g) = self.find(PrincipalKind::Group, group) else {
            return Vec::new();
        };
        self.nodes[g as usize]
            .members
            .iter()
            .map(|m| {
                let n = &self.nodes[*m as usize];
                PrincipalRef {
                    kind: n.kind,
                    id: n.id.to_string(),
                }
            })
            .collect()
    }

    fn active_after(&self, p: &PrincipalRef, change: &OwnerChange<'_>) -> bool {
        if change.removed.contains(p) {
            return false;
        }
        let Some(n) = self.find(p.kind, &p.id) else {
            return false;
        };
        let node = &self.nodes[n as usize];
        if p.kind != PrincipalKind::Group {
            return node.active;
        }
        node.members.iter().any(|m| {
            let member = &self.nodes[*m as usize];
            let r = PrincipalRef {
                kind: member.kind,
                id: member.id.to_string(),
            };
            member.active
                && !change.removed.contains(&r)
                && !change
                    .removed_members
                    .iter()
                    .any(|(g, mm)| g.as_str() == p.id && *mm == r)
        })
    }

    /// The last-owner rule: how many owners `org` would have after `change`. An owner
    /// is a direct, non-expiring binding of the catalog's owner role on the
    /// organization itself, to an active principal (a verified, enabled user, an
    /// enabled service account, or a group with at least one such member). Owners at
    /// the instance root do not count.
    pub fn org_owner_count(&self, org: &str, change: &OwnerChange<'_>) -> usize {
        let owner_role = &self.roles.catalog().owner_role;
        let mut owners: Vec<PrincipalRef> = match change.policy {
            Some(policy) => policy
                .iter()
                .filter(|b| b.scope == org && &b.role == owner_role && b.expires_at.is_none())
                .map(|b| b.principal.clone())
                .collect(),
            None => {
                let owner = self.roles.owner_index();
                self.scope_ids
                    .get(org)
                    .map(|s| {
                        self.by_scope[*s as usize]
                            .iter()
                            .map(|b| &self.bindings[*b as usize])
                            .filter(|b| b.role == owner && b.expires_at == NEVER)
                            .map(|b| {
                                let n = &self.nodes[b.principal as usize];
                                PrincipalRef {
                                    kind: n.kind,
                                    id: n.id.to_string(),
                                }
                            })
                            .collect()
                    })
                    .unwrap_or_default()
            }
        };
        owners.sort();
        owners.dedup();
        owners
            .iter()
            .filter(|p| self.active_after(p, change))
            .count()
    }
}

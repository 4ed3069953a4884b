//! The evaluator: every binding, group membership and principal's state in memory,
//! indexed by principal (for checks and claims) and by scope (for "who holds what").
//! Pure and immutable: a change builds a new one, which readers pick up whole. A small
//! change is applied to a copy ([`Evaluator::apply`]) instead of a rebuild from the
//! store, so a node follows a policy write on a large instance in well under a second.
//!
//! A check looks at the bindings of the principal and of its groups only, so its cost
//! does not grow with unrelated bindings; answering "why" (the granting bindings)
//! walks the same short list.

use std::collections::{HashMap, HashSet};
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

/// One principal as the store holds it now: replaces everything the evaluator knew
/// of it in [`Evaluator::apply`].
#[derive(Clone, Debug)]
pub struct PrincipalSlice {
    /// Who.
    pub principal: PrincipalRef,
    /// Whether it may hold access now; `None` once it no longer exists.
    pub active: Option<bool>,
    /// A user's or service account's groups; a group's members.
    pub related: Vec<PrincipalRef>,
    /// The bindings it holds directly.
    pub bindings: Vec<BindingInput>,
}

/// The bindings stored on a scope (with `subtree`, on it and everything beneath it)
/// as the store holds them now.
#[derive(Clone, Debug)]
pub struct ScopeSlice {
    /// The resource name.
    pub scope: String,
    /// Whether bindings beneath it are covered too.
    pub subtree: bool,
    /// Its bindings.
    pub bindings: Vec<BindingInput>,
}

/// What changed, as whole slices of the store.
#[derive(Clone, Debug, Default)]
pub struct Delta {
    /// Principals to replace.
    pub principals: Vec<PrincipalSlice>,
    /// Scopes whose bindings to replace.
    pub scopes: Vec<ScopeSlice>,
}

const NEVER: i64 = i64::MAX;

#[derive(Clone)]
struct Binding {
    id: u128,
    scope: u32,
    role: u32,
    principal: u32,
    expires_at: i64,
}

#[derive(Clone)]
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
#[derive(Clone)]
pub struct Evaluator {
    pub(super) roles: Arc<Roles>,
    lookup: [HashMap<Box<str>, u32>; 3],
    nodes: Vec<Node>,
    bindings: Vec<Binding>,
    scopes: Vec<Box<str>>,
    scope_ids: HashMap<Box<str>, u32>,
    by_scope: Vec<Vec<u32>>,
    /// Bindings replaced by [`Evaluator::apply`]: still in `bindings`, referenced by
    /// no node and no scope.
    dead: usize,
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
            dead: 0,
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
            let role = ev.role_of(b)?;
            ev.push_binding(b, role);
        }
        Ok(ev)
    }

    fn role_of(&self, b: &BindingInput) -> Result<u32, LoadError> {
        self.roles
            .index(&b.role)
            .ok_or_else(|| LoadError::UnknownRole {
                binding: b.id.clone(),
                role: b.role.clone(),
            })
    }

    fn push_binding(&mut self, b: &BindingInput, role: u32) {
        let principal = self.node(&b.principal);
        let scope = self.scope(&b.scope);
        let idx = self.bindings.len() as u32;
        self.bindings.push(Binding {
            id: parse_id(&b.id),
            scope,
            role,
            principal,
            expires_at: b.expires_at.unwrap_or(NEVER),
        });
        self.nodes[principal as usize].bindings.push(idx);
        self.by_scope[scope as usize].push(idx);
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
        self.bindings.len() - self.dead
    }

    /// How many replaced bindings still take memory (a rebuild frees them).
    pub fn dead_bindings(&self) -> usize {
        self.dead
    }

    /// A copy with `delta` applied: every binding of a listed principal or on a listed
    /// scope is replaced by the slice's, and each listed principal's state and
    /// memberships by the slice's. Nothing changes when a binding names a role the
    /// roles lack.
    pub fn apply(&self, delta: &Delta) -> Result<Evaluator, LoadError> {
        let mut seen = HashSet::new();
        let mut adds = Vec::new();
        let incoming = delta.principals.iter().flat_map(|p| &p.bindings);
        for b in incoming.chain(delta.scopes.iter().flat_map(|s| &s.bindings)) {
            if !seen.insert(b.id.as_str()) {
                continue;
            }
            adds.push((b, self.role_of(b)?));
        }
        let mut ev = self.clone();
        let mut removed: HashSet<u32> = HashSet::new();
        for p in &delta.principals {
            if let Some(n) = ev.find(p.principal.kind, &p.principal.id) {
                removed.extend(ev.nodes[n as usize].bindings.iter().copied());
            }
        }
        for s in &delta.scopes {
            let covered = |name: &str| {
                name == s.scope || (s.subtree && names::is_proper_ancestor(&s.scope, name))
            };
            for (i, name) in ev.scopes.iter().enumerate() {
                if covered(name) {
                    removed.extend(ev.by_scope[i].iter().copied());
                }
            }
        }
        let mut nodes = HashSet::new();
        let mut scopes = HashSet::new();
        for b in &removed {
            let bind = &ev.bindings[*b as usize];
            nodes.insert(bind.principal);
            scopes.insert(bind.scope);
        }
        for n in nodes {
            ev.nodes[n as usize]
                .bindings
                .retain(|b| !removed.contains(b));
        }
        for s in scopes {
            ev.by_scope[s as usize].retain(|b| !removed.contains(b));
        }
        ev.dead += removed.len();
        for p in &delta.principals {
            let n = ev.node(&p.principal);
            let group = p.principal.kind == PrincipalKind::Group;
            // As in a rebuild, groups count by their members alone.
            ev.nodes[n as usize].active = group || p.active == Some(true);
            let node = &mut ev.nodes[n as usize];
            let before = std::mem::take(if group {
                &mut node.members
            } else {
                &mut node.groups
            });
            for o in before {
                let other = &mut ev.nodes[o as usize];
                if group {
                    other.groups.retain(|g| *g != n);
                } else {
                    other.members.retain(|m| *m != n);
                }
            }
            for r in &p.related {
                let o = ev.node(r);
                let (g, m) = if group { (n, o) } else { (o, n) };
                if !ev.nodes[g as usize].members.contains(&m) {
                    ev.nodes[g as usize].members.push(m);
                    ev.nodes[m as usize].groups.push(g);
                }
            }
        }
        for (b, role) in adds {
            ev.push_binding(b, role);
        }
        Ok(ev)
    }

    /// Everything it holds in a canonical order: principals with their state and
    /// groups, and bindings. Two evaluators that answer alike have equal summaries.
    pub fn summary(&self) -> Vec<String> {
        let mut out = Vec::new();
        for n in &self.nodes {
            let mut groups: Vec<&str> = n
                .groups
                .iter()
                .map(|g| &*self.nodes[*g as usize].id)
                .collect();
            groups.sort();
            let holds = !n.bindings.is_empty() || !n.groups.is_empty() || !n.members.is_empty();
            if holds || (n.active && n.kind != PrincipalKind::Group) {
                out.push(format!(
                    "principal {}:{} active={} groups={groups:?}",
                    n.kind.as_str(),
                    n.id,
                    n.active
                ));
            }
            for b in &n.bindings {
                let g = self.grant(*b, self.bindings[*b as usize].principal);
                out.push(format!(
                    "binding {} {} {} {}:{} {:?}",
                    g.binding,
                    g.scope,
                    g.role,
                    g.holder.kind.as_str(),
                    g.holder.id,
                    g.expires_at
                ));
            }
        }
        let mut by_scope = 0;
        for list in &self.by_scope {
            by_scope += list.len();
        }
        out.push(format!(
            "bindings {} by scope {by_scope}",
            self.binding_count()
        ));
        out.sort();
        out
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iam::catalog::Catalog;

    /// A world as the store would hold it: the truth both evaluators are built from.
    #[derive(Clone, Default)]
    struct World {
        principals: Vec<PrincipalInput>,
        members: Vec<MembershipInput>,
        bindings: Vec<BindingInput>,
    }

    impl World {
        fn build(&self, roles: &Arc<Roles>) -> Evaluator {
            Evaluator::build(
                roles.clone(),
                &self.principals,
                &self.members,
                &self.bindings,
            )
            .expect("build")
        }

        fn slice(&self, p: &PrincipalRef) -> PrincipalSlice {
            let group = p.kind == PrincipalKind::Group;
            PrincipalSlice {
                principal: p.clone(),
                active: self
                    .principals
                    .iter()
                    .find(|x| &x.principal == p)
                    .map(|x| x.active),
                related: self
                    .members
                    .iter()
                    .filter_map(|m| match group {
                        true if m.group == p.id => Some(m.member.clone()),
                        false if &m.member == p => Some(PrincipalRef::group(m.group.clone())),
                        _ => None,
                    })
                    .collect(),
                bindings: self
                    .bindings
                    .iter()
                    .filter(|b| &b.principal == p)
                    .cloned()
                    .collect(),
            }
        }

        fn scope(&self, scope: &str, subtree: bool) -> ScopeSlice {
            ScopeSlice {
                scope: scope.into(),
                subtree,
                bindings: self
                    .bindings
                    .iter()
                    .filter(|b| {
                        b.scope == scope || (subtree && names::is_proper_ancestor(scope, &b.scope))
                    })
                    .cloned()
                    .collect(),
            }
        }
    }

    /// A small deterministic generator, so a failure names its seed.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    const SCOPES: [&str; 5] = [
        "orgs/acme",
        "orgs/acme/projects/web",
        "orgs/acme/projects/web/envs/prod",
        "orgs/acmex",
        "*",
    ];
    const ROLES: [&str; 3] = ["organization.owner", "project.member", "viewer"];

    fn principal(rng: &mut Rng) -> PrincipalRef {
        let i = rng.next(6);
        match rng.next(3) {
            0 => PrincipalRef::user(format!("u{i}")),
            1 => PrincipalRef::service_account(format!("s{i}")),
            _ => PrincipalRef::group(format!("g{}", i % 3)),
        }
    }

    /// Random writes, each applied as the delta a node would load for it, agree with a
    /// rebuild from the same truth after every step.
    #[test]
    fn applying_deltas_matches_a_rebuild() {
        let roles = Arc::new(
            Roles::resolve(
                Arc::new(Catalog::named("default").expect("catalog")),
                &[],
                &[],
            )
            .expect("roles"),
        );
        for seed in 1..=40u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let mut world = World::default();
            let mut ev = world.build(&roles);
            for step in 0..60 {
                let mut delta = Delta::default();
                match rng.next(6) {
                    // a principal appears, changes state or goes
                    0 => {
                        let p = principal(&mut rng);
                        world.principals.retain(|x| x.principal != p);
                        if rng.next(4) > 0 {
                            world.principals.push(PrincipalInput {
                                principal: p.clone(),
                                active: rng.next(2) == 0,
                            });
                        } else {
                            world.bindings.retain(|b| b.principal != p);
                            world.members.retain(|m| m.member != p && m.group != p.id);
                        }
                        delta.principals.push(world.slice(&p));
                    }
                    // a membership starts or ends
                    1 => {
                        let g = format!("g{}", rng.next(3));
                        let m = PrincipalRef::user(format!("u{}", rng.next(6)));
                        let had = world.members.iter().any(|x| x.group == g && x.member == m);
                        world.members.retain(|x| !(x.group == g && x.member == m));
                        if !had {
                            world.members.push(MembershipInput {
                                group: g.clone(),
                                member: m.clone(),
                            });
                        }
                        // a node loads the group's slice (members) or the member's
                        let p = match rng.next(2) {
                            0 => PrincipalRef::group(g),
                            _ => m,
                        };
                        delta.principals.push(world.slice(&p));
                    }
                    // a policy write replaces one scope's bindings
                    2 | 3 => {
                        let scope = SCOPES[rng.next(SCOPES.len())];
                        world.bindings.retain(|b| b.scope != scope);
                        for _ in 0..rng.next(4) {
                            let b = BindingInput {
                                id: uuid::Uuid::new_v4().to_string(),
                                scope: scope.into(),
                                role: ROLES[rng.next(ROLES.len())].into(),
                                principal: principal(&mut rng),
                                expires_at: (rng.next(3) == 0).then_some(1_000),
                            };
                            if !world.bindings.iter().any(|x| {
                                (&x.scope, &x.role, &x.principal)
                                    == (&b.scope, &b.role, &b.principal)
                            }) {
                                world.bindings.push(b);
                            }
                        }
                        delta.scopes.push(world.scope(scope, false));
                    }
                    // a resource and everything beneath it goes
                    4 => {
                        let scope = SCOPES[rng.next(2)];
                        world.bindings.retain(|b| !names::within(&b.scope, scope));
                        delta.scopes.push(world.scope(scope, true));
                    }
                    // several things at once, overlapping
                    _ => {
                        let p = principal(&mut rng);
                        world
                            .bindings
                            .retain(|b| b.principal != p || rng.next(2) == 0);
                        delta.principals.push(world.slice(&p));
                        delta
                            .scopes
                            .push(world.scope(SCOPES[rng.next(SCOPES.len())], false));
                        delta.principals.push(world.slice(&principal(&mut rng)));
                    }
                }
                ev = ev.apply(&delta).expect("apply");
                assert_eq!(
                    ev.summary(),
                    world.build(&roles).summary(),
                    "seed {seed}, step {step}"
                );
            }
        }
    }

    #[test]
    fn a_delta_with_an_unknown_role_changes_nothing() {
        let roles = Arc::new(
            Roles::resolve(
                Arc::new(Catalog::named("default").expect("catalog")),
                &[],
                &[],
            )
            .expect("roles"),
        );
        let world = World::default();
        let ev = world.build(&roles);
        let delta = Delta {
            scopes: vec![ScopeSlice {
                scope: "orgs/acme".into(),
                subtree: false,
                bindings: vec![BindingInput {
                    id: uuid::Uuid::new_v4().to_string(),
                    scope: "orgs/acme".into(),
                    role: "no.such.role".into(),
                    principal: PrincipalRef::user("u1"),
                    expires_at: None,
                }],
            }],
            ..Delta::default()
        };
        assert!(matches!(
            ev.apply(&delta),
            Err(LoadError::UnknownRole { .. })
        ));
        assert_eq!(ev.binding_count(), 0);
    }
}

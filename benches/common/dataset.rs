//! The generated IAM instance the `iam` and `admin` benchmarks share: at full size
//! 100,000 users in 100 organizations, 10,000 projects in folders three deep, 5,000
//! groups and about 1,000,000 bindings; the questions asked about it; and writing it
//! into a store.

use gatehouse::iam::evaluator::{BindingInput, MembershipInput, PrincipalInput, PrincipalRef};
use gatehouse::iam::permissions::Permission;
use gatehouse::store::directory::{self, GroupRow};
use gatehouse::store::iam::{self, BindingRow, UserRow};
use sqlx::AnyConnection;

/// Users at full size.
pub const USERS: usize = 100_000;
pub const USERS_PER_ORG: usize = 1_000;
pub const PROJECTS_PER_ORG: usize = 100;
pub const GROUPS_PER_ORG: usize = 50;
const MEMBERS_PER_GROUP: usize = 20;
const BINDINGS_PER_GROUP: usize = 20;

/// A deterministic xorshift generator.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

pub fn project(org: usize, p: usize) -> String {
    // folders three deep: a (4 per org) / b (5 per a) / c (5 per b), one project in each c... and more
    format!(
        "orgs/org-{org:03}/folders/a-{}/folders/b-{}/folders/c-{}/projects/p-{p:03}",
        p % 4,
        (p / 4) % 5,
        (p / 20) % 5
    )
}

pub fn folder_of(project: &str) -> &str {
    &project[..project.find("/projects/").unwrap_or(project.len())]
}

pub fn org_name(org: usize) -> String {
    format!("orgs/org-{org:03}")
}

/// The email of a generated user, as `POST /v1/check` names it (`user:<email>`).
pub fn email(user_id: &str) -> String {
    format!("{user_id}@bench.test")
}

pub const ROLES: &[&str] = &[
    "viewer",
    "editor",
    "object-storage.reader",
    "project.member",
    "owner",
];

/// The API whose permissions the `object-storage.*` roles grant, registered with the
/// instance.
pub const API: &str = "https://object-storage.bench.test";
pub const API_PERMISSIONS: &[&str] = &[
    "object-storage.buckets.read",
    "object-storage.buckets.create",
    "object-storage.objects.read",
];

pub fn api_permissions() -> Vec<Permission> {
    API_PERMISSIONS
        .iter()
        .map(|p| Permission {
            name: (*p).into(),
            description: String::new(),
        })
        .collect()
}

pub struct Group {
    pub id: String,
    pub org: usize,
}

pub struct Instance {
    pub users: usize,
    pub orgs: usize,
    pub principals: Vec<PrincipalInput>,
    pub groups: Vec<Group>,
    pub memberships: Vec<MembershipInput>,
    pub bindings: Vec<BindingInput>,
}

fn id(n: u128) -> String {
    uuid::Uuid::from_u128(n).to_string()
}

/// `users` users (a multiple of 1,000; [`USERS`] at full size) in `users / 1000`
/// organizations; each user has up to 9 direct bindings in its organization (about
/// 900,000 at full size; duplicates are skipped as the store would), each organization
/// 50 groups of 20 users with up to 20 bindings each (about 100,000); a principal
/// `heavy` with 1,000 bindings; `extra` more bindings go to principals never checked.
pub fn generate(users: usize, extra: usize) -> Instance {
    let orgs = users / USERS_PER_ORG;
    assert!(
        orgs > 0 && users.is_multiple_of(USERS_PER_ORG),
        "users: {users}"
    );
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut principals = Vec::with_capacity(users + 1);
    let mut groups = Vec::with_capacity(orgs * GROUPS_PER_ORG);
    let mut memberships = Vec::new();
    let mut bindings = Vec::with_capacity(users * 10 + extra + 1000);
    let mut n: u128 = 1;
    // the store keeps one binding per (scope, role, principal)
    let mut seen = std::collections::HashSet::new();
    for u in 0..users {
        principals.push(PrincipalInput {
            principal: PrincipalRef::user(format!("u{u}")),
            active: true,
        });
        let org = u % orgs;
        for _ in 0..9 {
            let p = project(org, rng.below(PROJECTS_PER_ORG));
            let scope = match rng.below(4) {
                0 => folder_of(&p).to_owned(),
                _ => p,
            };
            let role = ROLES[rng.below(ROLES.len() - 1)];
            if !seen.insert((scope.clone(), role, format!("u{u}"))) {
                continue;
            }
            bindings.push(BindingInput {
                id: id(n),
                scope,
                role: role.into(),
                principal: PrincipalRef::user(format!("u{u}")),
                expires_at: None,
            });
            n += 1;
        }
    }
    for org in 0..orgs {
        for g in 0..GROUPS_PER_ORG {
            let gid = format!("g{org}-{g}");
            groups.push(Group {
                id: gid.clone(),
                org,
            });
            for _ in 0..MEMBERS_PER_GROUP {
                let user = (rng.below(users / orgs)) * orgs + org;
                memberships.push(MembershipInput {
                    group: gid.clone(),
                    member: PrincipalRef::user(format!("u{user}")),
                });
            }
            for _ in 0..BINDINGS_PER_GROUP {
                let scope = project(org, rng.below(PROJECTS_PER_ORG));
                let role = ROLES[rng.below(ROLES.len())];
                if !seen.insert((scope.clone(), role, gid.clone())) {
                    continue;
                }
                bindings.push(BindingInput {
                    id: id(n),
                    scope,
                    role: role.into(),
                    principal: PrincipalRef::group(gid.clone()),
                    expires_at: None,
                });
                n += 1;
            }
        }
    }
    // the principal with 1,000 bindings, for the claim
    principals.push(PrincipalInput {
        principal: PrincipalRef::user("heavy"),
        active: true,
    });
    for i in 0..1000 {
        bindings.push(BindingInput {
            id: id(n),
            scope: project(i % orgs, (i / orgs) % PROJECTS_PER_ORG),
            role: ROLES[i % 4].into(),
            principal: PrincipalRef::user("heavy"),
            expires_at: None,
        });
        n += 1;
    }
    for i in 0..extra {
        bindings.push(BindingInput {
            id: id(n),
            scope: project(i % orgs, (i / orgs) % PROJECTS_PER_ORG),
            role: ROLES[i % ROLES.len()].into(),
            principal: PrincipalRef::service_account(format!("unrelated-{}", i % 500_000)),
            expires_at: None,
        });
        n += 1;
    }
    Instance {
        users,
        orgs,
        principals,
        groups,
        memberships,
        bindings,
    }
}

pub const PERMS: &[&str] = &[
    "object-storage.buckets.read",
    "resourcemanager.projects.update",
    "iam.policies.set",
    "object-storage.objects.read",
];

/// 10,000 (user id, permission, resource) questions about the users of an instance
/// of `users` users: a bucket in a random project of the user's organization.
pub fn queries(users: usize) -> Vec<(String, &'static str, String)> {
    let orgs = users / USERS_PER_ORG;
    let mut rng = Rng(42);
    (0..10_000)
        .map(|_| {
            let u = rng.below(users);
            let org = u % orgs;
            let resource = format!(
                "{}/buckets/b{}",
                project(org, rng.below(PROJECTS_PER_ORG)),
                rng.below(10)
            );
            (format!("u{u}"), PERMS[rng.below(PERMS.len())], resource)
        })
        .collect()
}

/// Writes the instance into a store in the transaction `tx`: the object-storage API
/// and its permissions, the users (verified, no password), the groups and their
/// members, and the bindings. Group names are `orgs/org-NNN/groups/<id>`.
pub async fn write(tx: &mut AnyConnection, i: &Instance) -> gatehouse::store::Result<()> {
    directory::register_api(tx, API, "object storage", &api_permissions()).await?;
    for p in &i.principals {
        iam::insert_user(
            tx,
            &UserRow {
                id: p.principal.id.clone(),
                email: email(&p.principal.id),
                display_name: String::new(),
                password_hash: None,
                email_verified: true,
                disabled: false,
            },
        )
        .await?;
    }
    for g in &i.groups {
        directory::insert_group(
            tx,
            &GroupRow {
                id: g.id.clone(),
                name: format!("{}/groups/{}", org_name(g.org), g.id),
                org: org_name(g.org),
                slug: g.id.clone(),
                display_name: g.id.clone(),
            },
        )
        .await?;
    }
    for m in &i.memberships {
        directory::add_member(tx, &m.group, &m.member).await?;
    }
    for b in &i.bindings {
        iam::insert_binding(
            tx,
            &BindingRow {
                id: b.id.clone(),
                scope: b.scope.clone(),
                role: b.role.clone(),
                principal_kind: b.principal.kind.as_str().into(),
                principal_id: b.principal.id.clone(),
                expires_at: b.expires_at,
            },
        )
        .await?;
    }
    Ok(())
}

//! Scenario tests written from the seeds' own text, one block per seed, and the
//! invariants of DESIGN.md section 1, each attacked.

use std::sync::Arc;

use super::catalog::{Catalog, Roles};
use super::claim::{ClaimError, MAX_CLAIM_BYTES, roles_claim};
use super::evaluator::{
    BindingInput, Evaluator, GrantError, LoadError, MembershipInput, OwnerChange, PrincipalInput,
    PrincipalKind as K, PrincipalRef,
};
use super::migrate;
use super::permissions::Permission;

const NOW: i64 = 1_000_000;

/// A small world: a catalog, principals, memberships and bindings.
struct World {
    catalog: &'static str,
    apis: Vec<Permission>,
    principals: Vec<PrincipalInput>,
    members: Vec<MembershipInput>,
    bindings: Vec<BindingInput>,
}

fn perm(name: &str) -> Permission {
    Permission {
        name: name.into(),
        description: String::new(),
    }
}

impl World {
    fn new(catalog: &'static str) -> World {
        World {
            catalog,
            apis: Vec::new(),
            principals: Vec::new(),
            members: Vec::new(),
            bindings: Vec::new(),
        }
    }

    fn api(mut self, perms: &[&str]) -> World {
        self.apis.extend(perms.iter().map(|p| perm(p)));
        self
    }

    fn user(mut self, id: &str) -> World {
        self.principals.push(PrincipalInput {
            principal: PrincipalRef::user(id),
            active: true,
        });
        self
    }

    fn inactive_user(mut self, id: &str) -> World {
        self.principals.push(PrincipalInput {
            principal: PrincipalRef::user(id),
            active: false,
        });
        self
    }

    fn sa(mut self, id: &str) -> World {
        self.principals.push(PrincipalInput {
            principal: PrincipalRef::service_account(id),
            active: true,
        });
        self
    }

    fn member(mut self, group: &str, member: PrincipalRef) -> World {
        self.members.push(MembershipInput {
            group: group.into(),
            member,
        });
        self
    }

    fn bind(self, p: PrincipalRef, role: &str, scope: &str) -> World {
        self.bind_until(p, role, scope, None)
    }

    fn bind_until(
        mut self,
        principal: PrincipalRef,
        role: &str,
        scope: &str,
        expires_at: Option<i64>,
    ) -> World {
        self.bindings.push(BindingInput {
            id: uuid::Uuid::new_v4().to_string(),
            scope: scope.into(),
            role: role.into(),
            principal,
            expires_at,
        });
        self
    }

    fn roles(&self) -> Arc<Roles> {
        Arc::new(
            Roles::resolve(
                Arc::new(Catalog::named(self.catalog).expect("catalog")),
                &self.apis,
                &[],
            )
            .expect("roles"),
        )
    }

    fn build(&self) -> Evaluator {
        Evaluator::build(
            self.roles(),
            &self.principals,
            &self.members,
            &self.bindings,
        )
        .expect("build")
    }
}

fn u(id: &str) -> PrincipalRef {
    PrincipalRef::user(id)
}

fn claim(ev: &Evaluator, who: &PrincipalRef, narrow: &[&str], root: &str) -> Vec<String> {
    roles_claim(ev, who.kind, &who.id, narrow, root, NOW)
        .expect("claim")
        .roles
}

// ---- seed 001: STACKIT, Alice and Bob, and the role migration ----

#[test]
fn seed_001_alice_owns_every_project_of_the_organization() {
    let ev = World::new("default")
        .user("alice")
        .bind(u("alice"), "owner", "orgs/test")
        .build();
    assert_eq!(claim(&ev, &u("alice"), &[], "*"), vec!["owner@orgs/test/*"]);
    for project in [
        "orgs/test/projects/a",
        "orgs/test/projects/b",
        "orgs/test/projects/backend",
    ] {
        for p in ["resourcemanager.projects.delete", "iam.policies.set"] {
            assert!(
                ev.check(K::User, "alice", p, project, NOW),
                "{p} on {project}"
            );
        }
    }
    assert!(
        !ev.check(K::User, "alice", "iam.policies.set", "orgs/testing", NOW),
        "orgs/test is not orgs/testing"
    );
    assert!(!ev.check(K::User, "alice", "iam.policies.set", "*", NOW));
}

#[test]
fn effective_roles_name_the_bindings_that_give_them() {
    let ev = World::new("default")
        .user("bob")
        .member("devs", u("bob"))
        .bind(u("bob"), "organization.member", "orgs/test")
        .bind(u("bob"), "project.member", "orgs/test/projects/backend")
        .bind(PrincipalRef::group("devs"), "viewer", "orgs/test")
        .bind_until(u("bob"), "editor", "orgs/test", Some(NOW - 1))
        .build();
    let on = |r: &str| {
        let mut v: Vec<(String, String, PrincipalRef)> = ev
            .effective_roles(K::User, "bob", r, NOW)
            .into_iter()
            .map(|g| (g.role, g.scope, g.holder))
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        on("orgs/test/projects/backend"),
        vec![
            (
                "project.member".into(),
                "orgs/test/projects/backend".into(),
                u("bob")
            ),
            (
                "viewer".into(),
                "orgs/test".into(),
                PrincipalRef::group("devs")
            ),
        ],
        "the org-only role does not reach the project; the group's viewer does; the expired editor is gone"
    );
    assert_eq!(on("orgs/test").len(), 2);
    assert!(on("orgs/other").is_empty());
}

#[test]
fn seed_001_bobs_primitive_roles_stay_where_they_are_bound() {
    let ev = World::new("default")
        .user("bob")
        .bind(u("bob"), "organization.member", "orgs/test")
        .bind(u("bob"), "project.member", "orgs/test/projects/backend")
        .build();
    assert_eq!(
        claim(&ev, &u("bob"), &[], "*"),
        vec![
            "organization.member@orgs/test",
            "project.member@orgs/test/projects/backend"
        ]
    );
    let manage = "resourcemanager.projects.update";
    assert!(ev.check(K::User, "bob", manage, "orgs/test/projects/backend", NOW));
    for other in ["orgs/test/projects/frontend", "orgs/test/projects/data"] {
        assert!(
            !ev.check(K::User, "bob", manage, other, NOW),
            "nothing passes down to {other}"
        );
        assert!(!ev.check(K::User, "bob", "resourcemanager.projects.get", other, NOW));
    }
    assert!(ev.check(
        K::User,
        "bob",
        "resourcemanager.organizations.get",
        "orgs/test",
        NOW
    ));
    assert!(!ev.check(
        K::User,
        "bob",
        "iam.policies.set",
        "orgs/test/projects/backend",
        NOW
    ));
    let why = ev.explain(K::User, "bob", manage, "orgs/test/projects/backend", NOW);
    assert_eq!(why.len(), 1);
    assert_eq!(why[0].role, "project.member");
}

#[test]
fn seed_001_migration_lists_every_widening_first() {
    let w = World::new("default")
        .user("bob")
        .user("carol")
        .bind(u("bob"), "organization.member", "orgs/test")
        .bind(u("bob"), "project.member", "orgs/test/projects/backend")
        .bind(u("carol"), "organization.admin", "orgs/test")
        .bind(u("carol"), "project.auditor", "orgs/test/projects/backend")
        .bind(u("carol"), "owner", "orgs/test");
    let roles = w.roles();
    let plan = migrate::plan(&roles, &w.bindings);
    let step = |from: &str| plan.iter().find(|s| s.from == from).expect(from);
    assert!(
        plan.iter().all(|s| s.from != "organization.member"),
        "no replacement: unchanged"
    );
    assert_eq!(step("project.member").to, "editor");
    assert!(
        step("project.member").widens_reach,
        "an inheriting role replaces a scope-bound one"
    );
    assert!(
        step("project.member")
            .added_permissions
            .contains(&"resourcemanager.projects.delete".to_string())
    );
    let admin = step("organization.admin");
    assert_eq!(admin.to, "owner");
    assert!(
        admin.widens() && admin.widens_reach,
        "an org-only admin becomes an inheriting owner"
    );
    assert!(
        admin.duplicate,
        "carol already owns orgs/test: the old binding just goes"
    );
    assert_eq!(step("project.auditor").to, "viewer");
    let mapping: Vec<(String, String)> = Catalog::named("default")
        .expect("catalog")
        .roles
        .iter()
        .filter_map(|r| {
            r.deprecated
                .as_ref()?
                .replacement
                .clone()
                .map(|to| (r.id.clone(), to))
        })
        .collect();
    let want = [
        ("organization.owner", "owner"),
        ("organization.admin", "owner"),
        ("project.owner", "owner"),
        ("project.admin", "owner"),
        ("project.member", "editor"),
        ("project.auditor", "viewer"),
    ];
    assert_eq!(mapping.len(), want.len());
    for (from, to) in want {
        assert!(
            mapping.contains(&(from.into(), to.into())),
            "{from} -> {to}"
        );
    }
}

#[test]
fn seed_001_basic_roles_owner_editor_viewer() {
    let ev = World::new("default")
        .api(&[
            "object-storage.buckets.create",
            "object-storage.buckets.read",
        ])
        .user("ed")
        .user("vi")
        .bind(u("ed"), "editor", "orgs/test")
        .bind(u("vi"), "viewer", "orgs/test")
        .build();
    let p = "orgs/test/projects/backend";
    assert!(ev.check(K::User, "ed", "object-storage.buckets.create", p, NOW));
    assert!(ev.check(K::User, "ed", "resourcemanager.projects.delete", p, NOW));
    assert!(
        !ev.check(K::User, "ed", "iam.policies.set", p, NOW),
        "editors cannot assign roles"
    );
    assert!(
        !ev.check(K::User, "ed", "iam.serviceAccountKeys.create", p, NOW),
        "nor mint credentials"
    );
    assert!(ev.check(K::User, "vi", "object-storage.buckets.read", p, NOW));
    assert!(
        !ev.check(K::User, "vi", "object-storage.buckets.create", p, NOW),
        "viewers read only"
    );
    assert!(!ev.check(K::User, "vi", "iam.policies.set", p, NOW));
}

// ---- seed 002: StackPath ----

const STACKPATH_SERVICES: &[&str] = &[
    "dns.zones.get",
    "dns.zones.update",
    "workload.instances.get",
    "workload.instances.create",
    "ipam.networks.get",
    "ipam.networks.update",
    "monitoring.metrics.read",
    "monitoring.alerts.update",
    "storage.buckets.get",
    "storage.buckets.create",
];

#[test]
fn seed_002_account_and_stack_policies() {
    let ev = World::new("stackpath")
        .api(STACKPATH_SERVICES)
        .user("root")
        .user("reseller")
        .user("dev")
        .bind(u("root"), "roles/systemOwner", "orgs/acme")
        .bind(u("reseller"), "roles/systemAdmin", "orgs/acme")
        .bind(u("dev"), "roles/dnsAdmin", "orgs/acme/projects/s2")
        .build();
    // the owner has everything on the account and its stacks, billing included
    assert!(ev.check(K::User, "root", "billing.invoices.get", "orgs/acme", NOW));
    assert!(ev.check(
        K::User,
        "root",
        "dns.zones.update",
        "orgs/acme/projects/default",
        NOW
    ));
    // systemAdmin: everything except billing
    assert!(ev.check(
        K::User,
        "reseller",
        "dns.zones.update",
        "orgs/acme/projects/s2",
        NOW
    ));
    assert!(ev.check(K::User, "reseller", "iam.policies.set", "orgs/acme", NOW));
    assert!(!ev.check(
        K::User,
        "reseller",
        "billing.invoices.get",
        "orgs/acme",
        NOW
    ));
    assert!(!ev.check(
        K::User,
        "reseller",
        "billing.paymentMethods.update",
        "orgs/acme",
        NOW
    ));
    // a stack policy applies to that stack only
    assert!(ev.check(
        K::User,
        "dev",
        "dns.zones.update",
        "orgs/acme/projects/s2",
        NOW
    ));
    assert!(!ev.check(
        K::User,
        "dev",
        "dns.zones.update",
        "orgs/acme/projects/default",
        NOW
    ));
    assert!(!ev.check(
        K::User,
        "dev",
        "workload.instances.create",
        "orgs/acme/projects/s2",
        NOW
    ));
    // the reseller can hand stacks to clients but cannot hand out billing
    assert!(
        ev.can_grant(
            &u("reseller"),
            "roles/stackAdmin",
            "orgs/acme/projects/s2",
            NOW
        )
        .is_ok()
    );
    assert!(matches!(
        ev.can_grant(&u("reseller"), "roles/systemOwner", "orgs/acme", NOW),
        Err(GrantError::Missing { permission, .. }) if permission.starts_with("billing.")
    ));
}

#[test]
fn seed_002_protected_owner_and_default_stack() {
    let catalog = Catalog::named("stackpath").expect("catalog");
    assert_eq!(catalog.owner_role, "roles/systemOwner");
    let owner = catalog
        .roles
        .iter()
        .find(|r| r.id == "roles/systemOwner")
        .expect("owner");
    assert!(
        owner.protected,
        "the owner's binding cannot be edited or removed"
    );
    assert!(catalog.roles.iter().filter(|r| r.protected).count() == 1);
    let defaults = &catalog.on_organization_create;
    assert_eq!(
        defaults.default_project.as_ref().map(|p| p.slug.as_str()),
        Some("default")
    );
    assert_eq!(defaults.member_role.as_deref(), Some("roles/systemAdmin"));
    assert_eq!(
        catalog.labels.get("organization").map(String::as_str),
        Some("account")
    );
    assert_eq!(
        catalog.labels.get("project").map(String::as_str),
        Some("stack")
    );
    assert!(!catalog.uses_kind(super::names::Kind::Folder));
    // removing the only owner binding would leave the account without owner
    let w = World::new("stackpath")
        .user("root")
        .bind(u("root"), "roles/systemOwner", "orgs/acme");
    let ev = w.build();
    assert_eq!(ev.org_owner_count("orgs/acme", &OwnerChange::default()), 1);
    assert_eq!(
        ev.org_owner_count(
            "orgs/acme",
            &OwnerChange {
                policy: Some(&[]),
                ..Default::default()
            }
        ),
        0
    );
}

#[test]
fn seed_002_every_service_has_a_viewer_and_an_admin_role() {
    let ev = World::new("stackpath")
        .api(STACKPATH_SERVICES)
        .user("v")
        .user("a")
        .build();
    let roles = ev.roles();
    for service in [
        "identity",
        "stack",
        "policy",
        "dns",
        "workload",
        "ipam",
        "monitoring",
        "storage",
    ] {
        let viewer = roles
            .get(&format!("roles/{service}Viewer"))
            .expect("viewer");
        let admin = roles.get(&format!("roles/{service}Admin")).expect("admin");
        assert!(
            !viewer.perms.is_empty(),
            "{service} viewer grants something"
        );
        assert!(
            viewer.perms.is_subset(&admin.perms),
            "{service}: admin includes viewer"
        );
        assert!(admin.perms != viewer.perms, "{service}: admin writes");
    }
    let w = World::new("stackpath")
        .api(STACKPATH_SERVICES)
        .user("v")
        .bind(u("v"), "roles/dnsViewer", "orgs/acme");
    let ev = w.build();
    assert!(ev.check(K::User, "v", "dns.zones.get", "orgs/acme/projects/s1", NOW));
    assert!(!ev.check(
        K::User,
        "v",
        "dns.zones.update",
        "orgs/acme/projects/s1",
        NOW
    ));
}

// ---- seed 003: Mia-Platform ----

#[test]
fn seed_003_company_projects_environments_and_groups() {
    let ev = World::new("mia-platform")
        .api(&[
            "console.deployments.deploy",
            "console.configuration.update",
            "console.configuration.read",
        ])
        .user("u1")
        .user("u2")
        .user("lead")
        .sa("pipeline")
        .member("developers", u("u1"))
        .member("developers", u("u2"))
        .bind(
            PrincipalRef::group("developers"),
            "developer",
            "orgs/mia/projects/shop",
        )
        .bind(u("lead"), "project-administrator", "orgs/mia/projects/shop")
        .bind(
            PrincipalRef::service_account("pipeline"),
            "maintainer",
            "orgs/mia/projects/shop/envs/dev",
        )
        .build();
    let prod = "orgs/mia/projects/shop/envs/prod";
    let dev = "orgs/mia/projects/shop/envs/dev";
    for user in ["u1", "u2"] {
        assert!(
            ev.check(K::User, user, "console.deployments.deploy", prod, NOW),
            "group role applies to {user}"
        );
        assert!(!ev.check(K::User, user, "iam.policies.set", prod, NOW));
    }
    assert!(ev.check(
        K::ServiceAccount,
        "pipeline",
        "console.deployments.deploy",
        dev,
        NOW
    ));
    assert!(!ev.check(
        K::ServiceAccount,
        "pipeline",
        "console.deployments.deploy",
        prod,
        NOW
    ));
    assert!(ev.check(K::User, "lead", "iam.policies.set", prod, NOW));
    assert!(!ev.check(
        K::User,
        "lead",
        "resourcemanager.organizations.update",
        "orgs/mia",
        NOW
    ));
    let holders = ev.holders(prod, NOW);
    let names: Vec<(&str, &str)> = holders
        .iter()
        .map(|h| (h.principal.id.as_str(), h.grant.role.as_str()))
        .collect();
    assert_eq!(
        names,
        vec![
            ("lead", "project-administrator"),
            ("u1", "developer"),
            ("u2", "developer")
        ]
    );
    assert!(holders.iter().all(|h| h.inherited));
    assert_eq!(holders[1].grant.holder, PrincipalRef::group("developers"));
    assert_eq!(
        claim(&ev, &u("u1"), &[], "*"),
        vec!["developer@orgs/mia/projects/shop/*"],
        "groups are expanded into the claim"
    );
}

// ---- seed 004: Cloud-IAM, four roles row by row ----

#[test]
fn seed_004_four_roles_row_by_row() {
    let columns = [
        "keycloak.deployments.update",          // Manage Deployments
        "keycloak.extensions.update",           // Manage Custom Extensions
        "keycloak.metrics.read",                // Read Metrics
        "resourcemanager.organizations.update", // Manage Org Settings
        "iam.policies.set",                     // Manage Org Members
    ];
    let rows: [(&str, [bool; 5]); 4] = [
        ("owner", [true, true, true, true, true]),
        ("editor", [true, true, true, false, false]),
        ("custom-extensions", [false, true, false, false, false]),
        ("monitoring", [false, false, true, false, false]),
    ];
    let mut w = World::new("cloud-iam");
    for (role, _) in &rows {
        w = w.user(role).bind(u(role), role, "orgs/cloud");
    }
    let ev = w.build();
    for (role, want) in rows {
        for (col, expected) in columns.iter().zip(want) {
            assert_eq!(
                ev.check(K::User, role, col, "orgs/cloud", NOW),
                expected,
                "{role} / {col}"
            );
            assert_eq!(
                ev.check(K::User, role, col, "orgs/cloud/projects/kc1", NOW),
                expected,
                "{role} / {col} on a deployment"
            );
        }
    }
    // "we strongly recommend adding at least 2 Owners": the count lets callers warn
    assert_eq!(ev.org_owner_count("orgs/cloud", &OwnerChange::default()), 1);
}

// ---- invariants ----

#[test]
fn granting_rule_blocks_widening_through_inheritance() {
    let ev = World::new("default")
        .user("po")
        .user("org-owner")
        .bind(u("po"), "project.owner", "orgs/a/projects/p")
        .bind(u("org-owner"), "owner", "orgs/a")
        .build();
    // a non-inheriting project.owner cannot grant an inheriting role on its project
    let err = ev
        .can_grant(&u("po"), "viewer", "orgs/a/projects/p", NOW)
        .expect_err("must refuse");
    assert!(
        matches!(&err, GrantError::Missing { reach, .. } if reach.contains("everything beneath")),
        "{err}"
    );
    assert!(
        ev.can_grant(&u("po"), "owner", "orgs/a/projects/p", NOW)
            .is_err()
    );
    // it can grant a scope-bound role with no more permissions
    assert!(
        ev.can_grant(&u("po"), "project.auditor", "orgs/a/projects/p", NOW)
            .is_ok()
    );
    assert!(
        ev.can_grant(&u("po"), "project.auditor", "orgs/a/projects/other", NOW)
            .is_err()
    );
    // an inheriting owner above can grant anything beneath, nothing above
    assert!(
        ev.can_grant(&u("org-owner"), "owner", "orgs/a/projects/p", NOW)
            .is_ok()
    );
    assert!(
        ev.can_grant(&u("org-owner"), "owner", "orgs/a", NOW)
            .is_ok()
    );
    assert!(
        ev.can_grant(&u("org-owner"), "viewer", "orgs/b", NOW)
            .is_err()
    );
    assert!(ev.can_grant(&u("org-owner"), "owner", "*", NOW).is_err());
    assert_eq!(
        ev.can_grant(&u("org-owner"), "nope", "orgs/a", NOW),
        Err(GrantError::UnknownRole("nope".into()))
    );
}

#[test]
fn adding_to_a_group_grants_every_binding_of_the_group() {
    let ev = World::new("default")
        .user("lead")
        .user("newbie")
        .bind(u("lead"), "owner", "orgs/a/projects/p")
        .bind(PrincipalRef::group("ops"), "editor", "orgs/a/projects/p")
        .bind(PrincipalRef::group("admins"), "owner", "orgs/a")
        .build();
    assert!(ev.can_add_member(&u("lead"), "ops", NOW).is_ok());
    assert!(
        ev.can_add_member(&u("lead"), "admins", NOW).is_err(),
        "lead does not own orgs/a"
    );
    assert!(ev.can_add_member(&u("newbie"), "ops", NOW).is_err());
}

#[test]
fn an_organization_keeps_an_owner() {
    let w = World::new("default")
        .user("o1")
        .inactive_user("unverified")
        .user("root-owner")
        .user("g-member")
        .member("owners", u("g-member"))
        .bind(u("o1"), "owner", "orgs/a")
        .bind(u("unverified"), "owner", "orgs/a")
        .bind(u("root-owner"), "owner", "*")
        .bind(PrincipalRef::group("owners"), "owner", "orgs/a")
        .bind_until(u("root-owner"), "owner", "orgs/a", Some(NOW + 10));
    let ev = w.build();
    // o1 and the group count; the unverified user, the root owner and the expiring binding do not
    assert_eq!(ev.org_owner_count("orgs/a", &OwnerChange::default()), 2);
    let removed = [u("o1")];
    assert_eq!(
        ev.org_owner_count(
            "orgs/a",
            &OwnerChange {
                removed: &removed,
                ..Default::default()
            }
        ),
        1
    );
    let emptied = [("owners".to_string(), u("g-member"))];
    let both = OwnerChange {
        removed: &removed,
        removed_members: &emptied,
        ..Default::default()
    };
    assert_eq!(
        ev.org_owner_count("orgs/a", &both),
        0,
        "deleting o1 and emptying the group leaves none"
    );
    let member_deleted = [u("o1"), u("g-member")];
    assert_eq!(
        ev.org_owner_count(
            "orgs/a",
            &OwnerChange {
                removed: &member_deleted,
                ..Default::default()
            }
        ),
        0
    );
    // a policy write that makes the only owner binding expire
    let mut policy: Vec<BindingInput> = w
        .bindings
        .iter()
        .filter(|b| b.scope == "orgs/a")
        .cloned()
        .collect();
    for b in policy.iter_mut() {
        b.expires_at = Some(NOW + 60);
    }
    assert_eq!(
        ev.org_owner_count(
            "orgs/a",
            &OwnerChange {
                policy: Some(&policy),
                ..Default::default()
            }
        ),
        0
    );
    // a demotion to editor
    for b in policy.iter_mut() {
        b.expires_at = None;
        b.role = "editor".into();
    }
    assert_eq!(
        ev.org_owner_count(
            "orgs/a",
            &OwnerChange {
                policy: Some(&policy),
                ..Default::default()
            }
        ),
        0
    );
}

#[test]
fn disabled_principals_hold_nothing() {
    let ev = World::new("default")
        .inactive_user("gone")
        .member("g", u("gone"))
        .bind(u("gone"), "owner", "orgs/a")
        .bind(PrincipalRef::group("g"), "owner", "orgs/b")
        .build();
    assert!(!ev.check(K::User, "gone", "iam.policies.get", "orgs/a", NOW));
    assert!(!ev.check(K::User, "gone", "iam.policies.get", "orgs/b", NOW));
    assert!(claim(&ev, &u("gone"), &[], "*").is_empty());
    assert!(ev.holders("orgs/b", NOW).is_empty());
    assert!(
        !ev.check(K::Group, "g", "iam.policies.get", "orgs/b", NOW),
        "a group is not a caller"
    );
    assert!(!ev.check(K::User, "nobody", "iam.policies.get", "orgs/b", NOW));
}

#[test]
fn unknown_roles_refuse_to_load() {
    let w = World::new("stackpath")
        .user("x")
        .bind(u("x"), "owner", "orgs/a");
    let err = Evaluator::build(w.roles(), &w.principals, &w.members, &w.bindings)
        .err()
        .expect("refused");
    assert!(matches!(err, LoadError::UnknownRole { role, .. } if role == "owner"));
}

// ---- the roles claim ----

#[test]
fn claim_narrowing_and_the_client_subtree() {
    let ev = World::new("default")
        .user("x")
        .bind(u("x"), "owner", "*")
        .bind(u("x"), "editor", "orgs/a/projects/p")
        .bind(u("x"), "viewer", "orgs/b")
        .bind(u("x"), "project.member", "orgs/a/projects/q")
        .build();
    assert_eq!(
        claim(&ev, &u("x"), &["orgs/a/projects/p"], "*"),
        vec!["owner@*", "editor@orgs/a/projects/p/*"]
    );
    assert_eq!(
        claim(&ev, &u("x"), &["orgs/a"], "*"),
        vec![
            "owner@*",
            "editor@orgs/a/projects/p/*",
            "project.member@orgs/a/projects/q"
        ],
        "bindings beneath the narrowed resource stay"
    );
    assert_eq!(
        claim(&ev, &u("x"), &["orgs/a/projects/p", "orgs/b"], "*").len(),
        3,
        "a union"
    );
    // a client registered in orgs/a never learns roles in orgs/b
    let in_a = claim(&ev, &u("x"), &[], "orgs/a");
    assert!(in_a.iter().all(|r| !r.contains("orgs/b")), "{in_a:?}");
    assert_eq!(
        roles_claim(&ev, K::User, "x", &["orgs/b"], "orgs/a", NOW),
        Err(ClaimError::OutsideClient {
            requested: "orgs/b".into(),
            client_root: "orgs/a".into()
        })
    );
    assert!(
        roles_claim(&ev, K::User, "x", &["orgs/ab"], "orgs/a", NOW).is_err(),
        "orgs/ab is not beneath orgs/a"
    );
}

#[test]
fn claim_leaves_out_expired_bindings_and_caps_expiry() {
    let ev = World::new("default")
        .user("x")
        .member("g", u("x"))
        .bind_until(u("x"), "viewer", "orgs/a", Some(NOW - 1))
        .bind_until(u("x"), "editor", "orgs/a", Some(NOW + 300))
        .bind_until(u("x"), "owner", "orgs/c", Some(NOW + 100))
        .bind(PrincipalRef::group("g"), "owner", "orgs/c")
        .build();
    let c = roles_claim(&ev, K::User, "x", &[], "*", NOW).expect("claim");
    assert_eq!(
        c.roles,
        vec!["editor@orgs/a/*", "owner@orgs/c/*"],
        "expired left out, duplicates merged"
    );
    assert_eq!(
        c.expires_at,
        Some(NOW + 300),
        "the group's non-expiring owner binding outlasts the direct one"
    );
}

#[test]
fn claim_bound_drops_covered_entries_then_fails_without_truncating() {
    let mut w = World::new("default").user("big").user("huge");
    w = w.bind(u("big"), "owner", "orgs/acme");
    for i in 0..400 {
        let p = format!("orgs/acme/projects/project-number-{i:04}");
        w = w
            .bind(u("big"), "editor", &p)
            .bind(u("huge"), "project.member", &p);
    }
    let ev = w.build();
    let c = roles_claim(&ev, K::User, "big", &[], "*", NOW).expect("covered entries dropped");
    assert_eq!(c.roles, vec!["owner@orgs/acme/*"]);
    let err = roles_claim(&ev, K::User, "huge", &[], "*", NOW).expect_err("too large");
    assert!(matches!(err, ClaimError::TooLarge { bytes } if bytes > MAX_CLAIM_BYTES));
    // narrowing makes it fit
    let c = roles_claim(
        &ev,
        K::User,
        "huge",
        &["orgs/acme/projects/project-number-0001"],
        "*",
        NOW,
    )
    .expect("narrowed");
    assert_eq!(
        c.roles,
        vec!["project.member@orgs/acme/projects/project-number-0001"]
    );
    let full = roles_claim(
        &ev,
        K::User,
        "big",
        &["orgs/acme/projects/project-number-0001"],
        "*",
        NOW,
    )
    .expect("fits");
    assert_eq!(
        full.roles,
        vec![
            "owner@orgs/acme/*",
            "editor@orgs/acme/projects/project-number-0001/*"
        ]
    );
    assert!(serde_json::to_string(&c.roles).expect("json").len() <= MAX_CLAIM_BYTES);
}

//! Policies written whole with an etag, and the invariants that guard them: the
//! granting rule, the last-owner rule, protected bindings, invitations for unknown
//! emails, group membership and principal lifecycle. Each rule is attacked.

use gatehouse::access::policy::{self, PolicyBinding};
use gatehouse::access::principals::{self, Change};
use gatehouse::access::{AccessError, Actor, Ctx, Warning, groups};
use gatehouse::iam::PrincipalKind;
use gatehouse::iam::evaluator::PrincipalRef;
use gatehouse::server::sync;
use gatehouse::store::directory::{self, GroupRow};
use gatehouse::store::iam::{self, ResourceRow, UserRow};

use crate::support::{self, TestServer, secret};

pub struct World {
    pub s: TestServer,
    pub owner: Actor,
}

pub fn binding(role: &str, members: &[&str]) -> PolicyBinding {
    PolicyBinding {
        role: role.into(),
        members: members.iter().map(|m| m.to_string()).collect(),
        ..Default::default()
    }
}

impl World {
    /// The current view, to build a [`Ctx`] from.
    pub fn view(&self) -> std::sync::Arc<Option<gatehouse::server::View>> {
        self.s.state.view.load_full()
    }

    /// An operation context over `view`.
    pub fn ctx<'a>(&'a self, view: &'a std::sync::Arc<Option<gatehouse::server::View>>) -> Ctx<'a> {
        Ctx {
            store: &self.s.state.store,
            evaluator: &view.as_ref().as_ref().expect("view").evaluator,
            ephemeral: &self.s.state.ephemeral,
            now: gatehouse::now_unix(),
        }
    }

    pub async fn new(adjust: impl FnOnce(&mut gatehouse::config::Config)) -> World {
        let s = TestServer::start_with(adjust).await;
        let catalog = gatehouse::iam::Catalog::named(&s.state.config.catalog).expect("catalog");
        let (out, _) = gatehouse::bootstrap::run(
            &s.state.store,
            &s.state.kek,
            &s.base,
            &catalog,
            gatehouse::bootstrap::Request {
                org: "acme".into(),
                owner_email: "owner@acme.test".into(),
                owner_password: "owner password".into(),
                service_account: None,
            },
        )
        .await
        .expect("bootstrap");
        let owner_id = out["owner"]["id"].as_str().expect("id").to_owned();
        let w = World {
            s,
            owner: Actor {
                principal: PrincipalRef::user(owner_id),
                label: "user:owner@acme.test".into(),
            },
        };
        let mut tx = w.s.state.store.begin().await.expect("begin");
        for (email, verified) in [
            ("alice@acme.test", true),
            ("bob@acme.test", true),
            ("carol@acme.test", false),
        ] {
            iam::insert_user(
                &mut tx,
                &UserRow {
                    id: uuid::Uuid::new_v4().to_string(),
                    email: email.into(),
                    display_name: email.into(),
                    password_hash: None,
                    email_verified: verified,
                    disabled: false,
                },
            )
            .await
            .expect("user");
        }
        for (name, parent, slug) in [
            ("orgs/acme/projects/backend", "orgs/acme", "backend"),
            ("orgs/other", "", "other"),
        ] {
            iam::insert_resource(
                &mut tx,
                &ResourceRow {
                    id: uuid::Uuid::new_v4().to_string(),
                    name: name.into(),
                    kind: if parent.is_empty() {
                        "organization"
                    } else {
                        "project"
                    }
                    .into(),
                    parent: (!parent.is_empty()).then(|| parent.to_string()),
                    slug: slug.into(),
                    display_name: slug.into(),
                    created_at: 0,
                    deleted_at: None,
                },
            )
            .await
            .expect("resource");
        }
        for (slug, org) in [("ops", "orgs/acme"), ("elsewhere", "orgs/other")] {
            directory::insert_group(
                &mut tx,
                &GroupRow {
                    id: uuid::Uuid::new_v4().to_string(),
                    name: format!("{org}/groups/{slug}"),
                    org: org.into(),
                    slug: slug.into(),
                    display_name: slug.into(),
                },
            )
            .await
            .expect("group");
        }
        gatehouse::store::bump_change(&mut tx, "test", "setup")
            .await
            .expect("bump");
        tx.commit().await.expect("commit");
        w.reload().await;
        w
    }

    pub async fn reload(&self) {
        sync::reload(&self.s.state).await.expect("reload");
    }

    pub async fn actor(&self, email: &str) -> Actor {
        let u = self
            .s
            .state
            .store
            .user_by_email(email)
            .await
            .expect("get")
            .expect("user");
        Actor {
            principal: PrincipalRef::user(u.id),
            label: format!("user:{email}"),
        }
    }

    pub async fn get(&self, actor: &Actor, scope: &str) -> Result<policy::Policy, AccessError> {
        let view = self.view();
        let ctx = self.ctx(&view);
        policy::get(&ctx, actor, scope).await
    }

    pub async fn set(
        &self,
        actor: &Actor,
        scope: &str,
        etag: &str,
        b: &[PolicyBinding],
    ) -> Result<policy::Written, AccessError> {
        let view = self.view();
        let ctx = self.ctx(&view);
        let r = policy::set(&ctx, actor, scope, etag, b).await;
        self.reload().await;
        r
    }

    async fn group(
        &self,
        actor: &Actor,
        group: &str,
        member: &str,
        add: bool,
    ) -> Result<Vec<Warning>, AccessError> {
        let view = self.view();
        let ctx = self.ctx(&view);
        let r = if add {
            groups::add_member(&ctx, actor, group, member)
                .await
                .map(|()| Vec::new())
        } else {
            groups::remove_member(&ctx, actor, group, member).await
        };
        self.reload().await;
        r
    }

    async fn principal(
        &self,
        actor: &Actor,
        who: &PrincipalRef,
        change: Change,
    ) -> Result<Vec<Warning>, AccessError> {
        let view = self.view();
        let ctx = self.ctx(&view);
        let r = principals::change(&ctx, actor, who, "*", change).await;
        self.reload().await;
        r
    }

    pub fn check(&self, who: &Actor, perm: &str, resource: &str) -> bool {
        let view = self.s.state.view.load();
        view.as_ref().as_ref().expect("view").evaluator.check(
            PrincipalKind::User,
            &who.principal.id,
            perm,
            resource,
            gatehouse::now_unix(),
        )
    }
}

async fn policy_write_and_its_rules(w: World) {
    let org = "orgs/acme";
    let p = w.get(&w.owner, org).await.expect("read");
    assert_eq!(
        p.bindings,
        vec![binding("owner", &["user:owner@acme.test"])]
    );

    // unknown and unverified emails become invitations, with the same answer shape
    let written = w
        .set(
            &w.owner,
            org,
            &p.etag,
            &[
                binding("owner", &["user:owner@acme.test"]),
                binding("editor", &["user:Alice@Acme.test"]),
                binding(
                    "viewer",
                    &["user:carol@acme.test", "user:dave@nowhere.test"],
                ),
            ],
        )
        .await
        .expect("write");
    assert!(
        written
            .warnings
            .contains(&Warning::FewerThanTwoOwners { org: org.into() })
    );
    let b = &written.policy.bindings;
    assert_eq!(
        b.iter()
            .find(|b| b.role == "editor")
            .expect("editor")
            .members,
        vec!["user:alice@acme.test"]
    );
    let viewer = b.iter().find(|b| b.role == "viewer").expect("viewer");
    assert!(viewer.members.is_empty());
    assert_eq!(
        viewer.pending_members,
        vec!["user:carol@acme.test", "user:dave@nowhere.test"]
    );
    assert_eq!(
        w.get(&w.owner, org).await.expect("read"),
        written.policy,
        "what was written reads back"
    );
    let alice = w.actor("alice@acme.test").await;
    assert!(w.check(
        &alice,
        "resourcemanager.projects.create",
        "orgs/acme/projects/backend"
    ));

    // a stale etag is refused and changes nothing
    let stale = w
        .set(
            &w.owner,
            org,
            &p.etag,
            &[binding("owner", &["user:owner@acme.test"])],
        )
        .await;
    assert!(matches!(stale, Err(AccessError::StaleEtag)), "{stale:?}");
    assert_eq!(w.get(&w.owner, org).await.expect("read"), written.policy);

    // an editor cannot write policies at all
    let e = w.set(&alice, org, &written.policy.etag, &[]).await;
    assert!(
        matches!(e, Err(AccessError::Forbidden { ref permission, .. }) if permission == "iam.policies.set"),
        "{e:?}"
    );

    // a non-inheriting project.owner cannot grant an inheriting role on its project
    let backend = "orgs/acme/projects/backend";
    let bp = w.get(&w.owner, backend).await.expect("read");
    let bp = w
        .set(
            &w.owner,
            backend,
            &bp.etag,
            &[binding("project.owner", &["user:bob@acme.test"])],
        )
        .await
        .expect("write");
    assert!(
        bp.warnings
            .iter()
            .any(|x| matches!(x, Warning::DeprecatedRole { role, .. } if role == "project.owner"))
    );
    let bob = w.actor("bob@acme.test").await;
    let widen = w
        .set(
            &bob,
            backend,
            &bp.policy.etag,
            &[
                binding("project.owner", &["user:bob@acme.test"]),
                binding("viewer", &["user:alice@acme.test"]),
            ],
        )
        .await;
    assert!(
        matches!(widen, Err(AccessError::CannotGrant(ref m)) if m.contains("everything beneath")),
        "{widen:?}"
    );
    let ok = w
        .set(
            &bob,
            backend,
            &bp.policy.etag,
            &[
                binding("project.owner", &["user:bob@acme.test"]),
                binding("project.auditor", &["user:alice@acme.test"]),
            ],
        )
        .await
        .expect("a scope-bound role with fewer permissions is fine");
    // nor may it invite someone into an inheriting role
    let invite = w
        .set(
            &bob,
            backend,
            &ok.policy.etag,
            &[
                binding("project.owner", &["user:bob@acme.test"]),
                binding("editor", &["user:newcomer@acme.test"]),
            ],
        )
        .await;
    assert!(
        matches!(invite, Err(AccessError::CannotGrant(_))),
        "{invite:?}"
    );

    // the last owner cannot be removed, demoted or made to expire
    let cur = w.get(&w.owner, org).await.expect("read");
    for attempt in [
        vec![binding("editor", &["user:owner@acme.test"])],
        vec![],
        vec![PolicyBinding {
            expires_at: Some(gatehouse::now_unix() + 3600),
            ..binding("owner", &["user:owner@acme.test"])
        }],
        vec![binding("owner", &["user:carol@acme.test"])],
    ] {
        let r = w.set(&w.owner, org, &cur.etag, &attempt).await;
        assert!(
            matches!(r, Err(AccessError::Refused(ref m)) if m.contains("no owner")),
            "{attempt:?}: {r:?}"
        );
    }
    // with a second owner, the first may go
    let two = w
        .set(
            &w.owner,
            org,
            &cur.etag,
            &[binding(
                "owner",
                &["user:owner@acme.test", "user:alice@acme.test"],
            )],
        )
        .await
        .expect("two owners");
    assert!(two.warnings.is_empty());
    // the instance owner still may act; alice now owns orgs/acme
    let one = w
        .set(
            &alice,
            org,
            &two.policy.etag,
            &[binding("owner", &["user:alice@acme.test"])],
        )
        .await
        .expect("alice removes the bootstrap owner");
    assert!(
        one.warnings
            .contains(&Warning::FewerThanTwoOwners { org: org.into() })
    );

    // validation names the field
    let cur = w.get(&alice, org).await.expect("read");
    let cases: Vec<(Vec<PolicyBinding>, &str)> = vec![
        (
            vec![
                binding("owner", &["user:alice@acme.test"]),
                binding("nope", &["user:bob@acme.test"]),
            ],
            "bindings[1].role",
        ),
        (
            vec![binding("owner", &["alice@acme.test"])],
            "bindings[0].members[0]",
        ),
        (
            vec![binding(
                "owner",
                &["user:alice@acme.test", "group:orgs/other/groups/elsewhere"],
            )],
            "bindings[0].members[1]",
        ),
        (
            vec![binding("owner", &["serviceAccount:missing"])],
            "bindings[0].members[0]",
        ),
        (
            vec![PolicyBinding {
                expires_at: Some(1),
                ..binding("viewer", &["user:bob@acme.test"])
            }],
            "bindings[0].expires_at",
        ),
    ];
    for (b, field) in cases {
        match w.set(&alice, org, &cur.etag, &b).await {
            Err(AccessError::Invalid { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    assert!(matches!(
        w.get(&alice, "orgs/missing").await,
        Err(AccessError::Forbidden { .. })
    ));
    assert!(matches!(
        w.get(&w.owner, "orgs/missing").await,
        Err(AccessError::NotFound(_))
    ));

    // groups: adding a member grants the group's roles (granting rule); emptying an
    // owning group is refused while it is the last owner
    let cur = w.get(&alice, org).await.expect("read");
    let with_group = w
        .set(
            &alice,
            org,
            &cur.etag,
            &[binding(
                "owner",
                &["user:alice@acme.test", "group:orgs/acme/groups/ops"],
            )],
        )
        .await
        .expect("bind the group");
    w.group(&alice, "orgs/acme/groups/ops", "user:bob@acme.test", true)
        .await
        .expect("alice may add");
    assert!(
        w.check(&bob, "iam.policies.set", "orgs/acme/projects/backend"),
        "bob owns through the group"
    );
    let e = w
        .group(&bob, "orgs/acme/groups/ops", "user:carol@acme.test", true)
        .await;
    assert!(
        matches!(e, Err(AccessError::Invalid { .. })),
        "unverified accounts cannot join: {e:?}"
    );
    let only_group = w
        .set(
            &alice,
            org,
            &with_group.policy.etag,
            &[binding("owner", &["group:orgs/acme/groups/ops"])],
        )
        .await
        .expect("group owns");
    let e = w
        .group(&bob, "orgs/acme/groups/ops", "user:bob@acme.test", false)
        .await;
    assert!(
        matches!(e, Err(AccessError::Refused(_))),
        "emptying the owning group: {e:?}"
    );
    // deleting or disabling the group's only member is refused too
    let bob_ref = bob.principal.clone();
    for change in [Change::Delete, Change::Disable] {
        let e = w.principal(&w.owner, &bob_ref, change).await;
        assert!(
            matches!(e, Err(AccessError::Refused(_))),
            "{change:?}: {e:?}"
        );
    }
    // restore a user owner, then disabling bob revokes his access at once
    w.set(
        &bob,
        org,
        &only_group.policy.etag,
        &[binding(
            "owner",
            &["user:alice@acme.test", "group:orgs/acme/groups/ops"],
        )],
    )
    .await
    .expect("restore");
    w.principal(&w.owner, &bob_ref, Change::Disable)
        .await
        .expect("disable");
    assert!(
        !w.check(&bob, "iam.policies.get", org),
        "a disabled user holds nothing"
    );
    w.principal(&w.owner, &bob_ref, Change::Enable)
        .await
        .expect("enable");
    assert!(w.check(&bob, "iam.policies.get", org));
    w.principal(&w.owner, &bob_ref, Change::Delete)
        .await
        .expect("delete");
    assert!(!w.check(&bob, "iam.policies.get", org));
    assert!(
        w.s.state
            .store
            .user_by_email("bob@acme.test")
            .await
            .expect("get")
            .is_none()
    );
    let events =
        w.s.state
            .store
            .audit_events(None, 1000)
            .await
            .expect("audit");
    for action in [
        "policy.set",
        "group.member.add",
        "user.disable",
        "user.enable",
        "user.delete",
    ] {
        assert!(
            events.iter().any(|e| e.action == action),
            "{action} audited"
        );
    }
    w.s.stop().await;
}

#[tokio::test]
async fn sqlite_policy_rules() {
    policy_write_and_its_rules(World::new(|_| {}).await).await;
}

#[tokio::test]
async fn postgres_policy_rules() {
    let Some(db) = support::postgres_url().await else {
        return;
    };
    policy_write_and_its_rules(World::new(|c| c.database_url = secret(&db)).await).await;
}

#[tokio::test]
async fn stackpath_system_owner_binding_is_protected() {
    let w = World::new(|c| c.catalog = "stackpath".into()).await;
    let p = w.get(&w.owner, "orgs/acme").await.expect("read");
    assert_eq!(
        p.bindings,
        vec![binding("roles/systemOwner", &["user:owner@acme.test"])]
    );
    let mut more = p.bindings.clone();
    more.push(binding("roles/systemOwner", &["user:alice@acme.test"]));
    for attempt in [
        vec![],
        more,
        vec![binding("roles/systemAdmin", &["user:owner@acme.test"])],
    ] {
        let r = w.set(&w.owner, "orgs/acme", &p.etag, &attempt).await;
        assert!(
            matches!(r, Err(AccessError::Refused(ref m)) if m.contains("roles/systemOwner")),
            "{attempt:?}: {r:?}"
        );
    }
    let mut plus_admin = p.bindings.clone();
    plus_admin.push(binding("roles/systemAdmin", &["user:alice@acme.test"]));
    w.set(&w.owner, "orgs/acme", &p.etag, &plus_admin)
        .await
        .expect("other bindings may change");
    w.s.stop().await;
}

//! IAM operations beyond policies: the resource tree, users, service accounts and
//! their credentials, groups, registered APIs and custom roles.

use gatehouse::access::{AccessError, accounts, definitions, resources};
use gatehouse::iam::names::Kind;
use gatehouse::iam::permissions::Permission;

use crate::policies::{World, binding};

#[tokio::test]
async fn the_resource_tree_is_built_by_path_and_names_are_never_reused() {
    let w = World::new(|_| {}).await;
    let v = w.view();
    let ctx = w.ctx(&v);
    let o = &w.owner;
    let eu = resources::create(&ctx, o, Some("orgs/acme"), Kind::Folder, "eu", "Europe")
        .await
        .expect("folder");
    assert_eq!(eu.name, "orgs/acme/folders/eu");
    let de = resources::create(&ctx, o, Some(&eu.name), Kind::Folder, "de", "Germany")
        .await
        .expect("nested folder");
    let shop = resources::create(&ctx, o, Some(&de.name), Kind::Project, "shop", "Shop")
        .await
        .expect("project");
    let prod = resources::create(
        &ctx,
        o,
        Some(&shop.name),
        Kind::Environment,
        "prod",
        "Production",
    )
    .await
    .expect("env");
    assert_eq!(
        prod.name,
        "orgs/acme/folders/eu/folders/de/projects/shop/envs/prod"
    );

    for (parent, kind, slug, want) in [
        (Some("orgs/acme"), Kind::Environment, "dev", "kind"),
        (Some(shop.name.as_str()), Kind::Folder, "x1", "kind"),
        (Some("orgs/acme"), Kind::Project, "Bad_Slug", "slug"),
        (Some("orgs/acme"), Kind::Project, "-x", "slug"),
    ] {
        match resources::create(&ctx, o, parent, kind, slug, "x").await {
            Err(AccessError::Invalid { field, .. }) => assert_eq!(field, want, "{slug}"),
            other => panic!("{slug}: {other:?}"),
        }
    }
    assert!(matches!(
        resources::create(
            &ctx,
            o,
            Some("orgs/acme/projects/missing"),
            Kind::Environment,
            "dev",
            "x"
        )
        .await,
        Err(AccessError::NotFound(_))
    ));
    let bob = w.actor("bob@acme.test").await;
    assert!(matches!(
        resources::create(&ctx, &bob, Some("orgs/acme"), Kind::Project, "p2", "x").await,
        Err(AccessError::Forbidden { .. })
    ));

    // deleting a resource with children is refused; its name stays reserved
    let r = resources::delete(&ctx, o, &shop.name).await;
    assert!(
        matches!(r, Err(AccessError::Refused(ref m)) if m.contains("child")),
        "{r:?}"
    );
    resources::delete(&ctx, o, &prod.name).await.expect("env");
    resources::delete(&ctx, o, &shop.name)
        .await
        .expect("project now");
    let again =
        resources::create(&ctx, o, Some(&de.name), Kind::Project, "shop", "Shop again").await;
    assert!(
        matches!(again, Err(AccessError::Refused(ref m)) if m.contains("never reused")),
        "{again:?}"
    );
    assert!(matches!(
        resources::delete(&ctx, o, &shop.name).await,
        Err(AccessError::NotFound(_))
    ));

    // a new organization is owned by its creator
    let org = resources::create(&ctx, o, None, Kind::Organization, "globex", "Globex")
        .await
        .expect("org");
    w.reload().await;
    let v = w.view();
    let ctx = w.ctx(&v);
    assert_eq!(
        ctx.evaluator
            .org_owner_count(&org.name, &Default::default()),
        1
    );
    let events =
        w.s.state
            .store
            .audit_events(None, 1000)
            .await
            .expect("audit");
    assert!(
        events
            .iter()
            .any(|e| e.action == "resource.delete" && e.target == shop.name)
    );
    w.s.stop().await;
}

#[tokio::test]
async fn presets_shape_the_tree() {
    let w = World::new(|c| c.catalog = "stackpath".into()).await;
    let v = w.view();
    let ctx = w.ctx(&v);
    let r = resources::create(&ctx, &w.owner, Some("orgs/acme"), Kind::Folder, "eu", "EU").await;
    assert!(
        matches!(r, Err(AccessError::Invalid { ref field, .. }) if field == "kind"),
        "StackPath has no folders: {r:?}"
    );
    let account = resources::create(&ctx, &w.owner, None, Kind::Organization, "second", "Second")
        .await
        .expect("account");
    assert!(
        w.s.state
            .store
            .resource(&format!("{}/projects/default", account.name))
            .await
            .expect("get")
            .is_some(),
        "default stack"
    );
    w.s.stop().await;
}

#[tokio::test]
async fn service_account_credentials_need_their_own_permission_and_the_accounts_permissions() {
    let w = World::new(|_| {}).await;
    let st = &w.s.state;
    let v = w.view();
    let ctx = w.ctx(&v);
    let sa =
        accounts::create_service_account(&ctx, &w.owner, "orgs/acme", "deployer", "Deployer", "")
            .await
            .expect("sa");
    assert_eq!(sa.name, "orgs/acme/service-accounts/deployer");
    let dup =
        accounts::create_service_account(&ctx, &w.owner, "orgs/acme", "deployer", "Deployer", "")
            .await;
    assert!(matches!(dup, Err(AccessError::Refused(_))));
    // the service account owns the organization; alice may mint keys but holds less
    let p = w.get(&w.owner, "orgs/acme").await.expect("read");
    let client = format!("serviceAccount:{}", sa.client_id);
    w.set(
        &w.owner,
        "orgs/acme",
        &p.etag,
        &[
            binding("owner", &["user:owner@acme.test", &client]),
            binding("editor", &["user:alice@acme.test"]),
            binding("iam.serviceAccountKeyAdmin", &["user:alice@acme.test"]),
        ],
    )
    .await
    .expect("policy");
    let v = w.view();
    let ctx = w.ctx(&v);
    let alice = w.actor("alice@acme.test").await;
    let r = accounts::mint_secret(&ctx, &st.kek, &alice, &sa.name, None).await;
    assert!(
        matches!(r, Err(AccessError::CannotGrant(ref m)) if m.contains("acting as")),
        "{r:?}"
    );
    let bob = w.actor("bob@acme.test").await;
    assert!(matches!(
        accounts::mint_secret(&ctx, &st.kek, &bob, &sa.name, None).await,
        Err(AccessError::Forbidden { .. })
    ));

    let minted = accounts::mint_secret(
        &ctx,
        &st.kek,
        &w.owner,
        &sa.name,
        Some(gatehouse::now_unix() + 3600),
    )
    .await
    .expect("owner mints");
    let second = accounts::mint_secret(&ctx, &st.kek, &w.owner, &sa.name, None)
        .await
        .expect("several at a time");
    let hashes = st
        .store
        .secret_hashes(&sa.id, gatehouse::now_unix())
        .await
        .expect("hashes");
    assert_eq!(hashes.len(), 2);
    assert!(hashes.iter().any(|h| gatehouse::crypto::secret::verify(
        st.kek.secret_key(),
        &minted.client_secret,
        h
    )));
    assert!(hashes.iter().all(|h| !h.contains(&minted.client_secret)));
    accounts::revoke_secret(&ctx, &w.owner, &sa.name, &minted.id)
        .await
        .expect("revoke");
    let hashes = st
        .store
        .secret_hashes(&sa.id, gatehouse::now_unix())
        .await
        .expect("hashes");
    assert_eq!(hashes.len(), 1);
    assert!(gatehouse::crypto::secret::verify(
        st.kek.secret_key(),
        &second.client_secret,
        &hashes[0]
    ));
    let events = st.store.audit_events(None, 1000).await.expect("audit");
    assert!(
        events.iter().all(|e| !e
            .after
            .as_ref()
            .is_some_and(|a| a.to_string().contains(&second.client_secret))),
        "secrets never audited"
    );

    // public keys: PEM public keys only
    let pair = aws_lc_rs::signature::Ed25519KeyPair::generate().expect("key");
    let der = aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::PublicKeyX509Der>::as_der(
        aws_lc_rs::signature::KeyPair::public_key(&pair),
    )
    .expect("der");
    use base64::Engine;
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(der.as_ref())
    );
    accounts::add_key(&ctx, &w.owner, &sa.name, &pem)
        .await
        .expect("key");
    for bad in [
        "not a key",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    ] {
        assert!(matches!(
            accounts::add_key(&ctx, &w.owner, &sa.name, bad).await,
            Err(AccessError::Invalid { .. })
        ));
    }
    w.s.stop().await;
}

#[tokio::test]
async fn users_apis_groups_and_custom_roles() {
    let w = World::new(|_| {}).await;
    let st = &w.s.state;
    let v = w.view();
    let ctx = w.ctx(&v);
    let u = accounts::create_user(
        &ctx,
        &st.passwords,
        &w.owner,
        " Dana@Acme.TEST ",
        "Dana",
        Some("a long password".into()),
        true,
    )
    .await
    .expect("user");
    assert_eq!(u.email, "dana@acme.test");
    assert!(
        u.password_hash
            .as_deref()
            .is_some_and(|h| h.starts_with("$argon2id$"))
    );
    assert!(matches!(
        accounts::create_user(
            &ctx,
            &st.passwords,
            &w.owner,
            "dana@acme.test",
            "",
            None,
            true
        )
        .await,
        Err(AccessError::Refused(_))
    ));
    assert!(matches!(
        accounts::create_user(&ctx, &st.passwords, &w.owner, "eve@acme.test", "", Some("short".into()), true).await,
        Err(AccessError::Invalid { ref field, .. }) if field == "password"
    ));
    let alice = w.actor("alice@acme.test").await;
    assert!(matches!(
        accounts::create_user(&ctx, &st.passwords, &alice, "eve@acme.test", "", None, true).await,
        Err(AccessError::Forbidden { .. })
    ));

    let perm = |n: &str| Permission {
        name: n.into(),
        description: n.into(),
    };
    let issuer = w.s.base.clone();
    definitions::register_api(
        &ctx,
        &w.owner,
        &issuer,
        "https://storage.example",
        "Storage",
        &[
            perm("object-storage.buckets.read"),
            perm("object-storage.buckets.create"),
        ],
    )
    .await
    .expect("api");
    for (id, perms, field) in [
        (
            "https://other.example",
            vec![perm("iam.users.steal")],
            "permissions[0].name",
        ),
        (
            "https://other.example",
            vec![perm("not-a-permission")],
            "permissions[0].name",
        ),
        (
            "ftp://other.example",
            vec![perm("dns.zones.get")],
            "identifier",
        ),
        (
            &*format!("{issuer}/v1"),
            vec![perm("dns.zones.get")],
            "identifier",
        ),
    ] {
        match definitions::register_api(&ctx, &w.owner, &issuer, id, "x", &perms).await {
            Err(AccessError::Invalid { field: f, .. }) => assert_eq!(f, field, "{id}"),
            other => panic!("{id}: {other:?}"),
        }
    }
    let taken = definitions::register_api(
        &ctx,
        &w.owner,
        &issuer,
        "https://thief.example",
        "x",
        &[perm("object-storage.buckets.read")],
    )
    .await;
    assert!(
        matches!(taken, Err(AccessError::Refused(_))),
        "another API's permission: {taken:?}"
    );
    w.reload().await;
    let v = w.view();
    let ctx = w.ctx(&v);
    let reader = ctx
        .evaluator
        .roles()
        .get("object-storage.reader")
        .expect("role");
    assert_eq!(
        ctx.evaluator.roles().permission_names(reader),
        vec!["object-storage.buckets.read"],
        "wildcards re-resolved"
    );

    let role = definitions::put_custom_role(
        &ctx,
        &w.owner,
        "orgs/acme",
        "bucket-maker",
        "Makes buckets",
        &["object-storage.buckets.create".into()],
    )
    .await
    .expect("custom role");
    assert_eq!(role.id, "orgs/acme/roles/bucket-maker");
    assert!(matches!(
        definitions::put_custom_role(&ctx, &w.owner, "orgs/acme", "x1", "", &["dns.zones.get".into()]).await,
        Err(AccessError::Invalid { ref field, .. }) if field == "permissions[0]"
    ));
    let g = definitions::create_group(&ctx, &w.owner, "orgs/acme", "builders", "Builders")
        .await
        .expect("group");
    assert_eq!(g.name, "orgs/acme/groups/builders");
    w.reload().await;
    let p = w
        .get(&w.owner, "orgs/acme/projects/backend")
        .await
        .expect("read");
    w.set(
        &w.owner,
        "orgs/acme/projects/backend",
        &p.etag,
        &[binding(&role.id, &["group:orgs/acme/groups/builders"])],
    )
    .await
    .expect("bind the custom role");
    let other = w.get(&w.owner, "orgs/other").await.expect("read");
    let r = w
        .set(
            &w.owner,
            "orgs/other",
            &other.etag,
            &[binding(&role.id, &["user:alice@acme.test"])],
        )
        .await;
    assert!(
        matches!(r, Err(AccessError::Invalid { ref message, .. }) if message.contains("only be bound within orgs/acme")),
        "{r:?}"
    );
    let v = w.view();
    let ctx = w.ctx(&v);
    gatehouse::access::groups::add_member(&ctx, &w.owner, &g.name, "user:alice@acme.test")
        .await
        .expect("member");
    w.reload().await;
    assert!(w.check(
        &alice,
        "object-storage.buckets.create",
        "orgs/acme/projects/backend/buckets/b1"
    ));
    assert!(!w.check(
        &alice,
        "object-storage.buckets.create",
        "orgs/other/projects/x"
    ));
    w.s.stop().await;
}

/// A verified account for `email` is created and its invitations are accepted.
async fn sign_up_and_accept(
    w: &World,
    email: &str,
) -> Vec<gatehouse::access::invitations::Outcome> {
    let st = &w.s.state;
    let v = w.view();
    let ctx = w.ctx(&v);
    let user = accounts::create_user(&ctx, &st.passwords, &w.owner, email, "", None, true)
        .await
        .expect("user");
    w.reload().await;
    let v = w.view();
    let ctx = w.ctx(&v);
    gatehouse::access::invitations::accept(&ctx, &user.id, email)
        .await
        .expect("accept")
}

#[tokio::test]
async fn invitations_become_bindings_only_while_the_inviter_can_grant() {
    let w = World::new(|_| {}).await;
    let st = &w.s.state;
    let p = w.get(&w.owner, "orgs/acme").await.expect("read");
    let alice_member = "user:alice@acme.test";
    // alice owns orgs/acme too, and invites two people into the backend project
    w.set(
        &w.owner,
        "orgs/acme",
        &p.etag,
        &[binding("owner", &["user:owner@acme.test", alice_member])],
    )
    .await
    .expect("two owners");
    let alice = w.actor("alice@acme.test").await;
    let bp = w
        .get(&alice, "orgs/acme/projects/backend")
        .await
        .expect("read");
    let written = w
        .set(
            &alice,
            "orgs/acme/projects/backend",
            &bp.etag,
            &[binding(
                "editor",
                &["user:new1@acme.test", "user:new2@acme.test"],
            )],
        )
        .await
        .expect("invite");
    assert_eq!(
        written.policy.bindings[0].pending_members,
        vec!["user:new1@acme.test", "user:new2@acme.test"]
    );

    // new1 signs up and verifies: the invitation becomes a binding
    let out = sign_up_and_accept(&w, "new1@acme.test").await;
    assert_eq!(out.len(), 1);
    assert!(out[0].accepted);
    w.reload().await;
    let new1_actor = w.actor("new1@acme.test").await;
    assert!(w.check(
        &new1_actor,
        "resourcemanager.projects.update",
        "orgs/acme/projects/backend"
    ));

    // alice stops being an owner before new2 accepts: the old invitation grants nothing
    let p = w.get(&w.owner, "orgs/acme").await.expect("read");
    w.set(
        &w.owner,
        "orgs/acme",
        &p.etag,
        &[binding("owner", &["user:owner@acme.test"])],
    )
    .await
    .expect("demote alice");
    let out = sign_up_and_accept(&w, "new2@acme.test").await;
    assert_eq!(out.len(), 1);
    assert!(
        !out[0].accepted,
        "the granting rule is checked again at acceptance"
    );
    w.reload().await;
    let new2_actor = w.actor("new2@acme.test").await;
    assert!(!w.check(
        &new2_actor,
        "resourcemanager.projects.get",
        "orgs/acme/projects/backend"
    ));
    assert!(
        st.store
            .invitations_for("new2@acme.test")
            .await
            .expect("list")
            .is_empty(),
        "used up either way"
    );
    w.s.stop().await;
}

#[tokio::test]
async fn stackpath_members_can_use_the_default_stack() {
    let w = World::new(|c| c.catalog = "stackpath".into()).await;
    let p = w.get(&w.owner, "orgs/acme").await.expect("read");
    let mut bindings = p.bindings.clone();
    bindings.push(binding("roles/identityViewer", &["user:joiner@acme.test"]));
    w.set(&w.owner, "orgs/acme", &p.etag, &bindings)
        .await
        .expect("invite");
    let out = sign_up_and_accept(&w, "joiner@acme.test").await;
    assert!(out[0].accepted);
    w.reload().await;
    let j = w.actor("joiner@acme.test").await;
    assert!(
        w.check(
            &j,
            "resourcemanager.projects.update",
            "orgs/acme/projects/default"
        ),
        "the default stack is theirs to use"
    );
    assert!(!w.check(
        &j,
        "resourcemanager.projects.update",
        "orgs/acme/projects/other"
    ));
    assert!(!w.check(&j, "billing.invoices.get", "orgs/acme"));
    w.s.stop().await;
}

#[tokio::test]
async fn review_attacks_are_refused() {
    let w = World::new(|_| {}).await;
    let st = &w.s.state;
    let alice = w.actor("alice@acme.test").await;

    // 1. minting for a service account that owns the org through a group
    let v = w.view();
    let ctx = w.ctx(&v);
    let sa = accounts::create_service_account(&ctx, &w.owner, "orgs/acme", "ci", "CI", "")
        .await
        .expect("sa");
    let admins = definitions::create_group(&ctx, &w.owner, "orgs/acme", "admins", "Admins")
        .await
        .expect("group");
    w.reload().await;
    let p = w.get(&w.owner, "orgs/acme").await.expect("read");
    let p = w
        .set(
            &w.owner,
            "orgs/acme",
            &p.etag,
            &[
                binding(
                    "owner",
                    &["user:owner@acme.test", "group:orgs/acme/groups/admins"],
                ),
                binding("iam.serviceAccountKeyAdmin", &["user:alice@acme.test"]),
            ],
        )
        .await
        .expect("policy");
    let v = w.view();
    let ctx = w.ctx(&v);
    gatehouse::access::groups::add_member(
        &ctx,
        &w.owner,
        &admins.name,
        &format!("serviceAccount:{}", sa.client_id),
    )
    .await
    .expect("member");
    w.reload().await;
    let v = w.view();
    let ctx = w.ctx(&v);
    let r = accounts::mint_secret(&ctx, &st.kek, &alice, &sa.name, None).await;
    assert!(
        matches!(r, Err(AccessError::CannotGrant(_))),
        "the group's owner role counts: {r:?}"
    );

    // 2. redefining a custom role cannot give it more than its author holds
    let role = definitions::put_custom_role(
        &ctx,
        &w.owner,
        "orgs/acme",
        "roler",
        "",
        &["iam.roles.create".into(), "iam.roles.update".into()],
    )
    .await
    .expect("role");
    w.reload().await;
    let p = w
        .set(
            &w.owner,
            "orgs/acme",
            &p.policy.etag,
            &[
                binding(
                    "owner",
                    &["user:owner@acme.test", "group:orgs/acme/groups/admins"],
                ),
                binding("iam.serviceAccountKeyAdmin", &["user:alice@acme.test"]),
                binding(&role.id, &["user:alice@acme.test"]),
            ],
        )
        .await
        .expect("bind the custom role");
    let v = w.view();
    let ctx = w.ctx(&v);
    let widen =
        definitions::put_custom_role(&ctx, &alice, "orgs/acme", "roler", "", &["*".into()]).await;
    assert!(
        matches!(widen, Err(AccessError::CannotGrant(_))),
        "{widen:?}"
    );

    // 5. a project with a service account is not deleted from under it
    resources::create(
        &ctx,
        &w.owner,
        Some("orgs/acme"),
        Kind::Project,
        "svc",
        "Svc",
    )
    .await
    .expect("project");
    accounts::create_service_account(&ctx, &w.owner, "orgs/acme/projects/svc", "job", "Job", "")
        .await
        .expect("sa");
    let r = resources::delete(&ctx, &w.owner, "orgs/acme/projects/svc").await;
    assert!(matches!(r, Err(AccessError::Refused(_))), "{r:?}");

    // 8. the same invitee twice is one invitation, not a server error
    let bp = w
        .get(&w.owner, "orgs/acme/projects/backend")
        .await
        .expect("read");
    let twice = w
        .set(
            &w.owner,
            "orgs/acme/projects/backend",
            &bp.etag,
            &[binding("viewer", &["user:new@x.test", "user:NEW@x.test"])],
        )
        .await
        .expect("duplicates are merged");
    assert_eq!(
        twice.policy.bindings[0].pending_members,
        vec!["user:new@x.test"]
    );

    let _ = p;
    w.s.stop().await;
}

#[tokio::test]
async fn the_last_owner_rule_is_checked_on_the_store_itself() {
    let w = World::new(|_| {}).await;
    let v = w.view();
    let ctx = w.ctx(&v);
    let g = definitions::create_group(&ctx, &w.owner, "orgs/acme", "owners", "Owners")
        .await
        .expect("group");
    w.reload().await;
    let v = w.view();
    let ctx = w.ctx(&v);
    gatehouse::access::groups::add_member(&ctx, &w.owner, &g.name, "user:owner@acme.test")
        .await
        .expect("member");
    w.reload().await;
    let p = w.get(&w.owner, "orgs/acme").await.expect("read");
    w.set(
        &w.owner,
        "orgs/acme",
        &p.etag,
        &[binding(
            "owner",
            &["user:owner@acme.test", "group:orgs/acme/groups/owners"],
        )],
    )
    .await
    .expect("two ways to own");
    // a stale view: taken now, used after the direct binding is gone
    let stale = w.view();
    let p = w.get(&w.owner, "orgs/acme").await.expect("read");
    w.set(
        &w.owner,
        "orgs/acme",
        &p.etag,
        &[binding("owner", &["group:orgs/acme/groups/owners"])],
    )
    .await
    .expect("the group owns");
    let ctx = w.ctx(&stale);
    let r =
        gatehouse::access::groups::remove_member(&ctx, &w.owner, &g.name, "user:owner@acme.test")
            .await;
    assert!(
        matches!(r, Err(AccessError::Refused(_))),
        "the stale view would allow it; the store refuses: {r:?}"
    );
    w.reload().await;
    assert_eq!(
        w.view()
            .as_ref()
            .as_ref()
            .expect("view")
            .evaluator
            .org_owner_count("orgs/acme", &Default::default()),
        1
    );
    w.s.stop().await;
}

#[tokio::test]
async fn stackpath_owner_cannot_be_deleted_or_disabled() {
    let w = World::new(|c| c.catalog = "stackpath".into()).await;
    let v = w.view();
    let ctx = w.ctx(&v);
    for change in [
        gatehouse::access::principals::Change::Delete,
        gatehouse::access::principals::Change::Disable,
    ] {
        let r =
            gatehouse::access::principals::change(&ctx, &w.owner, &w.owner.principal, "*", change)
                .await;
        assert!(
            matches!(r, Err(AccessError::Refused(ref m)) if m.contains("roles/systemOwner")),
            "{change:?}: {r:?}"
        );
    }
    w.s.stop().await;
}

//! The evaluator is loaded from the store at start and follows the change sequence:
//! on SQLite by polling, on PostgreSQL with Redis by notice (and polling).

use std::time::Duration;

use gatehouse::iam::PrincipalKind;
use gatehouse::iam::evaluator::PrincipalRef;
use gatehouse::iam::permissions::Permission;
use gatehouse::server::sync;
use gatehouse::store::directory::{self, GroupRow};
use gatehouse::store::iam::{self, BindingRow, UserRow};
use gatehouse::store::{self as st, audit};

use crate::support::{self, TestServer, gatehouse, secret};

fn id() -> String {
    uuid::Uuid::new_v4().to_string()
}

async fn allowed(s: &TestServer, user: &str, perm: &str, resource: &str) -> bool {
    let view = s.state.view.load();
    view.as_ref().as_ref().is_some_and(|v| {
        v.evaluator.check(
            PrincipalKind::User,
            user,
            perm,
            resource,
            gatehouse::now_unix(),
        )
    })
}

async fn within_a_second(s: &TestServer, user: &str, perm: &str, resource: &str, want: bool) {
    for _ in 0..20 {
        if allowed(s, user, perm, resource).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{user} {perm} on {resource} did not become {want} within a second");
}

/// A group with a user in it gets a binding; then the user leaves the group.
async fn group_binding_round_trip(s: &TestServer) {
    let store = &s.state.store;
    let user = id();
    let group = GroupRow {
        id: id(),
        name: "orgs/acme/groups/ops".into(),
        org: "orgs/acme".into(),
        slug: "ops".into(),
        display_name: "Ops".into(),
    };
    let mut tx = store.begin().await.expect("begin");
    iam::insert_user(
        &mut tx,
        &UserRow {
            id: user.clone(),
            email: format!("{user}@example.com"),
            display_name: "Op".into(),
            password_hash: None,
            email_verified: true,
            disabled: false,
        },
    )
    .await
    .expect("user");
    directory::insert_group(&mut tx, &group)
        .await
        .expect("group");
    directory::add_member(&mut tx, &group.id, &PrincipalRef::user(user.clone()))
        .await
        .expect("member");
    directory::register_api(
        &mut tx,
        "https://storage.example",
        "Storage",
        &[Permission {
            name: "object-storage.buckets.read".into(),
            description: "read".into(),
        }],
    )
    .await
    .expect("api");
    iam::insert_binding(
        &mut tx,
        &BindingRow {
            id: id(),
            scope: "orgs/acme/projects/p1".into(),
            role: "object-storage.reader".into(),
            principal_kind: "group".into(),
            principal_id: group.id.clone(),
            expires_at: None,
        },
    )
    .await
    .expect("binding");
    let seq = st::bump_change(&mut tx, "test", "ops").await.expect("bump");
    audit::append(
        &mut tx,
        seq,
        audit::NewAuditEvent {
            actor: "test",
            action: "test",
            target: "ops",
            scope: "orgs/acme",
            before: None,
            after: None,
        },
    )
    .await
    .expect("audit");
    tx.commit().await.expect("commit");
    sync::announce(&s.state.ephemeral, seq).await;
    within_a_second(
        s,
        &user,
        "object-storage.buckets.read",
        "orgs/acme/projects/p1/buckets/logs",
        true,
    )
    .await;

    let mut tx = store.begin().await.expect("begin");
    assert!(
        directory::remove_member(&mut tx, &group.id, &PrincipalRef::user(user.clone()))
            .await
            .expect("remove")
    );
    let seq = st::bump_change(&mut tx, "test", "ops").await.expect("bump");
    tx.commit().await.expect("commit");
    sync::announce(&s.state.ephemeral, seq).await;
    within_a_second(
        s,
        &user,
        "object-storage.buckets.read",
        "orgs/acme/projects/p1/buckets/logs",
        false,
    )
    .await;
}

#[tokio::test]
async fn sqlite_node_follows_changes_by_polling() {
    let s = TestServer::start().await;
    group_binding_round_trip(&s).await;
    s.stop().await;
}

#[tokio::test]
async fn postgres_and_redis_node_follows_changes() {
    let Some(db) = support::postgres_url().await else {
        return;
    };
    let Some(redis) = support::redis_url() else {
        return;
    };
    let s = TestServer::start_with(|c| {
        c.database_url = secret(&db);
        c.redis_url = secret(&redis);
        c.poll_interval_ms = 1000;
    })
    .await;
    group_binding_round_trip(&s).await;
    s.stop().await;
}

#[tokio::test]
async fn stored_roles_the_catalog_lacks_stop_the_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = gatehouse(
        dir.path(),
        &["bootstrap", "--org", "acme", "--owner-email", "o@acme.test"],
        &[("GATEHOUSE_BOOTSTRAP_PASSWORD", "long enough password")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listen = format!("127.0.0.1:{}", support::free_port());
    let out = gatehouse(
        dir.path(),
        &["serve"],
        &[
            ("GATEHOUSE_CATALOG", "stackpath"),
            ("GATEHOUSE_LISTEN", &listen),
        ],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.trim().lines().count() == 1
            && stderr.contains("GATEHOUSE_CATALOG")
            && stderr.contains("\"owner\""),
        "{stderr}"
    );
}

#[tokio::test]
async fn stackpath_bootstrap_binds_the_system_owner_and_makes_the_default_stack() {
    let s = TestServer::start_with(|c| c.catalog = "stackpath".into()).await;
    let out = gatehouse(
        &s.dir,
        &[
            "bootstrap",
            "--org",
            "acme",
            "--owner-email",
            "root@acme.test",
        ],
        &[
            ("GATEHOUSE_BOOTSTRAP_PASSWORD", "long enough password"),
            ("GATEHOUSE_CATALOG", "stackpath"),
            (
                "GATEHOUSE_DATA_DIR",
                s.dir.join("data").to_str().expect("path"),
            ),
            (
                "GATEHOUSE_KEYS_DIR",
                s.dir.join("keys").to_str().expect("path"),
            ),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let owner = s
        .state
        .store
        .user_by_email("root@acme.test")
        .await
        .expect("get")
        .expect("owner");
    assert!(
        s.state
            .store
            .resource("orgs/acme/projects/default")
            .await
            .expect("get")
            .is_some(),
        "default stack"
    );
    within_a_second(&s, &owner.id, "billing.invoices.get", "orgs/acme", true).await;
    within_a_second(
        &s,
        &owner.id,
        "resourcemanager.projects.update",
        "orgs/acme/projects/default",
        true,
    )
    .await;
    s.stop().await;
}

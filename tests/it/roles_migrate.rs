//! `gatehouse roles migrate [--apply]` with seed 001's mapping.

use std::time::Duration;

use gatehouse::iam::PrincipalKind;
use gatehouse::store::iam::{self, BindingRow, UserRow};

use crate::support::{TestServer, gatehouse, json_out};

fn cli(s: &TestServer, args: &[&str]) -> serde_json::Value {
    json_out(&gatehouse(
        &s.dir,
        args,
        &[
            (
                "GATEHOUSE_DATA_DIR",
                s.dir.join("data").to_str().expect("path"),
            ),
            (
                "GATEHOUSE_KEYS_DIR",
                s.dir.join("keys").to_str().expect("path"),
            ),
        ],
    ))
}

#[tokio::test]
async fn dry_run_lists_widenings_and_apply_rewrites_bindings() {
    let s = TestServer::start().await;
    let store = &s.state.store;
    let bob = uuid::Uuid::new_v4().to_string();
    let mut tx = store.begin().await.expect("begin");
    iam::insert_user(
        &mut tx,
        &UserRow {
            id: bob.clone(),
            email: "bob@test.example".into(),
            display_name: "Bob".into(),
            password_hash: None,
            email_verified: true,
            disabled: false,
        },
    )
    .await
    .expect("user");
    for (role, scope) in [
        ("organization.member", "orgs/test"),
        ("project.member", "orgs/test/projects/backend"),
        ("organization.admin", "orgs/test"),
    ] {
        iam::insert_binding(
            &mut tx,
            &BindingRow {
                id: uuid::Uuid::new_v4().to_string(),
                scope: scope.into(),
                role: role.into(),
                principal_kind: "user".into(),
                principal_id: bob.clone(),
                expires_at: None,
            },
        )
        .await
        .expect("binding");
    }
    gatehouse::store::bump_change(&mut tx, "test", "bob")
        .await
        .expect("bump");
    tx.commit().await.expect("commit");

    let plan = cli(&s, &["roles", "migrate"]);
    assert_eq!(plan["applied"], false);
    assert_eq!(plan["steps"], 2, "organization.member has no replacement");
    assert_eq!(plan["widenings"], 2);
    let steps = plan["plan"].as_array().expect("plan");
    assert!(steps.iter().any(|s| s["from"] == "project.member"
        && s["to"] == "editor"
        && s["widens_reach"] == true));
    assert!(
        steps
            .iter()
            .any(|s| s["from"] == "organization.admin" && s["to"] == "owner")
    );
    let roles: Vec<String> = store
        .bindings()
        .await
        .expect("bindings")
        .into_iter()
        .map(|b| b.role)
        .collect();
    assert!(
        roles.contains(&"project.member".to_string()),
        "a dry run changes nothing"
    );

    let done = cli(&s, &["roles", "migrate", "--apply"]);
    assert_eq!(done["applied"], true);
    let mut roles: Vec<String> = store
        .bindings()
        .await
        .expect("bindings")
        .into_iter()
        .map(|b| b.role)
        .collect();
    roles.sort();
    assert_eq!(roles, vec!["editor", "organization.member", "owner"]);
    let events = store.audit_events(None, 100).await.expect("audit");
    assert_eq!(
        events
            .iter()
            .filter(|e| e.action == "binding.migrate")
            .count(),
        2
    );

    // the running node now lets Bob's (inheriting) editor role reach below the project
    let mut reached = false;
    for _ in 0..20 {
        let view = s.state.view.load();
        if view.as_ref().as_ref().is_some_and(|v| {
            v.evaluator.check(
                PrincipalKind::User,
                &bob,
                "resourcemanager.environments.create",
                "orgs/test/projects/backend/envs/dev",
                gatehouse::now_unix(),
            )
        }) {
            reached = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reached);
    assert_eq!(
        cli(&s, &["roles", "migrate"])["steps"],
        0,
        "nothing left to migrate"
    );
    s.stop().await;
}

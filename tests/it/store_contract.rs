//! The durable store contract, run against SQLite and PostgreSQL.

use gatehouse::bootstrap;
use gatehouse::crypto::kek::Kek;
use gatehouse::crypto::keyring;
use gatehouse::store::iam::{self, BindingRow, ClientRow, ResourceRow, ServiceAccountRow, UserRow};
use gatehouse::store::{self, Store, StoreError, audit};
use serde_json::json;

use crate::support;

async fn sqlite() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("db/gatehouse.db").display());
    let store = Store::connect(&url, 8).await.expect("connect");
    store.migrate().await.expect("migrate");
    (store, dir)
}

async fn postgres() -> Option<Store> {
    let url = support::postgres_url().await?;
    let store = Store::connect(&url, 8).await.expect("connect");
    store.migrate().await.expect("migrate");
    Some(store)
}

fn catalog() -> gatehouse::iam::Catalog {
    gatehouse::iam::Catalog::named("default").expect("catalog")
}

fn id() -> String {
    uuid::Uuid::new_v4().to_string()
}

async fn contract(store: &Store) {
    // Migrations are idempotent.
    store.migrate().await.expect("second migrate");
    store.ping().await.expect("ping");

    // The change sequence moves only with committed transactions.
    let start = store.current_seq().await.expect("seq");
    let mut tx = store.begin().await.expect("begin");
    let seq = store::bump_change(&mut tx, "test", "x")
        .await
        .expect("bump");
    assert_eq!(seq, start + 1);
    tx.rollback().await.expect("rollback");
    assert_eq!(store.current_seq().await.expect("seq"), start);
    let mut tx = store.begin().await.expect("begin");
    store::bump_change(&mut tx, "test", "x")
        .await
        .expect("bump");
    store::set_meta(&mut tx, "k", "v1").await.expect("meta");
    store::set_meta(&mut tx, "k", "v2").await.expect("meta");
    tx.commit().await.expect("commit");
    assert_eq!(store.current_seq().await.expect("seq"), start + 1);
    assert_eq!(store.meta("k").await.expect("meta").as_deref(), Some("v2"));

    // Concurrent writers all commit, each with its own sequence number.
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut tx = s.begin().await.expect("begin");
            let seq = store::bump_change(&mut tx, "test", "c")
                .await
                .expect("bump");
            tx.commit().await.expect("commit");
            seq
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.expect("join"));
    }
    seqs.sort();
    seqs.dedup();
    assert_eq!(
        seqs.len(),
        12,
        "every writer got a distinct sequence number"
    );
    assert_eq!(store.current_seq().await.expect("seq"), start + 13);

    // IAM rows round-trip; names and emails are unique.
    let mut tx = store.begin().await.expect("begin");
    let org = ResourceRow {
        id: id(),
        name: "orgs/contract".into(),
        kind: "organization".into(),
        parent: None,
        slug: "contract".into(),
        display_name: "Contract".into(),
        created_at: 1,
        deleted_at: None,
    };
    iam::insert_resource(&mut tx, &org).await.expect("resource");
    let user = UserRow {
        id: id(),
        email: "alice@example.com".into(),
        display_name: "Alice".into(),
        password_hash: None,
        email_verified: true,
        disabled: false,
    };
    iam::insert_user(&mut tx, &user).await.expect("user");
    let client = ClientRow {
        client_id: "c1".into(),
        parent: "orgs/contract".into(),
        display_name: "App".into(),
        redirect_uris: vec![
            "https://app.example/cb".into(),
            "http://127.0.0.1/cb".into(),
        ],
        public_client: true,
        first_party: false,
        default_api: None,
        secret_hash: None,
    };
    iam::insert_client(&mut tx, &client).await.expect("client");
    let sa = ServiceAccountRow {
        id: id(),
        client_id: id(),
        name: "orgs/contract/service-accounts/ci".into(),
        parent: "orgs/contract".into(),
        slug: "ci".into(),
        display_name: "CI".into(),
        description: String::new(),
        disabled: false,
    };
    iam::insert_service_account(&mut tx, &sa).await.expect("sa");
    iam::insert_secret(&mut tx, &id(), &sa.id, "live", None)
        .await
        .expect("secret");
    iam::insert_secret(&mut tx, &id(), &sa.id, "expired", Some(10))
        .await
        .expect("secret");
    let binding = BindingRow {
        id: id(),
        scope: "orgs/contract".into(),
        role: "owner".into(),
        principal_kind: "user".into(),
        principal_id: user.id.clone(),
        expires_at: Some(4_000_000_000),
    };
    iam::insert_binding(&mut tx, &binding)
        .await
        .expect("binding");
    tx.commit().await.expect("commit");

    assert_eq!(
        store.resource("orgs/contract").await.expect("get"),
        Some(org.clone())
    );
    assert_eq!(
        store.user_by_email("alice@example.com").await.expect("get"),
        Some(user.clone())
    );
    assert_eq!(store.client("c1").await.expect("get"), Some(client));
    assert_eq!(
        store
            .service_account_by_client_id(&sa.client_id)
            .await
            .expect("get"),
        Some(sa.clone())
    );
    assert_eq!(
        store.secret_hashes(&sa.id, 100).await.expect("get"),
        vec!["live".to_string()]
    );
    assert!(store.bindings().await.expect("list").contains(&binding));
    assert!(store.resources().await.expect("list").contains(&org));

    let mut tx = store.begin().await.expect("begin");
    let dup = ResourceRow {
        id: id(),
        ..org.clone()
    };
    assert!(matches!(
        iam::insert_resource(&mut tx, &dup).await,
        Err(StoreError::Conflict(_))
    ));
    drop(tx);
    let mut tx = store.begin().await.expect("begin");
    let dup = UserRow {
        id: id(),
        ..user.clone()
    };
    assert!(matches!(
        iam::insert_user(&mut tx, &dup).await,
        Err(StoreError::Conflict(_))
    ));
    drop(tx);
    let mut tx = store.begin().await.expect("begin");
    let dup = BindingRow {
        id: id(),
        ..binding.clone()
    };
    assert!(matches!(
        iam::insert_binding(&mut tx, &dup).await,
        Err(StoreError::Conflict(_))
    ));
    drop(tx);

    // Audit events are appended in order and paged by id.
    let before = store.audit_events(None, 10_000).await.expect("list").len();
    for n in 0..3 {
        let mut tx = store.begin().await.expect("begin");
        let seq = store::bump_change(&mut tx, "test", "a")
            .await
            .expect("bump");
        audit::append(
            &mut tx,
            seq,
            audit::NewAuditEvent {
                actor: "user:alice@example.com",
                action: "test.event",
                target: "orgs/contract",
                scope: "orgs/contract",
                before: None,
                after: Some(json!({ "n": n })),
            },
        )
        .await
        .expect("append");
        tx.commit().await.expect("commit");
    }
    let all = store.audit_events(None, 10_000).await.expect("list");
    assert_eq!(all.len(), before + 3);
    let tail = &all[before..];
    assert_eq!(
        tail.iter()
            .map(|e| e.after.clone().expect("after")["n"].clone())
            .collect::<Vec<_>>(),
        vec![json!(0), json!(1), json!(2)]
    );
    let page = store
        .audit_events(Some(&tail[0].id), 1)
        .await
        .expect("page");
    assert_eq!(page, vec![tail[1].clone()]);
    // the log is append-only, whatever SQL reaches the database
    for attack in [
        "UPDATE audit_events SET actor = 'someone else'",
        "DELETE FROM audit_events",
    ] {
        let mut tx = store.begin().await.expect("begin");
        let r = sqlx::query(attack).execute(&mut *tx).await;
        assert!(r.is_err(), "{attack} must fail");
        let _ = tx.rollback().await;
    }
    assert_eq!(
        store.audit_events(None, 10_000).await.expect("list"),
        all,
        "nothing changed"
    );

    // Signing keys: the first key is stored once, rotation retires, revocation marks.
    let (kek, _) = Kek::generate();
    let now = gatehouse::now_unix();
    let first =
        keyring::new_row(gatehouse::config::SigningAlg::ES256, &kek, now, now).expect("key");
    assert!(store.insert_initial_key(&first, now).await.expect("insert"));
    let other =
        keyring::new_row(gatehouse::config::SigningAlg::ES256, &kek, now, now).expect("key");
    assert!(
        !store.insert_initial_key(&other, now).await.expect("insert"),
        "a usable key exists"
    );
    let next =
        keyring::new_row(gatehouse::config::SigningAlg::ES256, &kek, now, now + 300).expect("key");
    store
        .rotate_signing_key(&next, 660, "test")
        .await
        .expect("rotate");
    let rows = store.signing_keys().await.expect("keys");
    let old = rows.iter().find(|r| r.kid == first.kid).expect("old");
    assert_eq!(old.retires_at, Some(now + 300));
    assert_eq!(old.expires_at, Some(now + 960));
    let new = rows.iter().find(|r| r.kid == next.kid).expect("new");
    assert_eq!(new.retires_at, None);
    assert!(kek.open(&new.kid, &new.private_key).is_ok());
    assert!(
        store
            .revoke_signing_key(&first.kid, None, "test")
            .await
            .expect("revoke")
    );
    assert!(
        !store
            .revoke_signing_key(&first.kid, None, "test")
            .await
            .expect("revoke"),
        "already revoked"
    );
    assert!(
        !store
            .revoke_signing_key("nope", None, "test")
            .await
            .expect("revoke")
    );
    let later = gatehouse::now_unix() + 2;
    assert_eq!(store.purge_signing_keys(later).await.expect("purge"), 1);
    assert!(
        store
            .signing_keys()
            .await
            .expect("keys")
            .iter()
            .all(|r| r.kid != first.kid)
    );
}

async fn bootstrap_is_idempotent_and_serialized(store: &Store) {
    let (kek, _) = Kek::generate();
    let req = |org: &str| bootstrap::Request {
        org: org.into(),
        owner_email: "Owner@Example.com".into(),
        owner_password: "a long password".into(),
        service_account: Some("robot".into()),
    };
    // Several at once: exactly one creates.
    let mut tasks = Vec::new();
    for n in 0..4 {
        let s = store.clone();
        let k = Kek::from_text(&gatehouse::crypto::b64(&[7u8; 32])).expect("kek");
        let r = req(&format!("org-{n}"));
        tasks.push(tokio::spawn(async move {
            bootstrap::run(&s, &k, "http://127.0.0.1:1", &catalog(), r).await
        }));
    }
    let mut created = 0;
    for t in tasks {
        let (out, _) = t.await.expect("join").expect("bootstrap");
        if out["created"] == json!(true) {
            created += 1;
        } else {
            assert_eq!(out, json!({ "created": false }));
        }
    }
    assert_eq!(
        created, 1,
        "exactly one concurrent bootstrap creates the instance"
    );
    let seq = store.current_seq().await.expect("seq");
    let (out, wrote) = bootstrap::run(store, &kek, "http://127.0.0.1:1", &catalog(), req("other"))
        .await
        .expect("again");
    assert_eq!(out, json!({ "created": false }));
    assert_eq!(wrote, None);
    assert_eq!(
        store.current_seq().await.expect("seq"),
        seq,
        "a second run changes nothing"
    );
    let owner = store
        .user_by_email("owner@example.com")
        .await
        .expect("get")
        .expect("owner");
    assert!(owner.email_verified);
    let owner_bindings: Vec<_> = store
        .bindings()
        .await
        .expect("bindings")
        .into_iter()
        .filter(|b| b.principal_id == owner.id)
        .map(|b| (b.role, b.scope))
        .collect();
    assert!(
        owner_bindings.contains(&("owner".into(), "*".into())),
        "instance owner"
    );
    assert_eq!(owner_bindings.len(), 2);
}

/// Consents and refresh-token families.
async fn oidc_rows(store: &Store) {
    use gatehouse::store::oidc::FamilyRow;
    let now = 1_000;
    assert!(store.consent("u1", "app").await.expect("none").is_empty());
    let scopes = vec![
        "openid".to_owned(),
        "resource:https://api.example".to_owned(),
    ];
    store
        .put_consent("u1", "app", &scopes, now)
        .await
        .expect("put");
    store
        .put_consent("u1", "app", &scopes[..1], now + 1)
        .await
        .expect("replace");
    assert_eq!(store.consent("u1", "app").await.expect("get"), scopes[..1]);
    assert!(store.consent("u1", "other").await.expect("get").is_empty());

    let family = |id: &str, session: Option<&str>| FamilyRow {
        id: id.to_owned(),
        user_id: "u1".into(),
        client_id: "app".into(),
        scope: "openid roles".into(),
        resource: None,
        auth_time: now,
        amr: "fed".into(),
        session: session.map(str::to_owned),
        expires_at: now + 100,
        revoked_at: None,
    };
    store
        .create_family(&family("f1", Some("s1")), "h0", now)
        .await
        .expect("family");
    let p = store
        .presented_refresh("h0")
        .await
        .expect("get")
        .expect("h0");
    assert_eq!(
        (p.family, p.generation, p.used),
        (family("f1", Some("s1")), 0, false)
    );
    assert_eq!(p.user, None, "the user row does not exist here");
    assert!(
        store
            .presented_refresh("nope")
            .await
            .expect("get")
            .is_none()
    );
    assert!(
        store
            .rotate_presented("h0", "h1", "f1", 0, now)
            .await
            .expect("rotate")
    );
    assert!(
        store
            .presented_refresh("h0")
            .await
            .expect("get")
            .expect("h0")
            .used
    );
    let p1 = store
        .presented_refresh("h1")
        .await
        .expect("get")
        .expect("h1");
    assert_eq!((p1.generation, p1.used), (1, false));
    assert!(
        !store
            .rotate_presented("h0", "h2", "f1", 0, now)
            .await
            .expect("reuse"),
        "a used token does not rotate again"
    );
    assert!(store.presented_refresh("h2").await.expect("get").is_none());
    // of concurrent rotations of one token, exactly one wins
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.rotate_presented("h1", &format!("race{i}"), "f1", 1, now)
                .await
                .expect("rotate")
        }));
    }
    let mut won = 0;
    for t in tasks {
        if t.await.expect("task") {
            won += 1;
        }
    }
    assert_eq!(won, 1, "one rotation wins");
    assert!(
        store
            .revoke_family("f1", "reuse", now)
            .await
            .expect("revoke")
    );
    assert!(
        !store
            .revoke_family("f1", "reuse", now)
            .await
            .expect("again")
    );
    let revoked = store
        .presented_refresh("h1")
        .await
        .expect("get")
        .expect("h1");
    assert_eq!(revoked.family.revoked_at, Some(now));
    // logout ends the families of a session; a user's end with the account
    store
        .create_family(&family("f2", Some("s2")), "g0", now)
        .await
        .expect("family");
    store
        .create_family(&family("f3", None), "k0", now)
        .await
        .expect("offline family");
    assert_eq!(
        store
            .revoke_session_families("s2", now)
            .await
            .expect("logout"),
        1
    );
    let alive = |h: &'static str| async move {
        store
            .presented_refresh(h)
            .await
            .expect("get")
            .expect("token")
            .family
            .revoked_at
            .is_none()
    };
    assert!(!alive("g0").await);
    assert!(alive("k0").await);
    let mut tx = store.begin().await.expect("begin");
    let n = gatehouse::store::oidc::revoke_user_families(&mut tx, "u1", "user_disabled", now)
        .await
        .expect("user");
    tx.commit().await.expect("commit");
    assert_eq!(n, 1, "only the live offline family was left");
    assert!(!alive("k0").await);
}

#[tokio::test]
async fn sqlite_keeps_the_oidc_contract() {
    let (store, _dir) = sqlite().await;
    oidc_rows(&store).await;
}

#[tokio::test]
async fn postgres_keeps_the_oidc_contract() {
    let Some(store) = postgres().await else {
        return;
    };
    oidc_rows(&store).await;
}

#[tokio::test]
async fn sqlite_keeps_the_contract() {
    let (store, _dir) = sqlite().await;
    contract(&store).await;
}

#[tokio::test]
async fn postgres_keeps_the_contract() {
    let Some(store) = postgres().await else {
        return;
    };
    contract(&store).await;
}

#[tokio::test]
async fn sqlite_bootstrap_is_idempotent() {
    let (store, _dir) = sqlite().await;
    bootstrap_is_idempotent_and_serialized(&store).await;
}

#[tokio::test]
async fn postgres_bootstrap_is_idempotent() {
    let Some(store) = postgres().await else {
        return;
    };
    bootstrap_is_idempotent_and_serialized(&store).await;
}

#[tokio::test]
async fn sqlite_file_is_in_wal_mode() {
    let (store, dir) = sqlite().await;
    drop(store);
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(&format!(
        "sqlite://{}",
        dir.path().join("db/gatehouse.db").display()
    ))
    .await
    .expect("open");
    let (mode,): (String,) = sqlx::query_as("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .expect("pragma");
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn unreachable_postgres_is_unavailable() {
    let port = support::free_port();
    let err = Store::connect(&format!("postgres://postgres@127.0.0.1:{port}/test"), 2)
        .await
        .expect_err("nothing listens there");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
}

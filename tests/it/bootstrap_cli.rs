//! `gatehouse bootstrap` as DESIGN.md section 6 defines it.

use std::time::Duration;

use serde_json::json;

use crate::support::{TestServer, command, gatehouse, json_out};

fn vars(s: &TestServer) -> Vec<(&'static str, String)> {
    vec![
        (
            "GATEHOUSE_DATA_DIR",
            s.dir.join("data").display().to_string(),
        ),
        (
            "GATEHOUSE_KEYS_DIR",
            s.dir.join("keys").display().to_string(),
        ),
        ("GATEHOUSE_ISSUER", s.base.clone()),
    ]
}

fn run(s: &TestServer, args: &[&str], extra: &[(&str, &str)]) -> std::process::Output {
    let owned = vars(s);
    let mut all: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    all.extend_from_slice(extra);
    gatehouse(&s.dir, args, &all)
}

const ARGS: &[&str] = &[
    "bootstrap",
    "--org",
    "acme",
    "--owner-email",
    "Owner@Acme.test",
    "--service-account",
    "deployer",
];

#[tokio::test]
async fn bootstrap_creates_once_and_the_running_server_sees_it() {
    let s = TestServer::start().await;
    let out = run(
        &s,
        ARGS,
        &[
            ("GATEHOUSE_BOOTSTRAP_PASSWORD", "correct horse battery"),
            ("GATEHOUSE_LOG", "debug"),
        ],
    );
    let made = json_out(&out);
    assert_eq!(made["created"], true);
    assert_eq!(made["organization"]["name"], "orgs/acme");
    assert_eq!(made["owner"]["email"], "owner@acme.test");
    assert_eq!(made["admin_client"]["client_id"], "gatehouse-admin");
    let secret = made["service_account"]["client_secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    let client_id = made["service_account"]["client_id"]
        .as_str()
        .expect("client id")
        .to_owned();
    assert_eq!(secret.len(), 43, "256 bits in base64url");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains(&secret), "the secret is never logged");
    assert!(
        !stderr.contains("correct horse battery"),
        "the password is never logged"
    );

    // the running server loads the new bindings without a restart
    let mut loaded = false;
    for _ in 0..40 {
        let view = s.state.view.load();
        if view
            .as_ref()
            .as_ref()
            .is_some_and(|v| v.evaluator.binding_count() == 3)
        {
            loaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        loaded,
        "the server applied the bootstrap from the change sequence"
    );

    // what was stored: a verified instance owner, a public first-party client, a hashed secret
    let store = &s.state.store;
    let owner = store
        .user_by_email("owner@acme.test")
        .await
        .expect("get")
        .expect("owner");
    assert!(owner.email_verified);
    let hash = owner.password_hash.expect("hash");
    assert!(hash.starts_with("$argon2id$"));
    assert!(
        s.state
            .passwords
            .verify("correct horse battery".into(), Some(hash))
            .await
    );
    let admin = store
        .client("gatehouse-admin")
        .await
        .expect("get")
        .expect("client");
    assert!(admin.public_client && admin.first_party);
    assert_eq!(
        admin.redirect_uris,
        vec!["http://127.0.0.1/callback".to_string()]
    );
    assert_eq!(admin.default_api, Some(format!("{}/v1", s.base)));
    let sa = store
        .service_account_by_client_id(&client_id)
        .await
        .expect("get")
        .expect("sa");
    let hashes = store
        .secret_hashes(&sa.id, gatehouse::now_unix())
        .await
        .expect("hashes");
    assert_eq!(hashes.len(), 1);
    assert_ne!(hashes[0], secret, "stored hashed, not as is");
    assert!(gatehouse::crypto::secret::verify(
        s.state.kek.secret_key(),
        &secret,
        &hashes[0]
    ));
    let audit = store.audit_events(None, 100).await.expect("audit");
    assert!(
        audit
            .iter()
            .any(|e| e.action == "organization.create" && e.actor == "system:bootstrap")
    );
    assert!(audit.iter().all(|e| {
        !e.after
            .as_ref()
            .is_some_and(|a| a.to_string().contains(&secret))
    }));

    // a second run prints {"created": false} and changes nothing
    let seq = store.current_seq().await.expect("seq");
    let again = json_out(&run(
        &s,
        ARGS,
        &[("GATEHOUSE_BOOTSTRAP_PASSWORD", "correct horse battery")],
    ));
    assert_eq!(again, json!({ "created": false }));
    assert_eq!(store.current_seq().await.expect("seq"), seq);
    s.stop().await;
}

#[tokio::test]
async fn the_password_comes_from_a_file_or_the_environment_never_argv() {
    let s = TestServer::start().await;
    let file = s.dir.join("pw");
    std::fs::write(&file, "from the file 123\n").expect("write");
    let made = json_out(&run(
        &s,
        &[
            "bootstrap",
            "--org",
            "filed",
            "--owner-email",
            "o@filed.test",
            "--owner-password-file",
            file.to_str().expect("path"),
        ],
        &[],
    ));
    assert_eq!(made["created"], true);
    assert!(made.get("service_account").is_none());
    let owner = s
        .state
        .store
        .user_by_email("o@filed.test")
        .await
        .expect("get")
        .expect("owner");
    assert!(
        s.state
            .passwords
            .verify("from the file 123".into(), owner.password_hash)
            .await
    );

    let other = TestServer::start().await;
    let out = run(
        &other,
        &["bootstrap", "--org", "x1", "--owner-email", "o@x.test"],
        &[],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("GATEHOUSE_BOOTSTRAP_PASSWORD"));
    let out = command(
        &other.dir,
        &[
            "bootstrap",
            "--org",
            "x1",
            "--owner-email",
            "o@x.test",
            "--owner-password",
            "on-argv",
        ],
        &[],
    )
    .output()
    .expect("run");
    assert!(
        !out.status.success(),
        "no flag takes the password on the command line"
    );

    for (args, pw, want) in [
        (
            vec!["bootstrap", "--org", "A_B", "--owner-email", "o@x.test"],
            "long enough pw",
            "--org",
        ),
        (
            vec!["bootstrap", "--org", "ab", "--owner-email", "not-an-email"],
            "long enough pw",
            "--owner-email",
        ),
        (
            vec!["bootstrap", "--org", "ab", "--owner-email", "o@x.test"],
            "short",
            "password",
        ),
        (
            vec![
                "bootstrap",
                "--org",
                "ab",
                "--owner-email",
                "o@x.test",
                "--service-account=-x",
            ],
            "long enough pw",
            "--service-account",
        ),
    ] {
        let out = run(&other, &args, &[("GATEHOUSE_BOOTSTRAP_PASSWORD", pw)]);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(want),
            "{args:?}"
        );
    }
    assert!(
        other
            .state
            .store
            .meta("bootstrapped")
            .await
            .expect("meta")
            .is_none(),
        "nothing half-written"
    );
    s.stop().await;
    other.stop().await;
}

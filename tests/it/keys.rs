//! `gatehouse keys rotate|revoke|list` against a running node sharing its store.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{TestServer, gatehouse, json_out};

fn cli(dir: &Path, args: &[&str]) -> std::process::Output {
    let data = dir.join("data");
    let keys = dir.join("keys");
    gatehouse(
        dir,
        args,
        &[
            ("GATEHOUSE_DATA_DIR", data.to_str().expect("path")),
            ("GATEHOUSE_KEYS_DIR", keys.to_str().expect("path")),
            ("GATEHOUSE_JWKS_CACHE_SECS", "2"),
        ],
    )
}

async fn published(s: &TestServer) -> Vec<String> {
    let jwks: Value = s
        .get("/.well-known/jwks.json")
        .await
        .json()
        .await
        .expect("json");
    jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["kid"].as_str().expect("kid").to_owned())
        .collect()
}

fn signer(s: &TestServer) -> String {
    s.state
        .keys
        .load()
        .signer(gatehouse::now_unix())
        .expect("signer")
        .kid
        .clone()
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..60 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} did not happen within three seconds");
}

#[tokio::test]
async fn rotation_publishes_before_signing_and_revocation_is_immediate() {
    let s = TestServer::start().await;
    let old = published(&s).await;
    assert_eq!(old.len(), 1);
    let old = old[0].clone();

    let rotated = json_out(&cli(&s.dir, &["keys", "rotate"]));
    let new = rotated["kid"].as_str().expect("kid").to_owned();
    // published for a whole cache lifetime (2 s here) before it signs, counted in
    // whole seconds with one to spare
    assert_eq!(
        rotated["activates_at"].as_i64(),
        rotated["published_at"].as_i64().map(|p| p + 3)
    );
    eventually("the new key is published", async || {
        published(&s).await.contains(&new)
    })
    .await;
    assert_eq!(
        signer(&s),
        old,
        "the new key does not sign before caches refreshed"
    );
    eventually("the new key signs", async || signer(&s) == new).await;
    assert!(
        published(&s).await.contains(&old),
        "the old key stays published for its tokens"
    );

    let list = json_out(&cli(&s.dir, &["keys", "list"]));
    let states: Vec<(String, String)> = list["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| {
            (
                k["kid"].as_str().expect("kid").into(),
                k["state"].as_str().expect("state").into(),
            )
        })
        .collect();
    assert!(
        states.contains(&(new.clone(), "signing".into())),
        "{states:?}"
    );
    assert!(
        states.contains(&(old.clone(), "published".into())),
        "{states:?}"
    );

    let revoked = json_out(&cli(&s.dir, &["keys", "revoke", &old]));
    assert_eq!(revoked, json!({ "revoked": old, "replacement": null }));
    eventually("the revoked key disappears", async || {
        !published(&s).await.contains(&old)
    })
    .await;
    assert_eq!(signer(&s), new);

    // revoking the only signing key puts a replacement in charge at once
    let revoked = json_out(&cli(&s.dir, &["keys", "revoke", &new]));
    let replacement = revoked["replacement"]
        .as_str()
        .expect("replacement")
        .to_owned();
    eventually("the replacement signs", async || {
        published(&s).await == vec![replacement.clone()] && signer(&s) == replacement
    })
    .await;

    let out = cli(&s.dir, &["keys", "revoke", "no-such-kid"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no unrevoked signing key"));
    let out = cli(&s.dir, &["keys", "rotate", "--alg", "HS256"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--alg"));

    // every key operation is in the audit log
    let events = s.state.store.audit_events(None, 1000).await.expect("audit");
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    for a in [
        "signing_key.create",
        "signing_key.rotate",
        "signing_key.revoke",
    ] {
        assert!(actions.contains(&a), "{a} in {actions:?}");
    }
    s.stop().await;
}

#[tokio::test]
async fn tokens_signed_by_the_node_verify_against_its_jwks() {
    let s = TestServer::start().await;
    let now = gatehouse::now_unix();
    let claims = json!({ "iss": s.base, "aud": "api", "sub": "x", "iat": now, "exp": now + 60 });
    let token =
        gatehouse::crypto::jwt::sign(&s.state.keys.load(), now, "at+jwt", &claims).expect("sign");
    let jwks: Value = s
        .get("/.well-known/jwks.json")
        .await
        .json()
        .await
        .expect("json");
    let key = gatehouse::crypto::keyring::decoding_key(&jwks["keys"][0]).expect("jwk");
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.set_audience(&["api"]);
    v.set_issuer(&[&s.base]);
    let got =
        jsonwebtoken::decode::<Value>(&token, &key, &v).expect("verifies with the published JWKS");
    assert_eq!(got.claims["sub"], "x");
    s.stop().await;
}

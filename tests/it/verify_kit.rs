//! `gatehouse::verify`, the kit for Rust resource servers, against a running server:
//! genuine tokens pass and are decided by the reach rule; forged, foreign, stale,
//! misaddressed and mistyped ones are refused; an unknown kid refetches the keys at
//! most once per interval; rotated keys are found; the extractor and the tower layer
//! answer 401 with a Bearer challenge.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use gatehouse::crypto::jwt;
use gatehouse::crypto::keyring::{self, KeyRing};
use gatehouse::store::keys::KeyRow;
use gatehouse::verify::{RequireToken, Verified, Verifier, VerifyError};
use serde_json::{Value, json};

use crate::policies::World;
use crate::support::client;

struct Kit {
    w: World,
    token: String,
    sub: String,
}

/// A server with a service account that owns `orgs/acme`, and its token for the
/// admin API with the `roles` claim.
async fn kit(adjust: impl FnOnce(&mut gatehouse::config::Config)) -> Kit {
    let w = World::new(adjust).await;
    let v = w.view();
    let ctx = w.ctx(&v);
    let sa = gatehouse::access::accounts::create_service_account(
        &ctx,
        &w.owner,
        "orgs/acme",
        "reader",
        "Reader",
        "",
    )
    .await
    .expect("sa");
    let minted =
        gatehouse::access::accounts::mint_secret(&ctx, &w.s.state.kek, &w.owner, &sa.name, None)
            .await
            .expect("secret");
    w.reload().await;
    let p = w.get(&w.owner, "orgs/acme").await.expect("read");
    let member = format!("serviceAccount:{}", sa.client_id);
    w.set(
        &w.owner,
        "orgs/acme",
        &p.etag,
        &[crate::policies::binding(
            "owner",
            &["user:owner@acme.test", &member],
        )],
    )
    .await
    .expect("bind");
    w.reload().await;
    let r: Value = client()
        .post(format!("{}/oauth2/token", w.s.base))
        .basic_auth(&sa.client_id, Some(&minted.client_secret))
        .form(&[("grant_type", "client_credentials"), ("scope", "roles")])
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("json");
    let token = r["access_token"].as_str().expect("access_token").to_owned();
    Kit {
        sub: sa.id,
        token,
        w,
    }
}

fn admin_api(k: &Kit) -> String {
    format!("{}/v1", k.w.s.base)
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn parts(token: &str) -> (Value, Value) {
    let mut it = token.split('.').map(|p| {
        use base64::Engine;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(p)
            .expect("b64");
        serde_json::from_slice::<Value>(&raw).expect("json")
    });
    (it.next().expect("header"), it.next().expect("claims"))
}

/// Claims like the server's, with `change` applied.
fn claims_of(k: &Kit, change: impl FnOnce(&mut Value)) -> Value {
    let (_, mut c) = parts(&k.token);
    change(&mut c);
    c
}

/// Signs `claims` with the server's own current key, as `typ`.
fn signed(k: &Kit, typ: &str, claims: &Value) -> String {
    let ring = k.w.s.state.keys.load();
    jwt::sign(&ring, gatehouse::now_unix(), typ, claims).expect("sign")
}

/// A key of some other issuer: its own kid, or the server's (`kid`).
fn foreign_ring(k: &Kit, kid: Option<&str>) -> KeyRing {
    let kek = &k.w.s.state.kek;
    let now = gatehouse::now_unix();
    let g = keyring::generate(gatehouse::config::SigningAlg::RS256).expect("key");
    let kid = kid.map(str::to_owned).unwrap_or(g.kid.clone());
    let mut jwk = g.jwk.clone();
    jwk["kid"] = json!(kid);
    let row = KeyRow {
        private_key: kek.seal(&kid, &g.pkcs8),
        public_jwk: jwk.to_string(),
        kid,
        alg: "RS256".into(),
        created_at: now - 10,
        activates_at: now - 10,
        retires_at: None,
        expires_at: None,
        revoked_at: None,
    };
    KeyRing::from_rows(&[row], kek, now).expect("ring")
}

async fn jwks_requests(k: &Kit) -> u64 {
    let text = client()
        .get(format!("{}/metrics", k.w.s.base))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .filter(|l| {
            l.starts_with("http_requests_total{") && l.contains("route=\"/.well-known/jwks.json\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

fn refused(r: Result<gatehouse::verify::AccessToken, VerifyError>, what: &str) -> VerifyError {
    match r {
        Ok(t) => panic!("{what}: accepted as {}", t.sub),
        Err(e) => e,
    }
}

#[tokio::test]
async fn genuine_tokens_pass_and_the_reach_rule_decides() {
    let k = kit(|_| {}).await;
    let v = Verifier::discover(&k.w.s.base, &admin_api(&k))
        .await
        .expect("discover");
    let t = v.verify(&k.token).await.expect("a genuine token verifies");
    assert_eq!(t.sub, k.sub);
    assert!(t.has_role("owner", "orgs/acme"), "roles {:?}", t.roles);
    assert!(t.has_role("owner", "orgs/acme/projects/backend/buckets/logs"));
    assert!(
        !t.has_role("owner", "orgs/acmex"),
        "orgs/acme/* must not reach orgs/acmex"
    );
    let catalog = v.catalog().await;
    assert!(t.has_permission(&catalog, "iam.policies.set", "orgs/acme/projects/backend"));
    assert!(!t.has_permission(&catalog, "iam.policies.set", "orgs/acmex"));
    assert!(!t.has_permission(&catalog, "iam.policies.set", "orgs/other"));
    assert!(!t.has_permission(&catalog, "no.such.permission", "orgs/acme"));
    assert!(
        v.allows(
            &k.token,
            "resourcemanager.projects.delete",
            "orgs/acme/projects/backend"
        )
        .await
        .expect("allows")
    );
    // A verifier for another API refuses the same token.
    let other = Verifier::discover(&k.w.s.base, "https://storage.example")
        .await
        .expect("discover");
    assert!(matches!(
        refused(other.verify(&k.token).await, "wrong audience"),
        VerifyError::Invalid(_)
    ));
    // The issuer must be the one discovery names.
    assert!(
        Verifier::discover(&format!("{}/", k.w.s.base), "x")
            .await
            .is_ok()
    );
    k.w.s.stop().await;
}

#[tokio::test]
async fn forged_foreign_stale_and_mistyped_tokens_are_refused() {
    let k = kit(|_| {}).await;
    let v = Verifier::discover(&k.w.s.base, &admin_api(&k))
        .await
        .expect("discover");
    let (header, _) = parts(&k.token);
    let kid = header["kid"].as_str().expect("kid").to_owned();
    let body = k.token.split('.').nth(1).expect("body").to_owned();

    // alg none with a published kid
    let none = format!(
        "{}.{body}.",
        b64(json!({ "alg": "none", "typ": "at+jwt", "kid": kid })
            .to_string()
            .as_bytes())
    );
    // (jsonwebtoken does not even parse a header with alg none)
    assert!(matches!(
        refused(v.verify(&none).await, "alg none"),
        VerifyError::Algorithm(_) | VerifyError::Malformed(_)
    ));

    // HS256 keyed with the public key (its JWK text, and its modulus)
    let jwks: Value = client()
        .get(format!("{}/.well-known/jwks.json", k.w.s.base))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("json");
    let jwk = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|j| j["kid"] == json!(kid))
        .expect("published")
        .clone();
    for secret in [
        jwk.to_string().into_bytes(),
        jwk["n"].as_str().unwrap_or("").as_bytes().to_vec(),
    ] {
        let head = b64(json!({ "alg": "HS256", "typ": "at+jwt", "kid": kid })
            .to_string()
            .as_bytes());
        let input = format!("{head}.{body}");
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &secret);
        let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
        let hs = format!("{input}.{}", b64(tag.as_ref()));
        assert!(matches!(
            refused(v.verify(&hs).await, "HS256 with the public key"),
            VerifyError::Algorithm(_)
        ));
    }

    // a key of another issuer, under its own kid and under the server's kid
    let claims = claims_of(&k, |_| {});
    let now = gatehouse::now_unix();
    let theirs = foreign_ring(&k, None);
    let t = jwt::sign(&theirs, now, "at+jwt", &claims).expect("sign");
    assert!(matches!(
        refused(v.verify(&t).await, "foreign key and kid"),
        VerifyError::UnknownKey(_)
    ));
    let impostor = foreign_ring(&k, Some(&kid));
    let t = jwt::sign(&impostor, now, "at+jwt", &claims).expect("sign");
    assert!(matches!(
        refused(v.verify(&t).await, "foreign key, real kid"),
        VerifyError::Invalid(_)
    ));

    // an ID token (typ JWT) addressed to the API is not an access token
    let id = signed(&k, "JWT", &claims);
    assert!(matches!(
        refused(v.verify(&id).await, "ID token"),
        VerifyError::NotAnAccessToken(_)
    ));

    // expiry and not-before, with the 30 s leeway
    let expired = signed(
        &k,
        "at+jwt",
        &claims_of(&k, |c| c["exp"] = json!(now - 120)),
    );
    assert!(matches!(
        refused(v.verify(&expired).await, "expired"),
        VerifyError::Invalid(_)
    ));
    let just = signed(&k, "at+jwt", &claims_of(&k, |c| c["exp"] = json!(now - 5)));
    v.verify(&just)
        .await
        .expect("expired within the leeway is accepted");
    let strict = Verifier::discover(&k.w.s.base, &admin_api(&k))
        .await
        .expect("discover")
        .with_leeway(Duration::ZERO);
    assert!(
        strict.verify(&just).await.is_err(),
        "without leeway it is expired"
    );
    let early = signed(
        &k,
        "at+jwt",
        &claims_of(&k, |c| c["nbf"] = json!(now + 120)),
    );
    assert!(matches!(
        refused(v.verify(&early).await, "not yet valid"),
        VerifyError::Invalid(_)
    ));

    // another issuer's name, another audience
    let iss = signed(
        &k,
        "at+jwt",
        &claims_of(&k, |c| c["iss"] = json!("https://evil.example")),
    );
    assert!(matches!(
        refused(v.verify(&iss).await, "wrong iss"),
        VerifyError::Invalid(_)
    ));
    let aud = signed(
        &k,
        "at+jwt",
        &claims_of(&k, |c| c["aud"] = json!("https://storage.example")),
    );
    assert!(matches!(
        refused(v.verify(&aud).await, "wrong aud"),
        VerifyError::Invalid(_)
    ));

    // a tampered body under the real signature
    let mut bad = claims.clone();
    bad["roles"] = json!(["owner@*"]);
    let sig = k.token.rsplit('.').next().expect("sig");
    let head = k.token.split('.').next().expect("head");
    let tampered = format!("{head}.{}.{sig}", b64(bad.to_string().as_bytes()));
    assert!(matches!(
        refused(v.verify(&tampered).await, "tampered"),
        VerifyError::Invalid(_)
    ));
    // garbage
    assert!(matches!(
        refused(v.verify("not.a.jwt").await, "garbage"),
        VerifyError::Malformed(_)
    ));
    k.w.s.stop().await;
}

#[tokio::test]
async fn unknown_kids_refetch_at_most_once_per_interval_and_rotated_keys_are_found() {
    // A cache lifetime longer than the test, so the count below holds only refetches
    // for unknown kids: with the default 2 s, generating 20 RSA keys under load
    // outlasted it and an ordinary revalidation was counted as a second read.
    let k = kit(|c| c.jwks_cache_secs = 3600).await;
    let v = Verifier::discover(&k.w.s.base, &admin_api(&k))
        .await
        .expect("discover");
    let before = jwks_requests(&k).await;
    let claims = claims_of(&k, |_| {});
    let now = gatehouse::now_unix();
    for _ in 0..20 {
        let forged = jwt::sign(&foreign_ring(&k, None), now, "at+jwt", &claims).expect("sign");
        assert!(matches!(
            refused(v.verify(&forged).await, "unknown kid"),
            VerifyError::UnknownKey(_)
        ));
    }
    let fetched = jwks_requests(&k).await - before;
    assert!(
        fetched <= 1,
        "20 unknown kids fetched the JWKS {fetched} times"
    );

    // A rotated key (published, then signing) is found by a verifier that has not
    // seen it: the unknown kid makes it read the JWKS again.
    let fresh = Verifier::discover(&k.w.s.base, &admin_api(&k))
        .await
        .expect("discover");
    let row = keyring::new_row(
        gatehouse::config::SigningAlg::RS256,
        &k.w.s.state.kek,
        now,
        now,
    )
    .expect("row");
    k.w.s
        .state
        .store
        .rotate_signing_key(&row, 600, "system:test")
        .await
        .expect("rotate");
    k.w.reload().await;
    let t = signed(&k, "at+jwt", &claims);
    assert_eq!(parts(&t).0["kid"], json!(row.kid), "the new key signs");
    fresh
        .verify(&t)
        .await
        .expect("a token of the rotated key verifies");
    // ... and the old key's tokens still do (it stays published)
    fresh
        .verify(&k.token)
        .await
        .expect("the old key's token verifies");
    k.w.s.stop().await;
}

#[tokio::test]
async fn the_layer_and_the_extractor_answer_401_with_a_bearer_challenge() {
    let k = kit(|_| {}).await;
    let v = Arc::new(
        Verifier::discover(&k.w.s.base, &admin_api(&k))
            .await
            .expect("discover"),
    );
    let layered = Router::new()
        .route("/me", get(|Verified(t): Verified| async move { t.sub }))
        .layer(RequireToken::new(v.clone()));
    let extracted = Router::new()
        .route("/me", get(|Verified(t): Verified| async move { t.sub }))
        .layer(axum::Extension(v.clone()));
    for (name, app) in [("layer", layered), ("extractor", extracted)] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let url = format!("http://{addr}/me");
        let none = client().get(&url).send().await.expect("none");
        assert_eq!(none.status(), 401, "{name}: no token");
        assert_eq!(
            none.headers()["www-authenticate"],
            "Bearer",
            "{name}: challenge"
        );
        let bad = client()
            .get(&url)
            .bearer_auth("x.y.z")
            .send()
            .await
            .expect("bad");
        assert_eq!(bad.status(), 401, "{name}: bad token");
        let challenge = bad.headers()["www-authenticate"]
            .to_str()
            .expect("ascii")
            .to_owned();
        assert!(
            challenge.starts_with("Bearer error=\"invalid_token\""),
            "{name}: {challenge}"
        );
        let good = client()
            .get(&url)
            .bearer_auth(&k.token)
            .send()
            .await
            .expect("good");
        assert_eq!(good.status(), 200, "{name}: good token");
        assert_eq!(good.text().await.expect("body"), k.sub, "{name}: the sub");
        server.abort();
    }
    k.w.s.stop().await;
}

#[tokio::test]
async fn documents_are_revalidated_with_their_etag_when_their_lifetime_ends() {
    let k = kit(|c| c.jwks_cache_secs = 1).await;
    let v = Verifier::discover(&k.w.s.base, &admin_api(&k))
        .await
        .expect("discover");
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let before = jwks_requests(&k).await;
    v.verify(&k.token)
        .await
        .expect("verifies after revalidation");
    let catalog = v.catalog().await;
    assert!(catalog.grants("owner", "iam.policies.set"));
    let text = client()
        .get(format!("{}/metrics", k.w.s.base))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert_eq!(
        jwks_requests(&k).await - before,
        1,
        "one revalidation of the JWKS"
    );
    assert!(
        text.lines().any(|l| l.starts_with("http_requests_total{")
            && l.contains("/.well-known/jwks.json")
            && l.contains("status=\"304\"")),
        "the JWKS was revalidated with If-None-Match (304)"
    );
    k.w.s.stop().await;
}

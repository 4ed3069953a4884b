//! The client-credentials grant for service accounts, as a client sees it, and the
//! attacks on it.

use std::time::Duration;

use base64::Engine;
use gatehouse::access::Actor;
use gatehouse::access::principals::{self, Change};
use gatehouse::iam::evaluator::PrincipalRef;
use serde_json::Value;

use crate::policies::World;
use crate::support::{basic, client};

struct Sa {
    client_id: String,
    secret: String,
    name: String,
}

async fn world() -> (World, Sa) {
    // Loopback is a trusted proxy here, so each request can come "from" an address of
    // its own and the attack tests do not throttle each other.
    let w = World::new(|c| c.trusted_proxies = vec!["127.0.0.1".parse().expect("cidr")]).await;
    let v = w.view();
    let ctx = w.ctx(&v);
    let sa = gatehouse::access::accounts::create_service_account(
        &ctx,
        &w.owner,
        "orgs/acme",
        "robot",
        "Robot",
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
    (
        w,
        Sa {
            client_id: sa.client_id,
            secret: minted.client_secret,
            name: sa.name,
        },
    )
}

async fn post(
    w: &World,
    auth: Option<&str>,
    body: &str,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let n = uuid::Uuid::new_v4().as_u128();
    let from = format!("2001:db8::{:x}:{:x}", (n >> 16) & 0xffff, n & 0xffff);
    post_from(w, &from, auth, body).await
}

async fn post_from(
    w: &World,
    from: &str,
    auth: Option<&str>,
    body: &str,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = client()
        .post(format!("{}/oauth2/token", w.s.base))
        .header("x-forwarded-for", from)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_owned());
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.json().await.unwrap_or(Value::Null))
}

fn decode(w: &World, token: &str, aud: &str) -> Value {
    let header = jsonwebtoken::decode_header(token).expect("header");
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    let ring = w.s.state.keys.load();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.set_audience(&[aud]);
    v.set_issuer(&[&w.s.base]);
    gatehouse::crypto::jwt::verify(&ring, gatehouse::now_unix(), token, &v).expect("valid token")
}

#[tokio::test]
async fn service_accounts_get_scoped_access_tokens() {
    let (w, sa) = world().await;
    let auth = basic(&sa.client_id, &sa.secret);
    let (status, headers, body) = post(&w, Some(&auth), "grant_type=client_credentials").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(body["token_type"], "Bearer");
    let admin = format!("{}/v1", w.s.base);
    let claims = decode(&w, body["access_token"].as_str().expect("token"), &admin);
    assert_eq!(claims["client_id"], sa.client_id.as_str());
    assert_eq!(claims["aud"], admin.as_str());
    assert!(claims.get("roles").is_none(), "roles only when asked for");
    for c in ["iss", "sub", "jti", "iat", "exp"] {
        assert!(claims.get(c).is_some(), "{c}");
    }
    let exp = claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat");
    assert_eq!(exp, 600);

    // the roles claim, narrowed, and through client_secret_post
    let body = format!(
        "grant_type=client_credentials&scope=roles%20roles%3Aorgs%2Facme%2Fprojects%2Fbackend&client_id={}&client_secret={}",
        sa.client_id, sa.secret
    );
    let (status, _, body) = post(&w, None, &body).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "roles roles:orgs/acme/projects/backend");
    let claims = decode(&w, body["access_token"].as_str().expect("token"), &admin);
    assert_eq!(claims["roles"], serde_json::json!(["owner@orgs/acme/*"]));

    // a resource outside the account's organization is refused
    let (status, _, body) = post(
        &w,
        Some(&auth),
        "grant_type=client_credentials&scope=roles%3Aorgs%2Fother",
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope")),
        "{body}"
    );

    // audience: registered APIs only
    let (status, _, body) = post(
        &w,
        Some(&auth),
        "grant_type=client_credentials&resource=https%3A%2F%2Fnot-registered.example",
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_target"))
    );
    let mut tx = w.s.state.store.begin().await.expect("begin");
    gatehouse::store::directory::register_api(&mut tx, "https://storage.example", "Storage", &[])
        .await
        .expect("api");
    gatehouse::store::bump_change(&mut tx, "test", "api")
        .await
        .expect("bump");
    tx.commit().await.expect("commit");
    w.reload().await;
    let (status, _, body) = post(
        &w,
        Some(&auth),
        "grant_type=client_credentials&resource=https%3A%2F%2Fstorage.example",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    decode(
        &w,
        body["access_token"].as_str().expect("token"),
        "https://storage.example",
    );
    let (status, _, body) = post(
        &w,
        Some(&auth),
        "grant_type=client_credentials&resource=https%3A%2F%2Fstorage.example&resource=x",
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_target"))
    );

    // issuance is audited in the background and counted
    let mut audited = false;
    for _ in 0..40 {
        let events =
            w.s.state
                .store
                .audit_events(None, 1000)
                .await
                .expect("audit");
        if events.iter().any(|e| {
            e.action == "token.issue" && e.actor == format!("serviceAccount:{}", sa.client_id)
        }) {
            audited = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(audited);
    let metrics = w.s.get("/metrics").await.text().await.expect("metrics");
    assert!(
        metrics.contains("tokens_issued_total{grant=\"client_credentials\"}"),
        "{metrics}"
    );
    w.s.stop().await;
}

#[tokio::test]
async fn bad_requests_get_the_exact_rfc_errors() {
    let (w, sa) = world().await;
    let auth = basic(&sa.client_id, &sa.secret);
    let wrong = basic(&sa.client_id, "not-the-secret");
    let unknown = basic("no-such-client", &sa.secret);
    // a wrong secret and an unknown client look the same; Basic gets a challenge
    let (s1, h1, b1) = post(&w, Some(&wrong), "grant_type=client_credentials").await;
    let (s2, _, b2) = post(&w, Some(&unknown), "grant_type=client_credentials").await;
    assert_eq!((s1, b1["error"].as_str()), (401, Some("invalid_client")));
    assert!(
        h1["www-authenticate"]
            .to_str()
            .expect("header")
            .starts_with("Basic")
    );
    assert_eq!((s2, &b1), (401, &b2), "no account enumeration");
    let (s, h, b) = post(
        &w,
        None,
        &format!(
            "grant_type=client_credentials&client_id={}&client_secret=x",
            sa.client_id
        ),
    )
    .await;
    assert_eq!((s, b["error"].as_str()), (401, Some("invalid_client")));
    assert!(h.get("www-authenticate").is_none());
    let (s, _, b) = post(&w, None, "grant_type=client_credentials").await;
    assert_eq!(
        (s, b["error"].as_str()),
        (401, Some("invalid_client")),
        "no authentication at all"
    );
    let cases: &[(&str, &str)] = &[
        ("", "invalid_request"),
        (
            "grant_type=password&username=a&password=b",
            "unsupported_grant_type",
        ),
        (
            "grant_type=client_credentials&grant_type=client_credentials",
            "invalid_request",
        ),
        (
            "grant_type=client_credentials&scope=openid",
            "invalid_scope",
        ),
    ];
    for (body, want) in cases {
        let (s, _, b) = post(&w, Some(&auth), body).await;
        assert_eq!((s, b["error"].as_str()), (400, Some(*want)), "{body}: {b}");
    }
    let r = client()
        .post(format!("{}/oauth2/token", w.s.base))
        .header("authorization", &auth)
        .json(&serde_json::json!({ "grant_type": "client_credentials" }))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 400, "JSON bodies are not accepted");
    let b: Value = r.json().await.expect("json");
    assert_eq!(b["error"], "invalid_request");
    let both = format!("grant_type=client_credentials&client_secret={}", sa.secret);
    let (s, _, b) = post(&w, Some(&auth), &both).await;
    assert_eq!((s, b["error"].as_str()), (400, Some("invalid_request")));
    w.s.stop().await;
}

#[tokio::test]
async fn revoked_expired_disabled_and_deleted_accounts_get_no_tokens() {
    let (w, sa) = world().await;
    let st = &w.s.state;
    let auth = basic(&sa.client_id, &sa.secret);
    assert_eq!(
        post(&w, Some(&auth), "grant_type=client_credentials")
            .await
            .0,
        200
    );
    let account = st
        .store
        .service_account_by_client_id(&sa.client_id)
        .await
        .expect("get")
        .expect("sa");
    let principal = PrincipalRef::service_account(account.id.clone());
    let owner: &Actor = &w.owner;

    // an expired secret does not work
    let old = gatehouse::crypto::secret::generate();
    let mut tx = st.store.begin().await.expect("begin");
    gatehouse::store::iam::insert_secret(
        &mut tx,
        &uuid::Uuid::new_v4().to_string(),
        &account.id,
        &gatehouse::crypto::secret::hash(st.kek.secret_key(), &old),
        Some(gatehouse::now_unix() - 1),
    )
    .await
    .expect("secret");
    gatehouse::store::bump_change(&mut tx, "test", "secret")
        .await
        .expect("bump");
    tx.commit().await.expect("commit");
    w.reload().await;
    assert_eq!(
        post(
            &w,
            Some(&basic(&sa.client_id, &old)),
            "grant_type=client_credentials"
        )
        .await
        .0,
        401
    );

    // disabled: refused; enabled again: works
    {
        let v = w.view();
        let ctx = w.ctx(&v);
        principals::change(&ctx, owner, &principal, &sa.name, Change::Disable)
            .await
            .expect("disable");
    }
    w.reload().await;
    assert_eq!(
        post(&w, Some(&auth), "grant_type=client_credentials")
            .await
            .0,
        401
    );
    {
        let v = w.view();
        let ctx = w.ctx(&v);
        principals::change(&ctx, owner, &principal, &sa.name, Change::Enable)
            .await
            .expect("enable");
    }
    w.reload().await;
    assert_eq!(
        post(&w, Some(&auth), "grant_type=client_credentials")
            .await
            .0,
        200
    );

    // deleted: its credentials go with it, at once
    {
        let v = w.view();
        let ctx = w.ctx(&v);
        principals::change(&ctx, owner, &principal, &sa.name, Change::Delete)
            .await
            .expect("delete");
    }
    w.reload().await;
    let (s, _, b) = post(&w, Some(&auth), "grant_type=client_credentials").await;
    assert_eq!((s, b["error"].as_str()), (401, Some("invalid_client")));
    w.s.stop().await;
}

/// An Ed25519 key pair: the PKCS#8 document and the public key PEM.
fn ed25519() -> (Vec<u8>, String) {
    let pkcs8 = aws_lc_rs::signature::Ed25519KeyPair::generate()
        .expect("key")
        .to_pkcs8()
        .expect("pkcs8");
    let pair = aws_lc_rs::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("parse");
    let der = aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::PublicKeyX509Der>::as_der(
        aws_lc_rs::signature::KeyPair::public_key(&pair),
    )
    .expect("der");
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(der.as_ref())
    );
    (pkcs8.as_ref().to_vec(), pem)
}

fn assertion(pkcs8: &[u8], claims: &Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA),
        claims,
        &jsonwebtoken::EncodingKey::from_ed_der(pkcs8),
    )
    .expect("sign")
}

#[tokio::test]
async fn private_key_jwt_assertions_are_verified_and_used_once() {
    let (w, sa) = world().await;
    let (pkcs8, pem) = ed25519();
    {
        let v = w.view();
        let ctx = w.ctx(&v);
        gatehouse::access::accounts::add_key(&ctx, &w.owner, &sa.name, &pem)
            .await
            .expect("key");
    }
    w.reload().await;
    let now = gatehouse::now_unix();
    let endpoint = format!("{}/oauth2/token", w.s.base);
    let good = |jti: &str| serde_json::json!({ "iss": sa.client_id, "sub": sa.client_id, "aud": endpoint, "exp": now + 120, "iat": now, "jti": jti });
    let form = |a: &str| {
        format!(
            "grant_type=client_credentials&scope=roles&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion={a}"
        )
    };
    let a = assertion(&pkcs8, &good("one"));
    let (status, _, body) = post(&w, None, &form(&a)).await;
    assert_eq!(status, 200, "{body}");
    let claims = decode(
        &w,
        body["access_token"].as_str().expect("token"),
        &format!("{}/v1", w.s.base),
    );
    assert_eq!(claims["roles"], serde_json::json!(["owner@orgs/acme/*"]));
    let (status, _, body) = post(&w, None, &form(&a)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "a replayed assertion is refused"
    );

    let (other_key, _) = ed25519();
    let mut attacks: Vec<(&str, String)> = vec![
        (
            "signed by an unregistered key",
            assertion(&other_key, &good("two")),
        ),
        (
            "another audience",
            assertion(
                &pkcs8,
                &serde_json::json!({ "iss": sa.client_id, "sub": sa.client_id, "aud": "https://elsewhere.example", "exp": now + 60, "jti": "three" }),
            ),
        ),
        (
            "expired",
            assertion(
                &pkcs8,
                &serde_json::json!({ "iss": sa.client_id, "sub": sa.client_id, "aud": endpoint, "exp": now - 120, "jti": "four" }),
            ),
        ),
        (
            "sub is someone else",
            assertion(
                &pkcs8,
                &serde_json::json!({ "iss": sa.client_id, "sub": "someone", "aud": endpoint, "exp": now + 60, "jti": "five" }),
            ),
        ),
        (
            "no jti",
            assertion(
                &pkcs8,
                &serde_json::json!({ "iss": sa.client_id, "sub": sa.client_id, "aud": endpoint, "exp": now + 60 }),
            ),
        ),
        (
            "lives too long",
            assertion(
                &pkcs8,
                &serde_json::json!({ "iss": sa.client_id, "sub": sa.client_id, "aud": endpoint, "exp": now + 86_400, "jti": "six" }),
            ),
        ),
        (
            "unknown client",
            assertion(
                &pkcs8,
                &serde_json::json!({ "iss": "nobody", "sub": "nobody", "aud": endpoint, "exp": now + 60, "jti": "seven" }),
            ),
        ),
        ("garbage", "not.a.jwt".to_string()),
    ];
    let payload = a.split('.').nth(1).expect("payload");
    attacks.push((
        "unsigned",
        format!(
            "{}.{payload}.",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#)
        ),
    ));
    for (what, a) in attacks {
        let (status, _, body) = post(&w, None, &form(&a)).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_client")),
            "{what}: {body}"
        );
    }
    let with_secret = format!(
        "{}&client_secret={}",
        form(&assertion(&pkcs8, &good("eight"))),
        sa.secret
    );
    let (status, _, body) = post(&w, None, &with_secret).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "two methods"
    );
    let wrong_type = form(&assertion(&pkcs8, &good("nine"))).replace("jwt-bearer", "saml2-bearer");
    let (status, _, body) = post(&w, None, &wrong_type).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    w.s.stop().await;
}

async fn form_post(w: &World, path: &str, auth: &str, body: &str) -> (u16, Value) {
    let r = client()
        .post(format!("{}{path}", w.s.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", auth)
        .body(body.to_owned())
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn introspection_answers_only_the_tokens_owner_and_revocation_is_immediate() {
    let (w, sa) = world().await;
    let auth = basic(&sa.client_id, &sa.secret);
    let (_, _, body) = post(&w, Some(&auth), "grant_type=client_credentials&scope=roles").await;
    let token = body["access_token"].as_str().expect("token").to_owned();

    let (status, info) =
        form_post(&w, "/oauth2/introspect", &auth, &format!("token={token}")).await;
    assert_eq!(status, 200);
    assert_eq!(info["active"], true);
    assert_eq!(info["client_id"], sa.client_id.as_str());
    assert_eq!(info["roles"], serde_json::json!(["owner@orgs/acme/*"]));

    // another service account learns nothing about it
    let other = {
        let v = w.view();
        let ctx = w.ctx(&v);
        let o = gatehouse::access::accounts::create_service_account(
            &ctx,
            &w.owner,
            "orgs/acme",
            "other",
            "Other",
            "",
        )
        .await
        .expect("sa");
        let s =
            gatehouse::access::accounts::mint_secret(&ctx, &w.s.state.kek, &w.owner, &o.name, None)
                .await
                .expect("secret");
        basic(&o.client_id, &s.client_secret)
    };
    w.reload().await;
    let (status, info) =
        form_post(&w, "/oauth2/introspect", &other, &format!("token={token}")).await;
    assert_eq!(
        (status, info),
        (200, serde_json::json!({ "active": false }))
    );
    for junk in ["token=garbage", "token=a.b.c"] {
        let (status, info) = form_post(&w, "/oauth2/introspect", &auth, junk).await;
        assert_eq!(
            (status, info),
            (200, serde_json::json!({ "active": false })),
            "{junk}"
        );
    }
    let (status, info) = form_post(
        &w,
        "/oauth2/introspect",
        &basic(&sa.client_id, "wrong"),
        &format!("token={token}"),
    )
    .await;
    assert_eq!(
        (status, info["error"].as_str()),
        (401, Some("invalid_client")),
        "introspection needs a client"
    );
    let (status, info) = form_post(&w, "/oauth2/introspect", &auth, "").await;
    assert_eq!(
        (status, info["error"].as_str()),
        (400, Some("invalid_request"))
    );

    // revoking another client's token does nothing; the owner's revocation holds at once
    let (status, _) = form_post(&w, "/oauth2/revoke", &other, &format!("token={token}")).await;
    assert_eq!(status, 200);
    let (_, info) = form_post(&w, "/oauth2/introspect", &auth, &format!("token={token}")).await;
    assert_eq!(info["active"], true);
    let (status, _) = form_post(
        &w,
        "/oauth2/revoke",
        &auth,
        &format!("token={token}&token_type_hint=access_token"),
    )
    .await;
    assert_eq!(status, 200);
    let (_, info) = form_post(&w, "/oauth2/introspect", &auth, &format!("token={token}")).await;
    assert_eq!(info, serde_json::json!({ "active": false }));
    let (status, _) = form_post(&w, "/oauth2/revoke", &auth, "token=not-a-token").await;
    assert_eq!(status, 200, "unknown tokens are not an error (RFC 7009)");
    let (status, info) = form_post(
        &w,
        "/oauth2/revoke",
        &auth,
        "token=opaque&token_type_hint=refresh_token",
    )
    .await;
    assert_eq!((status, info["error"].as_str()), (200, None));
    w.s.stop().await;
}

#[tokio::test]
async fn operators_verify_tokens_and_decide_offline_from_the_command_line() {
    let (w, sa) = world().await;
    let (_, _, body) = post(
        &w,
        Some(&basic(&sa.client_id, &sa.secret)),
        "grant_type=client_credentials&scope=roles",
    )
    .await;
    let token = body["access_token"].as_str().expect("token").to_owned();
    let dir = &w.s.dir;
    let vars = [
        ("GATEHOUSE_DATA_DIR", dir.join("data").display().to_string()),
        ("GATEHOUSE_KEYS_DIR", dir.join("keys").display().to_string()),
        ("GATEHOUSE_ISSUER", w.s.base.clone()),
    ];
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let run = |args: &[&str]| crate::support::gatehouse(dir, args, &vars);
    let out = crate::support::json_out(&run(&[
        "token",
        "verify",
        &token,
        "--permission",
        "iam.policies.set",
        "--resource",
        "orgs/acme/projects/x",
    ]));
    assert_eq!(out["valid"], true);
    assert_eq!(out["claims"]["client_id"], sa.client_id.as_str());
    assert_eq!(out["decision"]["allowed"], true);
    let out = crate::support::json_out(&run(&[
        "token",
        "verify",
        &token,
        "--permission",
        "iam.policies.set",
        "--resource",
        "orgs/acmex",
    ]));
    assert_eq!(
        out["decision"]["allowed"], false,
        "orgs/acme/* does not reach orgs/acmex"
    );
    let tampered = format!("{}x", &token[..token.len() - 1]);
    let out = run(&["token", "verify", &tampered]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid token"));
    let out = run(&[
        "token",
        "verify",
        &token,
        "--audience",
        "https://elsewhere.example",
    ]);
    assert!(!out.status.success(), "wrong audience");
    w.s.stop().await;
}

#[tokio::test]
async fn repeated_failures_from_one_address_are_slowed_down() {
    let (w, sa) = world().await;
    let wrong = basic(&sa.client_id, "wrong");
    let attacker = "198.51.100.66";
    for _ in 0..gatehouse::identity::throttle::FREE {
        assert_eq!(
            post_from(&w, attacker, Some(&wrong), "grant_type=client_credentials")
                .await
                .0,
            401
        );
    }
    let started = std::time::Instant::now();
    assert_eq!(
        post_from(&w, attacker, Some(&wrong), "grant_type=client_credentials")
            .await
            .0,
        401
    );
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "the free failures cost nothing"
    );
    let started = std::time::Instant::now();
    let (status, _, _) = post_from(
        &w,
        attacker,
        Some(&basic(&sa.client_id, &sa.secret)),
        "grant_type=client_credentials",
    )
    .await;
    assert_eq!(
        status, 200,
        "a throttled address still gets in with the right secret"
    );
    assert!(
        started.elapsed() >= gatehouse::identity::throttle::BASE,
        "but waits first"
    );
    let started = std::time::Instant::now();
    let (status, _, _) = post_from(
        &w,
        "198.51.100.67",
        Some(&basic(&sa.client_id, &sa.secret)),
        "grant_type=client_credentials",
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "other addresses are not slowed"
    );
    // the address comes from the trusted proxy's header, never from a client's own
    let spoofed = client()
        .post(format!("{}/oauth2/token", w.s.base))
        .header("x-forwarded-for", "198.51.100.66, 10.9.9.9")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", basic(&sa.client_id, &sa.secret))
        .body("grant_type=client_credentials")
        .send()
        .await
        .expect("request");
    assert_eq!(
        spoofed.status(),
        200,
        "10.9.9.9 is not trusted, so it is the client, and it is not throttled"
    );
    w.s.stop().await;
}

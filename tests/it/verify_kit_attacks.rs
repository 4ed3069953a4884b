//! More attacks on the resource-server kit (`gatehouse::verify`) than `verify_kit`
//! makes, against a real gatehouse with organizations `test` and `testing`: the reach
//! rule checked against the server's own offline rule, every algorithm confusion on
//! the real key, jku/jwk/x5u headers, an ID token from the browser code flow, the
//! leeway table, the refetch interval, rotation and revocation through the command
//! line, handlers deciding with the layer's verifier, revalidation after a 304, an
//! issuer that hangs, and `gatehouse token verify` next to the kit.
//!
//! The test named `bug_*` is ignored: it asserts what a resource server would want and
//! fails with the code as it is (run it with `--ignored`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::signature::KeyPair;
use axum::extract::Extension;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Router, extract::Path};
use base64::Engine;
use gatehouse::access::{accounts, definitions, resources};
use gatehouse::config::{Config, SigningAlg};
use gatehouse::crypto::keyring::SigningKey;
use gatehouse::iam::names::Kind;
use gatehouse::iam::permissions::Permission;
use gatehouse::verify::{
    DEFAULT_LEEWAY, REFETCH_INTERVAL, RequireToken, Verified, Verifier, VerifyError,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::policies::{World, binding};
use crate::support::{self, TestServer, client};

const JWKS: &str = "/.well-known/jwks.json";
const CATALOG: &str = "/.well-known/role-catalog.json";
const STORAGE: &str = "https://storage.example";

// ---------------------------------------------------------------------------------
// the instance: orgs `test` and `testing`, service accounts with roles in each

struct Sa {
    client_id: String,
    secret: String,
}

struct Kit {
    w: World,
    /// Owner of `orgs/test`, `project.member` on `orgs/test/projects/api`.
    test: Sa,
    /// Viewer of `orgs/testing`.
    testing: Sa,
}

impl Kit {
    fn s(&self) -> &TestServer {
        &self.w.s
    }

    fn admin_api(&self) -> String {
        format!("{}/v1", self.w.s.base)
    }

    async fn verifier(&self, audience: &str) -> Verifier {
        Verifier::discover(&self.w.s.base, audience)
            .await
            .expect("the verifier reads discovery, JWKS and the role catalog")
    }
}

async fn kit(adjust: impl FnOnce(&mut Config)) -> Kit {
    let w = World::new(adjust).await;
    {
        let v = w.view();
        let ctx = w.ctx(&v);
        for slug in ["test", "testing"] {
            resources::create(&ctx, &w.owner, None, Kind::Organization, slug, slug)
                .await
                .unwrap_or_else(|e| panic!("create orgs/{slug}: {e:?}"));
        }
    }
    w.reload().await;
    {
        let v = w.view();
        let ctx = w.ctx(&v);
        resources::create(
            &ctx,
            &w.owner,
            Some("orgs/test"),
            Kind::Project,
            "api",
            "API",
        )
        .await
        .expect("create orgs/test/projects/api");
    }
    w.reload().await;
    let test = service_account(
        &w,
        "orgs/test",
        "robot",
        &[
            ("orgs/test", "owner"),
            ("orgs/test/projects/api", "project.member"),
        ],
    )
    .await;
    let testing =
        service_account(&w, "orgs/testing", "reader", &[("orgs/testing", "viewer")]).await;
    Kit { w, test, testing }
}

/// A service account in `org` with a secret, bound to each `(scope, role)`.
async fn service_account(w: &World, org: &str, slug: &str, grants: &[(&str, &str)]) -> Sa {
    let (client_id, secret) = {
        let v = w.view();
        let ctx = w.ctx(&v);
        let sa = accounts::create_service_account(&ctx, &w.owner, org, slug, slug, "")
            .await
            .expect("service account");
        let minted = accounts::mint_secret(&ctx, &w.s.state.kek, &w.owner, &sa.name, None)
            .await
            .expect("secret");
        (sa.client_id, minted.client_secret)
    };
    w.reload().await;
    let member = format!("serviceAccount:{client_id}");
    for (scope, role) in grants {
        let p = w.get(&w.owner, scope).await.expect("read policy");
        let mut bindings = p.bindings.clone();
        match bindings.iter_mut().find(|b| b.role == *role) {
            Some(b) => b.members.push(member.clone()),
            None => bindings.push(binding(role, &[&member])),
        }
        w.set(&w.owner, scope, &p.etag, &bindings)
            .await
            .unwrap_or_else(|e| panic!("bind {role} on {scope}: {e:?}"));
    }
    Sa { client_id, secret }
}

/// A client-credentials token with `extra` form parameters (say `&scope=roles`).
async fn cc_token(s: &TestServer, sa: &Sa, extra: &str) -> String {
    let r = client()
        .post(format!("{}/oauth2/token", s.base))
        .basic_auth(&sa.client_id, Some(&sa.secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("grant_type=client_credentials{extra}"))
        .send()
        .await
        .expect("token request");
    let status = r.status();
    let body: Value = r.json().await.expect("json");
    assert_eq!(status, 200, "client_credentials: {body}");
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

async fn roles_token(k: &Kit, sa: &Sa) -> String {
    cc_token(k.s(), sa, "&scope=roles").await
}

/// Requests `path` answered with `status` so far, by the server's own metrics.
async fn served(s: &TestServer, path: &str, status: u16) -> u64 {
    let text = s.get("/metrics").await.text().await.expect("metrics");
    let prefix =
        format!("http_requests_total{{route=\"{path}\",method=\"GET\",status=\"{status}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.trim().parse::<f64>().expect("a number") as u64)
        .unwrap_or(0)
}

/// Every GET of `path`, full answers and revalidations.
async fn fetches(s: &TestServer, path: &str) -> u64 {
    served(s, path, 200).await + served(s, path, 304).await
}

// ---------------------------------------------------------------------------------
// tokens made by hand

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("ascii"))
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// The server's current signing key: its kid, an encoding key for jsonwebtoken (so
/// tests can sign with any header), and its public key as PEM.
fn real_key(s: &TestServer) -> (String, EncodingKey, String) {
    let ring = s.state.keys.load();
    let key = ring.signer(gatehouse::now_unix()).expect("signer");
    let SigningKey::Rsa(pair) = &key.signing else {
        panic!("RS256 is the default signing algorithm");
    };
    let pkcs8 = AsDer::<Pkcs8V1Der>::as_der(pair).expect("pkcs8");
    let spki = AsDer::<PublicKeyX509Der>::as_der(pair.public_key()).expect("spki");
    (
        key.kid.clone(),
        EncodingKey::from_rsa_pem(pem("PRIVATE KEY", pkcs8.as_ref()).as_bytes())
            .expect("encoding key"),
        pem("PUBLIC KEY", spki.as_ref()),
    )
}

/// An RSA key of nobody's issuer: (its own kid, encoding key, public JWK).
fn foreign_key() -> (String, EncodingKey, Value) {
    let g = gatehouse::crypto::keyring::generate(SigningAlg::RS256).expect("rsa key");
    let key =
        EncodingKey::from_rsa_pem(pem("PRIVATE KEY", &g.pkcs8).as_bytes()).expect("encoding key");
    (g.kid, key, g.jwk)
}

/// Access-token claims as the server writes them, `exp` `ttl` seconds from now.
fn claims(s: &TestServer, aud: &str, ttl: i64) -> Value {
    let now = gatehouse::now_unix();
    json!({
        "iss": s.base, "sub": "crafted-sub", "aud": aud, "client_id": "crafted",
        "scope": "roles", "jti": uuid::Uuid::new_v4().to_string(), "iat": now,
        "exp": now + ttl, "roles": ["owner@orgs/test/*"],
    })
}

/// Signed with the server's real key ring (as the server signs).
fn server_signed(s: &TestServer, typ: &str, claims: &Value) -> String {
    gatehouse::crypto::jwt::sign(&s.state.keys.load(), gatehouse::now_unix(), typ, claims)
        .expect("sign")
}

fn header(alg: Algorithm, kid: Option<&str>, typ: Option<&str>) -> Header {
    let mut h = Header::new(alg);
    h.kid = kid.map(str::to_owned);
    h.typ = typ.map(str::to_owned);
    h
}

fn sign(h: &Header, claims: &Value, key: &EncodingKey) -> String {
    jsonwebtoken::encode(h, claims, key).expect("encode")
}

/// A token with a hand-written header and no signature check possible.
fn raw(header: &Value, claims: &Value, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

async fn refused(v: &Verifier, token: &str, what: &str) -> VerifyError {
    match v.verify(token).await {
        Ok(t) => panic!("{what}: accepted, as {t:?}"),
        Err(e) => e,
    }
}

// ---------------------------------------------------------------------------------
// 1. genuine tokens, the catalog and the reach rule

#[tokio::test]
async fn genuine_tokens_verify_and_decide_by_the_catalog_and_the_reach_rule() {
    let k = kit(|_| {}).await;
    let v = k.verifier(&k.admin_api()).await;
    assert_eq!(v.issuer(), k.s().base, "the issuer, as discovered");
    let token = roles_token(&k, &k.test).await;
    let t = v.verify(&token).await.expect("a genuine token verifies");
    assert_eq!(
        t.client_id.as_deref(),
        Some(k.test.client_id.as_str()),
        "client_id"
    );
    assert!(!t.sub.is_empty(), "sub");
    assert!(t.jti.is_some(), "jti");
    assert!(t.exp > gatehouse::now_unix(), "exp in the future");
    assert!(
        t.has_scope("roles") && !t.has_scope("role"),
        "scope {:?}",
        t.scope
    );
    let mut roles = t.roles.clone();
    roles.sort();
    assert_eq!(
        roles,
        vec![
            "owner@orgs/test/*".to_owned(),
            "project.member@orgs/test/projects/api".to_owned()
        ],
        "the roles claim"
    );

    let catalog = v.catalog().await;
    assert!(
        catalog.grants("owner", "iam.policies.set"),
        "owner sets policies"
    );
    assert!(
        !catalog.grants("editor", "iam.policies.set"),
        "editor does not set policies"
    );
    assert!(
        !catalog.grants("no-such-role", "iam.policies.set"),
        "unknown roles grant nothing"
    );

    let other = roles_token(&k, &k.testing).await;
    let o = v.verify(&other).await.expect("the viewer's token verifies");
    assert_eq!(
        o.roles,
        vec!["viewer@orgs/testing/*".to_owned()],
        "viewer claim"
    );

    // (token, permission, resource, expected)
    let cases: &[(&gatehouse::verify::AccessToken, &str, &str, bool)] = &[
        (&t, "iam.policies.set", "orgs/test", true),
        (&t, "iam.policies.set", "orgs/test/projects/x", true),
        (
            &t,
            "iam.policies.set",
            "orgs/test/projects/api/buckets/logs",
            true,
        ),
        (&t, "iam.policies.set", "orgs/testing", false),
        (&t, "iam.policies.set", "orgs/testing/projects/x", false),
        (&t, "iam.policies.set", "orgs/tes", false),
        (&t, "iam.policies.set", "orgs", false),
        (&t, "iam.policies.set", "*", false),
        (&t, "iam.policies.set", "orgs/acme", false),
        (&t, "no.such.permission", "orgs/test", false),
        (&o, "resourcemanager.projects.get", "orgs/testing", true),
        (
            &o,
            "resourcemanager.projects.get",
            "orgs/testing/projects/p",
            true,
        ),
        (&o, "resourcemanager.projects.get", "orgs/test", false),
        (&o, "resourcemanager.projects.get", "orgs/testingx", false),
        (&o, "iam.policies.set", "orgs/testing", false),
        (&o, "resourcemanager.projects.delete", "orgs/testing", false),
    ];
    let view = k.w.view();
    let roles = view
        .as_ref()
        .as_ref()
        .expect("view")
        .evaluator
        .roles()
        .clone();
    for (tok, perm, res, want) in cases {
        assert_eq!(
            tok.has_permission(&catalog, perm, res),
            *want,
            "has_permission({perm}, {res}) for {:?}",
            tok.roles
        );
        assert_eq!(
            gatehouse::iam::claim::claim_allows(&roles, &tok.roles, perm, res),
            *want,
            "the server's offline rule agrees on ({perm}, {res}) for {:?}",
            tok.roles
        );
    }
    // project.member applies where it is bound only (a primitive role)
    for (res, want) in [
        ("orgs/test/projects/api", true),
        ("orgs/test/projects/api/envs/dev", false),
        ("orgs/test/projects/apix", false),
    ] {
        assert_eq!(
            t.has_role("project.member", res),
            want,
            "has_role(project.member, {res})"
        );
    }
    assert!(
        t.has_role("owner", "orgs/test/projects/y"),
        "owner reaches down"
    );
    assert!(
        !t.has_role("owner", "orgs/testing"),
        "owner@orgs/test/* vs orgs/testing"
    );
    assert!(
        !t.has_role("viewer", "orgs/test"),
        "a role it does not carry"
    );

    // allows: verify and decide at once
    assert!(
        v.allows(&token, "iam.policies.set", "orgs/test/projects/x")
            .await
            .expect("verifies"),
        "allows on orgs/test/projects/x"
    );
    assert!(
        !v.allows(&token, "iam.policies.set", "orgs/testing")
            .await
            .expect("verifies"),
        "allows on orgs/testing"
    );
    assert!(
        v.allows("garbage", "iam.policies.set", "orgs/test")
            .await
            .is_err(),
        "allows refuses a bad token instead of answering false"
    );

    // a token without the roles scope has no roles and decides nothing
    let bare = cc_token(k.s(), &k.test, "").await;
    let b = v
        .verify(&bare)
        .await
        .expect("a token without roles verifies");
    assert!(b.roles.is_empty(), "no roles claim without the roles scope");
    assert!(
        !b.has_permission(&catalog, "iam.policies.set", "orgs/test"),
        "no roles, no permission"
    );

    // permissions of a registered API reach the published catalog
    {
        let view = k.w.view();
        let ctx = k.w.ctx(&view);
        let perm = |n: &str| Permission {
            name: n.into(),
            description: n.into(),
        };
        definitions::register_api(
            &ctx,
            &k.w.owner,
            &k.s().base,
            STORAGE,
            "Storage",
            &[
                perm("object-storage.buckets.read"),
                perm("object-storage.buckets.create"),
            ],
        )
        .await
        .expect("register the storage API");
    }
    k.w.reload().await;
    let reader = service_account(
        &k.w,
        "orgs/test",
        "bucket-reader",
        &[("orgs/test/projects/api", "object-storage.reader")],
    )
    .await;
    let storage = k.verifier(STORAGE).await;
    let rt = cc_token(
        k.s(),
        &reader,
        "&scope=roles&resource=https%3A%2F%2Fstorage.example",
    )
    .await;
    let r = storage.verify(&rt).await.expect("a storage token verifies");
    let catalog = storage.catalog().await;
    assert!(
        r.has_permission(
            &catalog,
            "object-storage.buckets.read",
            "orgs/test/projects/api/buckets/logs"
        ),
        "object-storage.reader reads buckets beneath its project: {:?}",
        r.roles
    );
    assert!(
        !r.has_permission(
            &catalog,
            "object-storage.buckets.create",
            "orgs/test/projects/api/buckets/logs"
        ),
        "but does not create them"
    );
    assert!(
        !r.has_permission(
            &catalog,
            "object-storage.buckets.read",
            "orgs/test/projects/apix/buckets/logs"
        ),
        "nor reach a sibling that merely starts alike"
    );
    assert!(
        matches!(v.verify(&rt).await, Err(VerifyError::Invalid(_))),
        "the storage token is not for the admin API"
    );
    k.w.s.stop().await;
}

// ---------------------------------------------------------------------------------
// 2. forged algorithms and keys

#[tokio::test]
async fn unsigned_shared_secret_and_off_list_algorithms_are_refused() {
    let k = kit(|_| {}).await;
    let s = k.s();
    let v = k.verifier(&k.admin_api()).await;
    let (kid, real, public_pem) = real_key(s);
    let good = claims(s, &k.admin_api(), 300);
    let control = sign(
        &header(Algorithm::RS256, Some(&kid), Some("at+jwt")),
        &good,
        &real,
    );
    v.verify(&control)
        .await
        .expect("control: the same claims signed RS256 by the real key verify");

    // alg none, with the published kid, with and without a signature part
    for alg in ["none", "None", "NONE", ""] {
        let h = json!({ "alg": alg, "kid": kid, "typ": "at+jwt" });
        for sig in ["", "AAAA"] {
            let e = refused(&v, &raw(&h, &good, sig), &format!("alg {alg:?}")).await;
            // jsonwebtoken has no `none`: the header does not parse, so the kit says
            // Malformed rather than Algorithm. Either way it is refused unverified.
            assert!(
                matches!(e, VerifyError::Algorithm(_) | VerifyError::Malformed(_)),
                "alg {alg:?}: {e:?}"
            );
        }
    }

    // HS256/384/512 keyed with everything public about the key
    let jwks: Value = s.get(JWKS).await.json().await.expect("jwks");
    let jwk = jwks["keys"][0].clone();
    let n = jwk["n"].as_str().expect("n").to_owned();
    let n_bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&n)
        .expect("n");
    let secrets: Vec<(&str, Vec<u8>)> = vec![
        ("the public key PEM", public_pem.clone().into_bytes()),
        ("the JWK's n as text", n.clone().into_bytes()),
        ("the JWK's n as bytes", n_bytes),
        ("the JWK as JSON", jwk.to_string().into_bytes()),
        ("the JWKS document", jwks.to_string().into_bytes()),
    ];
    for (what, secret) in &secrets {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let t = sign(
                &header(alg, Some(&kid), Some("at+jwt")),
                &good,
                &EncodingKey::from_secret(secret),
            );
            let e = refused(&v, &t, &format!("{alg:?} keyed with {what}")).await;
            assert!(
                matches!(e, VerifyError::Algorithm(_)),
                "{alg:?} keyed with {what}: {e:?}"
            );
        }
    }

    // the real RSA key, but an algorithm off the list: refused by the list
    for alg in [
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
    ] {
        let t = sign(&header(alg, Some(&kid), Some("at+jwt")), &good, &real);
        let e = refused(&v, &t, &format!("{alg:?} by the real key")).await;
        assert!(
            matches!(e, VerifyError::Algorithm(_)),
            "{alg:?} by the real key: {e:?}"
        );
    }
    // an allowed algorithm of another family on the RSA kid: the key decides
    for alg in ["ES256", "EdDSA"] {
        let h = json!({ "alg": alg, "kid": kid, "typ": "at+jwt" });
        let sig = control.rsplit('.').next().expect("signature");
        let e = refused(&v, &raw(&h, &good, sig), &format!("{alg} on an RSA kid")).await;
        assert!(
            matches!(e, VerifyError::Algorithm(_)),
            "{alg} on an RSA kid: {e:?}"
        );
    }

    // a payload changed under a genuine signature
    let token = roles_token(&k, &k.test).await;
    let parts: Vec<&str> = token.split('.').collect();
    let mut c: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[1])
            .expect("payload"),
    )
    .expect("claims");
    c["roles"] = json!(["owner@*"]);
    let altered = format!(
        "{}.{}.{}",
        parts[0],
        b64(c.to_string().as_bytes()),
        parts[2]
    );
    let e = refused(&v, &altered, "roles widened under a genuine signature").await;
    assert!(matches!(e, VerifyError::Invalid(_)), "altered: {e:?}");
    let flipped = format!("{}{}", &token[..token.len() - 2], "AA");
    let e = refused(&v, &flipped, "a changed signature").await;
    assert!(matches!(e, VerifyError::Invalid(_)), "signature: {e:?}");

    // junk
    for junk in [
        "",
        ".",
        "..",
        "a.b.c",
        "a.b",
        "💥",
        "eyJhbGciOiJSUzI1NiJ9",
        &"A".repeat(17 * 1024),
    ] {
        let e = refused(&v, junk, &format!("junk {:?}", &junk[..junk.len().min(20)])).await;
        assert!(
            matches!(e, VerifyError::Malformed(_)),
            "junk {:?}: {e:?}",
            &junk[..junk.len().min(20)]
        );
    }
    // longer than 16 KiB, though well formed
    let mut big = good.clone();
    big["pad"] = json!("x".repeat(17 * 1024));
    let e = refused(
        &v,
        &sign(
            &header(Algorithm::RS256, Some(&kid), Some("at+jwt")),
            &big,
            &real,
        ),
        "a 17 KiB token",
    )
    .await;
    assert!(matches!(e, VerifyError::Malformed(_)), "17 KiB: {e:?}");
    // no kid
    let e = refused(
        &v,
        &sign(
            &header(Algorithm::RS256, None, Some("at+jwt")),
            &good,
            &real,
        ),
        "no kid",
    )
    .await;
    assert!(matches!(e, VerifyError::Malformed(_)), "no kid: {e:?}");
    k.w.s.stop().await;
}

#[tokio::test]
async fn tokens_signed_by_another_issuers_key_are_refused() {
    let k = kit(|_| {}).await;
    let s = k.s();
    let v = k.verifier(&k.admin_api()).await;
    let (real_kid, _, _) = real_key(s);
    let (own_kid, foreign, foreign_jwk) = foreign_key();
    let good = claims(s, &k.admin_api(), 300);

    let e = refused(
        &v,
        &sign(
            &header(Algorithm::RS256, Some("made-up-kid"), Some("at+jwt")),
            &good,
            &foreign,
        ),
        "a foreign key with a made-up kid",
    )
    .await;
    assert!(
        matches!(&e, VerifyError::UnknownKey(kid) if kid == "made-up-kid"),
        "made-up kid: {e:?}"
    );
    let e = refused(
        &v,
        &sign(
            &header(Algorithm::RS256, Some(&real_kid), Some("at+jwt")),
            &good,
            &foreign,
        ),
        "a foreign key claiming the real kid",
    )
    .await;
    assert!(matches!(e, VerifyError::Invalid(_)), "real kid: {e:?}");

    // the attacker points at its own keys: jku, an embedded jwk, x5u are ignored
    let attacker = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let hits = attacker.clone();
    let jwks = json!({ "keys": [foreign_jwk] });
    let app = Router::new().route(
        "/jwks.json",
        get(move || {
            hits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let jwks = jwks.clone();
            async move { axum::Json(jwks) }
        }),
    );
    let evil = serve(app).await;
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(foreign_jwk.clone()).expect("jwk");
    for kid in [own_kid.as_str(), real_kid.as_str()] {
        let mut h = header(Algorithm::RS256, Some(kid), Some("at+jwt"));
        h.jku = Some(format!("{evil}/jwks.json"));
        h.x5u = Some(format!("{evil}/jwks.json"));
        h.jwk = Some(jwk.clone());
        let e = refused(&v, &sign(&h, &good, &foreign), "jku/jwk/x5u in the header").await;
        assert!(
            matches!(e, VerifyError::UnknownKey(_) | VerifyError::Invalid(_)),
            "jku/jwk with kid {kid}: {e:?}"
        );
    }
    assert_eq!(
        attacker.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the kit never fetches keys a token points to"
    );

    // a genuine token of another gatehouse instance
    let other = TestServer::start().await;
    let mut c = good.clone();
    c["iss"] = json!(other.base);
    let t = server_signed(&other, "at+jwt", &c);
    let e = refused(&v, &t, "another gatehouse's token").await;
    assert!(
        matches!(e, VerifyError::UnknownKey(_)),
        "another instance: {e:?}"
    );
    other.stop().await;
    k.w.s.stop().await;
}

// ---------------------------------------------------------------------------------
// 3. unknown kids: one JWKS read per REFETCH_INTERVAL

#[tokio::test]
async fn forged_kids_cost_at_most_one_jwks_read_per_interval() {
    // a long cache lifetime, so every JWKS read counted here is an unknown-kid refetch
    let k = kit(|c| c.jwks_cache_secs = 3600).await;
    let s = k.s();
    let v = k.verifier(&k.admin_api()).await;
    let token = roles_token(&k, &k.test).await;
    v.verify(&token).await.expect("genuine");
    let before = fetches(s, JWKS).await;
    assert_eq!(before, 1, "discovery read the JWKS once");
    let (_, foreign, _) = foreign_key();
    let good = claims(s, &k.admin_api(), 300);
    let forged = |i: usize| {
        sign(
            &header(
                Algorithm::RS256,
                Some(&format!("forged-{i}-{}", uuid::Uuid::new_v4())),
                Some("at+jwt"),
            ),
            &good,
            &foreign,
        )
    };
    let started = Instant::now();
    for i in 0..10 {
        let e = refused(&v, &forged(i), "a forged kid").await;
        assert!(matches!(e, VerifyError::UnknownKey(_)), "forged {i}: {e:?}");
    }
    let burst: Vec<String> = (10..20).map(forged).collect();
    let answers = futures_util::future::join_all(burst.iter().map(|t| v.verify(t))).await;
    for (i, a) in answers.into_iter().enumerate() {
        assert!(
            matches!(a, Err(VerifyError::UnknownKey(_))),
            "concurrent forged {i}: {a:?}"
        );
    }
    let after = fetches(s, JWKS).await;
    assert_eq!(
        after - before,
        1,
        "20 forged kids: exactly one JWKS refetch (200s {} / 304s {})",
        served(s, JWKS, 200).await,
        served(s, JWKS, 304).await
    );
    assert!(
        served(s, JWKS, 304).await >= 1,
        "the refetch revalidated with If-None-Match"
    );
    v.verify(&token)
        .await
        .expect("genuine tokens still verify during the flood");
    assert_eq!(fetches(s, JWKS).await, after, "a known kid reads nothing");

    // once REFETCH_INTERVAL has passed, one more read is allowed, and only one
    let wait = REFETCH_INTERVAL.saturating_sub(started.elapsed()) + Duration::from_millis(300);
    tokio::time::sleep(wait).await;
    for i in 20..25 {
        let e = refused(&v, &forged(i), "a forged kid after the interval").await;
        assert!(matches!(e, VerifyError::UnknownKey(_)), "forged {i}: {e:?}");
    }
    assert_eq!(
        fetches(s, JWKS).await - after,
        1,
        "after the interval: one more refetch"
    );
    k.w.s.stop().await;
}

// ---------------------------------------------------------------------------------
// 4. ID tokens and typ

/// A browser sign-in as the bootstrap owner with the admin client (PKCE); the token
/// response.
async fn browser_tokens(s: &TestServer) -> Value {
    let http = client();
    let base = &s.base;
    let cb = "http://127.0.0.1:53682/callback";
    let verifier = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let challenge =
        b64(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()).as_ref());
    let mut jar: BTreeMap<String, String> = BTreeMap::new();
    let cookie = |jar: &BTreeMap<String, String>| {
        jar.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let absorb = |jar: &mut BTreeMap<String, String>, r: &reqwest::Response| {
        for v in r.headers().get_all("set-cookie") {
            let v = v.to_str().expect("ascii");
            let pair = v.split(';').next().expect("pair");
            if let Some((k, val)) = pair.split_once('=')
                && !val.is_empty()
            {
                jar.insert(k.to_owned(), val.to_owned());
            }
        }
    };
    let location = |r: &reqwest::Response| {
        r.headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let authorize = format!(
        "{base}/oauth2/authorize?{}",
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("client_id", "gatehouse-admin")
            .append_pair("redirect_uri", cb)
            .append_pair("response_type", "code")
            .append_pair("scope", "openid roles")
            .append_pair("state", "st")
            .append_pair("nonce", "n1")
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256")
            .finish()
    );
    let r = http.get(&authorize).send().await.expect("authorize");
    assert_eq!(r.status(), 303, "authorize redirects to the login page");
    let login = location(&r);
    assert!(login.starts_with("/login?pending="), "{login}");
    let r = http
        .get(format!("{base}{login}"))
        .send()
        .await
        .expect("login page");
    absorb(&mut jar, &r);
    let html = r.text().await.expect("html");
    let input = |name: &str| -> String {
        let at = html
            .find(&format!("name=\"{name}\""))
            .unwrap_or_else(|| panic!("{name} in the login page"));
        let start = html[..at].rfind('<').expect("tag");
        let end = at + html[at..].find('>').expect("tag end");
        let tag = &html[start..end];
        let v = tag.find("value=\"").expect("value") + 7;
        let len = tag[v..].find('"').expect("quote");
        tag[v..v + len]
            .replace("&#x2f;", "/")
            .replace("&#x27;", "'")
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
    };
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("csrf_token", &input("csrf_token"))
        .append_pair("pending", &input("pending"))
        .append_pair("email", "owner@acme.test")
        .append_pair("password", "owner password")
        .finish();
    let r = http
        .post(format!("{base}/login"))
        .header("cookie", cookie(&jar))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), 303, "signed in");
    absorb(&mut jar, &r);
    let resume = location(&r);
    let r = http
        .get(format!("{base}{resume}"))
        .header("cookie", cookie(&jar))
        .send()
        .await
        .expect("resume");
    assert_eq!(r.status(), 303, "resumed");
    let back = url::Url::parse(&location(&r)).expect("callback URL");
    let code = back
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("code");
    let r = http
        .post(format!("{base}/oauth2/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", cb),
            ("client_id", "gatehouse-admin"),
            ("code_verifier", verifier.as_str()),
        ])
        .send()
        .await
        .expect("exchange");
    assert_eq!(r.status(), 200, "code exchange");
    r.json().await.expect("json")
}

#[tokio::test]
async fn an_id_token_is_not_an_access_token() {
    let k = kit(|_| {}).await;
    let s = k.s();
    let t = browser_tokens(s).await;
    let id_token = t["id_token"].as_str().expect("id_token");
    let access = t["access_token"].as_str().expect("access_token");
    let v = k.verifier(&k.admin_api()).await;
    let e = refused(&v, id_token, "an ID token").await;
    assert!(
        matches!(&e, VerifyError::NotAnAccessToken(Some(typ)) if typ == "JWT"),
        "ID token: {e:?}"
    );
    // even for a verifier whose audience is the client the ID token was issued to
    let as_client = k.verifier("gatehouse-admin").await;
    let e = refused(&as_client, id_token, "an ID token, audience = its client").await;
    assert!(
        matches!(e, VerifyError::NotAnAccessToken(_)),
        "ID token for its own audience: {e:?}"
    );
    // the access token of the same flow is one, and the owner's roles reach everything
    let a = v.verify(access).await.expect("the flow's access token");
    assert!(
        a.roles.contains(&"owner@*".to_owned()),
        "the owner's roles: {:?}",
        a.roles
    );
    assert!(
        a.has_permission(&*v.catalog().await, "iam.policies.set", "orgs/anything/x"),
        "owner@* reaches every name"
    );

    // typ by hand, signed by the real key
    let (kid, real, _) = real_key(s);
    let good = claims(s, &k.admin_api(), 300);
    for typ in [None, Some("JWT"), Some("jwt"), Some("at+JWT+x"), Some("")] {
        let tok = sign(&header(Algorithm::RS256, Some(&kid), typ), &good, &real);
        let e = refused(&v, &tok, &format!("typ {typ:?}")).await;
        assert!(
            matches!(e, VerifyError::NotAnAccessToken(_)),
            "typ {typ:?}: {e:?}"
        );
    }
    for typ in ["at+jwt", "AT+JWT", "application/at+jwt"] {
        let tok = sign(
            &header(Algorithm::RS256, Some(&kid), Some(typ)),
            &good,
            &real,
        );
        v.verify(&tok)
            .await
            .unwrap_or_else(|e| panic!("typ {typ:?} is an access token: {e:?}"));
    }
    k.w.s.stop().await;
}

// ---------------------------------------------------------------------------------
// 5. time, audience and issuer

#[tokio::test]
async fn exp_and_nbf_are_checked_with_the_leeway() {
    let k = kit(|_| {}).await;
    let s = k.s();
    let aud = k.admin_api();
    let v = k.verifier(&aud).await;
    let strict = k.verifier(&aud).await.with_leeway(Duration::ZERO);
    let lenient = k.verifier(&aud).await.with_leeway(Duration::from_secs(600));
    assert_eq!(
        DEFAULT_LEEWAY,
        Duration::from_secs(30),
        "the documented leeway"
    );
    let now = gatehouse::now_unix();
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = claims(s, &aud, 300);
        f(&mut c);
        server_signed(s, "at+jwt", &c)
    };
    // (what, token, default leeway, no leeway, 600 s leeway)
    let cases: Vec<(&str, String, bool, bool, bool)> = vec![
        (
            "expired 2 min ago",
            with(&|c| c["exp"] = json!(now - 120)),
            false,
            false,
            true,
        ),
        (
            "expired 45 s ago",
            with(&|c| c["exp"] = json!(now - 45)),
            false,
            false,
            true,
        ),
        (
            "expired 10 s ago",
            with(&|c| c["exp"] = json!(now - 10)),
            true,
            false,
            true,
        ),
        (
            "expired an hour ago",
            with(&|c| c["exp"] = json!(now - 3600)),
            false,
            false,
            false,
        ),
        (
            "nbf in 2 min",
            with(&|c| c["nbf"] = json!(now + 120)),
            false,
            false,
            true,
        ),
        (
            "nbf in 10 s",
            with(&|c| c["nbf"] = json!(now + 10)),
            true,
            false,
            true,
        ),
        (
            "nbf 10 s ago",
            with(&|c| c["nbf"] = json!(now - 10)),
            true,
            true,
            true,
        ),
        ("valid", with(&|c| c["iat"] = json!(now)), true, true, true),
    ];
    for (what, tok, default_ok, strict_ok, lenient_ok) in &cases {
        for (name, verifier, want) in [
            ("default leeway", &v, *default_ok),
            ("no leeway", &strict, *strict_ok),
            ("600 s leeway", &lenient, *lenient_ok),
        ] {
            match (verifier.verify(tok).await, want) {
                (Ok(_), true) => {}
                (Err(VerifyError::Invalid(_)), false) => {}
                (got, _) => panic!("{what} with {name}: want accepted={want}, got {got:?}"),
            }
        }
    }
    // required and well-formed claims
    for (what, tok) in [
        (
            "no exp",
            with(&|c| {
                c.as_object_mut().expect("object").remove("exp");
            }),
        ),
        (
            "no sub",
            with(&|c| {
                c.as_object_mut().expect("object").remove("sub");
            }),
        ),
        (
            "no aud",
            with(&|c| {
                c.as_object_mut().expect("object").remove("aud");
            }),
        ),
        (
            "no iss",
            with(&|c| {
                c.as_object_mut().expect("object").remove("iss");
            }),
        ),
        ("exp a string", with(&|c| c["exp"] = json!("9999999999"))),
        ("nbf a string", with(&|c| c["nbf"] = json!("soon"))),
    ] {
        let e = refused(&v, &tok, what).await;
        assert!(matches!(e, VerifyError::Invalid(_)), "{what}: {e:?}");
    }
    k.w.s.stop().await;
}

#[tokio::test]
async fn audience_and_issuer_must_match() {
    let k = kit(|_| {}).await;
    let s = k.s();
    let admin = k.admin_api();
    let v = k.verifier(&admin).await;
    let storage = k.verifier(STORAGE).await;
    let token = roles_token(&k, &k.test).await;
    v.verify(&token).await.expect("for the admin API");
    let e = refused(&storage, &token, "an admin-API token at the storage API").await;
    assert!(
        matches!(e, VerifyError::Invalid(_)),
        "wrong audience: {e:?}"
    );

    // aud as an array holding the audience is fine; without it, not
    let mut c = claims(s, &admin, 300);
    c["aud"] = json!([STORAGE, admin]);
    v.verify(&server_signed(s, "at+jwt", &c))
        .await
        .expect("aud array containing the audience");
    c["aud"] = json!([STORAGE, "https://elsewhere.example"]);
    let e = refused(&v, &server_signed(s, "at+jwt", &c), "aud array without it").await;
    assert!(matches!(e, VerifyError::Invalid(_)), "aud array: {e:?}");

    for iss in [
        "https://evil.example".to_owned(),
        format!("{}/", s.base),
        s.base.replace("127.0.0.1", "localhost"),
        s.base.to_uppercase(),
        String::new(),
    ] {
        let mut c = claims(s, &admin, 300);
        c["iss"] = json!(iss);
        let e = refused(&v, &server_signed(s, "at+jwt", &c), &format!("iss {iss:?}")).await;
        assert!(matches!(e, VerifyError::Invalid(_)), "iss {iss:?}: {e:?}");
    }

    // discovery: a trailing slash is the same issuer; another spelling is not
    Verifier::discover(&format!("{}/", s.base), &admin)
        .await
        .expect("a trailing slash on the issuer is trimmed");
    let port = s.base.rsplit(':').next().expect("port");
    match Verifier::discover(&format!("http://localhost:{port}"), &admin).await {
        Err(VerifyError::Issuer(_)) => {}
        other => panic!(
            "discovery naming another issuer must fail: {:?}",
            other.err()
        ),
    }
    match Verifier::discover(
        &format!("http://127.0.0.1:{}", support::free_port()),
        &admin,
    )
    .await
    {
        Err(VerifyError::Issuer(_)) => {}
        other => panic!("nobody there: {:?}", other.err()),
    }
    k.w.s.stop().await;
}

// ---------------------------------------------------------------------------------
// 6. key rotation

fn cli(s: &TestServer, args: &[&str], cache_secs: &str) -> std::process::Output {
    let data = s.dir.join("data");
    let keys = s.dir.join("keys");
    support::gatehouse(
        &s.dir,
        args,
        &[
            ("GATEHOUSE_DATA_DIR", data.to_str().expect("path")),
            ("GATEHOUSE_KEYS_DIR", keys.to_str().expect("path")),
            ("GATEHOUSE_ISSUER", &s.base),
            ("GATEHOUSE_JWKS_CACHE_SECS", cache_secs),
        ],
    )
}

fn signer_kid(s: &TestServer) -> String {
    s.state
        .keys
        .load()
        .signer(gatehouse::now_unix())
        .expect("signer")
        .kid
        .clone()
}

async fn published(s: &TestServer) -> Vec<String> {
    let jwks: Value = s.get(JWKS).await.json().await.expect("jwks");
    jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["kid"].as_str().expect("kid").to_owned())
        .collect()
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..100 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} did not happen within five seconds");
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token)
        .expect("header")
        .kid
        .expect("kid")
}

#[tokio::test]
#[ignore = "flaky under load: once in a full run the keys command against the running node failed; it passes alone (run with --ignored)"]
async fn a_rotated_key_verifies_through_the_refetch() {
    // The verifier's JWKS stays fresh for an hour, so only the unknown-kid refetch
    // can teach it the new key; the rotation itself activates after one second.
    let k = kit(|c| c.jwks_cache_secs = 3600).await;
    let s = k.s();
    let v = k.verifier(&k.admin_api()).await;
    let old_token = roles_token(&k, &k.test).await;
    let old = kid_of(&old_token);
    v.verify(&old_token).await.expect("the old key's token");
    let rotated = support::json_out(&cli(s, &["keys", "rotate"], "1"));
    let new = rotated["kid"].as_str().expect("kid").to_owned();
    assert_ne!(new, old, "a new kid");
    eventually("the new key signs", async || signer_kid(s) == new).await;
    let before = fetches(s, JWKS).await;
    let new_token = roles_token(&k, &k.test).await;
    assert_eq!(kid_of(&new_token), new, "issued under the new key");
    let t = v
        .verify(&new_token)
        .await
        .expect("a token of the rotated-in key verifies through the refetch");
    assert_eq!(
        t.client_id.as_deref(),
        Some(k.test.client_id.as_str()),
        "claims"
    );
    assert_eq!(
        fetches(s, JWKS).await - before,
        1,
        "one JWKS read learned the key"
    );
    v.verify(&old_token)
        .await
        .expect("the old key stays published for its tokens");
    v.verify(&new_token).await.expect("again, from the cache");
    assert_eq!(fetches(s, JWKS).await - before, 1, "no more reads");

    // revoked: a verifier that reads the JWKS now no longer trusts it
    let revoked = support::json_out(&cli(s, &["keys", "revoke", &old], "1"));
    assert_eq!(revoked["revoked"], old.as_str(), "revoked");
    eventually("the revoked key leaves the JWKS", async || {
        !published(s).await.contains(&old)
    })
    .await;
    let fresh = k.verifier(&k.admin_api()).await;
    let e = refused(&fresh, &old_token, "a token of a revoked key").await;
    assert!(matches!(e, VerifyError::UnknownKey(_)), "revoked: {e:?}");
    fresh.verify(&new_token).await.expect("the new key's token");
    k.w.s.stop().await;
}

// ---------------------------------------------------------------------------------
// 7. the axum extractor and the tower layer

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

async fn whoami(Verified(t): Verified) -> String {
    t.sub
}

async fn bucket(
    Verified(t): Verified,
    Extension(v): Extension<Arc<Verifier>>,
    Path(name): Path<String>,
) -> StatusCode {
    let resource = format!("orgs/test/projects/api/buckets/{name}");
    if t.has_permission(&*v.catalog().await, "iam.policies.set", &resource) {
        StatusCode::OK
    } else {
        StatusCode::FORBIDDEN
    }
}

async fn call(url: &str, auth: Option<&str>) -> (u16, Option<String>, String) {
    let mut req = client().get(url);
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    let challenge = r
        .headers()
        .get("www-authenticate")
        .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned());
    (status, challenge, r.text().await.unwrap_or_default())
}

#[tokio::test]
async fn the_layer_and_the_extractor_answer_as_rfc_6750_says() {
    let k = kit(|_| {}).await;
    let s = k.s();
    let v = Arc::new(k.verifier(&k.admin_api()).await);
    let token = roles_token(&k, &k.test).await;
    let sub = v.verify(&token).await.expect("genuine").sub;
    let other = roles_token(&k, &k.testing).await;
    let expired = {
        let mut c = claims(s, &k.admin_api(), 0);
        c["exp"] = json!(gatehouse::now_unix() - 3600);
        server_signed(s, "at+jwt", &c)
    };
    let id_token = browser_tokens(s).await["id_token"]
        .as_str()
        .expect("id_token")
        .to_owned();

    let layered = serve(
        Router::new()
            .route("/whoami", get(whoami))
            .route("/buckets/{name}", get(bucket))
            .layer(RequireToken::new(v.clone())),
    )
    .await;
    let extension = serve(
        Router::new()
            .route("/whoami", get(whoami))
            .route("/buckets/{name}", get(bucket))
            .layer(Extension(v.clone())),
    )
    .await;
    let bare = serve(Router::new().route("/whoami", get(whoami))).await;

    for (name, base) in [("layer", &layered), ("extractor", &extension)] {
        let url = format!("{base}/whoami");
        let (st, ch, _) = call(&url, None).await;
        assert_eq!(
            (st, ch.as_deref()),
            (401, Some("Bearer")),
            "{name}: no token"
        );
        for scheme in ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "Token abc"] {
            let (st, ch, _) = call(&url, Some(scheme)).await;
            assert_eq!(
                (st, ch.as_deref()),
                (401, Some("Bearer")),
                "{name}: {scheme:?} carries no bearer token"
            );
        }
        for (what, bad) in [
            ("garbage", "Bearer garbage".to_owned()),
            ("expired", format!("Bearer {expired}")),
            ("an ID token", format!("Bearer {id_token}")),
            (
                "tampered",
                format!("Bearer {}AA", &token[..token.len() - 2]),
            ),
        ] {
            let (st, ch, _) = call(&url, Some(&bad)).await;
            assert_eq!(st, 401, "{name}: {what}");
            let ch = ch.unwrap_or_else(|| panic!("{name}: {what}: a WWW-Authenticate challenge"));
            assert!(
                ch.starts_with("Bearer ") && ch.contains("error=\"invalid_token\""),
                "{name}: {what}: {ch}"
            );
            assert!(ch.contains("error_description=\""), "{name}: {what}: {ch}");
        }
        for scheme in ["Bearer", "bearer", "BEARER"] {
            let (st, _, body) = call(&url, Some(&format!("{scheme} {token}"))).await;
            assert_eq!(
                (st, body.as_str()),
                (200, sub.as_str()),
                "{name}: {scheme} with a good token"
            );
        }
        // deciding in the handler with the verifier the layer or extension provides
        let (st, _, _) = call(
            &format!("{base}/buckets/logs"),
            Some(&format!("Bearer {token}")),
        )
        .await;
        assert_eq!(st, 200, "{name}: the owner of orgs/test");
        let (st, _, _) = call(
            &format!("{base}/buckets/logs"),
            Some(&format!("Bearer {other}")),
        )
        .await;
        assert_eq!(st, 403, "{name}: a viewer of orgs/testing");
    }
    let (st, _, _) = call(&format!("{bare}/whoami"), Some(&format!("Bearer {token}"))).await;
    assert_eq!(
        st, 500,
        "Verified without a layer or a verifier is a server error"
    );
    k.w.s.stop().await;
}

// ---------------------------------------------------------------------------------
// 8. cache revalidation

#[tokio::test]
async fn documents_are_revalidated_with_their_etag_after_max_age() {
    let k = kit(|c| c.jwks_cache_secs = 1).await;
    let s = k.s();
    let r = s.get(CATALOG).await;
    assert_eq!(
        r.headers()["cache-control"],
        "public, max-age=1",
        "the test's cache lifetime"
    );
    let base_catalog = fetches(s, CATALOG).await;
    let base_jwks = fetches(s, JWKS).await;
    let v = k.verifier(&k.admin_api()).await;
    let token = roles_token(&k, &k.test).await;
    assert_eq!(
        fetches(s, CATALOG).await - base_catalog,
        1,
        "discovery read the catalog"
    );
    assert_eq!(
        fetches(s, JWKS).await - base_jwks,
        1,
        "discovery read the JWKS"
    );
    let c = v.catalog().await;
    v.verify(&token).await.expect("genuine");
    assert_eq!(
        fetches(s, CATALOG).await - base_catalog,
        1,
        "fresh: no read"
    );
    assert_eq!(fetches(s, JWKS).await - base_jwks, 1, "fresh: no read");
    assert!(c.grants("owner", "iam.policies.set"), "catalog");

    tokio::time::sleep(Duration::from_millis(1300)).await;
    let catalog_304 = served(s, CATALOG, 304).await;
    let jwks_304 = served(s, JWKS, 304).await;
    let c = v.catalog().await;
    assert!(
        c.grants("owner", "iam.policies.set"),
        "the revalidated catalog still answers"
    );
    assert_eq!(
        served(s, CATALOG, 304).await - catalog_304,
        1,
        "the stale catalog was revalidated with If-None-Match and got 304"
    );
    v.verify(&token)
        .await
        .expect("verifies after the JWKS revalidation");
    assert_eq!(
        served(s, JWKS, 304).await - jwks_304,
        1,
        "the stale JWKS was revalidated with If-None-Match and got 304"
    );
    k.w.s.stop().await;
}

// ---------------------------------------------------------------------------------
// 9. `gatehouse token verify` next to the kit

#[tokio::test]
async fn the_kit_and_the_token_verify_command_agree() {
    let k = kit(|_| {}).await;
    let s = k.s();
    let v = k.verifier(&k.admin_api()).await;
    let catalog = v.catalog().await;
    let token = roles_token(&k, &k.test).await;
    let t = v.verify(&token).await.expect("genuine");
    let run = |args: &[&str]| cli(s, args, "300");
    for (perm, res, want) in [
        ("iam.policies.set", "orgs/test/projects/x", true),
        ("iam.policies.set", "orgs/test", true),
        ("iam.policies.set", "orgs/testing", false),
        (
            "resourcemanager.projects.update",
            "orgs/test/projects/api",
            true,
        ),
        ("no.such.permission", "orgs/test", false),
    ] {
        let out = support::json_out(&run(&[
            "token",
            "verify",
            &token,
            "--permission",
            perm,
            "--resource",
            res,
        ]));
        assert_eq!(out["valid"], true, "valid");
        assert_eq!(
            out["kid"].as_str(),
            Some(kid_of(&token).as_str()),
            "the kid"
        );
        assert_eq!(
            out["decision"],
            json!({ "permission": perm, "resource": res, "allowed": want }),
            "the command on ({perm}, {res})"
        );
        assert_eq!(
            t.has_permission(&catalog, perm, res),
            want,
            "the kit on ({perm}, {res})"
        );
    }
    let out = support::json_out(&run(&["token", "verify", &token]));
    assert!(
        out.get("decision").is_none(),
        "no decision without --permission"
    );

    let fails = |out: std::process::Output, what: &str, needle: &str| {
        assert!(!out.status.success(), "{what}: must fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(needle),
            "{what}: stderr {err:?} names {needle:?}"
        );
        assert!(out.stdout.is_empty(), "{what}: nothing on stdout");
    };
    let tampered = format!("{}AA", &token[..token.len() - 2]);
    fails(
        run(&["token", "verify", &tampered]),
        "a tampered token",
        "invalid token",
    );
    let expired = {
        let mut c = claims(s, &k.admin_api(), 0);
        c["exp"] = json!(gatehouse::now_unix() - 3600);
        server_signed(s, "at+jwt", &c)
    };
    fails(
        run(&["token", "verify", &expired]),
        "an expired token",
        "invalid token",
    );
    let id_token = browser_tokens(s).await["id_token"]
        .as_str()
        .expect("id_token")
        .to_owned();
    fails(
        run(&["token", "verify", &id_token]),
        "an ID token",
        "not an access token",
    );
    let (kid, _, _) = real_key(s);
    let none = raw(
        &json!({ "alg": "none", "kid": kid, "typ": "at+jwt" }),
        &claims(s, &k.admin_api(), 300),
        "",
    );
    fails(run(&["token", "verify", &none]), "alg none", "gatehouse:");
    fails(
        run(&["token", "verify", "not-a-jwt"]),
        "garbage",
        "not a JWT",
    );
    let out = run(&[
        "token",
        "verify",
        &token,
        "--permission",
        "iam.policies.set",
    ]);
    assert!(
        !out.status.success(),
        "--permission without --resource is a usage error"
    );
    k.w.s.stop().await;
}

// ---------------------------------------------------------------------------------
// 10. after a 304, max-age again (regressions: a 304 was once kept 300 s)

#[tokio::test]
async fn after_a_304_the_next_revalidation_follows_max_age() {
    let k = kit(|c| c.jwks_cache_secs = 1).await;
    let s = k.s();
    let v = k.verifier(&k.admin_api()).await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    v.catalog().await;
    let after_first = served(s, CATALOG, 304).await;
    assert!(after_first >= 1, "the first revalidation");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    v.catalog().await;
    assert_eq!(
        served(s, CATALOG, 304).await,
        after_first + 1,
        "max-age=1 passed again since the 304: the catalog must be revalidated again"
    );
    k.w.s.stop().await;
}

/// A revoked key is dropped once max-age passes, also after a 304.
#[tokio::test]
async fn a_revoked_key_is_dropped_once_max_age_passes_after_a_304() {
    let k = kit(|c| c.jwks_cache_secs = 1).await;
    let s = k.s();
    let v = k.verifier(&k.admin_api()).await;
    let token = roles_token(&k, &k.test).await;
    let old = kid_of(&token);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    v.verify(&token)
        .await
        .expect("verifies; the stale JWKS is revalidated (304)");
    let revoked = support::json_out(&cli(s, &["keys", "revoke", &old], "1"));
    assert_eq!(revoked["revoked"], old.as_str());
    eventually("the revoked key leaves the JWKS", async || {
        !published(s).await.contains(&old)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let got = v.verify(&token).await;
    assert!(
        matches!(got, Err(VerifyError::UnknownKey(_))),
        "max-age (1 s) passed since the JWKS was revalidated and the key was revoked: \
         the token must be refused, got {got:?}"
    );
    k.w.s.stop().await;
}

// ---------------------------------------------------------------------------------
// 11. bugs (each asserts the documented behaviour, ignored while it fails), and a
// hanging issuer

/// When the JWKS is stale, every concurrent verify reads it again, one after the
/// other (the refresh lock is taken but freshness is not checked again under it).
#[tokio::test]
async fn a_burst_after_max_age_reads_the_jwks_once() {
    let k = kit(|c| c.jwks_cache_secs = 1).await;
    let s = k.s();
    let v = k.verifier(&k.admin_api()).await;
    let token = roles_token(&k, &k.test).await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let before = fetches(s, JWKS).await;
    let answers = futures_util::future::join_all((0..20).map(|_| v.verify(&token))).await;
    assert!(answers.iter().all(Result::is_ok), "all verify");
    let reads = fetches(s, JWKS).await - before;
    assert!(
        reads <= 1,
        "20 concurrent verifies of a known kid after max-age: {reads} JWKS reads"
    );
    k.w.s.stop().await;
}

/// A hanging issuer, through a proxy that is the issuer's address: (server, proxy,
/// issuer URL, a token for `<issuer>/v1`). The cache lifetime is one second.
async fn behind_a_proxy() -> (TestServer, support::Proxy, String, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let upstream = listener.local_addr().expect("addr").to_string();
    let proxy = support::Proxy::start(upstream).await;
    let issuer = format!("http://{}", proxy.addr);
    let iss = issuer.clone();
    let s = TestServer::start_on(listener, move |c| {
        c.jwks_cache_secs = 1;
        c.issuer = Some(iss);
    })
    .await;
    let now = gatehouse::now_unix();
    let c = json!({
        "iss": issuer, "sub": "s", "aud": format!("{issuer}/v1"), "iat": now, "exp": now + 600,
        "roles": ["owner@orgs/test/*"],
    });
    let token = server_signed(&s, "at+jwt", &c);
    (s, proxy, issuer, token)
}

/// With the issuer hanging, the first verify after max-age waits for the JWKS read to
/// time out and keeps the keys; the next ones do not wait again within the interval.
#[tokio::test]
async fn a_hanging_issuer_costs_one_timeout_not_one_per_token() {
    let (s, proxy, issuer, token) = behind_a_proxy().await;
    let v = Verifier::discover(&issuer, &format!("{issuer}/v1"))
        .await
        .expect("discover through the proxy");
    v.verify(&token).await.expect("genuine");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    proxy.slow(Duration::from_secs(60));
    let started = Instant::now();
    v.verify(&token)
        .await
        .expect("the kept keys still verify when the issuer hangs");
    let first = started.elapsed();
    let started = Instant::now();
    for _ in 0..5 {
        v.verify(&token).await.expect("and again");
    }
    let next = started.elapsed();
    assert!(
        next < Duration::from_secs(1),
        "the first verify waited {first:?} for the hanging issuer; five more must not wait again, waited {next:?}"
    );
    proxy.slow(Duration::ZERO);
    s.stop().await;
}

/// The same for the role catalog: with the issuer hanging, every `catalog()` call
/// after max-age reads it again and waits for the timeout (10 s), because a failed
/// read leaves the stale entry's lifetime as it was.
#[tokio::test]
async fn a_hanging_issuer_costs_the_catalog_one_timeout_not_one_per_call() {
    let (s, proxy, issuer, _) = behind_a_proxy().await;
    let v = Verifier::discover(&issuer, &format!("{issuer}/v1"))
        .await
        .expect("discover through the proxy");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    proxy.slow(Duration::from_secs(60));
    let started = Instant::now();
    let c = v.catalog().await;
    assert!(
        c.grants("owner", "iam.policies.set"),
        "the kept catalog answers"
    );
    let first = started.elapsed();
    let started = Instant::now();
    let c = v.catalog().await;
    let second = started.elapsed();
    assert!(c.grants("owner", "iam.policies.set"), "still");
    assert!(
        second < Duration::from_secs(1),
        "the first catalog() waited {first:?} for the hanging issuer; the next must not wait again, waited {second:?}"
    );
    proxy.slow(Duration::ZERO);
    s.stop().await;
}

/// Custom roles are missing from the published catalog, so the kit denies what
/// `gatehouse token verify` (and the server's offline rule) allow.
#[tokio::test]
#[ignore = "limitation: the public role catalog lists predefined roles only; an organization's custom roles are published to callers authenticated within it, which the kit does not do yet"]
async fn bug_custom_roles_decide_in_the_kit_as_in_the_command() {
    let k = kit(|_| {}).await;
    let s = k.s();
    {
        let view = k.w.view();
        let ctx = k.w.ctx(&view);
        definitions::register_api(
            &ctx,
            &k.w.owner,
            &s.base,
            STORAGE,
            "Storage",
            &[Permission {
                name: "object-storage.buckets.create".into(),
                description: String::new(),
            }],
        )
        .await
        .expect("api");
    }
    k.w.reload().await;
    let role = {
        let view = k.w.view();
        let ctx = k.w.ctx(&view);
        definitions::put_custom_role(
            &ctx,
            &k.w.owner,
            "orgs/test",
            "bucket-maker",
            "Makes buckets",
            &["object-storage.buckets.create".into()],
        )
        .await
        .expect("custom role")
    };
    k.w.reload().await;
    let maker = service_account(
        &k.w,
        "orgs/test",
        "maker",
        &[("orgs/test/projects/api", role.id.as_str())],
    )
    .await;
    let token = roles_token(&k, &maker).await;
    let v = k.verifier(&k.admin_api()).await;
    let t = v.verify(&token).await.expect("genuine");
    let (perm, res) = (
        "object-storage.buckets.create",
        "orgs/test/projects/api/buckets/logs",
    );
    let out = support::json_out(&cli(
        s,
        &[
            "token",
            "verify",
            &token,
            "--permission",
            perm,
            "--resource",
            res,
        ],
        "300",
    ));
    assert_eq!(
        out["decision"]["allowed"], true,
        "the command allows the custom role's permission: {out}"
    );
    assert!(
        t.has_permission(&*v.catalog().await, perm, res),
        "the kit must decide {:?} as the command does",
        t.roles
    );
    k.w.s.stop().await;
}

/// RFC 6750 section 3: `error_description` values "MUST NOT include characters
/// outside the set %x20-21 / %x23-5B / %x5D-7E". The kit copies the error text, with
/// the token's own kid or typ in it, into the challenge as raw UTF-8 (obs-text), so a
/// client reading the header as a string fails.
#[tokio::test]
async fn every_401_carries_an_ascii_bearer_challenge() {
    let k = kit(|_| {}).await;
    let s = k.s();
    let v = Arc::new(k.verifier(&k.admin_api()).await);
    let base = serve(
        Router::new()
            .route("/whoami", get(whoami))
            .layer(RequireToken::new(v)),
    )
    .await;
    let (_, foreign, _) = foreign_key();
    let good = claims(s, &k.admin_api(), 300);
    for (what, tok) in [
        (
            "a non-ASCII kid",
            sign(
                &header(Algorithm::RS256, Some("clé"), Some("at+jwt")),
                &good,
                &foreign,
            ),
        ),
        (
            "a non-ASCII typ",
            sign(
                &header(Algorithm::RS256, Some("k"), Some("jwté")),
                &good,
                &foreign,
            ),
        ),
    ] {
        let r = client()
            .get(format!("{base}/whoami"))
            .bearer_auth(&tok)
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 401, "{what}");
        let ch = r
            .headers()
            .get("www-authenticate")
            .unwrap_or_else(|| panic!("{what}: a challenge"))
            .as_bytes()
            .to_vec();
        let text = String::from_utf8_lossy(&ch);
        assert!(text.contains("error=\"invalid_token\""), "{what}: {text}");
        assert!(
            ch.iter().all(|b| (0x20..=0x7e).contains(b)),
            "{what}: the challenge must be visible ASCII: {text}"
        );
    }
    k.w.s.stop().await;
}

/// An issuer of the test's own making: discovery, a JWKS of a fresh key ring and an
/// empty role catalog, each `max-age=1`; the JWKS can be switched to answer 500 or a
/// body that is not a JWKS. Counts JWKS requests.
struct FakeIssuer {
    base: String,
    ring: gatehouse::crypto::keyring::KeyRing,
    /// 0: the JWKS; 1: HTTP 500; 2: `200` with a body that is not a JWKS.
    mode: Arc<std::sync::atomic::AtomicU8>,
    jwks_reads: Arc<std::sync::atomic::AtomicU64>,
}

impl FakeIssuer {
    async fn start() -> FakeIssuer {
        use std::sync::atomic::Ordering;
        let (kek, _) = gatehouse::crypto::kek::Kek::generate();
        let now = gatehouse::now_unix();
        let row =
            gatehouse::crypto::keyring::new_row(SigningAlg::RS256, &kek, now, now).expect("key");
        let ring = gatehouse::crypto::keyring::KeyRing::from_rows(&[row], &kek, now).expect("ring");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let discovery = json!({
            "issuer": base,
            "jwks_uri": format!("{base}{JWKS}"),
            "role_catalog_uri": format!("{base}{CATALOG}"),
        });
        let jwks = ring.jwks(now).to_string();
        let mode = Arc::new(std::sync::atomic::AtomicU8::new(0));
        let jwks_reads = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (m, n) = (mode.clone(), jwks_reads.clone());
        let cached = |body: String| {
            (
                [
                    ("cache-control", "public, max-age=1"),
                    ("content-type", "application/json"),
                ],
                body,
            )
        };
        let app = Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(move || async move { cached(discovery.to_string()) }),
            )
            .route(
                JWKS,
                get(move || {
                    n.fetch_add(1, Ordering::SeqCst);
                    let mode = m.load(Ordering::SeqCst);
                    let jwks = jwks.clone();
                    async move {
                        use axum::response::IntoResponse;
                        match mode {
                            0 => cached(jwks).into_response(),
                            1 => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
                            _ => cached("<html>maintenance</html>".into()).into_response(),
                        }
                    }
                }),
            )
            .route(
                CATALOG,
                get(move || async move { cached(json!({ "roles": [] }).to_string()) }),
            );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeIssuer {
            base,
            ring,
            mode,
            jwks_reads,
        }
    }

    fn token(&self) -> String {
        let now = gatehouse::now_unix();
        let c = json!({ "iss": self.base, "sub": "s", "aud": "api", "iat": now, "exp": now + 600 });
        gatehouse::crypto::jwt::sign(&self.ring, now, "at+jwt", &c).expect("sign")
    }

    fn set(&self, mode: u8) {
        self.mode.store(mode, std::sync::atomic::Ordering::SeqCst);
    }

    fn reads(&self) -> u64 {
        self.jwks_reads.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A failing JWKS read (HTTP 500) after max-age keeps the keys and is tried again
/// once per REFETCH_INTERVAL, not once per token.
#[tokio::test]
async fn an_issuer_answering_500_is_read_once_per_interval() {
    support::init();
    let f = FakeIssuer::start().await;
    let v = Verifier::discover(&f.base, "api").await.expect("discover");
    let token = f.token();
    v.verify(&token).await.expect("genuine");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    f.set(1);
    let before = f.reads();
    for i in 0..10 {
        v.verify(&token)
            .await
            .unwrap_or_else(|e| panic!("verify {i}: the kept keys verify: {e:?}"));
    }
    assert_eq!(
        f.reads() - before,
        1,
        "ten verifies while the JWKS answers 500: one read"
    );
}

/// The same when the JWKS answers 200 with a body that is not a JWKS (a proxy's
/// maintenance page): the parse error leaves the stale entry's lifetime as it was, so
/// every verify reads the JWKS again.
#[tokio::test]
async fn an_unparsable_jwks_is_read_once_per_interval() {
    support::init();
    let f = FakeIssuer::start().await;
    let v = Verifier::discover(&f.base, "api").await.expect("discover");
    let token = f.token();
    v.verify(&token).await.expect("genuine");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    f.set(2);
    let before = f.reads();
    for i in 0..10 {
        v.verify(&token)
            .await
            .unwrap_or_else(|e| panic!("verify {i}: the kept keys verify: {e:?}"));
    }
    assert_eq!(
        f.reads() - before,
        1,
        "ten verifies while the JWKS is not a JWKS: one read"
    );
}

//! `cargo bench --bench verify`: the resource-server kit, `gatehouse::verify`, on one
//! thread. A small HTTP server in this process publishes a gatehouse key ring's JWKS,
//! a discovery document and the default catalog's role catalog, as a node does; the
//! kit discovers them once and then verifies offline. Reported: verifications per
//! CPU-second (median of five one-second rounds) as a ratio to `openssl speed rsa2048`
//! verify/s measured in the same run, and the permission check's cost on top;
//! criterion then measures the same three operations.

mod common;

use std::hint::black_box;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use common::{openssl, rate};
use criterion::Criterion;
use gatehouse::config::SigningAlg;
use gatehouse::crypto::jwt;
use gatehouse::crypto::kek::Kek;
use gatehouse::crypto::keyring::{KeyRing, new_row};
use gatehouse::verify::Verifier;
use serde_json::json;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rustls::crypto::aws_lc_rs::default_provider()
        .install_default()
        .ok();
    let (kek, _) = Kek::generate();
    let now = gatehouse::now_unix();
    let row = new_row(SigningAlg::RS256, &kek, now, now).expect("key");
    let ring = KeyRing::from_rows(&[row], &kek, now).expect("ring");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let issuer = format!("http://{}", listener.local_addr().expect("addr"));
    let discovery = json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "role_catalog_uri": format!("{issuer}/.well-known/role-catalog.json"),
    });
    let roles = gatehouse::iam::Roles::resolve(
        Arc::new(gatehouse::iam::Catalog::named("default").expect("catalog")),
        &[],
        &[],
    )
    .expect("roles");
    let catalog = roles.published(None);
    let published = catalog.clone();
    let jwks = ring.jwks(now);
    let app = Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(move || async move { axum::Json(discovery) }),
        )
        .route(
            "/.well-known/jwks.json",
            get(move || async move { axum::Json(jwks) }),
        )
        .route(
            "/.well-known/role-catalog.json",
            get(move || async move { axum::Json(catalog) }),
        );
    rt.spawn(async move { axum::serve(listener, app).await });
    let audience = format!("{issuer}/v1");
    let verifier = rt
        .block_on(Verifier::discover(&issuer, &audience))
        .expect("discover");
    let claims = json!({
        "iss": issuer, "sub": "5f0c7b9e-1d2a-4c61-9a43-0d7f3f1f2a11", "aud": audience,
        "client_id": "robot-1", "scope": "roles", "jti": "0b9d2c4e6f8a",
        "iat": now, "exp": now + 3600,
        "roles": ["organization.member@orgs/acme", "project.member@orgs/acme/projects/backend",
                  "object-storage.reader@orgs/acme/projects/data/*", "viewer@orgs/beta/*"],
    });
    let token = jwt::sign(&ring, now, "at+jwt", &claims).expect("sign");
    let parsed = rt.block_on(verifier.verify(&token)).expect("verifies");
    let cat = rt.block_on(verifier.catalog());
    // A permission of `viewer` (held on orgs/beta/*), asked on a resource server's
    // own resource deep beneath it; the entries before it are looked at first.
    let viewer_perm = published["roles"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["id"] == "viewer"))
        .and_then(|r| r["permissions"][0].as_str().map(str::to_owned))
        .expect("viewer has permissions");
    let (perm, resource) = (viewer_perm.as_str(), "orgs/beta/projects/data/buckets/logs");
    assert!(
        parsed.has_permission(&cat, perm, resource),
        "the bench question is allowed"
    );

    let reference = openssl(&["rsa2048"], 6);
    let verifies = rate(|| {
        black_box(
            rt.block_on(verifier.verify(black_box(&token)))
                .expect("verify"),
        );
    });
    let checks = rate(|| {
        black_box(parsed.has_permission(&cat, black_box(perm), black_box(resource)));
    });
    let both = rate(|| {
        let t = rt
            .block_on(verifier.verify(black_box(&token)))
            .expect("verify");
        black_box(t.has_permission(&cat, perm, resource));
    });
    println!("gatehouse::verify, one thread (median of five 1 s rounds), RS256");
    let ratio = reference
        .map(|r| {
            format!(
                "; openssl speed rsa2048: {r:.0} verify/s, ratio {:.2} (aim 0.6)",
                verifies / r
            )
        })
        .unwrap_or_else(|| "; openssl speed: not available".into());
    println!("  Verifier::verify: {verifies:.0} tokens/s{ratio}");
    println!(
        "  has_permission on a verified token: {:.0} ns ({checks:.0}/s); verify + has_permission: {both:.0}/s",
        1e9 / checks
    );

    let mut c = Criterion::default().configure_from_args();
    let mut group = c.benchmark_group("verify");
    group.bench_function("Verifier::verify (RS256, 4 roles)", |b| {
        b.iter(|| {
            rt.block_on(verifier.verify(black_box(&token)))
                .expect("verify")
        })
    });
    group.bench_function("AccessToken::has_permission", |b| {
        b.iter(|| parsed.has_permission(&cat, black_box(perm), black_box(resource)))
    });
    group.bench_function("verify + has_permission", |b| {
        b.iter(|| {
            let t = rt
                .block_on(verifier.verify(black_box(&token)))
                .expect("verify");
            t.has_permission(&cat, perm, resource)
        })
    });
    group.finish();
    c.final_summary();
}

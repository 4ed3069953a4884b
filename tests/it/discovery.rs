//! Discovery, JWKS, probes, metrics and the cross-cutting HTTP behaviour.

use gatehouse::config::SigningAlg;
use serde_json::Value;

use crate::support::{TestServer, client};

#[tokio::test]
async fn discovery_names_the_issuer_and_its_endpoints() {
    let s = TestServer::start().await;
    let r = s.get("/.well-known/openid-configuration").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let d: Value = r.json().await.expect("json");
    assert_eq!(d["issuer"], s.base);
    assert_eq!(d["jwks_uri"], format!("{}/.well-known/jwks.json", s.base));
    assert_eq!(
        d["role_catalog_uri"],
        format!("{}/.well-known/role-catalog.json", s.base)
    );
    for field in [
        "authorization_endpoint",
        "token_endpoint",
        "response_types_supported",
        "subject_types_supported",
    ] {
        assert!(d.get(field).is_some(), "{field}");
    }
    assert_eq!(
        d["id_token_signing_alg_values_supported"],
        serde_json::json!(["RS256"])
    );
    assert_eq!(
        d["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    s.stop().await;
}

#[tokio::test]
async fn jwks_is_cacheable_and_conditional() {
    let s = TestServer::start().await;
    let r = s.get("/.well-known/jwks.json").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "public, max-age=2");
    let etag = r.headers()["etag"].to_str().expect("etag").to_owned();
    let jwks: Value = r.json().await.expect("json");
    let keys = jwks["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["kty"], "RSA");
    assert_eq!(keys[0]["alg"], "RS256");
    assert!(keys[0]["kid"].as_str().is_some_and(|k| !k.is_empty()));
    assert!(keys[0].get("d").is_none(), "no private parts");

    let again = client()
        .get(format!("{}/.well-known/jwks.json", s.base))
        .header("if-none-match", &etag)
        .send()
        .await
        .expect("request");
    assert_eq!(again.status(), 304);
    assert_eq!(again.text().await.expect("body"), "");
    s.stop().await;
}

#[tokio::test]
async fn es256_and_eddsa_are_selectable() {
    for (alg, kty) in [(SigningAlg::ES256, "EC"), (SigningAlg::EdDSA, "OKP")] {
        let s = TestServer::start_with(|c| c.signing_alg = alg).await;
        let jwks: Value = s
            .get("/.well-known/jwks.json")
            .await
            .json()
            .await
            .expect("json");
        assert_eq!(jwks["keys"][0]["kty"], kty);
        assert_eq!(jwks["keys"][0]["alg"], alg.as_str());
        let d: Value = s
            .get("/.well-known/openid-configuration")
            .await
            .json()
            .await
            .expect("json");
        assert_eq!(d["id_token_signing_alg_values_supported"][0], alg.as_str());
        s.stop().await;
    }
}

#[tokio::test]
async fn probes_answer() {
    let s = TestServer::start().await;
    assert_eq!(s.get("/healthz").await.status(), 200);
    let r = s.get("/readyz").await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["status"], "ready");
    s.stop().await;
}

#[tokio::test]
async fn metrics_count_requests_per_route_with_latency() {
    let s = TestServer::start().await;
    for _ in 0..3 {
        s.get("/.well-known/jwks.json").await;
    }
    s.get("/nope?code=secret-code").await;
    let text = s.get("/metrics").await.text().await.expect("text");
    assert!(
        text.contains(
            r#"http_requests_total{route="/.well-known/jwks.json",method="GET",status="200"} 3"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"http_request_duration_seconds_bucket{route="/.well-known/jwks.json""#)
    );
    assert!(
        text.contains(r#"route="unmatched",method="GET",status="404""#),
        "{text}"
    );
    assert!(text.contains("db_pool_connections{state=\"open\"}"));
    assert!(
        !text.contains("secret-code"),
        "query strings never reach metrics"
    );
    s.stop().await;
}

#[tokio::test]
async fn request_ids_are_echoed_only_when_well_formed() {
    let s = TestServer::start().await;
    let http = client();
    let url = format!("{}/healthz", s.base);
    let r = http
        .get(&url)
        .header("x-request-id", "lb-1234.abc")
        .send()
        .await
        .expect("req");
    assert_eq!(r.headers()["x-request-id"], "lb-1234.abc");
    for hostile in ["a b", "<script>", &"x".repeat(65), "id\u{7f}"] {
        let r = http.get(&url).header("x-request-id", hostile).send().await;
        let Ok(r) = r else { continue };
        let got = r.headers()["x-request-id"]
            .to_str()
            .expect("ascii")
            .to_owned();
        assert_ne!(got, hostile);
        assert!(got.len() <= 64 && !got.is_empty());
    }
    let a = http.get(&url).send().await.expect("req").headers()["x-request-id"].clone();
    let b = http.get(&url).send().await.expect("req").headers()["x-request-id"].clone();
    assert_ne!(a, b, "generated ids are unique");
    assert_eq!(
        http.get(&url).send().await.expect("req").headers()["x-content-type-options"],
        "nosniff"
    );
    s.stop().await;
}

#[tokio::test]
async fn unknown_routes_and_methods_are_clean_errors() {
    let s = TestServer::start().await;
    let r = s.get("/does/not/exist").await;
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"], "not_found");
    let r = client()
        .post(format!("{}/.well-known/jwks.json", s.base))
        .body(vec![b'x'; 2 * 1024 * 1024])
        .send()
        .await
        .expect("req");
    assert!(r.status().is_client_error(), "{}", r.status());
    s.stop().await;
}

#[tokio::test]
async fn the_role_catalog_is_published_and_cacheable() {
    let s = TestServer::start().await;
    let r = s.get("/.well-known/role-catalog.json").await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("etag"));
    let c: Value = r.json().await.expect("json");
    assert_eq!(c["catalog"], "default");
    assert_eq!(c["owner_role"], "owner");
    let roles = c["roles"].as_array().expect("roles");
    let role = |id: &str| roles.iter().find(|r| r["id"] == id).cloned().expect(id);
    assert_eq!(role("owner")["inherits"], true);
    assert_eq!(role("project.member")["inherits"], false);
    assert_eq!(
        role("project.member")["deprecated"]["replacement"],
        "editor"
    );
    let editor_role = role("editor");
    let editor: Vec<&str> = editor_role["permissions"]
        .as_array()
        .expect("perms")
        .iter()
        .map(|p| p.as_str().expect("str"))
        .collect();
    assert!(
        editor.contains(&"resourcemanager.projects.create")
            && !editor.contains(&"iam.policies.set")
    );
    s.stop().await;

    let sp = TestServer::start_with(|c| c.catalog = "stackpath".into()).await;
    let c: Value = sp
        .get("/.well-known/role-catalog.json")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(c["owner_role"], "roles/systemOwner");
    assert_eq!(c["labels"]["project"], "stack");
    sp.stop().await;
}

//! `cargo bench --bench signing`: access-token signing per core through the key ring
//! (aws-lc-rs, key parsed once) for each algorithm, next to `openssl speed` on the same
//! machine in the same run, and verification through jsonwebtoken. Medians of five
//! one-second rounds on one thread.

mod common;

use common::{openssl, rate};

use gatehouse::config::SigningAlg;
use gatehouse::crypto::jwt;
use gatehouse::crypto::kek::Kek;
use gatehouse::crypto::keyring::{KeyRing, new_row};
use serde_json::json;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let (kek, _) = Kek::generate();
    let now = gatehouse::now_unix();
    let claims = json!({
        "iss": "http://127.0.0.1:8080", "sub": "5f0c7b9e-1d2a-4c61-9a43-0d7f3f1f2a11",
        "aud": "http://127.0.0.1:8080/v1", "client_id": "gatehouse-admin", "scope": "openid roles",
        "jti": "0b9d2c4e6f8a", "iat": now, "exp": now + 600,
        "roles": ["owner@orgs/acme/*", "project.member@orgs/acme/projects/backend"],
    });
    println!("token signing and verification, one thread (median of five 1 s rounds)");
    for (alg, reference) in [
        (SigningAlg::RS256, openssl(&["rsa2048"], 5)),
        (SigningAlg::ES256, openssl(&["ecdsap256"], 6)),
        (SigningAlg::EdDSA, openssl(&["ed25519"], 6)),
    ] {
        let row = new_row(alg, &kek, now, now).expect("key");
        let ring = KeyRing::from_rows(&[row], &kek, now).expect("ring");
        let signs = rate(|| {
            jwt::sign(&ring, now, "at+jwt", &claims).expect("sign");
        });
        let token = jwt::sign(&ring, now, "at+jwt", &claims).expect("sign");
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        v.set_audience(&["http://127.0.0.1:8080/v1"]);
        v.set_issuer(&["http://127.0.0.1:8080"]);
        let verifies = rate(|| {
            jwt::verify::<serde_json::Value>(&ring, now, &token, &v).expect("verify");
        });
        let vs = reference
            .map(|r| format!("; openssl speed: {r:.0} signs/s, ratio {:.2}", signs / r))
            .unwrap_or_else(|| "; openssl speed: not available".into());
        println!(
            "  {}: {signs:.0} tokens signed/s{vs}; {verifies:.0} tokens verified/s",
            alg.as_str()
        );
    }
}

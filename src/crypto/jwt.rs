//! Compact JWS: signing with the ring's current key through aws-lc-rs, verification
//! with jsonwebtoken against the published keys.

use jsonwebtoken::{Algorithm, Validation};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::b64;
use super::keyring::{KeyRing, RingKey, SigningKey};
use crate::config::SigningAlg;

/// Why signing or verification failed.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    /// No key may sign now.
    #[error("no signing key is active")]
    NoSigningKey,
    /// The signature operation failed.
    #[error("signing failed")]
    Signing,
    /// The token is malformed, has an unknown key id, a bad signature or bad claims.
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// Signs `claims` with the ring's current key; `typ` goes into the header
/// (`at+jwt` for access tokens, `JWT` for ID tokens).
pub fn sign<T: Serialize>(
    ring: &KeyRing,
    now: i64,
    typ: &str,
    claims: &T,
) -> Result<String, JwtError> {
    let key = ring.signer(now).ok_or(JwtError::NoSigningKey)?;
    sign_with(key, typ, claims)
}

/// Signs with a given key.
pub fn sign_with<T: Serialize>(key: &RingKey, typ: &str, claims: &T) -> Result<String, JwtError> {
    let header = json!({ "alg": key.alg.as_str(), "kid": key.kid, "typ": typ });
    let header = serde_json::to_vec(&header).map_err(|_| JwtError::Signing)?;
    let body = serde_json::to_vec(claims).map_err(|_| JwtError::Signing)?;
    let mut out = String::with_capacity(512);
    out.push_str(&b64(&header));
    out.push('.');
    out.push_str(&b64(&body));
    let signature = sign_bytes(&key.signing, out.as_bytes())?;
    out.push('.');
    out.push_str(&b64(&signature));
    Ok(out)
}

fn sign_bytes(key: &SigningKey, msg: &[u8]) -> Result<Vec<u8>, JwtError> {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    match key {
        SigningKey::Rsa(pair) => {
            let mut sig = vec![0u8; pair.public_modulus_len()];
            pair.sign(&aws_lc_rs::signature::RSA_PKCS1_SHA256, &rng, msg, &mut sig)
                .map_err(|_| JwtError::Signing)?;
            Ok(sig)
        }
        SigningKey::Ecdsa(pair) => Ok(pair
            .sign(&rng, msg)
            .map_err(|_| JwtError::Signing)?
            .as_ref()
            .to_vec()),
        SigningKey::Ed25519(pair) => Ok(pair.sign(msg).as_ref().to_vec()),
    }
}

/// The jsonwebtoken algorithm of a signing algorithm.
pub fn algorithm(alg: SigningAlg) -> Algorithm {
    match alg {
        SigningAlg::RS256 => Algorithm::RS256,
        SigningAlg::ES256 => Algorithm::ES256,
        SigningAlg::EdDSA => Algorithm::EdDSA,
    }
}

/// Verifies a token against the published keys of `ring`: the header's `kid` must be
/// published and its `alg` must be that key's algorithm; `validation` carries the
/// issuer, audience and time rules (its algorithm list is replaced by the key's).
pub fn verify<T: DeserializeOwned>(
    ring: &KeyRing,
    now: i64,
    token: &str,
    validation: &Validation,
) -> Result<T, JwtError> {
    let header =
        jsonwebtoken::decode_header(token).map_err(|e| JwtError::Invalid(e.to_string()))?;
    let kid = header
        .kid
        .ok_or_else(|| JwtError::Invalid("no kid".into()))?;
    let key = ring
        .get(&kid, now)
        .ok_or_else(|| JwtError::Invalid(format!("unknown kid {kid}")))?;
    let mut validation = validation.clone();
    validation.algorithms = vec![algorithm(key.alg)];
    jsonwebtoken::decode::<T>(token, &key.decoding, &validation)
        .map(|data| data.claims)
        .map_err(|e| JwtError::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::kek::Kek;
    use crate::crypto::keyring::new_row;

    fn ring(alg: SigningAlg) -> KeyRing {
        let (kek, _) = Kek::generate();
        let row = new_row(alg, &kek, 100, 100).expect("generate");
        KeyRing::from_rows(&[row], &kek, 100).expect("ring")
    }

    fn validation() -> Validation {
        let mut v = Validation::new(Algorithm::RS256);
        v.set_issuer(&["https://id.example"]);
        v.set_audience(&["api"]);
        v
    }

    fn claims() -> serde_json::Value {
        let now = crate::now_unix();
        json!({ "iss": "https://id.example", "aud": "api", "sub": "s", "exp": now + 60, "iat": now })
    }

    #[test]
    fn every_algorithm_signs_and_verifies() {
        for alg in [SigningAlg::RS256, SigningAlg::ES256, SigningAlg::EdDSA] {
            let ring = ring(alg);
            let token = sign(&ring, 100, "at+jwt", &claims()).expect("sign");
            let header = jsonwebtoken::decode_header(&token).expect("header");
            assert_eq!(header.typ.as_deref(), Some("at+jwt"));
            let got: serde_json::Value = verify(&ring, 100, &token, &validation()).expect("verify");
            assert_eq!(got["sub"], "s", "{alg:?}");
        }
    }

    #[test]
    fn forged_tokens_are_refused() {
        let ring = ring(SigningAlg::RS256);
        let token = sign(&ring, 100, "at+jwt", &claims()).expect("sign");
        let parts: Vec<&str> = token.split('.').collect();
        let kid = ring.signer(100).expect("signer").kid.clone();
        // alg none, same kid
        let none = format!(
            "{}.{}.",
            b64(json!({"alg": "none", "kid": kid}).to_string().as_bytes()),
            parts[1]
        );
        assert!(verify::<serde_json::Value>(&ring, 100, &none, &validation()).is_err());
        // HS256 keyed with the public JWK text
        let hs = jsonwebtoken::encode(
            &jsonwebtoken::Header {
                kid: Some(kid.clone()),
                ..jsonwebtoken::Header::new(Algorithm::HS256)
            },
            &claims(),
            &jsonwebtoken::EncodingKey::from_secret(ring.jwks(100).to_string().as_bytes()),
        )
        .expect("hs256");
        assert!(verify::<serde_json::Value>(&ring, 100, &hs, &validation()).is_err());
        // altered payload
        let altered_body = b64(json!({"sub": "admin", "iss": "https://id.example", "aud": "api", "exp": crate::now_unix() + 60}).to_string().as_bytes());
        let altered = format!("{}.{}.{}", parts[0], altered_body, parts[2]);
        assert!(verify::<serde_json::Value>(&ring, 100, &altered, &validation()).is_err());
        // a key from another ring with the same kid is not trusted
        let other = super::super::keyring::KeyRing::default();
        assert!(verify::<serde_json::Value>(&other, 100, &token, &validation()).is_err());
        // garbage
        for junk in ["", ".", "a.b.c", "a.b", "💥"] {
            assert!(verify::<serde_json::Value>(&ring, 100, junk, &validation()).is_err());
        }
    }

    #[test]
    fn wrong_audience_and_expired_are_refused() {
        let ring = ring(SigningAlg::ES256);
        let mut c = claims();
        c["aud"] = json!("other");
        let t = sign(&ring, 100, "at+jwt", &c).expect("sign");
        assert!(verify::<serde_json::Value>(&ring, 100, &t, &validation()).is_err());
        let mut c = claims();
        c["exp"] = json!(crate::now_unix() - 3600);
        let t = sign(&ring, 100, "at+jwt", &c).expect("sign");
        assert!(verify::<serde_json::Value>(&ring, 100, &t, &validation()).is_err());
    }
}

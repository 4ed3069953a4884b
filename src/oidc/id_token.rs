//! ID tokens (OpenID Connect Core section 2): `typ: JWT`, audience the client, with
//! `auth_time`, the request's `nonce`, `sid` for logout and `at_hash` binding the
//! access token issued with it.

use serde::Serialize;

use crate::config::SigningAlg;
use crate::crypto::jwt::{self, JwtError};
use crate::crypto::keyring::KeyRing;

/// The claims of an ID token.
#[derive(Clone, Debug, Serialize)]
pub struct IdClaims<'a> {
    /// The issuer.
    pub iss: &'a str,
    /// The user's stable id.
    pub sub: &'a str,
    /// The client.
    pub aud: &'a str,
    /// The authorized party (the client).
    pub azp: &'a str,
    /// Issued at.
    pub iat: i64,
    /// Expires at.
    pub exp: i64,
    /// When the user authenticated.
    pub auth_time: i64,
    /// The authorization request's nonce.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<&'a str>,
    /// The browser session.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<&'a str>,
    /// Left half of the access token's hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at_hash: Option<String>,
    /// How the user authenticated.
    pub amr: &'a [&'a str],
    /// With scope `email`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<&'a str>,
    /// With scope `email`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    /// With scope `profile`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
}

/// `at_hash`: the base64url of the left half of the access token's hash, with the
/// hash of the signing algorithm (SHA-256 for RS256 and ES256, SHA-512 for EdDSA).
pub fn at_hash(access_token: &str, alg: Option<SigningAlg>) -> Option<String> {
    let algorithm = match alg? {
        SigningAlg::RS256 | SigningAlg::ES256 => &aws_lc_rs::digest::SHA256,
        SigningAlg::EdDSA => &aws_lc_rs::digest::SHA512,
    };
    let d = aws_lc_rs::digest::digest(algorithm, access_token.as_bytes());
    let half = &d.as_ref()[..d.as_ref().len() / 2];
    Some(crate::crypto::b64(half))
}

/// Signs an ID token with the ring's current key, its `exp` capped like an access
/// token's so it never outlives the key's publication.
pub fn sign(ring: &KeyRing, now: i64, claims: &IdClaims<'_>) -> Result<String, JwtError> {
    let mut claims = claims.clone();
    let key = crate::oauth2::access_token::capped_signer(ring, now, &mut claims.exp)?;
    jwt::sign_with(key, "JWT", &claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_hash_is_the_left_half_of_the_hash() {
        // OpenID Connect Core, appendix A.3's access token and its at_hash.
        assert_eq!(
            at_hash(
                "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y",
                Some(SigningAlg::RS256)
            )
            .as_deref(),
            Some("77QmUPtjPfzWtF2AnpK9RQ")
        );
        assert_eq!(
            at_hash("x", Some(SigningAlg::EdDSA)).map(|h| h.len()),
            Some(43)
        );
        assert_eq!(at_hash("x", None), None);
    }
}

//! Access tokens (RFC 9068): `typ: at+jwt`, with `iss`, `sub`, `aud`, `client_id`,
//! `scope`, `jti`, `iat`, `exp` and, when the `roles` scope was granted, the `roles`
//! claim. A token never outlives a binding it carries.

use serde::Serialize;

use crate::crypto::jwt::{self, JwtError};
use crate::crypto::keyring::{KeyRing, RingKey};

/// The claims of an access token.
#[derive(Clone, Debug, Serialize)]
pub struct Claims<'a> {
    /// The issuer.
    pub iss: &'a str,
    /// The principal's stable id.
    pub sub: &'a str,
    /// The API the token is for.
    pub aud: &'a str,
    /// The client it was issued to.
    pub client_id: &'a str,
    /// The granted scope.
    pub scope: &'a str,
    /// Unique id.
    pub jti: String,
    /// Issued at.
    pub iat: i64,
    /// Expires at.
    pub exp: i64,
    /// The roles claim, when granted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
}

/// A token's expiry: `now + ttl`, but never after `cap` (the earliest expiry of a
/// binding it carries).
pub fn expiry(now: i64, ttl_secs: u64, cap: Option<i64>) -> i64 {
    let exp = now.saturating_add(i64::try_from(ttl_secs).unwrap_or(i64::MAX));
    cap.map_or(exp, |c| exp.min(c))
}

/// A fresh token id.
pub fn new_jti() -> String {
    crate::crypto::b64(&crate::crypto::random_bytes::<16>())
}

/// Signs the claims with the ring's current key (see [`capped_signer`]).
pub fn sign(ring: &KeyRing, now: i64, claims: &mut Claims<'_>) -> Result<String, JwtError> {
    let key = capped_signer(ring, now, &mut claims.exp)?;
    jwt::sign_with(key, "at+jwt", claims)
}

/// The ring's current key, with `exp` cut so that a token never outlives the key's
/// publication: when the signer is a key already retiring (its successor was
/// revoked), `exp` is cut to a minute before the key leaves the JWKS.
pub fn capped_signer<'r>(
    ring: &'r KeyRing,
    now: i64,
    exp: &mut i64,
) -> Result<&'r RingKey, JwtError> {
    let key = ring.signer(now).ok_or(JwtError::NoSigningKey)?;
    if let Some(unpublished) = key.expires_at {
        *exp = (*exp).min(unpublished - 60);
        if *exp <= now {
            return Err(JwtError::NoSigningKey);
        }
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_never_outlive_their_key() {
        use crate::config::SigningAlg;
        use crate::crypto::kek::Kek;
        use crate::crypto::keyring::new_row;
        let (kek, _) = Kek::generate();
        let mut retiring = new_row(SigningAlg::EdDSA, &kek, 0, 0).expect("key");
        retiring.retires_at = Some(100);
        retiring.expires_at = Some(1000);
        let ring = KeyRing::from_rows(&[retiring], &kek, 500).expect("ring");
        let mut c = Claims {
            iss: "i",
            sub: "s",
            aud: "a",
            client_id: "c",
            scope: "",
            jti: new_jti(),
            iat: 500,
            exp: 1100,
            roles: None,
        };
        sign(&ring, 500, &mut c).expect("sign");
        assert_eq!(c.exp, 940, "cut to a minute before the key is unpublished");
        let mut late = Claims {
            iat: 950,
            exp: 1550,
            ..c.clone()
        };
        assert!(
            sign(&ring, 950, &mut late).is_err(),
            "too close to the end: refuse rather than outlive the key"
        );
    }

    #[test]
    fn expiry_is_capped_by_the_earliest_binding() {
        assert_eq!(expiry(100, 600, None), 700);
        assert_eq!(expiry(100, 600, Some(400)), 400);
        assert_eq!(expiry(100, 600, Some(9_000)), 700);
    }
}

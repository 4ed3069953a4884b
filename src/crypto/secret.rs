//! Client secrets: 256 random bits shown once, stored as HMAC-SHA256 under a key
//! derived from the key-encryption key. A keyed fast hash (not argon2) keeps
//! client-credentials exchanges cheap; the secrets' entropy makes guessing useless.

use aws_lc_rs::hmac;

use super::{b64, unb64};

/// A new secret (base64url of 32 random bytes).
pub fn generate() -> String {
    super::new_token()
}

/// The stored form of `secret`.
pub fn hash(key: &hmac::Key, secret: &str) -> String {
    b64(hmac::sign(key, secret.as_bytes()).as_ref())
}

/// Whether `secret` matches the stored `hashed` form, in constant time.
pub fn verify(key: &hmac::Key, secret: &str, hashed: &str) -> bool {
    match unb64(hashed) {
        Some(tag) => hmac::verify(key, secret.as_bytes(), &tag).is_ok(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_distinct_and_verify_only_themselves() {
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"k");
        let other = hmac::Key::new(hmac::HMAC_SHA256, b"other");
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        let h = hash(&key, &a);
        assert!(verify(&key, &a, &h));
        assert!(!verify(&key, &b, &h));
        assert!(!verify(&other, &a, &h));
        assert!(!verify(&key, &a, "not base64!"));
        assert!(!h.contains(&a));
    }
}

//! The signing key ring: every published key, parsed once and held in memory.
//!
//! Lifecycle (DESIGN.md section 2): a key is published from its creation; it signs
//! from `activates_at` (a rotated-in key waits at least the JWKS cache lifetime) until
//! `retires_at`; it stays published until `expires_at`, when every token it signed has
//! expired; a revoked key is dropped at once. The newest active key signs.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair,
};
use jsonwebtoken::DecodingKey;
use serde_json::{Value, json};

use super::b64;
use super::kek::Kek;
use crate::config::SigningAlg;
use crate::store::keys::KeyRow;

/// A private key parsed for signing.
pub enum SigningKey {
    /// RSA (RS256).
    Rsa(RsaKeyPair),
    /// ECDSA P-256 (ES256).
    Ecdsa(EcdsaKeyPair),
    /// Ed25519 (EdDSA).
    Ed25519(Ed25519KeyPair),
}

/// One key of the ring.
pub struct RingKey {
    /// Key id.
    pub kid: String,
    /// JWS algorithm.
    pub alg: SigningAlg,
    /// The public JWK.
    pub jwk: Value,
    /// For verification through jsonwebtoken.
    pub decoding: DecodingKey,
    /// For signing through aws-lc-rs.
    pub signing: SigningKey,
    /// Starts signing.
    pub activates_at: i64,
    /// Stops signing.
    pub retires_at: Option<i64>,
    /// Stops being published.
    pub expires_at: Option<i64>,
}

impl RingKey {
    /// Whether the key may sign at `now`.
    pub fn signs_at(&self, now: i64) -> bool {
        self.activates_at <= now
            && self.retires_at.is_none_or(|r| now < r)
            && self.published_at(now)
    }

    /// Whether the key is in the JWKS at `now`.
    pub fn published_at(&self, now: i64) -> bool {
        self.expires_at.is_none_or(|e| now < e)
    }
}

/// Why the ring could not be built.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key-encryption key does not open a stored key.
    #[error(
        "GATEHOUSE_KEY_ENCRYPTION_KEY: the key-encryption key cannot open stored signing key {0}"
    )]
    WrongKek(String),
    /// A stored key is malformed.
    #[error("stored signing key {0} is invalid: {1}")]
    Invalid(String, String),
}

/// The parsed keys; built from rows, immutable afterwards (a reload builds a new one).
#[derive(Default)]
pub struct KeyRing {
    keys: Vec<RingKey>,
}

impl KeyRing {
    /// Parses every unrevoked, unexpired row. Fails if any cannot be decrypted.
    pub fn from_rows(rows: &[KeyRow], kek: &Kek, now: i64) -> Result<KeyRing, KeyError> {
        let mut keys = Vec::new();
        for row in rows {
            if row.revoked_at.is_some() || row.expires_at.is_some_and(|e| e <= now) {
                continue;
            }
            let der = kek
                .open(&row.kid, &row.private_key)
                .map_err(|_| KeyError::WrongKek(row.kid.clone()))?;
            let invalid = |e: String| KeyError::Invalid(row.kid.clone(), e);
            let alg: SigningAlg = row
                .alg
                .parse()
                .map_err(|_| invalid(format!("alg {}", row.alg)))?;
            let signing = parse_private(alg, &der).map_err(invalid)?;
            let jwk: Value =
                serde_json::from_str(&row.public_jwk).map_err(|e| invalid(e.to_string()))?;
            let decoding = decoding_key(&jwk).map_err(invalid)?;
            keys.push(RingKey {
                kid: row.kid.clone(),
                alg,
                jwk,
                decoding,
                signing,
                activates_at: row.activates_at,
                retires_at: row.retires_at,
                expires_at: row.expires_at,
            });
        }
        Ok(KeyRing { keys })
    }

    /// The key that signs at `now`: the newest active one. When none is active (every
    /// successor revoked), the newest published key that has activated.
    pub fn signer(&self, now: i64) -> Option<&RingKey> {
        self.keys
            .iter()
            .filter(|k| k.signs_at(now))
            .max_by_key(|k| k.activates_at)
            .or_else(|| {
                self.keys
                    .iter()
                    .filter(|k| k.published_at(now) && k.activates_at <= now)
                    .max_by_key(|k| k.activates_at)
            })
    }

    /// The published key with this id.
    pub fn get(&self, kid: &str, now: i64) -> Option<&RingKey> {
        self.keys
            .iter()
            .find(|k| k.kid == kid && k.published_at(now))
    }

    /// Keys published at `now`.
    pub fn published(&self, now: i64) -> impl Iterator<Item = &RingKey> {
        self.keys.iter().filter(move |k| k.published_at(now))
    }

    /// The JWKS document at `now`.
    pub fn jwks(&self, now: i64) -> Value {
        json!({ "keys": self.published(now).map(|k| k.jwk.clone()).collect::<Vec<_>>() })
    }
}

fn parse_private(alg: SigningAlg, der: &[u8]) -> Result<SigningKey, String> {
    Ok(match alg {
        SigningAlg::RS256 => {
            SigningKey::Rsa(RsaKeyPair::from_pkcs8(der).map_err(|e| e.to_string())?)
        }
        SigningAlg::ES256 => SigningKey::Ecdsa(
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
                .map_err(|e| e.to_string())?,
        ),
        SigningAlg::EdDSA => {
            SigningKey::Ed25519(Ed25519KeyPair::from_pkcs8(der).map_err(|e| e.to_string())?)
        }
    })
}

/// A jsonwebtoken decoding key from a public JWK.
pub fn decoding_key(jwk: &Value) -> Result<DecodingKey, String> {
    let parsed: jsonwebtoken::jwk::Jwk =
        serde_json::from_value(jwk.clone()).map_err(|e| e.to_string())?;
    DecodingKey::from_jwk(&parsed).map_err(|e| e.to_string())
}

/// A newly generated key: its id, its PKCS#8 document and its public JWK.
pub struct GeneratedKey {
    /// Key id.
    pub kid: String,
    /// PKCS#8 private key document.
    pub pkcs8: Vec<u8>,
    /// Public JWK.
    pub jwk: Value,
}

/// Generates a key pair for `alg` (aws-lc-rs).
pub fn generate(alg: SigningAlg) -> Result<GeneratedKey, String> {
    let kid = b64(&super::random_bytes::<12>());
    let err = |e: aws_lc_rs::error::Unspecified| format!("key generation failed: {e}");
    let (pkcs8, mut jwk) = match alg {
        SigningAlg::RS256 => {
            let pair = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).map_err(err)?;
            let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair).map_err(err)?;
            let public = pair.public_key();
            let jwk = json!({
                "kty": "RSA",
                "n": b64(public.modulus().big_endian_without_leading_zero()),
                "e": b64(public.exponent().big_endian_without_leading_zero()),
            });
            (der.as_ref().to_vec(), jwk)
        }
        SigningAlg::ES256 => {
            let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).map_err(err)?;
            let der = pair.to_pkcs8v1().map_err(err)?;
            // Uncompressed point: 0x04 || x || y.
            let point = pair.public_key().as_ref();
            let jwk = json!({
                "kty": "EC",
                "crv": "P-256",
                "x": b64(&point[1..33]),
                "y": b64(&point[33..65]),
            });
            (der.as_ref().to_vec(), jwk)
        }
        SigningAlg::EdDSA => {
            let pair = Ed25519KeyPair::generate().map_err(err)?;
            let der = pair.to_pkcs8v1().map_err(err)?;
            let jwk = json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "x": b64(pair.public_key().as_ref()),
            });
            (der.as_ref().to_vec(), jwk)
        }
    };
    jwk["kid"] = json!(kid);
    jwk["alg"] = json!(alg.as_str());
    jwk["use"] = json!("sig");
    Ok(GeneratedKey { kid, pkcs8, jwk })
}

/// Generates a key and seals it into a store row that signs from `activates_at`.
pub fn new_row(alg: SigningAlg, kek: &Kek, now: i64, activates_at: i64) -> Result<KeyRow, String> {
    let key = generate(alg)?;
    Ok(KeyRow {
        private_key: kek.seal(&key.kid, &key.pkcs8),
        public_jwk: key.jwk.to_string(),
        kid: key.kid,
        alg: alg.as_str().to_owned(),
        created_at: now,
        activates_at,
        retires_at: None,
        expires_at: None,
        revoked_at: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kek: &Kek, activates: i64, retires: Option<i64>, expires: Option<i64>) -> KeyRow {
        let mut r = new_row(SigningAlg::EdDSA, kek, 0, activates).expect("key");
        r.retires_at = retires;
        r.expires_at = expires;
        r
    }

    fn kids(ring: &KeyRing, now: i64) -> Vec<String> {
        ring.published(now).map(|k| k.kid.clone()).collect()
    }

    #[test]
    fn rotation_publishes_first_signs_later_and_unpublishes_after_expiry() {
        let (kek, _) = Kek::generate();
        // old signs until 100, published until 700; new published now, signs from 100
        let old = row(&kek, 0, Some(100), Some(700));
        let new = row(&kek, 100, None, None);
        let ring = KeyRing::from_rows(&[old.clone(), new.clone()], &kek, 50).expect("ring");
        assert_eq!(ring.signer(50).expect("signer").kid, old.kid);
        assert_eq!(kids(&ring, 50), vec![old.kid.clone(), new.kid.clone()]);
        assert_eq!(ring.signer(100).expect("signer").kid, new.kid);
        assert_eq!(
            kids(&ring, 699).len(),
            2,
            "old key still verifies tokens it signed"
        );
        assert_eq!(kids(&ring, 700), vec![new.kid.clone()]);
        assert!(ring.get(&old.kid, 700).is_none());
        assert_eq!(ring.jwks(50)["keys"].as_array().expect("keys").len(), 2);
    }

    #[test]
    fn revoked_and_expired_rows_are_not_loaded() {
        let (kek, _) = Kek::generate();
        let mut revoked = row(&kek, 0, None, None);
        revoked.revoked_at = Some(5);
        let expired = row(&kek, 0, Some(10), Some(20));
        let live = row(&kek, 0, None, None);
        let ring =
            KeyRing::from_rows(&[revoked.clone(), expired, live.clone()], &kek, 30).expect("ring");
        assert_eq!(kids(&ring, 30), vec![live.kid.clone()]);
        assert!(ring.get(&revoked.kid, 30).is_none());
    }

    #[test]
    fn a_retired_key_still_signs_when_its_successor_is_gone() {
        let (kek, _) = Kek::generate();
        let old = row(&kek, 0, Some(100), Some(700));
        let ring = KeyRing::from_rows(std::slice::from_ref(&old), &kek, 200).expect("ring");
        assert_eq!(ring.signer(200).expect("fallback").kid, old.kid);
        assert!(ring.signer(700).is_none());
    }

    #[test]
    fn a_wrong_key_encryption_key_is_refused() {
        let (kek, _) = Kek::generate();
        let (other, _) = Kek::generate();
        let r = row(&kek, 0, None, None);
        let err = KeyRing::from_rows(&[r], &other, 0)
            .err()
            .expect("must fail");
        assert!(
            err.to_string().starts_with("GATEHOUSE_KEY_ENCRYPTION_KEY"),
            "{err}"
        );
    }

    #[test]
    fn public_jwks_hold_no_private_parts() {
        for alg in [SigningAlg::RS256, SigningAlg::ES256, SigningAlg::EdDSA] {
            let key = generate(alg).expect("key");
            for private in ["d", "p", "q", "dp", "dq", "qi"] {
                assert!(key.jwk.get(private).is_none(), "{alg:?} leaks {private}");
            }
            assert_eq!(key.jwk["alg"], alg.as_str());
            assert_eq!(key.jwk["use"], "sig");
        }
    }
}

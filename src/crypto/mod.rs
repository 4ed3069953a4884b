//! Cryptography: the key-encryption key ([`kek`]), the signing key ring
//! ([`keyring`]), JWT signing and verification ([`jwt`]), password hashing
//! ([`password`]) and client secrets ([`secret`]).
//!
//! Signing goes through aws-lc-rs with key pairs parsed once and held in memory;
//! verification goes through jsonwebtoken. The `rsa` crate never signs.

pub mod jwt;
pub mod kek;
pub mod keyring;
pub mod password;
pub mod secret;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// base64url without padding (JOSE's encoding).
pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url without padding.
pub fn unb64(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text.trim()).ok()
}

/// `n` random bytes from the system's secure generator.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    // The system RNG does not fail on supported platforms; if it ever did, carrying
    // on with zeros would be a silent security failure, so stop instead.
    aws_lc_rs::rand::fill(&mut out).expect("system random generator failed");
    out
}

/// A new single-use token for a link or a code: 256 random bits, base64url.
pub fn new_token() -> String {
    b64(&random_bytes::<32>())
}

/// The base64url SHA-256 of a token: how tokens are kept, so that a leak of the
/// store yields none of them.
pub fn token_hash(token: &str) -> String {
    b64(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes()).as_ref())
}

//! PKCE (RFC 7636): only `S256`; `plain` is refused. The verifier is 43 to 128
//! characters of the unreserved set; the challenge is its SHA-256 in base64url.

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::digest::{SHA256, digest};

use crate::crypto::b64;

/// Why a code challenge is refused at the authorization endpoint.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PkceError {
    /// `code_challenge_method` other than `S256`.
    #[error("code_challenge_method must be S256")]
    Method,
    /// A challenge that is not 43 base64url characters.
    #[error("code_challenge must be the base64url SHA-256 of the verifier (43 characters)")]
    Challenge,
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Checks a challenge and its method (absent method means `plain`, refused).
pub fn check_challenge(challenge: &str, method: Option<&str>) -> Result<(), PkceError> {
    if method != Some("S256") {
        return Err(PkceError::Method);
    }
    let ok = challenge.len() == 43
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(PkceError::Challenge)
    }
}

/// Whether `verifier` matches `challenge` (S256), in constant time.
pub fn verify(verifier: &str, challenge: &str) -> bool {
    if !(43..=128).contains(&verifier.len()) || !verifier.bytes().all(unreserved) {
        return false;
    }
    let computed = b64(digest(&SHA256, verifier.as_bytes()).as_ref());
    verify_slices_are_equal(computed.as_bytes(), challenge.as_bytes()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(check_challenge(challenge, Some("S256")).is_ok());
        assert!(verify(verifier, challenge));
    }

    #[test]
    fn attacks_are_refused() {
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert_eq!(
            check_challenge(challenge, Some("plain")),
            Err(PkceError::Method)
        );
        assert_eq!(
            check_challenge(challenge, None),
            Err(PkceError::Method),
            "absent method means plain"
        );
        assert_eq!(
            check_challenge("short", Some("S256")),
            Err(PkceError::Challenge)
        );
        assert_eq!(
            check_challenge(&format!("{}=", &challenge[..42]), Some("S256")),
            Err(PkceError::Challenge)
        );
        // the challenge itself is not a verifier; near misses and junk fail
        assert!(!verify(challenge, challenge));
        assert!(!verify(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXj",
            challenge
        ));
        assert!(!verify("short", challenge));
        assert!(!verify(&"a".repeat(129), challenge));
        assert!(!verify(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjX k",
            challenge
        ));
    }
}

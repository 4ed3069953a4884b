//! The key-encryption key: AES-256-GCM over stored secrets (signing keys, upstream
//! client secrets, SMTP credentials), with the record's id as associated data so a
//! ciphertext cannot be moved to another record. A second key derived from it (HKDF)
//! keys the fast hash of client secrets.
//!
//! It comes from `GATEHOUSE_KEY_ENCRYPTION_KEY` or the file `<keys_dir>/kek`, which is
//! generated (mode 0600) only when the store holds no keys yet.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::{hkdf, hmac};

use super::{b64, random_bytes, unb64};
use crate::config::Config;

/// The key-encryption key and the secret-hashing key derived from it.
pub struct Kek {
    aead: LessSafeKey,
    secret_key: hmac::Key,
    csrf_key: hmac::Key,
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Kek([redacted])")
    }
}

/// A ciphertext that this key cannot open.
#[derive(Debug, thiserror::Error)]
#[error("cannot decrypt with this key-encryption key")]
pub struct OpenError;

struct HkdfLen(usize);
impl hkdf::KeyType for HkdfLen {
    fn len(&self) -> usize {
        self.0
    }
}

impl Kek {
    /// Builds the key from 32 raw bytes.
    pub fn from_bytes(raw: &[u8; 32]) -> Kek {
        // Both constructions accept any 32-byte key.
        let unbound = UnboundKey::new(&AES_256_GCM, raw).expect("32-byte AES key");
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"gatehouse").extract(raw);
        let derive = |info: &[u8]| {
            let mut derived = [0u8; 32];
            prk.expand(&[info], HkdfLen(32))
                .and_then(|okm| okm.fill(&mut derived))
                .expect("HKDF output of 32 bytes");
            hmac::Key::new(hmac::HMAC_SHA256, &derived)
        };
        Kek {
            aead: LessSafeKey::new(unbound),
            secret_key: derive(b"client-secret-hash"),
            csrf_key: derive(b"csrf-token"),
        }
    }

    /// Parses the base64url text form.
    pub fn from_text(text: &str) -> Option<Kek> {
        let raw: [u8; 32] = unb64(text)?.try_into().ok()?;
        Some(Kek::from_bytes(&raw))
    }

    /// A new random key and its text form.
    pub fn generate() -> (Kek, String) {
        let raw = random_bytes::<32>();
        (Kek::from_bytes(&raw), b64(&raw))
    }

    /// Encrypts `plaintext` bound to `record_id`.
    pub fn seal(&self, record_id: &str, plaintext: &[u8]) -> String {
        let nonce_bytes = random_bytes::<NONCE_LEN>();
        let mut buf = plaintext.to_vec();
        self.aead
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::from(record_id.as_bytes()),
                &mut buf,
            )
            .expect("AES-GCM seal of a bounded buffer");
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&buf);
        b64(&out)
    }

    /// Decrypts what [`Kek::seal`] made for the same `record_id`.
    pub fn open(&self, record_id: &str, sealed: &str) -> Result<Vec<u8>, OpenError> {
        let raw = unb64(sealed).ok_or(OpenError)?;
        if raw.len() < NONCE_LEN {
            return Err(OpenError);
        }
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| OpenError)?;
        let mut buf = ct.to_vec();
        let plain = self
            .aead
            .open_in_place(nonce, Aad::from(record_id.as_bytes()), &mut buf)
            .map_err(|_| OpenError)?;
        Ok(plain.to_vec())
    }

    /// The key of the fast keyed hash of client secrets.
    pub fn secret_key(&self) -> &hmac::Key {
        &self.secret_key
    }

    /// The key that binds CSRF tokens to a browser.
    pub fn csrf_key(&self) -> &hmac::Key {
        &self.csrf_key
    }
}

/// Path of the key file inside the keys directory.
pub fn kek_path(config: &Config) -> PathBuf {
    config.keys_dir.join("kek")
}

/// Loads the key-encryption key, or generates and saves one when `store_has_keys` is
/// false and none is configured. Errors name the setting to fix.
pub fn load_or_create(config: &Config, store_has_keys: bool) -> Result<Kek, String> {
    if let Some(secret) = &config.key_encryption_key {
        return Kek::from_text(&secret.0).ok_or_else(|| {
            "GATEHOUSE_KEY_ENCRYPTION_KEY: expected 32 bytes in base64url (43 characters)".into()
        });
    }
    let path = kek_path(config);
    match std::fs::read_to_string(&path) {
        Ok(text) => Kek::from_text(&text).ok_or_else(|| {
            format!(
                "GATEHOUSE_KEYS_DIR: {} is not a key-encryption key (32 bytes in base64url)",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !store_has_keys => {
            let (kek, text) = Kek::generate();
            write_new(&path, &text)
                .map_err(|e| format!("GATEHOUSE_KEYS_DIR: cannot write {}: {e}", path.display()))?;
            tracing::info!(path = %path.display(), "generated a key-encryption key");
            // Another process may have won the race to create it: use whatever is there.
            let saved = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
            Ok(Kek::from_text(&saved).unwrap_or(kek))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
            "GATEHOUSE_KEY_ENCRYPTION_KEY: the store holds signing keys, but no key-encryption key \
             is set and {} does not exist",
            path.display()
        )),
        Err(e) => Err(format!(
            "GATEHOUSE_KEYS_DIR: cannot read {}: {e}",
            path.display()
        )),
    }
}

/// Creates `path` with mode 0600, never overwriting an existing file.
fn write_new(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(mut f) => {
            f.write_all(text.as_bytes())?;
            f.write_all(b"\n")?;
            f.sync_all()
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_and_open_round_trip() {
        let (kek, _) = Kek::generate();
        let sealed = kek.seal("kid-1", b"private");
        assert_eq!(kek.open("kid-1", &sealed).expect("opens"), b"private");
    }

    #[test]
    fn attacks_on_ciphertexts_fail() {
        let (kek, _) = Kek::generate();
        let (other, _) = Kek::generate();
        let sealed = kek.seal("kid-1", b"private");
        // another record's id as associated data
        assert!(kek.open("kid-2", &sealed).is_err());
        // another key
        assert!(other.open("kid-1", &sealed).is_err());
        // a flipped bit
        let mut raw = unb64(&sealed).expect("b64");
        raw[NONCE_LEN] ^= 1;
        assert!(kek.open("kid-1", &b64(&raw)).is_err());
        // truncated and garbage input
        assert!(kek.open("kid-1", &sealed[..8]).is_err());
        assert!(kek.open("kid-1", "%%%").is_err());
    }

    #[test]
    fn text_form_round_trips_and_rejects_bad_lengths() {
        let (_, text) = Kek::generate();
        assert!(Kek::from_text(&text).is_some());
        assert!(Kek::from_text("c2hvcnQ").is_none());
    }
}

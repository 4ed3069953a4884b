//! Password hashing with argon2id at OWASP's current parameters (19 MiB, t=2, p=1),
//! off the async threads and never more at once than there are cores, so a burst of
//! logins queues instead of exhausting memory.

use std::sync::Arc;

use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, PasswordVerifier as _, Version};
use tokio::sync::Semaphore;

/// Memory cost in KiB (OWASP: 19 MiB).
pub const MEMORY_KIB: u32 = 19_456;
/// Iterations (OWASP: 2).
pub const ITERATIONS: u32 = 2;
/// Lanes (OWASP: 1).
pub const PARALLELISM: u32 = 1;

/// Why hashing failed.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// The password is unusable (too long for the hasher).
    #[error("password rejected: {0}")]
    Rejected(String),
    /// The worker pool is gone (shutdown).
    #[error("password hashing unavailable")]
    Unavailable,
}

fn argon2() -> Argon2<'static> {
    let params =
        Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None).expect("valid argon2 params");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes and verifies passwords with bounded concurrency. Clones share the bound.
#[derive(Clone)]
pub struct Passwords {
    permits: Arc<Semaphore>,
    /// Verified when the account is unknown, so that its cost is the same.
    dummy: Arc<String>,
}

impl Default for Passwords {
    fn default() -> Self {
        Self::new()
    }
}

impl Passwords {
    /// A hasher allowing one hash per core at a time.
    pub fn new() -> Passwords {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        Passwords {
            permits: Arc::new(Semaphore::new(cores)),
            dummy: Arc::new(hash_blocking("not a real password").unwrap_or_default()),
        }
    }

    /// Hashes a password into a PHC string.
    pub async fn hash(&self, password: String) -> Result<String, PasswordError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| PasswordError::Unavailable)?;
        tokio::task::spawn_blocking(move || hash_blocking(&password))
            .await
            .map_err(|_| PasswordError::Unavailable)?
    }

    /// Verifies `password` against `hash`; with no hash (unknown account, or no
    /// password set) it spends the same time and answers false.
    pub async fn verify(&self, password: String, hash: Option<String>) -> bool {
        let Ok(_permit) = self.permits.acquire().await else {
            return false;
        };
        let (hash, real) = match hash {
            Some(h) => (h, true),
            None => ((*self.dummy).clone(), false),
        };
        tokio::task::spawn_blocking(move || {
            argon2()
                .verify_password(password.as_bytes(), hash.as_str())
                .is_ok()
                && real
        })
        .await
        .unwrap_or(false)
    }
}

/// Hashes on the current thread; for commands outside the server.
pub fn hash_blocking(password: &str) -> Result<String, PasswordError> {
    let salt = super::random_bytes::<16>();
    argon2()
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Rejected(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_wrong_passwords_fail() {
        let p = Passwords::new();
        let h = p.hash("correct horse".into()).await.expect("hash");
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(p.verify("correct horse".into(), Some(h.clone())).await);
        assert!(!p.verify("Correct horse".into(), Some(h)).await);
        assert!(!p.verify("not a real password".into(), None).await);
        assert!(!p.verify("x".into(), Some("garbage".into())).await);
    }
}

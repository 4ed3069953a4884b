//! Growing delays after repeated authentication failures, counted per subject (an
//! account or a client id) and per client address in short-lived state, so the
//! counts hold across nodes when Redis is configured. The first few failures in a
//! window cost nothing; each further one doubles the delay up to a ceiling. A
//! success clears the subject's count; the address count runs out with its window.

use std::time::Duration;

use crate::ephemeral::{EphemeralStore, Result};

/// How long failures are remembered.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Failures in a window that cost nothing.
pub const FREE: u64 = 3;
/// The first delay after the free ones.
pub const BASE: Duration = Duration::from_millis(250);
/// The longest delay.
pub const CEILING: Duration = Duration::from_secs(8);

/// The delay owed after `failures` failures in the window.
pub fn delay(failures: u64) -> Duration {
    if failures <= FREE {
        return Duration::ZERO;
    }
    let doublings = (failures - FREE - 1).min(16) as u32;
    BASE.saturating_mul(2u32.saturating_pow(doublings))
        .min(CEILING)
}

fn key(kind: &str, value: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, value.as_bytes());
    format!(
        "auth-fail:{kind}:{}",
        crate::crypto::b64(&digest.as_ref()[..16])
    )
}

async fn count<S: EphemeralStore>(store: &S, key: &str) -> Result<u64> {
    Ok(store
        .get(key)
        .await?
        .and_then(|v| std::str::from_utf8(&v).ok().and_then(|s| s.parse().ok()))
        .unwrap_or(0))
}

/// The delay owed before answering an attempt by `subject` (when counted per
/// subject) from `addr`: the larger of the two counts decides.
pub async fn owed<S: EphemeralStore>(
    store: &S,
    subject: Option<&str>,
    addr: &str,
) -> Result<Duration> {
    let by_subject = match subject {
        Some(s) => count(store, &key("subject", s)).await?,
        None => 0,
    };
    let by_addr = count(store, &key("addr", addr)).await?;
    Ok(delay(by_subject.max(by_addr)))
}

/// The attempts counted for a subject in the current window.
pub async fn failures<S: EphemeralStore>(store: &S, subject: &str) -> Result<u64> {
    count(store, &key("subject", subject)).await
}

/// Counts an attempt by `subject` before its credentials are checked, and returns
/// the attempts now counted (this one included). Counting first means parallel
/// attempts cannot all pass a check made before any of them failed; a success
/// clears the count ([`succeeded`]).
pub async fn attempt<S: EphemeralStore>(store: &S, subject: &str) -> Result<u64> {
    store.incr(&key("subject", subject), WINDOW).await
}

/// Records a failure; returns the failures now counted for the subject (0 when not
/// counted per subject) and the address.
pub async fn failed<S: EphemeralStore>(
    store: &S,
    subject: Option<&str>,
    addr: &str,
) -> Result<(u64, u64)> {
    let s = match subject {
        Some(s) => store.incr(&key("subject", s), WINDOW).await?,
        None => 0,
    };
    let a = store.incr(&key("addr", addr), WINDOW).await?;
    Ok((s, a))
}

/// Clears the subject's failures after a success.
pub async fn succeeded<S: EphemeralStore>(store: &S, subject: &str) -> Result<()> {
    store.delete(&key("subject", subject)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ephemeral::MemoryStore;

    #[test]
    fn delays_grow_then_stop_growing() {
        let got: Vec<u64> = (0..12).map(|n| delay(n).as_millis() as u64).collect();
        assert_eq!(
            got,
            vec![0, 0, 0, 0, 250, 500, 1000, 2000, 4000, 8000, 8000, 8000]
        );
        assert_eq!(delay(u64::MAX), CEILING);
    }

    #[tokio::test(start_paused = true)]
    async fn counts_per_subject_and_address_and_expire() {
        let s = MemoryStore::new();
        for _ in 0..5 {
            failed(&s, Some("alice@example.com"), "203.0.113.9")
                .await
                .expect("fail");
        }
        assert_eq!(
            owed(&s, Some("alice@example.com"), "198.51.100.1")
                .await
                .expect("owed"),
            Duration::from_millis(500),
            "per account"
        );
        assert_eq!(
            owed(&s, Some("bob@example.com"), "203.0.113.9")
                .await
                .expect("owed"),
            Duration::from_millis(500),
            "per address"
        );
        assert_eq!(
            owed(&s, Some("bob@example.com"), "198.51.100.1")
                .await
                .expect("owed"),
            Duration::ZERO
        );
        succeeded(&s, "alice@example.com").await.expect("ok");
        assert_eq!(
            owed(&s, Some("alice@example.com"), "198.51.100.1")
                .await
                .expect("owed"),
            Duration::ZERO
        );
        assert_eq!(
            owed(&s, Some("alice@example.com"), "203.0.113.9")
                .await
                .expect("owed"),
            Duration::from_millis(500),
            "the address still counts"
        );
        assert_eq!(
            owed(&s, None, "198.51.100.1").await.expect("owed"),
            Duration::ZERO,
            "address only"
        );
        tokio::time::advance(WINDOW + Duration::from_secs(1)).await;
        assert_eq!(
            owed(&s, Some("carol@example.com"), "203.0.113.9")
                .await
                .expect("owed"),
            Duration::ZERO,
            "the window ends"
        );
    }
}

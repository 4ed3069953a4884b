//! Outgoing mail (verification, password reset, invitations): over SMTP through
//! lettre when `smtp_url` is set, otherwise into files in `<data_dir>/outbox`, one
//! RFC 5322 message per file, so a fresh instance works without a mail server.
//!
//! Mail is sent in the background: an answer never waits for (or reveals, by its
//! timing) whether a message went out.

use std::path::PathBuf;

use lettre::message::{Mailbox, header::ContentType};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::Config;

/// A message to one recipient.
#[derive(Clone, Debug)]
pub struct Mail {
    /// The recipient's address.
    pub to: String,
    /// The subject.
    pub subject: String,
    /// The plain-text body.
    pub text: String,
}

/// Where mail goes.
#[derive(Clone)]
pub enum Mailer {
    /// Files in a directory.
    Outbox(PathBuf),
    /// An SMTP relay.
    Smtp(Box<AsyncSmtpTransport<Tokio1Executor>>),
}

/// Why a message was not sent.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The message could not be built (bad address).
    #[error("message not built: {0}")]
    Build(String),
    /// The relay or the outbox refused it.
    #[error("message not sent: {0}")]
    Send(String),
}

impl Mailer {
    /// The mailer the configuration names.
    pub fn from_config(config: &Config) -> Result<Mailer, String> {
        match &config.smtp_url {
            Some(url) => smtp(&url.0)
                .map(|t| Mailer::Smtp(Box::new(t)))
                .map_err(|e| format!("GATEHOUSE_SMTP_URL: {e}")),
            None => Ok(Mailer::Outbox(config.data_dir.join("outbox"))),
        }
    }

    /// Sends `mail` from `from` now.
    pub async fn send(&self, from: &Mailbox, mail: &Mail) -> Result<(), MailError> {
        let to: Mailbox = mail
            .to
            .parse()
            .map_err(|e: lettre::address::AddressError| MailError::Build(e.to_string()))?;
        let message = Message::builder()
            .from(from.clone())
            .to(to)
            .subject(mail.subject.clone())
            .header(ContentType::TEXT_PLAIN)
            // Lines over 76 characters (links) are folded by quoted-printable.
            .body(mail.text.clone())
            .map_err(|e| MailError::Build(e.to_string()))?;
        match self {
            Mailer::Smtp(t) => t
                .send(message)
                .await
                .map(|_| ())
                .map_err(|e| MailError::Send(e.to_string())),
            Mailer::Outbox(dir) => {
                let dir = dir.clone();
                let bytes = message.formatted();
                tokio::task::spawn_blocking(move || write_private(&dir, &bytes))
                    .await
                    .map_err(|e| MailError::Send(e.to_string()))?
                    .map_err(|e| MailError::Send(e.to_string()))
            }
        }
    }

    /// Sends in the background; failures are logged (without the message).
    pub fn send_later(&self, from: Mailbox, mail: Mail) {
        let mailer = self.clone();
        tokio::spawn(async move {
            if let Err(e) = mailer.send(&from, &mail).await {
                tracing::error!(error = %e, subject = %mail.subject, "mail not sent");
            }
        });
    }
}

/// The SMTP transport a URL names: `smtps://` is TLS from the start (port 465 by
/// default); `smtp://` requires STARTTLS (port 587) unless `?tls=none`, which is
/// allowed only towards a relay on loopback. Credentials come from the URL's
/// userinfo.
fn smtp(text: &str) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    let url = url::Url::parse(text).map_err(|e| format!("not a URL: {e}"))?;
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or("the URL names no host")?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let mut tls = None;
    for (k, v) in url.query_pairs() {
        match (k.as_ref(), v.as_ref()) {
            ("tls", "none" | "required") => tls = Some(v.into_owned()),
            _ => {
                return Err(format!(
                    "unknown parameter {k}={v} (only tls=none or tls=required)"
                ));
            }
        }
    }
    let builder = match (url.scheme(), tls.as_deref()) {
        ("smtps", None | Some("required")) => AsyncSmtpTransport::<Tokio1Executor>::relay(&host)
            .map_err(|e| e.to_string())?
            .port(url.port().unwrap_or(465)),
        ("smtp", None | Some("required")) => {
            AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&host)
                .map_err(|e| e.to_string())?
                .port(url.port().unwrap_or(587))
        }
        ("smtp", Some(_)) => {
            let loopback = host == "localhost"
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|a| a.is_loopback());
            if !loopback {
                return Err("tls=none is allowed only for a relay on loopback".into());
            }
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&host)
                .port(url.port().unwrap_or(25))
        }
        (scheme, _) => return Err(format!("scheme {scheme}: use smtp:// or smtps://")),
    };
    let builder = if url.username().is_empty() {
        builder
    } else {
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        builder.credentials(lettre::transport::smtp::authentication::Credentials::new(
            decode(url.username()),
            decode(url.password().unwrap_or("")),
        ))
    };
    Ok(builder.build())
}

/// Writes one message into the outbox, readable by the owner only.
fn write_private(dir: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{}.eml", uuid::Uuid::now_v7()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn smtp_urls_are_checked() {
        for ok in [
            "smtp://relay.example",
            "smtp://user:p%40ss@relay.example:2525",
            "smtps://relay.example",
            "smtp://127.0.0.1:2525?tls=none",
            "smtp://localhost?tls=none",
            "smtp://relay.example?tls=required",
        ] {
            assert!(smtp(ok).is_ok(), "{ok}");
        }
        for bad in [
            "smtp://relay.example?tls=none",
            "smtp://relay.example?tls=opportunistic",
            "http://relay.example",
            "smtp://",
            "not a url",
        ] {
            assert!(smtp(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn the_outbox_keeps_one_private_message_per_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let m = Mailer::Outbox(dir.path().join("outbox"));
        let from: Mailbox = "gatehouse <noreply@localhost>".parse().expect("from");
        m.send(
            &from,
            &Mail {
                to: "alice@example.com".into(),
                subject: "Reset".into(),
                text: format!("https://id.example/reset/confirm?token={}", "a".repeat(120)),
            },
        )
        .await
        .expect("sent");
        let files: Vec<_> = std::fs::read_dir(dir.path().join("outbox"))
            .expect("outbox")
            .collect();
        assert_eq!(files.len(), 1);
        let path = files[0].as_ref().expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.contains("To: alice@example.com"), "{text}");
        assert!(text.contains("Subject: Reset"));
        // quoted-printable: soft line breaks and `=3D` for `=`
        let body = text.replace("=\r\n", "").replace("=3D", "=");
        assert!(
            body.contains(&format!("token={}", "a".repeat(120))),
            "{text}"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let bad = m
            .send(
                &from,
                &Mail {
                    to: "not an address".into(),
                    subject: "x".into(),
                    text: "x".into(),
                },
            )
            .await;
        assert!(matches!(bad, Err(MailError::Build(_))));
    }
}

//! Which account a verified upstream identity is (DESIGN.md section 5), decided from
//! what the store holds, without side effects:
//!
//! 1. the identity linked by (issuer, subject), always;
//! 2. else the account with the asserted address, only when the upstream says
//!    `email_verified` and the provider is trusted for email; never onto an
//!    unverified account, and never onto one holding instance-level roles (the
//!    person links from their account page after signing in with their password);
//! 3. else a new account, when the provider provisions (its address must be
//!    verified by a trusted provider, or it could pre-claim somebody else's);
//! 4. else the login is refused, with a page that says why.

use crate::config::ProviderConfig;
use crate::store::iam::UserRow;

/// What the upstream asserted in its verified ID token (and userinfo).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Asserted {
    /// The upstream's issuer.
    pub issuer: String,
    /// The person's `sub` there.
    pub subject: String,
    /// Their address, normalized, if given.
    pub email: Option<String>,
    /// Whether the upstream says it verified the address.
    pub email_verified: bool,
    /// Their name, if given.
    pub name: Option<String>,
    /// The values of the provider's groups claim.
    pub groups: Vec<String>,
}

/// The account an address belongs to, as far as matching cares.
#[derive(Clone, Debug)]
pub struct ByEmail<'a> {
    /// The account.
    pub user: &'a UserRow,
    /// Whether it holds a role at the instance root, itself or through a group.
    pub instance_roles: bool,
}

/// Why a login is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The matched account is disabled.
    Disabled,
    /// The matched account's address is not verified.
    Unverified,
    /// Linking by address would reach an account with instance-level roles.
    NeedsPassword,
    /// The address has an account, but the provider is not trusted for it (or did
    /// not verify it): the person links from their account page instead.
    AddressTaken,
    /// Provisioning needs an address the upstream did not give.
    NoEmail,
    /// Provisioning needs an address a trusted provider verified.
    EmailNotVerified,
    /// No account matches and the provider does not provision.
    NoAccount,
}

/// What to do with a verified upstream identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Log in as the linked account.
    Linked(String),
    /// Link the identity to this account (matched by address), then log in.
    LinkByEmail(String),
    /// Create an account for it, link, and log in.
    Provision,
    /// Refuse.
    Refuse(Refusal),
}

/// Decides, given the account linked to the identity and the one holding the
/// asserted address.
pub fn decide(
    provider: &ProviderConfig,
    asserted: &Asserted,
    linked: Option<&UserRow>,
    by_email: Option<ByEmail<'_>>,
) -> Decision {
    let usable = |u: &UserRow| {
        if u.disabled {
            Err(Refusal::Disabled)
        } else if !u.email_verified {
            Err(Refusal::Unverified)
        } else {
            Ok(())
        }
    };
    if let Some(u) = linked {
        return match usable(u) {
            Ok(()) => Decision::Linked(u.id.clone()),
            Err(r) => Decision::Refuse(r),
        };
    }
    let trusted = provider.trust_email && asserted.email_verified && asserted.email.is_some();
    match by_email {
        Some(found) if trusted => match usable(found.user) {
            Err(r) => Decision::Refuse(r),
            Ok(()) if found.instance_roles => Decision::Refuse(Refusal::NeedsPassword),
            Ok(()) => Decision::LinkByEmail(found.user.id.clone()),
        },
        Some(_) => Decision::Refuse(Refusal::AddressTaken),
        None if !provider.provision => Decision::Refuse(Refusal::NoAccount),
        None if asserted.email.is_none() => Decision::Refuse(Refusal::NoEmail),
        None if !trusted => Decision::Refuse(Refusal::EmailNotVerified),
        None => Decision::Provision,
    }
}

/// The page's words for a refusal: (title, message, hint).
pub fn words(r: Refusal, provider: &str) -> (String, String, String) {
    let (title, message, hint) = match r {
        Refusal::Disabled => (
            "This account is disabled",
            "An administrator has disabled the account this identity belongs to.".to_owned(),
            "If you think this is a mistake, contact your organization's administrator.",
        ),
        Refusal::Unverified => (
            "Verify your email address first",
            "The account with this address has not been verified yet, so no identity is \
             linked to it."
                .to_owned(),
            "Open the verification link we sent to your email address, then try again.",
        ),
        Refusal::NeedsPassword => (
            "Sign in with your password to link this account",
            format!(
                "An account with this address holds instance-wide roles, so {provider} is \
                 not linked to it automatically."
            ),
            "Sign in with your password, then link the provider from your account page.",
        ),
        Refusal::AddressTaken => (
            "An account with this address exists",
            format!("{provider} is not linked to it, and cannot be linked automatically."),
            "Sign in with your password, then link the provider from your account page.",
        ),
        Refusal::NoEmail => (
            "No email address was shared",
            format!("{provider} did not share an email address, which a new account needs."),
            "Allow the email address to be shared with this application, then try again.",
        ),
        Refusal::EmailNotVerified => (
            "Your email address is not verified",
            format!(
                "{provider} did not confirm your email address in a way this instance \
                 trusts, so no account is created for it."
            ),
            "Ask your administrator for an invitation, or sign up with your email address.",
        ),
        Refusal::NoAccount => (
            "No account is linked to this identity",
            format!("This instance does not create accounts for new {provider} identities."),
            "Ask your administrator for an invitation, or sign in with your password and \
             link the provider from your account page.",
        ),
    };
    (title.to_owned(), message, hint.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn provider(trust_email: bool, provision: bool) -> ProviderConfig {
        ProviderConfig {
            id: "corp".into(),
            display_name: "Corp".into(),
            issuer: "https://idp.example".into(),
            client_id: "gh".into(),
            client_secret: Secret("s".into()),
            scopes: vec!["openid".into()],
            trust_email,
            provision,
            groups_claim: None,
            group_mappings: Vec::new(),
        }
    }

    fn user(id: &str, verified: bool, disabled: bool) -> UserRow {
        UserRow {
            id: id.into(),
            email: "ada@example.com".into(),
            display_name: "Ada".into(),
            password_hash: None,
            email_verified: verified,
            disabled,
        }
    }

    fn asserted(email_verified: bool) -> Asserted {
        Asserted {
            issuer: "https://idp.example".into(),
            subject: "s-1".into(),
            email: Some("ada@example.com".into()),
            email_verified,
            ..Asserted::default()
        }
    }

    fn by(u: &UserRow, instance_roles: bool) -> Option<ByEmail<'_>> {
        Some(ByEmail {
            user: u,
            instance_roles,
        })
    }

    #[test]
    fn the_linked_identity_wins_whatever_the_address_says() {
        let linked = user("u1", true, false);
        let other = user("u2", true, false);
        let d = decide(
            &provider(true, true),
            &asserted(true),
            Some(&linked),
            by(&other, false),
        );
        assert_eq!(d, Decision::Linked("u1".into()));
        // ... even from an untrusted provider with an unverified address
        let d = decide(
            &provider(false, false),
            &asserted(false),
            Some(&linked),
            None,
        );
        assert_eq!(d, Decision::Linked("u1".into()));
    }

    #[test]
    fn a_linked_account_that_is_disabled_or_unverified_does_not_log_in() {
        let disabled = user("u1", true, true);
        let d = decide(
            &provider(true, true),
            &asserted(true),
            Some(&disabled),
            None,
        );
        assert_eq!(d, Decision::Refuse(Refusal::Disabled));
        let unverified = user("u1", false, false);
        let d = decide(
            &provider(true, true),
            &asserted(true),
            Some(&unverified),
            None,
        );
        assert_eq!(d, Decision::Refuse(Refusal::Unverified));
    }

    #[test]
    fn links_by_address_only_when_verified_upstream_and_trusted() {
        let u = user("u1", true, false);
        let p = provider(true, false);
        assert_eq!(
            decide(&p, &asserted(true), None, by(&u, false)),
            Decision::LinkByEmail("u1".into())
        );
        // the upstream did not verify it
        assert_eq!(
            decide(&p, &asserted(false), None, by(&u, false)),
            Decision::Refuse(Refusal::AddressTaken)
        );
        // the provider is not trusted for email (provisioning does not take over)
        assert_eq!(
            decide(&provider(false, true), &asserted(true), None, by(&u, false)),
            Decision::Refuse(Refusal::AddressTaken)
        );
    }

    #[test]
    fn never_links_onto_an_unverified_account_or_one_with_instance_roles() {
        let unverified = user("u1", false, false);
        let p = provider(true, true);
        assert_eq!(
            decide(&p, &asserted(true), None, by(&unverified, false)),
            Decision::Refuse(Refusal::Unverified)
        );
        let admin = user("u2", true, false);
        assert_eq!(
            decide(&p, &asserted(true), None, by(&admin, true)),
            Decision::Refuse(Refusal::NeedsPassword)
        );
        let disabled = user("u3", true, true);
        assert_eq!(
            decide(&p, &asserted(true), None, by(&disabled, false)),
            Decision::Refuse(Refusal::Disabled)
        );
    }

    #[test]
    fn provisions_only_when_allowed_and_with_a_trusted_verified_address() {
        assert_eq!(
            decide(&provider(true, true), &asserted(true), None, None),
            Decision::Provision
        );
        assert_eq!(
            decide(&provider(true, false), &asserted(true), None, None),
            Decision::Refuse(Refusal::NoAccount)
        );
        assert_eq!(
            decide(&provider(true, true), &asserted(false), None, None),
            Decision::Refuse(Refusal::EmailNotVerified)
        );
        assert_eq!(
            decide(&provider(false, true), &asserted(true), None, None),
            Decision::Refuse(Refusal::EmailNotVerified)
        );
        let mut no_email = asserted(true);
        no_email.email = None;
        assert_eq!(
            decide(&provider(true, true), &no_email, None, None),
            Decision::Refuse(Refusal::NoEmail)
        );
    }
}

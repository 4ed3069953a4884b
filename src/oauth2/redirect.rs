//! Redirect URIs: registration rules and matching (RFC 6749 section 3.1.2, RFC 8252
//! sections 7.1 and 7.3, OAuth 2.0 Security BCP). A requested redirect URI must equal
//! a registered one exactly, except that a registered loopback URI of a native app
//! (`http://127.0.0.1/...` or `http://[::1]/...`) matches on any port.

use url::Url;

/// Why a URI cannot be registered.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RedirectError(pub String);

fn is_loopback_ip(u: &Url) -> bool {
    match u.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        _ => false,
    }
}

/// Checks a redirect URI for registration: https; http only on a loopback IP
/// literal or `localhost`; or a private-use scheme of a native app (reverse domain
/// name, RFC 8252 section 7.1). Never a fragment, never userinfo.
pub fn check_registration(uri: &str) -> Result<(), RedirectError> {
    let u = Url::parse(uri)
        .map_err(|e| RedirectError(format!("{uri:?} is not an absolute URI: {e}")))?;
    if u.fragment().is_some() {
        return Err(RedirectError(format!("{uri:?} must not have a fragment")));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(RedirectError(format!("{uri:?} must not carry credentials")));
    }
    match u.scheme() {
        "https" if u.host().is_some() => Ok(()),
        "http" if is_loopback_ip(&u) || u.host_str() == Some("localhost") => Ok(()),
        "http" | "https" => Err(RedirectError(format!(
            "{uri:?}: http is allowed only on loopback"
        ))),
        s if s.contains('.') && !matches!(s, "javascript" | "data" | "file" | "vbscript") => Ok(()),
        s => Err(RedirectError(format!(
            "{uri:?}: scheme {s} is neither https, loopback http nor a private-use scheme (reverse domain name)"
        ))),
    }
}

/// Whether `requested` matches one of `registered`.
pub fn matches(registered: &[String], requested: &str) -> bool {
    if registered.iter().any(|r| r == requested) {
        return true;
    }
    let Ok(req) = Url::parse(requested) else {
        return false;
    };
    if req.scheme() != "http" || !is_loopback_ip(&req) {
        return false;
    }
    registered.iter().any(|r| {
        let Ok(mut reg) = Url::parse(r) else {
            return false;
        };
        if reg.scheme() != "http" || !is_loopback_ip(&reg) || reg.host() != req.host() {
            return false;
        }
        // same URI but for the port
        let mut req = req.clone();
        let _ = reg.set_port(None);
        let _ = req.set_port(None);
        reg == req
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_rules() {
        for ok in [
            "https://app.example/callback",
            "http://127.0.0.1/callback",
            "http://[::1]:8080/cb",
            "http://localhost:3000/cb",
            "com.example.app:/oauth2redirect",
        ] {
            assert!(check_registration(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://app.example/callback",
            "https://app.example/cb#frag",
            "https://user:pw@app.example/cb",
            "javascript:alert(1)",
            "data:text/html,x",
            "myapp:/cb",
            "/relative",
            "",
        ] {
            assert!(check_registration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn exact_match_except_loopback_ports() {
        let reg = vec![
            "https://app.example/callback".to_string(),
            "http://127.0.0.1/callback".to_string(),
            "http://localhost:3000/cb".to_string(),
        ];
        let cases = [
            ("https://app.example/callback", true),
            ("https://app.example/callback/", false),
            ("https://app.example/callback?x=1", false),
            ("https://APP.example/callback", false),
            ("https://app.example.evil/callback", false),
            ("https://app.example:443/callback", false),
            ("http://127.0.0.1:51234/callback", true),
            ("http://127.0.0.1/callback", true),
            ("http://127.0.0.1:51234/other", false),
            ("http://127.0.0.1:51234/callback?x=1", false),
            ("http://[::1]:51234/callback", false),
            ("http://localhost:3000/cb", true),
            ("http://localhost:3001/cb", false),
            ("http://127.0.0.2:1/callback", false),
            ("not a uri", false),
        ];
        for (uri, want) in cases {
            assert_eq!(matches(&reg, uri), want, "{uri}");
        }
    }
}

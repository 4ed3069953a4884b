//! The authorization request (RFC 6749 section 4.1.1, OpenID Connect Core 3.1.2.1),
//! checked as a pipeline of small steps. The client and its redirect URI are
//! checked first: until both are verified an error is shown on gatehouse's own page,
//! never redirected (RFC 6749 section 4.1.2.1); after that, errors go back to the
//! client with `state` and `iss` (RFC 9207).

use url::Url;

use super::OAuthError;
use super::token::Form;
use super::{pkce, redirect};
use crate::store::iam::ClientRow;

/// What the user must be asked, from `prompt`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Prompt {
    /// `none`: no page may be shown; fail with `login_required` or `consent_required`.
    pub none: bool,
    /// `login`: authenticate again even with a session.
    pub login: bool,
    /// `consent`: ask for consent again.
    pub consent: bool,
}

/// A checked authorization request.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuthorizeRequest {
    /// The client.
    pub client_id: String,
    /// The verified redirect URI.
    pub redirect_uri: String,
    /// Requested scopes, in order, without duplicates.
    pub scopes: Vec<String>,
    /// Opaque client state, returned as is.
    pub state: Option<String>,
    /// Goes into the ID token.
    pub nonce: Option<String>,
    /// The PKCE challenge (S256), if any.
    pub code_challenge: Option<String>,
    /// From `prompt`.
    pub prompt: Prompt,
    /// Maximum authentication age in seconds.
    pub max_age: Option<u64>,
    /// A hint for the login form's email field.
    pub login_hint: Option<String>,
    /// The API asked for (RFC 8707), checked later against the registered ones.
    pub resource: Option<String>,
}

/// Why an authorization request fails, and where the user learns of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthorizeError {
    /// The client or redirect URI is not verified: shown on gatehouse's error page.
    Page(String),
    /// Sent back to the verified redirect URI.
    Redirect {
        /// Where to.
        redirect_uri: String,
        /// The client's state.
        state: Option<String>,
        /// The error.
        error: OAuthError,
    },
}

impl AuthorizeError {
    /// The URL to redirect to with the error, for [`AuthorizeError::Redirect`].
    pub fn location(&self, issuer: &str) -> Option<String> {
        let AuthorizeError::Redirect {
            redirect_uri,
            state,
            error,
        } = self
        else {
            return None;
        };
        let mut u = Url::parse(redirect_uri).ok()?;
        {
            let mut q = u.query_pairs_mut();
            q.append_pair("error", error.code);
            q.append_pair("error_description", &error.description);
            if let Some(s) = state {
                q.append_pair("state", s);
            }
            q.append_pair("iss", issuer);
        }
        Some(u.to_string())
    }
}

/// The longest value of a parameter that is stored with the request or echoed back.
pub const MAX_VALUE: usize = 1024;

/// Scopes an authorization request may carry.
fn known_scope(s: &str) -> bool {
    matches!(
        s,
        "openid" | "profile" | "email" | "offline_access" | "roles"
    ) || s.strip_prefix("roles:").is_some_and(|n| !n.is_empty())
}

/// Checks an authorization request for `client` (`None`: the client id is unknown).
pub fn check(
    params: &Form,
    client: Option<&ClientRow>,
) -> Result<AuthorizeRequest, AuthorizeError> {
    // 1. the client
    let client_id = params
        .get("client_id")
        .ok_or_else(|| AuthorizeError::Page("the request names no client (client_id)".into()))?;
    let client = client.filter(|c| c.client_id == client_id).ok_or_else(|| {
        AuthorizeError::Page("the application that sent you here is not registered".into())
    })?;
    // 2. its redirect URI, exactly as registered (loopback: any port)
    let redirect_uri = params
        .get("redirect_uri")
        .ok_or_else(|| AuthorizeError::Page("the request names no redirect_uri".into()))?;
    if !redirect::matches(&client.redirect_uris, redirect_uri) {
        return Err(AuthorizeError::Page(
            "the application asked to return you to an address it has not registered".into(),
        ));
    }
    // An overlong state is not echoed back.
    let state = params
        .get("state")
        .filter(|s| s.len() <= MAX_VALUE)
        .map(str::to_owned);
    let back = |error: OAuthError| AuthorizeError::Redirect {
        redirect_uri: redirect_uri.to_owned(),
        state: state.clone(),
        error,
    };
    let code = |c: &'static str, d: &str| OAuthError {
        code: c,
        ..OAuthError::invalid_request(d)
    };
    // 3. what is asked for; the values that are kept or echoed are bounded
    for name in [
        "state",
        "nonce",
        "login_hint",
        "code_challenge",
        "scope",
        "resource",
    ] {
        if params.all(name).iter().any(|v| v.len() > MAX_VALUE) {
            return Err(back(OAuthError::invalid_request(format!(
                "{name} is longer than {MAX_VALUE} bytes"
            ))));
        }
    }
    if params.get("request").is_some() {
        return Err(back(code(
            "request_not_supported",
            "request objects are not supported",
        )));
    }
    if params.get("request_uri").is_some() {
        return Err(back(code(
            "request_uri_not_supported",
            "request_uri is not supported",
        )));
    }
    match params.get("response_type") {
        Some("code") => {}
        None => {
            return Err(back(OAuthError::invalid_request(
                "response_type is required",
            )));
        }
        Some(_) => {
            return Err(back(code(
                "unsupported_response_type",
                "only response_type=code is supported",
            )));
        }
    }
    if !matches!(params.get("response_mode"), None | Some("query")) {
        return Err(back(OAuthError::invalid_request(
            "only response_mode=query is supported",
        )));
    }
    let mut scopes: Vec<String> = Vec::new();
    for s in params
        .get("scope")
        .unwrap_or("")
        .split(' ')
        .filter(|s| !s.is_empty())
    {
        if !known_scope(s) {
            return Err(back(OAuthError::invalid_scope(format!(
                "unknown scope {s:?}"
            ))));
        }
        if let Some(name) = s.strip_prefix("roles:")
            && !crate::iam::names::within(name, &client.parent)
        {
            return Err(back(OAuthError::invalid_scope(format!(
                "{s} is outside {}, where the application is registered",
                client.parent
            ))));
        }
        if !scopes.iter().any(|k| k == s) {
            scopes.push(s.to_owned());
        }
    }
    // 4. PKCE: S256, required for public clients
    let code_challenge = match params.get("code_challenge") {
        Some(c) => {
            pkce::check_challenge(c, params.get("code_challenge_method"))
                .map_err(|e| back(OAuthError::invalid_request(e.to_string())))?;
            Some(c.to_owned())
        }
        None if client.public_client => {
            return Err(back(OAuthError::invalid_request(
                "public clients must use PKCE (code_challenge with S256)",
            )));
        }
        None => None,
    };
    // 5. prompt, max_age
    let mut prompt = Prompt::default();
    for p in params
        .get("prompt")
        .unwrap_or("")
        .split(' ')
        .filter(|s| !s.is_empty())
    {
        match p {
            "none" => prompt.none = true,
            "login" => prompt.login = true,
            "consent" => prompt.consent = true,
            "select_account" => {}
            other => {
                return Err(back(OAuthError::invalid_request(format!(
                    "unknown prompt value {other:?}"
                ))));
            }
        }
    }
    if prompt.none && (prompt.login || prompt.consent) {
        return Err(back(OAuthError::invalid_request(
            "prompt=none cannot be combined with other values",
        )));
    }
    let max_age = match params.get("max_age") {
        None => None,
        Some(v) => Some(v.parse::<u64>().map_err(|_| {
            back(OAuthError::invalid_request(
                "max_age must be a non-negative integer",
            ))
        })?),
    };
    let resource = match params.all("resource").as_slice() {
        [] => None,
        [one] => Some((*one).to_owned()),
        _ => {
            return Err(back(OAuthError::invalid_target(
                "ask for one resource per authorization",
            )));
        }
    };
    Ok(AuthorizeRequest {
        client_id: client.client_id.clone(),
        redirect_uri: redirect_uri.to_owned(),
        scopes,
        state,
        nonce: params.get("nonce").map(str::to_owned),
        code_challenge,
        prompt,
        max_age,
        login_hint: params.get("login_hint").map(str::to_owned),
        resource,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    fn client(public: bool) -> ClientRow {
        ClientRow {
            client_id: "app".into(),
            parent: "orgs/acme".into(),
            display_name: "App".into(),
            redirect_uris: vec![
                "https://app.example/cb".into(),
                "http://127.0.0.1/cb".into(),
            ],
            public_client: public,
            first_party: false,
            default_api: None,
            secret_hash: None,
        }
    }

    fn form(q: &str) -> Form {
        Form::parse(q).expect("form")
    }

    fn base(extra: &str) -> String {
        format!(
            "client_id=app&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&response_type=code&state=xyz&code_challenge={CHALLENGE}&code_challenge_method=S256{extra}"
        )
    }

    #[test]
    fn a_good_request_is_accepted() {
        let r = check(
            &form(&base(
                "&scope=openid%20roles%20openid%20roles%3Aorgs%2Facme%2Fprojects%2Fp&nonce=n1&prompt=login&max_age=60",
            )),
            Some(&client(true)),
        )
        .expect("ok");
        assert_eq!(
            r.scopes,
            vec!["openid", "roles", "roles:orgs/acme/projects/p"]
        );
        assert_eq!(
            (r.state.as_deref(), r.nonce.as_deref(), r.max_age),
            (Some("xyz"), Some("n1"), Some(60))
        );
        assert!(r.prompt.login && !r.prompt.none);
        let loopback = "client_id=app&redirect_uri=http%3A%2F%2F127.0.0.1%3A49152%2Fcb&response_type=code&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256";
        assert!(
            check(&form(loopback), Some(&client(true))).is_ok(),
            "native apps use any loopback port"
        );
    }

    #[test]
    fn unverified_clients_and_redirects_never_redirect() {
        let cases: Vec<(String, Option<ClientRow>)> = vec![
            ("redirect_uri=https%3A%2F%2Fapp.example%2Fcb&response_type=code".into(), Some(client(true))),
            (base(""), None),
            ("client_id=app&response_type=code".into(), Some(client(true))),
            ("client_id=app&redirect_uri=https%3A%2F%2Fevil.example%2Fcb&response_type=code".into(), Some(client(true))),
            ("client_id=app&redirect_uri=https%3A%2F%2Fapp.example%2Fcb%2Fextra&response_type=code".into(), Some(client(true))),
        ];
        for (q, c) in &cases {
            assert!(
                matches!(check(&form(q), c.as_ref()), Err(AuthorizeError::Page(_))),
                "{q}"
            );
        }
        let other = ClientRow {
            client_id: "other".into(),
            ..client(true)
        };
        assert!(
            matches!(
                check(&form(&base("")), Some(&other)),
                Err(AuthorizeError::Page(_))
            ),
            "a client row for another id"
        );
    }

    #[test]
    fn errors_after_verification_go_back_with_state_and_issuer() {
        let cases = [
            (
                "client_id=app&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&response_type=token&state=s",
                "unsupported_response_type",
            ),
            (
                "client_id=app&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&state=s",
                "invalid_request",
            ),
            (&*base("&scope=admin"), "invalid_scope"),
            (&*base("&scope=roles%3Aorgs%2Fother"), "invalid_scope"),
            (&*base("&scope=roles%3Aorgs%2Facmex"), "invalid_scope"),
            (&*base("&prompt=none%20login"), "invalid_request"),
            (&*base("&prompt=bogus"), "invalid_request"),
            (&*base("&max_age=-1"), "invalid_request"),
            (&*base("&request=eyJ"), "request_not_supported"),
            (
                &*base("&request_uri=https%3A%2F%2Fx"),
                "request_uri_not_supported",
            ),
            (&*base("&response_mode=fragment"), "invalid_request"),
            (&*base("&resource=a&resource=b"), "invalid_target"),
            (
                "client_id=app&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&response_type=code&state=s",
                "invalid_request",
            ),
            (
                "client_id=app&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&response_type=code&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=plain",
                "invalid_request",
            ),
        ];
        for (q, want) in cases {
            match check(&form(q), Some(&client(true))) {
                Err(e @ AuthorizeError::Redirect { .. }) => {
                    let AuthorizeError::Redirect { error, .. } = &e else {
                        unreachable!()
                    };
                    assert_eq!(error.code, want, "{q}");
                    let loc = e.location("https://id.example").expect("location");
                    assert!(loc.starts_with("https://app.example/cb?error="), "{loc}");
                    assert!(loc.contains("&iss=https%3A%2F%2Fid.example"), "{loc}");
                }
                other => panic!("{q}: {other:?}"),
            }
        }
        let e = check(&form(&base("&scope=nope")), Some(&client(true))).expect_err("scope");
        assert!(
            e.location("https://id.example")
                .expect("loc")
                .contains("state=xyz")
        );
    }

    #[test]
    fn confidential_clients_may_skip_pkce_but_never_use_plain() {
        let q = "client_id=app&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&response_type=code";
        assert!(check(&form(q), Some(&client(false))).is_ok());
        let plain = format!("{q}&code_challenge={CHALLENGE}");
        assert!(
            matches!(
                check(&form(&plain), Some(&client(false))),
                Err(AuthorizeError::Redirect { .. })
            ),
            "absent method is plain"
        );
    }
}

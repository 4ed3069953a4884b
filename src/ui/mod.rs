//! The browser pages: login, consent, logout and the pages that explain what went
//! wrong, rendered on the server from `templates/` (compiled into the binary) and
//! usable without JavaScript.
//!
//! Every page is sent with a content security policy that forbids framing
//! (`frame-ancestors 'none'`) and scripts, `no-store`, and no referrer, so codes and
//! tokens in URLs never leak to other sites.

pub mod account;
pub mod authorize;
pub mod invite;
pub mod login;
pub mod reset;
pub mod session;
pub mod signup;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use minijinja::Environment;
use serde_json::{Value, json};

/// The templates, each by its file name.
const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../../templates/base.html")),
    ("login.html", include_str!("../../templates/login.html")),
    ("consent.html", include_str!("../../templates/consent.html")),
    ("message.html", include_str!("../../templates/message.html")),
    ("logout.html", include_str!("../../templates/logout.html")),
    ("reset.html", include_str!("../../templates/reset.html")),
    ("signup.html", include_str!("../../templates/signup.html")),
    ("invite.html", include_str!("../../templates/invite.html")),
    ("verify.html", include_str!("../../templates/verify.html")),
    ("account.html", include_str!("../../templates/account.html")),
    (
        "reset_confirm.html",
        include_str!("../../templates/reset_confirm.html"),
    ),
];

/// The stylesheet, served at [`CSS_PATH`].
const CSS: &str = include_str!("../../templates/gatehouse.css");
/// Where the stylesheet is served.
pub const CSS_PATH: &str = "/assets/gatehouse.css";

const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; \
                   frame-ancestors 'none'";

/// The compiled templates and the instance's name.
pub struct Pages {
    env: Environment<'static>,
    instance_name: String,
}

impl Pages {
    /// Compiles the templates (a broken template is a build defect: the unit test
    /// below renders each).
    pub fn new(instance_name: &str) -> Pages {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            if let Err(e) = env.add_template(name, source) {
                tracing::error!(template = name, error = %e, "template does not compile");
            }
        }
        Pages {
            env,
            instance_name: instance_name.to_owned(),
        }
    }

    /// Renders `template` with `ctx` (an object; the instance name is added).
    pub fn render(&self, status: StatusCode, template: &str, mut ctx: Value) -> Response {
        ctx["instance_name"] = json!(self.instance_name);
        let html = self
            .env
            .get_template(template)
            .and_then(|t| t.render(minijinja::value::Serde(&ctx)));
        match html {
            Ok(body) => page(status, body),
            Err(e) => {
                tracing::error!(template, error = %e, "page not rendered");
                page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "<!doctype html><title>Error</title><p>Something went wrong. Try again.</p>"
                        .to_owned(),
                )
            }
        }
    }

    /// A page that says what happened and, optionally, what to do.
    pub fn message(&self, status: StatusCode, title: &str, message: &str, hint: &str) -> Response {
        self.render(
            status,
            "message.html",
            json!({ "title": title, "message": message, "hint": hint }),
        )
    }

    /// The page shown for a request that cannot be sent back to the application.
    pub fn error(&self, message: &str) -> Response {
        self.message(
            StatusCode::BAD_REQUEST,
            "This sign-in link does not work",
            message,
            "Go back to the application and start again. If it keeps happening, tell the \
             application's administrator.",
        )
    }

    /// The page shown when the server cannot do its part right now.
    pub fn unavailable(&self) -> Response {
        self.message(
            StatusCode::SERVICE_UNAVAILABLE,
            "Try again in a moment",
            "The sign-in service is busy or briefly unavailable.",
            "",
        )
    }
}

/// A page with a form: `ctx` gets the browser's CSRF token as `csrf_token`, and the
/// response sets the per-browser cookie when the browser has none yet.
pub fn form(
    state: &crate::server::AppState,
    headers: &axum::http::HeaderMap,
    status: StatusCode,
    template: &str,
    mut ctx: Value,
) -> Response {
    let csrf = session::csrf(state, headers);
    ctx["csrf_token"] = json!(csrf.token);
    let mut r = state.pages.render(status, template, ctx);
    if let Some(c) = csrf.set_cookie {
        r.headers_mut().append(header::SET_COOKIE, c);
    }
    r
}

/// A form page answering a submission: 400 when `ctx` carries an `error`.
pub fn form_again(
    state: &crate::server::AppState,
    headers: &axum::http::HeaderMap,
    template: &str,
    ctx: Value,
) -> Response {
    let status = if ctx["error"].is_string() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    form(state, headers, status, template, ctx)
}

/// Adds the page headers to an HTML body.
fn page(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    secure_headers(&mut r);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

/// The headers every browser-facing response carries, redirects included.
pub fn secure_headers(r: &mut Response) {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// A `303 See Other` to `location`, with the page headers.
pub fn see_other(location: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    secure_headers(&mut r);
    r
}

/// `GET /assets/gatehouse.css`.
pub async fn stylesheet() -> Response {
    let mut r = CSS.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(r: Response) -> String {
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 20)
            .await
            .expect("body");
        String::from_utf8(bytes.to_vec()).expect("utf-8")
    }

    #[tokio::test]
    async fn every_page_renders_escaped_with_its_headers() {
        let pages = Pages::new("Acme <ID>");
        for (name, ctx) in [
            (
                "login.html",
                json!({ "csrf_token": "t", "pending": "p", "email": "\"><script>", "error": "bad", "client_name": "App" }),
            ),
            (
                "consent.html",
                json!({ "csrf_token": "t", "pending": "p", "email": "a@b", "client_name": "<b>App</b>", "items": ["x"] }),
            ),
            (
                "account.html",
                json!({ "csrf_token": "t", "email": "\"><script>", "display_name": "<b>", "identities": [{ "provider": "<i>Corp</i>", "issuer": "https://i", "subject": "\"><x>", "email": "a@b", "removable": true }], "linkable": [{ "display_name": "<u>", "available": false, "url": "/f" }], "notice": "n", "error": "e" }),
            ),
            (
                "message.html",
                json!({ "title": "T", "message": "M", "hint": "H", "link": "/x", "link_text": "go" }),
            ),
            (
                "signup.html",
                json!({ "csrf_token": "t", "email": "\"><script>", "display_name": "<b>", "error": "e", "invited": true }),
            ),
            (
                "invite.html",
                json!({ "csrf_token": "t", "email": "<script>", "token": "\"><script>", "what": "<b>", "new_account": true, "display_name": "\"><script>", "error": "e" }),
            ),
            (
                "verify.html",
                json!({ "csrf_token": "t", "email": "<script>", "token": "\"><script>" }),
            ),
            (
                "reset.html",
                json!({ "csrf_token": "t", "email": "\"><script>", "error": "e" }),
            ),
            (
                "reset_confirm.html",
                json!({ "csrf_token": "t", "token": "\"><script>", "error": "e" }),
            ),
            (
                "logout.html",
                json!({ "csrf_token": "t", "client_id": "c", "client_name": "App", "post_logout_redirect_uri": "https://a/", "state": "s" }),
            ),
        ] {
            let r = pages.render(StatusCode::OK, name, ctx);
            assert_eq!(r.status(), StatusCode::OK, "{name}");
            assert!(
                r.headers()[header::CONTENT_SECURITY_POLICY]
                    .to_str()
                    .expect("csp")
                    .contains("frame-ancestors 'none'")
            );
            assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
            let html = body(r).await;
            assert!(html.contains("Acme &lt;ID&gt;"), "{name}: {html}");
            assert!(!html.contains("<script>"), "{name} escapes input");
            assert!(!html.contains("<b>App"), "{name} escapes input");
        }
    }
}

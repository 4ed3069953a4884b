//! Errors of the admin API as RFC 9457 `application/problem+json`, each kind with a
//! stable `type` URI that scripts can match on. Server-side details are logged, never
//! sent.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

use crate::access::{AccessError, Warning};

/// The kinds of problem, each with its `type` URI and status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The request is malformed or a field is invalid (400).
    Validation,
    /// No valid bearer token (401).
    Unauthenticated,
    /// The caller lacks the route's permission (403).
    Forbidden,
    /// The granting rule refuses (403).
    CannotGrant,
    /// The resource does not exist (404).
    NotFound,
    /// The method is not allowed on the route (405).
    MethodNotAllowed,
    /// The etag is not the current one (412).
    StaleEtag,
    /// An invariant refuses the change: last owner, protected binding, children (409).
    Invariant,
    /// The body is too large (413).
    PayloadTooLarge,
    /// The body is not JSON (415).
    UnsupportedMediaType,
    /// The server cannot answer now (503).
    Unavailable,
}

impl Kind {
    /// The stable `type` URI.
    pub fn uri(self) -> &'static str {
        match self {
            Kind::Validation => "urn:gatehouse:problem:validation",
            Kind::Unauthenticated => "urn:gatehouse:problem:unauthenticated",
            Kind::Forbidden => "urn:gatehouse:problem:forbidden",
            Kind::CannotGrant => "urn:gatehouse:problem:cannot-grant",
            Kind::NotFound => "urn:gatehouse:problem:not-found",
            Kind::MethodNotAllowed => "urn:gatehouse:problem:method-not-allowed",
            Kind::StaleEtag => "urn:gatehouse:problem:stale-etag",
            Kind::Invariant => "urn:gatehouse:problem:invariant",
            Kind::PayloadTooLarge => "urn:gatehouse:problem:payload-too-large",
            Kind::UnsupportedMediaType => "urn:gatehouse:problem:unsupported-media-type",
            Kind::Unavailable => "urn:gatehouse:problem:unavailable",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            Kind::Validation => StatusCode::BAD_REQUEST,
            Kind::Unauthenticated => StatusCode::UNAUTHORIZED,
            Kind::Forbidden | Kind::CannotGrant => StatusCode::FORBIDDEN,
            Kind::NotFound => StatusCode::NOT_FOUND,
            Kind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Kind::StaleEtag => StatusCode::PRECONDITION_FAILED,
            Kind::Invariant => StatusCode::CONFLICT,
            Kind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Kind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Kind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn title(self) -> &'static str {
        match self {
            Kind::Validation => "The request is invalid",
            Kind::Unauthenticated => "A valid bearer token is required",
            Kind::Forbidden => "The caller lacks the permission",
            Kind::CannotGrant => "The caller cannot grant this",
            Kind::NotFound => "Not found",
            Kind::MethodNotAllowed => "Method not allowed",
            Kind::StaleEtag => "The etag is stale",
            Kind::Invariant => "The change would break an invariant",
            Kind::PayloadTooLarge => "The body is too large",
            Kind::UnsupportedMediaType => "The body must be application/json",
            Kind::Unavailable => "Unavailable",
        }
    }
}

/// One problem.
#[derive(Clone, Debug)]
pub struct Problem {
    /// Its kind.
    pub kind: Kind,
    /// What exactly, for a person.
    pub detail: String,
    /// The field at fault (validation).
    pub field: Option<String>,
    /// Extra members (e.g. the missing permission).
    pub extra: Value,
    /// The methods a path serves, for the `Allow` header of a 405.
    pub allow: Option<String>,
}

impl Problem {
    /// A problem of `kind`.
    pub fn new(kind: Kind, detail: impl Into<String>) -> Problem {
        Problem {
            kind,
            detail: detail.into(),
            field: None,
            extra: Value::Null,
            allow: None,
        }
    }

    /// A validation problem naming `field`.
    pub fn field(field: impl Into<String>, detail: impl Into<String>) -> Problem {
        Problem {
            field: Some(field.into()),
            ..Problem::new(Kind::Validation, detail)
        }
    }
}

impl From<AccessError> for Problem {
    fn from(e: AccessError) -> Problem {
        match e {
            AccessError::Forbidden {
                permission,
                resource,
            } => Problem {
                extra: json!({ "permission": permission, "resource": resource }),
                ..Problem::new(
                    Kind::Forbidden,
                    format!("{permission} on {resource} is required"),
                )
            },
            AccessError::CannotGrant(m) => Problem::new(Kind::CannotGrant, m),
            AccessError::NotFound(what) => {
                Problem::new(Kind::NotFound, format!("{what} does not exist"))
            }
            AccessError::Invalid { field, message } => Problem::field(field, message),
            AccessError::StaleEtag => Problem::new(
                Kind::StaleEtag,
                "the policy changed since it was read: read it again and reapply the change",
            ),
            AccessError::Refused(m) => Problem::new(Kind::Invariant, m),
            AccessError::Store(e) => {
                tracing::error!(error = %e, "admin API: store failed");
                Problem::new(Kind::Unavailable, "the store is unavailable; try again")
            }
        }
    }
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    title: &'a str,
    status: u16,
    detail: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.kind.status();
        let mut body = serde_json::to_value(Body {
            kind: self.kind.uri(),
            title: self.kind.title(),
            status: status.as_u16(),
            detail: &self.detail,
            field: self.field.as_deref(),
        })
        .unwrap_or(Value::Null);
        if let (Value::Object(b), Value::Object(extra)) = (&mut body, self.extra) {
            b.extend(extra);
        }
        let mut r = (status, Json(body)).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(allow) = self
            .allow
            .as_deref()
            .and_then(|a| HeaderValue::from_str(a).ok())
        {
            r.headers_mut().insert(header::ALLOW, allow);
        }
        if self.kind == Kind::Unauthenticated {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

/// Warnings in a successful answer (`warnings` member), as problem-like objects.
pub fn warnings(ws: &[Warning]) -> Value {
    Value::Array(
        ws.iter()
            .map(|w| {
                let mut v = serde_json::to_value(w).unwrap_or(Value::Null);
                let kind = match w {
                    Warning::DeprecatedRole { .. } => "urn:gatehouse:warning:deprecated-role",
                    Warning::FewerThanTwoOwners { .. } => {
                        "urn:gatehouse:warning:fewer-than-two-owners"
                    }
                };
                v["type"] = json!(kind);
                v
            })
            .collect(),
    )
}

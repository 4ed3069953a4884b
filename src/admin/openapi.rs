//! The OpenAPI 3.1 document of the admin API, served at `/v1/openapi.json`: its paths
//! come from [`routes::ROUTES`] (the table the resolver is tested against), its request
//! schemas from the body types themselves ([`super::bodies`], through utoipa), so the
//! document cannot drift from what is served.

use serde_json::{Map, Value, json};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::Schema;
use utoipa::{PartialSchema, ToSchema};

use super::bodies::*;
use super::routes::ROUTES;

/// Where the document is served (without authentication: it describes, it grants
/// nothing).
pub const PATH: &str = "/v1/openapi.json";

fn schema_of<T: ToSchema + PartialSchema>(out: &mut Vec<(String, RefOr<Schema>)>) -> String {
    T::schemas(out);
    out.push((T::name().into_owned(), T::schema()));
    T::name().into_owned()
}

/// The request body of a route, by method and path template; collects its schema.
fn body(method: &str, path: &str, out: &mut Vec<(String, RefOr<Schema>)>) -> Option<String> {
    Some(match (method, path) {
        ("POST", "/v1/orgs")
        | ("POST", "/v1/{parent}/folders")
        | ("POST", "/v1/{parent}/projects")
        | ("POST", "/v1/{parent}/envs")
        | ("POST", "/v1/orgs/{org}/groups") => schema_of::<NewResource>(out),
        ("PUT", "/v1/policy") | ("PUT", "/v1/{name}/policy") => schema_of::<NewPolicy>(out),
        ("PATCH", "/v1/{name}") => schema_of::<ResourcePatch>(out),
        ("POST", "/v1/orgs/{org}/roles") => schema_of::<NewRole>(out),
        ("POST", "/v1/check") => schema_of::<CheckRequest>(out),
        ("POST", "/v1/orgs/{org}/invitations") => schema_of::<NewInvitation>(out),
        ("POST", "/v1/users") => schema_of::<NewUser>(out),
        ("PATCH", "/v1/users/{id}") => schema_of::<UserPatch>(out),
        ("POST", "/v1/{parent}/service-accounts") => schema_of::<NewServiceAccount>(out),
        ("POST", "/v1/{service account}/secrets") => schema_of::<NewSecret>(out),
        ("POST", "/v1/{service account}/keys") => schema_of::<NewKey>(out),
        ("POST", "/v1/{parent}/clients") => schema_of::<NewClient>(out),
        ("POST", "/v1/apis") => schema_of::<NewApi>(out),
        ("POST", "/v1/identity-providers") => schema_of::<NewIdentityProvider>(out),
        ("PUT", "/v1/identity-providers/{id}") => schema_of::<IdentityProviderUpdate>(out),
        _ => return None,
    })
}

fn success(method: &str, path: &str) -> (&'static str, &'static str) {
    match (method, path) {
        ("DELETE", p) if !p.contains("/members/") => ("204", "Done"),
        ("PUT", p) if p.contains("/members/") => ("204", "Done"),
        ("POST", "/v1/check") => ("200", "The answer and the bindings that give it"),
        ("POST", _) => ("201", "Created"),
        _ => ("200", "OK"),
    }
}

/// The document for `issuer`.
pub fn document(issuer: &str) -> Value {
    let mut schemas: Vec<(String, RefOr<Schema>)> = Vec::new();
    let mut paths: Map<String, Value> = Map::new();
    for (method, template, permission) in ROUTES {
        let (path, query) = template.split_once('?').unwrap_or((template, ""));
        let key = path.replace("{service account}", "{service_account}");
        let mut parameters: Vec<Value> = key
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|p| {
                json!({
                    "name": p, "in": "path", "required": true, "schema": { "type": "string" },
                    "description": if matches!(p, "name" | "parent" | "service_account") {
                        "a resource name such as orgs/acme/projects/backend; its slashes are part of the path"
                    } else { "" },
                })
            })
            .collect();
        for q in query.split('&').filter(|q| !q.is_empty()) {
            let name = q.split('=').next().unwrap_or(q);
            parameters.push(json!({ "name": name, "in": "query", "schema": { "type": "string" } }));
        }
        if *template == "/v1/audit-events?scope={scope}"
            || (*method == "GET"
                && (*template == "/v1/orgs"
                    || template.ends_with("folders")
                    || template.ends_with("projects")
                    || template.ends_with("envs")))
        {
            for name in ["actor", "since", "limit", "cursor"] {
                parameters
                    .push(json!({ "name": name, "in": "query", "schema": { "type": "string" } }));
            }
        }
        let (code, what) = success(method, path);
        let mut op = json!({
            "operationId": format!("{} {}", method, key),
            "description": format!("Authorized by `{permission}`."),
            "security": [{ "bearer": [] }],
            "parameters": parameters,
            "responses": {
                code: { "description": what },
                "default": {
                    "description": "A problem (RFC 9457)",
                    "content": { "application/problem+json": {
                        "schema": { "$ref": "#/components/schemas/Problem" } } },
                },
            },
        });
        if let Some(name) = body(method, template, &mut schemas) {
            op["requestBody"] = json!({
                "required": *method != "POST" || !template.ends_with("/secrets"),
                "content": { "application/json": {
                    "schema": { "$ref": format!("#/components/schemas/{name}") } } },
            });
        }
        let entry = paths.entry(key).or_insert_with(|| json!({}));
        entry[method.to_lowercase()] = op;
    }
    let mut components: Map<String, Value> = schemas
        .into_iter()
        .map(|(name, s)| (name, serde_json::to_value(s).unwrap_or(Value::Null)))
        .collect();
    components.insert(
        "Problem".into(),
        json!({
            "type": "object",
            "required": ["type", "title", "status", "detail"],
            "properties": {
                "type": { "type": "string", "description": "urn:gatehouse:problem:<kind>, stable" },
                "title": { "type": "string" },
                "status": { "type": "integer" },
                "detail": { "type": "string" },
                "field": { "type": "string", "description": "the field at fault (validation)" },
            },
        }),
    );
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "gatehouse admin API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Every IAM operation over HTTP. Bearer access tokens whose aud contains <issuer>/v1; each route is authorized by one permission, evaluated live.",
        },
        "servers": [{ "url": issuer }],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" } },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_in_the_document_with_its_body() {
        let doc = document("https://id.example");
        let mut seen = 0;
        for (method, template, permission) in ROUTES {
            let path = template
                .split('?')
                .next()
                .expect("path")
                .replace("{service account}", "{service_account}");
            let op = &doc["paths"][&path][method.to_lowercase()];
            assert!(op.is_object(), "{method} {template} is missing");
            assert!(
                op["description"]
                    .as_str()
                    .is_some_and(|d| d.contains(permission)),
                "{method} {template} names its permission"
            );
            if matches!(*method, "PUT" | "PATCH") && !template.contains("/members/")
                || *method == "POST"
            {
                let r = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{method} {template} has no body schema"));
                let name = r.rsplit('/').next().expect("name");
                assert!(
                    doc["components"]["schemas"][name]["properties"].is_object(),
                    "{name} is defined"
                );
            }
            seen += 1;
        }
        assert_eq!(seen, ROUTES.len());
        assert!(doc["components"]["schemas"]["PolicyBinding"].is_object());
        assert_eq!(
            doc["components"]["schemas"]["NewResource"]["properties"]["slug"]["description"],
            "The last segment of its name: `[a-z0-9][a-z0-9-]{1,62}`, never changed."
        );
    }
}

//! The admin API's routes, resolved from the method and path alone (pure, so that
//! every route and its one permission can be listed and tested): resources are
//! addressed by name, `/v1/orgs/acme/projects/backend/policy` is the policy of
//! `orgs/acme/projects/backend`.

use axum::http::Method;

use super::problem::{Kind as ProblemKind, Problem};
use crate::iam::names::{self, Kind};

/// One admin operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// `POST /v1/orgs`, `POST /v1/{parent}/folders|projects|envs`.
    CreateResource {
        /// The parent; `None` for organizations.
        parent: Option<String>,
        /// What to create.
        kind: Kind,
    },
    /// `GET /v1/{name}`.
    GetResource(String),
    /// `DELETE /v1/{name}`.
    DeleteResource(String),
    /// `PATCH /v1/{name}`.
    UpdateResource(String),
    /// `GET /v1/orgs`, `GET /v1/{parent}/folders|projects|envs`: a page of children.
    ListResources {
        /// The parent; `None` for organizations.
        parent: Option<String>,
        /// What to list.
        kind: Kind,
    },
    /// `GET /v1/roles` (predefined) and `GET /v1/orgs/{org}/roles` (with the
    /// organization's custom roles).
    ListRoles(Option<String>),
    /// `POST /v1/orgs/{org}/roles`.
    PutRole(String),
    /// `GET /v1/{name}/policy`, `GET /v1/policy` (the instance root).
    GetPolicy(String),
    /// `PUT /v1/{name}/policy`, `PUT /v1/policy`.
    SetPolicy(String),
    /// `GET /v1/{name}/access`.
    Access(String),
    /// `POST /v1/check`; its permission applies to the body's `resource`.
    Check,
    /// `POST /v1/users`.
    CreateUser,
    /// `GET /v1/users?email=`.
    FindUser,
    /// `PATCH /v1/users/{id}`.
    UpdateUser(String),
    /// `DELETE /v1/users/{id}`.
    DeleteUser(String),
    /// `POST /v1/{parent}/service-accounts`.
    CreateServiceAccount(String),
    /// `POST /v1/{service account}/secrets`.
    MintSecret(String),
    /// `DELETE /v1/{service account}/secrets/{id}`.
    RevokeSecret(String, String),
    /// `POST /v1/{service account}/keys`.
    AddKey(String),
    /// `POST /v1/orgs/{org}/invitations`.
    Invite(String),
    /// `POST /v1/orgs/{org}/groups`.
    CreateGroup(String),
    /// `PUT /v1/orgs/{org}/groups/{slug}/members/{member}`.
    AddMember(String, String),
    /// `DELETE /v1/orgs/{org}/groups/{slug}/members/{member}`.
    RemoveMember(String, String),
    /// `POST /v1/{parent}/clients`.
    CreateClient(String),
    /// `GET /v1/apis`.
    ListApis,
    /// `GET /v1/audit-events?scope=&actor=&since=&cursor=&limit=`; checked on `scope`.
    AuditEvents,
    /// `POST /v1/apis`.
    RegisterApi,
    /// `GET /v1/identity-providers`.
    ListIdentityProviders,
    /// `POST /v1/identity-providers`.
    CreateIdentityProvider,
    /// `GET /v1/identity-providers/{id}`.
    GetIdentityProvider(String),
    /// `PUT /v1/identity-providers/{id}`.
    UpdateIdentityProvider(String),
    /// `DELETE /v1/identity-providers/{id}`.
    DeleteIdentityProvider(String),
}

/// A resolved route: the operation, and the one permission that authorizes it on
/// `resource` (for [`Op::Check`], the resource comes from the body).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The operation.
    pub op: Op,
    /// The permission.
    pub permission: String,
    /// Where it is checked.
    pub resource: String,
}

/// Every route, as (method, path template, permission template): the contract the
/// route test walks, so that no route can be added unguarded. `{kind}` is the plural
/// of the resource's kind (`organizations`, `folders`, `projects`, `environments`).
pub const ROUTES: &[(&str, &str, &str)] = &[
    (
        "POST",
        "/v1/orgs",
        "resourcemanager.organizations.create on *",
    ),
    (
        "POST",
        "/v1/{parent}/folders",
        "resourcemanager.folders.create on {parent}",
    ),
    (
        "POST",
        "/v1/{parent}/projects",
        "resourcemanager.projects.create on {parent}",
    ),
    (
        "POST",
        "/v1/{parent}/envs",
        "resourcemanager.environments.create on {parent}",
    ),
    ("GET", "/v1/{name}", "resourcemanager.{kind}.get on {name}"),
    (
        "PATCH",
        "/v1/{name}",
        "resourcemanager.{kind}.update on {name}",
    ),
    ("GET", "/v1/orgs", "resourcemanager.organizations.list on *"),
    (
        "GET",
        "/v1/{parent}/folders",
        "resourcemanager.folders.list on {parent}",
    ),
    (
        "GET",
        "/v1/{parent}/projects",
        "resourcemanager.projects.list on {parent}",
    ),
    (
        "GET",
        "/v1/{parent}/envs",
        "resourcemanager.environments.list on {parent}",
    ),
    ("GET", "/v1/roles", "iam.roles.list on *"),
    (
        "GET",
        "/v1/orgs/{org}/roles",
        "iam.roles.list on orgs/{org}",
    ),
    (
        "POST",
        "/v1/orgs/{org}/roles",
        "iam.roles.create on orgs/{org}",
    ),
    (
        "DELETE",
        "/v1/{name}",
        "resourcemanager.{kind}.delete on {name}",
    ),
    ("GET", "/v1/policy", "iam.policies.get on *"),
    ("PUT", "/v1/policy", "iam.policies.set on *"),
    ("GET", "/v1/{name}/policy", "iam.policies.get on {name}"),
    ("PUT", "/v1/{name}/policy", "iam.policies.set on {name}"),
    ("GET", "/v1/{name}/access", "iam.access.get on {name}"),
    (
        "POST",
        "/v1/check",
        "iam.access.check on the body's resource",
    ),
    ("POST", "/v1/users", "iam.users.create on *"),
    ("GET", "/v1/users?email={email}", "iam.users.get on *"),
    ("PATCH", "/v1/users/{id}", "iam.users.update on *"),
    ("DELETE", "/v1/users/{id}", "iam.users.delete on *"),
    (
        "POST",
        "/v1/{parent}/service-accounts",
        "iam.serviceAccounts.create on {parent}",
    ),
    (
        "POST",
        "/v1/{service account}/secrets",
        "iam.serviceAccountKeys.create on {service account}",
    ),
    (
        "DELETE",
        "/v1/{service account}/secrets/{id}",
        "iam.serviceAccountKeys.delete on {service account}",
    ),
    (
        "POST",
        "/v1/{service account}/keys",
        "iam.serviceAccountKeys.create on {service account}",
    ),
    (
        "POST",
        "/v1/orgs/{org}/invitations",
        "iam.invitations.create on orgs/{org}",
    ),
    (
        "POST",
        "/v1/orgs/{org}/groups",
        "iam.groups.create on orgs/{org}",
    ),
    (
        "PUT",
        "/v1/orgs/{org}/groups/{slug}/members/{member}",
        "iam.groupMembers.set on orgs/{org}/groups/{slug}",
    ),
    (
        "DELETE",
        "/v1/orgs/{org}/groups/{slug}/members/{member}",
        "iam.groupMembers.set on orgs/{org}/groups/{slug}",
    ),
    (
        "POST",
        "/v1/{parent}/clients",
        "iam.clients.create on {parent}",
    ),
    ("GET", "/v1/apis", "iam.apis.list on *"),
    (
        "GET",
        "/v1/audit-events?scope={scope}",
        "iam.auditEvents.list on {scope} (default *)",
    ),
    ("POST", "/v1/apis", "iam.apis.create on *"),
    (
        "GET",
        "/v1/identity-providers",
        "iam.identityProviders.list on *",
    ),
    (
        "POST",
        "/v1/identity-providers",
        "iam.identityProviders.create on *",
    ),
    (
        "GET",
        "/v1/identity-providers/{id}",
        "iam.identityProviders.get on *",
    ),
    (
        "PUT",
        "/v1/identity-providers/{id}",
        "iam.identityProviders.update on *",
    ),
    (
        "DELETE",
        "/v1/identity-providers/{id}",
        "iam.identityProviders.delete on *",
    ),
];

fn plural(kind: Kind) -> &'static str {
    match kind {
        Kind::Organization => "organizations",
        Kind::Folder => "folders",
        Kind::Project => "projects",
        Kind::Environment => "environments",
    }
}

fn not_found(path: &str) -> Problem {
    Problem::new(ProblemKind::NotFound, format!("no admin API route {path}"))
}

fn method_not_allowed(method: &Method, path: &str) -> Problem {
    Problem::new(
        ProblemKind::MethodNotAllowed,
        format!("{method} is not served on {path}"),
    )
}

fn route(op: Op, permission: String, resource: &str) -> Result<Route, Problem> {
    Ok(Route {
        op,
        permission,
        resource: resource.to_owned(),
    })
}

/// Resolves `method` and `path` (starting `/v1`); `HEAD` is `GET`. A method the path
/// does not serve is a problem that lists, for the `Allow` header, those it does.
pub fn resolve(method: &Method, path: &str) -> Result<Route, Problem> {
    let method = if method == Method::HEAD {
        &Method::GET
    } else {
        method
    };
    match resolve_exact(method, path) {
        Err(mut p) if p.kind == ProblemKind::MethodNotAllowed => {
            let allowed: Vec<&str> = [
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ]
            .iter()
            .filter(|m| resolve_exact(m, path).is_ok())
            .map(Method::as_str)
            .collect();
            p.allow = Some(allowed.join(", "));
            Err(p)
        }
        other => other,
    }
}

fn resolve_exact(method: &Method, path: &str) -> Result<Route, Problem> {
    let rest = path
        .strip_prefix("/v1/")
        .ok_or_else(|| not_found(path))?
        .trim_end_matches('/');
    let segments: Vec<&str> = rest.split('/').collect();
    if rest.is_empty() || segments.iter().any(|s| s.is_empty()) {
        return Err(not_found(path));
    }
    if let Some(at) = segments.iter().position(|s| *s == "service-accounts") {
        return service_account_route(method, path, &segments, at);
    }
    let m = method.clone();
    match (segments.as_slice(), m) {
        (["users"], Method::POST) => route(Op::CreateUser, "iam.users.create".into(), names::ROOT),
        (["users"], Method::GET) => route(Op::FindUser, "iam.users.get".into(), names::ROOT),
        (["users", id], Method::PATCH) if uuid::Uuid::parse_str(id).is_ok() => route(
            Op::UpdateUser((*id).to_owned()),
            "iam.users.update".into(),
            names::ROOT,
        ),
        (["users", id], Method::DELETE) if uuid::Uuid::parse_str(id).is_ok() => route(
            Op::DeleteUser((*id).to_owned()),
            "iam.users.delete".into(),
            names::ROOT,
        ),
        (["users"], _) => Err(method_not_allowed(method, path)),
        (["users", id], _) if uuid::Uuid::parse_str(id).is_ok() => {
            Err(method_not_allowed(method, path))
        }
        (["users", _], _) => Err(not_found(path)),
        (["apis"], Method::GET) => route(Op::ListApis, "iam.apis.list".into(), names::ROOT),
        (["apis"], Method::POST) => route(Op::RegisterApi, "iam.apis.create".into(), names::ROOT),
        (["apis"], _) => Err(method_not_allowed(method, path)),
        (["identity-providers"], Method::GET) => route(
            Op::ListIdentityProviders,
            "iam.identityProviders.list".into(),
            names::ROOT,
        ),
        (["identity-providers"], Method::POST) => route(
            Op::CreateIdentityProvider,
            "iam.identityProviders.create".into(),
            names::ROOT,
        ),
        (["identity-providers"], _) => Err(method_not_allowed(method, path)),
        (["identity-providers", id], m) if names::valid_slug(id) => {
            let id = (*id).to_owned();
            match m {
                Method::GET => route(
                    Op::GetIdentityProvider(id),
                    "iam.identityProviders.get".into(),
                    names::ROOT,
                ),
                Method::PUT => route(
                    Op::UpdateIdentityProvider(id),
                    "iam.identityProviders.update".into(),
                    names::ROOT,
                ),
                Method::DELETE => route(
                    Op::DeleteIdentityProvider(id),
                    "iam.identityProviders.delete".into(),
                    names::ROOT,
                ),
                _ => Err(method_not_allowed(method, path)),
            }
        }
        (["identity-providers", _], _) => Err(not_found(path)),
        (["audit-events"], Method::GET) => {
            route(Op::AuditEvents, "iam.auditEvents.list".into(), names::ROOT)
        }
        (["audit-events"], _) => Err(method_not_allowed(method, path)),
        (["orgs", org, "invitations"], Method::POST) if names::valid_slug(org) => {
            let org = format!("orgs/{org}");
            route(
                Op::Invite(org.clone()),
                "iam.invitations.create".into(),
                &org,
            )
        }
        (["orgs", _, "invitations"], _) => Err(method_not_allowed(method, path)),
        (["orgs", org, "groups"], Method::POST) if names::valid_slug(org) => {
            let org = format!("orgs/{org}");
            route(
                Op::CreateGroup(org.clone()),
                "iam.groups.create".into(),
                &org,
            )
        }
        (["orgs", org, "groups", slug, "members", member], m @ (Method::PUT | Method::DELETE))
            if names::valid_slug(org) && names::valid_slug(slug) =>
        {
            let group = format!("orgs/{org}/groups/{slug}");
            let member = percent_encoding::percent_decode_str(member)
                .decode_utf8()
                .map_err(|_| not_found(path))?
                .into_owned();
            let op = if m == Method::PUT {
                Op::AddMember(group.clone(), member)
            } else {
                Op::RemoveMember(group.clone(), member)
            };
            route(op, "iam.groupMembers.set".into(), &group)
        }
        (["orgs", _, "groups"] | ["orgs", _, "groups", _, "members", _], _) => {
            Err(method_not_allowed(method, path))
        }
        (["orgs"], Method::GET) => route(
            Op::ListResources {
                parent: None,
                kind: Kind::Organization,
            },
            "resourcemanager.organizations.list".into(),
            names::ROOT,
        ),
        (["roles"], Method::GET) => {
            route(Op::ListRoles(None), "iam.roles.list".into(), names::ROOT)
        }
        (["roles"], _) => Err(method_not_allowed(method, path)),
        (["orgs", org, "roles"], m @ (Method::GET | Method::POST)) if names::valid_slug(org) => {
            let org = format!("orgs/{org}");
            if m == Method::GET {
                route(
                    Op::ListRoles(Some(org.clone())),
                    "iam.roles.list".into(),
                    &org,
                )
            } else {
                route(Op::PutRole(org.clone()), "iam.roles.create".into(), &org)
            }
        }
        (["orgs", _, "roles"], _) => Err(method_not_allowed(method, path)),
        (["orgs"], Method::POST) => route(
            Op::CreateResource {
                parent: None,
                kind: Kind::Organization,
            },
            "resourcemanager.organizations.create".into(),
            names::ROOT,
        ),
        (["check"], Method::POST) => route(Op::Check, "iam.access.check".into(), ""),
        (["policy"], Method::GET) => route(
            Op::GetPolicy(names::ROOT.into()),
            "iam.policies.get".into(),
            names::ROOT,
        ),
        (["policy"], Method::PUT) => route(
            Op::SetPolicy(names::ROOT.into()),
            "iam.policies.set".into(),
            names::ROOT,
        ),
        (["orgs"] | ["check"] | ["policy"], _) => Err(method_not_allowed(method, path)),
        _ if segments.len().is_multiple_of(2) => {
            let name = rest;
            let parsed = names::parse(name).ok_or_else(|| not_found(path))?;
            let kind = plural(parsed.kind);
            match *method {
                Method::GET => route(
                    Op::GetResource(name.into()),
                    format!("resourcemanager.{kind}.get"),
                    name,
                ),
                Method::DELETE => route(
                    Op::DeleteResource(name.into()),
                    format!("resourcemanager.{kind}.delete"),
                    name,
                ),
                Method::PATCH => route(
                    Op::UpdateResource(name.into()),
                    format!("resourcemanager.{kind}.update"),
                    name,
                ),
                _ => Err(method_not_allowed(method, path)),
            }
        }
        _ => {
            let (last, prefix) = segments.split_last().ok_or_else(|| not_found(path))?;
            let name = prefix.join("/");
            if names::parse(&name).is_none() {
                return Err(not_found(path));
            }
            let child = match *last {
                "folders" => Some(Kind::Folder),
                "projects" => Some(Kind::Project),
                "envs" => Some(Kind::Environment),
                _ => None,
            };
            match (*last, child, method.clone()) {
                (_, Some(kind), Method::POST) => route(
                    Op::CreateResource {
                        parent: Some(name.clone()),
                        kind,
                    },
                    format!("resourcemanager.{}.create", plural(kind)),
                    &name,
                ),
                (_, Some(kind), Method::GET) => route(
                    Op::ListResources {
                        parent: Some(name.clone()),
                        kind,
                    },
                    format!("resourcemanager.{}.list", plural(kind)),
                    &name,
                ),
                ("clients", _, Method::POST) => route(
                    Op::CreateClient(name.clone()),
                    "iam.clients.create".into(),
                    &name,
                ),
                ("policy", _, Method::GET) => route(
                    Op::GetPolicy(name.clone()),
                    "iam.policies.get".into(),
                    &name,
                ),
                ("policy", _, Method::PUT) => route(
                    Op::SetPolicy(name.clone()),
                    "iam.policies.set".into(),
                    &name,
                ),
                ("access", _, Method::GET) => {
                    route(Op::Access(name.clone()), "iam.access.get".into(), &name)
                }
                ("policy" | "access" | "clients", _, _) | (_, Some(_), _) => {
                    Err(method_not_allowed(method, path))
                }
                _ => Err(not_found(path)),
            }
        }
    }
}

/// Routes of service accounts: `<parent>/service-accounts[/<slug>[/secrets[/<id>]|/keys]]`.
fn service_account_route(
    method: &Method,
    path: &str,
    segments: &[&str],
    at: usize,
) -> Result<Route, Problem> {
    let parent = segments[..at].join("/");
    let parent_kind = names::parse(&parent).map(|p| p.kind);
    if !matches!(parent_kind, Some(Kind::Organization | Kind::Project)) {
        return Err(not_found(path));
    }
    let rest = &segments[at + 1..];
    let Some((slug, tail)) = rest.split_first() else {
        return match *method {
            Method::POST => route(
                Op::CreateServiceAccount(parent.clone()),
                "iam.serviceAccounts.create".into(),
                &parent,
            ),
            _ => Err(method_not_allowed(method, path)),
        };
    };
    if !names::valid_slug(slug) {
        return Err(not_found(path));
    }
    let account = format!("{parent}/service-accounts/{slug}");
    match (tail, method.clone()) {
        (["secrets"], Method::POST) => route(
            Op::MintSecret(account.clone()),
            "iam.serviceAccountKeys.create".into(),
            &account,
        ),
        (["secrets", id], Method::DELETE) if !id.is_empty() && id.len() <= 64 => route(
            Op::RevokeSecret(account.clone(), (*id).to_owned()),
            "iam.serviceAccountKeys.delete".into(),
            &account,
        ),
        (["keys"], Method::POST) => route(
            Op::AddKey(account.clone()),
            "iam.serviceAccountKeys.create".into(),
            &account,
        ),
        (["secrets"] | ["secrets", _] | ["keys"], _) => Err(method_not_allowed(method, path)),
        _ => Err(not_found(path)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(method: Method, path: &str) -> (Op, String, String) {
        let r = resolve(&method, path).unwrap_or_else(|e| panic!("{path}: {e:?}"));
        (r.op, r.permission, r.resource)
    }

    #[test]
    fn routes_resolve_to_one_permission_each() {
        assert_eq!(
            ok(Method::POST, "/v1/orgs"),
            (
                Op::CreateResource {
                    parent: None,
                    kind: Kind::Organization
                },
                "resourcemanager.organizations.create".into(),
                "*".into()
            )
        );
        assert_eq!(
            ok(Method::POST, "/v1/orgs/acme/folders/ab/projects"),
            (
                Op::CreateResource {
                    parent: Some("orgs/acme/folders/ab".into()),
                    kind: Kind::Project
                },
                "resourcemanager.projects.create".into(),
                "orgs/acme/folders/ab".into()
            )
        );
        assert_eq!(
            ok(Method::GET, "/v1/orgs/acme/projects/backend/envs/prod").1,
            "resourcemanager.environments.get"
        );
        assert_eq!(
            ok(Method::DELETE, "/v1/orgs/acme").1,
            "resourcemanager.organizations.delete"
        );
        assert_eq!(
            ok(Method::PUT, "/v1/orgs/acme/projects/backend/policy"),
            (
                Op::SetPolicy("orgs/acme/projects/backend".into()),
                "iam.policies.set".into(),
                "orgs/acme/projects/backend".into()
            )
        );
        assert_eq!(ok(Method::GET, "/v1/policy").0, Op::GetPolicy("*".into()));
        assert_eq!(
            ok(Method::GET, "/v1/orgs/acme/access").0,
            Op::Access("orgs/acme".into())
        );
        assert_eq!(ok(Method::POST, "/v1/check").0, Op::Check);
        assert_eq!(
            ok(
                Method::DELETE,
                "/v1/orgs/acme/service-accounts/robot/secrets/s1"
            ),
            (
                Op::RevokeSecret("orgs/acme/service-accounts/robot".into(), "s1".into()),
                "iam.serviceAccountKeys.delete".into(),
                "orgs/acme/service-accounts/robot".into()
            )
        );
        assert_eq!(
            ok(
                Method::PUT,
                "/v1/orgs/acme/groups/ops/members/user:a%40b.example"
            )
            .0,
            Op::AddMember("orgs/acme/groups/ops".into(), "user:a@b.example".into())
        );
        for bad in [
            "/v1/orgs/acme/folders/ff/service-accounts",
            "/v1/service-accounts",
            "/v1/orgs/acme/service-accounts/X/keys",
            "/v1/orgs/acme/service-accounts/robot/nope",
        ] {
            assert_eq!(
                resolve(&Method::POST, bad).expect_err(bad).kind,
                ProblemKind::NotFound,
                "{bad}"
            );
        }
    }

    #[test]
    fn unknown_paths_and_methods_are_told_apart() {
        for path in [
            "/v1/",
            "/v1",
            "/v1/nope",
            "/v1/orgs/acme/nope",
            "/v1/orgs//x",
            "/v1/orgs/ACME",
            "/v1/orgs/acme/widgets/x",
            "/v2/orgs",
        ] {
            let e = resolve(&Method::GET, path).expect_err(path);
            assert_eq!(e.kind, ProblemKind::NotFound, "{path}");
        }
        for (method, path) in [
            (Method::PATCH, "/v1/policy"),
            (Method::GET, "/v1/check"),
            (Method::POST, "/v1/orgs/acme"),
            (Method::DELETE, "/v1/orgs/acme/policy"),
        ] {
            let e = resolve(&method, path).expect_err(path);
            assert_eq!(e.kind, ProblemKind::MethodNotAllowed, "{method} {path}");
            assert!(e.allow.as_deref().is_some_and(|a| !a.is_empty()), "{path}");
        }
    }

    #[test]
    fn the_route_list_names_every_resolvable_route() {
        // each listed route resolves with the permission it lists
        let examples = [
            ("POST", "/v1/orgs"),
            ("POST", "/v1/orgs/ab/folders"),
            ("POST", "/v1/orgs/ab/projects"),
            ("POST", "/v1/orgs/ab/projects/pp/envs"),
            ("GET", "/v1/orgs/ab"),
            ("PATCH", "/v1/orgs/ab"),
            ("GET", "/v1/orgs"),
            ("GET", "/v1/orgs/ab/folders"),
            ("GET", "/v1/orgs/ab/projects"),
            ("GET", "/v1/orgs/ab/projects/pp/envs"),
            ("GET", "/v1/roles"),
            ("GET", "/v1/orgs/ab/roles"),
            ("POST", "/v1/orgs/ab/roles"),
            ("DELETE", "/v1/orgs/ab"),
            ("GET", "/v1/policy"),
            ("PUT", "/v1/policy"),
            ("GET", "/v1/orgs/ab/policy"),
            ("PUT", "/v1/orgs/ab/policy"),
            ("GET", "/v1/orgs/ab/access"),
            ("POST", "/v1/check"),
            ("POST", "/v1/users"),
            ("GET", "/v1/users"),
            ("PATCH", "/v1/users/0b2f8f6e-3c1a-4d7e-9f10-2a3b4c5d6e7f"),
            ("DELETE", "/v1/users/0b2f8f6e-3c1a-4d7e-9f10-2a3b4c5d6e7f"),
            ("POST", "/v1/orgs/ab/service-accounts"),
            ("POST", "/v1/orgs/ab/service-accounts/robot/secrets"),
            ("DELETE", "/v1/orgs/ab/service-accounts/robot/secrets/s1"),
            (
                "POST",
                "/v1/orgs/ab/projects/pp/service-accounts/robot/keys",
            ),
            ("POST", "/v1/orgs/ab/invitations"),
            ("POST", "/v1/orgs/ab/groups"),
            ("PUT", "/v1/orgs/ab/groups/ops/members/user:a%40b.example"),
            (
                "DELETE",
                "/v1/orgs/ab/groups/ops/members/user:a%40b.example",
            ),
            ("POST", "/v1/orgs/ab/clients"),
            ("GET", "/v1/apis"),
            ("GET", "/v1/audit-events"),
            ("POST", "/v1/apis"),
            ("GET", "/v1/identity-providers"),
            ("POST", "/v1/identity-providers"),
            ("GET", "/v1/identity-providers/corp"),
            ("PUT", "/v1/identity-providers/corp"),
            ("DELETE", "/v1/identity-providers/corp"),
        ];
        assert_eq!(examples.len(), ROUTES.len());
        for ((method, path), (m, _, permission)) in examples.iter().zip(ROUTES) {
            assert_eq!(method, m);
            let r = resolve(&method.parse().expect("method"), path).expect(path);
            let listed = permission.split(' ').next().expect("permission");
            let listed = listed.replace("{kind}", "organizations");
            assert_eq!(r.permission, listed, "{method} {path}");
        }
    }
}

//! The role catalog: TOML data compiled into the binary (the default catalog and the
//! presets), plus custom roles from the store, resolved against the registered
//! permissions into [`Roles`], the table the evaluator uses.
//!
//! One catalog is active per instance (`GATEHOUSE_CATALOG`). Every catalog contains
//! gatehouse's own `iam.*` and `resourcemanager.*` permissions and names its owner
//! role. Predefined roles are immutable; custom roles are `orgs/<org>/roles/<slug>`.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::names::{self, Kind};
use super::permissions::{self, PermSet, Permission, Registry};

const BUILTIN: &str = include_str!("catalogs/builtin.toml");
const CATALOGS: &[(&str, &str)] = &[
    ("default", include_str!("catalogs/default.toml")),
    ("stackpath", include_str!("catalogs/stackpath.toml")),
    ("mia-platform", include_str!("catalogs/mia-platform.toml")),
    ("cloud-iam", include_str!("catalogs/cloud-iam.toml")),
];

/// The kind of a role, which fixes whether it inherits down the tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RoleKind {
    /// `owner`, `editor`, `viewer` and the presets' equivalents: inherit.
    Basic,
    /// Deprecated scope-bound roles: apply only where bound.
    Primitive,
    /// One service's narrow permission set: inherit.
    Resource,
    /// Defined by an organization's owners: inherit.
    Custom,
}

/// A role's deprecation.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Deprecation {
    /// The role a migration rewrites bindings to, if any.
    #[serde(default)]
    pub replacement: Option<String>,
    /// The date (YYYY-MM-DD) after which the role may be removed.
    pub end_of_life: String,
}

/// A role as defined.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RoleDef {
    /// `[A-Za-z0-9._/-]+`, never containing `@`.
    pub id: String,
    /// Its kind.
    pub kind: RoleKind,
    /// What it is for.
    #[serde(default)]
    pub description: String,
    /// Permission patterns it grants.
    pub permissions: Vec<String>,
    /// Permission patterns taken out again.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Set when deprecated.
    #[serde(default)]
    pub deprecated: Option<Deprecation>,
    /// Bindings of a protected role cannot be edited or removed (StackPath's owner).
    #[serde(default)]
    pub protected: bool,
}

impl RoleDef {
    /// Whether bindings of this role reach below their scope.
    pub fn inherits(&self) -> bool {
        self.kind != RoleKind::Primitive
    }
}

/// What an organization gets when it is created.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OrgDefaults {
    /// A project created with every organization.
    #[serde(default)]
    pub default_project: Option<DefaultProject>,
    /// The role people who join the organization get on the default project.
    #[serde(default)]
    pub member_role: Option<String>,
}

/// The default project of a preset.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultProject {
    /// Its slug.
    pub slug: String,
    /// Its display name.
    pub display_name: String,
}

/// A catalog file.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// Its name (`GATEHOUSE_CATALOG`).
    pub name: String,
    /// Human-readable title.
    pub title: String,
    /// The role that owns an organization (the last-owner rule counts it).
    pub owner_role: String,
    /// The resource kinds the model uses; all four by default.
    #[serde(default = "all_kinds")]
    pub kinds: Vec<String>,
    /// What the model calls each kind (StackPath: accounts and stacks).
    #[serde(default)]
    pub labels: HashMap<String, String>,
    /// What every new organization gets.
    #[serde(default)]
    pub on_organization_create: OrgDefaults,
    /// Permissions the catalog defines beyond gatehouse's own.
    #[serde(default)]
    pub permissions: Vec<Permission>,
    /// The predefined roles.
    pub roles: Vec<RoleDef>,
}

fn all_kinds() -> Vec<String> {
    ["organization", "folder", "project", "environment"]
        .map(String::from)
        .to_vec()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Builtin {
    permissions: Vec<Permission>,
}

/// A catalog or role that is not acceptable, with the reason.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct CatalogError(pub String);

/// Whether `id` is a valid role id: `[A-Za-z0-9._/-]+` (so never containing `@`).
pub fn valid_role_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._/-".contains(&b))
}

/// Whether `id` names a custom role, `orgs/<org>/roles/<slug>`; returns the org name.
pub fn custom_role_org(id: &str) -> Option<&str> {
    let rest = id.strip_prefix("orgs/")?;
    let (org, tail) = rest.split_once('/')?;
    let slug = tail.strip_prefix("roles/")?;
    (names::valid_slug(org) && names::valid_slug(slug)).then(|| &id[..5 + org.len()])
}

/// gatehouse's own permissions.
pub fn builtin_permissions() -> Vec<Permission> {
    toml::from_str::<Builtin>(BUILTIN)
        .map(|b| b.permissions)
        .unwrap_or_default()
}

impl Catalog {
    /// The compiled-in catalog called `name`.
    pub fn named(name: &str) -> Result<Catalog, CatalogError> {
        let (_, text) = CATALOGS
            .iter()
            .find(|(n, _)| *n == name)
            .ok_or_else(|| CatalogError(format!("unknown catalog {name:?}")))?;
        let catalog: Catalog =
            toml::from_str(text).map_err(|e| CatalogError(format!("catalog {name}: {e}")))?;
        catalog.validate()?;
        Ok(catalog)
    }

    /// Names of the compiled-in catalogs.
    pub fn names() -> impl Iterator<Item = &'static str> {
        CATALOGS.iter().map(|(n, _)| *n)
    }

    fn validate(&self) -> Result<(), CatalogError> {
        let err = |m: String| Err(CatalogError(format!("catalog {}: {m}", self.name)));
        let mut seen = std::collections::HashSet::new();
        for r in &self.roles {
            if !valid_role_id(&r.id) || custom_role_org(&r.id).is_some() {
                return err(format!("invalid predefined role id {:?}", r.id));
            }
            if !seen.insert(r.id.as_str()) {
                return err(format!("role {} defined twice", r.id));
            }
            if r.kind == RoleKind::Custom {
                return err(format!("role {} cannot be custom in a catalog", r.id));
            }
            for p in r.permissions.iter().chain(&r.exclude) {
                if !permissions::valid_pattern(p) {
                    return err(format!("role {}: invalid permission pattern {p:?}", r.id));
                }
            }
        }
        for r in &self.roles {
            if let Some(rep) = r.deprecated.as_ref().and_then(|d| d.replacement.as_ref())
                && !seen.contains(rep.as_str())
            {
                return err(format!("role {}: replacement {rep} is not defined", r.id));
            }
        }
        if !seen.contains(self.owner_role.as_str()) {
            return err(format!("owner role {} is not defined", self.owner_role));
        }
        if let Some(m) = &self.on_organization_create.member_role
            && !seen.contains(m.as_str())
        {
            return err(format!("member role {m} is not defined"));
        }
        for k in &self.kinds {
            if Kind::parse(k).is_none() {
                return err(format!("unknown resource kind {k:?}"));
            }
        }
        for p in &self.permissions {
            if !permissions::valid_name(&p.name) {
                return err(format!("invalid permission name {:?}", p.name));
            }
        }
        Ok(())
    }

    /// Whether the model uses resources of `kind`.
    pub fn uses_kind(&self, kind: Kind) -> bool {
        self.kinds.iter().any(|k| k == kind.as_str())
    }
}

/// A role resolved against the registered permissions.
#[derive(Clone, Debug)]
pub struct Role {
    /// The definition.
    pub def: RoleDef,
    /// The permissions it grants now.
    pub perms: PermSet,
    /// Its organization, for custom roles.
    pub org: Option<String>,
}

impl Role {
    /// Whether it inherits down the tree.
    pub fn inherits(&self) -> bool {
        self.def.inherits()
    }
}

/// Every role of the instance, resolved: the active catalog's predefined roles and
/// the organizations' custom roles. Immutable; registering permissions or changing a
/// custom role builds a new one.
#[derive(Clone, Debug)]
pub struct Roles {
    catalog: Arc<Catalog>,
    registry: Registry,
    roles: Vec<Role>,
    by_id: HashMap<String, u32>,
}

impl Roles {
    /// Resolves `catalog` and `custom` roles against gatehouse's permissions, the
    /// catalog's and `registered` ones (from registered APIs).
    pub fn resolve(
        catalog: Arc<Catalog>,
        registered: &[Permission],
        custom: &[RoleDef],
    ) -> Result<Roles, CatalogError> {
        let mut registry = Registry::default();
        for p in builtin_permissions()
            .into_iter()
            .chain(catalog.permissions.iter().cloned())
            .chain(registered.iter().cloned())
        {
            registry.add(p);
        }
        let mut roles = Vec::with_capacity(catalog.roles.len() + custom.len());
        let mut by_id = HashMap::new();
        for def in catalog.roles.iter().chain(custom) {
            let org = custom_role_org(&def.id).map(str::to_owned);
            if def.kind == RoleKind::Custom && org.is_none() {
                return Err(CatalogError(format!(
                    "custom role id {:?} is not orgs/<org>/roles/<slug>",
                    def.id
                )));
            }
            if by_id.contains_key(&def.id) {
                return Err(CatalogError(format!("role {} defined twice", def.id)));
            }
            let perms = registry.resolve(&def.permissions, &def.exclude);
            by_id.insert(def.id.clone(), roles.len() as u32);
            roles.push(Role {
                def: def.clone(),
                perms,
                org,
            });
        }
        Ok(Roles {
            catalog,
            registry,
            roles,
            by_id,
        })
    }

    /// The active catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The registered permissions.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The index of role `id`.
    pub fn index(&self, id: &str) -> Option<u32> {
        self.by_id.get(id).copied()
    }

    /// The role at `index`.
    pub fn at(&self, index: u32) -> &Role {
        &self.roles[index as usize]
    }

    /// The role `id`.
    pub fn get(&self, id: &str) -> Option<&Role> {
        self.index(id).map(|i| self.at(i))
    }

    /// Every role.
    pub fn all(&self) -> &[Role] {
        &self.roles
    }

    /// The index of the catalog's owner role.
    pub fn owner_index(&self) -> u32 {
        // validated at load: the owner role exists
        self.index(&self.catalog.owner_role).unwrap_or(0)
    }

    /// Permission names of a role, sorted.
    pub fn permission_names(&self, role: &Role) -> Vec<&str> {
        let mut v: Vec<&str> = role
            .perms
            .ids()
            .filter_map(|id| self.registry.get(id).map(|p| p.name.as_str()))
            .collect();
        v.sort_unstable();
        v
    }

    /// The catalog as published at `role_catalog_uri`: predefined roles, or those
    /// plus `org`'s custom roles.
    pub fn published(&self, org: Option<&str>) -> serde_json::Value {
        let roles: Vec<serde_json::Value> = self
            .roles
            .iter()
            .filter(|r| r.org.is_none() || r.org.as_deref() == org)
            .map(|r| {
                serde_json::json!({
                    "id": r.def.id,
                    "kind": r.def.kind,
                    "description": r.def.description,
                    "inherits": r.inherits(),
                    "permissions": self.permission_names(r),
                    "deprecated": r.def.deprecated,
                    "protected": r.def.protected,
                })
            })
            .collect();
        serde_json::json!({
            "catalog": self.catalog.name,
            "owner_role": self.catalog.owner_role,
            "labels": self.catalog.labels,
            "roles": roles,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles(name: &str) -> Roles {
        Roles::resolve(Arc::new(Catalog::named(name).expect("catalog")), &[], &[]).expect("resolve")
    }

    #[test]
    fn every_compiled_catalog_loads_and_names_its_owner() {
        for name in Catalog::names() {
            let r = roles(name);
            let owner = r.get(&r.catalog().owner_role).expect("owner role");
            assert!(owner.inherits(), "{name}: the owner role inherits");
            for builtin in builtin_permissions() {
                let id = r
                    .registry()
                    .id(&builtin.name)
                    .expect("built-in permission registered");
                assert!(
                    owner.perms.contains(id),
                    "{name}: owner has {}",
                    builtin.name
                );
            }
            for role in r.all() {
                assert!(valid_role_id(&role.def.id) && !role.def.id.contains('@'));
            }
        }
        for listed in crate::config::CATALOGS {
            assert!(
                Catalog::names().any(|n| n == *listed),
                "{listed} is compiled in"
            );
        }
    }

    #[test]
    fn role_ids_and_custom_names() {
        assert!(valid_role_id("roles/systemOwner") && valid_role_id("object-storage.reader"));
        for bad in ["", "owner@orgs/x", "a b", "ä"] {
            assert!(!valid_role_id(bad), "{bad}");
        }
        assert_eq!(
            custom_role_org("orgs/acme/roles/deployer"),
            Some("orgs/acme")
        );
        for bad in [
            "orgs/acme/roles/",
            "orgs/acme/projects/x",
            "orgs/Acme/roles/x1",
            "roles/x",
        ] {
            assert_eq!(custom_role_org(bad), None, "{bad}");
        }
    }

    #[test]
    fn catalog_errors_are_precise() {
        let mut c = Catalog::named("default").expect("catalog");
        c.owner_role = "nobody".into();
        assert!(
            c.validate()
                .expect_err("bad owner")
                .0
                .contains("owner role nobody")
        );
        let mut c = Catalog::named("default").expect("catalog");
        c.roles[0].permissions = vec!["iam".into()];
        assert!(
            c.validate()
                .expect_err("bad pattern")
                .0
                .contains("invalid permission pattern")
        );
        let mut c = Catalog::named("default").expect("catalog");
        c.roles[0].id = "orgs/acme/roles/sneaky".into();
        assert!(
            c.validate().is_err(),
            "a catalog cannot define custom-role ids"
        );
        assert!(Catalog::named("aws").is_err());
    }

    #[test]
    fn custom_roles_resolve_against_registered_permissions() {
        let catalog = Arc::new(Catalog::named("default").expect("catalog"));
        let custom = RoleDef {
            id: "orgs/acme/roles/bucket-reader".into(),
            kind: RoleKind::Custom,
            description: String::new(),
            permissions: vec!["object-storage.buckets.*".into()],
            exclude: vec![],
            deprecated: None,
            protected: false,
        };
        let api = vec![
            Permission {
                name: "object-storage.buckets.read".into(),
                description: String::new(),
            },
            Permission {
                name: "object-storage.objects.read".into(),
                description: String::new(),
            },
        ];
        let r =
            Roles::resolve(catalog.clone(), &api, std::slice::from_ref(&custom)).expect("resolve");
        let role = r.get(&custom.id).expect("custom");
        assert!(role.inherits());
        assert_eq!(role.org.as_deref(), Some("orgs/acme"));
        assert_eq!(
            r.permission_names(role),
            vec!["object-storage.buckets.read"]
        );
        let published = r.published(None);
        assert!(
            !published.to_string().contains("bucket-reader"),
            "custom roles only to their org"
        );
        assert!(
            r.published(Some("orgs/acme"))
                .to_string()
                .contains("bucket-reader")
        );
        let mut bad = custom.clone();
        bad.id = "bucket-reader".into();
        assert!(Roles::resolve(catalog, &api, &[bad]).is_err());
    }
}

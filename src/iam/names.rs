//! Resource names and the reach rule.
//!
//! A resource's name is its path: `orgs/acme`, `orgs/acme/folders/eu/projects/shop`,
//! `orgs/acme/projects/backend/envs/prod`; its ancestors are its prefixes. The
//! instance root is written `*`. Resource servers may name their own objects beneath
//! a gatehouse name; the reach rule covers them by the same prefix test.

/// The instance root.
pub const ROOT: &str = "*";

/// The kinds of the resource tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Top level.
    Organization,
    /// Optional grouping; may nest.
    Folder,
    /// Holds environments and the resource servers' objects.
    Project,
    /// A stage of a project.
    Environment,
}

impl Kind {
    /// The path segment that introduces this kind.
    pub fn segment(self) -> &'static str {
        match self {
            Kind::Organization => "orgs",
            Kind::Folder => "folders",
            Kind::Project => "projects",
            Kind::Environment => "envs",
        }
    }

    /// The stored name of the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Organization => "organization",
            Kind::Folder => "folder",
            Kind::Project => "project",
            Kind::Environment => "environment",
        }
    }

    /// Parses a stored kind name.
    pub fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "organization" => Kind::Organization,
            "folder" => Kind::Folder,
            "project" => Kind::Project,
            "environment" => Kind::Environment,
            _ => return None,
        })
    }

    fn from_segment(s: &str) -> Option<Kind> {
        Some(match s {
            "orgs" => Kind::Organization,
            "folders" => Kind::Folder,
            "projects" => Kind::Project,
            "envs" => Kind::Environment,
            _ => return None,
        })
    }

    /// Whether a resource of this kind may be a child of `parent` (`None`: the root).
    pub fn allowed_under(self, parent: Option<Kind>) -> bool {
        matches!(
            (parent, self),
            (None, Kind::Organization)
                | (
                    Some(Kind::Organization | Kind::Folder),
                    Kind::Folder | Kind::Project
                )
                | (Some(Kind::Project), Kind::Environment)
        )
    }
}

/// Whether `slug` is a valid slug: `[a-z0-9][a-z0-9-]{1,62}`.
pub fn valid_slug(slug: &str) -> bool {
    let b = slug.as_bytes();
    (2..=63).contains(&b.len())
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// A parsed gatehouse resource name: its kind, its parent's name and its slug.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed<'a> {
    /// The resource's kind.
    pub kind: Kind,
    /// The parent's name; `None` for organizations.
    pub parent: Option<&'a str>,
    /// The last segment.
    pub slug: &'a str,
    /// The organization the resource belongs to (`orgs/<slug>`).
    pub org: &'a str,
}

/// Parses and validates a gatehouse resource name (not a resource server's object
/// name): alternating kind segments and slugs, in an order the tree allows.
pub fn parse(name: &str) -> Option<Parsed<'_>> {
    let parts: Vec<&str> = name.split('/').collect();
    if parts.len() < 2 || !parts.len().is_multiple_of(2) {
        return None;
    }
    let mut parent_kind = None;
    let mut kind = Kind::Organization;
    for pair in parts.chunks(2) {
        kind = Kind::from_segment(pair[0])?;
        if !valid_slug(pair[1]) || !kind.allowed_under(parent_kind) {
            return None;
        }
        parent_kind = Some(kind);
    }
    let slug = parts[parts.len() - 1];
    let parent = (parts.len() > 2)
        .then(|| &name[..name.len() - slug.len() - pair_len(parts[parts.len() - 2])]);
    let org_len = parts[0].len() + 1 + parts[1].len();
    Some(Parsed {
        kind,
        parent,
        slug,
        org: &name[..org_len],
    })
}

fn pair_len(segment: &str) -> usize {
    // "/<segment>/" between the parent and the slug
    segment.len() + 2
}

/// Whether `inner` is `outer` or lies beneath it (the root contains everything).
pub fn within(inner: &str, outer: &str) -> bool {
    outer == ROOT
        || inner == outer
        || (inner.len() > outer.len()
            && inner.starts_with(outer)
            && inner.as_bytes()[outer.len()] == b'/')
}

/// Whether `ancestor` is a proper ancestor of `name` (the root is everyone's).
pub fn is_proper_ancestor(ancestor: &str, name: &str) -> bool {
    ancestor != name && within(name, ancestor)
}

/// The reach rule: a binding at `scope` reaches `resource` when they are the same, or
/// when the role inherits and `scope` is a proper ancestor of `resource`.
pub fn reaches(scope: &str, inherits: bool, resource: &str) -> bool {
    scope == resource || (inherits && is_proper_ancestor(scope, resource))
}

/// Every name a binding could be stored at that reaches `name`: the root, each prefix
/// ending at a `/`, and the name itself.
pub fn scopes_reaching(name: &str) -> impl Iterator<Item = &str> {
    let prefixes = name
        .char_indices()
        .filter(|(_, c)| *c == '/')
        .map(move |(i, _)| &name[..i]);
    std::iter::once(ROOT)
        .chain(prefixes)
        .chain((name != ROOT).then_some(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_only_in_tree_order() {
        let p = parse("orgs/acme/folders/eu/folders/de/projects/shop/envs/prod").expect("valid");
        assert_eq!(p.kind, Kind::Environment);
        assert_eq!(p.slug, "prod");
        assert_eq!(
            p.parent,
            Some("orgs/acme/folders/eu/folders/de/projects/shop")
        );
        assert_eq!(p.org, "orgs/acme");
        let p = parse("orgs/acme").expect("valid");
        assert_eq!(
            (p.kind, p.parent, p.org),
            (Kind::Organization, None, "orgs/acme")
        );
        assert_eq!(
            parse("orgs/acme/projects/backend").expect("valid").parent,
            Some("orgs/acme")
        );
        for bad in [
            "",
            "orgs",
            "orgs/",
            "orgs/a",
            "orgs/Acme",
            "projects/x1",
            "orgs/acme/envs/prod",
            "orgs/acme/projects/p1/folders/f1",
            "orgs/acme/projects/p1/projects/p2",
            "orgs/acme/buckets/b1",
            "orgs/acme/",
            "orgs/acme//projects/p1",
            "orgs/../x",
            "orgs/acme/orgs/other",
            "*",
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn reach_follows_prefixes_at_segment_boundaries() {
        assert!(reaches("orgs/test", true, "orgs/test/projects/backend"));
        assert!(reaches("orgs/test", false, "orgs/test"));
        assert!(!reaches("orgs/test", false, "orgs/test/projects/backend"));
        assert!(
            !reaches("orgs/test", true, "orgs/testing"),
            "a prefix is not an ancestor"
        );
        assert!(!reaches("orgs/test", true, "orgs/testing/projects/x"));
        assert!(reaches(ROOT, true, "orgs/anything/projects/x"));
        assert!(reaches(ROOT, false, ROOT));
        assert!(!reaches(ROOT, false, "orgs/a"));
        assert!(
            reaches("orgs/a/projects/b", true, "orgs/a/projects/b/buckets/logs"),
            "resource servers' objects"
        );
        assert!(!reaches("orgs/a/projects/b", true, "orgs/a"));
    }

    #[test]
    fn scopes_reaching_lists_root_prefixes_and_self() {
        let got: Vec<&str> = scopes_reaching("orgs/a/projects/b").collect();
        assert_eq!(
            got,
            vec![
                "*",
                "orgs",
                "orgs/a",
                "orgs/a/projects",
                "orgs/a/projects/b"
            ]
        );
        assert_eq!(scopes_reaching(ROOT).collect::<Vec<_>>(), vec!["*"]);
    }
}

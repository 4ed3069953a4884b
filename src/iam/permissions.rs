//! Permissions, `service.resource.verb`, interned to small integers, and the wildcard
//! patterns roles use: segment by segment, `*` matches one segment, a trailing `*`
//! matches the rest (`*`, `object-storage.*`, `*.*.get`).

use std::collections::HashMap;

/// A registered permission.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize, utoipa::ToSchema)]
pub struct Permission {
    /// `service.resource.verb`.
    pub name: String,
    /// What it allows.
    #[serde(default)]
    pub description: String,
}

/// Whether `name` is a well-formed permission name: three segments of
/// `[a-zA-Z0-9-]`, the first starting with a letter.
pub fn valid_name(name: &str) -> bool {
    let segs: Vec<&str> = name.split('.').collect();
    segs.len() == 3
        && segs.iter().all(|s| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        && segs[0].as_bytes()[0].is_ascii_alphabetic()
}

/// Whether `pattern` is a well-formed pattern: one to three segments, each a name
/// segment or `*`.
pub fn valid_pattern(pattern: &str) -> bool {
    let segs: Vec<&str> = pattern.split('.').collect();
    (1..=3).contains(&segs.len())
        && segs.iter().all(|s| {
            *s == "*"
                || (!s.is_empty()
                    && s.len() <= 64
                    && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        })
        && (segs.len() == 3 || segs.last() == Some(&"*"))
}

/// Whether `pattern` matches the permission `name`.
pub fn matches(pattern: &str, name: &str) -> bool {
    let mut p = pattern.split('.').peekable();
    let mut n = name.split('.');
    while let Some(seg) = p.next() {
        let last = p.peek().is_none();
        match n.next() {
            None => return false,
            Some(_) if seg == "*" && last => return true,
            Some(part) if seg == "*" || seg == part => {}
            Some(_) => return false,
        }
    }
    n.next().is_none()
}

/// A set of permissions as a bitset over a [`Registry`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PermSet(Vec<u64>);

impl PermSet {
    /// Adds permission `id`.
    pub fn insert(&mut self, id: u32) {
        let (word, bit) = (id as usize / 64, id % 64);
        if self.0.len() <= word {
            self.0.resize(word + 1, 0);
        }
        self.0[word] |= 1 << bit;
    }

    /// Whether `id` is in the set.
    pub fn contains(&self, id: u32) -> bool {
        let (word, bit) = (id as usize / 64, id % 64);
        self.0.get(word).is_some_and(|w| w & (1 << bit) != 0)
    }

    /// Adds every member of `other`.
    pub fn union_with(&mut self, other: &PermSet) {
        if self.0.len() < other.0.len() {
            self.0.resize(other.0.len(), 0);
        }
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a |= b;
        }
    }

    /// Whether every member of `self` is in `other`.
    pub fn is_subset(&self, other: &PermSet) -> bool {
        self.0
            .iter()
            .enumerate()
            .all(|(i, w)| w & !other.0.get(i).copied().unwrap_or(0) == 0)
    }

    /// The members, ascending.
    pub fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().enumerate().flat_map(|(i, w)| {
            (0..64u32)
                .filter(move |b| w & (1 << b) != 0)
                .map(move |b| i as u32 * 64 + b)
        })
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }
}

/// The registered permissions, interned.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    list: Vec<Permission>,
    ids: HashMap<String, u32>,
}

impl Registry {
    /// Registers a permission (again: keeps the first description); returns its id.
    pub fn add(&mut self, p: Permission) -> u32 {
        if let Some(id) = self.ids.get(&p.name) {
            return *id;
        }
        let id = self.list.len() as u32;
        self.ids.insert(p.name.clone(), id);
        self.list.push(p);
        id
    }

    /// The id of a registered permission.
    pub fn id(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    /// The permission with this id.
    pub fn get(&self, id: u32) -> Option<&Permission> {
        self.list.get(id as usize)
    }

    /// Every registered permission.
    pub fn all(&self) -> &[Permission] {
        &self.list
    }

    /// The permissions matching any of `include` and none of `exclude`.
    pub fn resolve(&self, include: &[String], exclude: &[String]) -> PermSet {
        let mut set = PermSet::default();
        for (id, p) in self.list.iter().enumerate() {
            if include.iter().any(|pat| matches(pat, &p.name))
                && !exclude.iter().any(|pat| matches(pat, &p.name))
            {
                set.insert(id as u32);
            }
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_by_segment() {
        let cases = [
            ("*", "iam.policies.set", true),
            ("object-storage.*", "object-storage.buckets.read", true),
            ("object-storage.*", "object-storage-x.buckets.read", false),
            ("*.*.get", "resourcemanager.projects.get", true),
            ("*.*.get", "resourcemanager.projects.getter", false),
            ("iam.*.get", "iam.users.get", true),
            ("iam.policies.*", "iam.policies.set", true),
            ("iam.policies.set", "iam.policies.set", true),
            ("iam.policies.set", "iam.policies.get", false),
            ("iam.policies", "iam.policies.set", false),
            ("iam.*", "iamx.policies.set", false),
        ];
        for (pattern, name, want) in cases {
            assert_eq!(matches(pattern, name), want, "{pattern} vs {name}");
        }
    }

    #[test]
    fn names_and_patterns_are_validated() {
        assert!(valid_name("object-storage.buckets.read"));
        for bad in ["a.b", "a.b.c.d", "a..c", "1a.b.c", "a.b.c ", "a.*.c", ""] {
            assert!(!valid_name(bad), "{bad}");
        }
        for ok in ["*", "iam.*", "*.*.get", "iam.users.get", "iam.*.*"] {
            assert!(valid_pattern(ok), "{ok}");
        }
        for bad in ["iam", "iam.users", "**", "iam.us*rs.get", "a.b.c.d", ""] {
            assert!(!valid_pattern(bad), "{bad}");
        }
    }

    #[test]
    fn resolution_re_runs_against_newly_registered_permissions() {
        let mut r = Registry::default();
        r.add(Permission {
            name: "iam.users.get".into(),
            description: String::new(),
        });
        let pats = vec!["*.*.get".to_string()];
        assert_eq!(r.resolve(&pats, &[]).ids().count(), 1);
        let id = r.add(Permission {
            name: "dns.zones.get".into(),
            description: String::new(),
        });
        let set = r.resolve(&pats, &[]);
        assert!(
            set.contains(id),
            "a wildcard covers permissions registered later"
        );
        assert!(
            r.resolve(&["*".into()], &["dns.*".into()])
                .ids()
                .all(|i| i != id)
        );
    }

    #[test]
    fn bitsets() {
        let mut a = PermSet::default();
        a.insert(3);
        a.insert(130);
        let mut b = a.clone();
        b.insert(7);
        assert!(a.is_subset(&b) && !b.is_subset(&a));
        assert_eq!(b.ids().collect::<Vec<_>>(), vec![3, 7, 130]);
        assert!(PermSet::default().is_subset(&a));
        assert!(!a.contains(4) && a.contains(130) && !a.contains(10_000));
    }
}

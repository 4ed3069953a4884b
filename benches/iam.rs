//! `cargo bench --bench iam`: the evaluator on a generated instance of 100,000 users,
//! 10,000 projects in folders three deep, 5,000 groups and 1,000,000 bindings.
//!
//! Printed first (one pass each): check latency p50/p99 over 200,000 single timed
//! checks, the same at ten times the bindings (9,000,000 more, on principals the
//! checks never ask about), memory per binding, and the time to load the 1,000,000
//! bindings from SQLite as a node does at start. Then criterion measures checks per
//! second and the narrowed roles claim of a principal with 1,000 bindings.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use criterion::{Criterion, Throughput};
use gatehouse::iam::catalog::{Catalog, Roles};
use gatehouse::iam::claim::roles_claim;
use gatehouse::iam::evaluator::{
    BindingInput, Evaluator, MembershipInput, PrincipalInput, PrincipalKind, PrincipalRef,
};
use gatehouse::iam::permissions::Permission;

const USERS: usize = 100_000;
const ORGS: usize = 100;
const PROJECTS_PER_ORG: usize = 100;
const GROUPS_PER_ORG: usize = 50;
const MEMBERS_PER_GROUP: usize = 20;
const BINDINGS_PER_GROUP: usize = 20;
const NOW: i64 = 1_800_000_000;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn project(org: usize, p: usize) -> String {
    // folders three deep: a (4 per org) / b (5 per a) / c (5 per b), one project in each c... and more
    format!(
        "orgs/org-{org:03}/folders/a-{}/folders/b-{}/folders/c-{}/projects/p-{p:03}",
        p % 4,
        (p / 4) % 5,
        (p / 20) % 5
    )
}

fn folder_of(project: &str) -> &str {
    &project[..project.find("/projects/").unwrap_or(project.len())]
}

fn org_name(org: usize) -> String {
    format!("orgs/org-{org:03}")
}

const ROLES: &[&str] = &[
    "viewer",
    "editor",
    "object-storage.reader",
    "project.member",
    "owner",
];

struct Instance {
    principals: Vec<PrincipalInput>,
    memberships: Vec<MembershipInput>,
    bindings: Vec<BindingInput>,
}

fn id(n: u128) -> String {
    uuid::Uuid::from_u128(n).to_string()
}

/// 100,000 users in 100 organizations; each user has up to 9 direct bindings in its
/// organization (about 900,000; duplicates are skipped as the store would), each
/// organization 50 groups of 20 users with up to 20 bindings each (about 100,000);
/// `extra` more bindings go to principals never checked.
fn generate(extra: usize) -> Instance {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut principals = Vec::with_capacity(USERS + 1);
    let mut memberships = Vec::new();
    let mut bindings = Vec::with_capacity(1_000_000 + extra + 1000);
    let mut n: u128 = 1;
    // the store keeps one binding per (scope, role, principal)
    let mut seen = std::collections::HashSet::new();
    for u in 0..USERS {
        principals.push(PrincipalInput {
            principal: PrincipalRef::user(format!("u{u}")),
            active: true,
        });
        let org = u % ORGS;
        for _ in 0..9 {
            let p = project(org, rng.below(PROJECTS_PER_ORG));
            let scope = match rng.below(4) {
                0 => folder_of(&p).to_owned(),
                _ => p,
            };
            let role = ROLES[rng.below(ROLES.len() - 1)];
            if !seen.insert((scope.clone(), role, format!("u{u}"))) {
                continue;
            }
            bindings.push(BindingInput {
                id: id(n),
                scope,
                role: role.into(),
                principal: PrincipalRef::user(format!("u{u}")),
                expires_at: None,
            });
            n += 1;
        }
    }
    for org in 0..ORGS {
        for g in 0..GROUPS_PER_ORG {
            let gid = format!("g{org}-{g}");
            for m in 0..MEMBERS_PER_GROUP {
                let user = (rng.below(USERS / ORGS)) * ORGS + org;
                let _ = m;
                memberships.push(MembershipInput {
                    group: gid.clone(),
                    member: PrincipalRef::user(format!("u{user}")),
                });
            }
            for _ in 0..BINDINGS_PER_GROUP {
                let scope = project(org, rng.below(PROJECTS_PER_ORG));
                let role = ROLES[rng.below(ROLES.len())];
                if !seen.insert((scope.clone(), role, gid.clone())) {
                    continue;
                }
                bindings.push(BindingInput {
                    id: id(n),
                    scope,
                    role: role.into(),
                    principal: PrincipalRef::group(gid.clone()),
                    expires_at: None,
                });
                n += 1;
            }
        }
    }
    // the principal with 1,000 bindings, for the claim
    principals.push(PrincipalInput {
        principal: PrincipalRef::user("heavy"),
        active: true,
    });
    for i in 0..1000 {
        bindings.push(BindingInput {
            id: id(n),
            scope: project(i % ORGS, i / ORGS),
            role: ROLES[i % 4].into(),
            principal: PrincipalRef::user("heavy"),
            expires_at: None,
        });
        n += 1;
    }
    for i in 0..extra {
        bindings.push(BindingInput {
            id: id(n),
            scope: project(i % ORGS, (i / ORGS) % PROJECTS_PER_ORG),
            role: ROLES[i % ROLES.len()].into(),
            principal: PrincipalRef::service_account(format!("unrelated-{}", i % 500_000)),
            expires_at: None,
        });
        n += 1;
    }
    Instance {
        principals,
        memberships,
        bindings,
    }
}

fn roles() -> Arc<Roles> {
    let api: Vec<Permission> = [
        "object-storage.buckets.read",
        "object-storage.buckets.create",
        "object-storage.objects.read",
    ]
    .iter()
    .map(|p| Permission {
        name: (*p).into(),
        description: String::new(),
    })
    .collect();
    Arc::new(
        Roles::resolve(
            Arc::new(Catalog::named("default").expect("catalog")),
            &api,
            &[],
        )
        .expect("roles"),
    )
}

fn build(i: &Instance) -> Evaluator {
    Evaluator::build(roles(), &i.principals, &i.memberships, &i.bindings).expect("build")
}

const PERMS: &[&str] = &[
    "object-storage.buckets.read",
    "resourcemanager.projects.update",
    "iam.policies.set",
    "object-storage.objects.read",
];

/// 10,000 (user, permission, resource) questions about the checked users.
fn queries() -> Vec<(String, &'static str, String)> {
    let mut rng = Rng(42);
    (0..10_000)
        .map(|_| {
            let u = rng.below(USERS);
            let org = u % ORGS;
            let resource = format!(
                "{}/buckets/b{}",
                project(org, rng.below(PROJECTS_PER_ORG)),
                rng.below(10)
            );
            (format!("u{u}"), PERMS[rng.below(PERMS.len())], resource)
        })
        .collect()
}

fn percentiles(ev: &Evaluator, q: &[(String, &'static str, String)]) -> (f64, f64, f64) {
    let mut samples = Vec::with_capacity(200_000);
    let mut allowed = 0usize;
    for round in 0..20 {
        for (u, p, r) in q {
            let t = Instant::now();
            let ok = ev.check(PrincipalKind::User, u, p, r, NOW);
            samples.push(t.elapsed().as_nanos() as f64);
            if round == 0 && ok {
                allowed += 1;
            }
        }
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    let at =
        |f: f64| samples[((samples.len() as f64 * f) as usize).min(samples.len() - 1)] / 1000.0;
    (at(0.50), at(0.99), allowed as f64 / q.len() as f64)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn sqlite_load(i: &Instance) -> (f64, f64) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("gatehouse.db").display());
        let store = gatehouse::store::Store::connect(&url, 4)
            .await
            .expect("connect");
        store.migrate().await.expect("migrate");
        let started = Instant::now();
        let mut tx = store.begin().await.expect("begin");
        for p in &i.principals {
            if p.principal.kind == PrincipalKind::User {
                gatehouse::store::iam::insert_user(
                    &mut tx,
                    &gatehouse::store::iam::UserRow {
                        id: p.principal.id.clone(),
                        email: format!("{}@bench.test", p.principal.id),
                        display_name: String::new(),
                        password_hash: None,
                        email_verified: true,
                        disabled: false,
                    },
                )
                .await
                .expect("user");
            }
        }
        for b in &i.bindings {
            gatehouse::store::iam::insert_binding(
                &mut tx,
                &gatehouse::store::iam::BindingRow {
                    id: b.id.clone(),
                    scope: b.scope.clone(),
                    role: b.role.clone(),
                    principal_kind: b.principal.kind.as_str().into(),
                    principal_id: b.principal.id.clone(),
                    expires_at: b.expires_at,
                },
            )
            .await
            .expect("binding");
        }
        tx.commit().await.expect("commit");
        let written = started.elapsed().as_secs_f64();
        let catalog = Arc::new(Catalog::named("default").expect("catalog"));
        let started = Instant::now();
        let ev = gatehouse::server::sync::load_evaluator(&store, &catalog)
            .await
            .expect("load");
        let load = started.elapsed().as_secs_f64();
        assert_eq!(ev.binding_count(), i.bindings.len());
        (written, load)
    })
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    // IAM_BENCH_QUICK=1 skips the SQLite load and the 10 M instance.
    let quick = std::env::var_os("IAM_BENCH_QUICK").is_some();

    let before = rss_kib();
    let instance = generate(0);
    let inputs = rss_kib();
    let started = Instant::now();
    let ev = build(&instance);
    let built = started.elapsed().as_secs_f64();
    let after = rss_kib();
    let q = queries();
    let (p50, p99, share) = percentiles(&ev, &q);
    println!(
        "iam evaluator on {} bindings, {} users, {} projects, {} groups",
        ev.binding_count(),
        USERS,
        ORGS * PROJECTS_PER_ORG,
        ORGS * GROUPS_PER_ORG
    );
    println!(
        "  build in memory: {built:.2} s; memory: {:.0} bytes per binding (evaluator only; inputs {:.0} MiB)",
        (after.saturating_sub(inputs)) as f64 * 1024.0 / ev.binding_count() as f64,
        (inputs.saturating_sub(before)) as f64 / 1024.0
    );
    println!(
        "  check latency over 200,000 timed checks: p50 {p50:.2} us, p99 {p99:.2} us ({:.0}% allowed)",
        share * 100.0
    );

    if !quick {
        let (written, load) = sqlite_load(&instance);
        println!(
            "  SQLite: wrote {} bindings in {written:.1} s; loaded them into the evaluator in {load:.2} s",
            instance.bindings.len()
        );
    }

    let mut group = c.benchmark_group("evaluator");
    group.throughput(Throughput::Elements(q.len() as u64));
    group.bench_function("check, 1M bindings (10,000 checks)", |b| {
        b.iter(|| {
            for (u, p, r) in &q {
                black_box(ev.check(PrincipalKind::User, u, p, r, NOW));
            }
        })
    });
    group.throughput(Throughput::Elements(1));
    group.bench_function("roles claim, 1,000 bindings, narrowed to a folder", |b| {
        let folder = folder_of(&project(7, 0)).to_owned();
        b.iter(|| {
            black_box(
                roles_claim(
                    &ev,
                    PrincipalKind::User,
                    "heavy",
                    &[folder.as_str()],
                    "*",
                    NOW,
                )
                .expect("claim"),
            )
        })
    });
    group.bench_function(
        "roles claim, 1,000 bindings, narrowed to an organization",
        |b| {
            let org = org_name(7);
            b.iter(|| {
                black_box(
                    roles_claim(&ev, PrincipalKind::User, "heavy", &[org.as_str()], "*", NOW)
                        .expect("claim"),
                )
            })
        },
    );
    group.finish();
    drop(ev);
    drop(instance);

    if !quick {
        let big = generate(9_000_000);
        let ev = build(&big);
        let (p50, p99, _) = percentiles(&ev, &q);
        println!(
            "  with 9,000,000 unrelated bindings more ({} in all): p50 {p50:.2} us, p99 {p99:.2} us",
            ev.binding_count()
        );
        let mut group = c.benchmark_group("evaluator");
        group.throughput(Throughput::Elements(q.len() as u64));
        group.bench_function("check, 10M bindings (10,000 checks)", |b| {
            b.iter(|| {
                for (u, p, r) in &q {
                    black_box(ev.check(PrincipalKind::User, u, p, r, NOW));
                }
            })
        });
        group.finish();
    }
    c.final_summary();
}

//! `cargo bench --bench iam`: the evaluator on a generated instance of 100,000 users,
//! 10,000 projects in folders three deep, 5,000 groups and 1,000,000 bindings.
//!
//! Printed first (one pass each): check latency p50/p99 over 200,000 single timed
//! checks, the same at ten times the bindings (9,000,000 more, on principals the
//! checks never ask about), memory per binding, and the time to load the 1,000,000
//! bindings from SQLite as a node does at start. Then criterion measures checks per
//! second and the narrowed roles claim of a principal with 1,000 bindings.

mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use common::dataset::{
    self, GROUPS_PER_ORG, Instance, PROJECTS_PER_ORG, USERS, USERS_PER_ORG, api_permissions,
    folder_of, generate, org_name, project, queries,
};
use criterion::{Criterion, Throughput};
use gatehouse::iam::catalog::{Catalog, Roles};
use gatehouse::iam::claim::roles_claim;
use gatehouse::iam::evaluator::{Evaluator, PrincipalKind};

const NOW: i64 = 1_800_000_000;

fn roles() -> Arc<Roles> {
    Arc::new(
        Roles::resolve(
            Arc::new(Catalog::named("default").expect("catalog")),
            &api_permissions(),
            &[],
        )
        .expect("roles"),
    )
}

fn build(i: &Instance) -> Evaluator {
    Evaluator::build(roles(), &i.principals, &i.memberships, &i.bindings).expect("build")
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
        dataset::write(&mut tx, i).await.expect("write");
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
    let instance = generate(USERS, 0);
    let inputs = rss_kib();
    let started = Instant::now();
    let ev = build(&instance);
    let built = started.elapsed().as_secs_f64();
    let after = rss_kib();
    let q = queries(USERS);
    let (p50, p99, share) = percentiles(&ev, &q);
    println!(
        "iam evaluator on {} bindings, {} users, {} projects, {} groups",
        ev.binding_count(),
        USERS,
        USERS / USERS_PER_ORG * PROJECTS_PER_ORG,
        USERS / USERS_PER_ORG * GROUPS_PER_ORG
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
            "  SQLite: wrote {} bindings ({} users, {} groups, {} memberships) in {written:.1} s; loaded them into the evaluator in {load:.2} s",
            instance.bindings.len(),
            instance.principals.len(),
            instance.groups.len(),
            instance.memberships.len()
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
        let big = generate(USERS, 9_000_000);
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

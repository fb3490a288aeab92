//! Benchmark of the Git backend against a real `git daemon` on 127.0.0.1 (started by
//! `scripts/git-server`): a repository of 10,000 manifest files holding 1,000 tracked image
//! references. One measured run discovers them all, rewrites all 1,000, commits once and
//! pushes; the time of each phase is printed, and criterion measures discovery.

#[path = "../crates/keel-git/tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use keel_core::target::{ApplyOutcome, Target, UpdatePlan};
use keel_git::GitTarget;
use support::GitServer;

const FILES: usize = 10_000;
const TRACKED: usize = 1_000;

fn manifest(i: usize) -> String {
    let marker = if i.is_multiple_of(FILES / TRACKED) {
        format!(" # {{\"$imagepolicy\": \"flux-system:app-{i}\"}}")
    } else {
        String::new()
    };
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app-{i}\n  labels:\n    team: t{}\nspec:\n  replicas: 2\n  template:\n    spec:\n      containers:\n        - name: app\n          image: ghcr.io/acme/app-{i}:1.0.0{marker}\n          ports:\n            - containerPort: 8080\n",
        i % 17
    )
}

fn config() -> String {
    let mut c = String::from("policies:\n");
    for i in (0..FILES).step_by(FILES / TRACKED) {
        c.push_str(&format!("  flux-system:app-{i}: minor\n"));
    }
    c
}

fn git_repo(c: &mut Criterion) {
    let server = GitServer::start();
    let contents: Vec<(String, String)> = (0..FILES)
        .map(|i| (format!("apps/team-{}/app-{i}.yaml", i % 50), manifest(i)))
        .chain([(".keel.yaml".to_owned(), config())])
        .collect();
    let files: Vec<(&str, &str)> = contents
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    server.create_repo("fleet", &files, "main");
    let rt = tokio::runtime::Runtime::new().expect("runtime");

    // One full run, phase by phase.
    let target = GitTarget::builder(server.git_url("fleet"))
        .with_workdir(server.scratch_dir("bench"))
        .build();
    let started = Instant::now();
    let tracked = rt.block_on(target.discover()).expect("discover");
    let discovered = started.elapsed();
    assert_eq!(tracked.len(), TRACKED);
    let plans: Vec<UpdatePlan> = tracked
        .iter()
        .map(|t| UpdatePlan {
            target: target.name().to_owned(),
            id: t.id.clone(),
            current: t.image.clone(),
            new: t.image.with_tag("1.1.0".parse().expect("valid tag")),
        })
        .collect();
    let started = Instant::now();
    let results = rt.block_on(target.apply_all(&plans));
    let applied = started.elapsed();
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Ok(ApplyOutcome::Applied)))
    );
    assert_eq!(
        server.log("fleet", "main").len(),
        2,
        "one commit for the run"
    );
    eprintln!(
        "git: {FILES} files, {TRACKED} references: discover (clone + scan) {:.0} ms; \
         apply (fetch + rescan + rewrite {TRACKED} + commit + push) {:.0} ms; total {:.0} ms",
        discovered.as_secs_f64() * 1e3,
        applied.as_secs_f64() * 1e3,
        (discovered + applied).as_secs_f64() * 1e3,
    );

    let mut group = c.benchmark_group("git");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    group.bench_function("discover/10k-files-1k-references", |b| {
        b.iter(|| {
            let tracked = rt.block_on(target.discover()).expect("discover");
            assert_eq!(tracked.len(), TRACKED);
        });
    });
    group.finish();
}

criterion_group!(benches, git_repo);
criterion_main!(benches);

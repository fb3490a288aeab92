//! Benchmark of the Git backend against a real `git daemon` on 127.0.0.1 (started by
//! `scripts/git-server`): a repository of 10,000 manifest files holding 1,000 tracked image
//! references. One measured run discovers them all, rewrites all 1,000, commits once and
//! pushes; the time of each phase is printed, and criterion measures discovery.
//!
//! A second group measures what a 1 KiB "billion laughs" file committed to a watched path
//! costs: scanning it alone (time, and every byte it allocates), and discovering a small
//! served repository with and without it.

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use keel_core::target::{ApplyOutcome, Target, UpdatePlan};
use keel_git::GitTarget;
use keel_git::manifest::{self, RepoConfig};
use keel_testsupport::git::GitServer;
use keel_testsupport::yaml::{billion_laughs, merge_bomb};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

/// Counts the bytes the Rust side allocates (libgit2's own allocations are not counted).
#[global_allocator]
static ALLOCATOR: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

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

fn alias_bombs(c: &mut Criterion) {
    let config = RepoConfig::default();
    let bombs = [
        ("billion-laughs", billion_laughs()),
        ("merge-keys", merge_bomb()),
    ];
    for (name, text) in &bombs {
        assert!(text.len() <= 1024, "{name}: {} bytes", text.len());
        let region = Region::new(ALLOCATOR);
        let started = Instant::now();
        let found = manifest::scan("apps/bomb.yaml", text, &config);
        let took = started.elapsed();
        let allocated = region.change().bytes_allocated;
        assert!(found.references.is_empty() && found.warnings.len() == 1);
        eprintln!(
            "git: {name} bomb ({} bytes): scan {:.3} ms, {allocated} bytes allocated in all; {}",
            text.len(),
            took.as_secs_f64() * 1e3,
            found.warnings[0]
        );
    }

    let server = GitServer::start();
    let web = "image: ghcr.io/acme/web:1.2.3 # {\"$imagepolicy\": \"flux-system:web\"}\n";
    let config_file = "policies:\n  flux-system:web: minor\n";
    server.create_repo(
        "clean",
        &[("apps/web.yaml", web), (".keel.yaml", config_file)],
        "main",
    );
    server.create_repo(
        "bombed",
        &[
            ("apps/web.yaml", web),
            ("apps/bomb.yaml", &bombs[0].1),
            ("apps/merge-bomb.yaml", &bombs[1].1),
            (".keel.yaml", config_file),
        ],
        "main",
    );
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let clean = GitTarget::builder(server.git_url("clean"))
        .with_workdir(server.scratch_dir("clean"))
        .build();
    let bombed = GitTarget::builder(server.git_url("bombed"))
        .with_workdir(server.scratch_dir("bombed"))
        .build();

    let mut group = c.benchmark_group("git/alias-bomb");
    for (name, text) in &bombs {
        group.bench_function(format!("scan/{name}-1KiB"), |b| {
            b.iter(|| manifest::scan("apps/bomb.yaml", text, &config));
        });
    }
    for (name, target) in [("clean", &clean), ("with-both-bombs", &bombed)] {
        group.bench_function(format!("discover/small-repo-{name}"), |b| {
            b.iter(|| {
                let tracked = rt.block_on(target.discover()).expect("discover");
                assert_eq!(tracked.len(), 1);
            });
        });
    }
    group.finish();
}

criterion_group!(benches, alias_bombs, git_repo);
criterion_main!(benches);

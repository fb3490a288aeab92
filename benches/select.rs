//! Benchmarks of version selection: `Policy::select` over large tag lists.
//!
//! `cargo bench -p keel-benches` reports the time of one selection and, through the element
//! throughput, the time per tag.

use std::hint::black_box;
use std::time::Duration;

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use keel_benches::{official_tags, realistic_tags};
use keel_core::policy::{Candidate, Current, Policy, PolicyOptions, SelectInput, VersionPolicy};

/// One benchmarked case: a label, the policy and the tag the image runs now.
struct Case {
    label: &'static str,
    policy: VersionPolicy,
    current: &'static str,
}

fn case(label: &'static str, policy: &str, options: &PolicyOptions, current: &'static str) -> Case {
    let policy = VersionPolicy::parse(policy, options)
        .unwrap_or_else(|e| panic!("bad benchmark policy {policy:?}: {e}"));
    Case {
        label,
        policy,
        current,
    }
}

fn cases() -> Vec<Case> {
    let defaults = PolicyOptions::default();
    let build_numbers = PolicyOptions {
        filter: Some(r"^build-(?P<n>\d+)$".into()),
        extract: Some("$n".into()),
        ..PolicyOptions::default()
    };
    vec![
        case("minor", "minor", &defaults, "1.2.3"),
        case("semver ^1", "semver:^1", &defaults, "1.2.3"),
        case(
            "regexp compare",
            r"regexp:^main-(?P<compare>\d+)-[0-9a-f]+$",
            &defaults,
            "main-1000-abcdef01",
        ),
        case("docker", "docker", &defaults, "3.11-slim"),
        case(
            "numerical extract",
            "numerical",
            &build_numbers,
            "build-100",
        ),
    ]
}

/// Times `case` selecting from `candidates` under `id`.
fn bench_case(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    id: BenchmarkId,
    case: &Case,
    candidates: &[Candidate<'_>],
) {
    group.throughput(Throughput::Elements(candidates.len() as u64));
    group.bench_function(id, |b| {
        b.iter(|| {
            let input = SelectInput::new(Current::tag(case.current), black_box(candidates));
            black_box(case.policy.select(&input))
        })
    });
}

fn generated(c: &mut Criterion) {
    let cases = cases();
    let mut group = c.benchmark_group("select");
    for n in [10_000, 100_000, 1_000_000] {
        let tags = realistic_tags(n, 0x6b65_656c);
        let candidates: Vec<Candidate<'_>> = tags.iter().map(|t| Candidate::new(t)).collect();
        if n >= 1_000_000 {
            group
                .sampling_mode(SamplingMode::Flat)
                .warm_up_time(Duration::from_millis(500))
                .measurement_time(Duration::from_secs(2));
        } else {
            group
                .sampling_mode(SamplingMode::Auto)
                .warm_up_time(Duration::from_millis(500))
                .measurement_time(Duration::from_secs(1));
        }
        for case in &cases {
            bench_case(
                &mut group,
                BenchmarkId::new(case.label, n),
                case,
                &candidates,
            );
        }
    }
    group.finish();
}

fn official(c: &mut Criterion) {
    let Some(tags) = official_tags() else {
        eprintln!("official-images tag list not found; skipping the `select-official` group");
        return;
    };
    let candidates: Vec<Candidate<'_>> = tags.iter().map(|t| Candidate::new(t)).collect();
    let mut group = c.benchmark_group("select-official");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(1));
    for case in cases().iter().take(2) {
        bench_case(
            &mut group,
            BenchmarkId::new(case.label, candidates.len()),
            case,
            &candidates,
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).nresamples(10_000);
    targets = generated, official
}
criterion_main!(benches);

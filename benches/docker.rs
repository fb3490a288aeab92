//! Benchmark of the Docker-host backend: 50 tracked containers on a real engine
//! (`scripts/docker install`; started here as a throw-away `dockerd`), pulling from a real
//! registry through a request-counting proxy. Without `dockerd` it prints how to get it and
//! measures nothing.
//!
//! Setup, not measured: 10 repositories with a `1.0.0` and a `latest` tag, and 50 containers
//! on them: half with `keel.sh/policy: minor`, half without a policy (following `latest`'s
//! digest, as under Watchtower). Plus one container `edge` of its own repository, the one
//! that gets new tags.
//!
//! - `docker/poll_cycle_50`: one `Pipeline::run_once` over the 51 containers at steady state
//!   (each already runs what its policy allows). Prints the registry requests of one cycle.
//! - `docker/new_tag_to_running`: a new patch tag of `edge` is pushed (not timed), then one
//!   poll cycle runs until `edge` has been recreated on it and has run for the startup grace
//!   (1 s, part of the figure).
//!
//! The process's memory is printed after the setup and after the cycles. With
//! `KEEL_DOCKER_BIN` naming a built `keel-docker`, it is also started over the same engine
//! (polling every 5 s) and its resident memory is printed once it has settled.

use std::cell::Cell;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use keel_benches::measure::{format_counts, memory, print_memory, rss_of, settled};
use keel_core::{Pipeline, Target as _};
use keel_docker::DockerTarget;
use keel_registry::RegistryClient;
use keel_testsupport::docker::{DockerEngine, ImageSpec};
use keel_testsupport::registry::{FaultProxy, RegistryServer, ServerOptions};
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

#[global_allocator]
static ALLOCATOR: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

const CONTAINERS: usize = 50;
const REPOS: usize = 10;

fn have_dockerd() -> bool {
    Command::new("sh")
        .args(["-c", "command -v dockerd"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Counts the proxy's requests by kind: tag lists, manifests, blobs.
fn request_kinds(log: &[String]) -> String {
    let mut kinds = std::collections::BTreeMap::<String, usize>::new();
    for line in log {
        let (method, path) = line.split_once(' ').unwrap_or((line, ""));
        let kind = if path.contains("/tags/list") {
            "tags/list"
        } else if path.contains("/manifests/") {
            "manifests"
        } else if path.contains("/blobs/") {
            "blobs"
        } else {
            "other"
        };
        *kinds.entry(format!("{method} {kind}")).or_default() += 1;
    }
    format_counts(&kinds)
}

fn bench(c: &mut Criterion) {
    if !have_dockerd() {
        eprintln!("docker bench: no dockerd; run scripts/docker install first");
        return;
    }
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let engine = DockerEngine::start();
    let registry = rt.block_on(RegistryServer::start(ServerOptions::plain()));
    let proxy = rt.block_on(FaultProxy::start(registry.addr(), Vec::new()));
    let started = Instant::now();
    for r in 0..REPOS {
        let repo = format!("bench/svc-{r}");
        let spec = ImageSpec::server("1.0.0");
        engine.build_and_push(registry.addr(), &repo, "1.0.0", &spec);
        engine.build_and_push(registry.addr(), &repo, "latest", &spec);
    }
    engine.build_and_push(
        registry.addr(),
        "bench/edge",
        "1.0.0",
        &ImageSpec::server("1.0.0"),
    );
    // The containers name the proxy, so that the engine's pulls and keel-rs's listings both
    // go through it.
    for i in 0..CONTAINERS {
        let image = format!("{}/bench/svc-{}", proxy.addr(), i % REPOS);
        let name = format!("svc-{i:02}");
        if i % 2 == 0 {
            engine.run_container(&[
                "--name",
                &name,
                "--label",
                "keel.sh/policy=minor",
                &format!("{image}:1.0.0"),
            ]);
        } else {
            engine.run_container(&["--name", &name, &format!("{image}:latest")]);
        }
    }
    let edge = format!("{}/bench/edge", proxy.addr());
    engine.run_container(&[
        "--name",
        "edge",
        "--label",
        "keel.sh/policy=patch",
        &format!("{edge}:1.0.0"),
    ]);
    eprintln!(
        "docker bench: {} containers started in {:.1}s",
        CONTAINERS + 1,
        started.elapsed().as_secs_f64()
    );

    let before = memory();
    print_memory("before the target", before);
    let socket = engine.host().trim_start_matches("unix://").to_owned();
    let docker = keel_docker::bollard::Docker::connect_with_unix(
        &socket,
        60,
        keel_docker::bollard::API_DEFAULT_VERSION,
    )
    .expect("docker client");
    let target = DockerTarget::builder(docker)
        .startup_grace(Duration::from_secs(1))
        .build()
        .expect("target");
    let tracked = rt.block_on(target.discover()).expect("discover");
    assert_eq!(tracked.len(), CONTAINERS + 1);
    let client = RegistryClient::builder()
        .with_requests_per_second(0.0)
        .with_cache_ttl(Duration::ZERO)
        .build()
        .expect("registry client");
    let pipeline = Pipeline::new(Arc::new(client)).with_target(Arc::new(target));

    proxy.reset_counts();
    let report = settled(rt.block_on(pipeline.run_once()));
    eprintln!(
        "docker bench: one steady-state cycle over {} containers: {} registry requests ({})",
        report.tracked,
        proxy.log().len(),
        request_kinds(&proxy.log())
    );

    let mut group = c.benchmark_group("docker");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.bench_function("poll_cycle_50", |b| {
        b.iter(|| {
            let report = rt.block_on(pipeline.run_once());
            assert!(report.planned.is_empty());
        });
    });
    let patch = Cell::new(0u32);
    group.bench_function("new_tag_to_running", |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                patch.set(patch.get() + 1);
                let tag = format!("1.0.{}", patch.get());
                engine.build_and_push(
                    registry.addr(),
                    "bench/edge",
                    &tag,
                    &ImageSpec::server(&tag),
                );
                let start = Instant::now();
                let report = rt.block_on(pipeline.run_once());
                total += start.elapsed();
                assert_eq!(report.applied.len(), 1, "{:?}", report.failures);
            }
            total
        });
    });
    group.finish();
    print_memory("after the cycles", memory());

    if let Ok(bin) = std::env::var("KEEL_DOCKER_BIN") {
        let mut child = Command::new(bin)
            .args(["--interval", "5", "--startup-grace", "1s"])
            .env("DOCKER_HOST", engine.host())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("keel-docker");
        std::thread::sleep(Duration::from_secs(30));
        eprintln!(
            "docker bench: keel-docker over {} containers, settled: VmRSS {} KiB",
            CONTAINERS + 1,
            rss_of(child.id()).map_or("n/a".into(), |k| k.to_string())
        );
        let _ = child.kill();
        let _ = child.wait();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);

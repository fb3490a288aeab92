//! Benchmarks of the registry backend against a real registry on 127.0.0.1 (started by
//! `scripts/registry-server`; run `scripts/registry-server install` first):
//!
//! - `poll-cycle`: one pipeline pass over 200 tracked images spread across 20 repositories
//!   (180 on `minor`, 20 on `digest`), with a fresh client each time. Before measuring it
//!   prints the HTTP requests one cycle makes, counted by a proxy in front of the registry:
//!   the goal is exactly 20 tag listings and 20 manifest `HEAD`s (the digest-tracked tags).
//! - `list-10k`: listing a 10,000-tag repository from a paginating registry, 1,000 tags a page.
//! - `newest-build`: a pass over a 1,000-tag repository tracked with `newest-build`, the first
//!   (every tag's metadata read, eight at a time) and a steady-state one (metadata cached by
//!   tag and digest). Before measuring it prints the requests of each, counted by a proxy: the
//!   goal is the listing plus the metadata of each tag in the first pass, and the listing plus
//!   one `HEAD` confirming the chosen tag's digest in a steady-state pass.

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::StreamExt;
use keel_core::memory::InMemoryTarget;
use keel_core::{ImageRef, Pipeline, Registry};
use keel_registry::RegistryClient;
use keel_testsupport::registry::{FaultProxy, RegistryServer, ServerOptions};

const REPOS: usize = 20;
const IMAGES_PER_REPO: usize = 10;

fn client() -> RegistryClient {
    RegistryClient::builder()
        .with_requests_per_second(0.0)
        .with_concurrent_requests(16)
        .build()
        .expect("client")
}

fn poll_cycle(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (server, proxy, target) = rt.block_on(async {
        let server = RegistryServer::start(ServerOptions::plain()).await;
        let tags: Vec<String> = (0..3)
            .flat_map(|major| (0..10).map(move |minor| format!("{major}.{minor}.0")))
            .chain(["latest".to_owned(), "1.0.0-rc.1".to_owned()])
            .collect();
        for r in 0..REPOS {
            server.push_tags(&format!("bench/app-{r}"), &tags).await;
        }
        let proxy = FaultProxy::start(server.addr(), Vec::new()).await;
        let target = Arc::new(InMemoryTarget::new("bench"));
        for r in 0..REPOS {
            for i in 0..IMAGES_PER_REPO {
                let image = format!("{}/bench/app-{r}:1.0.0", proxy.addr());
                let policy = if i == 0 { "digest" } else { "minor" };
                target
                    .track(&format!("app-{r}-{i}"), &image, policy)
                    .expect("valid image and policy");
            }
        }
        (server, proxy, target)
    });

    let cycle = |target: Arc<InMemoryTarget>| async move {
        let report = Pipeline::new(Arc::new(client()))
            .with_target(target)
            .with_dry_run(true)
            .with_concurrency(8)
            .run_once()
            .await;
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        // Every image moves: `minor` to 1.9.0, `digest` to its tag pinned at its digest.
        assert_eq!(report.planned.len(), REPOS * IMAGES_PER_REPO);
        report
    };
    rt.block_on(async {
        proxy.reset_counts();
        cycle(target.clone()).await;
        let listings = proxy.count("GET", "/tags/list");
        let heads = proxy.count("HEAD", "/manifests/");
        eprintln!(
            "poll cycle over {} images in {REPOS} repositories: {} HTTP requests \
             ({listings} tag listings, {heads} manifest HEADs, {} other)",
            REPOS * IMAGES_PER_REPO,
            proxy.total(),
            proxy.total() - listings - heads,
        );
        assert_eq!(listings, REPOS, "one listing per repository");
        assert_eq!(heads, REPOS, "one HEAD per digest-tracked image");
        assert_eq!(proxy.total(), 2 * REPOS, "nothing but listings and HEADs");
    });

    let mut group = c.benchmark_group("registry");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(5));
    group.bench_function("poll-cycle/200-images-20-repos", |b| {
        b.iter(|| rt.block_on(cycle(target.clone())));
    });
    group.finish();
    drop((proxy, server));
}

fn list_10k(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (server, repo) = rt.block_on(async {
        let server = RegistryServer::start(ServerOptions::paginating()).await;
        let tags: Vec<String> = (0..10_000)
            .map(|i| format!("1.{}.{}", i / 100, i % 100))
            .collect();
        server.push_tags("bench/big", &tags).await;
        let repo = ImageRef::parse(&format!("{}/bench/big", server.addr())).expect("valid");
        (server, repo)
    });
    let mut group = c.benchmark_group("registry");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(10_000));
    group.bench_function("list-10k-tags/pages-of-1000", |b| {
        b.iter(|| {
            rt.block_on(async {
                let client = RegistryClient::builder()
                    .with_requests_per_second(0.0)
                    .with_page_size(1000)
                    .build()
                    .expect("client");
                let list = client.list_tags(&repo).await.expect("listing");
                assert_eq!((list.tags.len(), list.truncated), (10_000, false));
                // Ten full pages; a server may link a full last page to an empty one.
                assert!((10..=11).contains(&client.stats().tag_pages));
            })
        });
    });
    group.finish();
    drop(server);
}

const BUILDS: usize = 1000;

fn newest_build(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (server, proxy, target) = rt.block_on(async {
        let server = RegistryServer::start(ServerOptions::plain()).await;
        let pushes = (0..BUILDS).map(|i| {
            let server = &server;
            async move {
                let created = format!(
                    "2024-01-{:02}T{:02}:{:02}:00Z",
                    1 + i / 600,
                    (i / 60) % 10,
                    i % 60
                );
                server
                    .push_image(
                        "bench/builds",
                        &format!("main-{i:04}"),
                        created,
                        "linux/amd64",
                    )
                    .await
            }
        });
        futures::stream::iter(pushes)
            .buffer_unordered(8)
            .collect::<Vec<_>>()
            .await;
        let proxy = FaultProxy::start(server.addr(), Vec::new()).await;
        let target = Arc::new(InMemoryTarget::new("bench"));
        let policy = keel_core::VersionPolicy::parse(
            "newest-build",
            &keel_core::PolicyOptions {
                filter: Some("^main-".into()),
                ..keel_core::PolicyOptions::default()
            },
        )
        .expect("valid policy");
        target
            .track_policy(
                "builds",
                &format!("{}/bench/builds:main-0000", proxy.addr()),
                Arc::new(policy),
            )
            .expect("valid image");
        (server, proxy, target)
    });
    // No listing cache: a poll interval is longer than the client's cache lifetime.
    let uncached = || {
        RegistryClient::builder()
            .with_requests_per_second(0.0)
            .with_concurrent_requests(16)
            .with_cache_ttl(Duration::ZERO)
            .build()
            .expect("client")
    };
    let pipeline = || {
        Pipeline::new(Arc::new(uncached()))
            .with_target(target.clone())
            .with_dry_run(true)
    };
    let pass = |pipeline: Pipeline| async move {
        let report = pipeline.run_once().await;
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        let newest = format!("main-{:04}", BUILDS - 1);
        assert_eq!(
            report.planned[0].plan.new.tag().map(|t| t.as_str()),
            Some(newest.as_str())
        );
    };
    let steady = pipeline();
    rt.block_on(async {
        proxy.reset_counts();
        pass(steady.clone()).await;
        let first = proxy.total();
        let (listings, gets) = (
            proxy.count("GET", "/tags/list"),
            proxy.count("GET", "/manifests/"),
        );
        let blobs = proxy.count("GET", "/blobs/");
        let heads = proxy.count("HEAD", "/manifests/");
        eprintln!(
            "newest-build over {BUILDS} tags, first pass: {first} HTTP requests ({listings} \
             listing, {gets} manifest GETs, {blobs} config GETs, {heads} HEADs)"
        );
        assert_eq!((listings, gets, blobs, heads), (1, BUILDS, BUILDS, 1));
        proxy.reset_counts();
        pass(steady.clone()).await;
        let (listings, heads) = (
            proxy.count("GET", "/tags/list"),
            proxy.count("HEAD", "/manifests/"),
        );
        eprintln!(
            "newest-build over {BUILDS} tags, steady-state pass: {} HTTP requests ({listings} \
             listing, {heads} HEAD)",
            proxy.total()
        );
        assert_eq!((proxy.total(), listings, heads), (2, 1, 1));
    });

    let mut group = c.benchmark_group("registry");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    group.bench_function("newest-build/1000-tags/first-pass", |b| {
        b.iter(|| rt.block_on(pass(pipeline())));
    });
    group.bench_function("newest-build/1000-tags/steady-state-pass", |b| {
        b.iter(|| rt.block_on(pass(steady.clone())));
    });
    group.finish();
    drop((proxy, server));
}

criterion_group!(benches, poll_cycle, list_10k, newest_build);
criterion_main!(benches);

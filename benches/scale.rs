//! The fleet both scale benches (`k8s`, `helm`) run against, and their common steps: a real
//! registry with the service, proxy and webhook repositories, the namespaces, the registry
//! client, the criterion group and the steady-state poll cycle. It installs the instrumented
//! allocator whose live heap [`keel_benches::measure::memory`] reads.

use std::cell::Cell;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, SamplingMode};
use keel_core::{ImageRef, Pipeline, RunReport};
use keel_registry::RegistryClient;
use keel_testsupport::kube::ApiServer;
use keel_testsupport::registry::{RegistryServer, ServerOptions};
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};
use tokio::runtime::Runtime;

#[global_allocator]
static ALLOCATOR: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

/// The tags of every service repository, `bench/svc-NN`.
pub(crate) const SERVICE_TAGS: [&str; 4] = ["1.0.0", "1.1.0", "1.2.0", "2.0.0"];
/// What the services run: the newest tag `minor` and `patch` allow.
pub(crate) const SERVICE_RUNS: &str = "1.2.0";
/// The repository of the proxy sidecars.
pub(crate) const PROXY_REPO: &str = "bench/proxy";
pub(crate) const PROXY_TAGS: [&str; 3] = ["3.0.0", "3.1.0", "4.0.0"];
pub(crate) const PROXY_RUNS: &str = "3.1.0";
/// The repository of the one workload or release the webhook bench updates.
pub(crate) const HOOK_REPO: &str = "bench/edge";
pub(crate) const HOOK_FIRST: &str = "1.0.0";

/// The repository of service `i` of `repos`.
pub(crate) fn service_repo(i: usize, repos: usize) -> String {
    format!("bench/svc-{:02}", i % repos)
}

/// The runtime the benches drive their async parts on.
pub(crate) fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A registry with `service_repos` service repositories, the proxy's and the webhook's.
pub(crate) async fn seeded_registry(service_repos: usize) -> RegistryServer {
    let registry = RegistryServer::start(ServerOptions::plain()).await;
    for r in 0..service_repos {
        registry
            .push_tags(&service_repo(r, service_repos), &SERVICE_TAGS)
            .await;
    }
    registry.push_tags(PROXY_REPO, &PROXY_TAGS).await;
    registry.push_tags(HOOK_REPO, &[HOOK_FIRST]).await;
    registry
}

/// `n` fresh namespaces of `api`.
pub(crate) async fn namespaces(api: &ApiServer, n: usize) -> Vec<String> {
    let mut list = Vec::new();
    for _ in 0..n {
        list.push(api.namespace("bench").await);
    }
    list
}

/// The registry client as a controller serving webhooks runs it: no tag-list cache across
/// passes, so every pass lists each of its repositories once.
pub(crate) fn registry_client() -> RegistryClient {
    RegistryClient::builder()
        .with_requests_per_second(0.0)
        .with_concurrent_requests(16)
        .with_cache_ttl(Duration::ZERO)
        .build()
        .expect("registry client")
}

/// The name of the webhook's repository in the registry at `addr`.
pub(crate) fn hook_name(addr: &str) -> String {
    ImageRef::parse(&format!("{addr}/{HOOK_REPO}:{HOOK_FIRST}"))
        .expect("valid image")
        .name()
}

/// A group of few, flat samples (every iteration is a whole pass), measured for `measure`.
pub(crate) fn group<'c>(
    c: &'c mut Criterion,
    name: &str,
    measure: Duration,
) -> BenchmarkGroup<'c, WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(measure);
    group
}

/// One pass before measuring: nothing may fail, and nothing is to do anywhere.
pub(crate) fn settled_pass(rt: &Runtime, pipeline: &Pipeline) -> RunReport {
    keel_benches::measure::settled(rt.block_on(pipeline.run_once()))
}

/// Benches `name`: one `Pipeline::run_once` at steady state, which must neither fail nor plan
/// anything; returns how many cycles ran.
pub(crate) fn bench_steady_poll(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    rt: &Runtime,
    pipeline: &Pipeline,
) -> u64 {
    let cycles = Cell::new(0u64);
    group.bench_function(name, |b| {
        b.iter(|| {
            let report = rt.block_on(pipeline.run_once());
            assert!(report.failures.is_empty(), "{:?}", report.failures);
            assert!(report.planned.is_empty(), "{:?}", report.planned);
            cycles.set(cycles.get() + 1);
        });
    });
    cycles.get()
}

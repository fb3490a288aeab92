//! Benchmark of the Kubernetes backend at scale: 1,000 tracked Deployments in a real API
//! server (etcd + kube-apiserver from `KUBE_APISERVER_BIN` and `ETCD_BIN`: run
//! `scripts/envtest install`, then `eval "$(scripts/envtest env)"`) and a real registry
//! (started by `scripts/registry-server`). Without the API server binaries it prints how to
//! get them and measures nothing.
//!
//! Setup, not measured by criterion but timed: the registry gets 50 repositories; 1,000
//! Deployments in 10 namespaces (`keel.sh/policy` `minor` or `patch`, `keel.sh/trigger:
//! poll`, half of them with a sidecar: 1,500 tracked containers) are created; a
//! [`KubeTarget`] over all namespaces is built on a request-counting client and discovers
//! them. The memory of the process is printed before the target is built and after its first
//! discovery: RSS and its high-water mark from `/proc/self/status`, and the live heap bytes
//! counted by the allocator. The difference is what the library's watch caches cost within
//! one process.
//!
//! - `k8s/poll_cycle_1000`: one `Pipeline::run_once` over all 1,000 workloads at steady state
//!   (every image already runs what its policy allows): discovery from the watch caches and
//!   one tag listing per repository. Afterwards it prints the API requests per cycle by verb
//!   and asserts the goal: none at all (no LIST, no GET, no PATCH).
//! - `k8s/webhook_to_patched`: the path of a webhook. A new tag is pushed to the repository
//!   of one workload (not timed); then the pass a webhook triggers (`run_filtered` over that
//!   repository's tracked images) patches the Deployment, and the time stops when a read
//!   through the API shows the new image. Each iteration pushes the next patch release, so
//!   each one really patches. Prints the mean, the fastest and the slowest, and the API
//!   requests per pass.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::Deployment;
use keel_benches::measure::{by_verb, format_counts, memory, print_growth, print_memory};
use keel_core::{Pipeline, Target as _, TrackedImage};
use keel_k8s::KubeTarget;
use keel_registry::{RegistryClient, RequestStats};
use keel_testsupport::kube::{ApiServer, RecordedRequest, RequestLog, Workload};
use kube::{Api, Client};

use self::scale::{HOOK_FIRST, HOOK_REPO, PROXY_REPO, PROXY_RUNS, SERVICE_RUNS, service_repo};

mod scale;

const NAMESPACES: usize = 10;
const WORKLOADS: usize = 1_000;
/// Repositories of the `app` containers; with the sidecar's and the webhook's, 50 in all.
const SERVICE_REPOS: usize = 48;
/// The one workload the webhook bench updates, of [`HOOK_REPO`].
const HOOK_WORKLOAD: &str = "edge";

/// One Deployment of the fleet.
struct Spec {
    name: String,
    policy: &'static str,
    /// (container, repository, tag)
    containers: Vec<(&'static str, String, &'static str)>,
}

/// The 1,000 Deployments: the webhook's workload first, then services on 48 repositories
/// (`minor`, every third `patch`), the odd ones with a sidecar. Every image runs the newest
/// tag its policy allows; each repository also has a newer major release.
fn fleet() -> Vec<Spec> {
    let mut fleet = vec![Spec {
        name: HOOK_WORKLOAD.to_owned(),
        policy: "minor",
        containers: vec![("app", HOOK_REPO.to_owned(), HOOK_FIRST)],
    }];
    for i in 1..WORKLOADS {
        let mut containers = vec![("app", service_repo(i, SERVICE_REPOS), SERVICE_RUNS)];
        if i % 2 == 1 {
            containers.push(("proxy", PROXY_REPO.to_owned(), PROXY_RUNS));
        }
        fleet.push(Spec {
            name: format!("svc-{i:04}"),
            policy: if i % 3 == 0 { "patch" } else { "minor" },
            containers,
        });
    }
    fleet
}

impl Spec {
    fn workload(&self, registry: &str) -> Workload {
        let mut workload = Workload::deployment(&self.name)
            .annotation("keel.sh/policy", self.policy)
            .annotation("keel.sh/trigger", "poll");
        for (name, repo, tag) in &self.containers {
            workload = workload.container(name, &format!("{registry}/{repo}:{tag}"));
        }
        workload
    }
}

fn tag_pages_since(client: &RegistryClient, before: &RequestStats) -> u64 {
    client.stats().tag_pages - before.tag_pages
}

/// The image of the `app` container of a Deployment, read through the API.
async fn app_image(client: &Client, namespace: &str, name: &str) -> String {
    let deployment = Api::<Deployment>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("get deployment {namespace}/{name}: {e}"));
    deployment
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|pod| pod.containers.into_iter().find(|c| c.name == "app"))
        .and_then(|c| c.image)
        .unwrap_or_default()
}

/// Waits until the target's caches show `id` running `tag` (watch events take a moment).
async fn wait_discovered(target: &KubeTarget, id: &str, tag: &str) {
    let started = Instant::now();
    loop {
        let images = target.discover().await.expect("discover");
        let seen = images
            .iter()
            .find(|i| i.id == id)
            .and_then(|i| i.image.tag())
            .map(|t| t.as_str().to_owned());
        if seen.as_deref() == Some(tag) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the watch did not bring {id} at {tag} within 30 s; the cache shows {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn k8s(c: &mut Criterion) {
    let start = memory();
    let rt = scale::runtime();
    // Prints how to get the binaries when they are not configured.
    let Some(api) = rt.block_on(ApiServer::start()) else {
        return;
    };
    eprintln!("k8s bench: {WORKLOADS} Deployments in {NAMESPACES} namespaces");

    let phase = Instant::now();
    let registry = rt.block_on(scale::seeded_registry(SERVICE_REPOS));
    let addr = registry.addr().to_owned();
    eprintln!(
        "  registry with {} repositories seeded in {:.1?}",
        SERVICE_REPOS + 2,
        phase.elapsed()
    );

    let phase = Instant::now();
    let fleet = fleet();
    let (admin, namespaces) = rt.block_on(async {
        let admin = api.admin_client();
        let namespaces = scale::namespaces(&api, NAMESPACES).await;
        futures::stream::iter(fleet.iter().enumerate())
            .map(|(i, spec)| {
                let (admin, ns, addr) = (&admin, &namespaces[i % NAMESPACES], &addr);
                async move { spec.workload(addr).create(admin, ns).await }
            })
            .buffer_unordered(16)
            .collect::<Vec<()>>()
            .await;
        (admin, namespaces)
    });
    let containers: usize = fleet.iter().map(|s| s.containers.len()).sum();
    eprintln!(
        "  {WORKLOADS} Deployments ({containers} containers) created in {:.1?}",
        phase.elapsed()
    );

    // The counting client exists before the first figure, so the difference is the target's.
    let (client, log): (Client, RequestLog) = rt.block_on(async { api.counting_admin_client() });
    let before = memory();
    let phase = Instant::now();
    let (target, first) = rt.block_on(async {
        let target = KubeTarget::builder(client)
            .with_name("bench cluster")
            .all_namespaces()
            .build()
            .await
            .expect("build the target");
        let built = phase.elapsed();
        let images = target.discover().await.expect("first discovery");
        eprintln!(
            "  target built in {built:.1?}; first discovery (initial LIST of every watch) \
             done {:.1?} after the start",
            phase.elapsed()
        );
        (Arc::new(target), images)
    });
    let after = memory();
    assert_eq!(first.len(), containers, "every container is tracked");
    assert!(target.problems().is_empty(), "{:?}", target.problems());
    eprintln!(
        "  setup requests of the target: {}",
        format_counts(&by_verb(&log.all()))
    );
    eprintln!("memory of this process (the library's cache cost within one process):");
    print_memory("at start", start);
    print_memory("before the target is built", before);
    print_memory(
        &format!("after the first discovery of {WORKLOADS} workloads"),
        after,
    );
    print_growth(before, after);

    let discoveries = 20;
    let discovery_time = rt.block_on(async {
        let started = Instant::now();
        for _ in 0..discoveries {
            let images = target.discover().await.expect("discover");
            assert_eq!(images.len(), containers);
        }
        started.elapsed() / discoveries
    });
    eprintln!(
        "  discovery from the caches alone: {discovery_time:.1?} per call ({containers} \
         containers, mean of {discoveries})"
    );

    let registry_client = scale::registry_client();
    let pipeline = Pipeline::new(Arc::new(registry_client.clone())).with_target(target.clone());
    // One cycle before measuring: nothing to do anywhere.
    let report = scale::settled_pass(&rt, &pipeline);
    assert_eq!(report.tracked, containers);
    assert_eq!(
        report.listings,
        SERVICE_REPOS + 2,
        "one listing per repository"
    );

    let mut group = scale::group(c, "k8s", Duration::from_secs(8));

    log.clear();
    let stats = registry_client.stats();
    let cycles = scale::bench_steady_poll(&mut group, "poll_cycle_1000", &rt, &pipeline).max(1);
    let requests = log.all();
    let counts = by_verb(&requests);
    let per_cycle: BTreeMap<String, String> = counts
        .iter()
        .filter(|(verb, _)| verb.as_str() != "WATCH")
        .map(|(verb, n)| (verb.clone(), format!("{:.2}", *n as f64 / cycles as f64)))
        .collect();
    eprintln!(
        "poll cycle at steady state ({cycles} cycles over {containers} containers): API \
         requests per cycle: {}; watch (re)connections in all: {}; registry tag pages per \
         cycle: {:.1}",
        format_counts(&per_cycle),
        counts.get("WATCH").copied().unwrap_or(0),
        tag_pages_since(&registry_client, &stats) as f64 / cycles as f64,
    );
    let non_watch: Vec<&RecordedRequest> = requests.iter().filter(|r| !r.is_watch()).collect();
    assert!(
        non_watch.is_empty(),
        "API requests at steady state (goal: none): {non_watch:?}"
    );

    let hook_name = scale::hook_name(&addr);
    let hook_ns = namespaces[0].clone();
    let hook_id = format!("deployment/{hook_ns}/{HOOK_WORKLOAD}/app");
    let next_patch = Cell::new(1u64);
    // (the webhook's pass, the pass and the read-back) of each iteration
    let samples: RefCell<Vec<(Duration, Duration)>> = RefCell::new(Vec::new());
    log.clear();
    group.bench_function("webhook_to_patched", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    let tag = format!("1.0.{}", next_patch.get());
                    next_patch.set(next_patch.get() + 1);
                    registry.push_tags(HOOK_REPO, &[&tag]).await;
                    let expected = format!("{addr}/{HOOK_REPO}:{tag}");

                    let started = Instant::now();
                    let filter = |image: &TrackedImage| image.image.name() == hook_name;
                    let report = pipeline.run_filtered(&filter).await;
                    let pass = started.elapsed();
                    assert!(report.failures.is_empty(), "{:?}", report.failures);
                    assert_eq!(report.tracked, 1, "one workload runs {hook_name}");
                    assert_eq!(report.applied.len(), 1, "{report:?}");
                    loop {
                        let image = app_image(&admin, &hook_ns, HOOK_WORKLOAD).await;
                        if image == expected {
                            break;
                        }
                        assert!(
                            started.elapsed() < Duration::from_secs(30),
                            "{hook_ns}/{HOOK_WORKLOAD} still runs {image}, not {expected}"
                        );
                    }
                    let elapsed = started.elapsed();
                    timed += elapsed;
                    samples.borrow_mut().push((pass, elapsed));

                    // Not timed: the next pass must start from the patched image.
                    wait_discovered(&target, &hook_id, &tag).await;
                }
                timed
            })
        });
    });
    group.finish();

    let samples = samples.into_inner();
    let passes = samples.len().max(1);
    let mean = |f: fn(&(Duration, Duration)) -> Duration| {
        samples.iter().map(f).sum::<Duration>() / passes as u32
    };
    let fastest = samples.iter().map(|s| s.1).min().unwrap_or_default();
    let slowest = samples.iter().map(|s| s.1).max().unwrap_or_default();
    let counts = by_verb(&log.all());
    eprintln!(
        "webhook to patched workload ({passes} passes): mean {:.1?} (the pass {:.1?}), \
         fastest {fastest:.1?}, slowest {slowest:.1?}; API requests of the target in all: {}",
        mean(|s| s.1),
        mean(|s| s.0),
        format_counts(&counts),
    );
    for verb in ["GET", "PATCH"] {
        assert_eq!(
            counts.get(verb).copied().unwrap_or(0),
            passes,
            "one {verb} per webhook pass: {counts:?}"
        );
    }
    assert!(!counts.contains_key("LIST"), "{counts:?}");
    print_memory("at the end", memory());

    // The watches stop before the servers do.
    drop((pipeline, target));
    drop(registry);
    drop(api);
}

criterion_group!(benches, k8s);
criterion_main!(benches);

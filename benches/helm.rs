//! Benchmark of the Helm provider: 100 releases of a small chart installed with the real
//! `helm` into a real API server (`scripts/envtest install` and `scripts/helm install`, then
//! `eval "$(scripts/envtest env)"; eval "$(scripts/helm env)"`), and a real registry. Without
//! the binaries it prints how to get them and measures nothing.
//!
//! Setup, timed but not measured by criterion: the registry gets 22 repositories; 100
//! releases in 5 namespaces (`keel.policy: minor`, poll-triggered, two images each: 200
//! tracked images) are installed; a [`HelmTarget`] over all namespaces is built on a
//! request-counting client and discovers them. The process's memory is printed before the
//! target is built and after its first discovery: the difference is what the watch caches
//! of Helm's storage cost.
//!
//! - `helm/poll_cycle_100`: one `Pipeline::run_once` over the 100 releases at steady state
//!   (every image already runs what its policy allows). Prints the API requests per cycle and
//!   asserts the goal: none.
//! - `helm/webhook_to_revision`: the pass a webhook for one repository triggers
//!   (`run_filtered`), with a new tag pushed before it (not timed), until `helm upgrade` has
//!   stored the new deployed revision. Each iteration pushes the next patch release.
//!
//! With `KEEL_CONTROLLER_BIN` naming a built `keel-controller`, it is also started with
//! `--helm` over the same releases, and its resident memory is printed once it has settled.

use std::cell::{Cell, RefCell};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use k8s_openapi::api::core::v1::Secret;
use keel_benches::measure::{by_verb, format_counts, memory, print_growth, print_memory, rss_of};
use keel_core::{Pipeline, Target as _, TrackedImage};
use keel_helm::{HelmBinary, HelmTarget};
use keel_testsupport::helm::{Helm, chart_dir, helm_bin};
use keel_testsupport::kube::{ADMIN, ApiServer, RecordedRequest};
use kube::Api;

use self::scale::{HOOK_FIRST, HOOK_REPO, PROXY_REPO, PROXY_RUNS, SERVICE_RUNS, service_repo};

mod scale;

const NAMESPACES: usize = 5;
const RELEASES: usize = 100;
const SERVICE_REPOS: usize = 20;
/// The one release the webhook bench upgrades, of [`HOOK_REPO`].
const HOOK_RELEASE: &str = "edge";

/// `--set` values of release `i`: the webhook's release first, then services.
fn release_values(i: usize, addr: &str) -> (String, Vec<(String, String)>) {
    let (name, repo, tag) = if i == 0 {
        (HOOK_RELEASE.to_owned(), HOOK_REPO.to_owned(), HOOK_FIRST)
    } else {
        (
            format!("svc-{i:03}"),
            service_repo(i, SERVICE_REPOS),
            SERVICE_RUNS,
        )
    };
    let set = vec![
        ("image.repository".to_owned(), format!("{addr}/{repo}")),
        ("image.tag".to_owned(), tag.to_owned()),
        (
            "sidecar.image".to_owned(),
            format!("{addr}/{PROXY_REPO}:{PROXY_RUNS}"),
        ),
    ];
    (name, set)
}

/// Installs the 100 releases, four helm processes at a time.
fn install_all(helm: &Helm, namespaces: &[String], addr: &str) {
    let chart = chart_dir("web");
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= RELEASES {
                        break;
                    }
                    let (name, set) = release_values(i, addr);
                    let set: Vec<(&str, &str)> =
                        set.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                    helm.install(&namespaces[i % NAMESPACES], &name, &chart, &set);
                }
            });
        }
    });
}

/// Starts `keel-controller --helm` over the releases (when `KEEL_CONTROLLER_BIN` is set) and
/// prints its resident memory after it has served for a while.
fn controller_memory(api: &ApiServer, helm: &Helm) {
    let Some(bin) = std::env::var_os("KEEL_CONTROLLER_BIN") else {
        eprintln!("  (set KEEL_CONTROLLER_BIN to a built keel-controller to measure its memory)");
        return;
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, api.kubeconfig_for(ADMIN)).expect("write kubeconfig");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let own_ns = "default";
    let mut child = Command::new(bin)
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--helm",
            "--leader-elect",
            "false",
            "--approval-store",
            "memory",
            "--controller-namespace",
            own_ns,
            "--resync",
            "5s",
        ])
        .envs(helm.env())
        .env("KUBECONFIG", &kubeconfig)
        .env("KEEL_HELM_BINARY", helm_bin().expect("HELM_BIN is set"))
        .env("KEEL_WEBHOOK_TOKEN", "bench")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .expect("start keel-controller");
    // Several passes over the 100 releases and the 400 workloads' caches.
    std::thread::sleep(Duration::from_secs(20));
    let rss = rss_of(child.id());
    eprintln!(
        "keel-controller --helm over {RELEASES} releases, after 20 s: VmRSS {}",
        keel_benches::measure::mib(rss)
    );
    let _ = child.kill();
    let _ = child.wait();
}

fn helm_bench(c: &mut Criterion) {
    let start = memory();
    let rt = scale::runtime();
    let Some(api) = rt.block_on(ApiServer::start()) else {
        return;
    };
    let Some(helm) = Helm::new(&api, ADMIN) else {
        return;
    };
    eprintln!("helm bench: {RELEASES} releases in {NAMESPACES} namespaces");

    let registry = rt.block_on(scale::seeded_registry(SERVICE_REPOS));
    let addr = registry.addr().to_owned();
    let namespaces = rt.block_on(scale::namespaces(&api, NAMESPACES));
    let phase = Instant::now();
    install_all(&helm, &namespaces, &addr);
    eprintln!("  {RELEASES} releases installed in {:.1?}", phase.elapsed());

    let (client, log) = rt.block_on(async { api.counting_admin_client() });
    let before = memory();
    let phase = Instant::now();
    let (target, first) = rt.block_on(async {
        let target = HelmTarget::builder(client)
            .with_name("bench helm")
            .with_helm(HelmBinary::at(helm_bin().expect("HELM_BIN is set")).with_env(helm.env()))
            .build()
            .await
            .expect("build the target");
        let images = target.discover().await.expect("first discovery");
        (Arc::new(target), images)
    });
    let after = memory();
    eprintln!(
        "  target built and first discovery done in {:.1?}; setup requests: {}",
        phase.elapsed(),
        format_counts(&by_verb(&log.all()))
    );
    assert_eq!(first.len(), 2 * RELEASES, "two images per release");
    assert!(target.problems().is_empty(), "{:?}", target.problems());
    eprintln!("memory of this process (the Helm provider's cache cost within one process):");
    print_memory("at start", start);
    print_memory("before the target is built", before);
    print_memory("after the first discovery", after);
    print_growth(before, after);

    let pipeline = Pipeline::new(Arc::new(scale::registry_client())).with_target(target.clone());
    scale::settled_pass(&rt, &pipeline);

    let mut group = scale::group(c, "helm", Duration::from_secs(6));

    log.clear();
    let cycles = scale::bench_steady_poll(&mut group, "poll_cycle_100", &rt, &pipeline);
    let requests: Vec<RecordedRequest> = log.all().into_iter().filter(|r| !r.is_watch()).collect();
    eprintln!(
        "poll cycle at steady state ({} cycles over {RELEASES} releases): API requests per \
         cycle: {}",
        cycles,
        format_counts(&by_verb(&requests))
    );
    assert!(
        requests.is_empty(),
        "API requests at steady state (goal: none): {requests:?}"
    );

    let hook_name = scale::hook_name(&addr);
    let hook_ns = namespaces[0].clone();
    let secrets: Api<Secret> = rt.block_on(async { Api::namespaced(api.admin_client(), &hook_ns) });
    let next_patch = Cell::new(1u64);
    let samples: RefCell<Vec<Duration>> = RefCell::new(Vec::new());
    group.bench_function("webhook_to_revision", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    let patch = next_patch.get();
                    next_patch.set(patch + 1);
                    registry
                        .push_tags(HOOK_REPO, &[&format!("1.0.{patch}")])
                        .await;
                    let started = Instant::now();
                    let filter = |image: &TrackedImage| image.image.name() == hook_name;
                    let report = pipeline.run_filtered(&filter).await;
                    let elapsed = started.elapsed();
                    assert!(report.failures.is_empty(), "{:?}", report.failures);
                    assert_eq!(report.applied.len(), 1, "{report:?}");
                    // helm upgrade returned: the new revision is stored as deployed.
                    let revision = patch + 1;
                    let stored = secrets
                        .get(&format!("sh.helm.release.v1.{HOOK_RELEASE}.v{revision}"))
                        .await
                        .expect("the new revision");
                    assert_eq!(
                        stored
                            .metadata
                            .labels
                            .unwrap_or_default()
                            .get("status")
                            .map(String::as_str),
                        Some("deployed")
                    );
                    timed += elapsed;
                    samples.borrow_mut().push(elapsed);
                    // Not timed: the next pass starts from the new revision.
                    let started = Instant::now();
                    while !target.discover().await.expect("discover").iter().any(|i| {
                        i.image.tag().map(|t| t.as_str().to_owned()) == Some(format!("1.0.{patch}"))
                    }) {
                        assert!(started.elapsed() < Duration::from_secs(30));
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
                timed
            })
        });
    });
    group.finish();
    let samples = samples.into_inner();
    let n = samples.len().max(1);
    eprintln!(
        "webhook to deployed revision ({n} passes): mean {:.1?}, fastest {:.1?}, slowest {:.1?}",
        samples.iter().sum::<Duration>() / n as u32,
        samples.iter().min().copied().unwrap_or_default(),
        samples.iter().max().copied().unwrap_or_default(),
    );
    print_memory("at the end", memory());

    controller_memory(&api, &helm);
    drop((pipeline, target));
    drop(registry);
    drop(api);
}

criterion_group!(benches, helm_bench);
criterion_main!(benches);

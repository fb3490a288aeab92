//! Leader election against a real API server: never two leaders, fast hand-over on release,
//! take-over only after a dead leader's lease expires, and stepping down when the lease is
//! taken away or cannot be renewed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::rbac::v1::RoleBinding;
use keel_k8s::{LeaderElector, Leadership};
use keel_testsupport::kube::{ApiServer, grant};
use kube::api::{Api, DeleteParams, PostParams};
use kube::{Client, ResourceExt};

const LEASE: Duration = Duration::from_secs(4);
const RENEW: Duration = Duration::from_secs(3);
const RETRY: Duration = Duration::from_millis(300);

fn elector(client: Client, ns: &str, identity: &str) -> Leadership {
    LeaderElector::new(client, ns, "keel-controller", identity)
        .with_lease_duration(LEASE)
        .with_renew_deadline(RENEW)
        .with_retry_period(RETRY)
        .start()
        .expect("valid timings")
}

async fn holder(client: &Client, ns: &str) -> Option<String> {
    let api: Api<Lease> = Api::namespaced(client.clone(), ns);
    api.get("keel-controller")
        .await
        .expect("lease exists")
        .spec
        .and_then(|s| s.holder_identity)
        .filter(|h| !h.is_empty())
}

/// Waits until `check` holds, up to `limit`; how long it took.
async fn within(limit: Duration, what: &str, check: impl Fn() -> bool) -> Duration {
    let started = Instant::now();
    while !check() {
        assert!(
            started.elapsed() < limit,
            "{what} did not happen within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

/// Samples both replicas every few milliseconds and records whether both ever led at once.
fn watch_for_two_leaders(
    a: tokio::sync::watch::Receiver<bool>,
    b: tokio::sync::watch::Receiver<bool>,
) -> (Arc<AtomicBool>, Arc<AtomicBool>) {
    let both = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let (both2, stop2) = (both.clone(), stop.clone());
    tokio::spawn(async move {
        while !stop2.load(Ordering::Relaxed) {
            if *a.borrow() && *b.borrow() {
                both2.store(true, Ordering::Relaxed);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    (both, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_one_of_two_replicas_leads_and_a_release_hands_over_fast() {
    let Some((server, ns, admin)) = ApiServer::shared_namespace("leader-handover").await else {
        return;
    };
    let a = elector(server.admin_client(), &ns, "replica-a");
    let b = elector(server.admin_client(), &ns, "replica-b");
    let (both, stop) = watch_for_two_leaders(a.subscribe(), b.subscribe());

    within(LEASE * 2, "a first leader", || {
        a.is_leader() || b.is_leader()
    })
    .await;
    // Both keep campaigning for a few renewals: the leader stays, the other waits.
    tokio::time::sleep(RENEW + RETRY * 3).await;
    assert!(a.is_leader() ^ b.is_leader(), "exactly one leads");
    let (leader, follower) = if a.is_leader() { (a, b) } else { (b, a) };
    assert_eq!(
        holder(&admin, &ns).await.as_deref(),
        Some(leader.identity())
    );

    // The leader releases on shutdown: the other takes over long before the lease expires.
    let released_at = Instant::now();
    leader.shutdown().await;
    within(LEASE, "the take-over after a release", || {
        follower.is_leader()
    })
    .await;
    let took = released_at.elapsed();
    assert!(took < LEASE, "take-over after release took {took:?}");
    assert_eq!(
        holder(&admin, &ns).await.as_deref(),
        Some(follower.identity())
    );
    let api: Api<Lease> = Api::namespaced(admin.clone(), &ns);
    let lease = api.get("keel-controller").await.unwrap();
    assert!(lease.spec.unwrap().lease_transitions.unwrap_or(0) >= 1);

    stop.store(true, Ordering::Relaxed);
    assert!(
        !both.load(Ordering::Relaxed),
        "both replicas led at the same time"
    );
    follower.shutdown().await;
    assert_eq!(
        holder(&admin, &ns).await,
        None,
        "shutdown clears the holder"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_leaders_lease_is_taken_over_only_once_it_expired() {
    let Some((server, ns, admin)) = ApiServer::shared_namespace("leader-expiry").await else {
        return;
    };
    // A leader that died without releasing: its lease names it, and nobody renews it.
    let lease: Lease = serde_json::from_value(serde_json::json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": { "name": "keel-controller" },
        "spec": {
            "holderIdentity": "crashed-replica",
            "leaseDurationSeconds": LEASE.as_secs(),
            "renewTime": k8s_openapi::jiff::Timestamp::now().to_string(),
            "acquireTime": k8s_openapi::jiff::Timestamp::now().to_string(),
            "leaseTransitions": 3,
        }
    }))
    .unwrap();
    Api::<Lease>::namespaced(admin.clone(), &ns)
        .create(&PostParams::default(), &lease)
        .await
        .unwrap();

    let started = Instant::now();
    let b = elector(server.admin_client(), &ns, "replica-b");
    let took = within(LEASE * 3, "the take-over of an expired lease", || {
        b.is_leader()
    })
    .await;
    assert!(
        took >= LEASE - RETRY,
        "took over a live lease after {took:?}"
    );
    assert!(
        started.elapsed() < LEASE + RETRY * 4,
        "take-over took {took:?}"
    );
    let spec = Api::<Lease>::namespaced(admin, &ns)
        .get("keel-controller")
        .await
        .unwrap()
        .spec
        .unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("replica-b"));
    assert_eq!(spec.lease_transitions, Some(4));
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_lease_is_stolen_steps_down_and_its_work_is_cancelled() {
    let Some((server, ns, admin)) = ApiServer::shared_namespace("leader-stolen").await else {
        return;
    };
    let a = Arc::new(elector(server.admin_client(), &ns, "replica-a"));

    let worker = {
        let a = a.clone();
        tokio::spawn(async move {
            a.run_while_leader(async {
                // Work that would go on forever while leading.
                std::future::pending::<()>().await;
            })
            .await
        })
    };
    within(LEASE * 2, "leadership", || a.is_leader()).await;
    // A leader's work that ends on its own returns its output.
    assert_eq!(a.run_while_leader(async { 7 }).await, Some(7));

    // An administrator hands the lease to someone else.
    let api: Api<Lease> = Api::namespaced(admin.clone(), &ns);
    let mut lease = api.get("keel-controller").await.unwrap();
    let spec = lease.spec.as_mut().unwrap();
    spec.holder_identity = Some("thief".into());
    spec.renew_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
        k8s_openapi::jiff::Timestamp::now(),
    ));
    let rv = lease.resource_version();
    // The leader may renew between our read and write: retry on conflict.
    let mut stolen = api
        .replace("keel-controller", &PostParams::default(), &lease)
        .await;
    for _ in 0..20 {
        if stolen.is_ok() {
            break;
        }
        let mut fresh = api.get("keel-controller").await.unwrap();
        let spec = fresh.spec.as_mut().unwrap();
        spec.holder_identity = Some("thief".into());
        stolen = api
            .replace("keel-controller", &PostParams::default(), &fresh)
            .await;
    }
    stolen.unwrap_or_else(|e| panic!("steal the lease (read at {rv:?}): {e}"));

    let took = within(RENEW, "stepping down", || !a.is_leader()).await;
    assert!(took <= RETRY * 3, "stepping down took {took:?}");
    let outcome = tokio::time::timeout(Duration::from_secs(1), worker)
        .await
        .expect("the work is cancelled when leadership is lost")
        .unwrap();
    assert_eq!(outcome, None);
    // The thief never renews: once its lease expires the replica leads again.
    within(LEASE * 2, "leadership again", || a.is_leader()).await;
    assert_eq!(holder(&admin, &ns).await.as_deref(), Some("replica-a"));
    Arc::into_inner(a).unwrap().shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_cannot_renew_steps_down_before_the_lease_expires() {
    let Some((server, ns, admin)) = ApiServer::shared_namespace("leader-renew").await else {
        return;
    };
    grant(
        &admin,
        &ns,
        "alice",
        &[(
            &["coordination.k8s.io"],
            &["leases"],
            &["get", "create", "update"],
        )],
    )
    .await;
    // RBAC reaches the authorizer through its own watch: retry until alice may lead.
    let a = elector(server.client_as("alice"), &ns, "replica-a");
    within(Duration::from_secs(15), "leadership", || a.is_leader()).await;

    // Alice loses her rights: renewals fail from now on.
    Api::<RoleBinding>::namespaced(admin.clone(), &ns)
        .delete("keel-test-alice", &DeleteParams::default())
        .await
        .unwrap();
    let revoked_at = Instant::now();
    within(LEASE, "stepping down", || !a.is_leader()).await;
    let took = revoked_at.elapsed();
    // Not before the renew deadline (the last renewal was at most one retry period before
    // the revocation), and before the lease could expire for anyone else.
    assert!(
        took + RETRY * 2 >= RENEW,
        "stepped down early, after {took:?}"
    );
    assert!(
        took < LEASE,
        "stepped down after {took:?}, when others may already lead"
    );
    a.shutdown().await;
}

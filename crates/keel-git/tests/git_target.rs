//! `GitTarget` against a real `git daemon` and `git http-backend` on 127.0.0.1.

use std::sync::Arc;

use keel_core::memory::InMemoryRegistry;
use keel_core::target::{ApplyOutcome, Target, UpdatePlan};
use keel_core::{Error, ImageRef, Pipeline, testkit};
use keel_git::{Checkout, GitAuth, GitTarget, GitTargetBuilder};
use keel_testsupport::assert_contains;
use keel_testsupport::git::GitServer;

const WEB: &str = "apps/web.yaml";
const WEB_YAML: &str = include_str!("fleet/apps/web.yaml");

const VALUES: &str = "charts/api/values.yaml";
const VALUES_YAML: &str = include_str!("fleet/charts/api/values.yaml");

const KUSTOMIZATION: &str = "clusters/prod/kustomization.yaml";
const KUSTOMIZATION_YAML: &str = include_str!("fleet/clusters/prod/kustomization.yaml");

const KEEL: &str = "apps/cache.yaml";
const KEEL_YAML: &str = include_str!("fleet/apps/cache.yaml");

const CONFIG_YAML: &str = include_str!("fleet/.keel.yaml");

fn files() -> Vec<(&'static str, &'static str)> {
    vec![
        (WEB, WEB_YAML),
        (VALUES, VALUES_YAML),
        (KUSTOMIZATION, KUSTOMIZATION_YAML),
        (KEEL, KEEL_YAML),
        (".keel.yaml", CONFIG_YAML),
        ("README.md", "not a manifest\n"),
    ]
}

fn registry() -> Arc<InMemoryRegistry> {
    let r = Arc::new(InMemoryRegistry::new("test registry"));
    r.push_tags("ghcr.io/acme/web", &["1.2.3", "1.2.4", "1.3.0", "2.0.0"]);
    r.push_tags("ghcr.io/acme/api", &["2.0.0", "2.1.0", "3.0.0"]);
    r.push_tags("ghcr.io/acme/worker", &["3.1.0", "4.0.0"]);
    r.push_tags("redis", &["7.2.3", "7.2.4", "7.4.0"]);
    r
}

fn target(server: &GitServer, repo: &str) -> GitTargetBuilder {
    GitTarget::builder(server.git_url(repo))
        .with_workdir(server.scratch_dir("workdir"))
        .with_author("keel-test", "keel-test@example.invalid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovers_and_updates_every_reference_form_byte_exactly() {
    let server = GitServer::start();
    server.create_repo("fleet", &files(), "main");
    let target = Arc::new(target(&server, "fleet").build());

    let tracked = target.discover().await.unwrap();
    let mut ids: Vec<String> = tracked.iter().map(|t| t.id.clone()).collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            "apps/cache.yaml#L12:redis",
            "apps/web.yaml#L10:flux-system:web",
            "charts/api/values.yaml#L3:flux-system:api",
            "clusters/prod/kustomization.yaml#L6:ghcr.io/acme/worker",
        ]
    );

    let report = Pipeline::new(registry())
        .with_target(target.clone())
        .run_once()
        .await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(report.applied.len(), 4);

    let read = |path| server.read_file("fleet", "main", path).unwrap();
    assert_eq!(read(WEB), WEB_YAML.replace("web:1.2.3", "web:1.3.0"));
    assert_eq!(read(VALUES), VALUES_YAML.replace("\"2.0.0\"", "\"2.1.0\""));
    assert_eq!(
        read(KUSTOMIZATION),
        KUSTOMIZATION_YAML.replace("'3.1.0'", "'4.0.0'")
    );
    assert_eq!(read(KEEL), KEEL_YAML.replace("7.2.3", "7.2.4"));

    // One commit for the run, by the configured author, listing every change.
    let log = server.log("fleet", "main");
    assert_eq!(log.len(), 2, "{log:?}");
    let message = server.show("fleet", &log[0].0, "%an <%ae>%n%B");
    assert!(
        message.starts_with("keel-test <keel-test@example.invalid>\nUpdate 4 image(s)"),
        "{message}"
    );
    assert!(
        message.contains("- ghcr.io/acme/web: 1.2.3 -> 1.3.0 (apps/web.yaml)"),
        "{message}"
    );

    // Nothing left to do: no change, no commit.
    let again = Pipeline::new(registry())
        .with_target(target.clone())
        .run_once()
        .await;
    assert!(again.planned.is_empty(), "{:?}", again.planned);
    assert_eq!(server.log("fleet", "main").len(), 2);
}

fn plan_for(target: &GitTarget, id: &str, from: &str, to: &str) -> UpdatePlan {
    UpdatePlan {
        target: target.name().to_owned(),
        id: id.to_owned(),
        current: ImageRef::parse(from).unwrap(),
        new: ImageRef::parse(to).unwrap(),
    }
}

/// What applying `plan` came to, in a word or two: `applied`, `already current`,
/// `conflict`, `not found`, or the whole result when it is something else.
async fn outcome(target: &GitTarget, plan: &UpdatePlan) -> String {
    match target.apply(plan).await {
        Ok(ApplyOutcome::Applied) => "applied".into(),
        Ok(ApplyOutcome::AlreadyCurrent) => "already current".into(),
        Err(Error::Conflict { .. }) => "conflict".into(),
        Err(Error::NotFound { .. }) => "not found".into(),
        other => format!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applying_twice_is_a_no_op_and_stale_plans_conflict() {
    let server = GitServer::start();
    server.create_repo("fleet", &files(), "main");
    let target = target(&server, "fleet").build();
    let id = "apps/web.yaml#L10:flux-system:web";
    let web_to = |to: &str| plan_for(&target, id, "ghcr.io/acme/web:1.2.3", to);
    let plan = web_to("ghcr.io/acme/web:1.3.0");
    assert_eq!(outcome(&target, &plan).await, "applied");
    assert_eq!(outcome(&target, &plan).await, "already current");
    assert_eq!(server.log("fleet", "main").len(), 2);

    let stale = web_to("ghcr.io/acme/web:1.2.4");
    assert_eq!(outcome(&target, &stale).await, "conflict");
    let unknown = plan_for(&target, "apps/none.yaml#L1:x", "a:1", "a:2");
    assert_eq!(outcome(&target, &unknown).await, "not found");
    assert_eq!(
        server.log("fleet", "main").len(),
        2,
        "a refused plan committed something"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_shows_the_diff_and_pushes_nothing() {
    let server = GitServer::start();
    server.create_repo("fleet", &files(), "main");
    let head = server.head("fleet", "main");
    let target = Arc::new(target(&server, "fleet").build());
    let report = Pipeline::new(registry())
        .with_target(target.clone())
        .with_dry_run(true)
        .run_once()
        .await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    let diff = &report.previews[target.name()];
    assert_contains(
        diff,
        &[
            "--- a/apps/web.yaml\n+++ b/apps/web.yaml\n",
            "-          image: ghcr.io/acme/web:1.2.3 # {\"$imagepolicy\": \"flux-system:web\"}\n+          image: ghcr.io/acme/web:1.3.0 # {\"$imagepolicy\": \"flux-system:web\"}\n",
            "-  tag: \"2.0.0\"",
        ],
    );
    assert_eq!(server.head("fleet", "main"), head, "a dry run pushed");
    // The working copy is back at the branch tip: a real run still finds everything to do.
    let report = Pipeline::new(registry())
        .with_target(target.clone())
        .run_once()
        .await;
    assert_eq!(report.applied.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_branch_is_created_from_the_checkout_branch() {
    let server = GitServer::start();
    server.create_repo("fleet", &files(), "main");
    let main_head = server.head("fleet", "main");
    let target = Arc::new(
        target(&server, "fleet")
            .with_push_branch("image-updates")
            .build(),
    );
    let report = Pipeline::new(registry())
        .with_target(target.clone())
        .run_once()
        .await;
    assert_eq!(report.applied.len(), 4, "{:?}", report.failures);
    assert_eq!(
        server.head("fleet", "main"),
        main_head,
        "main was pushed to"
    );
    let updates = server.log("fleet", "image-updates");
    assert_eq!(updates.len(), 2);
    assert_eq!(updates[1].0, main_head.unwrap());
    // The next run builds on the push branch, so it has nothing more to do.
    let again = Pipeline::new(registry())
        .with_target(target)
        .run_once()
        .await;
    assert!(again.planned.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_updaters_and_a_third_party_lose_nothing() {
    let server = GitServer::start();
    server.create_repo("fleet", &files(), "main");
    let a = target(&server, "fleet").build();
    let b = target(&server, "fleet").build();
    let plan_a = plan_for(
        &a,
        "apps/web.yaml#L10:flux-system:web",
        "ghcr.io/acme/web:1.2.3",
        "ghcr.io/acme/web:1.3.0",
    );
    let plan_b = plan_for(
        &b,
        "apps/cache.yaml#L12:redis",
        "redis:7.2.3",
        "redis:7.2.4",
    );
    let third = {
        let server = &server;
        async move {
            tokio::task::block_in_place(|| {
                // A third party retries like a person would when the branch moved under it.
                for _ in 0..10 {
                    let pushed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        server.push_file(
                            "fleet",
                            "main",
                            "docs/notes.txt",
                            "unrelated\n",
                            "Add notes",
                        )
                    }));
                    if pushed.is_ok() {
                        return;
                    }
                }
                panic!("the third party could not push");
            })
        }
    };
    let (ra, rb, _) = tokio::join!(a.apply(&plan_a), b.apply(&plan_b), third);
    assert!(matches!(ra, Ok(ApplyOutcome::Applied)), "{ra:?}");
    assert!(matches!(rb, Ok(ApplyOutcome::Applied)), "{rb:?}");

    let read = |path| server.read_file("fleet", "main", path).unwrap();
    assert_eq!(read(WEB), WEB_YAML.replace("web:1.2.3", "web:1.3.0"));
    assert_eq!(read(KEEL), KEEL_YAML.replace("7.2.3", "7.2.4"));
    assert_eq!(read("docs/notes.txt"), "unrelated\n");
    let subjects: Vec<String> = server
        .log("fleet", "main")
        .into_iter()
        .map(|(_, s)| s)
        .collect();
    assert_eq!(subjects.len(), 4, "{subjects:?}");
    assert_eq!(
        subjects
            .iter()
            .filter(|s| s.as_str() == "Add notes")
            .count(),
        1
    );
    assert_eq!(
        subjects
            .iter()
            .filter(|s| s.starts_with("Update 1 image"))
            .count(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_auth_works_and_refusals_are_clear_and_harmless() {
    let server = GitServer::start_with_http("bot", "t0ken");
    server.create_repo("fleet", &files(), "main");
    let head = server.head("fleet", "main");
    let good = Arc::new(
        GitTarget::builder(server.http_url("fleet"))
            .with_workdir(server.scratch_dir("good"))
            .with_auth(GitAuth::UserPassword {
                username: "bot".into(),
                password: "t0ken".into(),
            })
            .build(),
    );
    assert_eq!(good.discover().await.unwrap().len(), 4);

    let bad = GitTarget::builder(server.http_url("fleet"))
        .with_workdir(server.scratch_dir("bad"))
        .with_auth(GitAuth::UserPassword {
            username: "bot".into(),
            password: "wrong-secret".into(),
        })
        .build();
    let err = bad.discover().await.unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");
    let text = format!("{err} {err:?}");
    assert!(text.contains("user \"bot\""), "{text}");
    assert!(
        !text.contains("wrong-secret"),
        "the password leaked: {text}"
    );
    assert!(
        server.http_auth_failures() <= 4,
        "credentials were retried without bound"
    );
    assert_eq!(server.head("fleet", "main"), head);

    // The good target still works after the failure elsewhere, and pushes over HTTP.
    let report = Pipeline::new(registry()).with_target(good).run_once().await;
    assert_eq!(report.applied.len(), 4, "{:?}", report.failures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_side_rejection_leaves_the_remote_untouched() {
    let server = GitServer::start();
    server.create_repo("fleet", &files(), "main");
    server.install_hook(
        "fleet",
        "pre-receive",
        "echo 'frozen for release' >&2\nexit 1",
    );
    let head = server.head("fleet", "main");
    let target = target(&server, "fleet").with_max_push_attempts(2).build();
    let plan = plan_for(
        &target,
        "apps/web.yaml#L10:flux-system:web",
        "ghcr.io/acme/web:1.2.3",
        "ghcr.io/acme/web:1.3.0",
    );
    let err = target.apply(&plan).await.unwrap_err();
    assert!(!err.to_string().is_empty());
    assert_eq!(server.head("fleet", "main"), head);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conforms_to_the_target_contract() {
    let server = GitServer::start();
    server.create_repo("fleet", &files(), "main");
    let target = target(&server, "fleet").build();
    testkit::target_conformance(&target).await;
    assert_eq!(
        server.read_file("fleet", "main", WEB).unwrap(),
        WEB_YAML,
        "the conformance suite puts the target back as it was"
    );
}

/// Keel's keys mean in Git what they mean in the cluster: keel-core reads them for both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keel_keys_reach_tracked_images_as_in_the_cluster() {
    use std::time::Duration;

    use keel_core::target::Trigger;

    let workloads = "\
kind: Deployment
metadata:
  name: polled
  annotations:
    keel.sh/policy: minor
    keel.sh/trigger: poll
    keel.sh/pollSchedule: '@every 10m'
    keel.sh/approvals: '1'
    keel.sh/approvalDeadline: '6'
    keel.sh/notify: '#ops, #web'
    keel.sh/releaseNotes: https://example.com/notes
spec: {template: {spec: {containers: [{name: app, image: ghcr.io/acme/web:1.2.3}]}}}
---
kind: Deployment
metadata:
  name: default-schedule
  labels: {keel.sh/policy: patch, keel.sh/trigger: poll}
spec: {template: {spec: {containers: [{name: app, image: ghcr.io/acme/api:2.0.0}]}}}
---
kind: Deployment
metadata:
  name: schedule-only
  annotations: {keel.sh/policy: patch, keel.sh/pollSchedule: '@every 5m'}
spec: {template: {spec: {containers: [{name: app, image: redis:7.2.3}]}}}
---
kind: Deployment
metadata:
  name: none
  annotations: {keel.sh/policy: none}
spec: {template: {spec: {containers: [{name: app, image: ghcr.io/acme/worker:3.1.0}]}}}
";
    let server = GitServer::start();
    server.create_repo("keys", &[("apps.yaml", workloads)], "main");
    let target = target(&server, "keys").build();
    let tracked = target.discover().await.unwrap();
    let by_image = |name: &str| {
        tracked
            .iter()
            .find(|t| t.image.name() == name)
            .unwrap_or_else(|| panic!("{name} not tracked: {tracked:?}"))
    };

    let polled = by_image("ghcr.io/acme/web");
    assert_eq!(
        polled.trigger,
        Trigger::Poll {
            schedule: Some("@every 10m".parse().unwrap())
        }
    );
    assert_eq!(polled.approvals, 1);
    assert_eq!(
        polled.approval_deadline,
        Some(Duration::from_secs(6 * 3600))
    );
    assert_eq!(polled.notify, ["#ops", "#web"]);
    assert_eq!(
        polled.release_notes.as_deref(),
        Some("https://example.com/notes")
    );
    // `trigger: poll` without a schedule: the poller's default, not a fixed minute.
    assert_eq!(
        by_image("ghcr.io/acme/api").trigger,
        Trigger::Poll { schedule: None }
    );
    // A schedule alone does not enable polling.
    assert_eq!(
        by_image("docker.io/library/redis").trigger,
        Trigger::Webhook
    );
    // `none` is Keel's "no policy": found, not tracked, no error.
    assert!(
        tracked
            .iter()
            .all(|t| t.image.name() != "ghcr.io/acme/worker"),
        "{tracked:?}"
    );
    assert_eq!(tracked.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_message_is_used_verbatim_and_the_pushed_commit_is_reported() {
    let server = GitServer::start();
    server.create_repo("fleet", &files(), "main");
    // Braces that the keel templates would expand stay as written.
    let message = "Automated update by ns/auto: {count} {changes}\n\n- web 1.0 -> 2.0\n";
    let target = target(&server, "fleet").with_message(message).build();
    assert_eq!(target.last_pushed_commit(), None);
    let plan = plan_for(
        &target,
        "apps/web.yaml#L10:flux-system:web",
        "ghcr.io/acme/web:1.2.3",
        "ghcr.io/acme/web:1.3.0",
    );
    assert_eq!(outcome(&target, &plan).await, "applied");
    let head = server.head("fleet", "main").expect("main exists");
    assert_eq!(target.last_pushed_commit().as_deref(), Some(head.as_str()));
    // `%B` ends the message with a line break of its own.
    assert_eq!(server.show("fleet", &head, "%B"), format!("{message}\n"));
    // Nothing to do: nothing pushed, the last pushed commit stays.
    assert_eq!(outcome(&target, &plan).await, "already current");
    assert_eq!(server.log("fleet", "main").len(), 2);
    assert_eq!(target.last_pushed_commit(), Some(head));
}

/// The plans of one change: the web image and the api tag, in two files.
fn one_change(target: &GitTarget) -> Vec<UpdatePlan> {
    vec![
        plan_for(
            target,
            "apps/web.yaml#L10:flux-system:web",
            "ghcr.io/acme/web:1.2.3",
            "ghcr.io/acme/web:1.3.0",
        ),
        plan_for(
            target,
            "charts/api/values.yaml#L3:flux-system:api",
            "ghcr.io/acme/api:2.0.0",
            "ghcr.io/acme/api:2.1.0",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_or_nothing_pushes_every_change_or_none_when_the_branch_moves() {
    let server = GitServer::start();
    let initial = server.create_repo("fleet", &files(), "main");
    let atomic = target(&server, "fleet").with_all_or_nothing(true).build();
    let plans = one_change(&atomic);

    // A third party sets the web image between the fetch and the push: nothing of the
    // change lands, and every plan says which file no longer applies.
    let raced = WEB_YAML.replace("web:1.2.3", "web:1.2.4");
    let theirs = server.push_file("fleet", "theirs", WEB, &raced, "Pin web");
    server.move_branch_on_next_push("fleet", "main", &theirs);
    let results = atomic.apply_all(&plans).await;
    assert_eq!(results.len(), 2);
    for result in results {
        let error = result.expect_err("no plan applies alone");
        assert!(matches!(error, Error::Conflict { .. }), "{error:?}");
        assert_contains(
            &error.to_string(),
            &["update apps/web.yaml", "now holds ghcr.io/acme/web:1.2.4"],
        );
    }
    assert_eq!(
        server.head("fleet", "main").as_deref(),
        Some(theirs.as_str())
    );
    assert_eq!(
        server.read_file("fleet", "main", VALUES).unwrap(),
        VALUES_YAML
    );
    assert_eq!(atomic.last_pushed_commit(), None);

    // Without the option the other file's change would have landed alone.
    server.set_branch("fleet", "main", Some(&initial));
    server.move_branch_on_next_push("fleet", "main", &theirs);
    let each = target(&server, "fleet").build();
    let results = each.apply_all(&one_change(&each)).await;
    assert!(results[0].is_err(), "{results:?}");
    assert!(
        matches!(results[1], Ok(ApplyOutcome::Applied)),
        "{results:?}"
    );
    assert_eq!(server.log("fleet", "main").len(), 3);

    // A third party that changes another file: the change lands whole, on top of theirs.
    server.set_branch("fleet", "main", Some(&initial));
    let other = server.push_file("fleet", "other", "README.md", "changed\n", "Docs");
    server.move_branch_on_next_push("fleet", "main", &other);
    let results = atomic.apply_all(&plans).await;
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Ok(ApplyOutcome::Applied))),
        "{results:?}"
    );
    let log = server.log("fleet", "main");
    assert_eq!(log.len(), 3, "{log:?}");
    assert_eq!(log[1].0, other);
    assert_eq!(
        atomic.last_pushed_commit().as_deref(),
        Some(log[0].0.as_str())
    );
    let web = server.read_file("fleet", "main", WEB).unwrap();
    assert_contains(&web, &["web:1.3.0"]);
    let values = server.read_file("fleet", "main", VALUES).unwrap();
    assert_contains(&values, &["\"2.1.0\""]);
}

/// The web image's plan from 1.2.3 to `to`.
fn web_plan(target: &GitTarget, to: &str) -> UpdatePlan {
    plan_for(
        target,
        "apps/web.yaml#L10:flux-system:web",
        "ghcr.io/acme/web:1.2.3",
        to,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkouts_of_a_tag_a_reference_or_a_commit_push_on_top_of_it_to_the_push_branch() {
    let server = GitServer::start();
    let released = server.create_repo("fleet", &files(), "main");
    server
        .bare(
            "fleet",
            [
                "-c",
                "user.name=Release",
                "-c",
                "user.email=release@example.invalid",
                "tag",
                "-a",
                "-m",
                "release",
                "v1.0.0",
                &released,
            ],
        )
        .expect_success();
    let later = WEB_YAML.replace("web:1.2.3", "web:1.2.4");
    let main = server.push_file("fleet", "main", WEB, &later, "Later work");
    server.set_branch("fleet", "release", Some(&released));

    for (checkout, branch) in [
        (Checkout::Tag("v1.0.0".into()), "from-tag"),
        (Checkout::Reference("refs/heads/release".into()), "from-ref"),
        (Checkout::Commit(released.clone()), "from-commit"),
    ] {
        let target = target(&server, "fleet")
            .with_checkout(checkout.clone())
            .with_push_branch(branch)
            .with_push_branch_reset(true)
            .build();
        let plan = web_plan(&target, "ghcr.io/acme/web:1.3.0");
        assert_eq!(outcome(&target, &plan).await, "applied", "{checkout}");
        let log = server.log("fleet", branch);
        assert_eq!(log.len(), 2, "{checkout}: {log:?}");
        assert_eq!(log[1].0, released, "{checkout}: not on top of the checkout");
        assert_eq!(
            server.read_file("fleet", branch, WEB).unwrap(),
            WEB_YAML.replace("web:1.2.3", "web:1.3.0")
        );
        // Again: the push branch holds the very files, nothing is pushed.
        assert_eq!(
            outcome(&target, &plan).await,
            "already current",
            "{checkout}"
        );
        assert_eq!(server.log("fleet", branch).len(), 2);
    }
    assert_eq!(server.head("fleet", "main").as_deref(), Some(main.as_str()));

    // A push branch with commits of its own is made anew from the checkout, as Flux does.
    let theirs = server.push_file("fleet", "from-tag", "NOTES.md", "x\n", "Notes");
    let from_tag = target(&server, "fleet")
        .with_checkout(Checkout::Tag("v1.0.0".into()))
        .with_push_branch("from-tag")
        .with_push_branch_reset(true)
        .build();
    let plan = web_plan(&from_tag, "ghcr.io/acme/web:1.3.0");
    assert_eq!(outcome(&from_tag, &plan).await, "applied");
    let log = server.log("fleet", "from-tag");
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(log[1].0, released);
    assert!(log.iter().all(|(id, _)| *id != theirs));

    // A missing tag, a tag without push branch, a bad commit id: clear errors, nothing pushed.
    let missing = target(&server, "fleet")
        .with_checkout(Checkout::Tag("v9".into()))
        .with_push_branch("x")
        .build();
    let error = missing
        .apply(&web_plan(&missing, "ghcr.io/acme/web:1.3.0"))
        .await;
    assert!(
        matches!(&error, Err(Error::NotFound { what }) if what.contains("tag v9")),
        "{error:?}"
    );
    let no_push = target(&server, "fleet")
        .with_checkout(Checkout::Tag("v1.0.0".into()))
        .build();
    let error = no_push.references().await.unwrap_err().to_string();
    assert_contains(&error, &["push branch", "tag v1.0.0"]);
    let bad = target(&server, "fleet")
        .with_checkout(Checkout::Commit("abc".into()))
        .with_push_branch("x")
        .build();
    let error = bad.references().await.unwrap_err().to_string();
    assert_contains(&error, &["abc", "40"]);
    assert!(server.head("fleet", "x").is_none());

    // The tags as the server lists them.
    server
        .bare("fleet", ["tag", "v1.1.0", &main])
        .expect_success();
    assert_eq!(from_tag.remote_tags().await.unwrap(), ["v1.0.0", "v1.1.0"]);
}

/// Signs with a fixed text, or refuses; records what it was given.
#[derive(Debug, Default)]
struct FakeSigner {
    refuse: bool,
    signed: std::sync::Mutex<Vec<Vec<u8>>>,
}

impl keel_git::CommitSigner for FakeSigner {
    fn sign(&self, commit: &[u8]) -> Result<String, Error> {
        if self.refuse {
            return Err(Error::NotSupported {
                operation: "signing",
                backend: "fake signer".into(),
            });
        }
        self.signed.lock().unwrap().push(commit.to_vec());
        Ok("-----BEGIN PGP SIGNATURE-----\n\nZmFrZQ==\n-----END PGP SIGNATURE-----".into())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_carry_the_signers_signature_or_are_not_made() {
    let server = GitServer::start();
    server.create_repo("fleet", &files(), "main");
    let head = server.head("fleet", "main");
    let refusing = Arc::new(FakeSigner {
        refuse: true,
        ..FakeSigner::default()
    });
    let refused = target(&server, "fleet")
        .with_commit_signer(refusing)
        .build();
    let error = refused
        .apply(&web_plan(&refused, "ghcr.io/acme/web:1.3.0"))
        .await;
    assert!(
        matches!(error, Err(Error::NotSupported { .. })),
        "{error:?}"
    );
    assert_eq!(server.head("fleet", "main"), head);

    let signer = Arc::new(FakeSigner::default());
    let target = target(&server, "fleet")
        .with_commit_signer(signer.clone())
        .build();
    assert_eq!(
        outcome(&target, &web_plan(&target, "ghcr.io/acme/web:1.3.0")).await,
        "applied"
    );
    let pushed = server.head("fleet", "main").unwrap();
    let object = server
        .bare("fleet", ["cat-file", "commit", &pushed])
        .expect_success()
        .stdout_text();
    assert!(
        object.contains(
            "\ngpgsig -----BEGIN PGP SIGNATURE-----\n \n ZmFrZQ==\n -----END PGP SIGNATURE-----\n"
        ),
        "{object}"
    );
    // What was signed is the commit without its signature header.
    let signed = signer.signed.lock().unwrap().clone();
    assert_eq!(signed.len(), 1);
    let unsigned: String = object
        .split_inclusive('\n')
        .filter(|line| !line.starts_with("gpgsig ") && !line.starts_with(' '))
        .collect();
    assert_eq!(String::from_utf8(signed[0].clone()).unwrap(), unsigned);
}

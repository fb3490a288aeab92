//! `GitTarget` against servers and repositories that misbehave: servers that accept a
//! connection and never answer, or refuse it, URLs that carry credentials, and repositories
//! holding alias bombs and oversized files.

use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keel_core::memory::InMemoryRegistry;
use keel_core::target::{ApplyOutcome, Target, UpdatePlan};
use keel_core::{Error, ImageRef, Pipeline};
use keel_git::GitTarget;
use keel_testsupport::git::GitServer;
use keel_testsupport::yaml::billion_laughs;

/// A TCP server on 127.0.0.1 that accepts every connection and then says nothing, holding
/// the connections open until it is dropped.
struct SilentServer {
    port: u16,
    held: Arc<Mutex<Vec<TcpStream>>>,
}

impl SilentServer {
    fn start() -> SilentServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local address").port();
        let held = Arc::new(Mutex::new(Vec::new()));
        let keep = held.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                keep.lock().unwrap().push(stream);
            }
        });
        SilentServer { port, held }
    }

    fn connections(&self) -> usize {
        self.held.lock().unwrap().len()
    }
}

/// A port on 127.0.0.1 where nothing listens (bound, then released).
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// Every way the error shows itself: `Display`, `Debug` and the sources below it.
fn everything_shown(err: &Error) -> String {
    let mut text = format!("{err} {err:?}");
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        text.push_str(&format!(" {s} {s:?}"));
        source = s.source();
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_fails_the_fetch_within_the_timeout() {
    let silent = SilentServer::start();
    let dir = tempfile::tempdir().unwrap();
    for (scheme, path) in [("git", "fleet.git"), ("http", "git/fleet.git")] {
        let url = format!("{scheme}://user:secret@127.0.0.1:{}/{path}", silent.port);
        let target = GitTarget::builder(&url)
            .with_workdir(dir.path().join(scheme))
            .with_connect_timeout(Duration::from_secs(2))
            .with_server_timeout(Duration::from_millis(1500))
            .build();
        let started = Instant::now();
        let result = tokio::time::timeout(Duration::from_secs(30), target.discover()).await;
        let took = started.elapsed();
        let err = result
            .unwrap_or_else(|_| panic!("{scheme}: the fetch still hangs after {took:?}"))
            .expect_err("a silent server cannot be fetched from");
        assert!(
            took < Duration::from_secs(10),
            "{scheme}: took {took:?}: {err}"
        );
        assert!(err.is_retryable(), "{scheme}: {err:?}");
        let shown = everything_shown(&err);
        assert!(shown.contains("timed out"), "{scheme}: {shown}");
        assert!(
            !shown.contains("secret"),
            "{scheme}: the password leaked: {shown}"
        );
    }
    assert!(silent.connections() >= 2, "the fetches never connected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_fetch_does_not_show_the_password() {
    let port = closed_port();
    let dir = tempfile::tempdir().unwrap();
    let target = GitTarget::builder(format!(
        "http://user:secret@127.0.0.1:{port}/git/fleet.git?access_token=hidden"
    ))
    .with_workdir(dir.path())
    .build();
    let err = target.discover().await.expect_err("nothing listens");
    let shown = everything_shown(&err);
    assert!(shown.contains(&format!("127.0.0.1:{port}")), "{shown}");
    assert!(!shown.contains("secret"), "the password leaked: {shown}");
    assert!(!shown.contains("hidden"), "the token leaked: {shown}");
    assert!(target.name().contains("user:***@"), "{}", target.name());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_push_does_not_show_the_password() {
    let server = GitServer::start_with_http("bot", "s3cret-pw");
    let web = "image: ghcr.io/acme/web:1.2.3 # {\"$imagepolicy\": \"flux-system:web\"}\n";
    server.create_repo("fleet", &[("apps/web.yaml", web)], "main");
    server.install_hook(
        "fleet",
        "pre-receive",
        "echo 'frozen for release' >&2\nexit 1",
    );
    let head = server.head("fleet", "main");
    let url = server.http_url_with_credentials("fleet", "bot", "s3cret-pw");
    let target = GitTarget::builder(&url)
        .with_workdir(server.scratch_dir("rejected"))
        .with_max_push_attempts(1)
        .build();
    // The credentials in the URL are good: discovery works.
    let tracked = target.references().await.unwrap();
    assert_eq!(tracked.len(), 1);
    let plan = UpdatePlan {
        target: target.name().to_owned(),
        id: tracked[0].id(),
        current: tracked[0].image.clone(),
        new: ImageRef::parse("ghcr.io/acme/web:1.3.0").unwrap(),
    };
    let err = match target.apply(&plan).await {
        Err(err) => err,
        Ok(outcome @ (ApplyOutcome::Applied | ApplyOutcome::AlreadyCurrent)) => {
            panic!("the hook refuses every push, yet: {outcome:?}")
        }
    };
    let shown = everything_shown(&err);
    assert!(!shown.contains("s3cret-pw"), "the password leaked: {shown}");
    assert!(shown.contains("bot:***@"), "{shown}");
    assert_eq!(server.head("fleet", "main"), head);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bombs_and_oversized_files_are_reported_and_the_rest_still_updates() {
    let server = GitServer::start();
    let web = "image: ghcr.io/acme/web:1.2.3 # {\"$imagepolicy\": \"flux-system:web\"}\n";
    let bomb = billion_laughs();
    assert!(bomb.len() <= 1024, "{} bytes", bomb.len());
    // A valid manifest, but larger than the limit the target is given.
    let huge = format!(
        "image: ghcr.io/acme/huge:1.0.0 # {{\"$imagepolicy\": \"flux-system:huge\"}}\n{}",
        "# padding\n".repeat(10_000)
    );
    server.create_repo(
        "fleet",
        &[
            ("apps/web.yaml", web),
            ("apps/bomb.yaml", &bomb),
            ("apps/huge.yaml", &huge),
            (
                ".keel.yaml",
                "policies:\n  flux-system:web: minor\n  flux-system:huge: minor\n",
            ),
        ],
        "main",
    );
    let target = Arc::new(
        GitTarget::builder(server.git_url("fleet"))
            .with_workdir(server.scratch_dir("bombs"))
            .with_max_file_size(64 * 1024)
            .build(),
    );

    let scan = target.scan().await.unwrap();
    let ids: Vec<String> = scan.references.iter().map(|r| r.id()).collect();
    assert_eq!(ids, ["apps/web.yaml#L1:flux-system:web"]);
    let warning = |file: &str| {
        scan.warnings
            .iter()
            .find(|w| w.file == file)
            .unwrap_or_else(|| panic!("no warning about {file}: {:?}", scan.warnings))
            .to_string()
    };
    let bomb_warning = warning("apps/bomb.yaml");
    assert!(bomb_warning.contains("not valid YAML"), "{bomb_warning}");
    assert!(bomb_warning.contains("100000 nodes"), "{bomb_warning}");
    let huge_warning = warning("apps/huge.yaml");
    assert!(huge_warning.contains("invalid"), "{huge_warning}");
    assert!(
        huge_warning.contains("limit of 65536 bytes"),
        "{huge_warning}"
    );

    let registry = Arc::new(InMemoryRegistry::new("test registry"));
    registry.push_tags("ghcr.io/acme/web", &["1.2.3", "1.3.0"]);
    registry.push_tags("ghcr.io/acme/huge", &["1.0.0", "1.1.0"]);
    let report = Pipeline::new(registry).with_target(target).run_once().await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(report.applied.len(), 1, "{:?}", report.applied);
    assert_eq!(
        server.read_file("fleet", "main", "apps/web.yaml").unwrap(),
        web.replace("1.2.3", "1.3.0")
    );
    assert_eq!(
        server.read_file("fleet", "main", "apps/bomb.yaml").unwrap(),
        bomb
    );
    assert_eq!(
        server.read_file("fleet", "main", "apps/huge.yaml").unwrap(),
        huge
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_configuration_fails_the_scan_naming_it() {
    let server = GitServer::start();
    let config = format!(
        "policies:\n  flux-system:web: minor\n{}",
        "#\n".repeat(1000)
    );
    server.create_repo("fleet", &[(".keel.yaml", &config)], "main");
    let target = GitTarget::builder(server.git_url("fleet"))
        .with_workdir(server.scratch_dir("big-config"))
        .with_max_file_size(1024)
        .build();
    let err = target.scan().await.unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(".keel.yaml"), "{text}");
    assert!(text.contains("limit of 1024 bytes"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmarked_value_never_displaces_a_tracked_reference() {
    let server = GitServer::start();
    // One line, two references with one id: the container named `image` (tracked) and the
    // unmarked top-level `image:` value after it.
    let pod = "{kind: Pod, metadata: {name: p, annotations: {keel.sh/policy: minor}}, spec: \
               {containers: [{name: image, image: 'ghcr.io/acme/a:1.0.0'}]}, image: \
               'ghcr.io/acme/b:1.0.0'}\n";
    server.create_repo("fleet", &[("pod.yaml", pod)], "main");
    let target = GitTarget::builder(server.git_url("fleet"))
        .with_workdir(server.scratch_dir("same-id"))
        .build();
    let tracked = target.discover().await.unwrap();
    let found: Vec<(String, String)> = tracked
        .iter()
        .map(|t| (t.id.clone(), t.image.to_string()))
        .collect();
    assert_eq!(
        found,
        [(
            "pod.yaml#L1:image".to_owned(),
            "ghcr.io/acme/a:1.0.0".to_owned()
        )]
    );
}

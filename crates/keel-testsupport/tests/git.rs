//! Self-tests of the integration-test support: `git daemon` started by `scripts/git-server`,
//! the smart-HTTP server with basic auth, and the helpers that seed, push and read repositories.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use keel_testsupport::git::{Git, GitOutput, GitServer};

const FILES: &[(&str, &str)] = &[
    ("README.md", "# app\n"),
    (
        "deploy/app.yaml",
        "image: registry.example/app:1.0.0 # {\"$imagepolicy\": \"flux-system:app\"}\n",
    ),
    ("deploy/crlf.yaml", "a: 1\r\nb: 2\r\n"),
];

/// `main` of `repo` holds the commit `pushed` (id, subject) on top of the seeded one.
fn assert_history(server: &GitServer, repo: &str, pushed: (&str, &str), seeded: &str) {
    let expected = [pushed, (seeded, "Initial commit")]
        .map(|(id, subject)| (id.to_owned(), subject.to_owned()));
    assert_eq!(server.log(repo, "main"), expected, "{repo}");
}

/// Runs `git ARGS` in `work` as `keel-test` (commits and rebases need an identity).
fn as_keel(git: &Git, work: &Path, args: &[&str]) -> GitOutput {
    let identity = [
        "-c",
        "user.name=keel-test",
        "-c",
        "user.email=keel-test@example.invalid",
    ];
    git.run(Some(work), identity.iter().chain(args))
}

/// Commits everything in the work tree `work` as `keel-test` and returns the commit id.
fn commit_all(git: &Git, work: &Path, message: &str) -> String {
    git.run(Some(work), ["add", "--all"]);
    as_keel(git, work, &["commit", "--quiet", "-m", message]);
    git.run(Some(work), ["rev-parse", "HEAD"]).trimmed()
}

/// Asserts that a git command against `server`'s HTTP backend succeeded, showing the
/// backend's errors when it did not.
fn assert_succeeded_over_http(server: &GitServer, output: &GitOutput) {
    assert!(
        output.success,
        "{}\nbackend: {}",
        output.stderr,
        server.http_backend_stderr()
    );
}

fn clone(server: &GitServer, url: &str, work: &Path) -> GitOutput {
    server.git().try_run(
        None,
        [
            "clone".as_ref(),
            "--quiet".as_ref(),
            url.as_ref(),
            work.as_os_str(),
        ],
    )
}

/// Sends a raw HTTP/1.1 request and returns the status line and headers.
fn raw_get(addr: &str, path: &str, authorization: Option<&str>) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(value) = authorization {
        request.push_str(&format!("Authorization: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("send");
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    reply
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn host_of(url: &str) -> &str {
    let rest = url.strip_prefix("http://").expect("http URL");
    rest.split('/').next().expect("host")
}

#[test]
fn git_daemon_serves_clone_and_push() {
    let started = Instant::now();
    let server = GitServer::start();
    let start_time = started.elapsed();

    let started = Instant::now();
    let seeded = server.create_repo("org/app", FILES, "main");
    let create_time = started.elapsed();
    assert_eq!(
        server.head("org/app", "main").as_deref(),
        Some(seeded.as_str())
    );
    assert_eq!(
        server.log("org/app", "main"),
        vec![(seeded.clone(), "Initial commit".to_owned())]
    );
    assert_eq!(
        server.files("org/app", "main"),
        ["README.md", "deploy/app.yaml", "deploy/crlf.yaml"]
    );
    assert_eq!(
        server.show("org/app", &seeded, "%an <%ae>").trim(),
        "keel-test <keel-test@example.invalid>"
    );

    let git = server.git();
    let work = server.scratch_dir("clone-");
    let started = Instant::now();
    clone(&server, &server.git_url("org/app"), &work).expect_success();
    let clone_time = started.elapsed();
    assert_eq!(
        std::fs::read_to_string(work.join("deploy/app.yaml")).expect("cloned file"),
        FILES[1].1
    );
    // Byte-exact: no line-ending conversion on the way.
    assert_eq!(
        std::fs::read(work.join("deploy/crlf.yaml")).expect("cloned file"),
        b"a: 1\r\nb: 2\r\n"
    );
    assert_eq!(
        git.run(Some(&work), ["symbolic-ref", "--short", "HEAD"])
            .trimmed(),
        "main"
    );

    std::fs::write(
        work.join("deploy/app.yaml"),
        "image: registry.example/app:1.1.0 # {\"$imagepolicy\": \"flux-system:app\"}\n",
    )
    .expect("edit");
    let pushed = commit_all(git, &work, "Update app to 1.1.0");
    let started = Instant::now();
    git.run(Some(&work), ["push", "--quiet", "origin", "main"]);
    let push_time = started.elapsed();

    assert_eq!(
        server.head("org/app", "main").as_deref(),
        Some(pushed.as_str())
    );
    assert_history(
        &server,
        "org/app",
        (&pushed, "Update app to 1.1.0"),
        &seeded,
    );
    assert_eq!(
        server
            .read_file("org/app", "main", "deploy/app.yaml")
            .as_deref(),
        Some("image: registry.example/app:1.1.0 # {\"$imagepolicy\": \"flux-system:app\"}\n")
    );
    // No such file, a directory, no such branch.
    for (branch, path) in [
        ("main", "missing.yaml"),
        ("main", "deploy"),
        ("other", "README.md"),
    ] {
        let read = server.read_file("org/app", branch, path);
        assert_eq!(read, None, "{branch}:{path}");
    }
    assert!(
        server.daemon_log().contains("receive-pack"),
        "{}",
        server.daemon_log()
    );

    eprintln!(
        "git daemon: start {start_time:?}, create_repo {create_time:?}, clone {clone_time:?}, \
         push {push_time:?}"
    );
}

#[test]
fn http_with_right_credentials_clones_and_pushes() {
    let started = Instant::now();
    let server = GitServer::start_with_http("keel-bot", "s3cret/tok:en");
    let start_time = started.elapsed();
    let seeded = server.create_repo("app", FILES, "main");
    assert_eq!(server.http_credentials(), ("keel-bot", "s3cret/tok:en"));
    assert!(server.http_url("app").ends_with("/git/app.git"));

    let git = server.git();
    let work = server.scratch_dir("clone-");
    let url = server.http_url_with_credentials("app", "keel-bot", "s3cret/tok:en");
    let started = Instant::now();
    let cloned = clone(&server, &url, &work);
    let clone_time = started.elapsed();
    assert_succeeded_over_http(&server, &cloned);
    assert_eq!(
        std::fs::read_to_string(work.join("README.md")).expect("cloned file"),
        "# app\n"
    );

    std::fs::write(work.join("README.md"), "# app over http\n").expect("edit");
    let pushed = commit_all(git, &work, "Push over HTTP");
    let started = Instant::now();
    let push = git.try_run(Some(&work), ["push", "--quiet", "origin", "main"]);
    let push_time = started.elapsed();
    assert_succeeded_over_http(&server, &push);
    assert_history(&server, "app", (&pushed, "Push over HTTP"), &seeded);
    assert_eq!(
        server.read_file("app", "main", "README.md").as_deref(),
        Some("# app over http\n")
    );

    // A push bigger than git's http.postBuffer (1 MiB) even compressed: the pack goes up
    // chunked, without a Content-Length.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let big: String = (0..200_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            format!("{state:016x}\n")
        })
        .collect();
    std::fs::write(work.join("big.txt"), &big).expect("big file");
    commit_all(git, &work, "Big file");
    let push = git.try_run(Some(&work), ["push", "--quiet", "origin", "main"]);
    assert_succeeded_over_http(&server, &push);
    assert_eq!(
        server
            .read_file("app", "main", "big.txt")
            .map(|text| text.len()),
        Some(big.len())
    );
    assert!(
        server.http_log().iter().any(|r| r.method == "POST"
            && r.path.ends_with("/git-receive-pack")
            && r.content_length.is_none()),
        "no chunked push: {:#?}",
        server.http_log()
    );

    let log = server.http_log();
    assert_eq!(server.http_requests(), log.len());
    assert_eq!(server.http_auth_failures(), 0, "{log:#?}");
    assert!(
        log.iter().any(|r| r.method == "POST"
            && r.path == "/git/app.git/git-receive-pack"
            && r.status == 200
            && r.user.as_deref() == Some("keel-bot")),
        "{log:#?}"
    );
    assert!(
        log.iter()
            .all(|r| r.status == 200 || (r.status == 401 && r.user.is_none())),
        "{log:#?}"
    );
    eprintln!(
        "http: start {start_time:?}, clone {clone_time:?}, push {push_time:?}, {} requests \
         ({} challenges)",
        server.http_requests(),
        server.http_challenges()
    );
}

#[test]
fn http_refuses_wrong_or_missing_credentials() {
    let server = GitServer::start_with_http("keel-bot", "right");
    server.create_repo("app", FILES, "main");
    let addr = host_of(&server.http_url("app")).to_owned();

    // Wrong password: the clone fails, the server counts the failure.
    let work = server.scratch_dir("wrong-");
    let url = server.http_url_with_credentials("app", "keel-bot", "wrong");
    let cloned = clone(&server, &url, &work);
    assert!(!cloned.success, "a clone with a wrong password succeeded");
    assert!(
        cloned.stderr.contains("Authentication failed"),
        "{}",
        cloned.stderr
    );
    assert!(server.http_auth_failures() >= 1, "{:#?}", server.http_log());
    assert!(
        server
            .http_log()
            .iter()
            .any(|r| r.status == 401 && r.user.as_deref() == Some("keel-bot")),
        "{:#?}",
        server.http_log()
    );

    // Wrong user.
    let failures = server.http_auth_failures();
    let url = server.http_url_with_credentials("app", "someone", "right");
    let cloned = clone(&server, &url, &server.scratch_dir("user-"));
    assert!(!cloned.success, "a clone as another user succeeded");
    assert!(server.http_auth_failures() > failures);

    // No credentials: git cannot prompt, so it fails after the challenge.
    let failures = server.http_auth_failures();
    let challenges = server.http_challenges();
    let cloned = clone(
        &server,
        &server.http_url("app"),
        &server.scratch_dir("none-"),
    );
    assert!(!cloned.success, "an anonymous clone succeeded");
    assert!(
        cloned.stderr.contains("could not read Username"),
        "{}",
        cloned.stderr
    );
    assert!(server.http_challenges() > challenges);
    assert_eq!(server.http_auth_failures(), failures);

    // The raw answers.
    let path = "/git/app.git/info/refs?service=git-upload-pack";
    let head = raw_get(&addr, path, None);
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: basic realm=\"keel-test-git\""),
        "{head}"
    );
    let head = raw_get(&addr, path, Some("Basic a2VlbC1ib3Q6d3Jvbmc=")); // keel-bot:wrong
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    let head = raw_get(&addr, path, Some("Bearer whatever"));
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    let head = raw_get(&addr, path, Some("Basic a2VlbC1ib3Q6cmlnaHQ=")); // keel-bot:right
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.contains("application/x-git-upload-pack-advertisement"),
        "{head}"
    );
    let head = raw_get(&addr, "/elsewhere", Some("Basic a2VlbC1ib3Q6cmlnaHQ="));
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    let head = raw_get(
        &addr,
        "/git/missing.git/info/refs?service=git-upload-pack",
        Some("Basic a2VlbC1ib3Q6cmlnaHQ="),
    );
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");

    // Nothing was pushed by any of it.
    assert_eq!(server.log("app", "main").len(), 1);
}

#[test]
fn third_party_push_while_another_clone_exists() {
    let server = GitServer::start();
    let seeded = server.create_repo("app", FILES, "main");
    let git = server.git();

    // Our clone, made before the third party pushes.
    let work = server.scratch_dir("ours-");
    clone(&server, &server.git_url("app"), &work).expect_success();

    let started = Instant::now();
    let theirs = server.push_file("app", "main", "docs/notes.md", "unrelated\n", "Add notes");
    let push_file_time = started.elapsed();
    assert_eq!(server.head("app", "main").as_deref(), Some(theirs.as_str()));
    assert_eq!(
        server.show("app", &theirs, "%an <%ae>|%P").trim(),
        format!("Third Party <third-party@example.invalid>|{seeded}")
    );
    assert_eq!(
        server.read_file("app", "main", "docs/notes.md").as_deref(),
        Some("unrelated\n")
    );

    // Our push is now behind: rejected as non-fast-forward, then fine after a rebase.
    std::fs::write(
        work.join("deploy/app.yaml"),
        "image: registry.example/app:2.0.0\n",
    )
    .expect("edit");
    commit_all(git, &work, "Update app to 2.0.0");
    let rejected = git.try_run(Some(&work), ["push", "--quiet", "origin", "main"]);
    assert!(!rejected.success, "a stale push went through");
    assert!(
        rejected.stderr.contains("rejected") || rejected.stderr.contains("fetch first"),
        "{}",
        rejected.stderr
    );
    as_keel(
        git,
        &work,
        &["pull", "--quiet", "--rebase", "origin", "main"],
    );
    git.run(Some(&work), ["push", "--quiet", "origin", "main"]);
    let subjects: Vec<String> = server
        .log("app", "main")
        .into_iter()
        .map(|(_, subject)| subject)
        .collect();
    assert_eq!(
        subjects,
        ["Update app to 2.0.0", "Add notes", "Initial commit"]
    );
    assert_eq!(
        server.read_file("app", "main", "docs/notes.md").as_deref(),
        Some("unrelated\n")
    );
    eprintln!("push_file: {push_file_time:?}");
}

#[test]
fn push_file_makes_branches_and_first_commits() {
    let server = GitServer::start();
    server.create_empty_repo("empty", "main");
    assert_eq!(server.head("empty", "main"), None);
    assert!(server.log("empty", "main").is_empty());
    assert!(server.files("empty", "main").is_empty());

    let first = server.push_file("empty", "main", "a.txt", "a\n", "First");
    assert_eq!(
        server.log("empty", "main"),
        vec![(first.clone(), "First".to_owned())]
    );
    let feature = server.push_files(
        "empty",
        "feature",
        &[("b.txt", Some("b\n")), ("a.txt", None)],
        "Feature",
    );
    assert_eq!(
        server.head("empty", "main").as_deref(),
        Some(first.as_str())
    );
    assert_eq!(server.files("empty", "feature"), ["b.txt"]);
    assert_eq!(server.show("empty", &feature, "%P").trim(), first);

    // Other initial branches and bytes that are not UTF-8.
    let seeded = server.create_repo_bytes("bytes", &[("bin/blob", &[0xff, 0x00, 0xfe])], "trunk");
    assert_eq!(
        server.head("bytes", "trunk").as_deref(),
        Some(seeded.as_str())
    );
    assert_eq!(
        server.read_bytes("bytes", "trunk", "bin/blob"),
        Some(vec![0xff, 0x00, 0xfe])
    );
    let work = server.scratch_dir("trunk-");
    clone(&server, &server.git_url("bytes"), &work).expect_success();
    assert_eq!(
        server
            .git()
            .run(Some(&work), ["symbolic-ref", "--short", "HEAD"])
            .trimmed(),
        "trunk"
    );

    // Moving and deleting branches behind a clone's back.
    server.set_branch("empty", "main", Some(&feature));
    assert_eq!(
        server.head("empty", "main").as_deref(),
        Some(feature.as_str())
    );
    server.set_branch("empty", "feature", None);
    assert_eq!(server.head("empty", "feature"), None);

    // A hook that refuses every push.
    server.install_hook(
        "empty",
        "pre-receive",
        "echo 'pushes are frozen' >&2; exit 1",
    );
    let work = server.scratch_dir("hooked-");
    clone(&server, &server.git_url("empty"), &work).expect_success();
    std::fs::write(work.join("c.txt"), "c\n").expect("write");
    commit_all(server.git(), &work, "Refused");
    let refused = server
        .git()
        .try_run(Some(&work), ["push", "--quiet", "origin", "main"]);
    assert!(!refused.success);
    assert!(
        refused.stderr.contains("pushes are frozen"),
        "{}",
        refused.stderr
    );
    assert_eq!(
        server.head("empty", "main").as_deref(),
        Some(feature.as_str())
    );

    // Unknown repositories are refused, with a reason.
    let missing = clone(
        &server,
        &server.git_url("missing"),
        &server.scratch_dir("missing-"),
    );
    assert!(!missing.success);
    assert!(
        missing.stderr.contains("no such repository"),
        "{}",
        missing.stderr
    );
}

/// The HTTP server runs on its own thread: blocking git commands inside a single-threaded
/// async test do not starve it.
#[tokio::test(flavor = "current_thread")]
async fn blocking_helpers_work_inside_async_tests() {
    let server = GitServer::start_with_http("u", "p");
    server.create_repo("app", FILES, "main");
    let work = server.scratch_dir("async-");
    clone(
        &server,
        &server.http_url_with_credentials("app", "u", "p"),
        &work,
    )
    .expect_success();
    let id = server.push_file("app", "main", "x.txt", "x\n", "From a third party");
    tokio::task::yield_now().await;
    assert_eq!(server.head("app", "main"), Some(id));
}

#[test]
fn drop_stops_the_daemon_and_removes_its_directory() {
    let server = GitServer::start_with_http("u", "p");
    let dir = server.dir().to_path_buf();
    let pid = server.pid();
    let addr = server.addr().to_owned();
    let http = host_of(&server.http_url("x")).to_owned();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    drop(server);
    assert!(!dir.exists(), "{} is still there", dir.display());
    assert!(
        TcpStream::connect(&addr).is_err(),
        "git daemon still listens"
    );
    assert!(
        TcpStream::connect(&http).is_err(),
        "the HTTP server still listens"
    );
}

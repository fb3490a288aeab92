//! `keel-gitops` serving the approvals API and the dashboard, against a real git server and
//! registry: with credentials, `/ui/` lists the repository's references with the update a
//! pass found, and an update held by `keel.sh/approvals` is pushed once it is approved
//! through `/api`; `--approvals-file` keeps requests and votes across restarts; without
//! credentials only `/healthz` is served, and SIGTERM stops the process cleanly; `--once`
//! serves nothing; bad settings stop the start naming them.

use std::fs::File;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use keel_api::env::API_OFF;
use keel_testsupport::git::GitServer;
use keel_testsupport::registry::{RegistryServer, ServerOptions};
use reqwest::StatusCode;
use reqwest::header::LOCATION;
use serde_json::Value;

/// Keel's admin user, as `BASIC_AUTH_USER` / `BASIC_AUTH_PASSWORD` give it.
const ADMIN: (&str, &str) = ("admin", "s3cret-pw");

/// A `KEEL_API_AUTH` credential that may vote, and its token.
const APPROVER: (&str, &str) = ("bearer/approver:release:appr0ve-t0ken", "appr0ve-t0ken");

/// A registry with `acme/api` `2.0.0` and `2.1.0`, and a git server with a repository `fleet`
/// holding one Deployment whose container runs `acme/api:2.0.0` of that registry with Keel's
/// `minor` policy and `keel.sh/approvals: "1"`; and the image's name.
async fn fleet() -> (RegistryServer, GitServer, String) {
    let registry =
        RegistryServer::with_tags(ServerOptions::plain(), "acme/api", &["2.0.0", "2.1.0"]).await;
    let git = GitServer::start();
    let api = format!("{}/acme/api", registry.addr());
    let workloads = format!(
        "\
kind: Deployment
metadata:
  name: api
  annotations:
    keel.sh/policy: minor
    keel.sh/approvals: \"1\"
spec: {{template: {{spec: {{containers: [{{name: api, image: '{api}:2.0.0'}}]}}}}}}
"
    );
    git.create_repo("fleet", &[("apps.yaml", &workloads)], "main");
    (registry, git, api)
}

/// `keel-gitops` on `fleet` of `git` with `args`, without any credentials, Docker config or
/// `POLL_DEFAULTSCHEDULE` of the machine; its stderr (the log) goes to `log`.
fn gitops(git: &GitServer, args: &[&str], log: &PathBuf) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keel-gitops"));
    command
        .args(["--repo", &git.git_url("fleet")])
        .args(args)
        .env("TMPDIR", git.scratch_dir("gitops"))
        .env("DOCKER_CONFIG", keel_testsupport::no_docker_config())
        .env("RUST_LOG", "info")
        .env_remove("POLL_DEFAULTSCHEDULE")
        .env_remove("KEEL_LISTEN")
        .env_remove("KEEL_APPROVALS_FILE")
        .env_remove("KEEL_API_AUTH")
        .env_remove("KEEL_API_DELEGATE_VOTERS")
        .env_remove("BASIC_AUTH_USER")
        .env_remove("BASIC_AUTH_PASSWORD")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(log).expect("log file"));
    command
}

/// `127.0.0.1:PORT` with a port nobody listens on.
fn free_addr() -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    format!("127.0.0.1:{port}")
}

/// A running `keel-gitops` and where it serves; killed when dropped.
struct Gitops {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Gitops {
    /// Starts `command` serving on `listen` and waits until `/healthz` answers.
    async fn start(mut command: Command, listen: &str, log: PathBuf) -> Gitops {
        let mut gitops = Gitops {
            child: command
                .arg("--listen")
                .arg(listen)
                .spawn()
                .expect("keel-gitops runs"),
            base: format!("http://{listen}"),
            log,
        };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = client.get(gitops.url("/healthz")).send().await
                && r.status() == StatusCode::OK
            {
                assert_eq!(r.text().await.unwrap(), "ok\n");
                return gitops;
            }
            let status = gitops.child.try_wait().expect("keel-gitops's status");
            assert!(status.is_none(), "keel-gitops stopped: {}", gitops.log());
            assert!(
                Instant::now() < deadline,
                "keel-gitops does not answer: {}",
                gitops.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// What it logged so far.
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the process to end, 20 seconds at most.
    async fn terminate(&mut self) -> ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("keel-gitops's status") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "keel-gitops ignores SIGTERM: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Gitops {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Calls `probe` every 200 ms until it returns `Some`, for `secs` seconds at most; `what`
/// names the wait in the panic.
async fn eventually<T, F: Future<Output = Option<T>>>(
    secs: u64,
    what: &str,
    mut probe: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(Instant::now() < deadline, "{what}: not within {secs} s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The tracked-images page as the admin sees it.
async fn tracked_page(client: &reqwest::Client, gitops: &Gitops) -> String {
    let page = client
        .get(gitops.url("/ui/"))
        .basic_auth(ADMIN.0, Some(ADMIN.1))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    page.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_update_shows_on_the_dashboard_and_is_pushed_once_approved() {
    let (_registry, git, api) = &fleet().await;
    let (old, new) = (&format!("{api}:2.0.0"), &format!("{api}:2.1.0"));
    let manifest = git.read_file("fleet", "main", "apps.yaml").unwrap();
    let log = git.scratch_dir("log").join("keel-gitops.log");
    let mut command = gitops(git, &["--interval", "1s"], &log);
    command
        .env("BASIC_AUTH_USER", ADMIN.0)
        .env("BASIC_AUTH_PASSWORD", ADMIN.1)
        .env("KEEL_API_AUTH", APPROVER.0);
    let gitops = &Gitops::start(command, &free_addr(), log).await;
    let client = &reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // The first pass opens a request for 2.1.0 and pushes nothing.
    let approvals = &gitops.url("/api/v1/approvals");
    let request: Value = eventually(30, "an approval request", move || async move {
        approval_requests(client, gitops).await.first().cloned()
    })
    .await;
    assert_eq!(request["state"], "pending", "{request}");
    assert_eq!(request["required"], 1, "{request}");
    assert_eq!(request["plan"]["new"], new.as_str(), "{request}");
    let id = request["id"].as_str().expect("a request id").to_owned();

    // The dashboard lists the reference with the update its pass found.
    let html = eventually(30, "the held update on /ui/", move || async move {
        let html = tracked_page(client, gitops).await;
        html.contains(&format!("<td class=\"mono\">{new}</td>"))
            .then_some(html)
    })
    .await;
    assert!(html.contains(&format!(">{old}<")), "{html}");
    assert!(html.contains("<td>minor</td>"), "{html}");
    assert!(
        html.contains("update available</span> <strong>1</strong>"),
        "{html}"
    );

    // The reference's own page checks it against the registry: the diff its update makes.
    let page = client
        .get(gitops.url("/ui/image"))
        .query(&[
            ("target", request["plan"]["target"].as_str().unwrap()),
            ("id", request["plan"]["id"].as_str().unwrap()),
        ])
        .basic_auth(ADMIN.0, Some(ADMIN.1))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    let change = html
        .split_once("What the next update changes")
        .map(|(_, change)| change)
        .unwrap_or_else(|| panic!("no next change: {html}"));
    assert!(change.contains("apps.yaml"), "{html}");
    assert!(change.contains(new.as_str()), "{html}");

    // Nothing is served without credentials.
    let anonymous = client.get(gitops.url("/ui/")).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::SEE_OTHER);
    assert_eq!(anonymous.headers()[LOCATION], "/ui/login");
    let anonymous = client.get(approvals).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let wrong = client
        .get(approvals)
        .basic_auth(ADMIN.0, Some("not-the-password"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);

    // Passes keep running every second and keep holding the update.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let text = git.read_file("fleet", "main", "apps.yaml").unwrap();
    assert!(text.contains(old.as_str()), "{text}");

    let approved = client
        .post(gitops.url(&format!("/api/v1/approvals/{id}/approve")))
        .bearer_auth(APPROVER.1)
        .send()
        .await
        .unwrap();
    assert_eq!(approved.status(), StatusCode::OK);
    let approved: Value = approved.json().await.unwrap();
    assert_eq!(approved["state"], "approved", "{approved}");

    // The next pass pushes it, and says so on the request and on the dashboard.
    let started = Instant::now();
    let pushed = eventually(30, "the approved update pushed", move || async move {
        let text = git.read_file("fleet", "main", "apps.yaml")?;
        text.contains(new.as_str()).then_some(text)
    })
    .await;
    // The approved image, pinned to the digest the vote was for when the request has one.
    let approved_image = match request["digest"].as_str() {
        Some(digest) => format!("{new}@{digest}"),
        None => new.clone(),
    };
    assert_eq!(pushed, manifest.replace(old.as_str(), &approved_image));
    eprintln!("approval to pushed commit: {:?}", started.elapsed());
    let request = &gitops.url(&format!("/api/v1/approvals/{id}"));
    eventually(30, "the request marked applied", move || async move {
        let request = json_of(client.get(request).bearer_auth(APPROVER.1)).await;
        (request["state"] == "applied").then_some(())
    })
    .await;
    // The page reads the pushed manifest: the reference now runs the new image.
    let html = eventually(30, "the pushed image on /ui/", move || async move {
        let html = tracked_page(client, gitops).await;
        (!html.contains(&format!(">{old}<"))).then_some(html)
    })
    .await;
    assert!(html.contains(&format!(">{approved_image}<")), "{html}");
    // The next pass finds nothing newer: the update no longer shows as available.
    eventually(30, "the reference up to date on /ui/", move || async move {
        let html = tracked_page(client, gitops).await;
        html.contains("up to date</span> <strong>1</strong>")
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_credentials_only_healthz_is_served_and_sigterm_stops_it() {
    let (_registry, git, _) = &fleet().await;
    let log = git.scratch_dir("log").join("keel-gitops.log");
    let command = gitops(git, &["--interval", "1s"], &log);
    let listen = free_addr();
    let mut gitops = Gitops::start(command, &listen, log).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    for path in ["/ui/", "/ui/login", "/api/v1/approvals"] {
        let response = client
            .get(gitops.url(path))
            .basic_auth(ADMIN.0, Some(ADMIN.1))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }
    let log = gitops.log();
    assert!(log.contains(API_OFF), "{log}");

    let status = gitops.terminate().await;
    assert!(status.success(), "{status}: {}", gitops.log());
    assert!(
        std::net::TcpStream::connect(&listen).is_err(),
        "{listen} still accepts connections"
    );
}

/// The approval requests `gitops` lists, as the admin sees them.
async fn approval_requests(client: &reqwest::Client, gitops: &Gitops) -> Vec<Value> {
    let approvals = client.get(gitops.url("/api/v1/approvals"));
    let listed = json_of(approvals.basic_auth(ADMIN.0, Some(ADMIN.1))).await;
    listed["approvals"].as_array().cloned().unwrap_or_default()
}

/// The JSON `request` answers; panics when it fails or answers something else.
async fn json_of(request: reqwest::RequestBuilder) -> Value {
    let response = request.send().await.expect("the request is answered");
    response.json().await.expect("the answer is JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_file_keeps_requests_and_votes_across_a_restart() {
    let (_registry, git, _) = &fleet().await;
    let file = git.scratch_dir("approvals").join("approvals.redb");
    let file = file.to_str().unwrap();
    let client = &reqwest::Client::new();
    let start = |name: &str| {
        let log = git.scratch_dir(name).join("keel-gitops.log");
        let mut command = gitops(git, &["--interval", "1h", "--approvals-file", file], &log);
        command
            .env("BASIC_AUTH_USER", ADMIN.0)
            .env("BASIC_AUTH_PASSWORD", ADMIN.1);
        async move { Gitops::start(command, &free_addr(), log).await }
    };

    let mut first = start("first").await;
    let gitops = &first;
    let requests = eventually(30, "an approval request", move || async move {
        let requests = approval_requests(client, gitops).await;
        (!requests.is_empty()).then_some(requests)
    })
    .await;
    let id = requests[0]["id"].as_str().expect("a request id").to_owned();
    let status = first.terminate().await;
    assert!(status.success(), "{status}: {}", first.log());

    // The second process finds the request, and the vote cast on it survives the next restart.
    let mut second = start("second").await;
    let requests = approval_requests(client, &second).await;
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0]["id"], id.as_str());
    assert_eq!(requests[0]["state"], "pending");
    let voted = client
        .post(second.url(&format!("/api/v1/approvals/{id}/reject")))
        .basic_auth(ADMIN.0, Some(ADMIN.1))
        .send()
        .await
        .unwrap();
    assert_eq!(voted.status(), StatusCode::OK);
    let status = second.terminate().await;
    assert!(status.success(), "{status}: {}", second.log());

    let third = &start("third").await;
    // After its first pass, which finds the update again: still rejected, nothing pushed.
    eventually(30, "a pass", move || async move {
        third.log().contains("pass done").then_some(())
    })
    .await;
    let requests = approval_requests(client, third).await;
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0]["state"], "rejected", "{requests:?}");
    let text = git.read_file("fleet", "main", "apps.yaml").unwrap();
    assert!(text.contains("api:2.0.0"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_serves_nothing() {
    let (_registry, git, _) = &fleet().await;
    let head = git.head("fleet", "main");
    // Taken: a run that tried to listen on it would fail.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap().to_string();
    let log = git.scratch_dir("log").join("keel-gitops.log");
    let mut command = gitops(git, &["--once", "--dry-run", "--listen", &listen], &log);
    command
        .env("BASIC_AUTH_USER", ADMIN.0)
        .env("BASIC_AUTH_PASSWORD", ADMIN.1);
    let output = tokio::task::block_in_place(|| command.output().expect("keel-gitops runs"));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(output.status.success(), "{text}");
    assert!(text.contains("pass done"), "{text}");
    assert!(!text.contains("serving"), "{text}");
    assert!(!text.contains(API_OFF), "{text}");
    assert_eq!(git.head("fleet", "main"), head);
}

#[test]
fn bad_settings_stop_the_start_naming_them() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    let dir = std::env::temp_dir();
    let dir = dir.to_str().unwrap();
    for (args, env, named) in [
        (&["--listen", "localhost"][..], None, "--listen"),
        (&["--listen", &taken], None, "--listen"),
        (&["--approvals-file", dir], None, "--approvals-file"),
        (&["--interval", "soon"], None, "--interval"),
        (
            &[],
            Some(("BASIC_AUTH_USER", "admin")),
            "BASIC_AUTH_PASSWORD",
        ),
        (&[], Some(("KEEL_API_AUTH", "nonsense")), "KEEL_API_AUTH"),
        (&[], Some(("KEEL_LISTEN", "nowhere")), "--listen"),
    ] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_keel-gitops"));
        command
            .args(["--repo", "git://127.0.0.1:9/fleet.git"])
            .args(args)
            .env("DOCKER_CONFIG", keel_testsupport::no_docker_config())
            .env_remove("KEEL_LISTEN")
            .env_remove("KEEL_API_AUTH")
            .env_remove("BASIC_AUTH_USER")
            .env_remove("BASIC_AUTH_PASSWORD")
            .env_remove("POLL_DEFAULTSCHEDULE")
            .stdin(Stdio::null());
        if let Some((name, value)) = env {
            command.env(name, value);
        }
        let output = command.output().expect("keel-gitops runs");
        let text = keel_testsupport::output_text(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?} {env:?}: {text}");
        assert!(text.contains(named), "{args:?} {env:?}: {text}");
    }
}

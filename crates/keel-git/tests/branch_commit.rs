//! `BranchCommit` against a real `git daemon` on 127.0.0.1: edits of given files pushed as
//! one commit, on the default branch or another, again from a fresh fetch when the branch
//! moved.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;

use keel_core::Error;
use keel_git::{BranchCommit, CommitOutcome, GitAuth};
use keel_testsupport::git::GitServer;

const VALUES: &str = "apps/web/values.yaml";
const VALUES_YAML: &str = "# web\nimage:\n  tag: 1.2.3 # pinned\n";

fn commit(server: &GitServer) -> BranchCommit {
    BranchCommit::new(server.git_url("deploy"), server.scratch_dir("workdir"))
        .with_author("keel-test", "keel-test@example.invalid")
}

/// An edit that sets the tag of `VALUES` to `tag`.
fn set_tag(
    tag: &'static str,
) -> impl FnMut(&mut keel_git::RepoFiles) -> Result<(), Error> + Send + 'static {
    move |files| {
        let text = files.read(VALUES)?.expect("the values file");
        let line = text
            .lines()
            .find(|l| l.contains("tag:"))
            .expect("a tag line")
            .to_owned();
        files.write(
            VALUES,
            text.replace(&line, &format!("  tag: {tag} # pinned")),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_to_the_default_branch_once_and_not_again() {
    let server = GitServer::start();
    let initial = server.create_repo("deploy", &[(VALUES, VALUES_YAML)], "trunk");
    let target = commit(&server);

    let outcome = target
        .commit("build: web 1.2.4", set_tag("1.2.4"))
        .await
        .unwrap();
    let head = server.head("deploy", "trunk").expect("trunk");
    assert_eq!(
        outcome,
        CommitOutcome::Pushed {
            commit: head.clone(),
            branch: "trunk".into()
        }
    );
    assert_eq!(
        server.read_file("deploy", "trunk", VALUES).unwrap(),
        "# web\nimage:\n  tag: 1.2.4 # pinned\n"
    );
    let log = server.log("deploy", "trunk");
    assert_eq!(log.len(), 2);
    assert_eq!(log[1].0, initial);
    assert_eq!(
        server.show("deploy", &head, "%an <%ae>%n%B").trim(),
        "keel-test <keel-test@example.invalid>\nbuild: web 1.2.4"
    );
    assert_eq!(
        target
            .read(vec![VALUES.into(), "missing.yaml".into()])
            .await
            .unwrap(),
        vec![
            Some("# web\nimage:\n  tag: 1.2.4 # pinned\n".to_owned()),
            None
        ]
    );

    // The same edit again changes nothing: no empty commit.
    let again = target
        .commit("build: web 1.2.4", set_tag("1.2.4"))
        .await
        .unwrap();
    assert_eq!(again, CommitOutcome::Unchanged);
    assert_eq!(server.head("deploy", "trunk"), Some(head));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_branch_starts_from_the_base_and_then_from_itself() {
    let server = GitServer::start();
    let initial = server.create_repo("deploy", &[(VALUES, VALUES_YAML)], "main");
    let target = commit(&server)
        .with_branch("main")
        .with_push_branch("image-updates");

    target.commit("web 1.2.4", set_tag("1.2.4")).await.unwrap();
    assert_eq!(
        server.head("deploy", "main").as_deref(),
        Some(initial.as_str())
    );
    let first = server
        .head("deploy", "image-updates")
        .expect("pushed branch");
    target.commit("web 1.3.0", set_tag("1.3.0")).await.unwrap();
    let log = server.log("deploy", "image-updates");
    assert_eq!(log.len(), 3, "{log:?}");
    assert_eq!(log[1].0, first);
    assert_eq!(
        server.read_file("deploy", "main", VALUES).unwrap(),
        VALUES_YAML
    );

    let missing = commit(&server)
        .with_branch("release")
        .commit("x", set_tag("9"))
        .await;
    let err = missing.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    assert!(
        err.to_string().contains("branch release of git://"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_race_keeps_both_commits() {
    let server = GitServer::start();
    server.create_repo(
        "deploy",
        &[(VALUES, VALUES_YAML), ("README.md", "deploy\n")],
        "main",
    );
    let theirs = server.push_file("deploy", "theirs", "README.md", "changed\n", "Docs");
    server.move_branch_on_next_push("deploy", "main", &theirs);
    let outcome = commit(&server)
        .commit("web 1.2.4", set_tag("1.2.4"))
        .await
        .unwrap();
    let log = server.log("deploy", "main");
    assert_eq!(log.len(), 3, "{log:?}");
    assert_eq!(log[1].0, theirs);
    assert!(matches!(outcome, CommitOutcome::Pushed { commit, .. } if commit == log[0].0));
    assert_eq!(
        server.read_file("deploy", "main", "README.md").unwrap(),
        "changed\n"
    );
    assert!(
        server
            .read_file("deploy", "main", VALUES)
            .unwrap()
            .contains("1.2.4")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_edit_or_a_path_outside_pushes_nothing() {
    let server = GitServer::start();
    let initial = server.create_repo("deploy", &[(VALUES, VALUES_YAML)], "main");
    for path in ["../outside.yaml", "/etc/x.yaml", ".git/config"] {
        let err = commit(&server)
            .commit("x", move |files| files.write(path, "x"))
            .await
            .unwrap_err();
        assert!(err.to_string().contains(path), "{err}");
    }
    let err = commit(&server)
        .commit("x", |files| {
            files.write(VALUES, "half")?;
            Err(Error::not_found("the second file"))
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    assert_eq!(server.head("deploy", "main"), Some(initial));
}

/// A server on 127.0.0.1 that answers every request with a redirect to the same path on
/// `target` (scheme, host and port); its port.
fn redirect_to(target: String) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            let path = request.split(' ').nth(1).unwrap_or("/").to_owned();
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let _ = write!(
                stream,
                "HTTP/1.1 302 Found\r\nLocation: {target}{path}\r\nContent-Length: 0\r\n\
                 Connection: close\r\n\r\n"
            );
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_another_host_gets_no_password() {
    let server = GitServer::start_with_http("bot", "s3cret");
    server.create_repo("deploy", &[(VALUES, VALUES_YAML)], "main");
    let direct = server.http_url("deploy");
    // The same repository through a redirect to `localhost`, another host than the one
    // configured (127.0.0.1).
    let origin = direct.split("/git/").next().unwrap().to_owned();
    let port = redirect_to(origin.replace("127.0.0.1", "localhost"));
    let redirected = direct.replace(&origin, &format!("http://127.0.0.1:{port}"));
    let auth = GitAuth::UserPassword {
        username: "bot".into(),
        password: "s3cret".into(),
    };
    let err = BranchCommit::new(&redirected, server.scratch_dir("workdir"))
        .with_auth(auth.clone())
        .commit("web 1.2.4", set_tag("1.2.4"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("another host"), "{err}");
    let log = server.http_log();
    assert!(log.iter().all(|r| r.user.is_none()), "{log:?}");
    // Straight to the repository, the same credentials work.
    let outcome = BranchCommit::new(&direct, server.scratch_dir("workdir"))
        .with_auth(auth)
        .commit("web 1.2.4", set_tag("1.2.4"))
        .await
        .unwrap();
    assert!(
        matches!(outcome, CommitOutcome::Pushed { .. }),
        "{outcome:?}"
    );
}

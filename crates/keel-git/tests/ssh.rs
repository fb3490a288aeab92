//! `GitTarget` over SSH against a real OpenSSH `sshd` (`scripts/ssh-server`) serving the
//! repositories of a real git server: keys held in memory, host keys pinned by
//! `known_hosts`.

use std::process::Command;

use keel_core::target::{ApplyOutcome, Target, UpdatePlan};
use keel_core::{Error, ImageRef};
use keel_git::known_hosts::KnownHosts;
use keel_git::{GitAuth, GitTarget};
use keel_testsupport::assert_contains;
use keel_testsupport::git::{GitServer, SshServer};

const WEB: &str = "apps/web.yaml";
const WEB_YAML: &str = include_str!("fleet/apps/web.yaml");

fn auth(key: String, known_hosts: &str) -> GitAuth {
    GitAuth::SshKeyInMemory {
        username: "git".into(),
        private_key: key.into(),
        passphrase: None,
        known_hosts: KnownHosts::parse(known_hosts).expect("known_hosts"),
    }
}

fn target(git: &GitServer, ssh: &SshServer, auth: GitAuth) -> GitTarget {
    GitTarget::builder(ssh.url(git, "fleet"))
        .with_workdir(git.scratch_dir("workdir"))
        .with_author("keel-test", "keel-test@example.invalid")
        .with_auth(auth)
        .build()
}

fn plan(target: &GitTarget) -> UpdatePlan {
    UpdatePlan {
        target: target.name().to_owned(),
        id: "apps/web.yaml#L10:flux-system:web".into(),
        current: ImageRef::parse("ghcr.io/acme/web:1.2.3").unwrap(),
        new: ImageRef::parse("ghcr.io/acme/web:1.3.0").unwrap(),
    }
}

/// The outcome of applying the test plan through a target with `auth`.
async fn apply(git: &GitServer, ssh: &SshServer, auth: GitAuth) -> Result<ApplyOutcome, Error> {
    let target = target(git, ssh, auth);
    target.apply(&plan(&target)).await
}

/// The error of applying the test plan through a target with `auth`, which must fail.
async fn refusal(git: &GitServer, ssh: &SshServer, auth: GitAuth) -> String {
    apply(git, ssh, auth).await.unwrap_err().to_string()
}

/// How many times the server was asked to let someone in (any method, any key).
fn auth_requests(ssh: &SshServer) -> usize {
    ssh.log().matches("userauth-request for user").count()
}

/// `known_hosts` hashed by OpenSSH's own `ssh-keygen -H`.
fn hashed(ssh: &SshServer, known_hosts: &str) -> String {
    let file = ssh.dir().join("hashed_known_hosts");
    std::fs::write(&file, format!("{known_hosts}\n")).unwrap();
    let status = Command::new("ssh-keygen")
        .args(["-q", "-H", "-f"])
        .arg(&file)
        .status()
        .expect("run ssh-keygen");
    assert!(status.success());
    std::fs::read_to_string(&file).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_over_ssh_only_to_the_pinned_host_with_the_right_key() {
    let git = GitServer::start();
    git.create_repo("fleet", &[(WEB, WEB_YAML)], "main");
    let ssh = SshServer::start();
    let head = git.head("fleet", "main");

    // A host key that is not the server's: refused before any key is offered.
    let wrong_host = format!("[127.0.0.1]:{} {}", ssh.port(), ssh.other_public_key());
    let before = auth_requests(&ssh);
    let error = refusal(&git, &ssh, auth(ssh.client_key(), &wrong_host)).await;
    assert_contains(
        &error,
        &[&format!("[127.0.0.1]:{}", ssh.port()), "known_hosts"],
    );
    assert!(!error.contains("PRIVATE KEY"), "{error}");
    assert_eq!(
        auth_requests(&ssh),
        before,
        "a credential reached the server: {}",
        ssh.log()
    );
    // Known for another port only: refused as well.
    let other_port = format!("[127.0.0.1]:1 {}", ssh.host_key());
    let error = refusal(&git, &ssh, auth(ssh.client_key(), &other_port)).await;
    assert_contains(
        &error,
        &["no key for", &format!("[127.0.0.1]:{}", ssh.port())],
    );
    assert_eq!(auth_requests(&ssh), before);

    // The right host key, the wrong identity: refused by the server, nothing pushed.
    let error = apply(&git, &ssh, auth(ssh.other_key(), ssh.known_hosts()))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Unauthorized { .. }), "{error:?}");
    assert!(auth_requests(&ssh) > before);
    assert_eq!(git.head("fleet", "main"), head);

    // The right host key (hashed, as ssh-keygen -H writes it) and identity: pushed.
    let pinned = target(
        &git,
        &ssh,
        auth(ssh.client_key(), &hashed(&ssh, ssh.known_hosts())),
    );
    let outcome = pinned.apply(&plan(&pinned)).await;
    assert!(matches!(outcome, Ok(ApplyOutcome::Applied)), "{outcome:?}");
    let log = git.log("fleet", "main");
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(
        git.read_file("fleet", "main", WEB).unwrap(),
        WEB_YAML.replace("web:1.2.3", "web:1.3.0")
    );
    assert_eq!(pinned.last_pushed_commit().as_ref(), Some(&log[0].0));

    // A key protected by a passphrase, given with it.
    let file = ssh.dir().join("protected");
    std::fs::write(&file, ssh.client_key()).unwrap();
    // ssh-keygen reads no private key that others may read.
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let status = Command::new("ssh-keygen")
        .args(["-q", "-p", "-P", "", "-N", "pass phrase", "-f"])
        .arg(&file)
        .status()
        .expect("run ssh-keygen");
    assert!(status.success());
    let protected = std::fs::read_to_string(&file).unwrap();
    let with_passphrase = GitAuth::SshKeyInMemory {
        username: "git".into(),
        private_key: protected.into(),
        passphrase: Some("pass phrase".into()),
        known_hosts: KnownHosts::parse(ssh.known_hosts()).unwrap(),
    };
    let references = target(&git, &ssh, with_passphrase)
        .references()
        .await
        .unwrap();
    assert_eq!(references.len(), 1, "{references:?}");
}

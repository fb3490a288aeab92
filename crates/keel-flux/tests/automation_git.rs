//! The automation against a real kube-apiserver (Flux's CRDs from `crds/`) and a real Git
//! server, in the ways it reaches Git: checkouts that are not a branch, SSH secrets pinned by
//! `known_hosts`, and commits signed with the `signingKey`.
//!
//! Run `eval "$(scripts/envtest env)"` first; without the API server binaries the tests skip.

mod automation_common;
mod common;

use automation_common::{
    AUTOMATIONS, GIT_REPOSITORIES, automation, create_automation, fleet_file, fleet_namespace,
    git_server, git_spec, outcome, policies_with_choices, pushed_log, status, up_to_date,
    updated_deployment,
};
use common::{at, namespace};
use keel_testsupport::git::SshServer;
use keel_testsupport::kube::create_secret;
use keel_testsupport::kube::flux::{assert_ready, create, git_repository_spec, patch_spec};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkouts_that_are_not_a_branch_push_on_top_of_them_to_the_push_branch() {
    let Some((ns, client, server)) = fleet_namespace("auto-checkout").await else {
        return;
    };
    let initial = server.head("fleet", "main").expect("main");
    let later = server.push_file("fleet", "main", "README.md", "later\n", "Later work");
    for (tag, commit) in [
        ("v1.0.0", &initial),
        ("v1.1.0", &later),
        ("v2.0.0", &initial),
    ] {
        server.bare("fleet", ["tag", tag, commit]).expect_success();
    }
    // A GitRepository that checks out a tag, for an automation without a checkout of its own.
    let mut on_tag = git_repository_spec(&server.http_url("fleet"), "git");
    on_tag["ref"] = json!({"tag": "v1.0.0"});
    create(&client, &ns, "v1", GIT_REPOSITORIES, "fleet-tag", on_tag).await;
    let git = |reference: Value, push: Option<&str>| {
        let mut git = git_spec();
        git["checkout"] = json!({"ref": reference});
        if let Some(push) = push {
            git["push"] = json!({"branch": push});
        }
        json!({"git": git})
    };
    let cases = [
        (
            "tag",
            git(json!({"tag": "v1.0.0"}), Some("from-tag")),
            &initial,
        ),
        (
            "semver",
            git(json!({"semver": ">=1.0.0 <2.0.0"}), Some("from-semver")),
            &later,
        ),
        (
            "name",
            git(json!({"name": "refs/tags/v1.0.0"}), Some("from-name")),
            &initial,
        ),
        (
            "commit",
            // The commit wins over the branch, as in Flux.
            git(
                json!({"commit": initial, "branch": "main"}),
                Some("from-commit"),
            ),
            &initial,
        ),
    ];
    for (name, extra, _) in &cases {
        create_automation(&client, &ns, name, extra.clone()).await;
    }
    let mut from_repository = git_spec();
    from_repository
        .as_object_mut()
        .expect("git")
        .remove("checkout");
    from_repository["push"] = json!({"branch": "from-repository"});
    create_automation(
        &client,
        &ns,
        "repository",
        json!({
            "sourceRef": {"kind": "GitRepository", "name": "fleet-tag"},
            "git": from_repository,
        }),
    )
    .await;
    create_automation(&client, &ns, "no-push", git(json!({"tag": "v1.0.0"}), None)).await;

    let automation = automation(&client, &ns, &server);
    let report = automation.reconcile(at("2026-03-01T10:00:00Z")).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let expected_app = updated_deployment(&ns);
    let branches = cases
        .iter()
        .map(|(name, extra, base)| {
            let branch = extra["git"]["push"]["branch"].as_str().unwrap().to_owned();
            (name.to_string(), branch, (*base).clone())
        })
        .chain([(
            "repository".to_owned(),
            "from-repository".to_owned(),
            initial.clone(),
        )]);
    for (name, branch, base) in branches {
        let log = server.log("fleet", &branch);
        assert_eq!(
            server.show("fleet", &log[0].0, "%P").trim(),
            base,
            "{name}: not one commit on top of its checkout: {log:?}"
        );
        assert_eq!(report.pushed.get(&format!("{ns}/{name}")), Some(&log[0].0));
        assert_eq!(
            server.read_file("fleet", &branch, "apps/app.yaml").unwrap(),
            expected_app,
            "{name}"
        );
        assert_ready(
            &status(&client, &ns, &name).await,
            "True",
            "ReconciliationSucceeded",
            &format!("to branch '{branch}'"),
        );
    }
    assert_eq!(
        server.head("fleet", "main").as_deref(),
        Some(later.as_str())
    );
    assert_ready(
        &status(&client, &ns, "no-push").await,
        "False",
        "InvalidSourceConfiguration",
        "spec.git.push.branch is required",
    );

    // The next run finds the push branch as it would make it: nothing to push.
    let again = automation.reconcile(at("2026-03-01T10:01:00Z")).await;
    assert_eq!(outcome(&again, &ns, "tag"), &up_to_date());
    assert_eq!(server.log("fleet", "from-tag").len(), 2);

    // Commits of someone else on the push branch: the branch is made anew from the tag, as
    // Flux's default (GitForcePushBranch) does.
    let theirs = server.push_file("fleet", "from-tag", "NOTES.md", "x\n", "Notes");
    let report = automation.reconcile(at("2026-03-01T10:02:00Z")).await;
    let log = pushed_log(&server, &report, &ns, "tag", "from-tag", 2);
    assert_eq!(log[1].0, initial);
    assert!(log.iter().all(|(id, _)| *id != theirs), "{log:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_secrets_push_only_to_the_host_known_hosts_pins() {
    let Some((ns, client)) = namespace("auto-ssh").await else {
        return;
    };
    let server = git_server(&ns);
    let ssh = SshServer::start();
    policies_with_choices(&client, &ns).await;
    let head = server.head("fleet", "main");
    let client_key = ssh.client_key();
    let other_key = ssh.other_key();
    let wrong_host = format!("[127.0.0.1]:{} {}", ssh.port(), ssh.other_public_key());
    for (secret, data) in [
        (
            "good",
            vec![
                ("identity", client_key.as_str()),
                ("known_hosts", ssh.known_hosts()),
            ],
        ),
        (
            "wrong-host",
            vec![
                ("identity", client_key.as_str()),
                ("known_hosts", &wrong_host),
            ],
        ),
        (
            "wrong-identity",
            vec![
                ("identity", other_key.as_str()),
                ("known_hosts", ssh.known_hosts()),
            ],
        ),
        ("no-known-hosts", vec![("identity", client_key.as_str())]),
    ] {
        create_secret(&client, &ns, secret, &data).await;
        let spec = git_repository_spec(&ssh.url(&server, "fleet"), secret);
        create(&client, &ns, "v1", GIT_REPOSITORIES, secret, spec).await;
        let mut git = git_spec();
        git.as_object_mut().expect("git").remove("checkout");
        create_automation(
            &client,
            &ns,
            secret,
            json!({"sourceRef": {"kind": "GitRepository", "name": secret}, "git": git}),
        )
        .await;
    }
    // The failures first, so that the good one's push does not make them up-to-date.
    patch_spec(&client, &ns, AUTOMATIONS, "good", json!({"suspend": true})).await;
    let requests = || ssh.log().matches("userauth-request for user").count();
    let report = automation(&client, &ns, &server)
        .reconcile(at("2026-03-01T10:00:00Z"))
        .await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(report.pushed.is_empty(), "{:?}", report.pushed);
    assert_eq!(server.head("fleet", "main"), head);
    let port = format!("[127.0.0.1]:{}", ssh.port());
    for (name, reason, says) in [
        ("wrong-host", "GitOperationFailed", port.as_str()),
        ("wrong-identity", "GitOperationFailed", "refused"),
        (
            "no-known-hosts",
            "InvalidSourceConfiguration",
            "without known_hosts",
        ),
    ] {
        let message = assert_ready(&status(&client, &ns, name).await, "False", reason, says);
        assert!(!message.contains("PRIVATE KEY"), "{message}");
    }
    // The server was asked to let the wrong identity in (keel-git's SSH test shows that a
    // server with a host key not pinned gets no request at all).
    assert!(requests() > 0, "{}", ssh.log());

    patch_spec(&client, &ns, AUTOMATIONS, "good", json!({"suspend": false})).await;
    let report = automation(&client, &ns, &server)
        .reconcile(at("2026-03-01T10:00:10Z"))
        .await;
    pushed_log(&server, &report, &ns, "good", "main", 2);
    assert_eq!(
        fleet_file(&server, "apps/app.yaml"),
        updated_deployment(&ns)
    );
}

/// Runs `gpg` with the key ring `home`, failing the test unless it succeeds.
fn gpg(home: &std::path::Path, args: &[&str]) -> Vec<u8> {
    let output = std::process::Command::new("gpg")
        .arg("--homedir")
        .arg(home)
        .args(["--batch", "--quiet", "--pinentry-mode", "loopback"])
        .args(args)
        .output()
        .expect("run gpg (Debian's gnupg)");
    assert!(
        output.status.success(),
        "gpg {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_are_signed_with_the_signing_key_and_verify_with_git() {
    let Some((ns, client, server)) = fleet_namespace("auto-sign").await else {
        return;
    };
    let head = server.head("fleet", "main");
    // A key made by GnuPG, as users make theirs.
    let home = server.scratch_dir("gnupg");
    let passphrase = "correct horse";
    gpg(
        &home,
        &[
            "--passphrase",
            passphrase,
            "--quick-gen-key",
            "Flux Bot <flux@example.invalid>",
            "ed25519",
            "sign",
            "never",
        ],
    );
    let armored = String::from_utf8(gpg(
        &home,
        &[
            "--passphrase",
            passphrase,
            "--armor",
            "--export-secret-keys",
            "flux@example.invalid",
        ],
    ))
    .unwrap();
    create_secret(
        &client,
        &ns,
        "signing",
        &[("git.asc", armored.as_str()), ("passphrase", passphrase)],
    )
    .await;
    create_secret(
        &client,
        &ns,
        "wrong-passphrase",
        &[("git.asc", armored.as_str()), ("passphrase", "wrong")],
    )
    .await;
    create_secret(&client, &ns, "not-a-key", &[("git.asc", "hello")]).await;
    for (name, secret) in [
        ("unlocked", "wrong-passphrase"),
        ("garbage", "not-a-key"),
        ("signed", "signing"),
    ] {
        let mut git = git_spec();
        git["commit"]["signingKey"] = json!({"secretRef": {"name": secret}});
        create_automation(&client, &ns, name, json!({"git": git})).await;
    }
    let mut git = git_spec();
    git["commit"]["signingKey"] = json!({"type": "ssh", "secretRef": {"name": "signing"}});
    create_automation(&client, &ns, "ssh-signing", json!({"git": git})).await;

    let report = automation(&client, &ns, &server)
        .reconcile(at("2026-03-01T10:00:00Z"))
        .await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    for (name, says) in [
        ("unlocked", "cannot sign"),
        ("garbage", "not an ASCII-armored OpenPGP private key"),
        ("ssh-signing", "type 'ssh'"),
    ] {
        let message = assert_ready(
            &status(&client, &ns, name).await,
            "False",
            "InvalidSourceConfiguration",
            says,
        );
        assert!(!message.contains(passphrase), "{message}");
    }
    let log = pushed_log(&server, &report, &ns, "signed", "main", 2);
    assert_eq!(log[1].0, head.unwrap());

    // git itself verifies the signature with the public key.
    let mut verify = server.git().command();
    verify
        .env("GNUPGHOME", &home)
        .arg("--git-dir")
        .arg(server.repo_path("fleet"))
        .args(["verify-commit", "--raw", &log[0].0]);
    let output = server.git().output(verify);
    assert!(output.success, "{}", output.stderr);
    let said = &output.stderr;
    assert!(said.contains("GOODSIG"), "{said}");
    // And refuses a commit that is not signed.
    let mut unsigned = server.git().command();
    unsigned
        .env("GNUPGHOME", &home)
        .arg("--git-dir")
        .arg(server.repo_path("fleet"))
        .args(["verify-commit", &log[1].0]);
    assert!(!server.git().output(unsigned).success);
    let _ = std::process::Command::new("gpgconf")
        .arg("--homedir")
        .arg(&home)
        .args(["--kill", "gpg-agent"])
        .status();
}

//! `keel tags`, `keel digest` and `keel check` against a real registry on 127.0.0.1.

mod common;
use common::{assert_says, keel, text};

use keel_testsupport::registry::{RegistryServer, ServerOptions};

#[tokio::test]
async fn tags_digest_and_check() {
    let server = RegistryServer::start(ServerOptions::plain()).await;
    let repo = format!("{}/team/web", server.addr());
    server
        .push_tags("team/web", &["1.2.3", "1.2.4", "1.3.0", "2.0.0", "latest"])
        .await;
    let digest = server
        .push_image(
            "team/web",
            "1.3.1-rc.1",
            "2024-05-01T00:00:00Z",
            "linux/amd64",
        )
        .await;

    let o = keel(&["tags", &repo], "");
    assert!(o.status.success(), "{}", text(&o.stderr));
    let mut listed: Vec<&str> = text(&o.stdout).lines().collect();
    listed.sort();
    assert_eq!(
        listed,
        ["1.2.3", "1.2.4", "1.3.0", "1.3.1-rc.1", "2.0.0", "latest"]
    );

    let o = keel(&["tags", &repo, "--limit", "2", "-o", "json"], "");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["tags"].as_array().unwrap().len(), 2);
    assert_eq!(v["truncated"], true);

    let o = keel(&["digest", &format!("{repo}:1.3.1-rc.1")], "");
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), format!("{digest}\n"));

    let o = keel(
        &["check", &format!("{repo}:1.2.3"), "--policy", "minor"],
        "",
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "1.3.0\n");

    let o = keel(
        &[
            "check",
            &format!("{repo}:1.2.3"),
            "--policy",
            "minor",
            "-o",
            "json",
            "--explain",
        ],
        "",
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["chosen"], "1.3.0");
    assert_eq!(v["image"], format!("{repo}:1.2.3"));
    assert_eq!(v["candidates"], 6);

    let o = keel(
        &["check", &format!("{repo}:2.0.0"), "--policy", "major"],
        "",
    );
    assert!(o.status.success());
    assert_eq!(text(&o.stdout), "");
}

/// `keel check` decides through the pipeline, so a tag list cut short by the listing budget
/// chooses nothing: it fails naming the budget's flags and prints no tag.
#[tokio::test]
async fn check_chooses_nothing_from_a_cut_tag_list() {
    let server = RegistryServer::start(ServerOptions::plain()).await;
    let repo = format!("{}/team/api", server.addr());
    server
        .push_tags("team/api", &["1.0.0", "1.1.0", "1.2.0", "1.3.0"])
        .await;
    let image = format!("{repo}:1.0.0");

    let o = keel(
        &["check", &image, "--policy", "minor", "--max-tags", "2"],
        "",
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "");
    let err = text(&o.stderr);
    assert!(
        err.contains("partial list") && err.contains("--max-pages") && err.contains("--max-tags"),
        "{err}"
    );

    // With the whole list, the same check chooses the newest minor.
    let o = keel(&["check", &image, "--policy", "minor"], "");
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "1.3.0\n");
}

#[tokio::test]
async fn credentials_and_errors() {
    let options = ServerOptions::htpasswd("ci", "pw-123");
    let server = RegistryServer::with_tags(options, "team/api", &["1.0.0"]).await;
    let repo = format!("{}/team/api", server.addr());

    let o = keel(
        &["tags", &repo, "--username", "ci", "--password-stdin"],
        "pw-123\n",
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "1.0.0\n");

    let o = keel(
        &["tags", &repo, "--username", "ci", "--password-stdin"],
        "wrong\n",
    );
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(err.contains("unauthorized"), "{err}");
    assert!(!err.contains("wrong"), "the password leaked: {err}");

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        format!(
            r#"{{"auths":{{"{}":{{"username":"ci","password":"pw-123"}}}}}}"#,
            server.addr()
        ),
    )
    .unwrap();
    let o = keel(
        &[
            "check",
            &format!("{repo}:0.9.0"),
            "--policy",
            "major",
            "--docker-config",
            config.to_str().unwrap(),
        ],
        "",
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "1.0.0\n");

    let o = keel(
        &[
            "tags",
            &format!("{}/team/none", server.addr()),
            "--username",
            "ci",
            "--password-stdin",
        ],
        "pw-123",
    );
    assert_eq!(o.status.code(), Some(1));
    assert_says(&o.stderr, "not found");

    let o = keel(&["tags", "UPPER/Case"], "");
    assert_eq!(o.status.code(), Some(2));
    assert_says(&o.stderr, "invalid image reference");
}

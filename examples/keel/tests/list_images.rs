//! `keel list-images` and `keel check --repo` against a real registry (creation times from
//! the images' configs) and a real git server.

mod common;
use common::{assert_says, keel, stdout_of, text};

use keel_testsupport::git::GitServer;
use keel_testsupport::registry::{RegistryServer, ServerOptions};

/// A registry with `acme/web` at four versions, created a month apart in version order
/// except `1.2.4`, which was rebuilt last; and a fleet repository running `1.2.3` under
/// `minor` through a Flux marker.
async fn fixture() -> (RegistryServer, GitServer, String) {
    let registry = RegistryServer::start(ServerOptions::plain()).await;
    registry
        .push_images(
            "acme/web",
            &[
                ("1.2.3", "2026-01-01T00:00:00Z"),
                ("1.3.0", "2026-03-01T00:00:00Z"),
                ("2.0.0", "2026-04-01T00:00:00Z"),
                ("1.2.4", "2026-05-01T00:00:00Z"),
            ],
        )
        .await;
    let image = format!("{}/acme/web", registry.addr());
    let git = GitServer::start();
    let web = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  template:\n    spec:\n      containers:\n        - name: web\n          image: {image}:1.2.3 # {{\"$imagepolicy\": \"flux-system:web\"}}\n        - name: cache\n          image: {image}:1.2.3 # {{\"$imagepolicy\": \"flux-system:unknown\"}}\n"
    );
    git.create_repo(
        "fleet",
        &[
            ("apps/web.yaml", &web),
            (".keel.yaml", "policies:\n  flux-system:web: minor\n"),
        ],
        "main",
    );
    (registry, git, image)
}

fn run(args: &[&str]) -> std::process::Output {
    tokio::task::block_in_place(|| keel(args, ""))
}

/// Runs `keel ARGS`, which must succeed; its standard output.
fn succeeds(args: &[&str]) -> String {
    stdout_of(&run(args)).to_owned()
}

/// The lines of a listing below its heading: one per tag.
fn tag_lines(listing: &str) -> Vec<&str> {
    listing.lines().skip(1).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_repo_tables_each_marked_reference() {
    let (_registry, git, image) = fixture().await;
    let url = git.git_url("fleet");
    let workdir = git.scratch_dir("cli-check-repo");
    let table = succeeds(&[
        "check",
        "--repo",
        &url,
        "--workdir",
        workdir.to_str().unwrap(),
    ]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("REFERENCE"), "{table}");
    let columns = |line: &str| {
        line.split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        columns(lines[1]),
        [
            "apps/web.yaml#L10:flux-system:web".to_owned(),
            format!("{image}:1.2.3"),
            "minor".to_owned(),
            format!("{image}:1.3.0"),
        ],
        "{table}"
    );
    // A marker the configuration names no policy for is listed, and said to be untracked.
    assert!(
        lines[2].starts_with("apps/web.yaml#L12:flux-system:unknown")
            && lines[2].ends_with("error: not tracked: no policy"),
        "{table}"
    );
    // Nothing was committed.
    assert_eq!(git.log("fleet", "main").len(), 1);

    // --policy belongs to one IMAGE; IMAGE and --repo are two subjects.
    let o = run(&["check", "--repo", &url, "--policy", "major"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("--policy does not apply with --repo"));
    let o = run(&["check", &format!("{image}:1.2.3"), "--repo", &url]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert_says(&o.stderr, "IMAGE and --repo");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_images_orders_by_creation_and_marks_running_and_allowed() {
    let (_registry, git, image) = fixture().await;
    let url = git.git_url("fleet");
    let workdir = git.scratch_dir("cli-list-images");
    let workdir = workdir.to_str().unwrap();
    let out = succeeds(&["list-images", "--repo", &url, "--workdir", workdir]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        format!("apps/web.yaml#L10:flux-system:web  {image}:1.2.3  policy minor"),
        "{out}"
    );
    // Newest first by creation time: the rebuilt 1.2.4 leads; 2.0.0 is another major.
    assert_eq!(
        lines[1..5],
        [
            "   * 1.2.4  2026-05-01 00:00 UTC",
            "     2.0.0  2026-04-01 00:00 UTC",
            "   * 1.3.0  2026-03-01 00:00 UTC  (update)",
            "  -> 1.2.3  2026-01-01 00:00 UTC",
        ],
        "{out}"
    );
    // The untracked marker is not listed.
    assert_eq!(lines.len(), 5, "{out}");

    // --limit keeps the newest and still shows the running tag.
    let out = succeeds(&[
        "list-images",
        "--repo",
        &url,
        "--workdir",
        workdir,
        "--limit",
        "1",
    ]);
    assert_eq!(
        tag_lines(&out),
        [
            "   * 1.2.4  2026-05-01 00:00 UTC",
            "  -> 1.2.3  2026-01-01 00:00 UTC",
            "     ... 2 more (--limit)",
        ],
        "{out}"
    );

    // JSON carries the same, every tag with its flags.
    let o = run(&[
        "list-images",
        "--repo",
        &url,
        "--workdir",
        workdir,
        "-o",
        "json",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let listing = &json[0];
    assert_eq!(listing["policy"], "minor");
    assert_eq!(listing["update"], "1.3.0");
    assert_eq!(listing["tag_count"], 4);
    let tags = listing["tags"].as_array().unwrap();
    assert_eq!(tags[0]["tag"], "1.2.4");
    assert_eq!(tags[0]["created"], "2026-05-01T00:00:00Z");
    assert_eq!(tags[0]["allowed"], true);
    assert_eq!(tags[2]["chosen"], true);
    assert_eq!(tags[3]["running"], true);
    assert!(tags[1].get("allowed").is_none(), "{listing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_images_reads_metadata_within_its_budget() {
    let (registry, _git, image) = fixture().await;
    // One read: the highest version's. The rest are listed by version, without a time.
    let out = succeeds(&[
        "list-images",
        &format!("{image}:1.2.3"),
        "--policy",
        "patch",
        "--max-metadata",
        "1",
    ]);
    assert_eq!(
        tag_lines(&out),
        [
            "     2.0.0  2026-04-01 00:00 UTC",
            "     1.3.0  -",
            "   * 1.2.4  -  (update)",
            "  -> 1.2.3  -",
        ],
        "{out}"
    );
    let log = registry.log();
    let config_reads = log
        .lines()
        .filter(|l| l.contains("GET /v2/acme/web/blobs/"))
        .count();
    assert_eq!(config_reads, 1, "{log}");

    // A repository that does not exist is that listing's error, and the exit status says so.
    let o = run(&[
        "list-images",
        &format!("{}/acme/missing:1.0.0", registry.addr()),
        "--policy",
        "minor",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert_says(&o.stdout, "    error: ");
    assert_says(&o.stderr, "1 image(s) could not be listed");
}

//! `keel check --helm` and `keel release --helm` against a real kube-apiserver, the real
//! `helm` and a real registry on 127.0.0.1.

mod common;
use common::{assert_says, keel_with_env, stdout_of, text};

use std::process::Output;

use keel_testsupport::helm::{Helm, chart_dir, chart_registry, helm_bin};
use keel_testsupport::kube::{ADMIN, ApiServer};
use serde_json::json;

/// A fresh namespace of the shared API server, with helm acting as the admin.
struct World {
    ns: String,
    helm: Helm,
}

async fn world(prefix: &str) -> Option<World> {
    let (server, ns, _) = ApiServer::shared_namespace(prefix).await?;
    let helm = Helm::new(server, ADMIN)?;
    Some(World { ns, helm })
}

impl World {
    fn install(&self, release: &str, set: &[(&str, &str)]) {
        self.helm.install(&self.ns, release, &chart_dir("web"), set);
    }

    /// Runs `keel ARGS` as the admin, with helm's environment and the test's helm binary.
    fn keel(&self, args: &[&str]) -> Output {
        let helm = helm_bin().expect("HELM_BIN is set");
        let mut env = self.helm.env();
        env.push((
            "KEEL_HELM_BINARY".to_owned(),
            helm.to_str().unwrap().to_owned(),
        ));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        keel_with_env(args, "", &env)
    }

    fn revisions(&self, release: &str) -> usize {
        self.helm
            .history(&self.ns, release)
            .as_array()
            .expect("history is a list")
            .len()
    }
}

#[tokio::test]
async fn check_lists_release_images_and_their_updates() {
    let Some(w) = world("cli-helm-check").await else {
        return;
    };
    let (_registry, web, proxy) = chart_registry().await;
    let sidecar = format!("{proxy}:2.0.0");
    w.install(
        "web",
        &[("image.repository", &web), ("sidecar.image", &sidecar)],
    );
    // A release whose policy does not parse is skipped, saying why.
    w.install(
        "broken",
        &[
            ("image.repository", &web),
            ("sidecar.image", &sidecar),
            ("keel.policy", "sometimes"),
        ],
    );

    let o = w.keel(&["check", "--helm", "-n", &w.ns, "-o", "json"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let release = format!("{}/web", w.ns);
    assert_eq!(
        rows,
        json!([
            {
                "release": release,
                "revision": 1,
                "chart": "web-0.1.0",
                "path": "image.repository",
                "image": format!("{web}:1.0.0"),
                "policy": "minor",
                "trigger": "poll @every 1m",
                "update": format!("{web}:1.1.0"),
            },
            {
                "release": release,
                "revision": 1,
                "chart": "web-0.1.0",
                "path": "sidecar.image",
                "image": sidecar,
                "policy": "minor",
                "trigger": "poll @every 1m",
            },
        ])
    );
    let stderr = text(&o.stderr);
    assert!(
        stderr.contains(&format!("keel: warning: helm release {}/broken: ", w.ns))
            && stderr.contains("keel.policy")
            && stderr.contains("sometimes"),
        "{stderr}"
    );

    let o = w.keel(&["check", "--helm", "--namespace", &w.ns]);
    let table = stdout_of(&o);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["RELEASE", "PATH", "IMAGE", "POLICY", "TRIGGER", "UPDATE"]
    );
    let (current, update) = (format!("{web}:1.0.0"), format!("{web}:1.1.0"));
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        row,
        [
            release.as_str(),
            "image.repository",
            &current,
            "minor",
            "poll",
            "@every",
            "1m",
            &update,
        ]
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        row,
        [
            release.as_str(),
            "sidecar.image",
            &sidecar,
            "minor",
            "poll",
            "@every",
            "1m",
            "-",
        ]
    );
    assert_eq!(lines.next(), None);

    // A check decides by each release's policy, and runs on Kubernetes or Helm, not both.
    let o = w.keel(&["check", "--helm", "--policy", "major"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert_says(&o.stderr, "--policy does not apply");
    let o = w.keel(&["check", "--helm", "--kube"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
}

#[tokio::test]
async fn release_upgrades_one_release_by_hand() {
    let Some(w) = world("cli-helm-release").await else {
        return;
    };
    w.install("web", &[("image.tag", "1.0.0")]);
    assert_eq!(
        w.helm.get_values(&w.ns, "web", false),
        json!({"image": {"tag": "1.0.0"}})
    );
    let release = format!("{}/web", w.ns);
    let run = |release: &str, image: &str| {
        w.keel(&[
            "release",
            "--helm",
            "--release",
            release,
            "--update-image",
            image,
        ])
    };

    let o = run(&release, "registry.example/acme/web:1.1.0");
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains(&format!(
            "helm/{release}/image.repository: registry.example/acme/web:1.0.0 -> \
             registry.example/acme/web:1.1.0"
        )),
        "{}",
        text(&o.stdout)
    );
    assert_eq!(w.revisions("web"), 2);
    // Only the tag changed: the repository stays the chart's default, the sidecar untouched.
    assert_eq!(
        w.helm.get_values(&w.ns, "web", false),
        json!({"image": {"tag": "1.1.0"}})
    );

    // The same release again changes nothing and says so.
    let o = run(&release, "registry.example/acme/web:1.1.0");
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_says(&o.stderr, "nothing to change");
    assert_eq!(w.revisions("web"), 2);

    // Bad input: exit 2, naming the flag and the input.
    for bad in [
        "web",
        &format!("{release}/image"),
        "/web",
        &format!("{}/", w.ns),
    ] {
        let o = run(bad, "registry.example/acme/web:1.2.0");
        assert_eq!(o.status.code(), Some(2), "{bad}: {}", text(&o.stderr));
        assert_says(&o.stderr, &format!("invalid --release {bad:?}"));
    }
    let missing = format!("{}/missing", w.ns);
    let o = run(&missing, "registry.example/acme/web:1.2.0");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert_says(&o.stderr, &format!("invalid --release {missing:?}"));
    let other = "registry.example/acme/other:1.2.0";
    let o = run(&release, other);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains(&format!("invalid --update-image {other:?}"))
            && text(&o.stderr).contains("image.repository = registry.example/acme/web:1.1.0"),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(w.revisions("web"), 2);

    // A helm binary that is not there fails at start-up, naming the flag and the path.
    let o = w.keel(&[
        "release",
        "--helm",
        "--release",
        &release,
        "--update-image",
        "registry.example/acme/web:1.2.0",
        "--helm-binary",
        "no/such/helm",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert_says(&o.stderr, "invalid --helm-binary \"no/such/helm\"");
    assert_eq!(w.revisions("web"), 2);
}

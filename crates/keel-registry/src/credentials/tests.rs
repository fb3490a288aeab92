use super::*;

#[tokio::test]
async fn reads_auths_in_every_form() {
    let json = r#"{
            "auths": {
                "https://index.docker.io/v1/": {"auth": "dXNlcjpwYTpzcw=="},
                "ghcr.io": {"username": "bot", "password": "tok"},
                "quay.io": {"identitytoken": "refresh"},
                "localhost:5000": {}
            }
        }"#;
    let c = DockerConfig::from_json(json).unwrap();
    assert_eq!(
        c.credentials("index.docker.io").await.unwrap(),
        Credentials::basic("user", "pa:ss")
    );
    assert_eq!(
        c.credentials("registry-1.docker.io").await.unwrap(),
        Credentials::basic("user", "pa:ss")
    );
    assert_eq!(
        c.credentials("ghcr.io").await.unwrap(),
        Credentials::basic("bot", "tok")
    );
    assert_eq!(
        c.credentials("quay.io").await.unwrap(),
        Credentials::IdentityToken(Secret::new("refresh"))
    );
    assert_eq!(
        c.credentials("localhost:5000").await.unwrap(),
        Credentials::Anonymous
    );
    assert_eq!(
        c.credentials("example.com").await.unwrap(),
        Credentials::Anonymous
    );
}

#[tokio::test]
async fn legacy_dockercfg() {
    let c = DockerConfig::from_dockercfg_json(r#"{"r.example.com":{"auth":"YTpi","email":"x@y"}}"#)
        .unwrap();
    assert_eq!(
        c.credentials("r.example.com").await.unwrap(),
        Credentials::basic("a", "b")
    );
}

#[test]
fn values_of_the_wrong_type_are_not_quoted() {
    // Found by the docker_config fuzz target: serde's message quoted the value, here a
    // base64 `user:password` written without its `{"auth": ...}` wrapper.
    let json = r#"{"auths":{"ghcr.io":"dXNlcjpwYXNzd29yZA=="}}"#;
    let e = DockerConfig::from_json(json).unwrap_err().to_string();
    assert!(!e.contains("dXNlcjpwYXNzd29yZA"), "{e}");
    assert!(
        e.contains("line 1 column 42 has the wrong type or shape (expected struct AuthEntry)"),
        "{e}"
    );
    let e = DockerConfig::from_dockercfg_json(r#"{"ghcr.io": ["s3cr3t-token, expected x"]}"#)
        .unwrap_err()
        .to_string();
    assert!(!e.contains("s3cr3t"), "{e}");
}

#[test]
fn keys_naming_one_host_give_the_same_credentials_every_time() {
    // Found by the docker_config fuzz target: which of two keys for Docker Hub won
    // depended on hash order, so the same file could give different credentials.
    let json = r#"{"auths":{"docker.io":{"auth":"dXNlcjpwYXNz"},"index.docker.io":{"auth":"b3RoZXI6c2VjcmV0"}}}"#;
    for _ in 0..20 {
        let config = DockerConfig::from_json(json).unwrap();
        assert_eq!(
            config.static_credentials("docker.io"),
            Some(Credentials::basic("other", "secret"))
        );
    }
}

#[test]
fn bad_entries_are_named_without_secrets() {
    let e = DockerConfig::from_json(r#"{"auths":{"ghcr.io":{"auth":"!!!"}}}"#).unwrap_err();
    assert!(e.to_string().contains("auths.ghcr.io"), "{e}");
    assert!(e.to_string().contains("not base64"), "{e}");
    let e = DockerConfig::from_json(r#"{"auths":{"ghcr.io":{"username":"u"}}}"#).unwrap_err();
    assert!(
        e.to_string().contains("both `username` and `password`"),
        "{e}"
    );
    let e = DockerConfig::from_json("{").unwrap_err();
    assert!(e.to_string().contains("not valid JSON"), "{e}");
}

#[test]
fn debug_never_shows_secrets() {
    let c = Credentials::basic("user", "hunter2");
    let shown = format!("{c:?} {}", c.describe());
    assert!(!shown.contains("hunter2"), "{shown}");
    let config = DockerConfig::from_json(r#"{"auths":{"h":{"auth":"dTpodW50ZXIy"}}}"#).unwrap();
    assert!(!format!("{config:?}").contains("hunter2"));
}

#[tokio::test]
async fn missing_helper_is_a_clear_error() {
    let c =
        DockerConfig::from_json(r#"{"credHelpers":{"ecr.example.com":"keel-test-nonexistent"}}"#)
            .unwrap();
    let e = c.credentials("ecr.example.com").await.unwrap_err();
    assert!(
        e.to_string()
            .contains("docker-credential-keel-test-nonexistent"),
        "{e}"
    );
}

/// Writes the fake credential helpers into `dir`: `keeltest` answers for
/// `reg.example.com` only, `keelcount` counts its runs in `dir/runs`, `keelhang` writes
/// its process id to `dir/hang.pid` and sleeps.
fn write_helpers(dir: &Path) {
    let answer =
        r#"{"ServerURL":"reg.example.com","Username":"helper-user","Secret":"helper-pass"}"#;
    let scripts = [
        (
            "keeltest",
            format!(
                "read server\n[ \"$server\" = \"reg.example.com\" ] || {{ echo 'credentials not found in native keychain'; exit 1; }}\necho '{answer}'"
            ),
        ),
        (
            "keelcount",
            format!("echo run >> \"{}/runs\"\necho '{answer}'", dir.display()),
        ),
        (
            "keelhang",
            format!("echo $$ > \"{}/hang.pid\"\nexec sleep 30", dir.display()),
        ),
    ];
    for (name, body) in scripts {
        let script = dir.join(format!("docker-credential-{name}"));
        keel_testsupport::write_shell_script(&script, &body);
    }
}

/// Runs test `name` of this binary in a child process whose PATH starts with a directory
/// of fake helpers (helpers are found through PATH, and changing this process's
/// environment would change it for the other tests), and checks it passed.
fn run_with_helpers(name: &str) {
    let dir = tempfile::tempdir().unwrap();
    write_helpers(dir.path());
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--include-ignored"])
        .env("PATH", path)
        .env("KEEL_HELPER_DIR", dir.path())
        .output()
        .unwrap();
    let shown = keel_testsupport::output_text(&output);
    assert!(output.status.success(), "{name} failed:\n{shown}");
    assert!(shown.contains("1 passed"), "{name} did not run:\n{shown}");
}

/// The directory of fake helpers when run by [`run_with_helpers`].
fn helper_dir() -> std::path::PathBuf {
    std::env::var_os("KEEL_HELPER_DIR")
        .expect("run through run_with_helpers")
        .into()
}

#[test]
fn helper_protocol() {
    run_with_helpers("credentials::tests::helper_protocol_child");
}

#[tokio::test]
#[ignore = "run by helper_protocol with fake helpers on PATH"]
async fn helper_protocol_child() {
    let c = DockerConfig::from_json(r#"{"credsStore":"keeltest"}"#).unwrap();
    assert_eq!(
        c.credentials("reg.example.com").await.unwrap(),
        Credentials::basic("helper-user", "helper-pass")
    );
    assert_eq!(
        c.credentials("other.example.com").await.unwrap(),
        Credentials::Anonymous
    );
    let c = DockerConfig::from_json(r#"{"credHelpers":{"other.example.com":"keeltest"}}"#).unwrap();
    let e = c.credentials("other.example.com").await.unwrap_err();
    assert!(matches!(e, Error::NotFound { .. }), "{e}");
    assert!(e.to_string().contains("docker-credential-keeltest"), "{e}");
}

#[test]
fn helper_answers_are_cached_for_a_while() {
    run_with_helpers("credentials::tests::helper_answers_are_cached_for_a_while_child");
}

#[tokio::test]
#[ignore = "run by helper_answers_are_cached_for_a_while with fake helpers on PATH"]
async fn helper_answers_are_cached_for_a_while_child() {
    let runs = || {
        std::fs::read_to_string(helper_dir().join("runs"))
            .unwrap_or_default()
            .lines()
            .count()
    };
    let c = DockerConfig::from_json(r#"{"credsStore":"keelcount"}"#).unwrap();
    let helpers = CredentialHelpers::new(DEFAULT_HELPER_TIMEOUT, Duration::from_millis(700));
    let expected = Credentials::basic("helper-user", "helper-pass");
    assert_eq!(
        c.credentials_with("reg.example.com", &helpers)
            .await
            .unwrap(),
        expected
    );
    assert_eq!(runs(), 1);
    // The second lookup, and concurrent ones, reuse the answer.
    let lookups = (0..5).map(|_| c.credentials_with("reg.example.com", &helpers));
    for got in futures::future::join_all(lookups).await {
        assert_eq!(got.unwrap(), expected);
    }
    assert_eq!(runs(), 1, "the helper ran again within the cache lifetime");
    // Another registry is another answer.
    c.credentials_with("other.example.com", &helpers)
        .await
        .unwrap();
    assert_eq!(runs(), 2);
    // After the lifetime, the helper is asked again.
    tokio::time::sleep(Duration::from_millis(800)).await;
    c.credentials_with("reg.example.com", &helpers)
        .await
        .unwrap();
    assert_eq!(runs(), 3);
    // Without a cache (DockerConfig on its own), every lookup runs the helper.
    c.credentials("reg.example.com").await.unwrap();
    c.credentials("reg.example.com").await.unwrap();
    assert_eq!(runs(), 5);
}

#[test]
fn a_hanging_helper_is_stopped_after_the_timeout() {
    run_with_helpers("credentials::tests::a_hanging_helper_is_stopped_after_the_timeout_child");
}

#[tokio::test]
#[ignore = "run by a_hanging_helper_is_stopped_after_the_timeout with fake helpers on PATH"]
async fn a_hanging_helper_is_stopped_after_the_timeout_child() {
    let c = DockerConfig::from_json(r#"{"credHelpers":{"reg.example.com":"keelhang"}}"#).unwrap();
    let helpers = CredentialHelpers::new(Duration::from_millis(600), DEFAULT_HELPER_CACHE_TTL);
    // The runtime has one thread: a task that keeps ticking while the helper hangs shows
    // that waiting for it blocks no async thread.
    let ticks = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let ticker = tokio::spawn({
        let ticks = ticks.clone();
        async move {
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                ticks.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
    });
    let started = std::time::Instant::now();
    let e = c
        .credentials_with("reg.example.com", &helpers)
        .await
        .unwrap_err();
    let waited = started.elapsed();
    ticker.abort();
    assert!(
        waited >= Duration::from_millis(600) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    let text = e.to_string();
    assert!(text.contains("docker-credential-keelhang"), "{text}");
    assert!(text.contains("did not answer within 0.6s"), "{text}");
    assert!(text.contains("reg.example.com"), "{text}");
    assert!(e.is_retryable());
    assert!(
        ticks.load(std::sync::atomic::Ordering::SeqCst) >= 6,
        "the runtime was blocked while the helper ran"
    );
    // The helper was killed: its process is gone (or a zombie awaiting its reaper).
    let pid = std::fs::read_to_string(helper_dir().join("hang.pid")).unwrap();
    let stat = Path::new("/proc").join(pid.trim()).join("stat");
    let mut gone = false;
    for _ in 0..40 {
        match std::fs::read_to_string(&stat) {
            Err(_) => gone = true,
            Ok(s) => {
                gone = s
                    .rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z'))
            }
        }
        if gone {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "the helper {} still runs", pid.trim());
    // A failure is not cached: the next lookup runs (and stops) the helper again.
    let again = std::time::Instant::now();
    assert!(
        c.credentials_with("reg.example.com", &helpers)
            .await
            .is_err()
    );
    assert!(again.elapsed() >= Duration::from_millis(600));
}

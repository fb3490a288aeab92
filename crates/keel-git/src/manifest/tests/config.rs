//! The `.keel.yaml` configuration and its errors.

use super::*;

#[test]
fn config_from_yaml_and_json() {
    let yaml = "\
policies:
  flux-system:app:
    image: ghcr.io/org/app
    policy: semver:^1.2
    filter: '^v?(?P<v>.*)$'
    extract: '$v'
  flux-system:short: minor
images:
  - image: ghcr.io/org/api
    policy: minor
    matchPreRelease: false
paths: [apps, clusters]
";
    let config = RepoConfig::from_yaml(yaml).unwrap();
    let app = &config.policies["flux-system:app"];
    assert_eq!(app.image.as_deref(), Some("ghcr.io/org/app"));
    assert_eq!(app.policy.to_string(), "semver:^1.2");
    assert_eq!(
        app.options,
        PolicyOptions {
            filter: Some("^v?(?P<v>.*)$".into()),
            extract: Some("$v".into()),
            ..PolicyOptions::default()
        }
    );
    assert_eq!(
        config.policies["flux-system:short"].policy,
        PolicySpec::Minor
    );
    assert!(!config.images[0].options.match_pre_release);
    assert_eq!(config.paths, ["apps", "clusters"]);
    assert_eq!(
        config
            .image_policy(&image("ghcr.io/org/api:9"))
            .map(|p| &p.policy),
        Some(&PolicySpec::Minor)
    );

    let json = r#"{"policies": {"flux-system:app": {"image": "ghcr.io/org/app",
        "policy": "semver:^1.2", "filter": "^v?(?P<v>.*)$", "extract": "$v"},
        "flux-system:short": "minor"},
        "images": [{"image": "ghcr.io/org/api", "policy": "minor", "matchPreRelease": false}],
        "paths": ["apps", "clusters"]}"#;
    let from_json: RepoConfig = serde_json::from_str(json).unwrap();
    assert_eq!(from_json, config);

    assert_eq!(RepoConfig::from_yaml("").unwrap(), RepoConfig::default());
    assert_eq!(
        RepoConfig::from_yaml("# nothing\n").unwrap(),
        RepoConfig::default()
    );
    let code = RepoConfig::default()
        .with_policy(
            "flux-system:app",
            MarkerPolicy::new(PolicySpec::Minor).with_image("ghcr.io/org/app"),
        )
        .with_image(ImagePolicy::new("nginx", PolicySpec::Patch));
    code.validate().unwrap();
    assert!(code.images[0].matches(&image("docker.io/library/nginx:1.0")));
}

#[test]
fn config_errors_name_the_key_and_the_problem() {
    let cases = [
        ("polices: {}\n", "polices", "unknown key `polices`"),
        (
            "policies:\n  flux-system:app: {policy: minor, filtr: x}\n",
            "policies.flux-system:app.filtr",
            "unknown key `filtr`",
        ),
        (
            "policies:\n  flux-system:app: {policy: minr}\n",
            "policies.flux-system:app.policy",
            "unknown policy `minr`",
        ),
        (
            "policies:\n  flux-system:app: {policy: minor, filter: '(unclosed'}\n",
            "policies.flux-system:app",
            "regular expression",
        ),
        (
            "policies:\n  flux-system:app: {policy: numerical, extract: $v}\n",
            "policies.flux-system:app",
            "filter",
        ),
        (
            "policies:\n  flux-system:app: {policy: minor, defaultExcludes: maybe}\n",
            "policies.flux-system:app",
            "bad policy option",
        ),
        (
            "policies:\n  app: {policy: minor}\n",
            "policies.app",
            "NS:NAME",
        ),
        (
            "policies:\n  a:b: {image: x}\n",
            "policies.a:b.policy",
            "is required",
        ),
        (
            "images:\n  - {image: 'ghcr.io/org/api:1.0', policy: minor}\n",
            "images[0].image",
            "without tag or digest",
        ),
        (
            "images:\n  - {policy: minor}\n",
            "images[0].image",
            "is required",
        ),
        ("images: {a: b}\n", "images", "must be a list"),
        ("paths: ['../x']\n", "paths[0]", "relative"),
        ("policies: [\n", "line", "not valid YAML"),
    ];
    for (yaml, key, problem) in cases {
        let e = RepoConfig::from_yaml(yaml).expect_err(yaml);
        let Error::InvalidInput(parse) = &e else {
            panic!("{yaml}: {e:?}");
        };
        assert_eq!(parse.kind(), ".keel.yaml", "{yaml}");
        assert!(
            parse.input().starts_with(key),
            "{yaml}: input {:?}",
            parse.input()
        );
        assert!(parse.reason().contains(problem), "{yaml}: {e}");
    }
    let e = serde_json::from_str::<RepoConfig>(r#"{"images": [{"image": "x", "policy": "nope"}]}"#)
        .unwrap_err();
    assert!(e.to_string().contains("images[0].policy"), "{e}");
    // In code, a bad policy string fails where it is parsed, and bad options where the
    // configuration is validated.
    let e = ImagePolicy::parse("ghcr.io/x", "semver:abc").unwrap_err();
    assert_eq!(e.input(), "semver:abc");
    assert!(MarkerPolicy::parse("minr").is_err());
    let bad = RepoConfig::default().with_image(
        ImagePolicy::new("ghcr.io/x", PolicySpec::Minor).with_options(PolicyOptions {
            filter: Some("(unclosed".into()),
            ..PolicyOptions::default()
        }),
    );
    let e = bad.validate().unwrap_err();
    assert!(e.to_string().contains("images[0]"), "{e}");
}

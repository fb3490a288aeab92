//! Table tests of the annotation reader.

use super::*;

fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (format!("{PREFIX}{k}"), (*v).to_owned()))
        .collect()
}

fn parse(pairs: &[(&str, &str)]) -> ApplicationConfig {
    ApplicationConfig::parse(&annotations(pairs)).unwrap_or_else(|e| panic!("{pairs:?}: {:?}", e))
}

fn errors(pairs: &[(&str, &str)]) -> Vec<String> {
    match ApplicationConfig::parse(&annotations(pairs)) {
        Ok(config) => panic!("{pairs:?} parsed: {config:?}"),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn image_list_entries_aliases_and_constraints() {
    // (entry, alias, name, repository, constraint)
    let table: &[(&str, &str, &str, &str, Option<&str>)] = &[
        (
            "web=ghcr.io/acme/web:~1.2",
            "web",
            "ghcr.io/acme/web",
            "ghcr.io/acme/web",
            Some("~1.2"),
        ),
        (
            "nginx:1.x",
            "nginx",
            "nginx",
            "docker.io/library/nginx",
            Some("1.x"),
        ),
        ("nginx", "nginx", "nginx", "docker.io/library/nginx", None),
        (
            "bitnami/redis",
            "redis",
            "bitnami/redis",
            "docker.io/bitnami/redis",
            None,
        ),
        (
            "localhost:5000/a/b:^2",
            "b",
            "localhost:5000/a/b",
            "localhost:5000/a/b",
            Some("^2"),
        ),
        (
            "localhost:5000/a/b",
            "b",
            "localhost:5000/a/b",
            "localhost:5000/a/b",
            None,
        ),
        (
            " my/alias = quay.io/x/y:>=1.0 ",
            "my/alias",
            "quay.io/x/y",
            "quay.io/x/y",
            Some(">=1.0"),
        ),
        (
            "app=nginx:",
            "app",
            "nginx",
            "docker.io/library/nginx",
            None,
        ),
    ];
    for (entry, alias, name, repository, constraint) in table {
        let config = parse(&[("image-list", entry)]);
        let image = &config.images[0];
        assert_eq!(image.alias, *alias, "{entry}");
        assert_eq!(image.name, *name, "{entry}");
        assert_eq!(image.repository.name(), *repository, "{entry}");
        assert_eq!(image.constraint.as_deref(), *constraint, "{entry}");
    }
    let config = parse(&[("image-list", "web=ghcr.io/acme/web:~1.2, nginx:1.x,,")]);
    let aliases: Vec<&str> = config.images.iter().map(|i| i.alias.as_str()).collect();
    assert_eq!(aliases, ["web", "nginx"]);
}

#[test]
fn defaults() {
    let config = parse(&[("image-list", "web=ghcr.io/acme/web")]);
    let web = &config.images[0];
    assert_eq!(config.write_back, WriteBack::ArgoCd);
    assert_eq!(web.strategy, UpdateStrategy::Semver);
    assert_eq!(web.policy.spec().to_string(), "semver:*");
    assert_eq!(web.allow_tags, None);
    assert!(web.ignore_tags.is_empty());
    assert!(!web.force_update);
    assert!(web.platforms.is_empty());
    assert_eq!(web.pull_secret, None);
    assert_eq!(
        web.helm,
        HelmParameters::NameAndTag {
            name: "image.name".into(),
            tag: "image.tag".into()
        }
    );
    assert_eq!(web.kustomize_name(), "ghcr.io/acme/web");
}

#[test]
fn strategies_and_their_aliases() {
    // (strategy value, constraint, policy)
    let table = [
        ("semver", Some("~1.2"), "semver:~1.2"),
        ("SemVer", None, "semver:*"),
        ("newest-build", None, "newest-build"),
        ("latest", None, "newest-build"),
        ("digest", Some("stable"), "digest"),
        ("alphabetical", None, "alphabetical:asc"),
        ("name", None, "alphabetical:asc"),
    ];
    for (value, constraint, policy) in table {
        let entry = match constraint {
            Some(c) => format!("web=ghcr.io/acme/web:{c}"),
            None => "web=ghcr.io/acme/web".to_owned(),
        };
        let config = parse(&[("image-list", &entry), ("web.update-strategy", value)]);
        assert_eq!(
            config.images[0].policy.spec().to_string(),
            policy,
            "{value}"
        );
    }
}

#[test]
fn every_option_key() {
    let config = parse(&[
        (
            "image-list",
            "web=ghcr.io/acme/web:^1, api=ghcr.io/acme/api, my/app=quay.io/x/app",
        ),
        ("web.allow-tags", "regexp:^1\\.[0-9]+\\.[0-9]+$"),
        ("web.ignore-tags", "1.3.*, *-debug"),
        ("web.force-update", "true"),
        ("web.platforms", "linux/amd64, linux/arm64/v8"),
        ("web.pull-secret", "pullsecret:argocd/regcred"),
        ("web.helm.image-name", "web.repository"),
        ("web.helm.image-tag", "web.version"),
        ("api.helm.image-spec", "api.image"),
        ("api.kustomize.image-name", "acme/api-base"),
        ("api.pull-secret", "secret:argocd/creds#ghcr"),
        ("api.allow-tags", "any"),
        ("my_app.pull-secret", "env:QUAY_CREDS"),
        ("write-back-method", "argocd"),
    ]);
    let web = &config.images[0];
    assert_eq!(web.allow_tags.as_deref(), Some("^1\\.[0-9]+\\.[0-9]+$"));
    assert_eq!(
        web.policy.options().filter.as_deref(),
        web.allow_tags.as_deref()
    );
    assert_eq!(web.ignore_tags, ["1.3.*", "*-debug"]);
    assert_eq!(
        web.policy.options().exclude,
        ["^1\\.3\\..*$", "^.*\\-debug$"]
    );
    assert!(web.force_update);
    let platforms: Vec<String> = web.platforms.iter().map(ToString::to_string).collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64/v8"]);
    assert_eq!(
        web.pull_secret,
        Some(PullSecretSource::PullSecret {
            namespace: "argocd".into(),
            name: "regcred".into()
        })
    );
    assert_eq!(
        web.helm,
        HelmParameters::NameAndTag {
            name: "web.repository".into(),
            tag: "web.version".into()
        }
    );
    let api = &config.images[1];
    assert_eq!(api.helm, HelmParameters::Spec("api.image".into()));
    assert_eq!(api.kustomize_name(), "acme/api-base");
    assert_eq!(api.allow_tags, None);
    assert_eq!(
        api.pull_secret,
        Some(PullSecretSource::Secret {
            namespace: "argocd".into(),
            name: "creds".into(),
            field: "ghcr".into()
        })
    );
    let app = &config.images[2];
    assert_eq!(app.alias, "my/app");
    assert_eq!(
        app.pull_secret,
        Some(PullSecretSource::Env("QUAY_CREDS".into()))
    );
}

#[test]
fn write_back_methods() {
    for (value, method) in [
        ("argocd", WriteBack::ArgoCd),
        (
            "git",
            WriteBack::Git {
                credentials: String::new(),
            },
        ),
        (
            "git:secret:argocd/git-creds",
            WriteBack::Git {
                credentials: "secret:argocd/git-creds".into(),
            },
        ),
    ] {
        let config = parse(&[("image-list", "nginx"), ("write-back-method", value)]);
        assert_eq!(config.write_back, method, "{value}");
        assert_eq!(config.write_back.to_string(), value);
    }
}

#[test]
fn bad_values_name_key_value_and_reason() {
    let k = |s: &str| format!("{PREFIX}{s}");
    let table: &[(&[(&str, &str)], String)] = &[
        (
            &[
                ("image-list", "web=ghcr.io/acme/web"),
                ("web.update-strategy", "newest"),
            ],
            format!(
                "{} = \"newest\": expected `semver`, `newest-build` (or `latest`), `digest` or \
                 `alphabetical` (or `name`)",
                k("web.update-strategy")
            ),
        ),
        (
            &[
                ("image-list", "web=ghcr.io/acme/web"),
                ("web.allow-tags", "^1\\."),
            ],
            format!(
                "{} = \"^1\\\\.\": expected `regexp:<regular expression>` or `any`",
                k("web.allow-tags")
            ),
        ),
        (
            &[
                ("image-list", "web=ghcr.io/acme/web"),
                ("web.allow-tags", "regexp:("),
            ],
            format!(
                "{} = \"regexp:(\": bad regular expression: unclosed group",
                k("web.allow-tags")
            ),
        ),
        (
            &[
                ("image-list", "web=ghcr.io/acme/web"),
                ("web.force-update", "yes"),
            ],
            format!(
                "{} = \"yes\": expected `true` or `false`",
                k("web.force-update")
            ),
        ),
        (
            &[
                ("image-list", "web=ghcr.io/acme/web"),
                ("web.platforms", "linux"),
            ],
            format!(
                "{} = \"linux\": `linux`: platform must be os/architecture[/variant], the \
                 architecture is missing",
                k("web.platforms")
            ),
        ),
        (
            &[
                ("image-list", "web=ghcr.io/acme/web"),
                ("web.pull-secret", "regcred"),
            ],
            format!(
                "{} = \"regcred\": expected `pullsecret:<namespace>/<name>`, \
                 `secret:<namespace>/<name>#<field>` or `env:<VAR>`",
                k("web.pull-secret")
            ),
        ),
        (
            &[
                ("image-list", "web=ghcr.io/acme/web"),
                ("web.pull-secret", "pullsecret:regcred"),
            ],
            format!(
                "{} = \"pullsecret:regcred\": `regcred` is not `<namespace>/<name>` of a \
                 Kubernetes secret",
                k("web.pull-secret")
            ),
        ),
        (
            &[
                ("image-list", "web=ghcr.io/acme/web"),
                ("web.pull-secret", "secret:ns/creds"),
            ],
            format!(
                "{} = \"secret:ns/creds\": `secret:` needs the field: \
                 `secret:<namespace>/<name>#<field>`",
                k("web.pull-secret")
            ),
        ),
        (
            &[
                ("image-list", "web=ghcr.io/acme/web"),
                ("web.helm.image-tag", "image tag"),
            ],
            format!(
                "{} = \"image tag\": expected the name of a Helm parameter",
                k("web.helm.image-tag")
            ),
        ),
        (
            &[
                ("image-list", "web=ghcr.io/acme/web"),
                ("web.kustomize.image-name", "base:1.0"),
            ],
            format!(
                "{} = \"base:1.0\": expected an image name without tag or digest",
                k("web.kustomize.image-name")
            ),
        ),
        (
            &[("image-list", "web=ghcr.io/acme/web:~1.x.y")],
            format!(
                "{} = \"web=ghcr.io/acme/web:~1.x.y\": `web=ghcr.io/acme/web:~1.x.y`: bad \
                 version constraint: ",
                k("image-list")
            ),
        ),
        (
            &[
                ("image-list", "web=ghcr.io/acme/web"),
                ("web.update-strategy", "digest"),
            ],
            format!(
                "{} = \"digest\": the `digest` strategy needs the tag to follow: \
                 `<image>:<tag>`",
                k("web.update-strategy")
            ),
        ),
        (
            &[
                ("image-list", "web=ghcr.io/acme/web:1.x"),
                ("web.update-strategy", "latest"),
            ],
            format!(
                "{} = \"web=ghcr.io/acme/web:1.x\": `web=ghcr.io/acme/web:1.x`: the \
                 `newest-build` strategy takes no version constraint (`1.x`); use allow-tags to \
                 narrow the tags",
                k("image-list")
            ),
        ),
        (
            &[("image-list", "Web=GHCR.io/Acme/Web")],
            format!(
                "{} = \"Web=GHCR.io/Acme/Web\": `Web=GHCR.io/Acme/Web`: not an image name: ",
                k("image-list")
            ),
        ),
        (
            &[("image-list", "=nginx")],
            format!(
                "{} = \"=nginx\": `=nginx`: alias `` must be letters, digits, `-`, `_`, `.` or `/`",
                k("image-list")
            ),
        ),
        (
            &[("image-list", "nginx@sha256:abc")],
            format!(
                "{} = \"nginx@sha256:abc\": `nginx@sha256:abc`: an image in the list is \
                 `<image>[:<constraint>]`, without a digest",
                k("image-list")
            ),
        ),
        (
            &[("image-list", "nginx, nginx=redis:7")],
            format!(
                "{} = \"nginx, nginx=redis:7\": alias `nginx` is given to two images; give each \
                 its own with `<alias>=<image>`",
                k("image-list")
            ),
        ),
        (
            &[("image-list", " , ")],
            format!("{} = \" , \": names no image", k("image-list")),
        ),
        (
            &[
                ("image-list", "nginx"),
                ("write-back-method", "kustomization"),
            ],
            format!(
                "{} = \"kustomization\": expected `argocd` or `git[:<credentials>]`",
                k("write-back-method")
            ),
        ),
    ];
    for (pairs, expected) in table {
        let found = errors(pairs);
        assert!(
            found.iter().any(|e| e.starts_with(expected.as_str())),
            "{pairs:?}: expected {expected:?}, got {found:?}"
        );
    }
}

#[test]
fn other_sources_of_options_name_their_own_keys() {
    let fields = BTreeMap::from([
        ("update-strategy", "newest"),
        ("helm.image-spec", "app.image"),
    ]);
    let source = |alias: &str, option: &str| {
        fields
            .get(option)
            .map(|v| (format!("spec.images[{alias}].{option}"), (*v).to_owned()))
    };
    match ImageConfig::parse("web=ghcr.io/acme/web", &source) {
        Err(ImageError::Options(errors)) => assert_eq!(
            errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
            [
                "spec.images[web].update-strategy = \"newest\": expected `semver`, \
                 `newest-build` (or `latest`), `digest` or `alphabetical` (or `name`)"
            ]
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        ImageConfig::parse("web=ghcr.io/acme/web:1.x@sha256:0", &source).unwrap_err(),
        ImageError::Entry(
            "an image in the list is `<image>[:<constraint>]`, without a digest".into()
        )
    );
    let fine = |_: &str, option: &str| {
        (option == "helm.image-spec").then(|| ("k".to_owned(), " app.image ".to_owned()))
    };
    let image = ImageConfig::parse(" web=ghcr.io/acme/web ", &fine).unwrap();
    assert_eq!(image.helm, HelmParameters::Spec("app.image".into()));
}

#[test]
fn every_bad_value_is_reported_at_once() {
    let found = errors(&[
        ("image-list", "web=ghcr.io/acme/web"),
        ("web.force-update", "maybe"),
        ("web.platforms", "x"),
    ]);
    assert_eq!(found.len(), 2, "{found:?}");
}

#[test]
fn ignore_globs_read_as_go_globs() {
    // (glob, matches, does not match)
    let table = [
        ("1.3.*", "1.3.7", "1.30"),
        ("*-debug", "2.0-debug", "2.0-debug-x"),
        ("v?", "v1", "v10"),
        ("[0-9].0", "7.0", "a.0"),
        ("[!0-9]*", "latest", "1.0"),
        ("a\\*b", "a*b", "axb"),
        ("[", "[", "a"),
        ("[z-a]", "[z-a]", "b"),
        ("*", "anything", ""),
    ];
    for (glob, yes, no) in table {
        let re = Regex::new(&glob_regex(glob)).unwrap_or_else(|e| panic!("{glob}: {e}"));
        assert!(re.is_match(yes), "{glob} should match {yes}");
        if !no.is_empty() {
            assert!(!re.is_match(no), "{glob} should not match {no}");
        }
    }
}

#[test]
fn the_built_policy_respects_the_filters() {
    use keel_core::policy::{Candidate, Current, Policy, SelectInput};
    let config = parse(&[
        ("image-list", "web=ghcr.io/acme/web:^1"),
        ("web.allow-tags", "regexp:^1\\.[0-9]+\\.[0-9]+$"),
        ("web.ignore-tags", "1.9.*"),
    ]);
    let tags = ["1.2.0", "1.9.0", "1.5.0-rc.1", "1.8.0", "2.0.0", "1.10.0-x"].map(Candidate::new);
    let decision = config.images[0]
        .policy
        .select(&SelectInput::new(Current::tag("1.2.0"), &tags));
    assert_eq!(decision.tag(), Some("1.8.0"));
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Any glob gives a regex that compiles, and a glob without metacharacters matches
        /// exactly itself.
        #[test]
        fn every_glob_compiles(glob in "[ -~]{0,16}") {
            let re = Regex::new(&glob_regex(&glob));
            prop_assert!(re.is_ok(), "{glob:?}: {re:?}");
            if !glob.contains(['*', '?', '[', '\\']) {
                prop_assert!(re.unwrap().is_match(&glob));
            }
        }

        /// Whatever the values, the reader answers; a configuration it accepts names at least
        /// one image, under distinct aliases, each with a policy.
        #[test]
        fn any_values_are_read_or_refused(
            list in "[ -~]{0,40}",
            strategy in "[ -~]{0,12}",
            allow in "[ -~]{0,12}",
            ignore in "[ -~]{0,12}",
            secret in "[ -~]{0,20}",
            kustomize in "[ -~]{0,20}",
        ) {
            let mut map = BTreeMap::from([(IMAGE_LIST.to_owned(), list.clone())]);
            for alias in ["web", "nginx", "b"] {
                for (option, value) in [
                    ("update-strategy", &strategy),
                    ("allow-tags", &allow),
                    ("ignore-tags", &ignore),
                    ("pull-secret", &secret),
                    ("kustomize.image-name", &kustomize),
                ] {
                    map.insert(format!("{PREFIX}{alias}.{option}"), value.clone());
                }
            }
            match ApplicationConfig::parse(&map) {
                Ok(config) => {
                    prop_assert!(!config.images.is_empty());
                    let mut aliases: Vec<&str> =
                        config.images.iter().map(|i| i.alias.as_str()).collect();
                    aliases.sort_unstable();
                    aliases.dedup();
                    prop_assert_eq!(aliases.len(), config.images.len());
                }
                Err(errors) => {
                    prop_assert!(!errors.is_empty());
                    prop_assert!(errors.iter().all(|e| e.key.starts_with(PREFIX)));
                }
            }
        }
    }
}

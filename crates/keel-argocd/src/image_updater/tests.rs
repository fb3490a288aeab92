use super::*;
use crate::annotations::{HelmParameters, PullSecretSource, UpdateStrategy};
use serde_json::json;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn parse(spec: Value) -> ImageUpdaterSpec {
    ImageUpdaterSpec::parse(&json!({ "spec": spec })).unwrap_or_else(|e| {
        panic!(
            "{}",
            e.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}

fn errors(spec: Value) -> Vec<String> {
    match ImageUpdaterSpec::parse(&json!({ "spec": spec })) {
        Ok(_) => panic!("accepted"),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

fn images(rule: &ApplicationRef) -> &ApplicationConfig {
    match &rule.config {
        RefConfig::Images(config) => config,
        RefConfig::Annotations => panic!("{} reads annotations", rule.path()),
    }
}

/// Labels as written in a table.
type Labels<'a> = &'a [(&'a str, &'a str)];

fn one_image(name_pattern: &str) -> Value {
    json!({ "namePattern": name_pattern, "images": [{ "alias": "web", "imageName": "ghcr.io/acme/web" }] })
}

#[test]
fn applications_are_selected_by_the_most_specific_matching_rule() {
    let spec = parse(json!({ "applicationRefs": [
        one_image("*"),
        one_image("web-*"),
        one_image("web-prod-*"),
        one_image("web-prod-1"),
        { "namePattern": "web-*",
          "labelSelectors": { "matchLabels": { "tier": "front" } },
          "images": [{ "alias": "web", "imageName": "ghcr.io/acme/web" }] },
        one_image("db-[0-9]"),
    ]}));
    let rule =
        |name: &str, l: &[(&str, &str)]| spec.select(name, &labels(l)).map(ApplicationRef::path);
    let table: [(&str, Labels<'_>, &str); 7] = [
        (
            "web-prod-1",
            &[("tier", "front")],
            "spec.applicationRefs[3]",
        ),
        (
            "web-prod-2",
            &[("tier", "front")],
            "spec.applicationRefs[4]",
        ),
        ("web-prod-2", &[], "spec.applicationRefs[2]"),
        ("web-dev", &[("tier", "back")], "spec.applicationRefs[1]"),
        ("db-1", &[], "spec.applicationRefs[5]"),
        ("db-12", &[], "spec.applicationRefs[0]"),
        ("other", &[], "spec.applicationRefs[0]"),
    ];
    for (name, l, expected) in table {
        assert_eq!(rule(name, l).as_deref(), Some(expected), "{name} {l:?}");
    }
}

#[test]
fn label_selectors_match_labels_and_expressions() {
    let spec = parse(json!({ "applicationRefs": [{
        "namePattern": "*",
        "labelSelectors": {
            "matchLabels": { "team": "web" },
            "matchExpressions": [
                { "key": "env", "operator": "In", "values": ["prod", "staging"] },
                { "key": "tier", "operator": "NotIn", "values": ["db"] },
                { "key": "managed", "operator": "Exists" },
                { "key": "frozen", "operator": "DoesNotExist" },
            ],
        },
        "images": [{ "alias": "web", "imageName": "ghcr.io/acme/web" }],
    }]}));
    let base = [("team", "web"), ("env", "prod"), ("managed", "")];
    let table: [(Labels<'_>, bool); 7] = [
        (&base, true),
        (
            &[
                ("team", "web"),
                ("env", "staging"),
                ("managed", "yes"),
                ("tier", "front"),
            ],
            true,
        ),
        (&[("team", "api"), ("env", "prod"), ("managed", "")], false),
        (&[("team", "web"), ("env", "dev"), ("managed", "")], false),
        (
            &[
                ("team", "web"),
                ("env", "prod"),
                ("managed", ""),
                ("tier", "db"),
            ],
            false,
        ),
        (&[("team", "web"), ("env", "prod")], false),
        (
            &[
                ("team", "web"),
                ("env", "prod"),
                ("managed", ""),
                ("frozen", "1"),
            ],
            false,
        ),
    ];
    for (l, selected) in table {
        assert_eq!(spec.select("any", &labels(l)).is_some(), selected, "{l:?}");
    }
}

#[test]
fn settings_come_from_the_image_then_the_rule_then_the_image_updater() {
    let spec = parse(json!({
        "commonUpdateSettings": {
            "updateStrategy": "alphabetical",
            "allowTags": "regexp:^v",
            "ignoreTags": ["*-rc*"],
            "pullSecret": "pullsecret:argocd/global",
            "platforms": ["linux/amd64"],
        },
        "writeBackConfig": { "method": "git" },
        "applicationRefs": [{
            "namePattern": "*",
            "commonUpdateSettings": { "updateStrategy": "newest-build", "forceUpdate": true },
            "writeBackConfig": { "method": "argocd" },
            "images": [
                { "alias": "web", "imageName": "ghcr.io/acme/web:~1.2",
                  "commonUpdateSettings": { "updateStrategy": "semver", "ignoreTags": [] },
                  "manifestTargets": { "helm": { "name": "app.repo", "tag": "app.version" } } },
                { "alias": "api", "imageName": "ghcr.io/acme/api",
                  "manifestTargets": { "kustomize": { "name": "acme/api" } } },
                { "alias": "db", "imageName": "ghcr.io/acme/db:stable",
                  "commonUpdateSettings": { "updateStrategy": "digest", "pullSecret": "env:DB_CREDS" },
                  "manifestTargets": { "helm": { "spec": "db.image", "name": "ignored" } } },
            ],
        }],
    }));
    let config = images(&spec.refs[0]);
    assert_eq!(config.write_back, WriteBack::ArgoCd);
    let [web, api, db] = &config.images[..] else {
        panic!("{:?}", config.images)
    };
    assert_eq!(
        (
            web.alias.as_str(),
            web.name.as_str(),
            web.strategy,
            web.constraint.as_deref()
        ),
        (
            "web",
            "ghcr.io/acme/web",
            UpdateStrategy::Semver,
            Some("~1.2")
        )
    );
    assert_eq!(web.policy.spec().to_string(), "semver:~1.2");
    assert!(web.force_update);
    assert_eq!(web.allow_tags.as_deref(), Some("^v"));
    assert!(web.ignore_tags.is_empty(), "{:?}", web.ignore_tags);
    assert_eq!(
        web.helm,
        HelmParameters::NameAndTag {
            name: "app.repo".into(),
            tag: "app.version".into()
        }
    );
    assert_eq!(web.platforms.len(), 1);
    assert_eq!(
        web.pull_secret,
        Some(PullSecretSource::PullSecret {
            namespace: "argocd".into(),
            name: "global".into()
        })
    );

    assert_eq!(api.strategy, UpdateStrategy::NewestBuild);
    assert_eq!(api.ignore_tags, ["*-rc*"]);
    assert_eq!(api.kustomize_image.as_deref(), Some("acme/api"));
    assert_eq!(
        api.helm,
        HelmParameters::NameAndTag {
            name: "image.name".into(),
            tag: "image.tag".into()
        }
    );

    // digest needs the tag to follow; without one the strategy's field is named.
    assert_eq!(
        errors(
            json!({ "applicationRefs": [{ "namePattern": "*", "images": [
            { "alias": "db", "imageName": "ghcr.io/acme/db",
              "commonUpdateSettings": { "updateStrategy": "digest" } } ] }] })
        ),
        [
            "spec.applicationRefs[0].images[0].commonUpdateSettings.updateStrategy = \"digest\": \
             the `digest` strategy needs the tag to follow: `<image>:<tag>`"
        ]
    );
    assert_eq!(db.helm, HelmParameters::Spec("db.image".into()));
    assert_eq!(
        db.pull_secret,
        Some(PullSecretSource::Env("DB_CREDS".into()))
    );
}

#[test]
fn defaults_apply_where_nothing_is_set() {
    let spec = parse(json!({ "applicationRefs": [one_image("web")] }));
    let config = images(&spec.refs[0]);
    assert_eq!(config.write_back, WriteBack::ArgoCd);
    let web = &config.images[0];
    assert_eq!(web.strategy, UpdateStrategy::Semver);
    assert_eq!(web.policy.spec().to_string(), "semver:*");
    assert!(!web.force_update);
    assert_eq!(
        (web.allow_tags.as_ref(), web.pull_secret.as_ref()),
        (None, None)
    );
    assert!(web.ignore_tags.is_empty() && web.platforms.is_empty());
    assert_eq!(
        web.helm,
        HelmParameters::NameAndTag {
            name: "image.name".into(),
            tag: "image.tag".into()
        }
    );
    assert_eq!(web.kustomize_image, None);
}

#[test]
fn the_write_back_method_of_the_image_updater_applies_unless_the_rule_sets_one() {
    let spec = parse(json!({
        "writeBackConfig": { "method": "git:secret:argocd/git-creds",
                             "gitConfig": { "branch": "main" } },
        "applicationRefs": [one_image("a"), one_image("b")],
    }));
    assert_eq!(
        images(&spec.refs[0]).write_back,
        WriteBack::Git {
            credentials: "secret:argocd/git-creds".into()
        }
    );
}

#[test]
fn use_annotations_only_selects() {
    let spec = parse(json!({ "applicationRefs": [
        { "namePattern": "legacy-*", "useAnnotations": true },
    ]}));
    let rule = spec
        .select("legacy-web", &BTreeMap::new())
        .expect("selected");
    assert!(matches!(rule.config, RefConfig::Annotations));
    assert!(spec.select("web", &BTreeMap::new()).is_none());
}

#[test]
fn bad_values_name_the_field_and_the_value() {
    let table: [(Value, &[&str]); 13] = [
        (
            json!({ "applicationRefs": [null] }),
            &["spec.applicationRefs = \"\": names no Application: give at least one entry"],
        ),
        (
            json!({ "applicationRefs": [{ "namePattern": "web-[", "images": [] }] }),
            &[
                "spec.applicationRefs[0].namePattern = \"web-[\": a `[` character class is not closed by `]`",
                "spec.applicationRefs[0].images = \"\": names no image: list the images, or set `useAnnotations: true`",
            ],
        ),
        (
            json!({}),
            &["spec.applicationRefs = \"\": names no Application: give at least one entry"],
        ),
        (
            json!({ "commonUpdateSettings": { "updateStrategy": "fastest" },
                    "applicationRefs": [one_image("*")] }),
            &[
                "spec.commonUpdateSettings.updateStrategy = \"fastest\": expected `semver`, \
               `newest-build` (or `latest`), `digest` or `alphabetical` (or `name`)",
            ],
        ),
        (
            json!({ "applicationRefs": [{ "namePattern": "*",
                    "commonUpdateSettings": { "allowTags": "^v" }, "images": [
                { "alias": "web", "imageName": "ghcr.io/acme/web" }] }] }),
            &[
                "spec.applicationRefs[0].commonUpdateSettings.allowTags = \"^v\": expected \
               `regexp:<regular expression>` or `any`",
            ],
        ),
        (
            json!({ "applicationRefs": [{ "namePattern": "*", "images": [
                { "alias": "web", "imageName": "ghcr.io/acme/web",
                  "commonUpdateSettings": { "pullSecret": "vault:web", "forceUpdate": "yes" } }] }] }),
            &[
                "spec.applicationRefs[0].images[0].commonUpdateSettings.forceUpdate = \"yes\": expected `true` or `false`",
                "spec.applicationRefs[0].images[0].commonUpdateSettings.pullSecret = \"vault:web\": \
                 expected `pullsecret:<namespace>/<name>`, `secret:<namespace>/<name>#<field>` or `env:<VAR>`",
            ],
        ),
        (
            json!({ "applicationRefs": [{ "namePattern": "*", "images": [
                { "alias": "-web", "imageName": "ghcr.io/acme/web" }] }] }),
            &[
                "spec.applicationRefs[0].images[0].alias = \"-web\": must start with a letter or \
               digit, followed by letters, digits, `-`, `.` or `_`",
            ],
        ),
        (
            json!({ "applicationRefs": [{ "namePattern": "*", "images": [
                { "alias": "web", "imageName": "ghcr.io/acme/web@sha256:abc" }] }] }),
            &[
                "spec.applicationRefs[0].images[0].imageName = \"ghcr.io/acme/web@sha256:abc\": an \
               image in the list is `<image>[:<constraint>]`, without a digest",
            ],
        ),
        (
            json!({ "applicationRefs": [{ "namePattern": "*", "images": [
                { "alias": "web", "imageName": "ghcr.io/acme/web" },
                { "alias": "web", "imageName": "ghcr.io/acme/api" }] }] }),
            &[
                "spec.applicationRefs[0].images[1].alias = \"web\": another image of this \
               applicationRef has this alias",
            ],
        ),
        (
            json!({ "applicationRefs": [{ "namePattern": "*", "images": [
                { "alias": "web", "imageName": "ghcr.io/acme/web",
                  "manifestTargets": { "helm": { "name": "a" }, "kustomize": { "name": "b" } } }] }] }),
            &[
                "spec.applicationRefs[0].images[0].manifestTargets = \"helm, kustomize\": exactly one \
               of `helm`, `kustomize` or `plugin` is written per image",
            ],
        ),
        (
            json!({ "applicationRefs": [{ "namePattern": "*", "images": [
                { "alias": "web", "imageName": "ghcr.io/acme/web",
                  "manifestTargets": { "helm": { "tag": "image tag" } } }] }] }),
            &[
                "spec.applicationRefs[0].images[0].manifestTargets.helm.tag = \"image tag\": \
               expected the name of a Helm parameter",
            ],
        ),
        (
            json!({ "applicationRefs": [{ "namePattern": "*",
                    "writeBackConfig": { "method": "kubectl" }, "images": [
                { "alias": "web", "imageName": "ghcr.io/acme/web" }] }] }),
            &[
                "spec.applicationRefs[0].writeBackConfig.method = \"kubectl\": expected `argocd`, \
               `git` or `git:<credentials>`",
            ],
        ),
        (
            json!({ "applicationRefs": [{ "namePattern": "*",
                    "labelSelectors": { "matchExpressions": [
                        { "key": "env", "operator": "Equals", "values": ["a"] }] },
                    "images": [{ "alias": "web", "imageName": "ghcr.io/acme/web" }] },
                { "namePattern": "*",
                    "labelSelectors": { "matchExpressions": [
                        { "key": "env", "operator": "Exists" },
                        { "key": "env", "operator": "In" }] },
                    "images": [{ "alias": "web", "imageName": "ghcr.io/acme/web" }] }] }),
            &[
                "spec.applicationRefs[0].labelSelectors.matchExpressions[0].operator = \"Equals\": \
                 expected `In`, `NotIn`, `Exists` or `DoesNotExist`",
                "spec.applicationRefs[1].labelSelectors.matchExpressions[1].operator = \"In\": \
                 `In` and `NotIn` need at least one value",
            ],
        ),
    ];
    for (spec, expected) in table {
        assert_eq!(errors(spec.clone()), expected, "{spec}");
    }
}

#[test]
fn wrong_types_are_reported_not_panicked_on() {
    let table: [(Value, &str); 4] = [
        (
            json!({ "applicationRefs": "web" }),
            "spec.applicationRefs = \"web\": expected a list",
        ),
        (
            json!({ "applicationRefs": [7] }),
            "spec.applicationRefs[0] = \"7\": expected an object",
        ),
        (
            json!({ "applicationRefs": [{ "namePattern": 3, "images": [] }] }),
            "spec.applicationRefs[0].namePattern = \"3\": expected a string",
        ),
        (
            json!({ "applicationRefs": [{ "namePattern": "*", "images": [
                { "alias": "web", "imageName": "ghcr.io/acme/web",
                  "commonUpdateSettings": { "ignoreTags": "latest" } }] }] }),
            "spec.applicationRefs[0].images[0].commonUpdateSettings.ignoreTags = \"latest\": \
             expected a list",
        ),
    ];
    for (spec, first) in table {
        assert_eq!(
            errors(spec.clone()).first().map(String::as_str),
            Some(first),
            "{spec}"
        );
    }
}

#[test]
fn specificity_follows_image_updater() {
    let selector = LabelSelector::from_json(
        &json!({ "matchLabels": { "team": "web", "env": "prod" } }),
        "labelSelectors",
    )
    .unwrap();
    assert_eq!(specificity("app-1", None), 1_000_005);
    assert_eq!(specificity("app-prod-*", None), 9);
    assert_eq!(specificity("app-[1234567]", None), 4);
    assert_eq!(specificity("app-?", Some(&selector)), 10_204);
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    /// Field names the reader looks at, and a few values that mean something to it.
    const FIELDS: [&str; 24] = [
        "applicationRefs",
        "namePattern",
        "labelSelectors",
        "matchLabels",
        "matchExpressions",
        "key",
        "operator",
        "values",
        "useAnnotations",
        "commonUpdateSettings",
        "writeBackConfig",
        "method",
        "images",
        "alias",
        "imageName",
        "manifestTargets",
        "helm",
        "kustomize",
        "plugin",
        "name",
        "tag",
        "spec",
        "updateStrategy",
        "ignoreTags",
    ];
    const WORDS: [&str; 12] = [
        "*",
        "web-[",
        "web-?",
        "In",
        "Exists",
        "digest",
        "semver",
        "git:",
        "argocd",
        "ghcr.io/acme/web:~1",
        "regexp:(",
        "env:",
    ];

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            prop::sample::select(&WORDS[..]).prop_map(Value::from),
            "[ -~]{0,8}".prop_map(Value::from),
        ];
        leaf.prop_recursive(5, 64, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map(prop::sample::select(&FIELDS[..]), inner, 0..6)
                    .prop_map(|m| {
                        Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
                    }),
            ]
        })
    }

    proptest! {
        /// Whatever the object holds, the reader answers: a spec it accepts selects without
        /// panicking, and a refusal names at least one field.
        #[test]
        fn any_object_is_read_or_refused(spec in value(), name in "[a-z*-]{0,6}") {
            match ImageUpdaterSpec::parse(&json!({ "spec": spec })) {
                Ok(parsed) => {
                    prop_assert!(!parsed.refs.is_empty());
                    let _ = parsed.select(&name, &labels(&[("env", "prod")]));
                }
                Err(errors) => {
                    prop_assert!(!errors.is_empty());
                    prop_assert!(errors.iter().all(|e| e.key.starts_with("spec.")), "{errors:?}");
                }
            }
        }
    }
}

//! Properties of what keel-helm reads from the server: no storage value, values document or
//! path makes it panic, and writing an image into values then reading it gives it back.

use keel_core::ImageRef;
use keel_helm::config::{self, ImageEntry, ImagePaths};
use keel_helm::release::{self, get_path, set_path};
use proptest::prelude::*;
use serde_json::{Value, json};

/// Any JSON value a few levels deep, with keys from a small set so that paths meet them.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "[a-z0-9.:/@_-]{0,24}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "keel",
                    "policy",
                    "images",
                    "image",
                    "repository",
                    "tag",
                    "trigger",
                    "approvals",
                    "pollSchedule",
                    "notify",
                    "0",
                    "digest",
                ]),
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        ]
    })
}

fn path() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec!["keel", "image", "tag", "0", "1", "images", "", "x"]),
        1..5,
    )
    .prop_map(|segments| segments.join("."))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_storage_bytes_decode_or_fail_without_panicking(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = release::decode(&bytes);
    }

    #[test]
    fn any_release_json_decodes_or_fails_without_panicking(body in value()) {
        let stored = release::encode(&body);
        if let Ok(release) = release::decode(stored.as_bytes()) {
            let _ = release.merged_values();
            let _ = release.chart_label();
        }
    }

    #[test]
    fn any_values_read_or_fail_with_a_path(values in value(), keel in value()) {
        let mut values = values;
        if let Value::Object(map) = &mut values {
            map.insert("keel".to_owned(), keel);
        }
        match config::read(&values) {
            Ok(Some(config)) => {
                for entry in &config.images {
                    let _ = entry.current(&values);
                    let _ = entry.pull_secrets(&values);
                }
            }
            Ok(None) => {}
            Err(error) => prop_assert!(!error.path.is_empty() && !error.reason.is_empty()),
        }
    }

    #[test]
    fn paths_never_panic(mut values in value(), path in path(), new in value()) {
        let _ = get_path(&values, &path);
        if set_path(&mut values, &path, new.clone()).is_ok() && !path.split('.').any(str::is_empty) {
            prop_assert_eq!(get_path(&values, &path), Some(&new));
        }
    }

    #[test]
    fn a_written_image_reads_back(
        user in value(),
        tag in "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}",
        whole in any::<bool>(),
    ) {
        let paths = if whole {
            ImagePaths::Whole { image: "sidecar.image".to_owned() }
        } else {
            ImagePaths::Parts {
                repository: "image.repository".to_owned(),
                tag: "image.tag".to_owned(),
                digest: None,
            }
        };
        let entry = ImageEntry { paths, pull_secret: None, release_notes: None };
        let current = ImageRef::parse("ghcr.io/acme/web:0.0.1").unwrap();
        let new = ImageRef::parse(&format!("ghcr.io/acme/web:{tag}")).unwrap();
        // The user's values over chart defaults that hold the current image.
        let mut merged = json!({
            "image": {"repository": "ghcr.io/acme/web", "tag": "0.0.1"},
            "sidecar": {"image": "ghcr.io/acme/web:0.0.1"},
        });
        let mut user = match user {
            Value::Object(map) => Value::Object(map.into_iter().filter(|(k, _)| k != "image" && k != "sidecar").collect()),
            _ => json!({}),
        };
        entry.write(&mut user, &current, &new, false).unwrap();
        release::coalesce(&mut merged, &user);
        prop_assert_eq!(entry.current(&merged).unwrap(), new);
    }
}

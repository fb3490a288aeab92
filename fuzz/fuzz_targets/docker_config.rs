//! Fuzzes the readers of Docker credentials: `config.json` (`DockerConfig::from_json`), the
//! legacy `.dockercfg` and documents from a credential source (`from_document`, as for a
//! `kubernetes.io/dockerconfigjson` secret).
//!
//! Checked: no panic; reading the same text twice gives the same credentials for every key
//! (no dependence on hash order); a document from a credential source reads like the file
//! but keeps only the static entries, so asking it for credentials never runs a helper; an
//! error never quotes a value of the document that looks like a password or token, and
//! one about a document names its origin.
#![no_main]

use std::sync::Arc;

use keel_core::registry::{DockerConfigDocument, DockerConfigFormat};
use keel_fuzz::{assert_quotes_no_secret, at_once};
use keel_registry::{Credentials, DockerConfig};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const ORIGIN: &str = "secret fuzz/regcred";

/// The keys of the credential entries of a document in `format`.
fn entry_keys(v: &Value, format: DockerConfigFormat) -> Vec<&str> {
    let entries = match format {
        DockerConfigFormat::ConfigJson => v.get("auths"),
        DockerConfigFormat::Dockercfg => Some(v),
    };
    entries
        .and_then(Value::as_object)
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

fn check_error(e: &keel_core::Error, value: Option<&Value>, origin: Option<&str>) {
    let message = e.to_string();
    if let Some(origin) = origin {
        assert!(message.contains(origin), "{message}");
    }
    assert_quotes_no_secret(&message, value);
}

fuzz_target!(|text: &str| {
    let value: Option<Value> = serde_json::from_str(text).ok();
    for format in [
        DockerConfigFormat::ConfigJson,
        DockerConfigFormat::Dockercfg,
    ] {
        let (first, second) = match format {
            DockerConfigFormat::ConfigJson => {
                (DockerConfig::from_json(text), DockerConfig::from_json(text))
            }
            DockerConfigFormat::Dockercfg => (
                DockerConfig::from_dockercfg_json(text),
                DockerConfig::from_dockercfg_json(text),
            ),
        };
        let document = DockerConfigDocument {
            origin: ORIGIN.to_owned(),
            format,
            json: Arc::from(text),
        };
        let from_document = DockerConfig::from_document(&document);
        match (&first, &from_document) {
            (Ok(_), Ok(_)) => {}
            (Err(e), Err(d)) => {
                check_error(e, value.as_ref(), None);
                check_error(d, value.as_ref(), Some(ORIGIN));
                continue;
            }
            _ => panic!("{format:?}: the file reads {first:?}, the document {from_document:?}"),
        }
        let (first, second, from_document) =
            (first.unwrap(), second.unwrap(), from_document.unwrap());
        let keys = value
            .as_ref()
            .map(|v| entry_keys(v, format))
            .unwrap_or_default();
        for key in keys {
            let found = first.static_credentials(key);
            assert!(found.is_some(), "{format:?}: no entry for {key:?}");
            assert_eq!(found, second.static_credentials(key), "{format:?}: {key:?}");
            assert_eq!(
                found,
                from_document.static_credentials(key),
                "{format:?}: {key:?}"
            );
            let asked = at_once("a document", from_document.credentials(key))
                .unwrap_or_else(|e| panic!("{key:?}: a document ran a helper: {e}"));
            assert_eq!(Some(asked), found);
        }
        assert_eq!(
            at_once("a document", from_document.credentials("fuzz.invalid")).ok(),
            Some(Credentials::Anonymous)
        );
    }
});

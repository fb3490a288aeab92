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

use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use keel_core::registry::{DockerConfigDocument, DockerConfigFormat};
use keel_registry::{Credentials, DockerConfig};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const ORIGIN: &str = "secret fuzz/regcred";

/// Every string value (not key) in `v` long enough to be a secret.
fn string_values<'v>(v: &'v Value, out: &mut Vec<&'v str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(items) => items.iter().for_each(|i| string_values(i, out)),
        Value::Object(map) => map.values().for_each(|i| string_values(i, out)),
        _ => {}
    }
}

/// The string values of `v` that look like a secret and cannot be mistaken for the text of
/// an error: eight characters or more without spaces, with letters and digits, and not part
/// of a key (errors name entries by key).
fn secrets(v: &Value) -> Vec<&str> {
    let mut keys = Vec::new();
    collect_keys(v, &mut keys);
    let mut values = Vec::new();
    string_values(v, &mut values);
    values.retain(|s| {
        s.len() >= 8
            && !s.contains(char::is_whitespace)
            && s.contains(|c: char| c.is_ascii_digit())
            && s.contains(|c: char| c.is_alphabetic())
            && keys.iter().all(|k| !format!("auths.{k}").contains(s))
    });
    values
}

fn collect_keys(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| collect_keys(i, out)),
        Value::Object(map) => {
            for (k, i) in map {
                out.push(k.clone());
                collect_keys(i, out);
            }
        }
        _ => {}
    }
}

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

/// The output of `future`, which must be ready at once: credentials from static entries
/// need no helper program.
fn at_once<T>(future: impl Future<Output = T>) -> T {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(value) => value,
        Poll::Pending => panic!("asking a document for credentials waited (ran a helper?)"),
    }
}

fn check_error(e: &keel_core::Error, value: Option<&Value>, origin: Option<&str>) {
    let message = e.to_string();
    if let Some(origin) = origin {
        assert!(message.contains(origin), "{message}");
    }
    for secret in value.map(secrets).unwrap_or_default() {
        assert!(
            !message.contains(secret),
            "the error quotes the value {secret:?}: {message}"
        );
    }
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
            let asked = at_once(from_document.credentials(key))
                .unwrap_or_else(|e| panic!("{key:?}: a document ran a helper: {e}"));
            assert_eq!(Some(asked), found);
        }
        assert_eq!(
            at_once(from_document.credentials("fuzz.invalid")).ok(),
            Some(Credentials::Anonymous)
        );
    }
});

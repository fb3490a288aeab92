//! Fuzzes how a Kubernetes pull secret becomes registry credentials: keel-k8s's
//! `secrets::document_of` reads the `.dockerconfigjson` (or `.dockercfg`) key of a secret,
//! and keel-registry's `DockerConfig::from_document` parses it. The first byte picks the
//! format; the rest is the value of the key.
//!
//! Checked: no panic; a document comes out exactly when the value is a UTF-8 JSON object,
//! named after the secret and holding the value unchanged; its credentials are the static
//! entries only, answered at once without running a helper (`credsStore` and `credHelpers`
//! in a secret must never run a program); an error names the secret and never quotes a
//! value of the document that looks like a password or token.
#![no_main]

use std::collections::BTreeMap;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use keel_core::registry::DockerConfigFormat;
use keel_k8s::secrets::document_of;
use keel_registry::{Credentials, DockerConfig};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn at_once<T>(future: impl Future<Output = T>) -> T {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(value) => value,
        Poll::Pending => panic!("asking a pull secret for credentials waited (ran a helper?)"),
    }
}

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

fuzz_target!(|data: &[u8]| {
    let Some((pick, value)) = data.split_first() else {
        return;
    };
    let (format, key) = if pick % 2 == 0 {
        (DockerConfigFormat::ConfigJson, ".dockerconfigjson")
    } else {
        (DockerConfigFormat::Dockercfg, ".dockercfg")
    };
    let secret = Secret {
        metadata: ObjectMeta {
            namespace: Some("prod".into()),
            name: Some("regcred".into()),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(
            key.to_owned(),
            ByteString(value.to_vec()),
        )])),
        ..Secret::default()
    };
    let parsed: Option<Value> = std::str::from_utf8(value)
        .ok()
        .and_then(|text| serde_json::from_str(text).ok());
    let is_object = parsed.as_ref().is_some_and(Value::is_object);
    let found = document_of(&secret, format);
    assert_eq!(found.is_some(), is_object, "{value:?}");
    let Some((name, document)) = found else {
        return;
    };
    assert_eq!(name.to_string(), "prod/regcred");
    assert_eq!(document.origin, "secret prod/regcred");
    assert_eq!(document.format, format);
    assert_eq!(document.json.as_bytes(), value);

    let config = match DockerConfig::from_document(&document) {
        Ok(config) => config,
        Err(e) => {
            let message = e.to_string();
            assert!(message.contains("secret prod/regcred"), "{message}");
            for secret in secrets(parsed.as_ref().unwrap()) {
                assert!(
                    !message.contains(secret),
                    "the error quotes the value {secret:?}: {message}"
                );
            }
            return;
        }
    };
    let parsed = parsed.unwrap();
    let entries = match format {
        DockerConfigFormat::ConfigJson => parsed.get("auths").and_then(Value::as_object),
        DockerConfigFormat::Dockercfg => parsed.as_object(),
    };
    let hosts = entries
        .map(|m| m.keys().map(String::as_str).collect::<Vec<_>>())
        .unwrap_or_default();
    for host in hosts.into_iter().chain(["fuzz.invalid", "docker.io"]) {
        let asked = at_once(config.credentials(host))
            .unwrap_or_else(|e| panic!("{host:?}: a pull secret ran a helper: {e}"));
        let expected = config
            .static_credentials(host)
            .unwrap_or(Credentials::Anonymous);
        assert_eq!(asked, expected, "{host:?}");
    }
});

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

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use keel_core::registry::DockerConfigFormat;
use keel_fuzz::{assert_quotes_no_secret, at_once};
use keel_k8s::secrets::document_of;
use keel_registry::{Credentials, DockerConfig};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

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
            assert_quotes_no_secret(&message, parsed.as_ref());
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
        let asked = at_once("a pull secret", config.credentials(host))
            .unwrap_or_else(|e| panic!("{host:?}: a pull secret ran a helper: {e}"));
        let expected = config
            .static_credentials(host)
            .unwrap_or(Credentials::Anonymous);
        assert_eq!(asked, expected, "{host:?}");
    }
});

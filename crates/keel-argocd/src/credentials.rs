//! The registry credentials `<alias>.pull-secret` names, for the registry backend.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use base64::Engine as _;
use k8s_openapi::api::core::v1::Secret;
use keel_core::{CredentialSource, DockerConfigDocument, DockerConfigFormat, ImageRef};
use kube::{Api, Client};

use crate::annotations::PullSecretSource;

/// The credentials of the tracked images, as [`ArgoCdTarget::discover`](crate::ArgoCdTarget)
/// last resolved them: each one is answered for the repository of the image whose
/// `pull-secret` names it, and for no other, so that a secret is never sent to another
/// registry. Clones share the same state; give one to the registry backend
/// (`RegistryClientBuilder::with_credential_source`).
#[derive(Clone, Default)]
pub struct PullCredentials {
    /// By tracked image id: the repository (`registry/repository`) and its document.
    entries: Arc<RwLock<BTreeMap<String, (String, DockerConfigDocument)>>>,
}

impl PullCredentials {
    /// Makes `entries` (tracked id → repository and document) the current credentials.
    pub(crate) fn replace(&self, entries: BTreeMap<String, (String, DockerConfigDocument)>) {
        *self.entries.write().unwrap_or_else(|e| e.into_inner()) = entries;
    }

    /// How many tracked images have credentials.
    pub fn len(&self) -> usize {
        self.entries.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether no tracked image has credentials.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl CredentialSource for PullCredentials {
    fn docker_configs(&self, image: &ImageRef) -> Vec<DockerConfigDocument> {
        let name = image.name();
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        let mut docs: Vec<DockerConfigDocument> = Vec::new();
        for (repository, doc) in entries.values() {
            if *repository == name && !docs.contains(doc) {
                docs.push(doc.clone());
            }
        }
        docs
    }
}

impl fmt::Debug for PullCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        let origins: Vec<(&String, &str)> = entries
            .iter()
            .map(|(id, (_, doc))| (id, doc.origin.as_str()))
            .collect();
        f.debug_struct("PullCredentials")
            .field("by_image", &origins)
            .finish()
    }
}

/// Reads the document `source` names for `image`; `Err` says what is wrong without showing
/// any credential.
pub(crate) async fn resolve(
    client: &Client,
    source: &PullSecretSource,
    image: &ImageRef,
) -> Result<DockerConfigDocument, String> {
    match source {
        PullSecretSource::PullSecret { namespace, name } => {
            let secret = get_secret(client, namespace, name).await?;
            let format = if secret
                .data
                .as_ref()
                .is_some_and(|d| d.contains_key(".dockerconfigjson"))
            {
                DockerConfigFormat::ConfigJson
            } else {
                DockerConfigFormat::Dockercfg
            };
            keel_k8s::secrets::document_of(&secret, format)
                .map(|(_, doc)| doc)
                .ok_or_else(|| {
                    format!(
                        "secret {namespace}/{name} holds no Docker config (a JSON object under \
                         `.dockerconfigjson` or `.dockercfg`)"
                    )
                })
        }
        PullSecretSource::Secret {
            namespace,
            name,
            field,
        } => {
            let secret = get_secret(client, namespace, name).await?;
            let value = secret
                .data
                .as_ref()
                .and_then(|d| d.get(field))
                .ok_or_else(|| format!("secret {namespace}/{name} has no field `{field}`"))?;
            let text = std::str::from_utf8(&value.0).map_err(|_| {
                format!("field `{field}` of secret {namespace}/{name} is not UTF-8")
            })?;
            basic_document(
                text.trim(),
                image,
                &format!("secret {namespace}/{name}#{field}"),
            )
        }
        PullSecretSource::Env(var) => {
            let text = std::env::var(var)
                .map_err(|_| format!("environment variable {var} is not set (or not UTF-8)"))?;
            basic_document(text.trim(), image, &format!("environment variable {var}"))
        }
    }
}

/// Secret `namespace/name`; `Err` says why it cannot be read.
pub(crate) async fn get_secret(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Secret, String> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    api.get(name).await.map_err(|e| {
        let request = keel_k8s::error::Request {
            verb: "get",
            resource: "secrets",
            namespace: Some(namespace),
            name: Some(name),
        };
        keel_k8s::error::from_kube(e, &request).to_string()
    })
}

/// A Docker config with `user:password` for the registry of `image` alone.
fn basic_document(
    user_password: &str,
    image: &ImageRef,
    origin: &str,
) -> Result<DockerConfigDocument, String> {
    match user_password.split_once(':') {
        Some((user, password)) if !user.is_empty() && !password.is_empty() => {}
        _ => return Err(format!("{origin} does not hold `<user>:<password>`")),
    }
    let auth = base64::engine::general_purpose::STANDARD.encode(user_password);
    let json = serde_json::json!({ "auths": { image.registry(): { "auth": auth } } });
    Ok(DockerConfigDocument {
        origin: origin.to_owned(),
        format: DockerConfigFormat::ConfigJson,
        json: Arc::from(json.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_only_for_the_repository_of_its_image() {
        let web = ImageRef::parse("registry.example:5000/acme/web:1.0").unwrap();
        let doc = basic_document("bot:hunter2", &web, "environment variable X").unwrap();
        assert!(doc.json.contains("registry.example:5000"));
        let creds = PullCredentials::default();
        creds.replace(BTreeMap::from([(
            "application/ns/app/web".to_owned(),
            (web.name(), doc.clone()),
        )]));
        assert_eq!(creds.docker_configs(&web), vec![doc]);
        let other = ImageRef::parse("registry.example:5000/acme/api:1.0").unwrap();
        assert!(creds.docker_configs(&other).is_empty());
        let shown = format!("{creds:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("Ym90"),
            "{shown}"
        );
    }

    #[test]
    fn refuses_a_value_without_user_and_password() {
        let web = ImageRef::parse("ghcr.io/acme/web:1.0").unwrap();
        for bad in ["token-only", ":password", "user:"] {
            let err = basic_document(bad, &web, "secret a/b#creds").unwrap_err();
            assert_eq!(err, "secret a/b#creds does not hold `<user>:<password>`");
        }
    }
}

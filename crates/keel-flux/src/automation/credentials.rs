//! The credentials of a `GitRepository` and the signing key of an automation.

use base64::Engine as _;
use keel_core::Secret;
use keel_git::GitAuth;
use keel_git::known_hosts::KnownHosts;
use kube::api::Api;
use kube::core::DynamicObject;
use serde_json::Value;

use super::signing::OpenPgpSigner;
use super::status::Ready;
use super::{Automation, secret_resource};
impl Automation {
    /// The `data` of secret `namespace/name` (empty when it has none), which the errors call
    /// `what` (`secret`, `signing-key secret`).
    async fn secret_data(
        &self,
        namespace: &str,
        name: &str,
        what: &str,
    ) -> Result<serde_json::Map<String, Value>, Ready> {
        let config = |message: String| Ready::no("InvalidSourceConfiguration", message);
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), namespace, &secret_resource());
        let secret = api
            .get_opt(name)
            .await
            .map_err(|e| config(format!("failed to get secret '{namespace}/{name}': {e}")))?
            .ok_or_else(|| config(format!("{what} '{namespace}/{name}' does not exist")))?;
        Ok(secret
            .data
            .get("data")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default())
    }

    /// The signer of the signing-key secret `namespace/name`: `git.asc`, an ASCII-armored
    /// OpenPGP private key, with its `passphrase` if it has one.
    pub(super) async fn signer(&self, namespace: &str, name: &str) -> Result<OpenPgpSigner, Ready> {
        let config = |message: String| Ready::no("InvalidSourceConfiguration", message);
        let data = self
            .secret_data(namespace, name, "signing-key secret")
            .await?;
        let field = |key: &str| secret_field(&data, namespace, name, key);
        let armored = field("git.asc")?.ok_or_else(|| {
            config(format!(
                "signing-key secret '{namespace}/{name}' has no git.asc (an ASCII-armored \
                 OpenPGP private key)"
            ))
        })?;
        let passphrase = field("passphrase")?.map(Secret::from);
        OpenPgpSigner::new(
            &armored,
            passphrase,
            &format!("secret '{namespace}/{name}'"),
        )
        .map_err(config)
    }

    /// The credentials of the secret `namespace/name`, as Flux reads a `GitRepository`'s.
    pub(super) async fn auth(
        &self,
        namespace: &str,
        name: &str,
        url: &str,
    ) -> Result<GitAuth, Ready> {
        let config = |message: String| Ready::no("InvalidSourceConfiguration", message);
        let data = self.secret_data(namespace, name, "secret").await?;
        let field = |key: &str| secret_field(&data, namespace, name, key);
        if let Some(identity) = field("identity")? {
            if !is_ssh_url(url) {
                return Err(config(format!(
                    "secret '{namespace}/{name}' holds an SSH identity, but the GitRepository's \
                     URL '{}' is not an SSH URL (ssh://... or user@host:path)",
                    keel_core::redact_urls(url)
                )));
            }
            let known_hosts = field("known_hosts")?.ok_or_else(|| {
                config(format!(
                    "secret '{namespace}/{name}' holds an SSH identity without known_hosts: \
                     keel-flux does not use SSH without the server's host keys"
                ))
            })?;
            let known_hosts = KnownHosts::parse(&known_hosts).map_err(|e| {
                config(format!(
                    "secret '{namespace}/{name}': the known_hosts of its SSH identity: {e}"
                ))
            })?;
            return Ok(GitAuth::SshKeyInMemory {
                username: "git".into(),
                private_key: identity.into(),
                passphrase: field("password")?.map(Into::into),
                known_hosts,
            });
        }
        if field("bearerToken")?.is_some() {
            return Err(config(format!(
                "secret '{namespace}/{name}' holds a bearerToken, which keel-flux does not \
                 support; use username and password"
            )));
        }
        match (field("username")?, field("password")?) {
            (Some(username), Some(password)) => Ok(GitAuth::UserPassword {
                username,
                password: password.into(),
            }),
            _ => Err(config(format!(
                "secret '{namespace}/{name}' has neither username and password nor another \
                 kind of credentials keel-flux supports"
            ))),
        }
    }
}

/// Whether `url` is one keel-git reaches over SSH: `ssh://...` or scp-like `user@host:path`.
pub(super) fn is_ssh_url(url: &str) -> bool {
    if let Some((scheme, _)) = url.split_once("://") {
        return matches!(scheme, "ssh" | "git+ssh");
    }
    url.split_once(':')
        .is_some_and(|(authority, _)| !authority.is_empty() && !authority.contains('/'))
}

/// The text of `key` in the `data` of secret `namespace/name`; `None` when it is not there.
fn secret_field(
    data: &serde_json::Map<String, Value>,
    namespace: &str,
    name: &str,
    key: &str,
) -> Result<Option<String>, Ready> {
    let config = |message: String| Ready::no("InvalidSourceConfiguration", message);
    let Some(encoded) = data.get(key).and_then(Value::as_str) else {
        return Ok(None);
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| config(format!("secret '{namespace}/{name}': {key} is not base64")))?;
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| config(format!("secret '{namespace}/{name}': {key} is not UTF-8")))
}

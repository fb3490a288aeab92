//! Registry credentials for the engine's pulls, from the Docker `config.json` the host's users
//! log in with (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`): what the engine
//! would use for `docker pull`, read by keel-registry, handed over for one host at a time.

use async_trait::async_trait;
use keel_core::{Error, Result};
use keel_docker::{PullAuth, PullCredentials};
use keel_registry::{Credentials, DockerConfig};

/// The credentials of a Docker `config.json` (static `auths` entries and credential helpers).
#[derive(Debug)]
pub(crate) struct ConfigCredentials {
    config: DockerConfig,
}

impl ConfigCredentials {
    /// The configuration Docker itself would read.
    pub(crate) fn from_env() -> Result<Self> {
        Ok(ConfigCredentials {
            config: DockerConfig::from_env()?,
        })
    }
}

#[async_trait]
impl PullCredentials for ConfigCredentials {
    async fn credentials(&self, host: &str) -> Result<Option<PullAuth>> {
        match self.config.credentials(host).await? {
            Credentials::Anonymous => Ok(None),
            Credentials::Basic { username, password } => {
                Ok(Some(PullAuth::Basic { username, password }))
            }
            Credentials::IdentityToken(token) => Ok(Some(PullAuth::IdentityToken(token))),
            // The engine takes a user and password or an identity token for a pull; a
            // registry token (`registrytoken`) would have to be sent as is, which it does not.
            _ => Err(Error::NotSupported {
                operation: "pulls with a registry token (`registrytoken` in config.json); log in with a user and password or an identity token",
                backend: format!("registry {host}"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_the_pulled_hosts_credentials() {
        let config = DockerConfig::from_json(
            r#"{"auths":{
                "127.0.0.1:5000":{"auth":"dXNlcjpwYXNz"},
                "ghcr.io":{"identitytoken":"refresh-me"}
            }}"#,
        )
        .unwrap();
        let source = ConfigCredentials { config };
        match source.credentials("127.0.0.1:5000").await.unwrap() {
            Some(PullAuth::Basic { username, password }) => {
                assert_eq!(username, "user");
                assert_eq!(password.expose(), "pass");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            source.credentials("ghcr.io").await.unwrap(),
            Some(PullAuth::IdentityToken(t)) if t.expose() == "refresh-me"
        ));
        assert!(source.credentials("docker.io").await.unwrap().is_none());
    }
}

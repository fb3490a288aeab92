//! [`HelmTargetBuilder`]: the settings of a [`HelmTarget`], checked at build time.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use keel_core::Error;
use keel_k8s::PullSecrets;
use keel_k8s::sync::{NamespaceScope, WatchSettings};
use kube::Client;

use super::watch::Watch;
use super::{HelmTarget, Inner};
use crate::helm::HelmBinary;
use crate::storage::Driver;

/// Builds a [`HelmTarget`]; see [`HelmTarget::builder`].
#[derive(Clone, derive_more::Debug)]
pub struct HelmTargetBuilder {
    #[debug(skip)]
    pub(super) client: Client,
    pub(super) watch: WatchSettings,
    pub(super) drivers: Vec<Driver>,
    pub(super) helm: HelmBinary,
}

/// How long one helm run of a target may take when its [`HelmBinary`] names no timeout: an
/// upgrade waits for the chart's hooks.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

impl HelmTargetBuilder {
    pub(super) fn new(client: Client) -> Self {
        HelmTargetBuilder {
            client,
            watch: WatchSettings::new("helm"),
            drivers: Driver::ALL.to_vec(),
            helm: HelmBinary::on_path(),
        }
    }

    /// The target's name in plans, reports and notifications (default `helm`).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.watch.set_name(name);
        self
    }

    /// Watches every namespace (the default).
    pub fn all_namespaces(mut self) -> Self {
        self.watch.set_scope(NamespaceScope::all());
        self
    }

    /// Watches releases in these namespaces only (default: all namespaces).
    pub fn with_namespaces<I, S>(mut self, namespaces: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.watch.set_scope(NamespaceScope::only(namespaces));
        self
    }

    /// Which of Helm's storage drivers to read (default both: Secrets and ConfigMaps).
    pub fn with_drivers(mut self, drivers: &[Driver]) -> Self {
        self.drivers = Driver::ALL
            .into_iter()
            .filter(|d| drivers.contains(d))
            .collect();
        self
    }

    /// Writes digests into the values with the tag (`1.2.3@sha256:...`, or the image's
    /// `digest` path), so that exactly the approved image runs even if its tag moves.
    pub fn with_pin_digests(mut self, pin: bool) -> Self {
        self.watch.set_pin_digests(pin);
        self
    }

    /// How long the first discovery waits for the watches' initial lists (default 60 s).
    pub fn with_sync_timeout(mut self, timeout: Duration) -> Self {
        self.watch.set_sync_timeout(timeout);
        self
    }

    /// The `helm` binary to run, its environment and timeout (default:
    /// [`HelmBinary::on_path`], the environment of this process, and runs killed after five
    /// minutes unless [`HelmBinary::with_timeout`] says otherwise); checked by
    /// [`build`](Self::build).
    pub fn with_helm(mut self, helm: HelmBinary) -> Self {
        self.helm = helm;
        self
    }

    /// Registers which pull secrets each tracked image uses with `secrets` at every
    /// discovery, so that registry requests carry the release's credentials.
    pub fn with_pull_secrets(mut self, secrets: PullSecrets) -> Self {
        self.watch.set_pull_secrets(secrets);
        self
    }

    /// Checks the namespaces and the helm binary, and starts the watches.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an empty namespace list; [`Error::NotFound`] when there is
    /// no helm binary, [`Error::Backend`] when it does not run as helm: at start-up, not at
    /// the first update.
    pub async fn build(self) -> Result<HelmTarget, Error> {
        self.watch.scope().check()?;
        let helm = self.helm.clone().or_timeout(RUN_TIMEOUT).check().await?;
        let (changes, _) = tokio::sync::watch::channel(());
        let scopes = self.watch.scope().watched();
        let watches = self
            .drivers
            .iter()
            .flat_map(|driver| {
                scopes.iter().map(|ns| {
                    Watch::start(
                        &self.client,
                        *driver,
                        ns.map(str::to_owned),
                        changes.clone(),
                    )
                })
            })
            .collect();
        Ok(HelmTarget {
            inner: Arc::new(Inner {
                settings: self,
                helm,
                watches,
                changes,
                problems: Default::default(),
                refused: Mutex::new(Default::default()),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use keel_k8s::sync::NamespaceScope;

    use super::HelmTargetBuilder;

    #[tokio::test]
    async fn all_namespaces_widens_a_namespace_list() {
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let client = kube::Client::try_from(config).unwrap();
        let narrowed = HelmTargetBuilder::new(client).with_namespaces(["shop"]);
        assert_eq!(narrowed.watch.scope(), &NamespaceScope::only(["shop"]));
        let widened = narrowed.all_namespaces();
        assert_eq!(widened.watch.scope(), &NamespaceScope::all());
    }
}

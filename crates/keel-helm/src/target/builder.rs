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

impl HelmTargetBuilder {
    /// How long one helm run of a target may take when its [`HelmBinary`] names no timeout
    /// (an upgrade waits for the chart's hooks). The start-up check waits
    /// [`HelmBinary::DEFAULT_TIMEOUT`] as elsewhere.
    pub const DEFAULT_RUN_TIMEOUT: Duration = Duration::from_secs(300);

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
    /// [`HelmBinary::on_path`], the environment of this process, and runs killed after
    /// [`DEFAULT_RUN_TIMEOUT`](Self::DEFAULT_RUN_TIMEOUT) unless
    /// [`HelmBinary::with_timeout`] says otherwise); checked by [`build`](Self::build).
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
        let HelmTargetBuilder {
            client,
            watch,
            drivers,
            helm,
        } = self;
        watch.scope().check()?;
        let helm = helm
            .check_with_run_timeout(Self::DEFAULT_RUN_TIMEOUT)
            .await?;
        let (changes, _) = tokio::sync::watch::channel(());
        let scopes = watch.scope().watched();
        let watches = drivers
            .iter()
            .flat_map(|driver| {
                scopes.iter().map(|ns| {
                    Watch::start(&client, *driver, ns.map(str::to_owned), changes.clone())
                })
            })
            .collect();
        Ok(HelmTarget {
            inner: Arc::new(Inner {
                client,
                watch,
                drivers,
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
    use std::time::Duration;

    use keel_core::Error;
    use keel_k8s::sync::NamespaceScope;
    use keel_testsupport::kube::unreachable_client;

    use super::HelmTargetBuilder;
    use crate::HelmTarget;
    use crate::helm::HelmBinary;
    use crate::helm::tests::fake_helm;

    async fn build_with(helm: HelmBinary) -> Result<HelmTarget, Error> {
        HelmTargetBuilder::new(unreachable_client())
            .with_helm(helm)
            .build()
            .await
    }

    #[tokio::test]
    async fn all_namespaces_widens_a_namespace_list() {
        let narrowed = HelmTargetBuilder::new(unreachable_client()).with_namespaces(["shop"]);
        assert_eq!(narrowed.watch.scope(), &NamespaceScope::only(["shop"]));
        let widened = narrowed.all_namespaces();
        assert_eq!(widened.watch.scope(), &NamespaceScope::all());
    }

    #[tokio::test]
    async fn runs_take_the_target_default_unless_the_helm_binary_names_a_timeout() {
        let (_dir, path) = fake_helm("echo v4.1.4");
        let target = build_with(HelmBinary::at(&path)).await.unwrap();
        assert_eq!(target.helm().timeout(), Duration::from_secs(300));
        let helm = HelmBinary::at(&path).with_timeout(Duration::from_secs(7));
        let target = build_with(helm).await.unwrap();
        assert_eq!(target.helm().timeout(), Duration::from_secs(7));
    }

    /// The clock is paused: the check's timeout passes as soon as the fake helm hangs.
    #[tokio::test(start_paused = true)]
    async fn the_start_up_check_waits_two_minutes_not_the_run_timeout() {
        let (_dir, path) = fake_helm("exec sleep 600");
        let error = build_with(HelmBinary::at(&path)).await.unwrap_err();
        assert!(
            error.to_string().contains("ran longer than 120s"),
            "{error}"
        );
    }
}

//! A real Kubernetes API server for the integration tests (feature `kube`).
//!
//! - [`ApiServer`]: etcd + kube-apiserver on 127.0.0.1 from `KUBE_APISERVER_BIN` and
//!   `ETCD_BIN` (`scripts/envtest install`, then `eval "$(scripts/envtest env)"`), with token
//!   auth (an admin in `system:masters` and the limited users [`LIMITED_USERS`]) and RBAC.
//!   [`ApiServer::shared`] starts one per test binary; [`ApiServer::start`] one of the test's
//!   own. Both return `None` after printing how to get the binaries when they are not set, so
//!   a test begins with `let Some(server) = ApiServer::shared().await else { return };`.
//!   The processes are killed when the server is dropped or the test process ends.
//! - [`ApiServer::namespace`]: a fresh namespace per test.
//! - [`ApiServer::counting_admin_client`]: a client whose requests are recorded
//!   ([`RequestLog`]), to assert e.g. that nothing LISTs at steady state;
//!   [`ApiServer::intercepting_client_as`]: a client that runs a hook before chosen requests
//!   (e.g. a concurrent change between a read and a write);
//!   [`ApiServer::racing_object_client`]: a client whose PATCHes of one object each race
//!   another writer's change of it.
//! - [`Workload`], [`grant`], [`create_secret`], [`create_docker_config_secret`],
//!   [`patch_deployment_status`], [`mark_deployment_rolled_out`], [`merge_status`]: fixtures
//!   written with the raw API.
//! - [`wait_until`] and [`wait_for`]: polling until a state is reached, or panicking with what
//!   was seen.
//! - [`install_crd`]: a CRD installed once per server, however many tests ask for it;
//!   [`install_openshift_crds`]: OpenShift's DeploymentConfig and ImageStream as CRDs.
//! - [`flux`]: Flux's kinds and CRDs on the test server ([`flux::install_flux_crds`]), and the
//!   Flux objects tests build.
//! - [`argocd`]: Argo CD's Applications, repository credentials and known hosts written with the
//!   raw API.
//! - [`unreachable_client`]: a client of a server that refuses every connection, for unit
//!   tests that need a [`kube::Client`] but no cluster.

mod apiserver;
pub mod argocd;
mod counting;
mod fixtures;
pub mod flux;
mod intercept;
pub mod openshift;
mod unreachable;
mod wait;

pub use apiserver::{ADMIN, ApiServer, LIMITED_GROUP, LIMITED_USERS, SKIP_MESSAGE, install_crd};
pub use counting::{RecordedRequest, RequestLog};
pub use fixtures::{
    Kind, Workload, create_docker_config_secret, create_secret, deployment_images, grant,
    granted_client, mark_deployment_rolled_out, merge_status, patch_deployment_status,
};
pub use intercept::{Hook, HookFuture, InterceptLayer, InterceptService};
pub use openshift::{DEPLOYMENT_CONFIG_CRD, IMAGE_STREAM_CRD, install_openshift_crds};
pub use unreachable::unreachable_client;
pub use wait::{wait_for, wait_until};

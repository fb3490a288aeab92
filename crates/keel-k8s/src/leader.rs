//! Leader election on a `coordination.k8s.io/v1` `Lease`, so that of several controller
//! replicas exactly one applies updates.
//!
//! The protocol is client-go's: the leader writes its identity and a renew time into the
//! lease every retry period; every write carries the `resourceVersion` it read, so that two
//! replicas racing for the lease cannot both win (the loser gets `409 Conflict`). A replica
//! takes the lease over only when its holder has not renewed it for the lease duration, as
//! measured on the replica's own clock from when it last saw the lease change (clock skew
//! between machines does not matter). A leader that fails to renew within the renew deadline,
//! which is shorter than the lease duration, stops leading before anyone else may start; one
//! that finds another holder in the lease stops at once. On shutdown the leader clears the
//! holder so that another replica takes over on its next try instead of waiting out the
//! lease.
//!
//! ```no_run
//! # async fn demo(client: kube::Client) -> Result<(), keel_core::Error> {
//! use std::time::Duration;
//! use keel_k8s::LeaderElector;
//!
//! let leader = LeaderElector::new(client, "keel", "keel-controller", "replica-a")
//!     .with_lease_duration(Duration::from_secs(15))
//!     .start()?;
//! // Runs the loop only while this replica leads; it is dropped when leadership is lost.
//! let ran = leader
//!     .run_while_leader(async {
//!         loop {
//!             // discover, select, apply...
//!             tokio::time::sleep(Duration::from_secs(60)).await;
//!         }
//!     })
//!     .await;
//! assert!(ran.is_none());
//! leader.shutdown().await;
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use keel_core::retry::full_jitter;
use keel_core::{Error, ParseError};
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::error::{Request, from_kube, is_conflict};

/// Configures and starts leader election for one replica.
///
/// Defaults are client-go's: a 15 s lease, a 10 s renew deadline and a 2 s retry period.
#[derive(Clone, derive_more::Debug)]
pub struct LeaderElector {
    #[debug(skip)]
    client: Client,
    namespace: String,
    lease_name: String,
    identity: String,
    lease_duration: Duration,
    renew_deadline: Duration,
    retry_period: Duration,
}

impl LeaderElector {
    /// Election on the lease `lease_name` in `namespace` (created when missing), as the
    /// replica `identity` (unique per replica, e.g. the pod name).
    pub fn new(
        client: Client,
        namespace: impl Into<String>,
        lease_name: impl Into<String>,
        identity: impl Into<String>,
    ) -> Self {
        LeaderElector {
            client,
            namespace: namespace.into(),
            lease_name: lease_name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }

    /// How long a lease that is not renewed keeps others from taking it over.
    pub fn with_lease_duration(self, lease_duration: Duration) -> Self {
        LeaderElector {
            lease_duration,
            ..self
        }
    }

    /// How long the leader keeps trying to renew before it stops leading; shorter than the
    /// lease duration.
    pub fn with_renew_deadline(self, renew_deadline: Duration) -> Self {
        LeaderElector {
            renew_deadline,
            ..self
        }
    }

    /// How often to try to acquire or renew the lease; shorter than the renew deadline.
    pub fn with_retry_period(self, retry_period: Duration) -> Self {
        LeaderElector {
            retry_period,
            ..self
        }
    }

    /// This replica's identity, as written into the lease.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    fn validate(&self) -> Result<(), Error> {
        let timing = format!(
            "lease duration {:?}, renew deadline {:?}, retry period {:?}",
            self.lease_duration, self.renew_deadline, self.retry_period
        );
        let reason = if self.identity.is_empty() {
            Some("the identity is empty".to_owned())
        } else if self.lease_duration.as_secs() < 1 {
            Some("the lease duration is under one second (the lease counts whole seconds)".into())
        } else if self.renew_deadline >= self.lease_duration {
            Some("the renew deadline must be shorter than the lease duration".into())
        } else if self.retry_period.is_zero() || self.retry_period >= self.renew_deadline {
            Some("the retry period must be positive and shorter than the renew deadline".into())
        } else {
            None
        };
        match reason {
            Some(reason) => Err(ParseError::new("leader election settings", timing, reason).into()),
            None => Ok(()),
        }
    }

    /// Starts campaigning in the background. Must be called within a Tokio runtime.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when the timings are inconsistent (renew deadline not shorter
    /// than the lease duration, retry period not shorter than the renew deadline, lease under
    /// one second) or the identity is empty.
    pub fn start(self) -> Result<Leadership, Error> {
        self.validate()?;
        let (leading_tx, leading_rx) = watch::channel(false);
        let (stop_tx, stop_rx) = watch::channel(false);
        let identity = self.identity.clone();
        let lease = format!("{}/{}", self.namespace, self.lease_name);
        let task = tokio::spawn(campaign(self, leading_tx, stop_rx));
        Ok(Leadership {
            identity,
            lease,
            leading: leading_rx,
            stop: stop_tx,
            task: Some(task),
        })
    }
}

/// A running election: whether this replica leads, and the way to run work only while it
/// does.
///
/// Dropping it stops campaigning and releases the lease in the background; [`shutdown`]
/// does the same and waits for the release.
///
/// [`shutdown`]: Leadership::shutdown
pub struct Leadership {
    identity: String,
    lease: String,
    leading: watch::Receiver<bool>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl fmt::Debug for Leadership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Leadership")
            .field("lease", &self.lease)
            .field("identity", &self.identity)
            .field("leading", &*self.leading.borrow())
            .finish_non_exhaustive()
    }
}

impl Leadership {
    /// Whether this replica leads now.
    pub fn is_leader(&self) -> bool {
        *self.leading.borrow()
    }

    /// A receiver of leadership changes (`true`: leading), cheap to clone and poll.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.leading.clone()
    }

    /// This replica's identity.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Waits until this replica leads; `false` when the election stopped first.
    pub async fn wait_until_leader(&self) -> bool {
        let mut rx = self.leading.clone();
        rx.wait_for(|l| *l).await.is_ok()
    }

    /// Waits until this replica leads, then runs `work` until it finishes (`Some(output)`)
    /// or leadership is lost or the election stops (`None`; `work` is dropped at its next
    /// await point).
    pub async fn run_while_leader<F: Future>(&self, work: F) -> Option<F::Output> {
        let mut rx = self.leading.clone();
        rx.wait_for(|l| *l).await.ok()?;
        tokio::select! {
            out = work => Some(out),
            _ = rx.wait_for(|l| !*l) => None,
        }
    }

    /// Stops campaigning; a leader steps down and clears the lease's holder so that another
    /// replica takes over at once. Returns once the lease was released (or releasing failed,
    /// which is logged: the lease then expires on its own).
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        // The task sees the signal, releases the lease and ends on its own.
        let _ = self.stop.send(true);
    }
}

/// The lease as last seen, and when (by the local clock) it last changed.
struct Observed {
    holder: Option<String>,
    renew_time: Option<MicroTime>,
    transitions: i32,
    changed_at: Instant,
}

enum Attempt {
    /// This replica holds the lease (acquired or renewed).
    Holding,
    /// Another replica holds a lease that has not expired.
    HeldBy(String),
}

fn lease_request<'a>(config: &'a LeaderElector, verb: &'a str) -> Request<'a> {
    Request {
        verb,
        resource: "leases",
        namespace: Some(&config.namespace),
        name: Some(&config.lease_name),
    }
}

fn now_micro() -> MicroTime {
    MicroTime(Timestamp::now())
}

async fn campaign(
    config: LeaderElector,
    leading: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let api: Api<Lease> = Api::namespaced(config.client.clone(), &config.namespace);
    let lease = format!("{}/{}", config.namespace, config.lease_name);
    let mut observed: Option<Observed> = None;
    let mut last_renew: Option<Instant> = None;
    let mut last_holder_logged: Option<String> = None;
    loop {
        if *stop.borrow() {
            break;
        }
        let is_leading = last_renew.is_some();
        // A leader must give up before the renew deadline: bound each attempt by what is
        // left of it, so that a hung request cannot keep it leading past the deadline.
        let budget = match last_renew {
            Some(at) => config.renew_deadline.saturating_sub(at.elapsed()),
            None => config.renew_deadline,
        };
        let attempt =
            tokio::time::timeout(budget, try_acquire_or_renew(&api, &config, &mut observed)).await;
        match attempt {
            Ok(Ok(Attempt::Holding)) => {
                if !is_leading {
                    tracing::info!(lease = %lease, identity = %config.identity, "acquired leadership");
                }
                last_renew = Some(Instant::now());
                leading.send_if_modified(|l| !std::mem::replace(l, true));
            }
            Ok(Ok(Attempt::HeldBy(holder))) => {
                if is_leading {
                    tracing::warn!(lease = %lease, identity = %config.identity, holder = %holder,
                        "lease {lease} is held by {holder}; stepping down");
                    last_renew = None;
                    leading.send_replace(false);
                } else if last_holder_logged.as_deref() != Some(holder.as_str()) {
                    tracing::debug!(lease = %lease, holder = %holder, "lease held by another replica");
                }
                last_holder_logged = Some(holder);
            }
            Ok(Err(e)) => {
                tracing::warn!(lease = %lease, identity = %config.identity, error = %e, "leader election attempt failed");
            }
            Err(_) => {
                tracing::warn!(lease = %lease, identity = %config.identity, "leader election attempt timed out");
            }
        }
        if last_renew.is_some_and(|at| at.elapsed() >= config.renew_deadline) {
            tracing::warn!(lease = %lease, identity = %config.identity,
                "could not renew lease {lease} within {:?}; stepping down", config.renew_deadline);
            last_renew = None;
            leading.send_replace(false);
        }
        let mut wait = config.retry_period;
        if let Some(at) = last_renew {
            // Wake in time to step down if the next renewal cannot happen before the deadline.
            wait = wait.min(config.renew_deadline.saturating_sub(at.elapsed()));
        } else {
            // Up to a fifth more, so that replicas started together do not retry in step.
            wait += full_jitter(wait / 5);
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => {}
        }
    }
    if last_renew.is_some() {
        leading.send_replace(false);
        match release(&api, &config).await {
            Ok(()) => {
                tracing::info!(lease = %lease, identity = %config.identity, "released leadership")
            }
            Err(e) => tracing::warn!(lease = %lease, identity = %config.identity, error = %e,
                "could not release lease {lease}; it expires on its own"),
        }
    }
    leading.send_replace(false);
}

async fn try_acquire_or_renew(
    api: &Api<Lease>,
    config: &LeaderElector,
    observed: &mut Option<Observed>,
) -> Result<Attempt, Error> {
    let lease_seconds = i32::try_from(config.lease_duration.as_secs()).unwrap_or(i32::MAX);
    let current = api
        .get_opt(&config.lease_name)
        .await
        .map_err(|e| from_kube(e, &lease_request(config, "get")))?;
    let Some(mut current) = current else {
        let now = now_micro();
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(config.lease_name.clone()),
                namespace: Some(config.namespace.clone()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(config.identity.clone()),
                lease_duration_seconds: Some(lease_seconds),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(created) => {
                *observed = Some(observe(&created, None));
                Ok(Attempt::Holding)
            }
            // Another replica created it first.
            Err(e) if is_conflict(&e) => Ok(Attempt::HeldBy("another replica".into())),
            Err(e) => Err(from_kube(e, &lease_request(config, "create"))),
        };
    };
    let spec = current.spec.clone().unwrap_or_default();
    let now_observed = observe(&current, observed.as_ref());
    let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
    let held_by_me = holder.as_deref() == Some(config.identity.as_str());
    if let Some(other) = holder.as_ref().filter(|_| !held_by_me) {
        let duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map(Duration::from_secs)
            .unwrap_or(config.lease_duration);
        if now_observed.changed_at.elapsed() < duration {
            let other = other.clone();
            *observed = Some(now_observed);
            return Ok(Attempt::HeldBy(other));
        }
    }
    let now = now_micro();
    let transitions = spec.lease_transitions.unwrap_or(0);
    let mut next = spec;
    next.holder_identity = Some(config.identity.clone());
    next.lease_duration_seconds = Some(lease_seconds);
    next.renew_time = Some(now.clone());
    if !held_by_me {
        next.acquire_time = Some(now);
        next.lease_transitions = Some(transitions.saturating_add(1));
    }
    current.spec = Some(next);
    // `current` carries the resourceVersion we read: the write fails if anyone wrote since.
    match api
        .replace(&config.lease_name, &PostParams::default(), &current)
        .await
    {
        Ok(updated) => {
            *observed = Some(observe(&updated, None));
            Ok(Attempt::Holding)
        }
        Err(e) if is_conflict(&e) => {
            *observed = Some(now_observed);
            Ok(Attempt::HeldBy(
                holder.unwrap_or_else(|| "another replica".into()),
            ))
        }
        Err(e) => Err(from_kube(e, &lease_request(config, "update"))),
    }
}

/// The lease as seen now: when its record differs from the previous observation, it changed
/// now; otherwise it changed when it was last seen to.
fn observe(lease: &Lease, previous: Option<&Observed>) -> Observed {
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.filter(|h| !h.is_empty());
    let transitions = spec.lease_transitions.unwrap_or(0);
    let changed_at = match previous {
        Some(p)
            if p.holder == holder
                && p.renew_time == spec.renew_time
                && p.transitions == transitions =>
        {
            p.changed_at
        }
        _ => Instant::now(),
    };
    Observed {
        holder,
        renew_time: spec.renew_time,
        transitions,
        changed_at,
    }
}

async fn release(api: &Api<Lease>, config: &LeaderElector) -> Result<(), Error> {
    let Some(mut current) = api
        .get_opt(&config.lease_name)
        .await
        .map_err(|e| from_kube(e, &lease_request(config, "get")))?
    else {
        return Ok(());
    };
    let mut spec = current.spec.clone().unwrap_or_default();
    if spec.holder_identity.as_deref() != Some(config.identity.as_str()) {
        return Ok(());
    }
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(now_micro());
    current.spec = Some(spec);
    match api
        .replace(&config.lease_name, &PostParams::default(), &current)
        .await
    {
        Ok(_) => Ok(()),
        // Someone else wrote the lease meanwhile: it is not ours to clear any more.
        Err(e) if is_conflict(&e) => Ok(()),
        Err(e) => Err(from_kube(e, &lease_request(config, "update"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: Option<&str>, renew_secs: i64, transitions: i32) -> Lease {
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: holder.map(Into::into),
                renew_time: Some(MicroTime(Timestamp::from_second(renew_secs).unwrap())),
                lease_transitions: Some(transitions),
                ..Default::default()
            }),
        }
    }

    #[tokio::test]
    async fn observation_time_only_moves_when_the_record_changes() {
        let first = observe(&lease(Some("a"), 100, 1), None);
        tokio::time::sleep(Duration::from_millis(5)).await;
        let same = observe(&lease(Some("a"), 100, 1), Some(&first));
        assert_eq!(same.changed_at, first.changed_at);
        let renewed = observe(&lease(Some("a"), 101, 1), Some(&same));
        assert!(renewed.changed_at > first.changed_at);
        let empty = observe(&lease(Some(""), 101, 1), None);
        assert_eq!(empty.holder, None);
    }

    #[tokio::test]
    async fn inconsistent_timings_are_refused() {
        let client = keel_testsupport::kube::unreachable_client();
        let e = LeaderElector::new(client.clone(), "ns", "lease", "me")
            .with_lease_duration(Duration::from_secs(5))
            .with_renew_deadline(Duration::from_secs(5))
            .start()
            .unwrap_err();
        assert!(
            e.to_string().contains("renew deadline must be shorter"),
            "{e}"
        );
        let e = LeaderElector::new(client.clone(), "ns", "lease", "me")
            .with_retry_period(Duration::from_secs(10))
            .start()
            .unwrap_err();
        assert!(e.to_string().contains("retry period"), "{e}");
        let e = LeaderElector::new(client, "ns", "lease", "")
            .start()
            .unwrap_err();
        assert!(e.to_string().contains("identity is empty"), "{e}");
    }
}

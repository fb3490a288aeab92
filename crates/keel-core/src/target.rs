//! The `Target` trait: where images run, and how updates are applied there.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

use crate::error::Result;
use crate::policy::Policy;
use crate::reference::{ImageRef, Platform};
use crate::trigger::Schedule;

/// How updates of a tracked image are triggered.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Trigger {
    /// Only when a webhook reports a push (Keel's default).
    #[default]
    Webhook,
    /// By polling the registry on a schedule (`@every 5m`, a cron expression).
    Poll {
        /// The schedule; `None`: the poller's default schedule (Keel's `@every 1m`, or what
        /// the application configures, as Keel's `POLL_DEFAULTSCHEDULE`).
        schedule: Option<Schedule>,
    },
}

/// As listings show it: `webhook`, `poll` (on the poller's default schedule) or
/// `poll <schedule>`.
///
/// ```
/// use keel_core::target::Trigger;
/// assert_eq!(Trigger::Webhook.to_string(), "webhook");
/// assert_eq!(Trigger::Poll { schedule: None }.to_string(), "poll");
/// let every = Trigger::Poll { schedule: Some("@every 5m".parse().unwrap()) };
/// assert_eq!(every.to_string(), "poll @every 5m");
/// ```
impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trigger::Webhook => f.write_str("webhook"),
            Trigger::Poll { schedule: None } => f.write_str("poll"),
            Trigger::Poll {
                schedule: Some(schedule),
            } => write!(f, "poll {schedule}"),
        }
    }
}

/// One image a target deploys, and how it is to be kept up to date.
#[derive(Clone, derive_more::Debug)]
#[non_exhaustive]
pub struct TrackedImage {
    /// Identifies the image within its target, stable across discoveries, e.g.
    /// `deployment/default/web/app` or `apps/web.yaml#spec.containers[0].image`.
    pub id: String,
    /// The image as it runs now.
    #[debug("{:?}", image.to_string())]
    pub image: ImageRef,
    /// Which tag it should move to.
    pub policy: Arc<dyn Policy>,
    /// When to look for updates.
    pub trigger: Trigger,
    /// How many approvals an update needs before it is applied (0: none).
    pub approvals: u32,
    /// A release-notes link to pass on to notifications.
    #[debug(skip)]
    pub release_notes: Option<String>,
    /// How long an approval request for this image stays open (`None`: the approvals
    /// manager's default, 24 hours).
    pub approval_deadline: Option<Duration>,
    /// Extra notification channels for this image's events (Keel's `keel.sh/notify`).
    pub notify: Vec<String>,
    /// Updates of this image are only reported (planned, notified and previewed), never
    /// applied: Watchtower's monitor-only containers.
    pub report_only: bool,
    /// Tracking is paused (`keel.sh/paused` names the container): the image is listed, but
    /// no pass looks for its updates until it is resumed.
    pub paused: bool,
    /// The platforms the image must run on (Argo CD Image Updater's `platforms`): a tag is a
    /// candidate only when its image is built for one of them. Empty: any platform.
    pub platforms: Vec<Platform>,
}

impl TrackedImage {
    /// Tracks `image` under `id` with `policy`, webhook-triggered, without approvals.
    pub fn new(id: impl Into<String>, image: ImageRef, policy: Arc<dyn Policy>) -> Self {
        TrackedImage {
            id: id.into(),
            image,
            policy,
            trigger: Trigger::default(),
            approvals: 0,
            release_notes: None,
            approval_deadline: None,
            notify: Vec::new(),
            report_only: false,
            paused: false,
            platforms: Vec::new(),
        }
    }

    /// The same, moving only to tags whose image is built for one of `platforms` (see
    /// [`TrackedImage::platforms`]).
    pub fn with_platforms(self, platforms: Vec<Platform>) -> Self {
        TrackedImage { platforms, ..self }
    }

    /// The same, paused or not: a paused image is discovered but never checked or updated.
    pub fn with_paused(self, paused: bool) -> Self {
        TrackedImage { paused, ..self }
    }

    /// The same, with updates only reported, never applied.
    pub fn with_report_only(self, report_only: bool) -> Self {
        TrackedImage {
            report_only,
            ..self
        }
    }

    /// The same, with approval requests open for `deadline`.
    pub fn with_approval_deadline(self, deadline: Duration) -> Self {
        TrackedImage {
            approval_deadline: Some(deadline),
            ..self
        }
    }

    /// The same, with extra notification channels.
    pub fn with_notify(self, channels: Vec<String>) -> Self {
        TrackedImage {
            notify: channels,
            ..self
        }
    }

    /// The same, with a trigger.
    pub fn with_trigger(self, trigger: Trigger) -> Self {
        TrackedImage { trigger, ..self }
    }

    /// The same, needing `approvals` approvals.
    pub fn with_approvals(self, approvals: u32) -> Self {
        TrackedImage { approvals, ..self }
    }

    /// The same, with a release-notes link.
    pub fn with_release_notes(self, url: impl Into<String>) -> Self {
        TrackedImage {
            release_notes: Some(url.into()),
            ..self
        }
    }
}

/// One update to apply: in `target`, move tracked image `id` from `current` to `new`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UpdatePlan {
    /// The target's name.
    pub target: String,
    /// The tracked image's id within the target.
    pub id: String,
    /// What runs now; a target refuses the plan ([`Error::Conflict`](crate::Error::Conflict)) when that changed.
    pub current: ImageRef,
    /// What is to run.
    pub new: ImageRef,
}

impl fmt::Display for UpdatePlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {} -> {}",
            self.target, self.id, self.current, self.new
        )
    }
}

impl UpdatePlan {
    /// Whether a workload that runs `running` already runs this plan's new image, so that
    /// applying the plan is [`ApplyOutcome::AlreadyCurrent`]: the same repository and tag,
    /// and, when the new image names a digest, that digest known to run. A digest the target
    /// does not know (a tag-only value, no record of the digest) is not taken to be the
    /// planned one: a plan that moves a tag to a new digest (a `latest` that moved) would
    /// otherwise never be applied.
    ///
    /// Every target decides "already current" by this one rule.
    pub fn already_runs(&self, running: &ImageRef) -> bool {
        runs(running, &self.new)
    }

    /// Whether `running` is still what the plan was made from ([`UpdatePlan::current`]), so
    /// that the plan may be applied; else the target refuses it with
    /// [`Error::Conflict`](crate::Error::Conflict). A plan that follows digests (its new image
    /// names one) must know the digest that runs where the target knows one: the digest that
    /// runs is compared with `current` to the letter. Without digests on both sides, the
    /// repository and tag decide (and `current`'s digest, if it names one, must run).
    pub fn still_current(&self, running: &ImageRef) -> bool {
        if self.new.digest().is_some() && running.digest().is_some() {
            *running == self.current
        } else {
            runs(running, &self.current)
        }
    }
}

/// Whether what runs (`running`) runs `wanted`: the same repository and tag, and the same
/// digest when `wanted` names one.
fn runs(running: &ImageRef, wanted: &ImageRef) -> bool {
    running.without_digest() == wanted.without_digest()
        && (wanted.digest().is_none() || wanted.digest() == running.digest())
}

/// What applying one plan did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ApplyOutcome {
    /// The target changed.
    Applied,
    /// The target already ran the new image; nothing changed.
    AlreadyCurrent,
}

/// Where images run: a Kubernetes cluster, manifests in Git, or the in-memory target of the
/// tests.
///
/// Contract:
/// - `discover` reports every tracked image with a stable id.
/// - `apply` is idempotent: applying a plan whose new image already runs returns
///   [`ApplyOutcome::AlreadyCurrent`] and changes nothing. A plan whose `current` no longer
///   runs is [`Error::Conflict`](crate::Error::Conflict); an unknown id is [`Error::NotFound`](crate::Error::NotFound). A failed apply
///   leaves nothing half-done.
/// - `apply_all` may apply several plans as one change (one commit); its default applies
///   them one by one. It returns one result per plan, in order.
/// - `preview` shows what `apply_all` would change (a diff), changing nothing.
///
/// The trait is object-safe; the pipeline holds `Arc<dyn Target>`s.
#[async_trait]
pub trait Target: Send + Sync + fmt::Debug {
    /// The target's name, e.g. `cluster prod` or `git ssh://host/repo.git#main`.
    fn name(&self) -> &str;

    /// The images this target deploys and how each is to be updated.
    async fn discover(&self) -> Result<Vec<TrackedImage>>;

    /// Applies one plan.
    async fn apply(&self, plan: &UpdatePlan) -> Result<ApplyOutcome>;

    /// Applies several plans; one result per plan, in order.
    async fn apply_all(&self, plans: &[UpdatePlan]) -> Vec<Result<ApplyOutcome>> {
        let mut results = Vec::with_capacity(plans.len());
        for plan in plans {
            results.push(self.apply(plan).await);
        }
        results
    }

    /// What applying `plans` would change, without changing anything.
    async fn preview(&self, plans: &[UpdatePlan]) -> Result<String> {
        Ok(plans.iter().map(|p| format!("{p}\n")).collect())
    }

    /// The `keel.sh/*` settings written on the object that holds tracked image `id` (a
    /// Kubernetes workload's annotations), for a dashboard to show and edit. Default: the
    /// target keeps no editable settings ([`Error::NotSupported`](crate::Error::NotSupported)).
    async fn settings(&self, id: &str) -> Result<BTreeMap<String, String>> {
        let _ = id;
        Err(crate::Error::not_supported("reading settings", self.name()))
    }

    /// Changes the settings of the object that holds tracked image `id`: each key of `change`
    /// to its value, or removed when it is `None`. The result is checked with
    /// [`keel_keys::changed_settings`](crate::keel_keys::changed_settings) before anything is
    /// written, so a bad value changes nothing; a concurrent change of the object is
    /// [`Error::Conflict`](crate::Error::Conflict). Default:
    /// [`Error::NotSupported`](crate::Error::NotSupported).
    async fn change_settings(&self, id: &str, change: &SettingsChange) -> Result<()> {
        let _ = (id, change);
        Err(crate::Error::not_supported(
            "changing settings",
            self.name(),
        ))
    }
}

/// A change to `keel.sh/*` settings: each key to a new value, or to `None` to remove it.
pub type SettingsChange = BTreeMap<String, Option<String>>;

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const NEW: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn image(text: &str) -> ImageRef {
        ImageRef::parse(text).unwrap()
    }

    fn plan(current: &str, new: &str) -> UpdatePlan {
        UpdatePlan {
            target: "t".into(),
            id: "id".into(),
            current: image(current),
            new: image(new),
        }
    }

    /// Asserts `question` of each case's plan and running image: (plan, what runs, expected).
    fn check(question: fn(&UpdatePlan, &ImageRef) -> bool, cases: &[(&UpdatePlan, String, bool)]) {
        for (plan, running, expected) in cases {
            assert_eq!(
                question(plan, &image(running)),
                *expected,
                "{plan} with {running} running"
            );
        }
    }

    #[test]
    fn a_planned_digest_runs_only_where_that_digest_is_known_to_run() {
        let tag_only = plan("nginx:1.2", "nginx:1.3");
        let by_digest = plan("nginx:latest", &format!("nginx:latest@{NEW}"));
        // (plan, what runs, already runs)
        let cases = [
            (&tag_only, "nginx:1.3".to_owned(), true),
            (&tag_only, format!("nginx:1.3@{OLD}"), true),
            (&tag_only, "nginx:1.2".to_owned(), false),
            (&by_digest, format!("nginx:latest@{NEW}"), true),
            (&by_digest, format!("nginx:latest@{OLD}"), false),
            // The digest that runs is not known: the plan is not done yet.
            (&by_digest, "nginx:latest".to_owned(), false),
        ];
        check(UpdatePlan::already_runs, &cases);
    }

    #[test]
    fn a_digest_plan_is_still_current_only_for_the_digest_it_was_made_from() {
        let from_tag = plan("nginx:latest", &format!("nginx:latest@{NEW}"));
        let from_digest = plan(
            &format!("nginx:latest@{OLD}"),
            &format!("nginx:latest@{NEW}"),
        );
        let tag_only = plan("nginx:1.2", "nginx:1.3");
        // (plan, what runs, still current)
        let cases = [
            (&from_tag, "nginx:latest".to_owned(), true),
            (&from_tag, format!("nginx:latest@{OLD}"), false),
            (&from_digest, format!("nginx:latest@{OLD}"), true),
            (&from_digest, "nginx:latest".to_owned(), false),
            (&tag_only, "nginx:1.2".to_owned(), true),
            (&tag_only, format!("nginx:1.2@{OLD}"), true),
            (&tag_only, "nginx:1.1".to_owned(), false),
        ];
        check(UpdatePlan::still_current, &cases);
    }
}

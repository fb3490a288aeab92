//! The tracked-images page (`/ui/`): its rows, the [`TrackedImages`] that provides them, and
//! their filtering and sorting.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use keel_core::target::SettingsChange;
use keel_core::{Error, Target};
use serde::{Deserialize, Serialize};

use super::{Dash, ImageDetail, Viewer, pages};

/// One tracked image as the tracked-images page shows it, provided by the application through
/// [`TrackedImages`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackedRow {
    /// The target's name (a cluster, a Git repository, a Docker host).
    pub target: String,
    /// The kind of the tracked object, e.g. `deployment` or `git`.
    pub kind: String,
    /// The Kubernetes namespace, or the repository for Git targets.
    pub namespace_or_repo: String,
    /// The tracked image's id, as in [`keel_core::UpdatePlan::id`].
    pub id: String,
    /// The container (or file) the image is set in.
    pub container: String,
    /// The current image reference.
    pub image: String,
    /// The update policy, e.g. `minor`.
    pub policy: String,
    /// The trigger, e.g. `poll` with its schedule.
    pub trigger: String,
    /// The image an update would move to, if one is available.
    pub update: Option<String>,
    /// When the image was last checked for updates.
    pub last_checked: Option<DateTime<Utc>>,
    /// The last error met while checking or updating the image.
    pub last_error: Option<String>,
    /// Tracking is paused: no pass checks the image until it is resumed.
    #[serde(default)]
    pub paused: bool,
}

impl TrackedRow {
    /// The row's state as the page counts it: an error wins over a pause, a pause over an
    /// available update.
    pub fn state(&self) -> TrackedState {
        if self.last_error.is_some() {
            TrackedState::Error
        } else if self.paused {
            TrackedState::Paused
        } else if self.update.is_some() {
            TrackedState::UpdateAvailable
        } else {
            TrackedState::UpToDate
        }
    }
}

/// Where a tracked image stands, as counted on the tracked-images page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TrackedState {
    /// No update available and no error.
    UpToDate,
    /// A newer image is available.
    UpdateAvailable,
    /// The last check or update failed.
    Error,
    /// Tracking is paused.
    Paused,
}

impl TrackedState {
    /// Every state, in the order the page counts them.
    pub const ALL: [TrackedState; 4] = [
        TrackedState::UpToDate,
        TrackedState::UpdateAvailable,
        TrackedState::Paused,
        TrackedState::Error,
    ];
}

impl TrackedState {
    /// The state's label on the page.
    pub fn label(self) -> &'static str {
        match self {
            TrackedState::UpToDate => "up to date",
            TrackedState::UpdateAvailable => "update available",
            TrackedState::Error => "error",
            TrackedState::Paused => "paused",
        }
    }
}

/// What the application tracks, for the tracked-images page (`/ui/`) and the one-image page
/// (`/ui/image`).
///
/// Only [`snapshot`](Self::snapshot) is required; without the others the image page shows
/// the row alone and offers no settings. Images that come from [`Target`]s name them in
/// [`targets`](Self::targets), and their settings are read and changed through the target.
/// Object-safe: the dashboard holds an `Arc<dyn TrackedImages>`.
#[async_trait]
pub trait TrackedImages: Send + Sync {
    /// Every tracked image of every target, as it stands now.
    async fn snapshot(&self) -> Vec<TrackedRow>;

    /// Image `id` of `target` in full, for its page; `None` when no target tracks it.
    /// Default: its row of the [`snapshot`](Self::snapshot), nothing more.
    async fn image(&self, target: &str, id: &str) -> Option<ImageDetail> {
        let row = self
            .snapshot()
            .await
            .into_iter()
            .find(|r| r.target == target && r.id == id)?;
        Some(ImageDetail::of(row))
    }

    /// The targets the images come from, when they come from [`Target`]s. Default: `None`.
    fn targets(&self) -> Option<&[Arc<dyn Target>]> {
        None
    }

    /// The `keel.sh/*` settings of the object that holds image `id` of `target` (see
    /// [`Target::settings`]). Default: those of the target of [`targets`](Self::targets)
    /// named `target` ([`Error::NotFound`] when none is), or none kept
    /// ([`Error::NotSupported`]) without targets.
    async fn settings(&self, target: &str, id: &str) -> Result<BTreeMap<String, String>, Error> {
        target_named(self.targets(), target, "reading settings")?
            .settings(id)
            .await
    }

    /// Changes them (see [`Target::change_settings`]). Default: through the target of
    /// [`targets`](Self::targets) named `target`, as for [`settings`](Self::settings).
    async fn change_settings(
        &self,
        target: &str,
        id: &str,
        change: &SettingsChange,
    ) -> Result<(), Error> {
        target_named(self.targets(), target, "changing settings")?
            .change_settings(id, change)
            .await
    }
}

/// The target of `targets` named `name`, for `operation`: [`Error::NotSupported`] without
/// targets, [`Error::NotFound`] when none has the name.
fn target_named<'a>(
    targets: Option<&'a [Arc<dyn Target>]>,
    name: &str,
    operation: &'static str,
) -> Result<&'a Arc<dyn Target>, Error> {
    targets
        .ok_or_else(|| Error::not_supported(operation, name))?
        .iter()
        .find(|t| t.name() == name)
        .ok_or_else(|| Error::not_found(format!("target {name}")))
}

/// The query of the tracked-images page.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct TrackedQuery {
    pub(crate) ns: String,
    pub(crate) kind: String,
    pub(crate) policy: String,
    pub(crate) update: String,
    pub(crate) sort: String,
    pub(crate) desc: String,
}

impl TrackedQuery {
    /// The filters, as the query pairs of a link that keeps them (sorted anew).
    pub(crate) fn filters(&self) -> [(&'static str, &str); 4] {
        [
            ("ns", &self.ns),
            ("kind", &self.kind),
            ("policy", &self.policy),
            ("update", &self.update),
        ]
    }
}

/// The columns the tracked-images page sorts by, as named in `?sort=`.
pub(crate) const TRACKED_COLUMNS: [(&str, &str); 9] = [
    ("target", "Target"),
    ("kind", "Kind"),
    ("ns", "Namespace / repository"),
    ("container", "Container"),
    ("image", "Image"),
    ("policy", "Policy"),
    ("trigger", "Trigger"),
    ("update", "Update"),
    ("checked", "Last checked"),
];

fn sort_rows(rows: &mut [TrackedRow], column: &str, desc: bool) {
    rows.sort_by(|a, b| {
        let o = match column {
            "kind" => a.kind.cmp(&b.kind),
            "ns" => a.namespace_or_repo.cmp(&b.namespace_or_repo),
            "container" => a.container.cmp(&b.container),
            "image" => a.image.cmp(&b.image),
            "policy" => a.policy.cmp(&b.policy),
            "trigger" => a.trigger.cmp(&b.trigger),
            "update" => a.update.cmp(&b.update),
            "checked" => a.last_checked.cmp(&b.last_checked),
            _ => a.target.cmp(&b.target),
        }
        .then_with(|| a.id.cmp(&b.id));
        if desc { o.reverse() } else { o }
    });
}

pub(super) async fn tracked_page(
    State(dash): State<Dash>,
    axum::Extension(viewer): axum::Extension<Viewer>,
    Query(q): Query<TrackedQuery>,
) -> Response {
    let Some(provider) = &dash.config().tracked else {
        return Html(pages::tracked_page(&viewer, None, &q).into_string()).into_response();
    };
    let all = provider.snapshot().await;
    let mut counts = BTreeMap::new();
    for r in &all {
        *counts.entry(r.state().label()).or_insert(0usize) += 1;
    }
    let facets = pages::Facets::of(&all);
    let mut rows: Vec<TrackedRow> = all
        .into_iter()
        .filter(|r| q.ns.is_empty() || r.namespace_or_repo == q.ns)
        .filter(|r| q.kind.is_empty() || r.kind == q.kind)
        .filter(|r| q.policy.is_empty() || r.policy == q.policy)
        .filter(|r| match q.update.as_str() {
            "yes" => r.update.is_some(),
            "no" => r.update.is_none(),
            _ => true,
        })
        .collect();
    sort_rows(&mut rows, &q.sort, q.desc == "1");
    let view = pages::TrackedView {
        rows: &rows,
        counts: &counts,
        facets: &facets,
    };
    Html(pages::tracked_page(&viewer, Some(view), &q).into_string()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn _obj_safe(_: Arc<dyn TrackedImages>) {}

    /// Images that do not come from targets: only the required method.
    struct RowsOnly;

    #[async_trait]
    impl TrackedImages for RowsOnly {
        async fn snapshot(&self) -> Vec<TrackedRow> {
            Vec::new()
        }
    }

    /// Images that come from targets, none of them named `prod`.
    struct NoTargetNamedProd;

    #[async_trait]
    impl TrackedImages for NoTargetNamedProd {
        async fn snapshot(&self) -> Vec<TrackedRow> {
            Vec::new()
        }

        fn targets(&self) -> Option<&[Arc<dyn Target>]> {
            Some(&[])
        }
    }

    #[tokio::test]
    async fn settings_without_targets_are_not_supported_and_of_an_unknown_target_not_found() {
        let change = SettingsChange::new();
        let without_targets = [
            (
                "reading settings",
                RowsOnly.settings("prod", "web").await.map(drop),
            ),
            (
                "changing settings",
                RowsOnly.change_settings("prod", "web", &change).await,
            ),
        ];
        for (expected, result) in without_targets {
            match result {
                Err(Error::NotSupported { operation, .. }) => assert_eq!(operation, expected),
                other => panic!("{expected} without targets: {other:?}"),
            }
        }
        let unknown_target = [
            NoTargetNamedProd.settings("prod", "web").await.map(drop),
            NoTargetNamedProd
                .change_settings("prod", "web", &change)
                .await,
        ];
        for result in unknown_target {
            match result {
                Err(Error::NotFound { what }) => assert_eq!(what, "target prod"),
                other => panic!("no target named prod: {other:?}"),
            }
        }
    }
}

//! The one-image page (`/ui/image`), and the forms that change an image's settings and pause
//! or resume it.

use std::collections::BTreeMap;

use axum::Extension;
use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse, Response};
use chrono::Utc;
use keel_core::Error;
use keel_core::approval::{AuditAction, AuditEntry, AuditQuery};
use keel_core::keel_keys::{
    APPROVAL_DEADLINE, APPROVALS, PAUSED, POLICY, POLL_SCHEDULE, TRIGGER, comma_list,
};
use keel_core::policy::Explanation;
use keel_core::target::SettingsChange;
use maud::{Markup, html};
use serde::Deserialize;

use super::pages::{column_heads, enc, layout, query, state_badge, time};
use super::session::{CsrfField, Posted, role_refusal};
use super::{Dash, TrackedRow, Viewer, core_error, forbidden, see_other};

/// Rejected candidates shown on the page; the rest are counted.
pub const SHOWN_REJECTIONS: usize = 300;

/// Entries of an image's history shown on its page.
pub const HISTORY_ENTRIES: usize = 50;

/// One image in full, for its page (`/ui/image`): its row, its settings, and what the policy
/// makes of the repository's tags right now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImageDetail {
    /// The image as the tracked-images page lists it.
    pub row: TrackedRow,
    /// The `keel.sh/*` settings of the object that holds it, when the target keeps editable
    /// ones.
    pub settings: Option<BTreeMap<String, String>>,
    /// Why the policy chose the tag it chose and rejected each other one, when the image was
    /// checked.
    pub explanation: Option<Explanation>,
    /// How many tags the registry listed.
    pub tags_listed: usize,
    /// The listing was cut short, so nothing was decided.
    pub truncated: bool,
    /// What the next update would change: a Git target's diff, a workload's new image.
    pub next_change: Option<String>,
    /// Why the image could not be checked.
    pub check_error: Option<String>,
}

impl ImageDetail {
    /// A detail holding only `row`.
    pub fn of(row: TrackedRow) -> Self {
        ImageDetail {
            row,
            ..ImageDetail::default()
        }
    }
}

/// Which image a page or form is about.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ImageQuery {
    target: String,
    id: String,
}

impl ImageQuery {
    fn page(&self) -> String {
        format!(
            "/ui/image{}",
            query(&[("target", &self.target), ("id", &self.id)])
        )
    }
}

pub(crate) async fn image_page(
    State(dash): State<Dash>,
    Extension(viewer): Extension<Viewer>,
    Query(q): Query<ImageQuery>,
) -> Response {
    let Some(provider) = &dash.config().tracked else {
        return not_tracked(&viewer, &q);
    };
    let Some(detail) = provider.image(&q.target, &q.id).await else {
        return not_tracked(&viewer, &q);
    };
    let history = dash
        .config()
        .approvals
        .audit_log(&AuditQuery {
            target: Some(q.target.clone()),
            ..AuditQuery::default()
        })
        .await
        .map(|mut entries| {
            entries.retain(|e| e.image_id == q.id);
            entries.sort_by_key(|e| std::cmp::Reverse(e.seq));
            entries.truncate(HISTORY_ENTRIES);
            entries
        });
    match history {
        Ok(history) => Html(page(&viewer, &detail, &history).into_string()).into_response(),
        Err(e) => core_error(&viewer, "Image history", &e),
    }
}

fn not_tracked(viewer: &Viewer, q: &ImageQuery) -> Response {
    let message = format!("No target named {:?} tracks an image {:?}.", q.target, q.id);
    (
        axum::http::StatusCode::NOT_FOUND,
        Html(super::pages::message_page(Some(viewer), "Image not found", &message).into_string()),
    )
        .into_response()
}

/// What every form about one image posts: the CSRF token and the image.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ImagePost {
    csrf: String,
    target: String,
    id: String,
}

impl ImagePost {
    fn image(&self) -> ImageQuery {
        ImageQuery {
            target: self.target.clone(),
            id: self.id.clone(),
        }
    }
}

/// The settings form: each field is one key; an empty field clears it.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct SettingsForm {
    #[serde(flatten)]
    post: ImagePost,
    policy: String,
    trigger: String,
    schedule: String,
    approvals: String,
    deadline: String,
}

/// The form's fields and the keys they set.
fn form_keys(form: &SettingsForm) -> [(&'static str, &str); 5] {
    [
        (POLICY, &form.policy),
        (TRIGGER, &form.trigger),
        (POLL_SCHEDULE, &form.schedule),
        (APPROVALS, &form.approvals),
        (APPROVAL_DEADLINE, &form.deadline),
    ]
}

/// The keys whose value the form changes, against `current`.
fn settings_change(current: &BTreeMap<String, String>, form: &SettingsForm) -> SettingsChange {
    form_keys(form)
        .into_iter()
        .map(|(key, value)| (key, value.trim()))
        .filter(|(key, value)| current.get(*key).map_or("", String::as_str) != *value)
        .map(|(key, value)| {
            (
                key.to_owned(),
                (!value.is_empty()).then(|| value.to_owned()),
            )
        })
        .collect()
}

/// `policy: patch → minor; approvals: (unset) → 1`.
fn describe(current: &BTreeMap<String, String>, change: &SettingsChange) -> String {
    change
        .iter()
        .map(|(key, value)| {
            let short = key.strip_prefix("keel.sh/").unwrap_or(key);
            let was = current.get(key).map_or("(unset)", String::as_str);
            let now = value.as_deref().unwrap_or("(unset)");
            format!("{short}: {was} → {now}")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

impl CsrfField for SettingsForm {
    fn csrf(&self) -> &str {
        &self.post.csrf
    }
}

pub(crate) async fn change_settings(
    State(dash): State<Dash>,
    Posted { viewer, form }: Posted<SettingsForm>,
) -> Result<Response, Response> {
    let (q, current) = admitted(&dash, &viewer, &form.post).await?;
    let change = settings_change(&current, &form);
    if change.is_empty() {
        return Ok(see_other(&q.page()));
    }
    let message = describe(&current, &change);
    let action = AuditAction::SettingsChanged;
    Ok(apply_change(&dash, &viewer, &q, &change, action, message).await)
}

/// The pause form: `action` is `pause` or `resume`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct PauseForm {
    #[serde(flatten)]
    post: ImagePost,
    action: String,
}

impl CsrfField for PauseForm {
    fn csrf(&self) -> &str {
        &self.post.csrf
    }
}

/// The container an image id names last (`deployment/ns/web/app` → `app`; an init
/// container's `init:migrate` → `migrate`).
fn container_of(id: &str) -> &str {
    let last = id.rsplit('/').next().unwrap_or(id);
    last.strip_prefix("init:").unwrap_or(last)
}

/// The paused list `current` becomes when `container` is paused or resumed; `None` when
/// nothing stays paused. Resuming one container of a `*` resumes all.
fn paused_after(current: Option<&str>, container: &str, pause: bool) -> Option<String> {
    let mut names = current.map(comma_list).unwrap_or_default();
    if pause {
        if !names.iter().any(|n| n == container || n == "*") {
            names.push(container.to_owned());
        }
    } else {
        names.retain(|n| n != container && n != "*");
    }
    (!names.is_empty()).then(|| names.join(","))
}

pub(crate) async fn pause(
    State(dash): State<Dash>,
    Posted { viewer, form }: Posted<PauseForm>,
) -> Result<Response, Response> {
    let (q, current) = admitted(&dash, &viewer, &form.post).await?;
    let (pause, action) = match form.action.as_str() {
        "pause" => (true, AuditAction::Paused),
        "resume" => (false, AuditAction::Resumed),
        other => {
            let reason = format!("Unknown action {other:?}: expected `pause` or `resume`.");
            return Err(forbidden(Some(&viewer), &reason));
        }
    };
    let container = container_of(&q.id);
    let next = paused_after(current.get(PAUSED).map(String::as_str), container, pause);
    let change = SettingsChange::from([(PAUSED.to_owned(), next)]);
    let message = format!(
        "{} tracking of container {container}",
        if pause { "paused" } else { "resumed" }
    );
    Ok(apply_change(&dash, &viewer, &q, &change, action, message).await)
}

/// The image a [`Posted`] form is about, with its settings, when the viewer may change them
/// (an admin), else the page that says why not.
async fn admitted(
    dash: &Dash,
    viewer: &Viewer,
    post: &ImagePost,
) -> Result<(ImageQuery, BTreeMap<String, String>), Response> {
    let may_change = viewer.may_delete();
    let needs = "changing an image's settings needs admin";
    if let Some(refused) = role_refusal(viewer, may_change, needs) {
        return Err(refused);
    }
    let q = post.image();
    match settings_of(dash, &q).await {
        Ok(current) => Ok((q, current)),
        Err(e) => Err(core_error(viewer, "Could not read the settings", &e)),
    }
}

async fn settings_of(dash: &Dash, q: &ImageQuery) -> Result<BTreeMap<String, String>, Error> {
    match &dash.config().tracked {
        Some(provider) => provider.settings(&q.target, &q.id).await,
        None => Err(Error::not_found(format!("image {} of {}", q.id, q.target))),
    }
}

/// Writes `change` through the provider and records it in the audit log as `viewer`'s.
async fn apply_change(
    dash: &Dash,
    viewer: &Viewer,
    q: &ImageQuery,
    change: &SettingsChange,
    action: AuditAction,
    message: String,
) -> Response {
    let Some(provider) = &dash.config().tracked else {
        return core_error(
            viewer,
            "Could not change the settings",
            &Error::not_found(format!("image {} of {}", q.id, q.target)),
        );
    };
    if let Err(e) = provider.change_settings(&q.target, &q.id, change).await {
        return core_error(viewer, "Could not change the settings", &e);
    }
    // The row alone: the image page's registry check is not needed to name the image.
    let image = provider
        .snapshot()
        .await
        .into_iter()
        .find(|r| r.target == q.target && r.id == q.id)
        .map(|r| r.image)
        .unwrap_or_default();
    let entry = AuditEntry {
        seq: 0,
        time: Utc::now(),
        action,
        request: None,
        actor: Some(viewer.name.clone()),
        target: q.target.clone(),
        image_id: q.id.clone(),
        image,
        message,
    };
    if let Err(e) = dash.config().approvals.store().append_audit(entry).await {
        // The change is made; say that its record is missing rather than hide it.
        tracing::error!(error = %e, id = %q.id, "settings changed but not recorded in the audit log");
        return core_error(viewer, "The change was made but not recorded", &e);
    }
    see_other(&q.page())
}

// --- the page ----------------------------------------------------------------------------------

fn setting<'a>(settings: &'a BTreeMap<String, String>, key: &str) -> &'a str {
    settings.get(key).map_or("", String::as_str)
}

fn settings_card(viewer: &Viewer, detail: &ImageDetail) -> Markup {
    let row = &detail.row;
    html! {
        section.card aria-labelledby="settings-title" {
            h2 id="settings-title" { "Settings" }
            @match &detail.settings {
                None => p.muted { "This target keeps no settings that can be changed here." },
                Some(settings) if viewer.may_delete() => {
                    form.settings method="post" action="/ui/image/settings" {
                        input type="hidden" name="csrf" value=(viewer.csrf);
                        input type="hidden" name="target" value=(row.target);
                        input type="hidden" name="id" value=(row.id);
                        div.field {
                            label for="policy" { "Policy" }
                            input id="policy" name="policy" type="text" value=(setting(settings, POLICY)) placeholder="e.g. minor, semver:^1.2, glob:v*";
                        }
                        div.field {
                            label for="trigger" { "Trigger" }
                            select id="trigger" name="trigger" {
                                @let trigger = setting(settings, TRIGGER);
                                option value="" selected[trigger.is_empty()] { "webhook (default)" }
                                option value="poll" selected[trigger == "poll"] { "poll" }
                                @if !trigger.is_empty() && trigger != "poll" {
                                    option value=(trigger) selected { (trigger) }
                                }
                            }
                        }
                        div.field {
                            label for="schedule" { "Poll schedule" }
                            input id="schedule" name="schedule" type="text" value=(setting(settings, POLL_SCHEDULE)) placeholder="e.g. @every 5m";
                        }
                        div.field {
                            label for="approvals" { "Approvals needed" }
                            input id="approvals" name="approvals" type="text" inputmode="numeric" value=(setting(settings, APPROVALS)) placeholder="0";
                        }
                        div.field {
                            label for="deadline" { "Approval deadline (hours)" }
                            input id="deadline" name="deadline" type="text" inputmode="numeric" value=(setting(settings, APPROVAL_DEADLINE)) placeholder="24";
                        }
                        div.field { button type="submit" { "Save settings" } }
                    }
                    p.muted { "An empty field clears its setting. The values are written as keel.sh annotations of the workload." }
                },
                Some(settings) => {
                    dl.settings {
                        @for (key, label) in [(POLICY, "Policy"), (TRIGGER, "Trigger"), (POLL_SCHEDULE, "Poll schedule"), (APPROVALS, "Approvals needed"), (APPROVAL_DEADLINE, "Approval deadline (hours)")] {
                            dt { (label) }
                            dd { @let v = setting(settings, key); @if v.is_empty() { span.muted { "not set" } } @else { (v) } }
                        }
                    }
                },
            }
            @if detail.settings.is_some() && viewer.may_delete() {
                form method="post" action="/ui/image/pause" {
                    input type="hidden" name="csrf" value=(viewer.csrf);
                    input type="hidden" name="target" value=(row.target);
                    input type="hidden" name="id" value=(row.id);
                    @if row.paused {
                        input type="hidden" name="action" value="resume";
                        button type="submit" { "Resume tracking" }
                    } @else {
                        input type="hidden" name="action" value="pause";
                        button.reject type="submit" { "Pause tracking" }
                    }
                }
            }
        }
    }
}

fn candidates_card(detail: &ImageDetail) -> Markup {
    html! {
        section.card aria-labelledby="candidates-title" {
            h2 id="candidates-title" { "Candidate tags" }
            @if detail.row.paused {
                p.muted { "Tracking is paused: the tags are not checked." }
            } @else if let Some(e) = &detail.check_error {
                p.notice.error role="alert" { "The image could not be checked: " (e) }
            } @else if detail.truncated {
                p.notice.error { "The registry's tag list was cut short; nothing is decided from a partial list." }
            } @else if let Some(x) = &detail.explanation {
                p {
                    (detail.tags_listed) " tags listed. "
                    @if let Some(chosen) = &x.chosen {
                        "The policy chooses " strong.mono { (chosen) } "."
                    } @else {
                        "The policy chooses none of them."
                    }
                }
                @if let Some(note) = &x.note { p.muted { (note) } }
                @if !x.rejected.is_empty() {
                    div.scroll {
                        table.candidates {
                            thead { tr { (column_heads(&["Tag", "Why not"])) } }
                            tbody {
                                @for r in x.rejected.iter().take(SHOWN_REJECTIONS) {
                                    tr { td.mono { (r.tag) } td { (r.reason.to_string()) } }
                                }
                            }
                        }
                    }
                    @if x.rejected.len() > SHOWN_REJECTIONS {
                        p.muted { "and " (x.rejected.len() - SHOWN_REJECTIONS) " more rejected tags." }
                    }
                }
            } @else {
                p.muted { "This server does not check images from the dashboard." }
            }
        }
    }
}

fn history_table(history: &[AuditEntry]) -> Markup {
    html! {
        section.card aria-labelledby="history-title" {
            h2 id="history-title" { "History" }
            @if history.is_empty() {
                p.muted { "No updates, votes or changes recorded for this image." }
            } @else {
                div.scroll {
                    table {
                        thead { tr { (column_heads(&["Time", "Action", "Actor", "Image", "Message"])) } }
                        tbody {
                            @for e in history {
                                tr {
                                    td { (time(e.time)) }
                                    td { span class={ "badge " (e.action) } { (e.action) } }
                                    td { @if let Some(a) = &e.actor { (a) } @else { span.muted { "system" } } }
                                    td.mono { (e.image) }
                                    td { (e.message) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn page(viewer: &Viewer, detail: &ImageDetail, history: &[AuditEntry]) -> Markup {
    let row = &detail.row;
    let audit_link = format!(
        "/ui/audit{}",
        query(&[("target", &row.target), ("image", &row.id)])
    );
    layout(
        &format!("Image {}", row.image),
        Some(viewer),
        "",
        html! {
            section.card aria-labelledby="summary-title" {
                h2 id="summary-title" { "Where it runs" }
                dl.settings {
                    dt { "State" } dd { (state_badge(row.state())) @if let Some(e) = &row.last_error { " " span.err { (e) } } }
                    dt { "Target" } dd { (row.target) }
                    dt { "Tracked id" } dd.mono { (row.id) }
                    dt { "Namespace / repository" } dd { (row.namespace_or_repo) }
                    dt { "Container" } dd { (row.container) }
                    dt { "Policy" } dd { (row.policy) }
                    dt { "Trigger" } dd { (row.trigger) }
                    dt { "Update available" } dd.mono { @if let Some(u) = &row.update { (u) } @else { "—" } }
                    dt { "Last checked" } dd { @if let Some(t) = row.last_checked { (time(t)) } @else { "never" } }
                }
            }
            (settings_card(viewer, detail))
            (candidates_card(detail))
            @if let Some(change) = &detail.next_change {
                section.card aria-labelledby="change-title" {
                    h2 id="change-title" { "What the next update changes" }
                    pre.diff { (change) }
                }
            }
            (history_table(history))
            p { a href=(audit_link) { "This image in the audit log" } " · " a href={ "/ui/?ns=" (enc(&row.namespace_or_repo)) } { "Back to the tracked images" } }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changed_fields_become_the_change() {
        let current = BTreeMap::from([
            (POLICY.to_owned(), "patch".to_owned()),
            (APPROVALS.to_owned(), "1".to_owned()),
        ]);
        let form = SettingsForm {
            policy: " minor ".into(),
            approvals: String::new(),
            ..SettingsForm::default()
        };
        let change = settings_change(&current, &form);
        assert_eq!(
            change,
            SettingsChange::from([
                (POLICY.to_owned(), Some("minor".to_owned())),
                (APPROVALS.to_owned(), None),
            ])
        );
        assert_eq!(
            describe(&current, &change),
            "approvals: 1 → (unset); policy: patch → minor"
        );
    }

    #[test]
    fn pausing_and_resuming_edit_the_paused_list() {
        assert_eq!(paused_after(None, "app", true).as_deref(), Some("app"));
        assert_eq!(
            paused_after(Some("worker"), "app", true).as_deref(),
            Some("worker,app")
        );
        assert_eq!(
            paused_after(Some("app"), "app", true).as_deref(),
            Some("app")
        );
        assert_eq!(paused_after(Some("*"), "app", true).as_deref(), Some("*"));
        assert_eq!(
            paused_after(Some("worker, app"), "app", false).as_deref(),
            Some("worker")
        );
        assert_eq!(paused_after(Some("app"), "app", false), None);
        assert_eq!(paused_after(Some("*"), "app", false), None);
        assert_eq!(container_of("deployment/prod/web/init:migrate"), "migrate");
        assert_eq!(container_of("container/web"), "web");
    }
}

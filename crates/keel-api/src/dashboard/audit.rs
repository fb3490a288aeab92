//! The audit log (`/ui/audit`, `/ui/audit.json`) and the activity chart (`/ui/activity`).

use axum::Json;
use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse, Response};
use chrono::Utc;
use keel_core::approval::{AuditAction, AuditEntry, AuditQuery};
use serde::Deserialize;

use super::{Dash, Viewer, core_error, pages};

/// Audit entries per page of `/ui/audit`.
pub const AUDIT_PAGE_SIZE: usize = 50;

/// Days shown by `/ui/activity`, today included.
pub const ACTIVITY_DAYS: usize = 30;

/// The filters and page of the audit log.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct AuditFilter {
    pub(crate) action: String,
    pub(crate) target: String,
    pub(crate) image: String,
    pub(crate) page: Option<usize>,
}

impl AuditFilter {
    /// The filters, as the query pairs of a link that keeps them: another page, the export.
    pub(crate) fn filters(&self) -> [(&'static str, &str); 3] {
        [
            ("action", &self.action),
            ("target", &self.target),
            ("image", &self.image),
        ]
    }
}

/// Every audit action, for the filter's choices.
pub(crate) const AUDIT_ACTIONS: [AuditAction; 12] = [
    AuditAction::Requested,
    AuditAction::Voted,
    AuditAction::Approved,
    AuditAction::Rejected,
    AuditAction::Expired,
    AuditAction::Superseded,
    AuditAction::Deleted,
    AuditAction::Applied,
    AuditAction::ApplyFailed,
    AuditAction::SettingsChanged,
    AuditAction::Paused,
    AuditAction::Resumed,
];

/// The entries matching `f`, newest first; when the log cannot be read, the page that says
/// why, shown to `viewer`.
async fn filtered_audit(
    dash: &Dash,
    viewer: &Viewer,
    f: &AuditFilter,
) -> Result<Vec<AuditEntry>, Response> {
    let query = AuditQuery {
        target: (!f.target.is_empty()).then(|| f.target.clone()),
        ..AuditQuery::default()
    };
    let mut entries: Vec<AuditEntry> = dash
        .config()
        .approvals
        .audit_log(&query)
        .await
        .map_err(|e| core_error(viewer, "Audit log", &e))?
        .into_iter()
        .filter(|e| f.action.is_empty() || e.action.to_string() == f.action)
        .filter(|e| f.image.is_empty() || e.image_id.contains(&f.image))
        .collect();
    entries.sort_by_key(|e| std::cmp::Reverse(e.seq));
    Ok(entries)
}

pub(super) async fn audit_page(
    State(dash): State<Dash>,
    axum::Extension(viewer): axum::Extension<Viewer>,
    Query(f): Query<AuditFilter>,
) -> Result<Html<String>, Response> {
    let entries = filtered_audit(&dash, &viewer, &f).await?;
    let pages_total = entries.len().div_ceil(AUDIT_PAGE_SIZE).max(1);
    let page = f.page.unwrap_or(1).clamp(1, pages_total);
    let shown: Vec<&AuditEntry> = entries
        .iter()
        .skip((page - 1) * AUDIT_PAGE_SIZE)
        .take(AUDIT_PAGE_SIZE)
        .collect();
    let view = pages::AuditView {
        entries: &shown,
        total: entries.len(),
        page,
        pages: pages_total,
    };
    Ok(Html(pages::audit_page(&viewer, &f, view).into_string()))
}

pub(super) async fn audit_json(
    State(dash): State<Dash>,
    axum::Extension(viewer): axum::Extension<Viewer>,
    Query(f): Query<AuditFilter>,
) -> Result<Json<Vec<AuditEntry>>, Response> {
    filtered_audit(&dash, &viewer, &f).await.map(Json)
}

// --- activity --------------------------------------------------------------------------------

/// Updates of one day.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct DayCounts {
    pub(crate) day: chrono::NaiveDate,
    pub(crate) applied: usize,
    pub(crate) failed: usize,
    pub(crate) rejected: usize,
}

/// Applied, failed and rejected updates per day over the [`ACTIVITY_DAYS`] days up to `today`.
pub(crate) fn activity(entries: &[AuditEntry], today: chrono::NaiveDate) -> Vec<DayCounts> {
    let first = today - chrono::Days::new(ACTIVITY_DAYS as u64 - 1);
    let mut days: Vec<DayCounts> = (0..ACTIVITY_DAYS)
        .map(|i| DayCounts {
            day: first + chrono::Days::new(i as u64),
            ..DayCounts::default()
        })
        .collect();
    for e in entries {
        let day = e.time.date_naive();
        if day < first || day > today {
            continue;
        }
        let Ok(i) = usize::try_from((day - first).num_days()) else {
            continue;
        };
        let d = &mut days[i];
        match e.action {
            AuditAction::Applied => d.applied += 1,
            AuditAction::ApplyFailed => d.failed += 1,
            AuditAction::Rejected => d.rejected += 1,
            _ => {}
        }
    }
    days
}

pub(super) async fn activity_page(
    State(dash): State<Dash>,
    axum::Extension(viewer): axum::Extension<Viewer>,
) -> Response {
    match dash
        .config()
        .approvals
        .audit_log(&AuditQuery::default())
        .await
    {
        Ok(entries) => {
            let days = activity(&entries, Utc::now().date_naive());
            Html(pages::activity_page(&viewer, &days).into_string()).into_response()
        }
        Err(e) => core_error(&viewer, "Activity", &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activity_counts_the_last_thirty_days() {
        let today = chrono::NaiveDate::from_ymd_opt(2026, 3, 31).unwrap();
        let at = |d: u32, action| AuditEntry {
            seq: 0,
            time: chrono::NaiveDate::from_ymd_opt(2026, 3, d)
                .unwrap()
                .and_hms_opt(12, 0, 0)
                .unwrap()
                .and_utc(),
            action,
            request: None,
            actor: None,
            target: "t".into(),
            image_id: "i".into(),
            image: "x".into(),
            message: String::new(),
        };
        let entries = [
            at(1, AuditAction::Applied),
            at(2, AuditAction::Applied),
            at(31, AuditAction::ApplyFailed),
            at(31, AuditAction::Rejected),
            at(31, AuditAction::Voted),
        ];
        let days = activity(&entries, today);
        assert_eq!(days.len(), ACTIVITY_DAYS);
        assert_eq!(
            days[0].day,
            chrono::NaiveDate::from_ymd_opt(2026, 3, 2).unwrap()
        );
        assert_eq!(days[0].applied, 1);
        let last = days[ACTIVITY_DAYS - 1];
        assert_eq!((last.applied, last.failed, last.rejected), (0, 1, 1));
    }
}

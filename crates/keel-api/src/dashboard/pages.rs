//! The pages' templates. Every value goes through maud's escaping; `PreEscaped` appears only
//! around SVG numbers computed here.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use keel_core::approval::{ApprovalRequest, ApprovalState, AuditEntry, VoteKind};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::audit::{AUDIT_ACTIONS, AuditFilter, DayCounts};
use super::listing::{TRACKED_COLUMNS, TrackedQuery};
use super::{TrackedRow, TrackedState, Viewer};

const NAV: [(&str, &str); 4] = [
    ("/ui/", "Tracked images"),
    ("/ui/approvals", "Approvals"),
    ("/ui/audit", "Audit log"),
    ("/ui/activity", "Activity"),
];

/// Percent-encodes a query value.
pub(crate) fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

pub(crate) fn query(pairs: &[(&str, &str)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

pub(crate) fn time(t: chrono::DateTime<chrono::Utc>) -> Markup {
    html! { time datetime=(t.to_rfc3339()) { (t.format("%Y-%m-%d %H:%M UTC")) } }
}

pub(crate) fn layout(title: &str, viewer: Option<&Viewer>, current: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Keel" }
                link rel="stylesheet" href="/ui/style.css";
                @if viewer.is_some() {
                    script src="/ui/refresh.js" defer {}
                }
            }
            body {
                header.top {
                    a.brand href="/ui/" { "Keel" }
                    @if let Some(v) = viewer {
                        nav aria-label="Main" {
                            ul {
                                @for (href, label) in NAV {
                                    li {
                                        a href=(href) aria-current=[(href == current).then_some("page")] { (label) }
                                    }
                                }
                            }
                        }
                        div.who {
                            span { (v.name) " " span.role { (v.role.as_str()) } }
                            form method="post" action="/ui/logout" {
                                input type="hidden" name="csrf" value=(v.csrf);
                                button.link type="submit" { "Log out" }
                            }
                        }
                    }
                }
                main id="main" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

pub(crate) fn message_page(viewer: Option<&Viewer>, title: &str, message: &str) -> Markup {
    layout(
        title,
        viewer,
        "",
        html! {
            p.notice.error role="alert" { (message) }
            p { a href="/ui/approvals" { "Back to the approvals" } }
        },
    )
}

pub(crate) fn login_page(error: Option<&str>) -> Markup {
    layout(
        "Log in",
        None,
        "",
        html! {
            form.card.login method="post" action="/ui/login" {
                @if let Some(e) = error {
                    p.notice.error role="alert" { (e) }
                }
                label for="user" { "User name" }
                input id="user" name="user" type="text" autocomplete="username" required autofocus;
                label for="password" { "Password" }
                input id="password" name="password" type="password" autocomplete="current-password" required;
                button type="submit" { "Log in" }
            }
        },
    )
}

// --- tracked images --------------------------------------------------------------------------

/// The distinct values the filters offer.
pub(crate) struct Facets {
    ns: BTreeSet<String>,
    kinds: BTreeSet<String>,
    policies: BTreeSet<String>,
}

impl Facets {
    pub(crate) fn of(rows: &[TrackedRow]) -> Self {
        Facets {
            ns: rows.iter().map(|r| r.namespace_or_repo.clone()).collect(),
            kinds: rows.iter().map(|r| r.kind.clone()).collect(),
            policies: rows.iter().map(|r| r.policy.clone()).collect(),
        }
    }
}

pub(crate) struct TrackedView<'a> {
    pub(crate) rows: &'a [TrackedRow],
    pub(crate) counts: &'a BTreeMap<&'static str, usize>,
    pub(crate) facets: &'a Facets,
}

fn select(id: &str, label: &str, choices: &BTreeSet<String>, chosen: &str) -> Markup {
    html! {
        div.field {
            label for=(id) { (label) }
            select id=(id) name=(id) {
                option value="" { "All" }
                @for c in choices {
                    option value=(c) selected[c == chosen] { (c) }
                }
            }
        }
    }
}

pub(crate) fn state_badge(state: TrackedState) -> Markup {
    let class = match state {
        TrackedState::UpToDate => "badge applied",
        TrackedState::UpdateAvailable => "badge pending",
        TrackedState::Error => "badge failed",
        TrackedState::Paused => "badge paused",
    };
    html! { span class=(class) { (state.label()) } }
}

pub(crate) fn tracked_page(
    viewer: &Viewer,
    view: Option<TrackedView<'_>>,
    q: &TrackedQuery,
) -> Markup {
    let Some(view) = view else {
        return layout(
            "Tracked images",
            Some(viewer),
            "/ui/",
            html! { p.notice { "No tracked images are known: this server has no source of tracked images." } },
        );
    };
    let sort_link = |col: &str| {
        let desc = if q.sort == col && q.desc != "1" {
            "1"
        } else {
            ""
        };
        let mut pairs = q.filters().to_vec();
        pairs.extend([("sort", col), ("desc", desc)]);
        format!("/ui/{}", query(&pairs))
    };
    let sorted_by = |col: &str| {
        let current = if q.sort.is_empty() {
            "target"
        } else {
            q.sort.as_str()
        };
        (current == col).then_some(if q.desc == "1" {
            "descending"
        } else {
            "ascending"
        })
    };
    layout(
        "Tracked images",
        Some(viewer),
        "/ui/",
        html! {
            ul.counts aria-label="Images per state" {
                @for state in TrackedState::ALL {
                    li { (state_badge(state)) " " strong { (view.counts.get(state.label()).copied().unwrap_or(0)) } }
                }
            }
            form.filters method="get" action="/ui/" {
                (select("ns", "Namespace / repository", &view.facets.ns, &q.ns))
                (select("kind", "Kind", &view.facets.kinds, &q.kind))
                (select("policy", "Policy", &view.facets.policies, &q.policy))
                div.field {
                    label for="update" { "Update" }
                    select id="update" name="update" {
                        option value="" { "Any" }
                        option value="yes" selected[q.update == "yes"] { "Update available" }
                        option value="no" selected[q.update == "no"] { "No update" }
                    }
                }
                input type="hidden" name="sort" value=(q.sort);
                input type="hidden" name="desc" value=(q.desc);
                div.field { button type="submit" { "Filter" } }
            }
            p.summary { (view.rows.len()) " shown" }
            div.scroll {
                table {
                    thead {
                        tr {
                            @for (col, label) in TRACKED_COLUMNS {
                                th scope="col" aria-sort=[sorted_by(col)] { a href=(sort_link(col)) { (label) } }
                            }
                            th scope="col" { "State" }
                        }
                    }
                    tbody {
                        @for r in view.rows {
                            tr {
                                td { (r.target) }
                                td { (r.kind) }
                                td { (r.namespace_or_repo) }
                                td { (r.container) }
                                td.mono { a href={ "/ui/image" (query(&[("target", &r.target), ("id", &r.id)])) } { (r.image) } }
                                td { (r.policy) }
                                td { (r.trigger) }
                                td.mono { @if let Some(u) = &r.update { (u) } @else { "—" } }
                                td { @if let Some(t) = r.last_checked { (time(t)) } @else { "never" } }
                                td {
                                    (state_badge(r.state()))
                                    @if let Some(e) = &r.last_error { " " span.err { (e) } }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

// --- approvals -------------------------------------------------------------------------------

const APPROVAL_TABS: [(&str, &str); 5] = [
    ("", "All"),
    ("pending", "Pending"),
    ("approved", "Approved"),
    ("rejected", "Rejected"),
    ("expired", "Expired"),
];

/// The heads of a table's columns, one `th scope="col"` each, so that screen readers name
/// the column of every cell.
pub(crate) fn column_heads(labels: &[&str]) -> Markup {
    html! {
        @for label in labels {
            th scope="col" { (label) }
        }
    }
}

fn approval_badge(state: ApprovalState) -> Markup {
    html! { span class={ "badge " (state.as_str()) } { (state.as_str()) } }
}

pub(crate) fn approvals_page(
    viewer: &Viewer,
    state: Option<ApprovalState>,
    requests: &[ApprovalRequest],
) -> Markup {
    let current = state.map(ApprovalState::as_str).unwrap_or("");
    layout(
        "Approvals",
        Some(viewer),
        "/ui/approvals",
        html! {
            nav.tabs aria-label="Approval states" {
                @for (s, label) in APPROVAL_TABS {
                    a href={ "/ui/approvals" (query(&[("state", s)])) } aria-current=[(s == current).then_some("page")] { (label) }
                }
            }
            @if requests.is_empty() {
                p.notice { "No approval requests here." }
            } @else {
                div.scroll {
                    table {
                        thead {
                            tr {
                                (column_heads(&["State", "Image", "Target", "Tracked id", "Digest", "Votes", "Deadline"]))
                                @if viewer.may_vote() { th scope="col" { "Actions" } }
                            }
                        }
                        tbody {
                            @for r in requests {
                                tr {
                                    td { (approval_badge(r.state)) }
                                    td { span.mono { (r.plan.current.to_string()) } " → " strong.mono { (r.plan.new.to_string()) } }
                                    td { (r.plan.target) }
                                    td.mono { (r.plan.id) }
                                    td.mono.digest { @if let Some(d) = &r.digest { (d.to_string()) } @else { "—" } }
                                    td {
                                        span.count { (r.approvals()) " of " (r.required) }
                                        @if !r.votes.is_empty() {
                                            ul.votes {
                                                @for v in &r.votes {
                                                    li {
                                                        span class=(if v.kind == VoteKind::Approve { "vote yes" } else { "vote no" }) { (v.kind) }
                                                        " by " span.voter { (v.voter) } " at " (time(v.at))
                                                        @if let Some(c) = &v.comment { ": " q { (c) } }
                                                    }
                                                }
                                            }
                                        }
                                    }
                                    td { (time(r.deadline)) }
                                    @if viewer.may_vote() {
                                        td.actions { div {
                                            @if r.state == ApprovalState::Pending {
                                                form method="post" action={ "/ui/approvals/" (enc(&r.id)) "/approve" } {
                                                    input type="hidden" name="csrf" value=(viewer.csrf);
                                                    button.approve type="submit" { "Approve" }
                                                }
                                                form method="post" action={ "/ui/approvals/" (enc(&r.id)) "/reject" } {
                                                    input type="hidden" name="csrf" value=(viewer.csrf);
                                                    button.reject type="submit" { "Reject" }
                                                }
                                            }
                                            @if viewer.may_delete() {
                                                form method="post" action={ "/ui/approvals/" (enc(&r.id)) "/delete" } {
                                                    input type="hidden" name="csrf" value=(viewer.csrf);
                                                    button.delete type="submit" { "Delete" }
                                                }
                                            }
                                        } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

// --- audit -----------------------------------------------------------------------------------

pub(crate) struct AuditView<'a> {
    pub(crate) entries: &'a [&'a AuditEntry],
    pub(crate) total: usize,
    pub(crate) page: usize,
    pub(crate) pages: usize,
}

pub(crate) fn audit_page(viewer: &Viewer, f: &AuditFilter, view: AuditView<'_>) -> Markup {
    let page_link = |page: usize| {
        let page = page.to_string();
        let mut pairs = f.filters().to_vec();
        pairs.push(("page", &page));
        format!("/ui/audit{}", query(&pairs))
    };
    let export = format!("/ui/audit.json{}", query(&f.filters()));
    layout(
        "Audit log",
        Some(viewer),
        "/ui/audit",
        html! {
            form.filters method="get" action="/ui/audit" {
                div.field {
                    label for="action" { "Action" }
                    select id="action" name="action" {
                        option value="" { "All" }
                        @for a in AUDIT_ACTIONS {
                            @let a = a.to_string();
                            option value=(a) selected[a == f.action] { (a) }
                        }
                    }
                }
                div.field {
                    label for="target" { "Target" }
                    input id="target" name="target" type="text" value=(f.target);
                }
                div.field {
                    label for="image" { "Image id contains" }
                    input id="image" name="image" type="text" value=(f.image);
                }
                div.field { button type="submit" { "Filter" } }
                div.field { a.button.secondary href=(export) { "Export JSON" } }
            }
            p.summary { (view.total) " entries · page " (view.page) " of " (view.pages) }
            div.scroll {
                table {
                    thead {
                        tr {
                            (column_heads(&["#", "Time", "Action", "Actor", "Target", "Image id", "Image", "Message"]))
                        }
                    }
                    tbody {
                        @for e in view.entries {
                            tr {
                                td { (e.seq) }
                                td { (time(e.time)) }
                                td { span class={ "badge " (e.action) } { (e.action) } }
                                td { @if let Some(a) = &e.actor { (a) } @else { span.muted { "system" } } }
                                td { (e.target) }
                                td.mono { (e.image_id) }
                                td.mono { (e.image) }
                                td { (e.message) }
                            }
                        }
                    }
                }
            }
            nav.pager aria-label="Pages" {
                @if view.page > 1 { a href=(page_link(view.page - 1)) rel="prev" { "← Newer" } }
                @if view.page < view.pages { a href=(page_link(view.page + 1)) rel="next" { "Older →" } }
            }
        },
    )
}

// --- activity --------------------------------------------------------------------------------

const SERIES: [(&str, &str); 3] = [
    ("applied", "#2e7d32"),
    ("failed", "#c62828"),
    ("rejected", "#ef6c00"),
];

/// The stacked bar chart, built only from numbers and dates.
pub(crate) fn activity_svg(days: &[DayCounts]) -> String {
    let (w, h) = (760.0_f64, 300.0_f64);
    let (left, right, top, bottom) = (40.0, 10.0, 30.0, 50.0);
    let plot_w = w - left - right;
    let plot_h = h - top - bottom;
    let max = days
        .iter()
        .map(|d| d.applied + d.failed + d.rejected)
        .max()
        .unwrap_or(0)
        .max(1);
    // A tick step that gives at most five grid lines.
    let step = max.div_ceil(5).max(1);
    let top_value = step * max.div_ceil(step);
    let y = |v: usize| top + plot_h - plot_h * v as f64 / top_value as f64;
    let slot = plot_w / days.len().max(1) as f64;
    let bar = slot * 0.7;
    let mut s = String::new();
    let total: usize = days.iter().map(|d| d.applied + d.failed + d.rejected).sum();
    let _ = write!(
        s,
        r#"<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-labelledby="chart-title" xmlns="http://www.w3.org/2000/svg"><title id="chart-title">Updates per day over the last {} days: {total} in all</title>"#,
        days.len()
    );
    let mut v = 0;
    while v <= top_value {
        let yy = y(v);
        let _ = write!(
            s,
            r##"<line class="grid" x1="{left}" x2="{}" y1="{yy:.1}" y2="{yy:.1}"/><text class="tick" x="{}" y="{:.1}" text-anchor="end">{v}</text>"##,
            w - right,
            left - 6.0,
            yy + 4.0
        );
        v += step;
    }
    let _ = write!(
        s,
        r#"<line class="axis" x1="{left}" x2="{left}" y1="{top}" y2="{}"/><line class="axis" x1="{left}" x2="{}" y1="{}" y2="{}"/>"#,
        top + plot_h,
        w - right,
        top + plot_h,
        top + plot_h
    );
    for (i, d) in days.iter().enumerate() {
        let x = left + slot * i as f64 + (slot - bar) / 2.0;
        let mut base = 0;
        for ((name, color), n) in SERIES.iter().zip([d.applied, d.failed, d.rejected]) {
            if n > 0 {
                let y1 = y(base + n);
                let y0 = y(base);
                let _ = write!(
                    s,
                    r#"<rect class="bar {name}" x="{x:.1}" y="{y1:.1}" width="{bar:.1}" height="{:.1}" fill="{color}" data-day="{}" data-count="{n}"><title>{}: {n} {name}</title></rect>"#,
                    y0 - y1,
                    d.day,
                    d.day
                );
            }
            base += n;
        }
        if i % 5 == 0 || i + 1 == days.len() {
            let _ = write!(
                s,
                r#"<text class="day" x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
                x + bar / 2.0,
                top + plot_h + 16.0,
                d.day.format("%m-%d")
            );
        }
    }
    for (i, (name, color)) in SERIES.iter().enumerate() {
        let lx = left + 110.0 * i as f64;
        let _ = write!(
            s,
            r#"<rect x="{lx}" y="8" width="12" height="12" fill="{color}"/><text class="legend" x="{}" y="18">{name}</text>"#,
            lx + 16.0
        );
    }
    let _ = write!(
        s,
        r#"<text class="axis-label" x="{}" y="{}" text-anchor="middle">day (UTC)</text></svg>"#,
        left + plot_w / 2.0,
        h - 8.0
    );
    s
}

pub(crate) fn activity_page(viewer: &Viewer, days: &[DayCounts]) -> Markup {
    layout(
        "Activity",
        Some(viewer),
        "/ui/activity",
        html! {
            p { "Updates per day over the last " (days.len()) " days, from the audit log." }
            figure.chart-box {
                (PreEscaped(activity_svg(days)))
            }
            div.scroll {
                table {
                    thead {
                        tr {
                            th scope="col" { "Day" }
                            th.num scope="col" { "Applied" }
                            th.num scope="col" { "Failed" }
                            th.num scope="col" { "Rejected" }
                        }
                    }
                    tbody {
                        @for d in days.iter().rev() {
                            tr {
                                td { (d.day) }
                                td.num { (d.applied) }
                                td.num { (d.failed) }
                                td.num { (d.rejected) }
                            }
                        }
                    }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    fn viewer() -> Viewer {
        Viewer {
            name: "ana".into(),
            role: Role::Reader,
            csrf: "token".into(),
        }
    }

    #[test]
    fn sort_links_keep_the_filters() {
        let q = TrackedQuery {
            ns: "team 3".into(),
            policy: "minor".into(),
            sort: "image".into(),
            ..TrackedQuery::default()
        };
        let counts = BTreeMap::new();
        let view = TrackedView {
            rows: &[],
            counts: &counts,
            facets: &Facets::of(&[]),
        };
        let page = tracked_page(&viewer(), Some(view), &q).into_string();
        for link in [
            r#"href="/ui/?ns=team%203&amp;policy=minor&amp;sort=image&amp;desc=1""#,
            r#"href="/ui/?ns=team%203&amp;policy=minor&amp;sort=kind""#,
        ] {
            assert!(page.contains(link), "{link} in {page}");
        }
    }

    #[test]
    fn page_and_export_links_keep_the_filters() {
        let f = AuditFilter {
            action: "applied".into(),
            image: "web 1".into(),
            page: Some(2),
            ..AuditFilter::default()
        };
        let view = AuditView {
            entries: &[],
            total: 120,
            page: 2,
            pages: 3,
        };
        let page = audit_page(&viewer(), &f, view).into_string();
        for link in [
            r#"href="/ui/audit.json?action=applied&amp;image=web%201""#,
            r#"href="/ui/audit?action=applied&amp;image=web%201&amp;page=1""#,
            r#"href="/ui/audit?action=applied&amp;image=web%201&amp;page=3""#,
        ] {
            assert!(page.contains(link), "{link} in {page}");
        }
    }
}

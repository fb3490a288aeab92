//! The approvals page (`/ui/approvals`), its vote and delete buttons, and the pending count
//! the refresh script polls.

use std::fmt;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::{Extension, Json};
use keel_core::approval::{ApprovalFilter, ApprovalState, VoteKind};
use serde::Deserialize;

use super::session::{CsrfForm, Posted, role_refusal};
use super::{Dash, Viewer, core_error, pages, see_other};
use crate::error::status_of;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct ApprovalsQuery {
    state: String,
}

pub(super) async fn approvals_page(
    State(dash): State<Dash>,
    Extension(viewer): Extension<Viewer>,
    Query(q): Query<ApprovalsQuery>,
) -> Response {
    let state = ApprovalState::ALL
        .into_iter()
        .find(|s| s.as_str() == q.state);
    let filter = ApprovalFilter {
        state,
        ..ApprovalFilter::default()
    };
    match dash.config().approvals.list(&filter).await {
        Ok(requests) => {
            Html(pages::approvals_page(&viewer, state, &requests).into_string()).into_response()
        }
        Err(e) => core_error(&viewer, "Approvals", &e),
    }
}

/// What a button of the approvals page does to a request (the last part of its path).
#[derive(Clone, Copy, Debug)]
enum RequestAction {
    Vote(VoteKind),
    Delete,
}

impl RequestAction {
    fn parse(text: &str) -> Option<RequestAction> {
        match text {
            "approve" => Some(RequestAction::Vote(VoteKind::Approve)),
            "reject" => Some(RequestAction::Vote(VoteKind::Reject)),
            "delete" => Some(RequestAction::Delete),
            _ => None,
        }
    }
}

impl fmt::Display for RequestAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestAction::Vote(kind) => kind.fmt(f),
            RequestAction::Delete => f.write_str("delete"),
        }
    }
}

/// `POST /ui/approvals/{id}/{approve|reject|delete}`: a vote (approver or admin) or the
/// deletion (admin) of a request, then back to the approvals page. A [`Posted`] form: a
/// forged one is refused before its action is looked at, so it learns nothing about which
/// actions exist.
pub(super) async fn act_on_request(
    State(dash): State<Dash>,
    Path((id, action)): Path<(String, String)>,
    Posted { viewer, .. }: Posted<CsrfForm>,
) -> Response {
    let Some(action) = RequestAction::parse(&action) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let (permitted, needs) = match action {
        RequestAction::Vote(_) => (viewer.may_vote(), "voting needs approver or admin"),
        RequestAction::Delete => (viewer.may_delete(), "deleting needs admin"),
    };
    if let Some(refused) = role_refusal(&viewer, permitted, needs) {
        return refused;
    }
    let approvals = &dash.config().approvals;
    let done = match action {
        RequestAction::Vote(kind) => approvals
            .vote(&id, &viewer.name, kind, None)
            .await
            .map(drop),
        RequestAction::Delete => approvals.delete(&id, &viewer.name).await.map(drop),
    };
    match done {
        Ok(()) => see_other("/ui/approvals"),
        Err(e) => core_error(&viewer, &format!("Could not {action} {id}"), &e),
    }
}

pub(super) async fn pending_count(State(dash): State<Dash>) -> Response {
    match dash.config().approvals.pending().await {
        Ok(n) => Json(serde_json::json!({ "pending": n })).into_response(),
        Err(e) => (
            status_of(&e).0,
            Json(serde_json::json!({ "error": e.to_string() })),
        )
            .into_response(),
    }
}

//! The bot: polls the keel API for pending requests, posts them to Slack, and turns slash
//! commands and button clicks into votes.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use keel_api::ApiClient;
use keel_core::Error;
use keel_core::approval::{ApprovalFilter, ApprovalRequest, ApprovalState, VoteKind};
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::config::{Config, is_slack_id};
use crate::render::{self, APPROVE_ACTION, REJECT_ACTION};
use crate::signature::Verifier;
use crate::slack::{PostedMessage, SlackClient};
use crate::state::{Posted, PostedState};

/// The approval bot; cheap to clone (all clones share one state).
#[derive(Clone, Debug)]
pub struct Bot {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Config,
    api: ApiClient,
    slack: SlackClient,
    verifier: Verifier,
    state: Mutex<PostedState>,
    /// Serializes passes over the posted state that call Slack (polls and message refreshes),
    /// so a request is never posted twice.
    pass: tokio::sync::Mutex<()>,
}

/// What one poll did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PollReport {
    /// New requests posted.
    pub posted: usize,
    /// Messages updated (votes changed, or the request was decided or deleted).
    pub updated: usize,
    /// Slack or API calls that failed; they are tried again on the next poll.
    pub failed: usize,
}

/// What a message shows of a request: it is updated when this changes.
fn fingerprint(r: &ApprovalRequest) -> String {
    let votes: Vec<String> = r
        .votes
        .iter()
        .map(|v| format!("{}={}", v.voter, v.kind))
        .collect();
    format!("{} {}", r.state, votes.join(","))
}

impl Bot {
    /// A bot for `config`; loads the state file when one is configured.
    pub fn new(config: Config) -> Result<Self, Error> {
        config.validate()?;
        let api =
            ApiClient::new(&config.keel_api_url)?.with_bearer_token(config.keel_api_token.expose());
        let slack = SlackClient::new(&config.slack_api_url, config.slack_bot_token.clone())?;
        let state = match &config.state_file {
            Some(path) => PostedState::load(path)?,
            None => PostedState::default(),
        };
        let verifier = Verifier::new(config.slack_signing_secret.clone());
        Ok(Bot {
            inner: Arc::new(Inner {
                config,
                api,
                slack,
                verifier,
                state: Mutex::new(state),
                pass: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// The ids of the requests posted so far and still followed.
    pub fn posted(&self) -> Vec<String> {
        self.lock_state().posted.keys().cloned().collect()
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, PostedState> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn save(&self) {
        let Some(path) = &self.inner.config.state_file else {
            return;
        };
        let snapshot = self.lock_state().clone();
        if let Err(e) = snapshot.save(path).await {
            tracing::error!(error = %e, "cannot save the bot state; a restart may post requests again");
        }
    }

    /// One pass: posts every pending request not posted yet, and updates the messages of
    /// requests whose votes or state changed (or that were deleted).
    pub async fn poll_once(&self) -> Result<PollReport, Error> {
        let _pass = self.inner.pass.lock().await;
        let pending = self
            .inner
            .api
            .list(&ApprovalFilter::state(ApprovalState::Pending))
            .await?;
        let now = chrono::Utc::now();
        let mut report = PollReport::default();
        let mut changed = false;
        let pending_ids: HashSet<&str> = pending.iter().map(|r| r.id.as_str()).collect();

        for r in &pending {
            let shown = fingerprint(r);
            let known = self.lock_state().posted.get(&r.id).cloned();
            let (text, blocks) = render::request_message(r);
            match known {
                None if r.deadline <= now => {
                    // About to expire: announcing it would only invite votes that conflict.
                }
                None => {
                    let posted = self
                        .inner
                        .slack
                        .post_message(&self.inner.config.slack_channel, &text, &blocks)
                        .await;
                    match posted {
                        Ok(message) => {
                            tracing::info!(request = %r.id, channel = %message.channel, ts = %message.ts, "posted approval request");
                            self.lock_state()
                                .posted
                                .insert(r.id.clone(), Posted { message, shown });
                            report.posted += 1;
                            changed = true;
                        }
                        Err(e) => {
                            tracing::warn!(request = %r.id, error = %e, "cannot post approval request");
                            report.failed += 1;
                        }
                    }
                }
                Some(p) if p.shown != shown => {
                    match self
                        .inner
                        .slack
                        .update_message(&p.message, &text, &blocks)
                        .await
                    {
                        Ok(()) => {
                            if let Some(entry) = self.lock_state().posted.get_mut(&r.id) {
                                entry.shown = shown;
                            }
                            report.updated += 1;
                            changed = true;
                        }
                        Err(e) => {
                            tracing::warn!(request = %r.id, error = %e, "cannot update approval message");
                            report.failed += 1;
                        }
                    }
                }
                Some(_) => {}
            }
        }

        let gone: Vec<(String, Posted)> = self
            .lock_state()
            .posted
            .iter()
            .filter(|(id, _)| !pending_ids.contains(id.as_str()))
            .map(|(id, p)| (id.clone(), p.clone()))
            .collect();
        for (id, posted) in gone {
            match self.finish(&id, &posted.message).await {
                Ok(()) => {
                    report.updated += 1;
                    changed = true;
                }
                Err(e) => {
                    tracing::warn!(request = %id, error = %e, "cannot update decided approval message");
                    report.failed += 1;
                }
            }
        }
        if changed {
            self.save().await;
        }
        Ok(report)
    }

    /// Shows the final state of request `id` (decided or deleted) in its message and stops
    /// following it.
    async fn finish(&self, id: &str, message: &PostedMessage) -> Result<(), Error> {
        let (text, blocks) = match self.inner.api.get(id).await {
            Ok(r) => render::request_message(&r),
            Err(Error::NotFound { .. }) => render::deleted_message(id),
            Err(e) => return Err(e),
        };
        match self
            .inner
            .slack
            .update_message(message, &text, &blocks)
            .await
        {
            // The message is gone from Slack: nothing left to update.
            Ok(()) | Err(Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        self.lock_state().posted.remove(id);
        Ok(())
    }

    /// Brings the message of request `id` up to date after a vote. `fallback` is the message
    /// a button was clicked in, for a request this bot instance does not follow.
    async fn refresh(&self, id: &str, fallback: Option<PostedMessage>) {
        let _pass = self.inner.pass.lock().await;
        let known = self.lock_state().posted.get(id).cloned();
        let Some(message) = known.as_ref().map(|p| p.message.clone()).or(fallback) else {
            return;
        };
        let result = match self.inner.api.get(id).await {
            Ok(r) if r.state == ApprovalState::Pending => {
                let (text, blocks) = render::request_message(&r);
                let result = self
                    .inner
                    .slack
                    .update_message(&message, &text, &blocks)
                    .await;
                if let (Ok(()), Some(entry)) = (&result, self.lock_state().posted.get_mut(id)) {
                    entry.shown = fingerprint(&r);
                }
                result
            }
            Ok(_) | Err(Error::NotFound { .. }) => {
                let r = self.finish(id, &message).await;
                if r.is_ok() && known.is_some() {
                    self.save().await;
                }
                r
            }
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::warn!(request = %id, error = %e, "cannot refresh approval message; the next poll will");
        }
    }

    /// Polls every `poll_interval` until the task is aborted, logging failures.
    pub fn spawn_poller(&self) -> JoinHandle<()> {
        let bot = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(bot.inner.config.poll_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match bot.poll_once().await {
                    Ok(report) if report != PollReport::default() => {
                        tracing::info!(?report, "poll");
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot list pending approval requests"),
                }
            }
        })
    }

    /// The HTTP endpoints: `POST /slack/commands`, `POST /slack/interactions` (both
    /// signature-checked on the raw body) and `GET /healthz`.
    pub fn router(&self) -> Router {
        let slack = Router::new()
            .route("/slack/commands", post(commands))
            .route("/slack/interactions", post(interactions))
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                verify_signature,
            ))
            .layer(DefaultBodyLimit::disable());
        Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .merge(slack)
            .with_state(self.clone())
    }

    /// Serves the endpoints on `listener` and polls, until `shutdown` completes.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        let poller = self.spawn_poller();
        let served = axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await;
        poller.abort();
        served.map_err(|e| Error::backend("keel-bot", "serve HTTP", e))
    }

    /// Votes for Slack user `user` of team `team`, whom [`Bot::refusal`] admitted; the voter
    /// the API records is `<delegate>:<team>/<user>`.
    async fn vote(
        &self,
        id: &str,
        kind: VoteKind,
        team: &str,
        user: &str,
        comment: Option<&str>,
    ) -> Result<ApprovalRequest, Error> {
        let voter = format!("{team}/{user}");
        self.inner.api.vote(id, kind, Some(&voter), comment).await
    }

    /// Why Slack user `user` of team `team` may not use the bot, or `None` when they may.
    fn refusal(&self, team: &str, user: &str) -> Option<String> {
        if !is_slack_id(user) || !is_slack_id(team) {
            return Some("Slack did not say who you are; nothing was done.".into());
        }
        if self.inner.config.admits(team, user) {
            return None;
        }
        tracing::warn!(team, user, "refused a Slack user not on the allow-list");
        Some(format!(
            "You are not on this bot's list of approvers (team `{}`, user `{}`); nothing was \
             done. An operator can add you to KEEL_BOT_ALLOWED_TEAMS or KEEL_BOT_ALLOWED_USERS.",
            render::escape(team),
            render::escape(user)
        ))
    }

    fn response_url_allowed(&self, url: &str) -> bool {
        self.inner
            .config
            .response_url_prefixes
            .iter()
            .any(|p| !p.is_empty() && url.starts_with(p.as_str()))
    }
}

fn refused(status: StatusCode, reason: String) -> Response {
    (status, Json(json!({"error": "refused", "reason": reason}))).into_response()
}

/// Reads the whole body (within the limit), checks Slack's signature on it, and only then
/// hands it on.
async fn verify_signature(State(bot): State<Bot>, request: Request, next: Next) -> Response {
    let limit = bot.inner.config.max_body_bytes;
    let (parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return refused(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {limit} bytes"),
        );
    }
    let Ok(bytes) = axum::body::to_bytes(body, limit).await else {
        return refused(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {limit} bytes or could not be read"),
        );
    };
    if let Err(e) = bot.inner.verifier.verify(&parts.headers, &bytes) {
        tracing::warn!(path = %parts.uri.path(), reason = %e, "refused a request not signed by Slack");
        return refused(StatusCode::UNAUTHORIZED, e.to_string());
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// The fields of a slash command the bot uses (Slack sends more).
#[derive(Debug, Deserialize)]
struct SlashCommand {
    #[serde(default)]
    command: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    user_id: String,
    #[serde(default)]
    team_id: String,
    /// Set on the check Slack makes of an HTTPS command URL; answered with an empty 200.
    #[serde(default)]
    ssl_check: Option<String>,
}

/// What a user is told when their command failed.
fn explain(e: &Error, id: &str, command: &str) -> String {
    let id_code = format!("`{}`", render::escape(id));
    match e {
        Error::NotFound { .. } => format!(
            "There is no approval request {id_code}. `{} list` shows the pending ones.",
            render::escape(command)
        ),
        Error::InvalidInput(p) => format!(
            "That did not work: {} ({}).",
            render::escape(p.reason()),
            render::escape(p.input())
        ),
        Error::Conflict { reason, .. } => {
            format!("Votes on {id_code} are closed: {}.", render::escape(reason))
        }
        Error::Unauthorized { reason, .. } => {
            tracing::error!(error = %e, "the keel API refused the bot");
            format!(
                "The keel API refused this: {}. Ask an operator to check the bot's delegate \
                 token and the voters the API accepts for it.",
                render::escape(reason)
            )
        }
        _ => {
            tracing::warn!(error = %e, "keel API call failed");
            "Could not reach keel right now; please try again in a minute.".into()
        }
    }
}

async fn commands(State(bot): State<Bot>, body: Bytes) -> Response {
    let cmd: SlashCommand = match serde_urlencoded::from_bytes(&body) {
        Ok(c) => c,
        Err(e) => return refused(StatusCode::BAD_REQUEST, format!("not a slash command: {e}")),
    };
    if cmd.ssl_check.is_some() {
        return StatusCode::OK.into_response();
    }
    let command = if cmd.command.is_empty() {
        "/keel"
    } else {
        cmd.command.as_str()
    };
    let text = cmd.text.trim();
    let (sub, rest) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
    let sub = sub.to_ascii_lowercase();
    if !matches!(sub.as_str(), "" | "help")
        && let Some(refusal) = bot.refusal(&cmd.team_id, &cmd.user_id)
    {
        return Json(render::ephemeral(refusal)).into_response();
    }
    let reply = match sub.as_str() {
        "" | "help" => render::help(command),
        "list" => match bot
            .inner
            .api
            .list(&ApprovalFilter::state(ApprovalState::Pending))
            .await
        {
            Ok(list) => render::pending_list(&list),
            Err(e) => explain(&e, "", command),
        },
        verb @ ("approve" | "reject") => {
            let kind = if verb == "approve" {
                VoteKind::Approve
            } else {
                VoteKind::Reject
            };
            let rest = rest.trim();
            let (id, comment) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            let comment = Some(comment.trim()).filter(|c| !c.is_empty());
            if id.is_empty() {
                format!("Which request? {}", render::help(command))
            } else {
                match bot
                    .vote(id, kind, &cmd.team_id, &cmd.user_id, comment)
                    .await
                {
                    Ok(r) => {
                        let refresh = bot.clone();
                        let id = r.id.clone();
                        tokio::spawn(async move { refresh.refresh(&id, None).await });
                        render::voted(kind, &r)
                    }
                    Err(e) => explain(&e, id, command),
                }
            }
        }
        other => format!(
            "I don't know `{}`. {}",
            render::escape(other),
            render::help(command)
        ),
    };
    Json(render::ephemeral(reply)).into_response()
}

#[derive(Debug, Deserialize)]
struct InteractionForm {
    payload: String,
}

#[derive(Debug, Deserialize)]
struct Interaction {
    #[serde(rename = "type")]
    kind: String,
    user: InteractionUser,
    #[serde(default)]
    actions: Vec<InteractionAction>,
    #[serde(default)]
    response_url: Option<String>,
    #[serde(default)]
    channel: Option<IdOnly>,
    #[serde(default)]
    message: Option<MessageTs>,
    #[serde(default)]
    container: Option<Container>,
    #[serde(default)]
    team: Option<IdOnly>,
}

#[derive(Debug, Deserialize)]
struct InteractionUser {
    id: String,
    #[serde(default)]
    team_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct InteractionAction {
    action_id: String,
    #[serde(default)]
    value: Option<String>,
}

#[derive(Debug, Deserialize)]
struct IdOnly {
    id: String,
}

#[derive(Debug, Deserialize)]
struct MessageTs {
    ts: String,
}

#[derive(Debug, Deserialize)]
struct Container {
    #[serde(default)]
    channel_id: Option<String>,
    #[serde(default)]
    message_ts: Option<String>,
}

impl Interaction {
    /// The Slack team of the user who clicked (empty when Slack did not say).
    fn team(&self) -> &str {
        self.user
            .team_id
            .as_deref()
            .or(self.team.as_ref().map(|t| t.id.as_str()))
            .unwrap_or_default()
    }

    /// The message the buttons were in.
    fn message(&self) -> Option<PostedMessage> {
        let channel = self
            .container
            .as_ref()
            .and_then(|c| c.channel_id.clone())
            .or_else(|| self.channel.as_ref().map(|c| c.id.clone()))?;
        let ts = self
            .container
            .as_ref()
            .and_then(|c| c.message_ts.clone())
            .or_else(|| self.message.as_ref().map(|m| m.ts.clone()))?;
        Some(PostedMessage { channel, ts })
    }
}

async fn interactions(State(bot): State<Bot>, body: Bytes) -> Response {
    let form: InteractionForm = match serde_urlencoded::from_bytes(&body) {
        Ok(f) => f,
        Err(e) => return refused(StatusCode::BAD_REQUEST, format!("no payload field: {e}")),
    };
    let interaction: Interaction = match serde_json::from_str(&form.payload) {
        Ok(i) => i,
        Err(e) => {
            return refused(
                StatusCode::BAD_REQUEST,
                format!("the payload is not an interaction: {e}"),
            );
        }
    };
    if interaction.kind != "block_actions" {
        return StatusCode::OK.into_response();
    }
    let mut replies = Vec::new();
    for action in &interaction.actions {
        let kind = match action.action_id.as_str() {
            APPROVE_ACTION => VoteKind::Approve,
            REJECT_ACTION => VoteKind::Reject,
            _ => continue,
        };
        let Some(id) = action.value.as_deref() else {
            continue;
        };
        if let Some(refusal) = bot.refusal(interaction.team(), &interaction.user.id) {
            replies.push(refusal);
            break;
        }
        match bot
            .vote(id, kind, interaction.team(), &interaction.user.id, None)
            .await
        {
            Ok(r) => {
                replies.push(render::voted(kind, &r));
                let refresh = bot.clone();
                let id = r.id.clone();
                let message = interaction.message();
                tokio::spawn(async move { refresh.refresh(&id, message).await });
            }
            Err(e) => replies.push(explain(&e, id, "/keel")),
        }
    }
    if let (Some(url), false) = (&interaction.response_url, replies.is_empty()) {
        if bot.response_url_allowed(url) {
            let url = url.clone();
            let reply = render::ephemeral(replies.join("\n"));
            let bot = bot.clone();
            tokio::spawn(async move {
                if let Err(e) = bot.inner.slack.respond(&url, &reply).await {
                    tracing::warn!(error = %e, "cannot answer a button click");
                }
            });
        } else {
            tracing::warn!("ignored a response_url outside the allowed prefixes");
        }
    }
    StatusCode::OK.into_response()
}

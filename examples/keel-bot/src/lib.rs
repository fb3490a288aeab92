//! keel-bot: a Slack bot for keel-rs approvals.
//!
//! It runs beside the controller, as its own process, and talks to two services:
//!
//! - the **keel API** ([`keel_api::ApiClient`]): it polls the pending approval requests and
//!   casts votes. Give the bot a *delegate* token of the API
//!   (`ApiAuth::builder().delegate_token("slack", ...)`), so each vote is recorded as
//!   `slack:<Slack team id>/<Slack user id>` and one Slack user counts once. The API server
//!   accepts only the voters it is told to for that token (`KEEL_API_DELEGATE_VOTERS` of the
//!   controller; [`Config::server_voters`] prints the value matching the bot's allow-list),
//!   so a leaked bot token cannot make up voters;
//! - **Slack**: it posts each pending request once with Approve/Reject buttons
//!   (`chat.postMessage`, Block Kit `actions` with `action_id` `keel_approve`/`keel_reject` and
//!   the request id as `value`), and marks decided or deleted requests (`chat.update`).
//!
//! Only members of the Slack teams in [`Config::allowed_teams`] (and, when
//! [`Config::allowed_users`] is set, only those users) may list or vote; anyone else gets an
//! ephemeral refusal and the keel API is not called.
//!
//! It serves `POST /slack/commands` (`/keel list`, `/keel approve <id> [comment]`,
//! `/keel reject <id> [reason]`), `POST /slack/interactions` (button clicks) and
//! `GET /healthz`. Every request on `/slack/*` is checked against the app's signing secret on
//! its raw body before anything parses it ([`signature`]); unsigned, forged, stale (more than
//! five minutes off) and replayed requests get 401.
//!
//! With a state file ([`Config::state_file`]) the bot remembers what it posted across
//! restarts; without one, a restarted bot posts the pending requests again (and updates only
//! those new messages).
//!
//! ```no_run
//! use keel_bot::{Bot, Config};
//! use clap::Parser;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::parse();
//! let listener = tokio::net::TcpListener::bind(config.listen).await?;
//! Bot::new(config)?.run(listener, std::future::pending()).await?;
//! # Ok(())
//! # }
//! ```

mod bot;
pub mod config;
pub mod render;
pub mod signature;
pub mod slack;
pub mod state;

pub use bot::{Bot, PollReport};
pub use config::{Config, Secret};

//! What the controller reads from its environment besides flags, under Keel's own variable
//! names so that a Keel deployment's configuration carries over; every keel-rs application
//! reads them the same way, through the crates:
//!
//! - notifiers (`SLACK_TOKEN`, `SLACK_WEBHOOK_URL`, `MATTERMOST_ENDPOINT`,
//!   `TEAMS_WEBHOOK_URL`, `DISCORD_WEBHOOK_URL`, `WEBHOOK_ENDPOINT`, `NOTIFICATION_LEVEL`...):
//!   [`notifiers_from_env`], see [`keel_notify::env`] for the table;
//! - the credentials of the approvals API (`KEEL_API_AUTH`, `KEEL_API_DELEGATE_VOTERS`,
//!   `BASIC_AUTH_USER`, `BASIC_AUTH_PASSWORD`): [`api_auth_from_env`], see [`keel_api::env`];
//!   without any, the API is off (it is never open).

pub use keel_api::auth_from_env as api_auth_from_env;
pub use keel_notify::from_env as notifiers_from_env;

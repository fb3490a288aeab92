//! Notifiers of keel-rs.
//!
//! This crate will hold [`keel_core::Notifier`] implementations for Slack (incoming webhook and
//! `chat.postMessage`), Mattermost, Microsoft Teams, Discord and a generic, HMAC-signed JSON
//! webhook, with templated messages, retries with backoff and bounded queues whose overflow is
//! counted.
//!
//! Until then it only re-exports the trait it implements.

pub use keel_core::Notifier;

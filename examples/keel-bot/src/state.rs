//! Which requests the bot has posted, and where: kept in memory and, when configured, in a
//! small JSON file so a restarted bot neither posts a request twice nor loses the message
//! it has to update.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use keel_core::Error;
use serde::{Deserialize, Serialize};

use crate::slack::PostedMessage;

/// One posted request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Posted {
    /// Where the message is.
    pub message: PostedMessage,
    /// What the message shows, to update it only when that changes.
    pub shown: String,
}

/// The posted requests by id.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostedState {
    /// Format version of the file.
    pub version: u32,
    /// Request id → its message.
    pub posted: BTreeMap<String, Posted>,
}

const VERSION: u32 = 1;

fn io_error(action: String, e: std::io::Error) -> Error {
    Error::backend("bot state file", action, e)
}

impl PostedState {
    /// The state stored in `path`; empty when the file does not exist yet.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(PostedState {
                    version: VERSION,
                    ..PostedState::default()
                });
            }
            Err(e) => return Err(io_error(format!("read {}", path.display()), e)),
        };
        let state: PostedState = serde_json::from_slice(&bytes).map_err(|e| Error::Backend {
            backend: "bot state file".into(),
            action: format!("read {}", path.display()),
            message: format!("not a state file of this bot: {e}"),
            retryable: false,
            source: Some(Arc::new(e)),
        })?;
        if state.version != VERSION {
            return Err(Error::Backend {
                backend: "bot state file".into(),
                action: format!("read {}", path.display()),
                message: format!("format version {} is not {VERSION}", state.version),
                retryable: false,
                source: None,
            });
        }
        Ok(state)
    }

    /// Writes the state to `path` atomically: a temporary file beside it, then a rename.
    pub async fn save(&self, path: &Path) -> Result<(), Error> {
        let mut state = self.clone();
        state.version = VERSION;
        let bytes = serde_json::to_vec_pretty(&state).map_err(|e| {
            Error::backend("bot state file", format!("write {}", path.display()), e)
        })?;
        let tmp = temp_path(path);
        tokio::fs::write(&tmp, bytes)
            .await
            .map_err(|e| io_error(format!("write {}", tmp.display()), e))?;
        tokio::fs::rename(&tmp, path)
            .await
            .map_err(|e| io_error(format!("replace {}", path.display()), e))
    }
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trips_and_refuses_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert!(PostedState::load(&path).unwrap().posted.is_empty());
        let mut s = PostedState::default();
        s.posted.insert(
            "abc".into(),
            Posted {
                message: PostedMessage {
                    channel: "C1".into(),
                    ts: "1.2".into(),
                },
                shown: "pending 0".into(),
            },
        );
        s.save(&path).await.unwrap();
        let back = PostedState::load(&path).unwrap();
        assert_eq!(back.posted, s.posted);
        std::fs::write(&path, b"{\"nope\":1").unwrap();
        assert!(PostedState::load(&path).is_err());
    }
}

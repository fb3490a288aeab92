//! Which containers are tracked and how: Watchtower's `com.centurylinklabs.watchtower.*`
//! labels, read as Watchtower reads them, beside Keel's `keel.sh/*` keys (read by
//! [`keel_core::keel_keys`], as for every other target).

use std::collections::HashMap;
use std::time::Duration;

/// `com.centurylinklabs.watchtower.enable`: `true` opts a container in (required with
/// [`Scope::label_enable`]); `false` always opts it out.
pub const ENABLE: &str = "com.centurylinklabs.watchtower.enable";
/// `com.centurylinklabs.watchtower.monitor-only`: `true` reports this container's updates
/// and never applies them.
pub const MONITOR_ONLY: &str = "com.centurylinklabs.watchtower.monitor-only";
/// `com.centurylinklabs.watchtower.scope`: the scope a container belongs to; an updater
/// with a scope only tracks the containers of its scope.
pub const SCOPE: &str = "com.centurylinklabs.watchtower.scope";
/// `com.centurylinklabs.watchtower.depends-on`: comma-separated names of the containers
/// this one depends on: they are updated first, and this one is restarted after them.
pub const DEPENDS_ON: &str = "com.centurylinklabs.watchtower.depends-on";
/// `com.centurylinklabs.watchtower.stop-signal`: the signal that stops the container
/// (instead of its configured `StopSignal`).
pub const STOP_SIGNAL: &str = "com.centurylinklabs.watchtower.stop-signal";
/// `com.centurylinklabs.watchtower.lifecycle.pre-update`: a command run with `sh -c` in
/// the running container before it is replaced; a failure cancels the update.
pub const PRE_UPDATE: &str = "com.centurylinklabs.watchtower.lifecycle.pre-update";
/// `com.centurylinklabs.watchtower.lifecycle.post-update`: a command run with `sh -c` in
/// the new container once it runs.
pub const POST_UPDATE: &str = "com.centurylinklabs.watchtower.lifecycle.post-update";
/// `com.centurylinklabs.watchtower.lifecycle.pre-update-timeout`: minutes the pre-update
/// command may run (default 1; `0`: no limit).
pub const PRE_UPDATE_TIMEOUT: &str = "com.centurylinklabs.watchtower.lifecycle.pre-update-timeout";
/// `com.centurylinklabs.watchtower.lifecycle.post-update-timeout`: minutes the post-update
/// command may run (default 1; `0`: no limit).
pub const POST_UPDATE_TIMEOUT: &str =
    "com.centurylinklabs.watchtower.lifecycle.post-update-timeout";
/// `com.centurylinklabs.watchtower`: marks the updater's own container, never tracked.
pub const UPDATER: &str = "com.centurylinklabs.watchtower";

/// The longest a lifecycle command runs when its timeout label says `0` (no limit).
const UNLIMITED_HOOK: Duration = Duration::from_secs(24 * 60 * 60);

/// Which containers of the engine are tracked, by Watchtower's rules.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scope {
    /// Only containers labelled [`ENABLE`]`=true` (Watchtower's `--label-enable`).
    pub label_enable: bool,
    /// Only these container names (Watchtower's positional arguments); empty: all.
    pub names: Vec<String>,
    /// Only containers whose [`SCOPE`] label is this (Watchtower's `--scope`); `None`: the
    /// containers without a scope label... and every other one, as Watchtower does.
    pub scope: Option<String>,
    /// Every container labelled [`MONITOR_ONLY`] or not: report, never apply (Watchtower's
    /// `--monitor-only`).
    pub monitor_only: bool,
}

/// Why a container is not tracked, for the debug log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Skip {
    /// [`ENABLE`]`=false`.
    Disabled,
    /// [`Scope::label_enable`] and no [`ENABLE`]`=true`.
    NotEnabled,
    /// Not among [`Scope::names`].
    NotNamed,
    /// Another scope, or none where one is required.
    OtherScope,
    /// The updater's own container.
    Updater,
}

impl Scope {
    /// Whether the container `name` with `labels` is tracked; `Err` says why not.
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use keel_docker::labels::{ENABLE, Scope, Skip};
    ///
    /// let opted_out = HashMap::from([(ENABLE.to_owned(), "false".to_owned())]);
    /// assert_eq!(Scope::default().admits("web", &opted_out), Err(Skip::Disabled));
    /// let scope = Scope { label_enable: true, ..Scope::default() };
    /// assert_eq!(scope.admits("web", &HashMap::new()), Err(Skip::NotEnabled));
    /// ```
    pub fn admits(&self, name: &str, labels: &HashMap<String, String>) -> Result<(), Skip> {
        if flag(labels, UPDATER) {
            return Err(Skip::Updater);
        }
        match labels.get(ENABLE).map(|v| v.trim().to_ascii_lowercase()) {
            Some(v) if v == "false" => return Err(Skip::Disabled),
            Some(v) if v == "true" => {}
            _ if self.label_enable => return Err(Skip::NotEnabled),
            _ => {}
        }
        if !self.names.is_empty() && !self.names.iter().any(|n| n == name) {
            return Err(Skip::NotNamed);
        }
        if let Some(scope) = &self.scope {
            let theirs = labels.get(SCOPE).map(|s| s.trim());
            // Watchtower's `none` scope stands for "no scope label".
            let matches = match theirs {
                Some(theirs) => theirs == scope,
                None => scope == "none",
            };
            if !matches {
                return Err(Skip::OtherScope);
            }
        }
        Ok(())
    }

    /// Whether updates of a container with `labels` are only reported.
    pub fn monitor_only(&self, labels: &HashMap<String, String>) -> bool {
        self.monitor_only || flag(labels, MONITOR_ONLY)
    }
}

/// Whether label `key` says `true` (Watchtower reads its switches with Go's ParseBool).
pub(crate) fn flag(labels: &HashMap<String, String>, key: &str) -> bool {
    labels.get(key).is_some_and(|v| {
        matches!(
            v.trim(),
            "1" | "t" | "T" | "true" | "TRUE" | "True" | "yes" | "on"
        )
    })
}

/// The names in the [`DEPENDS_ON`] label, without leading slashes.
pub(crate) fn depends_on(labels: &HashMap<String, String>) -> Vec<String> {
    labels
        .get(DEPENDS_ON)
        .map(|v| {
            v.split(',')
                .map(|n| n.trim().trim_start_matches('/').to_owned())
                .filter(|n| !n.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// A lifecycle command and how long it may run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Hook {
    pub(crate) command: String,
    pub(crate) timeout: Duration,
}

/// The lifecycle command under `key`, with the timeout under `timeout_key` (minutes).
pub(crate) fn hook(labels: &HashMap<String, String>, key: &str, timeout_key: &str) -> Option<Hook> {
    let command = labels
        .get(key)
        .map(|c| c.trim())
        .filter(|c| !c.is_empty())?;
    let timeout = match labels
        .get(timeout_key)
        .and_then(|t| t.trim().parse::<u64>().ok())
    {
        Some(0) => UNLIMITED_HOOK,
        Some(minutes) => Duration::from_secs(minutes.saturating_mul(60)),
        None => Duration::from_secs(60),
    };
    Some(Hook {
        command: command.to_owned(),
        timeout,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn watchtowers_selection_rules() {
        let all = Scope::default();
        let label_enable = Scope {
            label_enable: true,
            ..Scope::default()
        };
        let named = Scope {
            names: vec!["web".into()],
            ..Scope::default()
        };
        let scoped = Scope {
            scope: Some("prod".into()),
            ..Scope::default()
        };
        let unscoped = Scope {
            scope: Some("none".into()),
            ..Scope::default()
        };
        let enabled = labels(&[(ENABLE, "true")]);
        let disabled = labels(&[(ENABLE, "false")]);
        let prod = labels(&[(SCOPE, "prod")]);
        type Case<'a> = (
            &'a Scope,
            &'a str,
            &'a HashMap<String, String>,
            Result<(), Skip>,
        );
        let cases: &[Case<'_>] = &[
            (&all, "web", &HashMap::new(), Ok(())),
            (&all, "web", &disabled, Err(Skip::Disabled)),
            (
                &all,
                "me",
                &labels(&[(UPDATER, "true")]),
                Err(Skip::Updater),
            ),
            (&label_enable, "web", &enabled, Ok(())),
            (&label_enable, "web", &HashMap::new(), Err(Skip::NotEnabled)),
            (&label_enable, "web", &disabled, Err(Skip::Disabled)),
            (&named, "web", &HashMap::new(), Ok(())),
            (&named, "db", &HashMap::new(), Err(Skip::NotNamed)),
            (&named, "web", &disabled, Err(Skip::Disabled)),
            (&scoped, "web", &prod, Ok(())),
            (&scoped, "web", &HashMap::new(), Err(Skip::OtherScope)),
            (&unscoped, "web", &HashMap::new(), Ok(())),
            (&unscoped, "web", &prod, Err(Skip::OtherScope)),
            (&all, "web", &prod, Ok(())),
        ];
        for (scope, name, labels, expected) in cases {
            assert_eq!(
                &scope.admits(name, labels),
                expected,
                "{scope:?} {name} {labels:?}"
            );
        }
    }

    #[test]
    fn monitor_only_by_flag_or_label() {
        let watching = Scope {
            monitor_only: true,
            ..Scope::default()
        };
        assert!(watching.monitor_only(&HashMap::new()));
        assert!(Scope::default().monitor_only(&labels(&[(MONITOR_ONLY, "true")])));
        assert!(!Scope::default().monitor_only(&labels(&[(MONITOR_ONLY, "false")])));
    }

    #[test]
    fn dependencies_and_hooks() {
        let l = labels(&[
            (DEPENDS_ON, " /db, cache ,,"),
            (PRE_UPDATE, "/bin/drain"),
            (PRE_UPDATE_TIMEOUT, "0"),
            (POST_UPDATE, "  "),
        ]);
        assert_eq!(depends_on(&l), ["db", "cache"]);
        let pre = hook(&l, PRE_UPDATE, PRE_UPDATE_TIMEOUT).unwrap();
        assert_eq!(pre.command, "/bin/drain");
        assert_eq!(pre.timeout, UNLIMITED_HOOK);
        assert_eq!(hook(&l, POST_UPDATE, POST_UPDATE_TIMEOUT), None);
        let l = labels(&[(POST_UPDATE, "echo ok"), (POST_UPDATE_TIMEOUT, "2")]);
        let post = hook(&l, POST_UPDATE, POST_UPDATE_TIMEOUT).unwrap();
        assert_eq!(post.timeout, Duration::from_secs(120));
    }
}

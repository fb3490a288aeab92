//! Keel's `keel.sh/*` keys and how a workload's annotations and labels turn into the
//! configuration of its tracked images.
//!
//! Each key is read from the annotations first and from the labels when the annotations do not
//! carry it, the same way for every key.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use keel_core::policy::{PolicyOptions, PolicySpec, VersionPolicy};
use keel_core::target::Trigger;
use keel_core::trigger::{DEFAULT_POLL_SCHEDULE, Schedule};
use regex::Regex;

/// `keel.sh/policy`: the policy string (`all`, `major`, `minor`, `patch`, `force`,
/// `glob:<pattern>`, `regexp:<re>`, `semver:<range>`, ...). A workload is tracked when it has
/// one (other than `never`).
pub const POLICY: &str = "keel.sh/policy";
/// `keel.sh/trigger`: `poll` to poll the registry; `default` (or absent): webhooks only.
pub const TRIGGER: &str = "keel.sh/trigger";
/// `keel.sh/pollSchedule`: when to poll (default `@every 1m`).
pub const POLL_SCHEDULE: &str = "keel.sh/pollSchedule";
/// `keel.sh/matchTag`: with `force`, follow the current tag to new digests.
pub const MATCH_TAG: &str = "keel.sh/matchTag";
/// `keel.sh/match-tag`: Keel's older spelling of [`MATCH_TAG`].
pub const MATCH_TAG_LEGACY: &str = "keel.sh/match-tag";
/// `keel.sh/matchPreRelease`: whether `major`/`minor`/`patch` keep to the current
/// pre-release channel (default true).
pub const MATCH_PRE_RELEASE: &str = "keel.sh/matchPreRelease";
/// `keel.sh/approvals`: how many approvals an update needs (default 0).
pub const APPROVALS: &str = "keel.sh/approvals";
/// `keel.sh/approvalDeadline`: hours an approval request stays open (default 24).
pub const APPROVAL_DEADLINE: &str = "keel.sh/approvalDeadline";
/// `keel.sh/monitorContainers`: a regex; only containers whose name it matches are tracked.
pub const MONITOR_CONTAINERS: &str = "keel.sh/monitorContainers";
/// `keel.sh/initContainers`: `true` to track init containers too.
pub const INIT_CONTAINERS: &str = "keel.sh/initContainers";
/// `keel.sh/imagePullSecret`: extra pull secrets (comma-separated names) for the registry.
pub const IMAGE_PULL_SECRET: &str = "keel.sh/imagePullSecret";
/// `keel.sh/notify`: extra notification channels (comma-separated).
pub const NOTIFY: &str = "keel.sh/notify";
/// `keel.sh/releaseNotes`: a release-notes link passed on to notifications.
pub const RELEASE_NOTES: &str = "keel.sh/releaseNotes";

/// Written by keel-k8s on the workload: the digest each container was last updated to, as a
/// JSON object from container key (`app`, `init:migrate`) to image reference with digest.
pub const DIGESTS: &str = "keel.sh/digests";
/// Written by keel-k8s on the pod template when an update keeps the image string (same tag,
/// new digest), so the workload still rolls.
pub const UPDATE_TIME: &str = "keel.sh/update-time";
/// The annotation `kubectl rollout history` shows; keel-k8s says what it changed.
pub const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";

/// The default approval deadline, Keel's 24 hours.
pub const DEFAULT_APPROVAL_DEADLINE: Duration = Duration::from_secs(24 * 60 * 60);

/// A key with a bad value on a workload, which is skipped for it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Problem {
    /// The workload's kind (`deployment`, ...).
    pub kind: String,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The key, e.g. `keel.sh/approvals`, or `image` for a container image that does not parse.
    pub key: String,
    /// The value as written.
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}/{}: {} = {:?}: {}",
            self.kind, self.namespace, self.name, self.key, self.value, self.reason
        )
    }
}

/// A key-level error before it is tied to its workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct KeyError {
    pub(crate) key: String,
    pub(crate) value: String,
    pub(crate) reason: String,
}

impl KeyError {
    fn new(key: &str, value: &str, reason: impl Into<String>) -> Self {
        KeyError {
            key: key.to_owned(),
            value: value.to_owned(),
            reason: reason.into(),
        }
    }
}

/// A workload's Keel configuration, parsed.
#[derive(Clone, Debug)]
pub(crate) struct KeelConfig {
    /// The policy string as written.
    pub(crate) policy_text: String,
    pub(crate) policy: Arc<VersionPolicy>,
    pub(crate) trigger: Trigger,
    pub(crate) approvals: u32,
    pub(crate) approval_deadline: Duration,
    pub(crate) monitor_containers: Option<Regex>,
    pub(crate) init_containers: bool,
    pub(crate) notify: Vec<String>,
    pub(crate) release_notes: Option<String>,
}

/// Reads keys: annotation first, then label.
pub(crate) struct Keys<'a> {
    annotations: Option<&'a BTreeMap<String, String>>,
    labels: Option<&'a BTreeMap<String, String>>,
}

impl<'a> Keys<'a> {
    pub(crate) fn new(
        annotations: Option<&'a BTreeMap<String, String>>,
        labels: Option<&'a BTreeMap<String, String>>,
    ) -> Self {
        Keys {
            annotations,
            labels,
        }
    }

    /// The value of `key`, trimmed: from the annotations, else from the labels.
    pub(crate) fn get(&self, key: &str) -> Option<&'a str> {
        self.annotations
            .and_then(|a| a.get(key))
            .or_else(|| self.labels.and_then(|l| l.get(key)))
            .map(|v| v.trim())
    }

    fn bool(&self, key: &str) -> Result<Option<bool>, KeyError> {
        self.get(key).map(|v| parse_bool(key, v)).transpose()
    }
}

/// Go's `strconv.ParseBool`, which Keel uses.
fn parse_bool(key: &str, value: &str) -> Result<bool, KeyError> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(KeyError::new(key, value, "expected `true` or `false`")),
    }
}

fn comma_list(value: Option<&str>) -> Vec<String> {
    value
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Maps Keel's policy spellings onto keel-core's: `none` (Keel's "no policy") reads as
/// `never`; everything else (`all`, `major`, `minor`, `patch`, `force`, `glob:`, `regexp:`,
/// and keel-core's own `semver:`... strings) parses as written.
fn policy_spec(value: &str) -> Result<PolicySpec, KeyError> {
    let spelled = if value.eq_ignore_ascii_case("none") {
        "never"
    } else {
        value
    };
    spelled
        .parse::<PolicySpec>()
        .map_err(|e| KeyError::new(POLICY, value, e.reason().to_owned()))
}

/// The reason of a schedule error without the repeated input.
fn schedule_reason(error: &keel_core::Error) -> String {
    match error {
        keel_core::Error::InvalidInput(e) => e.reason().to_owned(),
        other => other.to_string(),
    }
}

impl KeelConfig {
    /// The configuration of a workload, `Ok(None)` when it is not tracked (no policy, or
    /// `never`), or the first key with a bad value.
    pub(crate) fn parse(keys: &Keys<'_>) -> Result<Option<KeelConfig>, KeyError> {
        let Some(policy_text) = keys.get(POLICY) else {
            return Ok(None);
        };
        let spec = policy_spec(policy_text)?;
        if matches!(spec, PolicySpec::Never) {
            return Ok(None);
        }

        let match_tag = match keys.bool(MATCH_TAG)? {
            Some(v) => v,
            None => keys.bool(MATCH_TAG_LEGACY)?.unwrap_or(false),
        };
        let options = PolicyOptions {
            match_pre_release: keys.bool(MATCH_PRE_RELEASE)?.unwrap_or(true),
            // As in Keel, only `force` follows tags; the switch means nothing to the others.
            match_tag: match_tag && matches!(spec, PolicySpec::Force),
            ..PolicyOptions::default()
        };
        let policy = VersionPolicy::new(spec, &options)
            .map_err(|e| KeyError::new(POLICY, policy_text, e.reason().to_owned()))?;

        let trigger = match keys.get(TRIGGER) {
            None | Some("") | Some("default") | Some("webhook") => Trigger::Webhook,
            Some("poll") => {
                let schedule_text = match keys.get(POLL_SCHEDULE) {
                    Some(s) if !s.is_empty() => s,
                    _ => DEFAULT_POLL_SCHEDULE,
                };
                let schedule = schedule_text.parse::<Schedule>().map_err(|e| {
                    KeyError::new(POLL_SCHEDULE, schedule_text, schedule_reason(&e))
                })?;
                Trigger::Poll {
                    schedule: schedule.to_string(),
                }
            }
            Some(other) => {
                return Err(KeyError::new(
                    TRIGGER,
                    other,
                    "expected `poll` or `default` (webhooks only)",
                ));
            }
        };

        let approvals = match keys.get(APPROVALS) {
            None | Some("") => 0,
            Some(v) => v.parse::<u32>().map_err(|_| {
                KeyError::new(
                    APPROVALS,
                    v,
                    "expected a whole number of approvals, e.g. `1`",
                )
            })?,
        };
        let approval_deadline = match keys.get(APPROVAL_DEADLINE) {
            None | Some("") => DEFAULT_APPROVAL_DEADLINE,
            Some(v) => match v.parse::<u64>() {
                Ok(hours) if hours > 0 && hours <= 24 * 365 => Duration::from_secs(hours * 60 * 60),
                _ => {
                    return Err(KeyError::new(
                        APPROVAL_DEADLINE,
                        v,
                        "expected a whole number of hours between 1 and 8760, e.g. `24`",
                    ));
                }
            },
        };
        let monitor_containers = match keys.get(MONITOR_CONTAINERS) {
            None | Some("") => None,
            Some(v) => Some(Regex::new(v).map_err(|e| {
                let line = e
                    .to_string()
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("")
                    .trim()
                    .trim_start_matches("error: ")
                    .to_owned();
                KeyError::new(
                    MONITOR_CONTAINERS,
                    v,
                    format!("bad regular expression: {line}"),
                )
            })?),
        };
        let init_containers = keys.bool(INIT_CONTAINERS)?.unwrap_or(false);
        let release_notes = keys
            .get(RELEASE_NOTES)
            .filter(|v| !v.is_empty())
            .map(str::to_owned);

        Ok(Some(KeelConfig {
            policy_text: policy_text.to_owned(),
            policy: Arc::new(policy),
            trigger,
            approvals,
            approval_deadline,
            monitor_containers,
            init_containers,
            notify: comma_list(keys.get(NOTIFY)),
            release_notes,
        }))
    }

    /// Whether a container of this name is tracked.
    pub(crate) fn monitors(&self, container: &str, init: bool) -> bool {
        if init && !self.init_containers {
            return false;
        }
        self.monitor_containers
            .as_ref()
            .is_none_or(|re| re.is_match(container))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn parse(
        annotations: &[(&str, &str)],
        labels: &[(&str, &str)],
    ) -> Result<Option<KeelConfig>, KeyError> {
        let a = map(annotations);
        let l = map(labels);
        KeelConfig::parse(&Keys::new(Some(&a), Some(&l)))
    }

    #[test]
    fn untracked_without_policy_or_with_never() {
        assert!(parse(&[], &[]).unwrap().is_none());
        assert!(parse(&[(TRIGGER, "poll")], &[]).unwrap().is_none());
        assert!(parse(&[(POLICY, "never")], &[]).unwrap().is_none());
        assert!(parse(&[(POLICY, "none")], &[]).unwrap().is_none());
    }

    #[test]
    fn defaults() {
        let c = parse(&[(POLICY, "minor")], &[]).unwrap().unwrap();
        assert_eq!(c.policy.spec().to_string(), "minor");
        assert_eq!(c.trigger, Trigger::Webhook);
        assert_eq!(c.approvals, 0);
        assert_eq!(c.approval_deadline, DEFAULT_APPROVAL_DEADLINE);
        assert!(c.policy.options().match_pre_release);
        assert!(!c.init_containers);
        assert!(c.monitors("anything", false));
        assert!(!c.monitors("anything", true));
    }

    #[test]
    fn every_key() {
        let c = parse(
            &[
                (POLICY, "force"),
                (TRIGGER, "poll"),
                (POLL_SCHEDULE, "@every 90s"),
                (MATCH_TAG, "true"),
                (APPROVALS, "2"),
                (APPROVAL_DEADLINE, "5"),
                (MONITOR_CONTAINERS, "^app"),
                (INIT_CONTAINERS, "true"),
                (IMAGE_PULL_SECRET, "a, b"),
                (NOTIFY, "#ops,#dev"),
                (RELEASE_NOTES, "https://example.com/notes"),
            ],
            &[],
        )
        .unwrap()
        .unwrap();
        assert!(c.policy.options().match_tag);
        assert_eq!(
            c.trigger,
            Trigger::Poll {
                schedule: "@every 1m30s".into()
            }
        );
        assert_eq!(c.approvals, 2);
        assert_eq!(c.approval_deadline, Duration::from_secs(5 * 3600));
        assert!(c.monitors("app-main", false));
        assert!(!c.monitors("sidecar", false));
        assert!(c.monitors("app-init", true));
        assert_eq!(c.notify, ["#ops", "#dev"]);
        assert_eq!(
            c.release_notes.as_deref(),
            Some("https://example.com/notes")
        );
    }

    #[test]
    fn poll_defaults_to_every_minute() {
        let c = parse(&[(POLICY, "patch"), (TRIGGER, "poll")], &[])
            .unwrap()
            .unwrap();
        assert_eq!(
            c.trigger,
            Trigger::Poll {
                schedule: "@every 1m".into()
            }
        );
    }

    #[test]
    fn legacy_match_tag_and_annotation_precedence() {
        let c = parse(&[(POLICY, "force"), (MATCH_TAG_LEGACY, "true")], &[])
            .unwrap()
            .unwrap();
        assert!(c.policy.options().match_tag);
        // The new spelling wins over the legacy one.
        let c = parse(
            &[
                (POLICY, "force"),
                (MATCH_TAG, "false"),
                (MATCH_TAG_LEGACY, "true"),
            ],
            &[],
        )
        .unwrap()
        .unwrap();
        assert!(!c.policy.options().match_tag);
        // Annotations win over labels, key by key.
        let c = parse(
            &[(POLICY, "major"), (APPROVALS, "3")],
            &[(POLICY, "patch"), (APPROVALS, "1"), (TRIGGER, "poll")],
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.policy.spec().to_string(), "major");
        assert_eq!(c.approvals, 3);
        assert!(matches!(c.trigger, Trigger::Poll { .. }));
        // matchTag means nothing to other policies (as in Keel) rather than an error.
        let c = parse(&[(POLICY, "minor"), (MATCH_TAG, "true")], &[])
            .unwrap()
            .unwrap();
        assert!(!c.policy.options().match_tag);
    }

    #[test]
    fn bad_values_name_key_and_value() {
        for (key, value, pairs) in [
            (POLICY, "minr", vec![(POLICY, "minr")]),
            (POLICY, "regexp:(", vec![(POLICY, "regexp:(")]),
            (APPROVALS, "two", vec![(POLICY, "all"), (APPROVALS, "two")]),
            (APPROVALS, "-1", vec![(POLICY, "all"), (APPROVALS, "-1")]),
            (
                APPROVAL_DEADLINE,
                "1d",
                vec![(POLICY, "all"), (APPROVAL_DEADLINE, "1d")],
            ),
            (
                MONITOR_CONTAINERS,
                "app(",
                vec![(POLICY, "all"), (MONITOR_CONTAINERS, "app(")],
            ),
            (
                INIT_CONTAINERS,
                "yes please",
                vec![(POLICY, "all"), (INIT_CONTAINERS, "yes please")],
            ),
            (
                TRIGGER,
                "sometimes",
                vec![(POLICY, "all"), (TRIGGER, "sometimes")],
            ),
            (
                POLL_SCHEDULE,
                "every minute",
                vec![
                    (POLICY, "all"),
                    (TRIGGER, "poll"),
                    (POLL_SCHEDULE, "every minute"),
                ],
            ),
        ] {
            let e = parse(&pairs, &[]).unwrap_err();
            assert_eq!((e.key.as_str(), e.value.as_str()), (key, value), "{e:?}");
            assert!(!e.reason.is_empty());
        }
    }
}

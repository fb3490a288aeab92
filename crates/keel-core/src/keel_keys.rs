//! Keel's `keel.sh/*` dialect: the keys, their defaults and the rules for their values, read
//! in one place for every target.
//!
//! Teams migrating from Keel keep writing `keel.sh/policy: minor` on their workloads. Where
//! the keys come from differs by target: keel-k8s reads a workload's annotations and then its
//! labels, keel-git the annotations and labels of a manifest or a line comment after an
//! `image:` value. Each hands [`KeelConfig::parse`] a lookup from key to value; the rules below
//! are the same for all of them.
//!
//! # Rules
//! - Values are trimmed; an empty value counts as absent.
//! - [`POLICY`]: a policy string (`all`, `major`, `minor`, `patch`, `force`, `glob:<pattern>`,
//!   `regexp:<re>`, and keel-core's own `semver:<range>`...). `none` is Keel's "no policy"
//!   and reads as `never`: the workload is not tracked ([`KeelConfig::tracked_policy`]).
//! - Switches ([`MATCH_TAG`], [`MATCH_PRE_RELEASE`], [`INIT_CONTAINERS`]) follow Go's
//!   `strconv.ParseBool`, as Keel does: `1`, `t`, `T`, `true`, `TRUE`, `True` and `0`, `f`,
//!   `F`, `false`, `FALSE`, `False`; anything else is an error.
//! - [`MATCH_TAG`] wins over its legacy spelling [`MATCH_TAG_LEGACY`] when both are given; it
//!   only means something to `force` (for the other policies it is accepted and ignored).
//! - [`TRIGGER`]`: poll` enables polling; [`POLL_SCHEDULE`] only says when (alone it does not
//!   enable polling, and is not read). Without a schedule, a poll-triggered image polls on the
//!   poller's default schedule (Keel's `@every 1m`, or what the application configures).
//! - [`APPROVALS`]: a whole number (default 0); [`APPROVAL_DEADLINE`]: whole hours from 1 to
//!   8760 (default 24).
//! - [`NOTIFY`] and [`IMAGE_PULL_SECRET`]: comma-separated lists; [`RELEASE_NOTES`]: a link.
//! - [`PAUSED`] (keel-rs's own): the containers whose tracking is paused, comma-separated, or
//!   `*` for all; a paused image is listed but not checked until it is resumed.
//! - A dashboard may change only the [`EDITABLE`] keys, through [`changed_settings`], which
//!   checks the result by these rules before anything is written.
//!
//! ```
//! use std::collections::BTreeMap;
//! use keel_core::keel_keys::{self, KeelConfig};
//! use keel_core::target::Trigger;
//!
//! let annotations = BTreeMap::from([
//!     (keel_keys::POLICY, "minor"),
//!     (keel_keys::TRIGGER, "poll"),
//!     (keel_keys::POLL_SCHEDULE, "@every 10m"),
//!     (keel_keys::APPROVALS, "1"),
//! ]);
//! let config = KeelConfig::parse(|key| annotations.get(key).copied()).unwrap();
//! assert_eq!(config.tracked_policy().unwrap().to_string(), "minor");
//! assert_eq!(config.settings.approvals, 1);
//! assert_eq!(
//!     config.settings.trigger,
//!     Trigger::Poll { schedule: Some("@every 10m".parse().unwrap()) }
//! );
//!
//! let error = KeelConfig::parse(|key| (key == keel_keys::APPROVALS).then_some("two")).unwrap_err();
//! assert_eq!(error.key, keel_keys::APPROVALS);
//! ```

use std::fmt;
use std::time::Duration;

use regex::Regex;

use crate::policy::{PolicyOptions, PolicySpec, VersionPolicy, regex_reason};
use crate::target::{TrackedImage, Trigger};
use crate::trigger::Schedule;

/// `keel.sh/policy`: the policy string (`all`, `major`, `minor`, `patch`, `force`,
/// `glob:<pattern>`, `regexp:<re>`, `semver:<range>`, ...). A workload is tracked when it has
/// one other than `never` (or Keel's `none`).
pub const POLICY: &str = "keel.sh/policy";
/// `keel.sh/trigger`: `poll` to poll the registry; `default` (or absent): webhooks only.
pub const TRIGGER: &str = "keel.sh/trigger";
/// `keel.sh/pollSchedule`: when to poll, with `keel.sh/trigger: poll` (default: the poller's
/// default schedule, Keel's `@every 1m`).
pub const POLL_SCHEDULE: &str = "keel.sh/pollSchedule";
/// `keel.sh/matchTag`: with `force`, follow the current tag to new digests.
pub const MATCH_TAG: &str = "keel.sh/matchTag";
/// `keel.sh/match-tag`: Keel's older spelling of [`MATCH_TAG`]; [`MATCH_TAG`] wins when both
/// are set.
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
/// `keel.sh/paused` (keel-rs's own key): the containers whose tracking is paused,
/// comma-separated, or `*` for every container of the workload.
pub const PAUSED: &str = "keel.sh/paused";

/// The keys a dashboard may set or clear on a workload ([`changed_settings`]).
pub const EDITABLE: [&str; 6] = [
    POLICY,
    TRIGGER,
    POLL_SCHEDULE,
    APPROVALS,
    APPROVAL_DEADLINE,
    PAUSED,
];

/// The default approval deadline, Keel's 24 hours.
pub const DEFAULT_APPROVAL_DEADLINE: Duration = Duration::from_secs(24 * 60 * 60);

/// A key with a value that does not parse: of Keel's keys here, and of every other dialect of
/// annotations or labels (keel-argocd's `argocd-image-updater.argoproj.io/*` keys), so that a
/// bad setting reads the same whichever dialect it is written in.
///
/// ```
/// use keel_core::keel_keys::{KeyError, APPROVALS};
/// let error = KeyError::new(APPROVALS, "two", "expected a whole number");
/// assert_eq!(error.to_string(), r#"keel.sh/approvals = "two": expected a whole number"#);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeyError {
    /// The whole key, e.g. `keel.sh/approvals`.
    pub key: String,
    /// The value as written (Keel's values trimmed).
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
}

impl KeyError {
    /// The error of `key`, whose `value` is wrong for `reason`.
    pub fn new(
        key: impl Into<String>,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        KeyError {
            key: key.into(),
            value: value.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} = {:?}: {}", self.key, self.value, self.reason)
    }
}

impl std::error::Error for KeyError {}

/// Go's `strconv.ParseBool`, which Keel uses for its switches: `1`, `t`, `T`, `true`, `TRUE`,
/// `True` are true, `0`, `f`, `F`, `false`, `FALSE`, `False` are false.
///
/// # Errors
/// A [`KeyError`] naming `key` for any other value.
///
/// ```
/// use keel_core::keel_keys::{parse_bool, INIT_CONTAINERS};
/// assert_eq!(parse_bool(INIT_CONTAINERS, "T"), Ok(true));
/// assert_eq!(parse_bool(INIT_CONTAINERS, "0"), Ok(false));
/// assert!(parse_bool(INIT_CONTAINERS, "yes").is_err());
/// ```
pub fn parse_bool(key: &str, value: &str) -> Result<bool, KeyError> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(KeyError::new(key, value, "expected `true` or `false`")),
    }
}

/// The names [`IMAGE_PULL_SECRET`] lists (comma-separated, trimmed, empty ones dropped), as
/// `lookup` finds them; for callers that need a workload's pull secrets without the rest of
/// its keys.
///
/// ```
/// use keel_core::keel_keys::{image_pull_secrets, IMAGE_PULL_SECRET};
/// let names = image_pull_secrets(|key| (key == IMAGE_PULL_SECRET).then_some(" a, ,b "));
/// assert_eq!(names, ["a", "b"]);
/// ```
pub fn image_pull_secrets<'a>(lookup: impl Fn(&str) -> Option<&'a str>) -> Vec<String> {
    trimmed(&lookup, IMAGE_PULL_SECRET)
        .map(comma_list)
        .unwrap_or_default()
}

/// Keel's settings of a tracked image besides its policy: what goes on each
/// [`TrackedImage`] ([`KeelSettings::apply_to`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeelSettings {
    /// [`TRIGGER`] and [`POLL_SCHEDULE`]: webhooks only, or polling (on the written schedule,
    /// or on the poller's default when `schedule` is `None`).
    pub trigger: Trigger,
    /// [`MATCH_TAG`] (or [`MATCH_TAG_LEGACY`]) as written, whatever the policy. The policy's
    /// options carry it only for `force`.
    pub match_tag: bool,
    /// [`APPROVALS`]: how many approvals an update needs (0: none).
    pub approvals: u32,
    /// [`APPROVAL_DEADLINE`]: how long an approval request stays open.
    pub approval_deadline: Duration,
    /// [`NOTIFY`]: extra notification channels.
    pub notify: Vec<String>,
    /// [`RELEASE_NOTES`]: a release-notes link.
    pub release_notes: Option<String>,
}

impl Default for KeelSettings {
    fn default() -> Self {
        KeelSettings {
            trigger: Trigger::Webhook,
            match_tag: false,
            approvals: 0,
            approval_deadline: DEFAULT_APPROVAL_DEADLINE,
            notify: Vec::new(),
            release_notes: None,
        }
    }
}

impl KeelSettings {
    /// `image` with these settings: trigger, approvals, approval deadline, notification
    /// channels and release notes.
    pub fn apply_to(&self, image: TrackedImage) -> TrackedImage {
        let image = image
            .with_trigger(self.trigger.clone())
            .with_approvals(self.approvals)
            .with_approval_deadline(self.approval_deadline)
            .with_notify(self.notify.clone());
        match &self.release_notes {
            Some(notes) => image.with_release_notes(notes.clone()),
            None => image,
        }
    }
}

/// A workload's (or an image line's) `keel.sh/*` keys, parsed.
#[derive(Clone, Debug)]
pub struct KeelConfig {
    /// [`POLICY`], parsed (`none` reads as `never`); `None` when absent or empty.
    pub policy: Option<PolicySpec>,
    /// The policy's options from the keys: [`MATCH_PRE_RELEASE`], and [`MATCH_TAG`] when the
    /// policy is `force`.
    pub options: PolicyOptions,
    /// The settings of each tracked image.
    pub settings: KeelSettings,
    /// [`MONITOR_CONTAINERS`]: only containers whose name matches are tracked.
    pub monitor_containers: Option<Regex>,
    /// [`INIT_CONTAINERS`]: whether init containers are tracked too.
    pub init_containers: bool,
    /// [`IMAGE_PULL_SECRET`]: extra pull secrets.
    pub image_pull_secrets: Vec<String>,
    /// [`PAUSED`]: the containers whose tracking is paused (`*`: all).
    pub paused: Vec<String>,
}

impl KeelConfig {
    /// Parses the keys `lookup` finds (it answers `None` for a key that is not set); see the
    /// [module docs](self) for the rules.
    ///
    /// # Errors
    /// The first key whose value does not parse.
    pub fn parse<'a>(lookup: impl Fn(&str) -> Option<&'a str>) -> Result<KeelConfig, KeyError> {
        let policy = trimmed(&lookup, POLICY).map(policy_spec).transpose()?;
        KeelConfig::parse_with_policy(policy, lookup)
    }

    /// As [`parse`](Self::parse), for a target that only tracks workloads with a policy:
    /// `Ok(None)` without one (or with `never`/`none`), and then the other keys are not read,
    /// so a bad value on a workload Keel does not track is no error.
    ///
    /// # Errors
    /// The first key whose value does not parse.
    pub fn parse_tracked<'a>(
        lookup: impl Fn(&str) -> Option<&'a str>,
    ) -> Result<Option<KeelConfig>, KeyError> {
        let policy = trimmed(&lookup, POLICY).map(policy_spec).transpose()?;
        match policy {
            None | Some(PolicySpec::Never) => Ok(None),
            policy => KeelConfig::parse_with_policy(policy, lookup).map(Some),
        }
    }

    fn parse_with_policy<'a>(
        policy: Option<PolicySpec>,
        lookup: impl Fn(&str) -> Option<&'a str>,
    ) -> Result<KeelConfig, KeyError> {
        let get = |key: &str| trimmed(&lookup, key);
        let bool_key = |key: &str| get(key).map(|v| parse_bool(key, v)).transpose();

        let match_tag = match bool_key(MATCH_TAG)? {
            Some(v) => v,
            None => bool_key(MATCH_TAG_LEGACY)?.unwrap_or(false),
        };
        let options = PolicyOptions {
            match_pre_release: bool_key(MATCH_PRE_RELEASE)?.unwrap_or(true),
            // As in Keel, only `force` follows tags; the switch means nothing to the others.
            match_tag: match_tag && matches!(policy, Some(PolicySpec::Force)),
            ..PolicyOptions::default()
        };

        let trigger = match get(TRIGGER) {
            None | Some("default") | Some("webhook") => Trigger::Webhook,
            Some("poll") => {
                let schedule = get(POLL_SCHEDULE)
                    .map(|text| {
                        text.parse::<Schedule>()
                            .map_err(|e| KeyError::new(POLL_SCHEDULE, text, schedule_reason(&e)))
                    })
                    .transpose()?;
                Trigger::Poll { schedule }
            }
            Some(other) => {
                return Err(KeyError::new(
                    TRIGGER,
                    other,
                    "expected `poll` or `default` (webhooks only)",
                ));
            }
        };
        let approvals = match get(APPROVALS) {
            None => 0,
            Some(v) => v.parse::<u32>().map_err(|_| {
                KeyError::new(
                    APPROVALS,
                    v,
                    "expected a whole number of approvals, e.g. `1`",
                )
            })?,
        };
        let approval_deadline = match get(APPROVAL_DEADLINE) {
            None => DEFAULT_APPROVAL_DEADLINE,
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
        let monitor_containers = get(MONITOR_CONTAINERS)
            .map(|v| {
                Regex::new(v).map_err(|e| KeyError::new(MONITOR_CONTAINERS, v, regex_reason(&e)))
            })
            .transpose()?;
        let init_containers = bool_key(INIT_CONTAINERS)?.unwrap_or(false);

        Ok(KeelConfig {
            policy,
            options,
            settings: KeelSettings {
                trigger,
                match_tag,
                approvals,
                approval_deadline,
                notify: get(NOTIFY).map(comma_list).unwrap_or_default(),
                release_notes: get(RELEASE_NOTES).map(str::to_owned),
            },
            monitor_containers,
            init_containers,
            image_pull_secrets: image_pull_secrets(&lookup),
            paused: get(PAUSED).map(comma_list).unwrap_or_default(),
        })
    }

    /// The policy when it tracks the workload: `None` without a policy or with `never`
    /// (`none`).
    pub fn tracked_policy(&self) -> Option<&PolicySpec> {
        self.policy
            .as_ref()
            .filter(|p| !matches!(p, PolicySpec::Never))
    }

    /// The tracked policy built with its options, ready for a [`TrackedImage`]; `Ok(None)`
    /// when the workload is not tracked.
    ///
    /// # Errors
    /// A [`KeyError`] on [`POLICY`] when the policy and its options do not go together.
    pub fn version_policy(&self) -> Result<Option<VersionPolicy>, KeyError> {
        self.tracked_policy()
            .map(|spec| {
                VersionPolicy::new(spec.clone(), &self.options)
                    .map_err(|e| KeyError::new(POLICY, spec.to_string(), e.reason().to_owned()))
            })
            .transpose()
    }

    /// Whether a container of this name is tracked: its name matches [`MONITOR_CONTAINERS`]
    /// (when set), and an init container only with [`INIT_CONTAINERS`].
    pub fn monitors(&self, container: &str, init: bool) -> bool {
        if init && !self.init_containers {
            return false;
        }
        self.monitor_containers
            .as_ref()
            .is_none_or(|re| re.is_match(container))
    }

    /// Whether tracking of the container named `container` is paused ([`PAUSED`] names it,
    /// or is `*`).
    pub fn is_paused(&self, container: &str) -> bool {
        self.paused.iter().any(|c| c == "*" || c == container)
    }
}

/// The settings `current` becomes with `change` (each key to its value, or removed when
/// `None`), after checking that only [`EDITABLE`] keys change and that the result parses by
/// the rules above. Values are trimmed, and an empty one removes its key.
///
/// ```
/// use std::collections::BTreeMap;
/// use keel_core::keel_keys::{self, changed_settings};
///
/// let current = BTreeMap::from([(keel_keys::POLICY.to_owned(), "patch".to_owned())]);
/// let change = BTreeMap::from([
///     (keel_keys::POLICY.to_owned(), Some("minor".to_owned())),
///     (keel_keys::APPROVALS.to_owned(), Some(" 2 ".to_owned())),
/// ]);
/// let next = changed_settings(&current, &change).unwrap();
/// assert_eq!(next[keel_keys::APPROVALS], "2");
///
/// let bad = BTreeMap::from([(keel_keys::POLL_SCHEDULE.to_owned(), Some("@every soon".to_owned()))]);
/// assert_eq!(changed_settings(&current, &bad).unwrap_err().key, keel_keys::POLL_SCHEDULE);
/// ```
///
/// # Errors
/// A key that is not editable, or the first key of the result whose value does not parse.
pub fn changed_settings(
    current: &std::collections::BTreeMap<String, String>,
    change: &std::collections::BTreeMap<String, Option<String>>,
) -> Result<std::collections::BTreeMap<String, String>, KeyError> {
    let mut next = current.clone();
    for (key, value) in change {
        if !EDITABLE.contains(&key.as_str()) {
            return Err(KeyError::new(
                key,
                value.as_deref().unwrap_or_default(),
                format!("only {} can be changed here", EDITABLE.join(", ")),
            ));
        }
        match value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
            Some(v) => next.insert(key.clone(), v.to_owned()),
            None => next.remove(key),
        };
    }
    KeelConfig::parse(|key| next.get(key).map(String::as_str))?;
    // A schedule is only read with `trigger: poll`: check it on its own too, so that a bad
    // one is refused now rather than when polling is turned on.
    if let Some(text) = next.get(POLL_SCHEDULE) {
        text.parse::<Schedule>()
            .map_err(|e| KeyError::new(POLL_SCHEDULE, text, schedule_reason(&e)))?;
    }
    Ok(next)
}

/// The value of `key`, trimmed; `None` when absent or empty.
fn trimmed<'a>(lookup: &impl Fn(&str) -> Option<&'a str>, key: &str) -> Option<&'a str> {
    lookup(key).map(str::trim).filter(|v| !v.is_empty())
}

/// Keel's policy spellings onto keel-core's: `none` (Keel's "no policy") reads as `never`;
/// everything else parses as written.
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
fn schedule_reason(error: &crate::Error) -> String {
    match error {
        crate::Error::InvalidInput(e) => e.reason().to_owned(),
        other => other.to_string(),
    }
}

/// The items of a list as Keel writes one in a value ([`NOTIFY`], [`IMAGE_PULL_SECRET`]):
/// comma-separated, trimmed, empty ones dropped.
///
/// ```
/// use keel_core::keel_keys::comma_list;
/// assert_eq!(comma_list(" a, ,b "), ["a", "b"]);
/// ```
pub fn comma_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<KeelConfig, KeyError> {
        let map: BTreeMap<&str, &str> = pairs.iter().copied().collect();
        KeelConfig::parse(|key| map.get(key).copied())
    }

    fn policy(pairs: &[(&str, &str)]) -> Option<String> {
        parse(pairs)
            .unwrap()
            .tracked_policy()
            .map(ToString::to_string)
    }

    #[test]
    fn untracked_without_policy_or_with_never_or_none() {
        assert_eq!(policy(&[]), None);
        assert_eq!(policy(&[(TRIGGER, "poll")]), None);
        assert_eq!(policy(&[(POLICY, "  ")]), None);
        assert_eq!(policy(&[(POLICY, "never")]), None);
        // Keel's "no policy": not an error, and the same as `never`.
        assert_eq!(policy(&[(POLICY, "none")]), None);
        assert_eq!(policy(&[(POLICY, "NONE")]), None);
        assert!(matches!(
            parse(&[(POLICY, "none")]).unwrap().policy,
            Some(PolicySpec::Never)
        ));
        assert_eq!(policy(&[(POLICY, " minor ")]).as_deref(), Some("minor"));
    }

    #[test]
    fn untracked_workloads_are_not_read_further() {
        let tracked = |pairs: &[(&str, &str)]| {
            let map: BTreeMap<&str, &str> = pairs.iter().copied().collect();
            KeelConfig::parse_tracked(|key| map.get(key).copied())
        };
        assert!(tracked(&[(APPROVALS, "many")]).unwrap().is_none());
        assert!(
            tracked(&[(POLICY, "none"), (APPROVALS, "many")])
                .unwrap()
                .is_none()
        );
        assert_eq!(tracked(&[(POLICY, "minr")]).unwrap_err().key, POLICY);
        assert_eq!(
            tracked(&[(POLICY, "all"), (APPROVALS, "many")])
                .unwrap_err()
                .key,
            APPROVALS
        );
        assert!(tracked(&[(POLICY, "all")]).unwrap().is_some());
        // `parse` reads every key, for targets where a policy may come from elsewhere.
        assert_eq!(parse(&[(APPROVALS, "many")]).unwrap_err().key, APPROVALS);
    }

    #[test]
    fn defaults() {
        let c = parse(&[(POLICY, "minor")]).unwrap();
        assert_eq!(c.settings, KeelSettings::default());
        assert_eq!(c.settings.trigger, Trigger::Webhook);
        assert_eq!(c.settings.approval_deadline, DEFAULT_APPROVAL_DEADLINE);
        assert!(c.options.match_pre_release);
        assert!(!c.init_containers);
        assert!(c.monitors("anything", false));
        assert!(!c.monitors("anything", true));
        assert!(c.image_pull_secrets.is_empty());
    }

    #[test]
    fn every_key() {
        let c = parse(&[
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
        ])
        .unwrap();
        assert!(c.options.match_tag);
        assert!(c.version_policy().unwrap().unwrap().options().match_tag);
        assert_eq!(
            c.settings.trigger,
            Trigger::Poll {
                schedule: Some(Schedule::every(Duration::from_secs(90)).unwrap())
            }
        );
        assert_eq!(c.settings.approvals, 2);
        assert_eq!(c.settings.approval_deadline, Duration::from_secs(5 * 3600));
        assert!(c.monitors("app-main", false));
        assert!(!c.monitors("sidecar", false));
        assert!(c.monitors("app-init", true));
        assert_eq!(c.image_pull_secrets, ["a", "b"]);
        assert_eq!(c.settings.notify, ["#ops", "#dev"]);
        assert_eq!(
            c.settings.release_notes.as_deref(),
            Some("https://example.com/notes")
        );
    }

    #[test]
    fn switches_follow_go_parse_bool() {
        for yes in ["1", "t", "T", "true", "TRUE", "True"] {
            assert_eq!(parse_bool(INIT_CONTAINERS, yes), Ok(true), "{yes}");
            assert!(
                parse(&[(POLICY, "all"), (INIT_CONTAINERS, yes)])
                    .unwrap()
                    .init_containers
            );
        }
        for no in ["0", "f", "F", "false", "FALSE", "False"] {
            assert_eq!(parse_bool(MATCH_PRE_RELEASE, no), Ok(false), "{no}");
            let c = parse(&[(POLICY, "all"), (MATCH_PRE_RELEASE, no)]).unwrap();
            assert!(!c.options.match_pre_release);
        }
        for bad in ["yes", "on", "tRUE", "2"] {
            let e = parse(&[(POLICY, "all"), (INIT_CONTAINERS, bad)]).unwrap_err();
            assert_eq!((e.key.as_str(), e.value.as_str()), (INIT_CONTAINERS, bad));
        }
    }

    #[test]
    fn poll_trigger_enables_polling_and_schedule_only_says_when() {
        let c = parse(&[(POLICY, "patch"), (TRIGGER, "poll")]).unwrap();
        assert_eq!(c.settings.trigger, Trigger::Poll { schedule: None });
        // A schedule alone does not enable polling (and is not read).
        for schedule in ["@every 10m", "not a schedule"] {
            let c = parse(&[(POLICY, "patch"), (POLL_SCHEDULE, schedule)]).unwrap();
            assert_eq!(c.settings.trigger, Trigger::Webhook);
        }
        for webhook in ["default", "webhook"] {
            let c = parse(&[(POLICY, "patch"), (TRIGGER, webhook)]).unwrap();
            assert_eq!(c.settings.trigger, Trigger::Webhook);
        }
    }

    #[test]
    fn match_tag_wins_over_the_legacy_spelling() {
        let c = parse(&[(POLICY, "force"), (MATCH_TAG_LEGACY, "true")]).unwrap();
        assert!(c.options.match_tag && c.settings.match_tag);
        let c = parse(&[
            (POLICY, "force"),
            (MATCH_TAG, "false"),
            (MATCH_TAG_LEGACY, "true"),
        ])
        .unwrap();
        assert!(!c.options.match_tag && !c.settings.match_tag);
        let c = parse(&[
            (POLICY, "force"),
            (MATCH_TAG, "true"),
            (MATCH_TAG_LEGACY, "false"),
        ])
        .unwrap();
        assert!(c.options.match_tag);
        // matchTag means nothing to other policies (as in Keel) rather than an error.
        let c = parse(&[(POLICY, "minor"), (MATCH_TAG, "true")]).unwrap();
        assert!(c.settings.match_tag && !c.options.match_tag);
        assert!(c.version_policy().unwrap().is_some());
    }

    #[test]
    fn settings_go_onto_the_tracked_image() {
        let c = parse(&[
            (POLICY, "minor"),
            (APPROVALS, "1"),
            (APPROVAL_DEADLINE, "2"),
            (NOTIFY, "#a"),
            (RELEASE_NOTES, "https://example.com"),
        ])
        .unwrap();
        let image = TrackedImage::new(
            "web",
            crate::ImageRef::parse("ghcr.io/acme/web:1.0.0").unwrap(),
            std::sync::Arc::new(c.version_policy().unwrap().unwrap()),
        );
        let image = c.settings.apply_to(image);
        assert_eq!(image.approvals, 1);
        assert_eq!(image.approval_deadline, Some(Duration::from_secs(7200)));
        assert_eq!(image.notify, ["#a"]);
        assert_eq!(image.release_notes.as_deref(), Some("https://example.com"));
    }

    #[test]
    fn bad_values_name_key_and_value() {
        // Each bad value after the keys that make it read: a policy, and for a schedule the
        // poll trigger.
        let alone: &[(&str, &str)] = &[];
        let tracked: &[(&str, &str)] = &[(POLICY, "all")];
        let polled: &[(&str, &str)] = &[(POLICY, "all"), (TRIGGER, "poll")];
        for (before, key, value) in [
            (alone, POLICY, "minr"),
            (alone, POLICY, "regexp:("),
            (tracked, APPROVALS, "two"),
            (tracked, APPROVALS, "-1"),
            (tracked, APPROVAL_DEADLINE, "1d"),
            (tracked, APPROVAL_DEADLINE, "0"),
            (tracked, MONITOR_CONTAINERS, "app("),
            (tracked, INIT_CONTAINERS, "yes please"),
            (tracked, TRIGGER, "sometimes"),
            (polled, POLL_SCHEDULE, "every minute"),
        ] {
            let mut pairs = before.to_vec();
            pairs.push((key, value));
            let e = parse(&pairs).unwrap_err();
            assert_eq!((e.key.as_str(), e.value.as_str()), (key, value), "{e:?}");
            assert!(!e.reason.is_empty());
            assert!(e.to_string().starts_with(key), "{e}");
        }
    }

    #[test]
    fn paused_names_containers_or_all() {
        let c = parse(&[(POLICY, "minor"), (PAUSED, " app, worker ")]).unwrap();
        assert!(c.is_paused("app") && c.is_paused("worker") && !c.is_paused("sidecar"));
        let all = parse(&[(POLICY, "minor"), (PAUSED, "*")]).unwrap();
        assert!(all.is_paused("anything"));
        assert!(!parse(&[(POLICY, "minor")]).unwrap().is_paused("app"));
    }

    #[test]
    fn changed_settings_checks_the_result_and_changes_only_editable_keys() {
        let current: BTreeMap<String, String> = [(POLICY, "patch"), (NOTIFY, "#ops")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into();
        let change = |pairs: &[(&str, Option<&str>)]| -> BTreeMap<String, Option<String>> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.map(str::to_owned)))
                .collect()
        };
        let next = changed_settings(
            &current,
            &change(&[
                (POLICY, Some("minor")),
                (TRIGGER, Some("poll")),
                (POLL_SCHEDULE, Some("@every 5m")),
                (APPROVALS, Some("")),
            ]),
        )
        .unwrap();
        assert_eq!(next[POLICY], "minor");
        assert_eq!(next[NOTIFY], "#ops", "keys not changed stay");
        assert!(
            !next.contains_key(APPROVALS),
            "an empty value removes the key"
        );
        let cleared = changed_settings(&next, &change(&[(POLICY, None)])).unwrap();
        assert!(!cleared.contains_key(POLICY));

        for (key, value) in [
            (POLICY, "minr"),
            (APPROVALS, "many"),
            (POLL_SCHEDULE, "every minute"),
            (TRIGGER, "sometimes"),
            (NOTIFY, "#elsewhere"),
        ] {
            let e = changed_settings(&current, &change(&[(key, Some(value))])).unwrap_err();
            assert_eq!((e.key.as_str(), e.value.as_str()), (key, value), "{e}");
        }
    }
}

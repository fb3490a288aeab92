//! Keel's `keel.sh/*` keys on workloads: read from the annotations first and from the
//! labels when the annotations do not carry a key, the same way for every key. The keys and
//! the rules for their values are keel-core's [`keel_core::keel_keys`], re-exported here.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::Mutex;

use tracing::warn;

pub use keel_core::keel_keys::{
    APPROVAL_DEADLINE, APPROVALS, DEFAULT_APPROVAL_DEADLINE, IMAGE_PULL_SECRET, INIT_CONTAINERS,
    MATCH_PRE_RELEASE, MATCH_TAG, MATCH_TAG_LEGACY, MONITOR_CONTAINERS, NOTIFY, PAUSED, POLICY,
    POLL_SCHEDULE, RELEASE_NOTES, TRIGGER,
};

/// Written by keel-k8s on the workload: the digest each container was last updated to, as a
/// JSON object from container key (`app`, `init:migrate`) to image reference with digest.
pub const DIGESTS: &str = "keel.sh/digests";
/// Written by keel-k8s on the pod template when an update keeps the image string (same tag,
/// new digest), so the workload still rolls.
pub const UPDATE_TIME: &str = "keel.sh/update-time";
/// The annotation `kubectl rollout history` shows; keel-k8s says what it changed.
pub const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";

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

/// The problems of a target's last discovery, each logged once while it lasts: for every
/// target that skips what it cannot read (workloads here, Helm releases in keel-helm).
#[derive(Debug, Default)]
pub struct ProblemLog {
    current: Mutex<Vec<Problem>>,
    /// Problems already logged, so each is warned about once, not at every discovery.
    warned: Mutex<HashSet<Problem>>,
}

impl ProblemLog {
    /// Makes `problems` the current ones, logging a warning (for `target_name`) for each one
    /// not seen before. A problem that went away is forgotten, and warned about again should
    /// it come back.
    pub fn record(&self, target_name: &str, problems: Vec<Problem>) {
        {
            let mut warned = self.warned.lock().unwrap_or_else(|p| p.into_inner());
            for problem in &problems {
                if warned.insert(problem.clone()) {
                    warn!(
                        target_name,
                        kind = %problem.kind,
                        namespace = %problem.namespace,
                        name = %problem.name,
                        key = %problem.key,
                        value = %problem.value,
                        "skipping {problem}"
                    );
                }
            }
            warned.retain(|p| problems.contains(p));
        }
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = problems;
    }

    /// The problems of the last discovery.
    pub fn current(&self) -> Vec<Problem> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
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
}

#[cfg(test)]
mod tests {
    use keel_core::keel_keys::KeelConfig;
    use keel_core::target::Trigger;

    use super::*;
    use crate::string_map as map;

    #[test]
    fn annotations_win_over_labels_key_by_key() {
        let a = map(&[(POLICY, "major"), (APPROVALS, "3")]);
        let l = map(&[(POLICY, "patch"), (APPROVALS, "1"), (TRIGGER, "poll")]);
        let keys = Keys::new(Some(&a), Some(&l));
        let c = KeelConfig::parse_tracked(|key| keys.get(key))
            .unwrap()
            .unwrap();
        assert_eq!(c.tracked_policy().unwrap().to_string(), "major");
        assert_eq!(c.settings.approvals, 3);
        assert_eq!(c.settings.trigger, Trigger::Poll { schedule: None });
        assert_eq!(Keys::new(None, Some(&l)).get(POLICY), Some("patch"));
        assert_eq!(Keys::new(None, None).get(POLICY), None);
    }
}

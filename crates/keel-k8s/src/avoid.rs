//! Keeping a rolled-back version from coming straight back.
//!
//! A rollback ([`crate::rollout::rollback`]) records the image it undid in the workload's
//! [`FAILED_ANNOTATION`] (`{"<container>": "<image>"}`). Discovery then wraps the container's
//! policy in [`AvoidTag`], which never chooses that tag again; any other newer tag is chosen
//! as usual, so the next release moves on.

use std::collections::BTreeMap;

pub use keel_core::policy::AvoidTag;

/// The annotation a rollback leaves with the images it undid, by container name (JSON).
pub const FAILED_ANNOTATION: &str = "keel.sh/rollback-failed";

/// The images recorded in `annotations`' [`FAILED_ANNOTATION`], by container name; empty
/// when absent or unreadable (a hand-edited value must not stop discovery).
pub(crate) fn failed_images(annotations: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    annotations
        .get(FAILED_ANNOTATION)
        .and_then(|json| serde_json::from_str(json).ok())
        .unwrap_or_default()
}

/// `previous` with `container` recording `image`, as the annotation's new value.
pub(crate) fn record_failed(previous: Option<&String>, container: &str, image: &str) -> String {
    let mut map: BTreeMap<String, String> = previous
        .and_then(|json| serde_json::from_str(json).ok())
        .unwrap_or_default();
    map.insert(container.to_owned(), image.to_owned());
    serde_json::to_string(&map).expect("a map of strings serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_merge_by_container_and_bad_values_are_ignored() {
        let first = record_failed(None, "app", "web:1.3.0");
        let both = record_failed(Some(&first), "side", "proxy:2.0.0");
        let annotations = BTreeMap::from([(FAILED_ANNOTATION.to_owned(), both)]);
        let failed = failed_images(&annotations);
        assert_eq!(failed["app"], "web:1.3.0");
        assert_eq!(failed["side"], "proxy:2.0.0");
        let broken = BTreeMap::from([(FAILED_ANNOTATION.to_owned(), "{".to_owned())]);
        assert!(failed_images(&broken).is_empty());
    }
}

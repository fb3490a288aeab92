//! Kubernetes label selectors (`metav1.LabelSelector`): `matchLabels` and `matchExpressions`
//! read from an object's JSON and matched against labels as the API server matches them.
//!
//! Every selector field of a custom object (Flux's `policySelector`, Argo CD Image Updater's
//! `labelSelectors`) is read here, so that they all accept and refuse the same selectors.
//!
//! ```
//! use std::collections::BTreeMap;
//! use keel_k8s::selector::LabelSelector;
//!
//! let selector = LabelSelector::from_json(
//!     &serde_json::json!({
//!         "matchLabels": {"team": "web"},
//!         "matchExpressions": [
//!             {"key": "tier", "operator": "In", "values": ["front", "edge"]},
//!             {"key": "frozen", "operator": "DoesNotExist"},
//!         ],
//!     }),
//!     "spec.selector",
//! )
//! .unwrap();
//! let labels: BTreeMap<String, String> =
//!     [("team", "web"), ("tier", "edge")].map(|(k, v)| (k.into(), v.into())).into();
//! assert!(selector.matches(&labels));
//! ```

use std::collections::BTreeMap;

use serde_json::Value;

/// A selector that cannot be read: the field, the value found there and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid label selector: {field} {value:?}: {reason}")]
pub struct SelectorError {
    /// The field, e.g. `spec.policySelector.matchExpressions[0].operator`.
    pub field: String,
    /// The value found there (cut short), empty when the field is missing.
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
}

impl SelectorError {
    fn new(field: impl Into<String>, value: impl Into<String>, reason: &str) -> Self {
        SelectorError {
            field: field.into(),
            value: value.into(),
            reason: reason.to_owned(),
        }
    }
}

/// One requirement of a [`LabelSelector`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Requirement {
    /// The label is set to one of the values (`matchLabels` entries are `In` one value).
    In {
        /// The label key.
        key: String,
        /// The values admitted; never empty.
        values: Vec<String>,
    },
    /// The label is not set, or set to none of the values.
    NotIn {
        /// The label key.
        key: String,
        /// The values refused; never empty.
        values: Vec<String>,
    },
    /// The label is set, to anything.
    Exists {
        /// The label key.
        key: String,
    },
    /// The label is not set.
    DoesNotExist {
        /// The label key.
        key: String,
    },
}

impl Requirement {
    /// Whether `labels` meet the requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Requirement::In { key, values } => labels.get(key).is_some_and(|v| values.contains(v)),
            Requirement::NotIn { key, values } => {
                labels.get(key).is_none_or(|v| !values.contains(v))
            }
            Requirement::Exists { key } => labels.contains_key(key),
            Requirement::DoesNotExist { key } => !labels.contains_key(key),
        }
    }
}

/// A `metav1.LabelSelector`: labels match when they meet every requirement, so the empty
/// selector (`{}`) matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

impl LabelSelector {
    /// Reads a selector from its JSON (`{"matchLabels": {...}, "matchExpressions": [...]}`).
    /// `path` is where the selector sits in its object (e.g. `spec.policySelector`), for the
    /// errors.
    ///
    /// # Errors
    /// [`SelectorError`] naming the field and what is wrong with it: the selector or
    /// `matchLabels` not an object, a label value not a string, `matchExpressions` not a
    /// list, an expression without `key`, an operator other than `In`, `NotIn`, `Exists` and
    /// `DoesNotExist`, `In` or `NotIn` without values, `Exists` or `DoesNotExist` with
    /// values, or values that are not strings. Unknown fields are ignored, as the API server
    /// prunes them.
    pub fn from_json(value: &Value, path: &str) -> Result<LabelSelector, SelectorError> {
        let bad = |field: String, value: &Value, reason: &str| {
            SelectorError::new(field, shown(value), reason)
        };
        let object = value
            .as_object()
            .ok_or_else(|| bad(path.to_owned(), value, "not an object"))?;
        let mut selector = LabelSelector::default();
        match object.get("matchLabels") {
            None | Some(Value::Null) => {}
            Some(Value::Object(labels)) => {
                for (key, value) in labels {
                    let field = format!("{path}.matchLabels.{key}");
                    check_key(key, &field)?;
                    let value = value
                        .as_str()
                        .ok_or_else(|| bad(field.clone(), value, "not a string"))?;
                    selector.requirements.push(Requirement::In {
                        key: key.clone(),
                        values: vec![value.to_owned()],
                    });
                }
            }
            Some(other) => {
                return Err(bad(format!("{path}.matchLabels"), other, "not an object"));
            }
        }
        let expressions = match object.get("matchExpressions") {
            None | Some(Value::Null) => &Vec::new(),
            Some(Value::Array(list)) => list,
            Some(other) => {
                return Err(bad(format!("{path}.matchExpressions"), other, "not a list"));
            }
        };
        for (i, expression) in expressions.iter().enumerate() {
            let at = format!("{path}.matchExpressions[{i}]");
            if !expression.is_object() {
                return Err(bad(at, expression, "not an object"));
            }
            let key = match &expression["key"] {
                Value::String(key) => key.clone(),
                Value::Null => {
                    return Err(SelectorError::new(
                        format!("{at}.key"),
                        "",
                        "required: the label key",
                    ));
                }
                other => return Err(bad(format!("{at}.key"), other, "not a string")),
            };
            check_key(&key, &format!("{at}.key"))?;
            let values = match &expression["values"] {
                Value::Null => Vec::new(),
                Value::Array(list) => list
                    .iter()
                    .enumerate()
                    .map(|(j, v)| {
                        v.as_str()
                            .map(str::to_owned)
                            .ok_or_else(|| bad(format!("{at}.values[{j}]"), v, "not a string"))
                    })
                    .collect::<Result<Vec<_>, _>>()?,
                other => return Err(bad(format!("{at}.values"), other, "not a list")),
            };
            let field = format!("{at}.operator");
            let operator = &expression["operator"];
            let requirement = match (operator.as_str(), values.is_empty()) {
                (Some("In"), false) => Requirement::In { key, values },
                (Some("NotIn"), false) => Requirement::NotIn { key, values },
                (Some("Exists"), true) => Requirement::Exists { key },
                (Some("DoesNotExist"), true) => Requirement::DoesNotExist { key },
                (Some("In" | "NotIn"), true) => {
                    return Err(bad(
                        field,
                        operator,
                        "`In` and `NotIn` need at least one value",
                    ));
                }
                (Some("Exists" | "DoesNotExist"), false) => {
                    return Err(bad(
                        field,
                        operator,
                        "`Exists` and `DoesNotExist` take no values",
                    ));
                }
                _ => {
                    return Err(bad(
                        field,
                        operator,
                        "expected `In`, `NotIn`, `Exists` or `DoesNotExist`",
                    ));
                }
            };
            selector.requirements.push(requirement);
        }
        Ok(selector)
    }

    /// Whether `labels` meet every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// The requirements, `matchLabels` first, in the order written.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// How many `matchLabels` and `matchExpressions` entries the selector has: a measure of
    /// how specific it is, for callers that let the most specific of several selectors win.
    pub fn entries(&self) -> usize {
        self.requirements.len()
    }
}

/// Refuses an empty label key, which no label can have.
fn check_key(key: &str, field: &str) -> Result<(), SelectorError> {
    if key.is_empty() {
        return Err(SelectorError::new(field, "", "a label key cannot be empty"));
    }
    Ok(())
}

/// A JSON value as an error shows it: strings without quotes, anything else as JSON, cut
/// short.
fn shown(value: &Value) -> String {
    let text = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match text.char_indices().nth(100) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::string_map as labels;
    use serde_json::json;

    fn selector(value: Value) -> LabelSelector {
        LabelSelector::from_json(&value, "spec.selector").unwrap()
    }

    #[test]
    fn operators_match_as_kubernetes_matches_them() {
        let cases = [
            (
                json!({"key": "tier", "operator": "In", "values": ["a", "b"]}),
                [true, true, false, false],
            ),
            (
                json!({"key": "tier", "operator": "NotIn", "values": ["a", "b"]}),
                [false, false, true, true],
            ),
            (
                json!({"key": "tier", "operator": "Exists"}),
                [true, true, true, false],
            ),
            (
                json!({"key": "tier", "operator": "DoesNotExist"}),
                [false, false, false, true],
            ),
        ];
        let subjects = [
            labels(&[("tier", "a")]),
            labels(&[("tier", "b"), ("x", "y")]),
            labels(&[("tier", "c")]),
            labels(&[("x", "a")]),
        ];
        for (expression, expected) in cases {
            let s = selector(json!({"matchExpressions": [expression]}));
            let got: Vec<bool> = subjects.iter().map(|l| s.matches(l)).collect();
            assert_eq!(got, expected, "{expression}");
        }
    }

    #[test]
    fn every_requirement_must_hold_and_empty_selects_all() {
        let s = selector(json!({
            "matchLabels": {"team": "web"},
            "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}],
        }));
        assert_eq!(s.entries(), 2);
        assert!(s.matches(&labels(&[("team", "web")])));
        assert!(s.matches(&labels(&[("team", "web"), ("tier", "front")])));
        assert!(!s.matches(&labels(&[("team", "web"), ("tier", "db")])));
        assert!(!s.matches(&labels(&[("tier", "front")])));
        let all = selector(json!({}));
        assert!(all.matches(&labels(&[])));
        assert_eq!(
            all,
            selector(json!({"matchLabels": null, "matchExpressions": null}))
        );
    }

    #[test]
    fn bad_selectors_name_the_field_and_the_fault() {
        for (value, field, says) in [
            (json!([]), "spec.selector", "not an object"),
            (
                json!({"matchLabels": {"a": 1}}),
                "spec.selector.matchLabels.a",
                "not a string",
            ),
            (
                json!({"matchLabels": {"": "x"}}),
                "spec.selector.matchLabels.",
                "empty",
            ),
            (
                json!({"matchExpressions": {}}),
                "spec.selector.matchExpressions",
                "not a list",
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "Equals", "values": ["x"]}]}),
                "spec.selector.matchExpressions[0].operator",
                "expected `In`",
            ),
            (
                json!({"matchExpressions": [{"key": "a"}]}),
                "spec.selector.matchExpressions[0].operator",
                "expected `In`",
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "In"}]}),
                "spec.selector.matchExpressions[0].operator",
                "at least one value",
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": []}]}),
                "spec.selector.matchExpressions[0].operator",
                "at least one value",
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}),
                "spec.selector.matchExpressions[0].operator",
                "take no values",
            ),
            (
                json!({"matchExpressions": [{"operator": "Exists"}]}),
                "spec.selector.matchExpressions[0].key",
                "required",
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "In", "values": [1]}]}),
                "spec.selector.matchExpressions[0].values[0]",
                "not a string",
            ),
        ] {
            let error = LabelSelector::from_json(&value, "spec.selector").unwrap_err();
            let text = error.to_string();
            assert!(text.contains(field), "{value}: {text}");
            assert!(text.contains(says), "{value}: {text}");
        }
    }
}

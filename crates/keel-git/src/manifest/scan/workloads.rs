//! Keel's annotations and line comments on workloads, and unmarked `image:` values.

use std::collections::BTreeMap;

use keel_core::keel_keys::{self, KeelConfig};
use keel_core::{ImageRef, PolicyOptions};

use super::*;
use crate::manifest::yaml::NodeId;
use crate::manifest::{KeelSettings, Part, ReferenceKind};

impl Scanner<'_> {
    pub(super) fn keel_comments(&mut self) {
        for index in 0..self.values.len() {
            let value = &self.values[index];
            let id = value.id;
            if self.used.contains(&id) || value.key.as_deref() != Some("image") {
                continue;
            }
            let Some(Mark::Keel(keys)) = self.mark(id) else {
                continue;
            };
            if !keys.contains_key(keel_keys::POLICY) {
                continue;
            }
            let line = self.node_line(id);
            let keel = match KeelConfig::parse(|key| keys.get(key).map(String::as_str)) {
                Ok(keel) => keel,
                Err(reason) => {
                    self.used.insert(id);
                    self.warn(line, format!("keel.sh comment: {reason}; skipped"));
                    continue;
                }
            };
            let (policy, options, settings) = (keel.policy, keel.options, keel.settings);
            let image = self.tree.str(id).unwrap_or_default().to_owned();
            self.finish(Draft {
                kind: ReferenceKind::KeelComment,
                image,
                policy,
                options,
                settings,
                slots: vec![(id, Part::Whole)],
            });
        }
    }

    // -----------------------------------------------------------------------------------------
    // Unmarked `image:` values
    // -----------------------------------------------------------------------------------------

    /// Every `image:` value no other form claimed, when it holds an image reference that can
    /// be rewritten in place. Anything else (an alias, a template, a block scalar) is not an
    /// image reference anyone marked, so it is passed over without a warning.
    pub(super) fn unmarked_images(&mut self) {
        for index in 0..self.values.len() {
            let value = &self.values[index];
            let id = value.id;
            let Some(path) = value.path.clone() else {
                continue;
            };
            if self.used.contains(&id) {
                continue;
            }
            let Some(scalar) = self.tree.own_scalar(id) else {
                continue;
            };
            if scalar.content.is_none()
                || scalar.style.is_none()
                || ImageRef::parse(&scalar.value).is_err()
            {
                continue;
            }
            let image = scalar.value.clone();
            self.finish(Draft {
                kind: ReferenceKind::Unmarked { path },
                image,
                policy: None,
                options: PolicyOptions::default(),
                settings: KeelSettings::default(),
                slots: vec![(id, Part::Whole)],
            });
        }
    }

    // -----------------------------------------------------------------------------------------
    // Keel workloads
    // -----------------------------------------------------------------------------------------

    pub(super) fn workloads(&mut self) {
        let tree = self.tree;
        for &root in &tree.docs {
            if tree.path_str(root, &["kind"]) == Some("List") {
                if let Some(items) = tree.get(root, "items") {
                    for &item in tree.items(items) {
                        self.workload(item);
                    }
                }
            } else {
                self.workload(root);
            }
        }
    }

    fn workload(&mut self, root: NodeId) {
        let tree = self.tree;
        if !tree.is_mapping(root) {
            return;
        }
        let Some(kind) = tree
            .path_str(root, &["kind"])
            .filter(|k| WORKLOAD_KINDS.contains(k))
        else {
            return;
        };
        let name = tree.path_str(root, &["metadata", "name"]).unwrap_or("");
        let namespace = tree
            .path_str(root, &["metadata", "namespace"])
            .filter(|ns| !ns.is_empty())
            .unwrap_or("default");
        let workload = format!("{kind}/{namespace}/{name}");
        let line = tree.get(root, "kind").and_then(|k| self.node_line(k));

        // Labels first, annotations over them.
        let mut keys = BTreeMap::new();
        for section in ["labels", "annotations"] {
            if let Some(map) = tree.path(root, &["metadata", section]) {
                for (k, v) in tree.entries(map) {
                    if let (Some(k), Some(v)) = (tree.str(k), tree.str(v))
                        && k.starts_with("keel.sh/")
                    {
                        keys.insert(k.to_owned(), v.trim().to_owned());
                    }
                }
            }
        }
        let annotated = keys.get(keel_keys::POLICY).is_some_and(|p| !p.is_empty());
        if !annotated && self.config.images.is_empty() {
            return;
        }
        let keel = match KeelConfig::parse(|key| keys.get(key).map(String::as_str)) {
            Ok(keel) => keel,
            Err(reason) => {
                self.warn(line, format!("{workload}: {reason}; skipped"));
                return;
            }
        };
        let init = keel.init_containers;
        let pod_path: &[&str] = match kind {
            "Pod" => &["spec"],
            "CronJob" => &["spec", "jobTemplate", "spec", "template", "spec"],
            _ => &["spec", "template", "spec"],
        };
        let Some(pod) = tree.path(root, pod_path) else {
            return;
        };
        let mut lists = vec!["containers"];
        if init {
            lists.push("initContainers");
        }
        for list in lists {
            let Some(containers) = tree.get(pod, list) else {
                continue;
            };
            for &container in tree.items(containers) {
                let container_name = tree
                    .get(container, "name")
                    .and_then(|n| tree.str(n))
                    .unwrap_or("")
                    .to_owned();
                if !keel.monitors(&container_name, list == "initContainers") {
                    continue;
                }
                let Some(image) = tree.get(container, "image") else {
                    continue;
                };
                if self.used.contains(&image) {
                    continue;
                }
                let text = tree.str(image).unwrap_or_default().to_owned();
                let (policy, options) = if annotated {
                    (keel.policy.clone(), keel.options.clone())
                } else {
                    // Not annotated: only images the configuration names.
                    match ImageRef::parse(&text)
                        .ok()
                        .and_then(|i| self.config.image_policy(&i))
                    {
                        Some(entry) => (Some(entry.policy.clone()), entry.options.clone()),
                        None => continue,
                    }
                };
                self.finish(Draft {
                    kind: ReferenceKind::KeelWorkload {
                        workload: workload.clone(),
                        container: container_name,
                    },
                    image: text,
                    policy,
                    options,
                    settings: keel.settings.clone(),
                    slots: vec![(image, Part::Whole)],
                });
            }
        }
    }
}

//! Kustomization `images:` entries, with their policies from `.keel.yaml`.

use keel_core::{ImageRef, PolicyOptions};

use super::*;
use crate::manifest::yaml::NodeId;
use crate::manifest::{KeelSettings, Part, ReferenceKind};

impl Scanner<'_> {
    pub(super) fn kustomizations(&mut self) {
        let base = self.file.rsplit('/').next().unwrap_or(self.file);
        let by_name = KUSTOMIZATION_FILES.contains(&base);
        for &root in &self.tree.docs {
            if !self.tree.is_mapping(root) {
                continue;
            }
            let kind = self.tree.path_str(root, &["kind"]);
            let api = self.tree.path_str(root, &["apiVersion"]).unwrap_or("");
            let images = if kind == Some("Kustomization")
                && api.starts_with("kustomize.toolkit.fluxcd.io")
            {
                self.tree.path(root, &["spec", "images"])
            } else if by_name || kind == Some("Kustomization") {
                self.tree.get(root, "images")
            } else {
                None
            };
            let Some(images) = images else { continue };
            let prefix = if kind == Some("Kustomization")
                && api.starts_with("kustomize.toolkit.fluxcd.io")
            {
                "spec.images"
            } else {
                "images"
            };
            for (index, &entry) in self.tree.items(images).iter().enumerate() {
                self.kustomization_entry(entry, format!("{prefix}[{index}]"));
            }
        }
    }

    fn kustomization_entry(&mut self, entry: NodeId, path: String) {
        let tree = self.tree;
        if !tree.is_mapping(entry) {
            return;
        }
        let field = |key: &str| {
            tree.entries(entry)
                .into_iter()
                .find(|&(k, _)| tree.str(k) == Some(key))
        };
        let Some((name_key, name_node)) = field("name") else {
            return;
        };
        let Some(name) = tree.str(name_node).map(str::to_owned) else {
            return;
        };
        let new_name = field("newName");
        let new_tag = field("newTag").map(|(_, v)| v);
        let digest = field("digest").map(|(_, v)| v);

        // A Flux marker on any of the entry's values names the policy.
        let mut marker: Option<String> = None;
        for id in [new_tag, digest, new_name.map(|(_, v)| v)]
            .into_iter()
            .flatten()
        {
            match self.mark(id) {
                Some(Mark::Flux { name: m, .. }) => {
                    if marker.as_ref().is_some_and(|first| *first != m) {
                        let line = self.node_line(id);
                        self.warn(
                            line,
                            format!(
                                "kustomization image {name}: markers of different policies \
                                 ({} and {m}); using the first",
                                marker.as_deref().unwrap_or_default()
                            ),
                        );
                    } else {
                        marker = Some(m);
                    }
                }
                Some(Mark::BadFlux(reason)) => {
                    let line = self.node_line(id);
                    self.warn(line, reason);
                }
                _ => {}
            }
        }

        let repository = new_name
            .and_then(|(_, v)| tree.str(v))
            .unwrap_or(name.as_str())
            .to_owned();
        let mut text = repository.clone();
        if let Some(tag) = new_tag.and_then(|v| tree.str(v)) {
            text.push(':');
            text.push_str(tag);
        }
        if let Some(d) = digest.and_then(|v| tree.str(v)) {
            text.push('@');
            text.push_str(d);
        }
        let configured = ImageRef::parse(&text)
            .ok()
            .and_then(|image| self.config.image_policy(&image));
        let chosen = match &marker {
            Some(m) => self
                .config
                .marker_policy(m)
                .map(|p| (&p.policy, &p.options)),
            None => configured.map(|entry| (&entry.policy, &entry.options)),
        };
        let kind = if marker.is_some() || chosen.is_some() {
            ReferenceKind::Kustomization { name }
        } else {
            // Neither marked nor configured: not tracked, but found for a release.
            ReferenceKind::Unmarked { path }
        };
        let (policy, options) = match chosen {
            Some((policy, options)) => (Some(policy.clone()), options.clone()),
            None => (None, PolicyOptions::default()),
        };

        // The slots are `newTag` (or the place to insert it) and `digest`; `name` and
        // `newName` only anchor the insertion and are checked before it.
        let mut slots = Vec::new();
        let (anchor_key, anchor) = new_name.unwrap_or((name_key, name_node));
        self.used.insert(anchor);
        match new_tag {
            Some(v) => slots.push((v, Part::Tag)),
            None => {
                let indent = if tree.is_flow_mapping(tree.resolve(entry)) {
                    None
                } else {
                    Some(self.column(anchor_key))
                };
                slots.push((anchor, Part::InsertTag { indent }));
            }
        }
        if let Some(v) = digest {
            slots.push((v, Part::Digest));
        }
        self.used.insert(name_node);
        self.finish(Draft {
            kind,
            image: text,
            policy,
            options,
            settings: KeelSettings::default(),
            slots,
        });
    }

    /// The column (in characters) where scalar `id` starts.
    fn column(&self, id: NodeId) -> usize {
        let Some(s) = self.tree.own_scalar(id) else {
            return 0;
        };
        let start = s.token.start;
        let line_start = self.line_starts[self.line_of(start) - 1];
        self.content[line_start..start].chars().count()
    }

    // -----------------------------------------------------------------------------------------
    // Flux markers
    // -----------------------------------------------------------------------------------------
}

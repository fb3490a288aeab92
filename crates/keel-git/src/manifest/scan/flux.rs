//! Flux setter markers (`# {"$imagepolicy": ...}`) and their groups.

use std::collections::{BTreeMap, HashMap};

use keel_core::PolicyOptions;

use super::*;
use crate::manifest::yaml::NodeId;
use crate::manifest::{KeelSettings, Part, ReferenceKind};

impl Scanner<'_> {
    pub(super) fn flux_markers(&mut self) {
        // Groups in file order: (group key, marker name, [(scalar, part)]).
        let mut groups: Vec<(String, Vec<(NodeId, Part)>)> = Vec::new();
        let mut by_key: HashMap<(NodeId, String), usize> = HashMap::new();
        for index in 0..self.values.len() {
            let (id, mapping) = (self.values[index].id, self.values[index].mapping);
            if self.used.contains(&id) {
                continue;
            }
            match self.mark(id) {
                Some(Mark::Flux { name, part }) => {
                    let group = match (part, mapping) {
                        (Part::Whole, _) | (_, None) => None,
                        (_, Some(m)) => by_key.get(&(m, name.clone())).copied(),
                    };
                    match group {
                        Some(g) => groups[g].1.push((id, part)),
                        None => {
                            if let (Some(m), false) = (mapping, part == Part::Whole) {
                                by_key.insert((m, name.clone()), groups.len());
                            }
                            groups.push((name, vec![(id, part)]));
                        }
                    }
                }
                Some(Mark::BadFlux(reason)) => {
                    let line = self.node_line(id);
                    self.warn(line, reason);
                    self.used.insert(id);
                }
                _ => {}
            }
        }
        for (name, members) in groups {
            self.flux_group(name, members);
        }
    }

    fn flux_group(&mut self, name: String, members: Vec<(NodeId, Part)>) {
        let configured = self.config.marker_policy(&name);
        let mut parts: BTreeMap<u8, (NodeId, String)> = BTreeMap::new();
        let mut slots = Vec::new();
        for &(id, part) in &members {
            self.used.insert(id);
            let order = match part {
                Part::Whole => 0,
                Part::Name => 1,
                Part::Tag => 2,
                _ => 3,
            };
            let value = self.tree.str(id).unwrap_or_default().to_owned();
            if parts.contains_key(&order) {
                let line = self.node_line(id);
                self.warn(
                    line,
                    format!(
                        "marker {name}: a second {} marker in the same mapping; ignored",
                        part_name(part)
                    ),
                );
                continue;
            }
            parts.insert(order, (id, value));
            slots.push((id, part));
        }
        let image = if let Some((_, whole)) = parts.get(&0) {
            whole.clone()
        } else {
            let repository = match (parts.get(&1), configured.and_then(|c| c.image.as_ref())) {
                (Some((_, n)), _) => n.clone(),
                (None, Some(image)) => image.clone(),
                (None, None) => {
                    let line = slots.first().and_then(|&(id, _)| self.node_line(id));
                    self.warn(
                        line,
                        format!(
                            "marker {name}: a tag or digest without a `{name}:name` marker in \
                             the same mapping, and {} gives no image for {name}; skipped",
                            crate::manifest::CONFIG_FILE
                        ),
                    );
                    return;
                }
            };
            let mut text = repository;
            if let Some((_, tag)) = parts.get(&2) {
                text.push(':');
                text.push_str(tag);
            }
            if let Some((_, digest)) = parts.get(&3) {
                text.push('@');
                text.push_str(digest);
            }
            text
        };
        let (policy, options) = match configured {
            Some(p) => (Some(p.policy.clone()), p.options.clone()),
            None => (None, PolicyOptions::default()),
        };
        self.finish(Draft {
            kind: ReferenceKind::FluxMarker { policy_name: name },
            image,
            policy,
            options,
            settings: KeelSettings::default(),
            slots,
        });
    }

    // -----------------------------------------------------------------------------------------
    // Keel line comments
    // -----------------------------------------------------------------------------------------
}

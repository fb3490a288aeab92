//! Discovery: which scalars of a manifest hold image references.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::LazyLock;

use keel_core::keel_keys::{self, KeelConfig};
use keel_core::policy::PolicySpec;
use keel_core::{ImageRef, PolicyOptions};
use regex::Regex;

use super::yaml::{self, Node, NodeId, Tree};
use super::{KeelSettings, Part, Reference, ReferenceKind, RepoConfig, Scan, Slot, Warning};

/// The workload kinds whose pod templates Keel annotations apply to.
const WORKLOAD_KINDS: [&str; 7] = [
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "Pod",
    "Job",
    "CronJob",
];

/// File names kustomize reads.
const KUSTOMIZATION_FILES: [&str; 3] = ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// `keel.sh/<key>` followed by `:` or `=` in a line comment.
static KEEL_COMMENT_KEY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"keel\.sh/([A-Za-z][A-Za-z-]*)\s*[:=]\s*").expect("the pattern is valid")
});

/// Whether `path` names a file worth scanning: `*.yaml`, `*.yml` or a file kustomize reads.
pub fn is_manifest_path(path: &str) -> bool {
    let base = path.rsplit('/').next().unwrap_or(path);
    let lower = base.to_ascii_lowercase();
    lower.ends_with(".yaml") || lower.ends_with(".yml") || KUSTOMIZATION_FILES.contains(&base)
}

/// Finds the image references in one file.
///
/// `path` is the file's path relative to the repository root (`/`-separated), `content` its
/// text. Every document of a multi-document file is scanned. Files outside the configuration's
/// [`paths`](RepoConfig::paths) yield nothing; a file that is not YAML yields no references
/// and one warning. See the [module docs](super) for the forms found.
pub fn scan(path: &str, content: &str, config: &RepoConfig) -> Scan {
    let mut scan = Scan::default();
    if !config.includes(path) {
        return scan;
    }
    let tree = match yaml::parse(content) {
        Ok(tree) => tree,
        Err(e) => {
            scan.warnings.push(Warning {
                file: path.to_owned(),
                line: Some(e.line),
                reason: format!(
                    "not valid YAML (line {} column {}: {}); skipped",
                    e.line, e.column, e.message
                ),
            });
            return scan;
        }
    };
    let mut scanner = Scanner::new(path, content, config, &tree);
    scanner.kustomizations();
    scanner.flux_markers();
    scanner.keel_comments();
    scanner.workloads();
    scanner.unmarked_images();
    let Scanner {
        mut references,
        mut warnings,
        ..
    } = scanner;
    references.sort_by_key(|r| (r.line, r.slots.first().map_or(0, |s| s.range.start)));
    warnings.sort_by_key(|w| w.line);
    scan.references = references;
    scan.warnings = warnings;
    scan
}

/// A scalar in value position: a mapping value, a sequence item or a document.
struct Value {
    id: NodeId,
    /// The mapping it is a value of.
    mapping: Option<NodeId>,
    /// Its key in that mapping.
    key: Option<String>,
    /// Its line comment, without the `#`.
    comment: Option<String>,
    /// Where it sits in its document (`spec.containers[0].image`); kept for `image:` values
    /// only.
    path: Option<String>,
}

/// One step of a path from a document's root.
#[derive(Clone, Copy)]
enum Step {
    /// The value of the key scalar.
    Key(NodeId),
    /// The item at an index.
    Index(usize),
}

/// What a line comment says.
enum Mark {
    /// A Flux setter marker.
    Flux { name: String, part: Part },
    /// A malformed Flux setter marker.
    BadFlux(String),
    /// `keel.sh/...` settings.
    Keel(BTreeMap<String, String>),
}

struct Scanner<'a> {
    file: &'a str,
    content: &'a str,
    config: &'a RepoConfig,
    tree: &'a Tree,
    /// Byte offsets of the line starts.
    line_starts: Vec<usize>,
    values: Vec<Value>,
    /// Index into `values` by node.
    value_index: HashMap<NodeId, usize>,
    /// Scalars already part of a reference (or of a marked group that failed).
    used: HashSet<NodeId>,
    references: Vec<Reference>,
    warnings: Vec<Warning>,
}

/// A reference in the making.
struct Draft {
    kind: ReferenceKind,
    image: String,
    policy: Option<PolicySpec>,
    options: PolicyOptions,
    settings: KeelSettings,
    /// Scalars and the part each holds.
    slots: Vec<(NodeId, Part)>,
}

impl<'a> Scanner<'a> {
    fn new(file: &'a str, content: &'a str, config: &'a RepoConfig, tree: &'a Tree) -> Self {
        let line_starts = std::iter::once(0)
            .chain(content.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        let mut scanner = Scanner {
            file,
            content,
            config,
            tree,
            line_starts,
            values: Vec::new(),
            value_index: HashMap::new(),
            used: HashSet::new(),
            references: Vec::new(),
            warnings: Vec::new(),
        };
        let mut path = Vec::new();
        for &doc in &tree.docs {
            scanner.collect_values(doc, None, None, &mut path);
        }
        scanner
    }

    /// 1-based line of a byte offset.
    fn line_of(&self, byte: usize) -> usize {
        self.line_starts.partition_point(|&start| start <= byte)
    }

    /// Line of a node (of its token for scalars).
    fn node_line(&self, id: NodeId) -> Option<usize> {
        Some(self.line_of(self.tree.start(id)))
    }

    fn warn(&mut self, line: Option<usize>, reason: impl Into<String>) {
        self.warnings.push(Warning {
            file: self.file.to_owned(),
            line,
            reason: reason.into(),
        });
    }

    fn collect_values(
        &mut self,
        id: NodeId,
        mapping: Option<NodeId>,
        key: Option<String>,
        path: &mut Vec<Step>,
    ) {
        if path.len() > 256 {
            return;
        }
        match &self.tree.nodes[id] {
            Node::Scalar(s) => {
                let comment = match s.style {
                    Some(_) if !s.value.is_empty() => line_comment(self.content, s.token.end),
                    _ => None,
                };
                let path = (key.as_deref() == Some("image")).then(|| self.render(path));
                self.value_index.insert(id, self.values.len());
                self.values.push(Value {
                    id,
                    mapping,
                    key,
                    comment: comment.map(str::to_owned),
                    path,
                });
            }
            Node::Mapping { entries, .. } => {
                for &(k, v) in entries {
                    let key = self.tree.own_scalar(k).map(|s| s.value.clone());
                    path.push(Step::Key(k));
                    self.collect_values(v, Some(id), key, path);
                    path.pop();
                }
            }
            Node::Sequence { items } => {
                for (index, &item) in items.iter().enumerate() {
                    path.push(Step::Index(index));
                    self.collect_values(item, None, None, path);
                    path.pop();
                }
            }
            Node::Alias(_) => {}
        }
    }

    /// `spec.containers[0].image`: a path as text.
    fn render(&self, path: &[Step]) -> String {
        let mut out = String::new();
        for step in path {
            match *step {
                Step::Key(k) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    match self.tree.own_scalar(k) {
                        Some(s) => out.push_str(&s.value),
                        None => out.push('?'),
                    }
                }
                Step::Index(i) => out.push_str(&format!("[{i}]")),
            }
        }
        out
    }

    /// The mark in the line comment of value scalar `id`.
    fn mark(&self, id: NodeId) -> Option<Mark> {
        let value = &self.values[*self.value_index.get(&id)?];
        parse_mark(value.comment.as_deref()?)
    }

    /// Turns a draft into a reference, or a warning when a slot cannot be rewritten in place
    /// or the image does not parse.
    fn finish(&mut self, draft: Draft) {
        let first_line = draft
            .slots
            .iter()
            .filter_map(|&(id, _)| self.node_line(id))
            .min();
        let mut slots = Vec::new();
        for &(id, part) in &draft.slots {
            self.used.insert(id);
            match self.tree.own_scalar(id) {
                Some(s) => match (&s.content, s.style) {
                    (Some(range), Some(style)) => slots.push(Slot {
                        range: range.clone(),
                        part,
                        style,
                    }),
                    _ => {
                        let line = self.node_line(id);
                        self.warn(
                            line,
                            format!(
                                "{}: the value is not written as a one-line scalar without \
                                 escapes, so it cannot be rewritten in place; skipped",
                                describe(&draft.kind)
                            ),
                        );
                        return;
                    }
                },
                None => {
                    self.warn(
                        first_line,
                        format!(
                            "{}: the value is an alias or a collection, not a scalar; skipped",
                            describe(&draft.kind)
                        ),
                    );
                    return;
                }
            }
        }
        slots.sort_by_key(|s| s.range.start);
        let image = match ImageRef::parse(&draft.image) {
            Ok(image) => image,
            Err(e) => {
                self.warn(
                    first_line,
                    format!("{}: {e}; skipped", describe(&draft.kind)),
                );
                return;
            }
        };
        // The line of the first slot; a `newTag` still to be inserted on its own line counts
        // as the line below its anchor, where it will be, so that the id stays the same after
        // the update that inserts it.
        let Some(line) = slots
            .iter()
            .map(|s| match s.part {
                Part::InsertTag { indent: Some(_) } => self.line_of(s.range.start) + 1,
                _ => self.line_of(s.range.start),
            })
            .min()
        else {
            return;
        };
        let (policy, options) = match draft.policy {
            Some(policy) => (Some(policy), draft.options),
            // Nothing marks it: the configuration does not make it tracked either.
            None if matches!(draft.kind, ReferenceKind::Unmarked { .. }) => (None, draft.options),
            None => match self.config.image_policy(&image) {
                Some(entry) => (config_policy(&entry.policy), entry.options.clone()),
                None => (None, draft.options),
            },
        };
        self.references.push(Reference {
            file: self.file.to_owned(),
            line,
            kind: draft.kind,
            image,
            policy,
            options,
            settings: draft.settings,
            slots,
        });
    }

    // -----------------------------------------------------------------------------------------
    // Kustomizations
    // -----------------------------------------------------------------------------------------

    fn kustomizations(&mut self) {
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
        let (kind, policy, options) = match &marker {
            Some(m) => match self.config.marker_policy(m) {
                Some(p) => (
                    ReferenceKind::Kustomization { name },
                    config_policy(&p.policy),
                    p.options.clone(),
                ),
                None => (
                    ReferenceKind::Kustomization { name },
                    None,
                    PolicyOptions::default(),
                ),
            },
            None => match configured {
                Some(entry) => (
                    ReferenceKind::Kustomization { name },
                    config_policy(&entry.policy),
                    entry.options.clone(),
                ),
                // Neither marked nor configured: not tracked, but found for a release.
                None => (
                    ReferenceKind::Unmarked { path },
                    None,
                    PolicyOptions::default(),
                ),
            },
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

    fn flux_markers(&mut self) {
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
                            super::CONFIG_FILE
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
            Some(p) => (config_policy(&p.policy), p.options.clone()),
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

    fn keel_comments(&mut self) {
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
    fn unmarked_images(&mut self) {
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

    fn workloads(&mut self) {
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
                        Some(entry) => (config_policy(&entry.policy), entry.options.clone()),
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

/// How a warning names a reference.
fn describe(kind: &ReferenceKind) -> String {
    match kind {
        ReferenceKind::FluxMarker { policy_name } => format!("marker {policy_name}"),
        ReferenceKind::KeelWorkload {
            workload,
            container,
        } => format!("{workload} container {container}"),
        ReferenceKind::KeelComment => "keel.sh comment".to_owned(),
        ReferenceKind::Kustomization { name } => format!("kustomization image {name}"),
        ReferenceKind::Unmarked { path } => format!("image at {path}"),
    }
}

fn part_name(part: Part) -> &'static str {
    match part {
        Part::Whole => "whole-reference",
        Part::Name => "name",
        Part::Tag => "tag",
        Part::Digest => "digest",
        Part::InsertTag { .. } => "newTag",
    }
}

/// The line comment after a scalar ending at byte `end`: only white space and flow
/// indicators (`,`, `]`, `}`) may stand between, and the `#` must follow white space.
fn line_comment(content: &str, end: usize) -> Option<&str> {
    let bytes = content.as_bytes();
    let mut at = end;
    while let Some(&b) = bytes.get(at) {
        match b {
            b' ' | b'\t' | b',' | b']' | b'}' => at += 1,
            b'#' if at > end && matches!(bytes[at - 1], b' ' | b'\t') => {
                let rest = &content[at + 1..];
                let line = rest.split('\n').next().unwrap_or(rest);
                return Some(line.strip_suffix('\r').unwrap_or(line).trim());
            }
            _ => return None,
        }
    }
    None
}

/// What a line comment says, if anything we read.
fn parse_mark(comment: &str) -> Option<Mark> {
    if comment.starts_with('{') {
        if !comment.contains("$imagepolicy") {
            return None;
        }
        let mut stream =
            serde_json::Deserializer::from_str(comment).into_iter::<serde_json::Value>();
        let value = match stream.next() {
            Some(Ok(value)) => value,
            _ => {
                return Some(Mark::BadFlux(format!(
                    "malformed Flux marker `#{comment}`: not a JSON object; ignored"
                )));
            }
        };
        let Some(marker) = value.get("$imagepolicy").and_then(|v| v.as_str()) else {
            return Some(Mark::BadFlux(format!(
                "malformed Flux marker `#{comment}`: `$imagepolicy` must be a string; ignored"
            )));
        };
        return Some(parse_flux_marker(marker));
    }
    if comment.contains("keel.sh/") {
        let mut keys = BTreeMap::new();
        let found: Vec<_> = KEEL_COMMENT_KEY.captures_iter(comment).collect();
        for (i, caps) in found.iter().enumerate() {
            let (Some(whole), Some(key)) = (caps.get(0), caps.get(1)) else {
                continue;
            };
            let end = found
                .get(i + 1)
                .and_then(|next| next.get(0))
                .map_or(comment.len(), |m| m.start());
            let value = comment[whole.end()..end]
                .trim()
                .trim_end_matches([',', ';'])
                .trim();
            let value = unquote(value);
            keys.insert(format!("keel.sh/{}", key.as_str()), value.to_owned());
        }
        return (!keys.is_empty()).then_some(Mark::Keel(keys));
    }
    None
}

fn unquote(value: &str) -> &str {
    for q in ['"', '\''] {
        if let Some(inner) = value.strip_prefix(q).and_then(|v| v.strip_suffix(q)) {
            return inner;
        }
    }
    value
}

/// `NS:NAME` or `NS:NAME:name|tag|digest`.
fn parse_flux_marker(marker: &str) -> Mark {
    let parts: Vec<&str> = marker.split(':').map(str::trim).collect();
    let bad =
        |why: &str| Mark::BadFlux(format!("malformed Flux marker `{marker}`: {why}; ignored"));
    if parts.iter().any(|p| p.is_empty()) {
        return bad("expected NS:NAME, optionally followed by :name, :tag or :digest");
    }
    match parts.as_slice() {
        [ns, name] => Mark::Flux {
            name: format!("{ns}:{name}"),
            part: Part::Whole,
        },
        [ns, name, field] => {
            let part = match *field {
                "name" => Part::Name,
                "tag" => Part::Tag,
                "digest" => Part::Digest,
                _ => return bad("the part after NS:NAME must be name, tag or digest"),
            };
            Mark::Flux {
                name: format!("{ns}:{name}"),
                part,
            }
        }
        _ => bad("expected NS:NAME, optionally followed by :name, :tag or :digest"),
    }
}

/// A policy string of the configuration, which [`RepoConfig::validate`] checked when it was
/// loaded; one that does not parse (a configuration built in code and never validated) gives
/// no policy, so the reference is found but not tracked.
fn config_policy(policy: &str) -> Option<PolicySpec> {
    policy.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_comments() {
        let text = "a: x # c1\nb: {t: y} # c2\nc: z#no\nd: w,  # c3\r\n";
        let at = |s: &str| text.find(s).unwrap() + s.len();
        assert_eq!(line_comment(text, at("a: x")), Some("c1"));
        assert_eq!(line_comment(text, at("t: y")), Some("c2"));
        assert_eq!(line_comment(text, at("c: z")), None);
        assert_eq!(line_comment(text, at("d: w")), Some("c3"));
        assert_eq!(line_comment(text, at("{t")), None);
    }

    #[test]
    fn marks() {
        let flux = |c: &str| match parse_mark(c) {
            Some(Mark::Flux { name, part }) => Some((name, part)),
            _ => None,
        };
        assert_eq!(
            flux(r#"{"$imagepolicy": "flux-system:app"}"#),
            Some(("flux-system:app".into(), Part::Whole))
        );
        assert_eq!(
            flux("{ \"$imagepolicy\" :\t\"ns:app:tag\" }"),
            Some(("ns:app".into(), Part::Tag))
        );
        assert!(matches!(
            parse_mark(r#"{"$imagepolicy": "ns:app:version"}"#),
            Some(Mark::BadFlux(_))
        ));
        assert!(matches!(
            parse_mark(r#"{"$imagepolicy": "ns:app""#),
            Some(Mark::BadFlux(_))
        ));
        assert!(parse_mark("{just: a comment}").is_none());
        let Some(Mark::Keel(keys)) =
            parse_mark("keel.sh/policy: semver:>=1.0 <2.0, keel.sh/trigger=poll")
        else {
            panic!("not a keel comment");
        };
        assert_eq!(keys["keel.sh/policy"], "semver:>=1.0 <2.0");
        assert_eq!(keys["keel.sh/trigger"], "poll");
    }

    #[test]
    fn manifest_paths() {
        assert!(is_manifest_path("apps/web.yaml"));
        assert!(is_manifest_path("apps/web.YML"));
        assert!(is_manifest_path("base/Kustomization"));
        assert!(!is_manifest_path("README.md"));
    }
}

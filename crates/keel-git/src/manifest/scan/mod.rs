//! Discovery: which scalars of a manifest hold image references.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::LazyLock;

use keel_core::policy::PolicySpec;
use keel_core::{ImageRef, PolicyOptions};
use regex::Regex;

use super::yaml::{self, Node, NodeId, Tree};
use super::{KeelSettings, Part, Reference, ReferenceKind, RepoConfig, Scan, Slot, Warning};

mod flux;
mod kustomize;
#[cfg(test)]
mod tests;
mod workloads;

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
                Some(entry) => (Some(entry.policy.clone()), entry.options.clone()),
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

//! Byte-exact edits of one YAML value at a path: [`get`] reads it, [`set`] writes it,
//! changing only the bytes of that value, or adding the missing keys and list items in
//! the file's own indentation, so comments, quoting, key order and line endings survive.
//!
//! A path is a list of [`Step`]s from the first document's root: a mapping key, a list item
//! (a mapping) whose `key` has a given value, or a list item (a scalar) a predicate picks.
//!
//! ```
//! use keel_git::manifest::edit::{Step, Value, get, set};
//!
//! let values = "# the web tier\nimage:\n  repository: ghcr.io/acme/web # pinned\n  tag: \"1.2.3\"\n";
//! let path = [Step::Key("image"), Step::Key("tag")];
//! assert_eq!(get(values, &path).unwrap().as_deref(), Some("1.2.3"));
//! let after = set(values, &path, Value::String("1.3.0")).unwrap();
//! assert_eq!(after, "# the web tier\nimage:\n  repository: ghcr.io/acme/web # pinned\n  tag: \"1.3.0\"\n");
//!
//! // A missing key is added where its mapping's keys are written.
//! let after = set(&after, &[Step::Key("image"), Step::Key("pullPolicy")], Value::String("Always")).unwrap();
//! assert_eq!(
//!     after,
//!     "# the web tier\nimage:\n  repository: ghcr.io/acme/web # pinned\n  tag: \"1.3.0\"\n  pullPolicy: Always\n"
//! );
//! ```

use std::fmt;

use super::ScalarStyle;
use super::yaml::{self, Node, NodeId, Tree, plain_reads_as_non_string};

/// One step of a path into a YAML document.
#[derive(Clone, Copy)]
pub enum Step<'a> {
    /// The value of this key of a mapping.
    Key(&'a str),
    /// The item of a list that is a mapping whose `key` holds `value` (`- name: image.tag`).
    /// When missing, [`set`] adds the item with that entry.
    Item {
        /// The key that identifies the item.
        key: &'a str,
        /// Its value.
        value: &'a str,
    },
    /// The item of a list of scalars that the predicate accepts; only as the last step.
    /// When missing, [`set`] adds an item holding the value.
    ScalarItem(&'a (dyn Fn(&str) -> bool + Sync)),
}

impl fmt::Debug for Step<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Key(k) => write!(f, "{k}"),
            Step::Item { key, value } => write!(f, "[{key}={value}]"),
            Step::ScalarItem(_) => f.write_str("[item]"),
        }
    }
}

/// The path of the value of the Helm parameter `name` in an Argo CD source
/// (`helm.parameters[name=NAME].value`), as an `.argocd-source` file holds it.
///
/// ```
/// use keel_git::manifest::edit::{Value, get, helm_parameter, set};
///
/// let source = "helm:\n  parameters:\n  - name: image.tag\n    value: \"1.0\"\n";
/// let after = set(source, &helm_parameter("image.tag"), Value::String("1.1")).unwrap();
/// assert_eq!(get(&after, &helm_parameter("image.tag")).unwrap().as_deref(), Some("1.1"));
/// ```
pub fn helm_parameter(name: &str) -> [Step<'_>; 4] {
    [
        Step::Key("helm"),
        Step::Key("parameters"),
        Step::Item {
            key: "name",
            value: name,
        },
        Step::Key("value"),
    ]
}

/// The path of the `kustomize.images` entry of an Argo CD source that `matches` picks (a
/// `NAME[=NEW_NAME]:TAG` string), as an `.argocd-source` file holds it.
pub fn argocd_source_image<'a>(matches: &'a (dyn Fn(&str) -> bool + Sync)) -> [Step<'a>; 3] {
    [
        Step::Key("kustomize"),
        Step::Key("images"),
        Step::ScalarItem(matches),
    ]
}

/// The path of `field` (`newName`, `newTag`, `digest`) of the entry of the image `name` in a
/// kustomization's `images` list (`images[name=NAME].FIELD`).
pub fn kustomization_image<'a>(name: &'a str, field: &'a str) -> [Step<'a>; 3] {
    [
        Step::Key("images"),
        Step::Item {
            key: "name",
            value: name,
        },
        Step::Key(field),
    ]
}

/// The value [`set`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value<'a> {
    /// A string, quoted when it would not read as a string unquoted (`"true"`, `"1.10"`).
    String(&'a str),
    /// A boolean, written `true` or `false`.
    Bool(bool),
}

impl Value<'_> {
    fn text(&self) -> String {
        match self {
            Value::String(s) => s.to_string(),
            Value::Bool(b) => b.to_string(),
        }
    }
}

/// Why a value cannot be read or written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EditError {
    /// The path, as `a.b[name=x].c`.
    pub path: String,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for EditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "YAML path {}: {}", self.path, self.reason)
        }
    }
}

impl std::error::Error for EditError {}

fn shown(path: &[Step<'_>]) -> String {
    let mut out = String::new();
    for step in path {
        if matches!(step, Step::Key(_)) && !out.is_empty() {
            out.push('.');
        }
        out.push_str(&format!("{step:?}"));
    }
    out
}

fn parse(content: &str, path: &[Step<'_>]) -> Result<Tree, EditError> {
    yaml::parse(content).map_err(|e| EditError {
        path: shown(path),
        reason: format!(
            "the file is not YAML (line {}, column {}: {})",
            e.line, e.column, e.message
        ),
    })
}

/// Where a walk along a path ended.
enum Walk {
    /// At the node of the whole path.
    Found(NodeId),
    /// The collection `at` lacks step `missing` (an index into the path); `None` for a
    /// document without any root node.
    Missing { at: Option<NodeId>, missing: usize },
}

/// Follows `path`; `for_edit` refuses to go through an alias or a merge key (`<<`), where an
/// edit would change every mapping that shares the node.
fn walk(tree: &Tree, path: &[Step<'_>], for_edit: bool) -> Result<Walk, EditError> {
    let Some(&root) = tree.docs.first() else {
        return Ok(Walk::Missing {
            at: None,
            missing: 0,
        });
    };
    let mut at = root;
    for (i, step) in path.iter().enumerate() {
        let bad = |reason: String| EditError {
            path: shown(&path[..=i]),
            reason,
        };
        let node = tree.resolve(at);
        if for_edit && node != at {
            return Err(bad("its parent is written through an alias".into()));
        }
        let next = match step {
            Step::Key(key) => {
                if !tree.is_mapping(node) {
                    return Err(bad("its parent is not a mapping".into()));
                }
                let found = tree.get(node, key);
                let own = match &tree.nodes[node] {
                    Node::Mapping { entries, .. } => entries
                        .iter()
                        .find(|&&(k, _)| tree.str(k) == Some(key))
                        .map(|&(_, v)| v),
                    _ => None,
                };
                if for_edit && found.is_some() && own.is_none() {
                    return Err(bad("the key comes from a merge key (`<<`)".into()));
                }
                found
            }
            Step::Item { key, value } => {
                if !matches!(tree.nodes[node], Node::Sequence { .. }) {
                    return Err(bad("its parent is not a list".into()));
                }
                tree.items(node).iter().copied().find(|&item| {
                    tree.is_mapping(item) && tree.path_str(item, &[key]) == Some(value)
                })
            }
            Step::ScalarItem(accept) => {
                if i + 1 != path.len() {
                    return Err(bad("a list item of scalars ends a path".into()));
                }
                if !matches!(tree.nodes[node], Node::Sequence { .. }) {
                    return Err(bad("its parent is not a list".into()));
                }
                tree.items(node)
                    .iter()
                    .copied()
                    .find(|&item| tree.str(item).is_some_and(accept))
            }
        };
        match next {
            Some(next) => at = next,
            None => {
                return Ok(Walk::Missing {
                    at: Some(at),
                    missing: i,
                });
            }
        }
    }
    Ok(Walk::Found(at))
}

/// The scalar at `path` in the first document of `content`, `None` when the path does not
/// exist there.
///
/// # Errors
/// The content is not YAML, or a step meets something else than the collection it needs, or
/// the path ends at a collection.
pub fn get(content: &str, path: &[Step<'_>]) -> Result<Option<String>, EditError> {
    let tree = parse(content, path)?;
    match walk(&tree, path, false)? {
        Walk::Found(id) => match tree.str(id) {
            Some(s) => Ok(Some(s.to_owned())),
            None => Err(EditError {
                path: shown(path),
                reason: "holds a mapping or a list, not a value".into(),
            }),
        },
        Walk::Missing { .. } => Ok(None),
    }
}

/// The first document of `content` as JSON, by the YAML 1.2 core schema (`1.10` is a
/// number, `"1.10"` a string); `null` for a file without any document.
///
/// # Errors
/// The content is not YAML (or its aliases stand for too many nodes).
pub fn to_json(content: &str) -> Result<serde_json::Value, EditError> {
    let tree = parse(content, &[])?;
    Ok(tree
        .docs
        .first()
        .map_or(serde_json::Value::Null, |&root| tree.to_json(root)))
}

/// `content` with the scalar at `path` set to `value`, every other byte kept. A missing key
/// or list item is added (and whatever the rest of the path needs under it), after the last
/// entry of its mapping or list that is written on one line, with the same indentation; an
/// empty file gets the whole path. The value keeps the quotes it is written in. Setting the
/// value already there returns `content` unchanged.
///
/// # Errors
/// The content is not YAML; a step meets something else than the collection it needs; the
/// value is written through an alias, as a block scalar or over several lines; the place to
/// add a key is a flow collection (`{...}`, `[...]`) or an empty one; the value cannot be
/// written in the scalar's quotes.
pub fn set(content: &str, path: &[Step<'_>], value: Value<'_>) -> Result<String, EditError> {
    let tree = parse(content, path)?;
    let bad = |reason: String| EditError {
        path: shown(path),
        reason,
    };
    match walk(&tree, path, true)? {
        Walk::Found(id) => {
            if id != tree.resolve(id) {
                return Err(bad("the value is written through an alias".into()));
            }
            let Some(scalar) = tree.own_scalar(id) else {
                return Err(bad("holds a mapping or a list, not a value".into()));
            };
            if scalar.value == value.text() {
                return Ok(content.to_owned());
            }
            let (Some(range), Some(style)) = (scalar.content.clone(), scalar.style) else {
                return Err(bad(
                    "the value is a block scalar or spans lines; it is not rewritten in place"
                        .into(),
                ));
            };
            let text = value.text();
            let replacement = match (style, value) {
                (ScalarStyle::Plain, Value::String(s)) => plain_or_quoted(s),
                (ScalarStyle::Plain, Value::Bool(_)) => text,
                (ScalarStyle::DoubleQuoted, _)
                    if text.contains(['"', '\\']) || has_control(&text) =>
                {
                    return Err(bad(format!(
                        "{text:?} cannot be written in double quotes as is"
                    )));
                }
                (ScalarStyle::SingleQuoted, _) if text.contains('\'') || has_control(&text) => {
                    return Err(bad(format!(
                        "{text:?} cannot be written in single quotes as is"
                    )));
                }
                _ => text,
            };
            Ok(splice(content, range.start..range.end, &replacement))
        }
        Walk::Missing { at, missing } => {
            let newline = if content.contains("\r\n") {
                "\r\n"
            } else {
                "\n"
            };
            let Some(at) = at else {
                let mut out = content.to_owned();
                if !out.is_empty() && !out.ends_with('\n') {
                    out.push_str(newline);
                }
                out.push_str(&render(&path[missing..], value, 0, newline));
                return Ok(out);
            };
            let (offset, indent) =
                insertion_point(content, &tree, at, &path[missing]).map_err(|reason| {
                    EditError {
                        path: shown(&path[..=missing]),
                        reason,
                    }
                })?;
            let mut text = render(&path[missing..], value, indent, newline);
            let mut offset = offset;
            if offset == content.len() && !content.ends_with('\n') {
                text.insert_str(0, newline);
                offset = content.len();
            }
            Ok(splice(content, offset..offset, &text))
        }
    }
}

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

fn splice(content: &str, range: std::ops::Range<usize>, text: &str) -> String {
    let mut out = String::with_capacity(content.len() + text.len());
    out.push_str(&content[..range.start]);
    out.push_str(text);
    out.push_str(&content[range.end..]);
    out
}

/// `s` as a plain scalar when it reads back as the same string, else in double quotes.
fn plain_or_quoted(s: &str) -> String {
    let risky_start = s.starts_with([
        '-', '?', ':', ',', '[', ']', '{', '}', '#', '&', '*', '!', '|', '>', '\'', '"', '%', '@',
        '`', ' ',
    ]);
    let plain = !risky_start
        && !s.ends_with([' ', ':'])
        && !s.contains(": ")
        && !s.contains(" #")
        && !has_control(s)
        && !plain_reads_as_non_string(s);
    if plain {
        s.to_owned()
    } else {
        let escaped: String = s
            .chars()
            .flat_map(|c| match c {
                '"' => vec!['\\', '"'],
                '\\' => vec!['\\', '\\'],
                '\n' => vec!['\\', 'n'],
                '\t' => vec!['\\', 't'],
                c => vec![c],
            })
            .collect();
        format!("\"{escaped}\"")
    }
}

/// The text of `steps` (the first one missing from its parent) at `indent` columns.
fn render(steps: &[Step<'_>], value: Value<'_>, indent: usize, newline: &str) -> String {
    let pad = " ".repeat(indent);
    let leaf = |v: Value<'_>| match v {
        Value::String(s) => plain_or_quoted(s),
        Value::Bool(b) => b.to_string(),
    };
    match steps {
        [] => String::new(),
        [Step::Key(k)] => format!("{pad}{}: {}{newline}", plain_or_quoted(k), leaf(value)),
        [Step::Key(k), rest @ ..] => {
            // Lists under a key are written at the key's own indentation, as Argo CD's
            // files and most tools write them.
            let inner = match rest[0] {
                Step::Key(_) => indent + 2,
                _ => indent,
            };
            format!(
                "{pad}{}:{newline}{}",
                plain_or_quoted(k),
                render(rest, value, inner, newline)
            )
        }
        [Step::Item { key, value: v }, rest @ ..] => {
            let first = format!(
                "{pad}- {}: {}{newline}",
                plain_or_quoted(key),
                plain_or_quoted(v)
            );
            first + &render(rest, value, indent + 2, newline)
        }
        [Step::ScalarItem(_), ..] => format!("{pad}- {}{newline}", leaf(value)),
    }
}

/// Where the line holding byte `at` starts. YAML breaks lines at `\n`, `\r\n` and a lone
/// `\r` alike.
fn start_of_line(content: &str, at: usize) -> usize {
    content[..at].rfind(['\n', '\r']).map_or(0, |i| i + 1)
}

/// The column of byte `at`, and whether only blanks precede it on its line.
fn column(content: &str, at: usize) -> (usize, bool) {
    let start = start_of_line(content, at);
    let before = &content[start..at];
    (at - start, before.chars().all(|c| c == ' '))
}

/// The byte after the end of the line holding byte `at` (the text's end without newline).
fn after_line(content: &str, at: usize) -> usize {
    match content[at..].find(['\n', '\r']) {
        Some(i) if content[at + i..].starts_with("\r\n") => at + i + 2,
        Some(i) => at + i + 1,
        None => content.len(),
    }
}

/// The end of the one line `id` is written on, when it is a scalar on one line.
fn one_line_end(content: &str, tree: &Tree, id: NodeId) -> Option<usize> {
    let scalar = tree.own_scalar(id)?;
    let token = &content[scalar.token.clone()];
    (!token.contains(['\n', '\r']) && scalar.style.is_some())
        .then(|| after_line(content, scalar.token.end))
}

/// The last byte where an item or entry of the collection `id` ends on one line: after the
/// line of its last entry or item, when that is written on one line (looking into a last
/// item that is a mapping).
fn collection_end(content: &str, tree: &Tree, id: NodeId) -> Option<usize> {
    match &tree.nodes[id] {
        Node::Mapping { entries, .. } => {
            let &(_, value) = entries.last()?;
            one_line_end(content, tree, value)
        }
        Node::Sequence { items } => {
            let &last = items.last()?;
            match &tree.nodes[last] {
                Node::Scalar(_) => one_line_end(content, tree, last),
                Node::Mapping { flow: false, .. } => collection_end(content, tree, last),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Where an entry goes in the block collection `at` (a `kind`, mapping or list) whose first
/// entry begins at byte `first` (its first key, or the dash of its first item): after the
/// collection's last line, or else before its first line; at the column of `first`.
fn block_insertion(
    content: &str,
    tree: &Tree,
    at: NodeId,
    first: usize,
    kind: &str,
) -> Result<(usize, usize), String> {
    let (indent, line_start) = column(content, first);
    // Only blanks or list dashes may come before the first entry on its line: after an
    // anchor or a tag the collection's indentation is not the entry's column.
    if !content[first - indent..first]
        .chars()
        .all(|c| c == ' ' || c == '-')
    {
        return Err(format!(
            "its {kind} starts after an anchor or a tag on the same line; add it by hand"
        ));
    }
    if let Some(end) = collection_end(content, tree, at) {
        return Ok((end, indent));
    }
    if line_start {
        return Ok((first - indent, indent));
    }
    Err(format!("there is no line of its {kind} to add it after"))
}

/// Where a missing `step` goes in the collection `at`, and at which column.
fn insertion_point(
    content: &str,
    tree: &Tree,
    at: NodeId,
    step: &Step<'_>,
) -> Result<(usize, usize), String> {
    if at != tree.resolve(at) {
        return Err("its parent is written through an alias".into());
    }
    match (&tree.nodes[at], step) {
        (Node::Mapping { flow: true, .. }, _) | (Node::Sequence { .. }, _)
            if content[tree.start(at)..].starts_with(['{', '[']) =>
        {
            Err("its parent is a flow collection (`{...}` or `[...]`); add it by hand".into())
        }
        (Node::Mapping { entries, .. }, Step::Key(_)) => {
            let &(first_key, _) = entries
                .first()
                .ok_or("its parent is an empty mapping; add it by hand")?;
            block_insertion(content, tree, at, tree.start(first_key), "mapping")
        }
        (Node::Sequence { items }, Step::Item { .. } | Step::ScalarItem(_)) => {
            let &first = items
                .first()
                .ok_or("its parent is an empty list; add it by hand")?;
            let first_start = tree.start(first);
            let dash = content[..first_start]
                .trim_end_matches(' ')
                .strip_suffix('-')
                .map(str::len)
                .ok_or("its list is not written with `- `")?;
            block_insertion(content, tree, at, dash, "list")
        }
        (Node::Scalar(s), _) if s.value.is_empty() || s.value == "~" || s.value == "null" => Err(
            "its parent is empty (null); write an empty mapping or list in its place by hand"
                .into(),
        ),
        _ => Err("its parent is not the collection the path needs".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(text: &str, value: &str) -> Result<String, EditError> {
        set(
            text,
            &[Step::Key("image"), Step::Key("tag")],
            Value::String(value),
        )
    }

    /// `image.tag` set to a value in a file: (file, value, the file after).
    fn assert_tags(cases: &[(&str, &str, &str)]) {
        for &(text, value, after) in cases {
            assert_eq!(tag(text, value).unwrap(), after, "{text:?} with {value}");
        }
    }

    #[test]
    fn rewrites_only_the_value_in_its_quotes() {
        let same = "image:\n  tag: 1.2.3\n";
        assert_tags(&[
            (
                "image:\n  tag: 1.2.3 # c\n",
                "1.3.0",
                "image:\n  tag: 1.3.0 # c\n",
            ),
            ("image:\n  tag: '1.2'\n", "1.10", "image:\n  tag: '1.10'\n"),
            (
                "image:\n  tag: 1.2.3\n",
                "1.10",
                "image:\n  tag: \"1.10\"\n",
            ),
            ("image: {tag: v1}\n", "v2", "image: {tag: v2}\n"),
            (same, "1.2.3", same),
        ]);
    }

    #[test]
    fn adds_missing_keys_and_items_in_the_files_indentation() {
        assert_tags(&[
            ("", "1.0", "image:\n  tag: \"1.0\"\n"),
            (
                "a: 1\nimage:\n    name: web\n",
                "v2",
                "a: 1\nimage:\n    name: web\n    tag: v2\n",
            ),
            ("a: 1", "v2", "a: 1\nimage:\n  tag: v2\n"),
        ]);
        let params = "helm:\n  parameters:\n  - name: x\n    value: \"1\"\n";
        let path = helm_parameter("image.tag");
        let after = set(params, &path, Value::String("1.2")).unwrap();
        assert_eq!(
            after,
            "helm:\n  parameters:\n  - name: x\n    value: \"1\"\n  - name: image.tag\n    value: \"1.2\"\n"
        );
        let mut force = path;
        force[3] = Step::Key("forcestring");
        let after = set(&after, &force, Value::Bool(true)).unwrap();
        assert!(
            after.ends_with("  - name: image.tag\n    value: \"1.2\"\n    forcestring: true\n"),
            "{after}"
        );
        assert_eq!(get(&after, &path).unwrap().as_deref(), Some("1.2"));
        let images = "kustomize:\n  images:\n  - a:1 # keep\n";
        let web = |s: &str| s.starts_with("web:");
        let path = argocd_source_image(&web);
        let after = set(images, &path, Value::String("web:2")).unwrap();
        assert_eq!(after, "kustomize:\n  images:\n  - a:1 # keep\n  - web:2\n");
        let again = set(&after, &path, Value::String("web:3")).unwrap();
        // A lone `\r` ends a line: the item goes after it, at the list's own column.
        let lone = "images:\r- name: a\rx: 1\n";
        let path = kustomization_image("web", "newTag");
        let out = set(lone, &path, Value::String("2")).unwrap();
        assert_eq!(
            out,
            "images:\r- name: a\r- name: web\n  newTag: \"2\"\nx: 1\n"
        );
        assert_eq!(get(&out, &path).unwrap().as_deref(), Some("2"));
        assert_eq!(again, "kustomize:\n  images:\n  - a:1 # keep\n  - web:3\n");
    }

    #[test]
    fn reads_the_first_document_as_json() {
        let json = to_json("a: [1, \"2\", x]\n---\nb: 1\n").unwrap();
        assert_eq!(json, serde_json::json!({ "a": [1, "2", "x"] }));
        assert_eq!(
            to_json("# only a comment\n").unwrap(),
            serde_json::Value::Null
        );
        assert!(to_json("a: [").is_err());
    }

    #[test]
    fn refuses_edits_through_aliases_and_merge_keys() {
        let text = "base: &b\n  tag: \"1\"\napp:\n  <<: *b\nother: *b\n";
        for (key, through) in [("app", "merge key"), ("other", "alias")] {
            let path = [Step::Key(key), Step::Key("tag")];
            let err = set(text, &path, Value::String("2")).unwrap_err();
            assert!(err.to_string().contains(through), "{key}: {err}");
        }
        assert_eq!(
            get(text, &[Step::Key("app"), Step::Key("tag")])
                .unwrap()
                .as_deref(),
            Some("1")
        );
        let own = set(
            text,
            &[Step::Key("base"), Step::Key("tag")],
            Value::String("2"),
        )
        .unwrap();
        assert_eq!(own, text.replace("\"1\"", "\"2\""));
    }

    proptest::proptest! {
        /// Any text and path: an answer or an error, never a panic; what `set` writes reads
        /// back as the value, and setting it again changes nothing.
        #[test]
        fn set_reads_back_and_is_stable(
            content in "([a-z]{1,3}:( [a-z0-9.\"']{0,4})?\n|  |- |#x\n|\\{|\\[|&a |\\*a |<<: ){0,12}",
            keys in proptest::collection::vec("[a-z]{1,3}", 1..4),
            value in "[a-zA-Z0-9.:/@ -]{0,12}",
        ) {
            let path: Vec<Step<'_>> = keys.iter().map(|k| Step::Key(k)).collect();
            let _ = get(&content, &path);
            if let Ok(out) = set(&content, &path, Value::String(&value)) {
                proptest::prop_assert_eq!(get(&out, &path).unwrap(), Some(value.clone()));
                proptest::prop_assert_eq!(set(&out, &path, Value::String(&value)).unwrap(), out);
            }
        }

        /// In a block mapping of plain values, setting one key changes no other line.
        #[test]
        fn other_lines_stay(
            entries in proptest::collection::btree_map("[a-z]{1,4}", "[a-z0-9.]{1,6}", 1..6),
            pick in 0usize..6,
            value in "[a-z0-9.]{1,6}",
        ) {
            let text: String = entries.iter().map(|(k, v)| format!("{k}: {v} # c\n")).collect();
            let key = entries.keys().nth(pick % entries.len()).unwrap().clone();
            let out = set(&text, &[Step::Key(&key)], Value::String(&value)).unwrap();
            for (line, before) in out.lines().zip(text.lines()) {
                if !before.starts_with(&format!("{key}:")) {
                    proptest::prop_assert_eq!(line, before);
                }
            }
            proptest::prop_assert_eq!(out.lines().count(), text.lines().count());
        }
    }

    #[test]
    fn refuses_what_it_cannot_edit_in_place() {
        for (text, want) in [
            ("image: [1]\n", "not a mapping"),
            ("image: {}\n", "flow"),
            ("image:\n  tag: |\n    1.2\n", "block scalar"),
            ("image: x\n", "not a mapping"),
            ("image:\n  tag: {a: 1}\n", "not a value"),
            ("image:\n  tag: \"a\\\"b\"\n", "block scalar"),
            ("a: [\n", "not YAML"),
            // The proptest's case: a key added after `&a ` would nest under the last key.
            ("&a other: 1\n", "anchor or a tag"),
            // The fuzzer's case: a lone `\r` breaks a line too.
            ("image:\r  - x\r", "not a mapping"),
        ] {
            let err = tag(text, "2").unwrap_err();
            assert!(err.to_string().contains(want), "{text:?}: {err}");
        }
    }
}

//! A small positioned YAML tree built from the parser's events.
//!
//! The parser reports positions in characters and its spans are loose around node properties
//! (anchors, tags) and quoted scalars, so every scalar's exact byte range is recovered here from
//! the source text itself.

use std::collections::HashMap;
use std::ops::Range;

use saphyr_parser::{Event, Parser, ScalarStyle as ParserStyle, Span};

use super::ScalarStyle;

/// Index of a node in [`Tree::nodes`].
pub(crate) type NodeId = usize;

/// How deep alias and merge-key resolution may go before giving up (guards against cycles).
const MAX_RESOLVE_DEPTH: usize = 16;

/// How many nodes the aliases of one file may stand for in all, counting the nodes inside
/// the aliased collections (and what their own aliases stand for). Reading a file follows
/// aliases and merge keys, so a "billion laughs" file of a few hundred bytes whose aliases
/// nest ten deep would stand for billions of nodes; such a file is refused as it is parsed.
pub(crate) const MAX_ALIAS_EXPANSION: u64 = 100_000;

/// A parsed YAML stream: every document's root, its nodes and its anchors.
#[derive(Debug, Default)]
pub(crate) struct Tree {
    pub(crate) nodes: Vec<Node>,
    /// Where each node starts (byte offset, node properties skipped).
    starts: Vec<usize>,
    pub(crate) docs: Vec<NodeId>,
    anchors: HashMap<usize, NodeId>,
    /// How many nodes each node stands for, aliases expanded (so far, for open collections).
    sizes: Vec<u64>,
    /// Whether each node is complete (a collection whose end was seen, or any other node).
    complete: Vec<bool>,
}

/// One node of the tree.
#[derive(Debug)]
pub(crate) enum Node {
    Scalar(Scalar),
    Mapping {
        entries: Vec<(NodeId, NodeId)>,
        flow: bool,
    },
    Sequence {
        items: Vec<NodeId>,
    },
    Alias(usize),
}

/// A scalar with its value and where it is written.
#[derive(Debug)]
pub(crate) struct Scalar {
    /// The value after unquoting and folding.
    pub(crate) value: String,
    /// The quoting style, `None` for block scalars (`|`, `>`).
    pub(crate) style: Option<ScalarStyle>,
    /// Bytes of the token, quotes included, properties excluded.
    pub(crate) token: Range<usize>,
    /// Bytes of the content inside any quotes, when the written text is exactly the value
    /// (one line, no escapes); only such scalars can be rewritten in place.
    pub(crate) content: Option<Range<usize>>,
}

/// A syntax error: what the parser said and where (1-based line).
#[derive(Debug)]
pub(crate) struct SyntaxError {
    pub(crate) line: usize,
    pub(crate) column: usize,
    pub(crate) message: String,
}

/// Maps the parser's character indices to byte offsets.
struct Offsets {
    /// Byte offset of each character, plus the length; empty when the text is ASCII.
    bytes: Vec<usize>,
    len: usize,
}

impl Offsets {
    fn new(text: &str) -> Offsets {
        let bytes = if text.is_ascii() {
            Vec::new()
        } else {
            text.char_indices()
                .map(|(i, _)| i)
                .chain(std::iter::once(text.len()))
                .collect()
        };
        Offsets {
            bytes,
            len: text.len(),
        }
    }

    fn byte(&self, char_index: usize) -> usize {
        if self.bytes.is_empty() {
            char_index.min(self.len)
        } else {
            self.bytes.get(char_index).copied().unwrap_or(self.len)
        }
    }
}

/// Parses `text` (every document of it).
///
/// # Errors
/// A syntax error, or an alias that refers to a collection containing it, or aliases that
/// stand for more than [`MAX_ALIAS_EXPANSION`] nodes in all.
pub(crate) fn parse(text: &str) -> Result<Tree, SyntaxError> {
    let offsets = Offsets::new(text);
    let mut tree = Tree::default();
    // Open collections: the node and, for mappings, a key waiting for its value.
    let mut stack: Vec<(NodeId, Option<NodeId>)> = Vec::new();
    // The nodes the aliases so far stand for.
    let mut expansion: u64 = 0;
    for item in Parser::new_from_str(text) {
        let (event, span) = item.map_err(|e| SyntaxError {
            line: e.marker().line(),
            column: e.marker().col() + 1,
            message: e.info().to_owned(),
        })?;
        let start = offsets.byte(span.start.index());
        let (node, anchor) = match event {
            Event::Scalar(value, style, anchor, _) => {
                let scalar = locate_scalar(text, &offsets, span, start, value.into_owned(), style);
                (Node::Scalar(scalar), anchor)
            }
            Event::Alias(id) => {
                let at = |message: String| SyntaxError {
                    line: span.start.line(),
                    column: span.start.col() + 1,
                    message,
                };
                let size = match tree.anchors.get(&id) {
                    Some(&target) if !tree.complete[target] => {
                        return Err(at(
                            "an alias refers to a collection that contains it".to_owned()
                        ));
                    }
                    Some(&target) => tree.sizes[target],
                    None => 1,
                };
                expansion = expansion.saturating_add(size);
                if expansion > MAX_ALIAS_EXPANSION {
                    return Err(at(format!(
                        "the aliases stand for more than {MAX_ALIAS_EXPANSION} nodes, the \
                         limit (an alias bomb?)"
                    )));
                }
                (Node::Alias(id), 0)
            }
            Event::MappingStart(anchor, _) => {
                let begin = skip_properties(text, start);
                let flow = text[begin..].starts_with('{');
                let id = tree.push(
                    Node::Mapping {
                        entries: Vec::new(),
                        flow,
                    },
                    begin,
                );
                tree.complete[id] = false;
                if anchor != 0 {
                    tree.anchors.insert(anchor, id);
                }
                stack.push((id, None));
                continue;
            }
            Event::SequenceStart(anchor, _) => {
                let begin = skip_properties(text, start);
                let id = tree.push(Node::Sequence { items: Vec::new() }, begin);
                tree.complete[id] = false;
                if anchor != 0 {
                    tree.anchors.insert(anchor, id);
                }
                stack.push((id, None));
                continue;
            }
            Event::MappingEnd | Event::SequenceEnd => {
                if let Some((id, _)) = stack.pop() {
                    tree.complete[id] = true;
                    tree.attach(&mut stack, id);
                }
                continue;
            }
            Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart(_)
            | Event::DocumentEnd
            | Event::Nothing => continue,
        };
        let begin = match &node {
            Node::Scalar(s) => s.token.start,
            _ => start,
        };
        let id = tree.push(node, begin);
        if anchor != 0 {
            tree.anchors.insert(anchor, id);
        }
        tree.attach(&mut stack, id);
    }
    Ok(tree)
}

/// Finds the exact bytes of a scalar whose event starts at byte `start`.
fn locate_scalar(
    text: &str,
    offsets: &Offsets,
    span: Span,
    start: usize,
    value: String,
    style: ParserStyle,
) -> Scalar {
    let begin = skip_properties(text, start);
    let end_of_span = offsets.byte(span.end.index()).max(begin);
    let (style, token, content) = match style {
        ParserStyle::Plain => {
            let token = begin..end_of_span;
            (Some(ScalarStyle::Plain), token.clone(), token)
        }
        ParserStyle::SingleQuoted | ParserStyle::DoubleQuoted => {
            let double = matches!(style, ParserStyle::DoubleQuoted);
            let close = closing_quote(text, begin, double);
            let token = begin..close.map_or(text.len(), |c| c + 1);
            let content = (begin + 1).min(text.len())..close.unwrap_or(text.len());
            let style = if double {
                ScalarStyle::DoubleQuoted
            } else {
                ScalarStyle::SingleQuoted
            };
            (Some(style), token, content)
        }
        ParserStyle::Literal | ParserStyle::Folded => (None, begin..end_of_span, begin..begin),
    };
    let exact =
        style.is_some() && !value.is_empty() && text.get(content.clone()) == Some(value.as_str());
    Scalar {
        value,
        style,
        token,
        content: exact.then_some(content),
    }
}

/// Skips anchors (`&a`), tags (`!t`), white space and comments in front of a node.
fn skip_properties(text: &str, mut at: usize) -> usize {
    let bytes = text.as_bytes();
    loop {
        match bytes.get(at) {
            Some(b' ' | b'\t' | b'\r' | b'\n') => at += 1,
            Some(b'#') => {
                while at < bytes.len() && bytes[at] != b'\n' {
                    at += 1;
                }
            }
            Some(b'&' | b'!') => {
                while at < bytes.len()
                    && !matches!(bytes[at], b' ' | b'\t' | b'\r' | b'\n' | b',' | b'[' | b']')
                    && !(bytes[at] == b'{' || bytes[at] == b'}')
                {
                    at += 1;
                }
            }
            _ => return at.min(text.len()),
        }
    }
}

/// The byte offset of the quote closing the quoted scalar that opens at `open`.
fn closing_quote(text: &str, open: usize, double: bool) -> Option<usize> {
    let bytes = text.as_bytes();
    let quote = if double { b'"' } else { b'\'' };
    let mut at = open + 1;
    while at < bytes.len() {
        let b = bytes[at];
        if double && b == b'\\' {
            at += 2;
            continue;
        }
        if b == quote {
            if !double && bytes.get(at + 1) == Some(&b'\'') {
                at += 2;
                continue;
            }
            return Some(at);
        }
        at += 1;
    }
    None
}

impl Tree {
    fn push(&mut self, node: Node, start: usize) -> NodeId {
        let size = match &node {
            Node::Alias(anchor) => self.anchors.get(anchor).map_or(1, |&t| self.sizes[t]),
            _ => 1,
        };
        self.nodes.push(node);
        self.starts.push(start);
        self.sizes.push(size);
        self.complete.push(true);
        self.nodes.len() - 1
    }

    /// The byte offset where node `id` (itself, not what an alias stands for) is written.
    pub(crate) fn start(&self, id: NodeId) -> usize {
        self.starts[id]
    }

    /// Hangs a finished node `id` on the innermost open collection, or makes it a document.
    fn attach(&mut self, stack: &mut [(NodeId, Option<NodeId>)], id: NodeId) {
        let Some((parent, pending_key)) = stack.last_mut() else {
            self.docs.push(id);
            return;
        };
        self.sizes[*parent] = self.sizes[*parent].saturating_add(self.sizes[id]);
        match &mut self.nodes[*parent] {
            Node::Mapping { entries, .. } => match pending_key.take() {
                Some(key) => entries.push((key, id)),
                None => *pending_key = Some(id),
            },
            Node::Sequence { items } => items.push(id),
            Node::Scalar(_) | Node::Alias(_) => {}
        }
    }

    /// Follows aliases to the node they stand for.
    pub(crate) fn resolve(&self, mut id: NodeId) -> NodeId {
        for _ in 0..MAX_RESOLVE_DEPTH {
            match &self.nodes[id] {
                Node::Alias(anchor) => match self.anchors.get(anchor) {
                    Some(&target) => id = target,
                    None => return id,
                },
                _ => return id,
            }
        }
        id
    }

    /// The scalar `id` stands for, following aliases.
    pub(crate) fn scalar(&self, id: NodeId) -> Option<&Scalar> {
        match &self.nodes[self.resolve(id)] {
            Node::Scalar(s) => Some(s),
            _ => None,
        }
    }

    /// The scalar written at `id` itself (not through an alias).
    pub(crate) fn own_scalar(&self, id: NodeId) -> Option<&Scalar> {
        match &self.nodes[id] {
            Node::Scalar(s) => Some(s),
            _ => None,
        }
    }

    /// The string value of the scalar `id` stands for.
    pub(crate) fn str(&self, id: NodeId) -> Option<&str> {
        self.scalar(id).map(|s| s.value.as_str())
    }

    /// The entries of the mapping `id` stands for, merge keys (`<<`) expanded after the
    /// mapping's own keys.
    pub(crate) fn entries(&self, id: NodeId) -> Vec<(NodeId, NodeId)> {
        let mut out = Vec::new();
        self.collect_entries(id, 0, &mut out);
        out
    }

    fn collect_entries(&self, id: NodeId, depth: usize, out: &mut Vec<(NodeId, NodeId)>) {
        if depth > MAX_RESOLVE_DEPTH {
            return;
        }
        let Node::Mapping { entries, .. } = &self.nodes[self.resolve(id)] else {
            return;
        };
        let mut merges = Vec::new();
        for &(k, v) in entries {
            let is_merge = self
                .own_scalar(k)
                .is_some_and(|s| s.value == "<<" && s.style == Some(ScalarStyle::Plain));
            if is_merge {
                merges.push(v);
            } else {
                out.push((k, v));
            }
        }
        for v in merges {
            match &self.nodes[self.resolve(v)] {
                Node::Sequence { items } => {
                    for &item in items {
                        self.collect_entries(item, depth + 1, out);
                    }
                }
                _ => self.collect_entries(v, depth + 1, out),
            }
        }
    }

    /// The value of `key` in the mapping `id` stands for (the first one, own keys before merged).
    pub(crate) fn get(&self, id: NodeId, key: &str) -> Option<NodeId> {
        self.entries(id)
            .into_iter()
            .find(|&(k, _)| self.str(k) == Some(key))
            .map(|(_, v)| v)
    }

    /// Follows a path of keys from `id`.
    pub(crate) fn path(&self, id: NodeId, keys: &[&str]) -> Option<NodeId> {
        keys.iter().try_fold(id, |at, key| self.get(at, key))
    }

    /// The string value at a path of keys from `id`.
    pub(crate) fn path_str(&self, id: NodeId, keys: &[&str]) -> Option<&str> {
        self.path(id, keys).and_then(|v| self.str(v))
    }

    /// The items of the sequence `id` stands for (empty for anything else).
    pub(crate) fn items(&self, id: NodeId) -> &[NodeId] {
        match &self.nodes[self.resolve(id)] {
            Node::Sequence { items } => items,
            _ => &[],
        }
    }

    /// Whether `id` stands for a mapping.
    pub(crate) fn is_mapping(&self, id: NodeId) -> bool {
        matches!(self.nodes[self.resolve(id)], Node::Mapping { .. })
    }

    /// Whether the mapping `id` (itself, not through an alias) is written in flow style.
    pub(crate) fn is_flow_mapping(&self, id: NodeId) -> bool {
        matches!(self.nodes[id], Node::Mapping { flow: true, .. })
    }

    /// Converts the node to JSON by the YAML core schema (for configuration files).
    pub(crate) fn to_json(&self, id: NodeId) -> serde_json::Value {
        self.to_json_at(id, 0)
    }

    fn to_json_at(&self, id: NodeId, depth: usize) -> serde_json::Value {
        use serde_json::Value;
        if depth > MAX_RESOLVE_DEPTH * 4 {
            return Value::Null;
        }
        let id = self.resolve(id);
        match &self.nodes[id] {
            Node::Scalar(s) => scalar_to_json(s),
            Node::Sequence { items } => Value::Array(
                items
                    .iter()
                    .map(|&i| self.to_json_at(i, depth + 1))
                    .collect(),
            ),
            Node::Mapping { .. } => {
                let mut map = serde_json::Map::new();
                for (k, v) in self.entries(id) {
                    let key = match self.to_json_at(k, depth + 1) {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    map.entry(key)
                        .or_insert_with(|| self.to_json_at(v, depth + 1));
                }
                Value::Object(map)
            }
            Node::Alias(_) => Value::Null,
        }
    }
}

/// A scalar's value by the YAML 1.2 core schema: null, booleans, integers, floats, strings.
fn scalar_to_json(s: &Scalar) -> serde_json::Value {
    use serde_json::Value;
    if s.style != Some(ScalarStyle::Plain) {
        return Value::String(s.value.clone());
    }
    let v = s.value.as_str();
    match v {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if let Ok(i) = v.parse::<i64>() {
        return Value::from(i);
    }
    if looks_like_float(v)
        && let Ok(f) = v.parse::<f64>()
        && let Some(n) = serde_json::Number::from_f64(f)
    {
        return Value::Number(n);
    }
    Value::String(s.value.clone())
}

/// `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`
fn looks_like_float(v: &str) -> bool {
    let v = v.strip_prefix(['-', '+']).unwrap_or(v);
    let (mantissa, exponent) = match v.find(['e', 'E']) {
        Some(i) => (&v[..i], Some(&v[i + 1..])),
        None => (v, None),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (mantissa, None),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match frac {
        Some(f) => digits(int) && digits(f) && !(int.is_empty() && f.is_empty()),
        None => !int.is_empty() && digits(int),
    };
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    mantissa_ok && exponent_ok
}

/// Whether `text`, written as a plain scalar, would read as something other than a string
/// (null, boolean, number) under YAML 1.2 or the YAML 1.1 rules many tools still use.
pub(crate) fn plain_reads_as_non_string(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    if matches!(
        lower.as_str(),
        "" | "~"
            | "null"
            | "true"
            | "false"
            | "yes"
            | "no"
            | "on"
            | "off"
            | "y"
            | "n"
            | ".inf"
            | "-.inf"
            | "+.inf"
            | ".nan"
    ) {
        return true;
    }
    let no_underscores: String = text.chars().filter(|&c| c != '_').collect();
    let body = no_underscores
        .strip_prefix(['-', '+'])
        .unwrap_or(&no_underscores);
    let radix = |prefix: &str, ok: fn(u8) -> bool| {
        body.strip_prefix(prefix)
            .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(ok))
    };
    looks_like_float(&no_underscores)
        || radix("0x", |b| b.is_ascii_hexdigit())
        || radix("0o", |b| matches!(b, b'0'..=b'7'))
        || radix("0b", |b| matches!(b, b'0' | b'1'))
}

/// Whether `text` parses as YAML; the syntax error if not.
pub(crate) fn check(text: &str) -> Result<(), SyntaxError> {
    for item in Parser::new_from_str(text) {
        item.map_err(|e| SyntaxError {
            line: e.marker().line(),
            column: e.marker().col() + 1,
            message: e.info().to_owned(),
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use keel_testsupport::yaml::billion_laughs;

    use super::*;

    fn scalars(text: &str) -> Vec<(String, Option<&str>, Option<ScalarStyle>)> {
        let tree = parse(text).unwrap();
        tree.nodes
            .iter()
            .filter_map(|n| match n {
                Node::Scalar(s) => Some((
                    s.value.clone(),
                    s.content.clone().map(|r| &text[r]),
                    s.style,
                )),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn scalar_ranges_are_exact_around_properties_quotes_and_comments() {
        let text = "a: &x \"q1\" # c\nb: !!str 'it''s'  # z\nc: &y plain # d\nd: *x\ne: {r: é, t: \"1.2\"}\nf: \"esc\\\"\"\n";
        let got = scalars(text);
        assert!(got.contains(&("q1".into(), Some("q1"), Some(ScalarStyle::DoubleQuoted))));
        // The written text is not the value: not rewritable in place.
        assert!(got.contains(&("it's".into(), None, Some(ScalarStyle::SingleQuoted))));
        assert!(got.contains(&("plain".into(), Some("plain"), Some(ScalarStyle::Plain))));
        assert!(got.contains(&("é".into(), Some("é"), Some(ScalarStyle::Plain))));
        assert!(got.contains(&("1.2".into(), Some("1.2"), Some(ScalarStyle::DoubleQuoted))));
        assert!(got.contains(&("esc\"".into(), None, Some(ScalarStyle::DoubleQuoted))));
        let tree = parse(text).unwrap();
        let root = tree.docs[0];
        assert_eq!(tree.path_str(root, &["d"]), Some("q1"));
        assert!(tree.is_flow_mapping(tree.get(root, "e").unwrap()));
    }

    #[test]
    fn alias_bombs_are_refused_while_parsing() {
        let text = billion_laughs();
        assert!(text.len() <= 1024, "{} bytes", text.len());
        let e = parse(&text).unwrap_err();
        assert!(
            e.message.contains("more than 100000 nodes"),
            "{}",
            e.message
        );
        // Level 5 (9^5 = 59,049 nodes) is where the aliases pass the limit.
        assert_eq!(e.line, 6, "{}", e.message);

        // Merge keys expand through aliases too.
        let mut merges = String::from("m0: &m0 {a: 1, b: 2, c: 3, d: 4, e: 5, f: 6, g: 7, h: 8}\n");
        for level in 1..8 {
            let below = vec![format!("*m{}", level - 1); 8].join(", ");
            merges.push_str(&format!(
                "m{level}: &m{level} {{<<: [{below}], x{level}: 1}}\n"
            ));
        }
        assert!(parse(&merges).unwrap_err().message.contains("100000"));

        let e = parse("a: &a [1, *a]\n").unwrap_err();
        assert!(e.message.contains("contains it"), "{}", e.message);
        let e = parse("a: &a {b: {c: *a}}\n").unwrap_err();
        assert!(e.message.contains("contains it"), "{}", e.message);
    }

    #[test]
    fn aliases_within_the_budget_are_read() {
        // 1,000 aliases of a 90-node mapping: 91,000 nodes, under the limit.
        let keys: Vec<String> = (0..45).map(|i| format!("k{i}: v{i}")).collect();
        let mut text = format!("base: &base {{{}}}\nlist:\n", keys.join(", "));
        for _ in 0..1000 {
            text.push_str("  - *base\n");
        }
        let tree = parse(&text).unwrap();
        let list = tree.get(tree.docs[0], "list").unwrap();
        let items = tree.items(list);
        assert_eq!(items.len(), 1000);
        assert_eq!(tree.path_str(items[999], &["k44"]), Some("v44"));
        // One more alias of it is too many.
        text.push_str("  - *base\n".repeat(100).as_str());
        assert!(parse(&text).is_err());
    }

    #[test]
    fn merge_keys_and_core_schema() {
        let text = "base: &b {x: 1, y: true}\nm:\n  <<: *b\n  y: s\n  z: ~\n  f: 1.5\n";
        let tree = parse(text).unwrap();
        let m = tree.get(tree.docs[0], "m").unwrap();
        assert_eq!(
            tree.to_json(m),
            serde_json::json!({"y": "s", "z": null, "f": 1.5, "x": 1})
        );
    }

    #[test]
    fn ambiguous_plain_scalars() {
        for s in [
            "1.10", "123", "1e3", "true", "No", "0x1F", "1_000", "~", ".5",
        ] {
            assert!(plain_reads_as_non_string(s), "{s}");
        }
        for s in ["1.2.3", "v1.10", "latest", "1.2-alpine", "e3", "sha256"] {
            assert!(!plain_reads_as_non_string(s), "{s}");
        }
    }
}

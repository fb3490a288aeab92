//! The part of Go's `text/template` that Flux's `spec.git.commit.messageTemplate` uses.
//!
//! Supported actions, with `{{-` and `-}}` trimming the whitespace beside them as in Go:
//!
//! | action | renders |
//! |---|---|
//! | `{{ .AutomationObject }}` | `namespace/name` of the `ImageUpdateAutomation` |
//! | `{{ .Values.KEY }}` | `spec.git.commit.messageTemplateValues.KEY` |
//! | `{{ range .Changed.Changes }}…{{ end }}` | the body once per change, in file order; inside, `{{ .OldValue }}`, `{{ .NewValue }}` and `{{ .Setter }}` (the marker, e.g. `apps:web:tag`) |
//! | `{{ range $file, $_ := .Changed.FileChanges }}…{{ end }}` (or `.Updated.Files`) | the body once per changed file, in path order; inside, `{{ $file }}` |
//! | `{{ range .Updated.Images }}…{{ end }}` | the body once per new image (`name:tag[@digest]`); inside, `{{ . }}` |
//! | `{{/* comment */}}` | nothing |
//!
//! Anything else (`.Changed.Objects`, `if`, pipelines, functions) is refused when the template
//! is parsed, so no message is ever committed half-rendered.

use std::collections::BTreeMap;

/// One change at one marker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Change {
    /// The file, relative to the repository root.
    pub(crate) file: String,
    /// The marker, `NS:NAME` or `NS:NAME:part`.
    pub(crate) setter: String,
    /// What the marked value held.
    pub(crate) old_value: String,
    /// What it holds now.
    pub(crate) new_value: String,
}

/// What a template can refer to.
#[derive(Clone, Debug, Default)]
pub(crate) struct TemplateData {
    /// `namespace/name` of the automation.
    pub(crate) automation_object: String,
    /// `spec.git.commit.messageTemplateValues`.
    pub(crate) values: BTreeMap<String, String>,
    /// The changes, in file order.
    pub(crate) changes: Vec<Change>,
    /// The new images, `name:tag[@digest]`, without repeats, in order.
    pub(crate) images: Vec<String>,
}

/// A parsed template.
#[derive(Debug, PartialEq)]
enum Node {
    Text(String),
    AutomationObject,
    Value(String),
    RangeChanges(Vec<Node>),
    RangeFiles { var: String, body: Vec<Node> },
    RangeImages(Vec<Node>),
    // Inside ranges.
    OldValue,
    NewValue,
    Setter,
    Dot,
    Var(String),
}

/// Which range the parser is inside.
#[derive(Clone, Copy, PartialEq)]
enum Scope {
    Top,
    Changes,
    Files,
    Images,
}

/// Renders `template` over `data`.
///
/// # Errors
/// A message naming the first action that is not supported, or a `range` without `end`.
pub(crate) fn render(template: &str, data: &TemplateData) -> Result<String, String> {
    let tokens = tokenize(template)?;
    let mut at = 0;
    let nodes = parse(&tokens, &mut at, Scope::Top, None)?;
    let mut out = String::new();
    emit(&nodes, data, None, &mut out);
    Ok(out)
}

enum Token {
    Text(String),
    Action(String),
}

/// Splits the template into text and actions, applying `{{-` and `-}}` trimming.
fn tokenize(template: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut rest = template;
    let mut trim_next = false;
    while let Some(start) = rest.find("{{") {
        let mut text = &rest[..start];
        if trim_next {
            text = text.trim_start();
        }
        let after = &rest[start + 2..];
        let trim_before =
            after.starts_with("- ") || after.starts_with("-\t") || after.starts_with("-\n");
        if trim_before {
            text = text.trim_end();
        }
        if !text.is_empty() {
            tokens.push(Token::Text(text.to_owned()));
        }
        let end = after
            .find("}}")
            .ok_or_else(|| format!("unclosed action at byte {start} of the template"))?;
        let mut action = &after[..end];
        if trim_before {
            action = &action[1..];
        }
        trim_next = false;
        if action.ends_with(" -") || action.ends_with("\t-") || action.ends_with("\n-") {
            action = &action[..action.len() - 1];
            trim_next = true;
        }
        tokens.push(Token::Action(action.trim().to_owned()));
        rest = &after[end + 2..];
    }
    let text = if trim_next { rest.trim_start() } else { rest };
    if !text.is_empty() {
        tokens.push(Token::Text(text.to_owned()));
    }
    Ok(tokens)
}

fn parse(
    tokens: &[Token],
    at: &mut usize,
    scope: Scope,
    var: Option<&str>,
) -> Result<Vec<Node>, String> {
    let mut nodes = Vec::new();
    while *at < tokens.len() {
        let token = &tokens[*at];
        *at += 1;
        let action = match token {
            Token::Text(text) => {
                nodes.push(Node::Text(text.clone()));
                continue;
            }
            Token::Action(action) => action.as_str(),
        };
        if action.starts_with("/*") && action.ends_with("*/") {
            continue;
        }
        if action == "end" {
            if scope == Scope::Top {
                return Err("{{ end }} without a range".into());
            }
            return Ok(nodes);
        }
        let words: Vec<&str> = action.split_whitespace().collect();
        let node = match (scope, words.as_slice()) {
            (_, [".AutomationObject"]) => Node::AutomationObject,
            (_, [value]) if value.starts_with(".Values.") => {
                Node::Value(value[".Values.".len()..].to_owned())
            }
            (Scope::Top, ["range", ".Changed.Changes"]) => {
                Node::RangeChanges(parse(tokens, at, Scope::Changes, None)?)
            }
            (Scope::Top, ["range", ".Updated.Images"]) => {
                Node::RangeImages(parse(tokens, at, Scope::Images, None)?)
            }
            (
                Scope::Top,
                [
                    "range",
                    key,
                    second,
                    ":=",
                    ".Changed.FileChanges" | ".Updated.Files",
                ],
            ) if key.starts_with('$') && key.ends_with(',') && second.starts_with('$') => {
                let name = key.trim_end_matches(',').to_owned();
                let body = parse(tokens, at, Scope::Files, Some(&name))?;
                Node::RangeFiles { var: name, body }
            }
            (Scope::Changes, [".OldValue"]) => Node::OldValue,
            (Scope::Changes, [".NewValue"]) => Node::NewValue,
            (Scope::Changes, [".Setter"]) => Node::Setter,
            (Scope::Images, ["."]) => Node::Dot,
            (Scope::Files, [name]) if Some(*name) == var => Node::Var((*name).to_owned()),
            _ => {
                return Err(format!(
                    "the action {{{{ {action} }}}} is not supported by keel-flux (supported: \
                     .AutomationObject, .Values.KEY, range .Changed.Changes with .OldValue, \
                     .NewValue and .Setter, range $file, $_ := .Changed.FileChanges, range \
                     .Updated.Images with .)"
                ));
            }
        };
        nodes.push(node);
    }
    if scope == Scope::Top {
        Ok(nodes)
    } else {
        Err("a range without {{ end }}".into())
    }
}

/// What the body of a range is rendered for.
enum Item<'a> {
    Change(&'a Change),
    Text(&'a str),
}

fn emit(nodes: &[Node], data: &TemplateData, item: Option<&Item<'_>>, out: &mut String) {
    for node in nodes {
        match (node, item) {
            (Node::Text(text), _) => out.push_str(text),
            (Node::AutomationObject, _) => out.push_str(&data.automation_object),
            (Node::Value(key), _) => {
                // Go prints a missing map key as `<no value>`.
                out.push_str(data.values.get(key).map_or("<no value>", String::as_str));
            }
            (Node::RangeChanges(body), _) => {
                for change in &data.changes {
                    emit(body, data, Some(&Item::Change(change)), out);
                }
            }
            (Node::RangeImages(body), _) => {
                for image in &data.images {
                    emit(body, data, Some(&Item::Text(image)), out);
                }
            }
            (Node::RangeFiles { body, .. }, _) => {
                let files: std::collections::BTreeSet<&str> =
                    data.changes.iter().map(|c| c.file.as_str()).collect();
                for file in files {
                    emit(body, data, Some(&Item::Text(file)), out);
                }
            }
            (Node::OldValue, Some(Item::Change(c))) => out.push_str(&c.old_value),
            (Node::NewValue, Some(Item::Change(c))) => out.push_str(&c.new_value),
            (Node::Setter, Some(Item::Change(c))) => out.push_str(&c.setter),
            (Node::Dot | Node::Var(_), Some(Item::Text(text))) => out.push_str(text),
            // The parser puts these nodes only inside their ranges.
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> TemplateData {
        TemplateData {
            automation_object: "apps/auto".into(),
            values: BTreeMap::from([("env".to_owned(), "prod".to_owned())]),
            changes: vec![
                Change {
                    file: "b.yaml".into(),
                    setter: "apps:web".into(),
                    old_value: "r/web:1".into(),
                    new_value: "r/web:2".into(),
                },
                Change {
                    file: "a.yaml".into(),
                    setter: "apps:api:tag".into(),
                    old_value: "1.0".into(),
                    new_value: "1.1".into(),
                },
            ],
            images: vec!["r/web:2".into(), "r/api:1.1".into()],
        }
    }

    #[test]
    fn renders_the_supported_actions_with_trimming() {
        let template = "Update {{ .AutomationObject }} ({{ .Values.env }}{{ .Values.x }})\n\n\
                        {{ range .Changed.Changes -}}\n- {{ .Setter }}: {{ .OldValue }} -> \
                        {{ .NewValue }}\n{{ end -}}\nFiles:{{ range $f, $_ := \
                        .Changed.FileChanges }} {{ $f }}{{ end }}\n{{/* c */}}{{range \
                        .Updated.Images}}[{{.}}]{{end}}";
        assert_eq!(
            render(template, &data()).unwrap(),
            "Update apps/auto (prod<no value>)\n\n- apps:web: r/web:1 -> r/web:2\n- \
             apps:api:tag: 1.0 -> 1.1\nFiles: a.yaml b.yaml\n[r/web:2][r/api:1.1]"
        );
    }

    #[test]
    fn refuses_what_it_does_not_render() {
        for (template, says) in [
            (
                "{{ range .Changed.Objects }}x{{ end }}",
                "range .Changed.Objects",
            ),
            (
                "{{ if .AutomationObject }}x{{ end }}",
                "if .AutomationObject",
            ),
            ("{{ .OldValue }}", ".OldValue"),
            ("{{ range .Changed.Changes }}x", "without {{ end }}"),
            ("x {{ end }}", "without a range"),
            ("{{ .AutomationObject", "unclosed"),
            (
                "{{ range $f, $_ := .Changed.FileChanges }}{{ $g }}{{ end }}",
                "$g",
            ),
        ] {
            let err = render(template, &data()).unwrap_err();
            assert!(err.contains(says), "{template}: {err}");
        }
    }
}

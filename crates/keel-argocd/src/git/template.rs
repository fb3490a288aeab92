//! The push branch template of `git-branch: <base>:<push>` and the changes it is filled with.

use std::fmt;

use sha2::{Digest as _, Sha256};

/// One piece of a branch template.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Part {
    Text(String),
    Sha256,
    /// `{{range .Images}}...{{end}}`: the pieces, once per change.
    Images(Vec<ImagePart>),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum ImagePart {
    Text(String),
    Name,
    Alias,
    OldTag,
    NewTag,
}

/// The push branch of `git-branch: <base>:<push>`, with Image Updater's template fields:
/// `{{.SHA256}}` (here: the hex SHA-256 of the commit's change lines
/// `updates image <name> tag '<old>' to '<new>'`, so the same changes give the same branch)
/// and `{{range .Images}}...{{end}}` with `{{.Name}}`, `{{.Alias}}`, `{{.OldTag}}`,
/// `{{.NewTag}}` inside. Any other template action is refused.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BranchTemplate {
    written: String,
    parts: Vec<Part>,
}

/// One change a commit makes, for a branch template and the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The image's alias.
    pub alias: String,
    /// The image name, as configured.
    pub name: String,
    /// The tag before.
    pub old_tag: String,
    /// The tag after.
    pub new_tag: String,
}

impl Change {
    /// The line Image Updater's commit message has for the change.
    pub fn line(&self) -> String {
        format!(
            "updates image {} tag '{}' to '{}'",
            self.name, self.old_tag, self.new_tag
        )
    }
}

/// How long a branch name may be, as Image Updater truncates them.
const MAX_BRANCH: usize = 255;

impl BranchTemplate {
    /// Parses a branch name or template.
    pub fn parse(text: &str) -> Result<BranchTemplate, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        let mut range: Option<Vec<ImagePart>> = None;
        while !rest.is_empty() {
            let Some(open) = rest.find("{{") else {
                push_text(&mut parts, &mut range, rest);
                break;
            };
            push_text(&mut parts, &mut range, &rest[..open]);
            let Some(close) = rest[open..].find("}}") else {
                return Err("a `{{` is not closed by `}}`".into());
            };
            let action = rest[open + 2..open + close].trim().trim_matches('-').trim();
            rest = &rest[open + close + 2..];
            let in_range = range.is_some();
            match (action, range.as_mut()) {
                (".SHA256", None) => parts.push(Part::Sha256),
                ("range .Images", None) => range = Some(Vec::new()),
                ("end", Some(_)) => parts.push(Part::Images(range.take().unwrap_or_default())),
                (".Name", Some(r)) => r.push(ImagePart::Name),
                (".Alias", Some(r)) => r.push(ImagePart::Alias),
                (".OldTag", Some(r)) => r.push(ImagePart::OldTag),
                (".NewTag", Some(r)) => r.push(ImagePart::NewTag),
                (other, _) => {
                    return Err(format!(
                        "`{{{{{other}}}}}` is not supported {}: use `{{{{.SHA256}}}}` or \
                         `{{{{range .Images}}}}` with `.Name`, `.Alias`, `.OldTag`, `.NewTag` \
                         and `{{{{end}}}}`",
                        if in_range { "inside a range" } else { "here" }
                    ));
                }
            }
        }
        if range.is_some() {
            return Err("`{{range .Images}}` is not closed by `{{end}}`".into());
        }
        let template = BranchTemplate {
            written: text.to_owned(),
            parts,
        };
        if let Some(literal) = template.literal() {
            check_branch(literal)?;
        }
        Ok(template)
    }

    /// The branch name when the template has no action.
    pub fn literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [Part::Text(t)] => Some(t),
            _ => None,
        }
    }

    /// The branch for `changes`, truncated to 255 bytes.
    pub fn render(&self, changes: &[Change]) -> Result<String, String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Sha256 => {
                    let mut hasher = Sha256::new();
                    for change in changes {
                        hasher.update(change.line().as_bytes());
                        hasher.update(b"\n");
                    }
                    out.push_str(&hex::encode(hasher.finalize()));
                }
                Part::Images(pieces) => {
                    for change in changes {
                        for piece in pieces {
                            out.push_str(match piece {
                                ImagePart::Text(t) => t,
                                ImagePart::Name => &change.name,
                                ImagePart::Alias => &change.alias,
                                ImagePart::OldTag => &change.old_tag,
                                ImagePart::NewTag => &change.new_tag,
                            });
                        }
                    }
                }
            }
        }
        let mut end = out.len().min(MAX_BRANCH);
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
        check_branch(&out)
            .map_err(|reason| format!("template `{}` makes `{out}`: {reason}", self.written))?;
        Ok(out)
    }
}

impl fmt::Display for BranchTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.written)
    }
}

fn push_text(parts: &mut Vec<Part>, range: &mut Option<Vec<ImagePart>>, text: &str) {
    if text.is_empty() {
        return;
    }
    match range {
        Some(r) => r.push(ImagePart::Text(text.to_owned())),
        None => parts.push(Part::Text(text.to_owned())),
    }
}

/// Whether `name` is a valid branch name, by git's rules for ref names.
pub(super) fn check_branch(name: &str) -> Result<(), String> {
    let bad = name.is_empty()
        || name.starts_with(['-', '/', '.'])
        || name.ends_with(['/', '.'])
        || name.ends_with(".lock")
        || name.contains("..")
        || name.contains("//")
        || name.contains("@{")
        || name.contains("/.")
        || name == "@"
        || name
            .chars()
            .any(|c| c.is_control() || " ~^:?*[\\".contains(c));
    if bad {
        Err(format!("`{name}` is not a valid git branch name"))
    } else {
        Ok(())
    }
}

//! Byte-exact rewrites of the slots [`scan`](super::scan) found.

use std::ops::Range;

use keel_core::{Error, ImageRef, ParseError};

use super::yaml::{self, plain_reads_as_non_string};
use super::{Part, Reference, ScalarStyle, Slot};

/// One change: replace `range` (empty for an insertion) with `text`.
#[derive(Debug, PartialEq, Eq)]
struct Splice {
    range: Range<usize>,
    text: String,
}

/// Applies `edits` (each a reference found by [`scan`](super::scan) in `content` and the
/// reference it should hold) and returns the new text.
///
/// Only the bytes of the values being updated change; comments, blank lines, indentation, key
/// order, quoting, flow style, anchors, line endings and a missing final newline are kept.
///
/// - A [`Part::Whole`] slot keeps the name exactly as written (`nginx` stays `nginx`) unless
///   the repository changes; the tag and digest become the new reference's: `app:1.2.3` →
///   `app:1.3.0`, `app:1.2.3@sha256:OLD` → `app:1.3.0@sha256:NEW` (or `app:1.3.0` when the new
///   reference has no digest), `app@sha256:OLD` → `app@sha256:NEW`, `app` → `app:1.3.0`.
/// - A [`Part::Tag`] slot gets the new tag, a [`Part::Digest`] slot the new digest, a
///   [`Part::Name`] slot the new repository if it changed. A digest of the new reference is
///   dropped where the reference has no slot for it (Helm values marking only the name and
///   tag); a new tag where it has none is an error.
/// - A [`Part::InsertTag`] slot gets a `newTag: X` line after it (same indentation, the
///   file's line ending), or `, newTag: X` in a flow mapping.
/// - A plain scalar whose new text would read as a number, boolean or null (`1.10`) is
///   written in double quotes, so it stays a string.
///
/// Writing a reference equal to what is written changes nothing, so applying the same
/// update again returns the input unchanged.
///
/// # Errors
/// Nothing is changed when any edit fails:
/// - [`Error::Conflict`] naming the file and line when a slot no longer holds what the
///   reference says (the file changed since the scan): scan again and retry;
/// - [`Error::InvalidInput`] when the new reference cannot be written into the slots (a tag
///   slot but no tag, a digest slot but no digest, a new tag but no slot for one, a repository
///   change where only the tag is written, a `newTag` under a kustomization `name` that
///   already carries a tag or digest), when two edits change the same bytes, or when the
///   result would not parse as YAML.
pub fn rewrite(content: &str, edits: &[(Reference, ImageRef)]) -> Result<String, Error> {
    let file = edits.first().map_or("", |(r, _)| r.file.as_str());
    let mut splices = Vec::new();
    for (reference, new) in edits {
        plan(content, reference, new, &mut splices)?;
    }
    splices.sort_by_key(|s| (s.range.start, s.range.end));
    splices.dedup();
    for pair in splices.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if b.range.start < a.range.end || (b.range.start == a.range.start && a.range.is_empty()) {
            return Err(Error::InvalidInput(ParseError::new(
                "manifest edit list",
                file,
                format!(
                    "two edits change the same bytes at line {}",
                    line_of(content, b.range.start)
                ),
            )));
        }
    }
    if splices.is_empty() {
        return Ok(content.to_owned());
    }
    let mut out = String::with_capacity(content.len() + 64);
    let mut at = 0;
    for splice in &splices {
        out.push_str(&content[at..splice.range.start]);
        out.push_str(&splice.text);
        at = splice.range.end;
    }
    out.push_str(&content[at..]);
    if let Err(e) = yaml::check(&out) {
        return Err(Error::InvalidInput(ParseError::new(
            "manifest",
            file,
            format!(
                "the rewritten file would not parse as YAML (line {} column {}: {})",
                e.line, e.column, e.message
            ),
        )));
    }
    Ok(out)
}

fn line_of(content: &str, byte: usize) -> usize {
    let end = byte.min(content.len());
    content.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn invalid(reference: &Reference, new: &ImageRef, reason: impl Into<String>) -> Error {
    Error::InvalidInput(ParseError::new(
        "image update",
        format!("{} -> {}", reference.id(), new),
        reason,
    ))
}

fn conflict(
    reference: &Reference,
    content: &str,
    slot: &Slot,
    found: &str,
    expected: &str,
) -> Error {
    let line = line_of(content, slot.range.start);
    Error::Conflict {
        action: format!("update {} at {}:{line}", reference.image, reference.file),
        reason: format!(
            "the file changed since it was scanned: the value holds `{found}` where \
             `{expected}` was expected"
        ),
    }
}

/// The repository as a user writes it: `nginx`, `bitnami/redis`, `ghcr.io/o/r`.
fn familiar_name(image: &ImageRef) -> String {
    let familiar = image.familiar();
    let without_digest = familiar.split('@').next().unwrap_or(&familiar);
    match image.tag() {
        Some(tag) => without_digest
            .strip_suffix(&format!(":{}", tag.as_str()))
            .unwrap_or(without_digest)
            .to_owned(),
        None => without_digest.to_owned(),
    }
}

/// The name part of a written reference (before the tag and digest), by the grammar's rule:
/// the digest starts at the first `@`, the tag at the last `:` after the last `/`.
fn written_name(text: &str) -> &str {
    let name_and_tag = text.split('@').next().unwrap_or(text);
    let last_slash = name_and_tag.rfind('/');
    match name_and_tag.rfind(':') {
        Some(colon) if last_slash.is_none_or(|slash| colon > slash) => &name_and_tag[..colon],
        _ => name_and_tag,
    }
}

/// The text for a plain scalar: quoted when it would not read as a string.
fn scalar_text(style: ScalarStyle, text: String) -> String {
    if style == ScalarStyle::Plain && plain_reads_as_non_string(&text) {
        format!("\"{text}\"")
    } else {
        text
    }
}

fn plan(
    content: &str,
    reference: &Reference,
    new: &ImageRef,
    splices: &mut Vec<Splice>,
) -> Result<(), Error> {
    let old = &reference.image;
    let changed = new != old;
    let repository_changed = new.name() != old.name();
    if repository_changed
        && !reference
            .slots
            .iter()
            .any(|s| matches!(s.part, Part::Whole | Part::Name))
    {
        return Err(invalid(
            reference,
            new,
            "the repository cannot change: the manifest holds only the tag or digest",
        ));
    }
    let tag_changed = new.tag().is_some() && new.tag() != old.tag();
    if tag_changed
        && !reference
            .slots
            .iter()
            .any(|s| matches!(s.part, Part::Whole | Part::Tag | Part::InsertTag { .. }))
    {
        return Err(invalid(
            reference,
            new,
            "the tag cannot change: the manifest holds no tag for this reference",
        ));
    }
    let mut planned = Vec::new();
    for slot in &reference.slots {
        let range = slot.range.clone();
        let text = match content.get(range.clone()) {
            Some(text) if !text.is_empty() => text,
            _ => {
                return Err(conflict(
                    reference,
                    content,
                    slot,
                    "(nothing)",
                    &old.to_string(),
                ));
            }
        };
        let replace = |planned: &mut Vec<Splice>, new_text: String| {
            if new_text != text {
                let full = match slot.style {
                    ScalarStyle::Plain => scalar_text(slot.style, new_text),
                    _ => new_text,
                };
                planned.push(Splice {
                    range: range.clone(),
                    text: full,
                });
            }
        };
        match slot.part {
            Part::Whole => {
                let written = ImageRef::parse(text).ok();
                if written.as_ref() == Some(new) {
                    continue;
                }
                if written.as_ref() != Some(old) {
                    return Err(conflict(reference, content, slot, text, &old.familiar()));
                }
                if !changed {
                    continue;
                }
                let mut out = if repository_changed {
                    familiar_name(new)
                } else {
                    written_name(text).to_owned()
                };
                if let Some(tag) = new.tag() {
                    out.push(':');
                    out.push_str(tag.as_str());
                }
                if let Some(digest) = new.digest() {
                    out.push('@');
                    out.push_str(digest.as_str());
                }
                replace(&mut planned, out);
            }
            part @ (Part::Tag | Part::Digest) => {
                let (old_value, new_value, what) = if part == Part::Tag {
                    (
                        old.tag().map(|t| t.as_str()),
                        new.tag().map(|t| t.as_str()),
                        "tag",
                    )
                } else {
                    (
                        old.digest().map(|d| d.as_str()),
                        new.digest().map(|d| d.as_str()),
                        "digest",
                    )
                };
                if Some(text) == new_value {
                    continue;
                }
                let old_value = old_value.unwrap_or_default();
                if text != old_value {
                    return Err(conflict(reference, content, slot, text, old_value));
                }
                match new_value {
                    Some(value) => replace(&mut planned, value.to_owned()),
                    None => {
                        return Err(invalid(
                            reference,
                            new,
                            format!(
                                "the new reference has no {what} to write into the {what} slot"
                            ),
                        ));
                    }
                }
            }
            Part::Name => {
                if name_is_new(reference, content, slot, text, old, new)? {
                    continue;
                }
                if repository_changed {
                    replace(&mut planned, familiar_name(new));
                }
            }
            Part::InsertTag { indent } => {
                name_is_new(reference, content, slot, text, old, new)?;
                let Some(tag) = new.tag().filter(|&t| Some(t) != old.tag()) else {
                    continue;
                };
                // `name: app:1.0` plus `newTag: 2.0` would name `app:1.0:2.0`, which is no
                // image: the tag written in the name has nowhere to go.
                let last = text.rsplit('/').next().unwrap_or(text);
                if text.contains('@') || last.contains(':') {
                    return Err(invalid(
                        reference,
                        new,
                        format!(
                            "the entry's name `{text}` carries a tag or digest, so no newTag \
                             can be added to it; write the name without it"
                        ),
                    ));
                }
                let value = scalar_text(ScalarStyle::Plain, tag.as_str().to_owned());
                planned.push(insert_tag(content, slot, indent, &value));
            }
        }
    }
    splices.extend(planned);
    Ok(())
}

/// The repository name a scalar holding only a name stands for.
fn name_of(text: &str) -> Option<String> {
    ImageRef::parse(text).ok().map(|image| image.name())
}

/// Whether the name written in a name slot (`text`) is already `new`'s; a name that is
/// neither `new`'s nor `old`'s is a conflict: the file changed since it was scanned.
fn name_is_new(
    reference: &Reference,
    content: &str,
    slot: &Slot,
    text: &str,
    old: &ImageRef,
    new: &ImageRef,
) -> Result<bool, Error> {
    let written = name_of(text);
    if written.as_deref() == Some(new.name().as_str()) {
        return Ok(true);
    }
    if written.as_deref() != Some(old.name().as_str()) {
        return Err(conflict(
            reference,
            content,
            slot,
            text,
            &familiar_name(old),
        ));
    }
    Ok(false)
}

/// The splice adding `newTag: value` after the slot's scalar.
fn insert_tag(content: &str, slot: &Slot, indent: Option<usize>, value: &str) -> Splice {
    let token_end = match slot.style {
        ScalarStyle::Plain => slot.range.end,
        ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted => slot.range.end + 1,
    };
    let Some(indent) = indent else {
        return Splice {
            range: token_end..token_end,
            text: format!(", newTag: {value}"),
        };
    };
    let spaces = " ".repeat(indent);
    match content[token_end..].find('\n') {
        Some(offset) => {
            let newline = token_end + offset;
            let eol = if content[..newline].ends_with('\r') {
                "\r\n"
            } else {
                "\n"
            };
            Splice {
                range: newline + 1..newline + 1,
                text: format!("{spaces}newTag: {value}{eol}"),
            }
        }
        None => {
            let eol = if content.contains("\r\n") {
                "\r\n"
            } else {
                "\n"
            };
            Splice {
                range: content.len()..content.len(),
                text: format!("{eol}{spaces}newTag: {value}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_names() {
        let cases = [
            ("nginx", "nginx"),
            ("localhost:5000/a/b:1.0", "localhost:5000/a/b"),
            ("app:1.2.3@sha256:abc", "app"),
            ("app@sha256:abc", "app"),
        ];
        for (written, name) in cases {
            assert_eq!(written_name(written), name, "the name written in {written}");
        }
    }

    #[test]
    fn familiar_names() {
        let cases = [
            ("docker.io/library/nginx:1.2", "nginx"),
            ("ghcr.io/o/r:latest", "ghcr.io/o/r"),
            ("localhost:5000/a", "localhost:5000/a"),
        ];
        for (reference, familiar) in cases {
            let image = ImageRef::parse(reference).unwrap();
            assert_eq!(
                familiar_name(&image),
                familiar,
                "the familiar name of {reference}"
            );
        }
    }
}

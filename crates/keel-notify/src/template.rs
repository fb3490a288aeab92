//! Message templates: the text each notifier sends for each kind of event.
//!
//! # Syntax
//!
//! A template is text with tags in double braces:
//!
//! - `{{name}}` is replaced by the value of variable `name` (spaces inside the braces are
//!   allowed: `{{ name }}`);
//! - `{{#name}}…{{/name}}` keeps what is between the tags only when `name` is not empty;
//! - `{{^name}}…{{/name}}` keeps it only when `name` is empty.
//!
//! Sections nest. Everything else is copied as is; there is no way to write a literal `{{`.
//! Parsing checks every tag: an unknown variable, an unclosed tag or a section closed with
//! the wrong name is an [`Error::InvalidInput`] naming the template and the bad tag, raised
//! when the template is built rather than when an event arrives.
//!
//! # Variables
//!
//! | variable | value |
//! |---|---|
//! | `kind` | the event kind: `update planned`, `update applied`, `update failed`, `approval requested`, `approved`, `rejected`, `expired` |
//! | `title` | the kind, capitalised: `Update applied` |
//! | `level` | the event's [`Level`]: `info`, `success`, `warn`, `error` |
//! | `target` | the target's name |
//! | `id` | the tracked image's id within the target (the workload) |
//! | `image` | the image's short name, without tag: `nginx`, `ghcr.io/o/app` |
//! | `current` | the running image, short form: `nginx:1.25.0` |
//! | `new` | the new image, short form: `nginx:1.25.1` |
//! | `current_tag` | the running tag, empty for a digest-only reference |
//! | `new_tag` | the new tag, empty for a digest-only reference |
//! | `new_digest` | the new digest, empty when the plan does not pin one |
//! | `message` | the event's message, e.g. the error of a failed update |
//! | `release_notes` | the release-notes URL of the workload, empty when it has none |
//! | `time` | when it happened, RFC 3339 in UTC: `2024-05-01T12:00:00Z` |
//! | `approval_id` | the approval request's id, empty outside approval events |
//! | `approvals` | approving votes so far, empty outside approval events |
//! | `required` | approvals needed, empty outside approval events |
//! | `voters` | who voted, comma-separated |
//! | `deadline` | when the approval request expires, RFC 3339 in UTC |
//! | `channels` | the extra channels the workload asks for, comma-separated |
//!
//! # Defaults
//!
//! [`Templates::default`] holds one template per event kind (see
//! [`Templates::default_source`]); every default mentions the release notes when the
//! workload has a link:
//!
//! ```
//! use keel_core::{Event, EventKind, ImageRef, UpdatePlan};
//! use keel_notify::{Template, Templates};
//!
//! let plan = UpdatePlan {
//!     target: "prod".into(),
//!     id: "default/web".into(),
//!     current: ImageRef::parse("nginx:1.25.0")?,
//!     new: ImageRef::parse("nginx:1.25.1")?,
//! };
//! let event = Event::new(EventKind::UpdateApplied, plan, "applied")
//!     .with_release_notes(Some("https://nginx.org/en/CHANGES".into()));
//!
//! let templates = Templates::default();
//! assert_eq!(
//!     templates.render(&event),
//!     "prod/default/web now runs nginx:1.25.1 (was nginx:1.25.0). \
//!      Release notes: https://nginx.org/en/CHANGES"
//! );
//!
//! let short = Templates::default().with(
//!     EventKind::UpdateApplied,
//!     Template::parse("{{image}} → {{new_tag}}{{#release_notes}} ({{release_notes}}){{/release_notes}}")?,
//! );
//! assert_eq!(short.render(&event), "nginx → 1.25.1 (https://nginx.org/en/CHANGES)");
//!
//! let bad = Template::parse("{{image}} → {{tag}}").unwrap_err();
//! assert!(bad.to_string().contains("unknown variable `tag`"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::LazyLock;

use chrono::SecondsFormat;
use keel_core::{Error, Event, EventKind, ImageRef, ParseError};

use crate::level::Level;

const TEMPLATE_KIND: &str = "notification template";

/// How deep sections may nest: rendering and dropping a template recurse once per level, and
/// a template from a file must not be able to overflow the stack.
const MAX_SECTION_DEPTH: usize = 32;

/// A variable of the template language.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Var {
    Kind,
    Title,
    Level,
    Target,
    Id,
    Image,
    Current,
    New,
    CurrentTag,
    NewTag,
    NewDigest,
    Message,
    ReleaseNotes,
    Time,
    ApprovalId,
    Approvals,
    Required,
    Voters,
    Deadline,
    Channels,
}

const VARIABLES: &[(&str, Var)] = &[
    ("kind", Var::Kind),
    ("title", Var::Title),
    ("level", Var::Level),
    ("target", Var::Target),
    ("id", Var::Id),
    ("image", Var::Image),
    ("current", Var::Current),
    ("new", Var::New),
    ("current_tag", Var::CurrentTag),
    ("new_tag", Var::NewTag),
    ("new_digest", Var::NewDigest),
    ("message", Var::Message),
    ("release_notes", Var::ReleaseNotes),
    ("time", Var::Time),
    ("approval_id", Var::ApprovalId),
    ("approvals", Var::Approvals),
    ("required", Var::Required),
    ("voters", Var::Voters),
    ("deadline", Var::Deadline),
    ("channels", Var::Channels),
];

/// The names of every template variable, in the order of the table in the
/// [module docs](self).
pub fn variables() -> impl Iterator<Item = &'static str> {
    VARIABLES.iter().map(|(name, _)| *name)
}

fn lookup(name: &str) -> Option<Var> {
    VARIABLES.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

/// The short name of an image, without tag or digest: `nginx`, `ghcr.io/o/app`.
fn short_name(image: &ImageRef) -> String {
    let mut out = image.familiar();
    if let Some(digest) = image.digest() {
        out.truncate(out.len() - digest.as_str().len() - 1);
    }
    if let Some(tag) = image.tag() {
        out.truncate(out.len() - tag.as_str().len() - 1);
    }
    out
}

/// `Update applied` for [`EventKind::UpdateApplied`]: the kind, capitalised.
pub fn title(kind: EventKind) -> String {
    let kind = kind.to_string();
    let mut chars = kind.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => kind,
    }
}

fn rfc3339(time: chrono::DateTime<chrono::Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn value(var: Var, event: &Event) -> Cow<'_, str> {
    let approval = event.approval.as_ref();
    match var {
        Var::Kind => event.kind.to_string().into(),
        Var::Title => title(event.kind).into(),
        Var::Level => Level::of(event.kind).as_str().into(),
        Var::Target => event.plan.target.as_str().into(),
        Var::Id => event.plan.id.as_str().into(),
        Var::Image => short_name(&event.plan.new).into(),
        Var::Current => event.plan.current.familiar().into(),
        Var::New => event.plan.new.familiar().into(),
        Var::CurrentTag => event.plan.current.tag().map_or("", |t| t.as_str()).into(),
        Var::NewTag => event.plan.new.tag().map_or("", |t| t.as_str()).into(),
        Var::NewDigest => event.plan.new.digest().map_or("", |d| d.as_str()).into(),
        Var::Message => event.message.as_str().into(),
        Var::ReleaseNotes => event.release_notes.as_deref().unwrap_or("").into(),
        Var::Time => rfc3339(event.time).into(),
        Var::ApprovalId => approval.map_or("", |a| a.id.as_str()).into(),
        Var::Approvals => approval
            .map_or(String::new(), |a| a.approvals.to_string())
            .into(),
        Var::Required => approval
            .map_or(String::new(), |a| a.required.to_string())
            .into(),
        Var::Voters => approval
            .map_or(String::new(), |a| a.voters.join(", "))
            .into(),
        Var::Deadline => approval
            .map_or(String::new(), |a| rfc3339(a.deadline))
            .into(),
        Var::Channels => event.channels.join(", ").into(),
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Node {
    Text(String),
    Var(Var),
    Section {
        var: Var,
        inverted: bool,
        body: Vec<Node>,
    },
}

/// A parsed message template; see the [module docs](self) for the syntax and variables.
#[derive(Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    nodes: Vec<Node>,
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Template").field(&self.source).finish()
    }
}

struct Open {
    var: Var,
    name: String,
    inverted: bool,
    start: usize,
    end: usize,
    outer: Vec<Node>,
}

impl Template {
    /// Parses `source`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the template and the bad tag: an unknown variable
    /// (with the list of known ones), an unclosed `{{`, an empty tag, a section closed by
    /// the wrong name or never closed, a `{{/name}}` without its section, or sections nested
    /// deeper than 32 levels (rendering recurses once per level).
    pub fn parse(source: &str) -> Result<Template, Error> {
        let err = |reason: String, start: usize, end: usize| -> Error {
            ParseError::new(TEMPLATE_KIND, source, reason)
                .at(start, end)
                .into()
        };
        let mut nodes = Vec::new();
        let mut stack: Vec<Open> = Vec::new();
        let mut rest = 0;
        while let Some(found) = source[rest..].find("{{") {
            let start = rest + found;
            if start > rest {
                nodes.push(Node::Text(source[rest..start].to_owned()));
            }
            let Some(len) = source[start + 2..].find("}}") else {
                return Err(err(
                    "`{{` is never closed by `}}`".into(),
                    start,
                    source.len(),
                ));
            };
            let end = start + 2 + len + 2;
            let inner = source[start + 2..end - 2].trim();
            let (sigil, name) = match inner.chars().next() {
                Some(c @ ('#' | '^' | '/')) => (Some(c), inner[1..].trim()),
                _ => (None, inner),
            };
            if name.is_empty() {
                return Err(err("empty tag".into(), start, end));
            }
            let Some(var) = lookup(name) else {
                let known: Vec<&str> = variables().collect();
                return Err(err(
                    format!(
                        "unknown variable `{name}`; known variables: {}",
                        known.join(", ")
                    ),
                    start,
                    end,
                ));
            };
            match sigil {
                None => nodes.push(Node::Var(var)),
                Some(_) if stack.len() >= MAX_SECTION_DEPTH && sigil != Some('/') => {
                    return Err(err(
                        format!("sections nest deeper than {MAX_SECTION_DEPTH} levels"),
                        start,
                        end,
                    ));
                }
                Some(open @ ('#' | '^')) => stack.push(Open {
                    var,
                    name: name.to_owned(),
                    inverted: open == '^',
                    start,
                    end,
                    outer: std::mem::take(&mut nodes),
                }),
                Some(_) => {
                    let Some(open) = stack.pop() else {
                        return Err(err(
                            format!("`{{{{/{name}}}}}` closes no section"),
                            start,
                            end,
                        ));
                    };
                    if open.var != var {
                        return Err(err(
                            format!("section `{}` is closed by `{{{{/{name}}}}}`", open.name),
                            start,
                            end,
                        ));
                    }
                    let body = std::mem::replace(&mut nodes, open.outer);
                    nodes.push(Node::Section {
                        var,
                        inverted: open.inverted,
                        body,
                    });
                }
            }
            rest = end;
        }
        if let Some(open) = stack.pop() {
            return Err(err(
                format!(
                    "section `{}` is never closed by `{{{{/{}}}}}`",
                    open.name, open.name
                ),
                open.start,
                open.end,
            ));
        }
        if rest < source.len() {
            nodes.push(Node::Text(source[rest..].to_owned()));
        }
        Ok(Template {
            source: source.to_owned(),
            nodes,
        })
    }

    /// The template as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The text for `event`.
    pub fn render(&self, event: &Event) -> String {
        self.render_escaped(event, &|s| Cow::Borrowed(s))
    }

    /// The text for `event`, passing every variable's value (not the template's own text)
    /// through `escape`, so that a chat's markup in the template survives while markup
    /// characters in values (an error message, say) do not.
    pub(crate) fn render_escaped(
        &self,
        event: &Event,
        escape: &dyn Fn(&str) -> Cow<'_, str>,
    ) -> String {
        let mut out = String::new();
        render_nodes(&self.nodes, event, escape, &mut out);
        out
    }
}

fn render_nodes(
    nodes: &[Node],
    event: &Event,
    escape: &dyn Fn(&str) -> Cow<'_, str>,
    out: &mut String,
) {
    for node in nodes {
        match node {
            Node::Text(text) => out.push_str(text),
            Node::Var(var) => out.push_str(&escape(&value(*var, event))),
            Node::Section {
                var,
                inverted,
                body,
            } => {
                if value(*var, event).is_empty() == *inverted {
                    render_nodes(body, event, escape, out);
                }
            }
        }
    }
}

impl std::str::FromStr for Template {
    type Err = Error;

    fn from_str(s: &str) -> Result<Template, Error> {
        Template::parse(s)
    }
}

/// For kinds added to `EventKind` after this crate was written.
const FALLBACK_BODY: &str =
    "{{title}}: {{target}}/{{id}} {{current}} → {{new}}.{{#message}} {{message}}{{/message}}";

const RELEASE_NOTES: &str = "{{#release_notes}} Release notes: {{release_notes}}{{/release_notes}}";

/// The default template source for events of `kind`.
fn default_source(kind: EventKind) -> String {
    let body = match kind {
        EventKind::UpdatePlanned => "Update of {{target}}/{{id}} planned: {{current}} → {{new}}.",
        EventKind::UpdateApplied => "{{target}}/{{id}} now runs {{new}} (was {{current}}).",
        EventKind::UpdateFailed => {
            "Update of {{target}}/{{id}} from {{current}} to {{new}} failed: {{message}}"
        }
        EventKind::ApprovalRequested => {
            "Update of {{target}}/{{id}} from {{current}} to {{new}} needs approval\
             {{#approval_id}}: {{approvals}}/{{required}} so far. \
             Approve with `/keel approve {{approval_id}}` before {{deadline}}.{{/approval_id}}\
             {{^approval_id}}{{#message}} ({{message}}){{/message}}.{{/approval_id}}"
        }
        EventKind::Approved => {
            "Update of {{target}}/{{id}} to {{new}} approved\
             {{#approval_id}} ({{approvals}}/{{required}}{{#voters}}: {{voters}}{{/voters}}){{/approval_id}}."
        }
        EventKind::Rejected => {
            "Update of {{target}}/{{id}} to {{new}} rejected{{#message}}: {{message}}{{/message}}."
        }
        EventKind::Expired => {
            "Approval of the update of {{target}}/{{id}} to {{new}} expired\
             {{#deadline}} at {{deadline}}{{/deadline}}."
        }
        EventKind::ListingTruncated => {
            "No update of {{target}}/{{id}} ({{current}}) was chosen: {{message}}"
        }
        _ => FALLBACK_BODY,
    };
    format!("{body}{RELEASE_NOTES}")
}

const KINDS: [EventKind; 8] = [
    EventKind::UpdatePlanned,
    EventKind::UpdateApplied,
    EventKind::UpdateFailed,
    EventKind::ApprovalRequested,
    EventKind::Approved,
    EventKind::Rejected,
    EventKind::Expired,
    EventKind::ListingTruncated,
];

struct Defaults {
    by_kind: HashMap<EventKind, Template>,
    other: Template,
}

static DEFAULTS: LazyLock<Defaults> = LazyLock::new(|| {
    let parse = |source: String| {
        Template::parse(&source).unwrap_or_else(|e| panic!("default template does not parse: {e}"))
    };
    Defaults {
        by_kind: KINDS
            .iter()
            .map(|&kind| (kind, parse(default_source(kind))))
            .collect(),
        other: parse(format!("{FALLBACK_BODY}{RELEASE_NOTES}")),
    }
});

/// The template for each kind of event: the defaults, with your overrides.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Templates {
    overrides: HashMap<EventKind, Template>,
}

impl Templates {
    /// The defaults.
    pub fn new() -> Templates {
        Templates::default()
    }

    /// The same, with `template` for events of `kind`.
    pub fn with(mut self, kind: EventKind, template: Template) -> Templates {
        self.overrides.insert(kind, template);
        self
    }

    /// The same, with `source` (parsed) for events of `kind`.
    ///
    /// # Errors
    /// As [`Template::parse`].
    pub fn with_source(self, kind: EventKind, source: &str) -> Result<Templates, Error> {
        Ok(self.with(kind, Template::parse(source)?))
    }

    /// The template used for events of `kind`.
    pub fn get(&self, kind: EventKind) -> &Template {
        self.overrides
            .get(&kind)
            .or_else(|| DEFAULTS.by_kind.get(&kind))
            .unwrap_or(&DEFAULTS.other)
    }

    /// The default template for events of `kind`, as written.
    pub fn default_source(kind: EventKind) -> &'static str {
        DEFAULTS
            .by_kind
            .get(&kind)
            .unwrap_or(&DEFAULTS.other)
            .source()
    }

    /// The text for `event`.
    pub fn render(&self, event: &Event) -> String {
        self.get(event.kind).render(event)
    }

    pub(crate) fn render_escaped(
        &self,
        event: &Event,
        escape: &dyn Fn(&str) -> Cow<'_, str>,
    ) -> String {
        self.get(event.kind).render_escaped(event, escape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use keel_core::{ApprovalInfo, UpdatePlan};

    fn event(kind: EventKind) -> Event {
        let plan = UpdatePlan {
            target: "prod".into(),
            id: "default/web".into(),
            current: ImageRef::parse("nginx:1.25.0").unwrap(),
            new: ImageRef::parse("nginx:1.25.1").unwrap(),
        };
        let mut e = Event::new(kind, plan, "");
        e.time = Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap();
        e
    }

    fn approval() -> ApprovalInfo {
        ApprovalInfo {
            id: "a1b2".into(),
            required: 2,
            approvals: 1,
            voters: vec!["ana".into()],
            deadline: Utc.with_ymd_and_hms(2024, 5, 2, 12, 0, 0).unwrap(),
        }
    }

    #[test]
    fn every_variable_renders() {
        let mut e = event(EventKind::ApprovalRequested).with_approval(approval());
        e.plan.new = ImageRef::parse(
            "ghcr.io/o/app:2.0@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        )
        .unwrap();
        e.message = "m".into();
        e.release_notes = Some("https://x/notes".into());
        e.channels = vec!["ops".into(), "dev".into()];
        let source: String = variables().map(|v| format!("{v}={{{{{v}}}}};")).collect();
        let out = Template::parse(&source).unwrap().render(&e);
        assert_eq!(
            out,
            "kind=approval requested;title=Approval requested;level=info;target=prod;\
             id=default/web;image=ghcr.io/o/app;current=nginx:1.25.0;\
             new=ghcr.io/o/app:2.0@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef;\
             current_tag=1.25.0;new_tag=2.0;\
             new_digest=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef;\
             message=m;release_notes=https://x/notes;time=2024-05-01T12:00:00Z;approval_id=a1b2;\
             approvals=1;required=2;voters=ana;deadline=2024-05-02T12:00:00Z;channels=ops, dev;"
        );
    }

    #[test]
    fn sections_nest_and_invert() {
        let t = Template::parse("a{{#message}}[{{message}}{{^release_notes}}!{{/release_notes}}]{{/message}}{{ ^message }}-{{/ message }}z").unwrap();
        let mut e = event(EventKind::UpdateFailed);
        assert_eq!(t.render(&e), "a-z");
        e.message = "boom".into();
        assert_eq!(t.render(&e), "a[boom!]z");
        e.release_notes = Some("u".into());
        assert_eq!(t.render(&e), "a[boom]z");
    }

    #[test]
    fn deeply_nested_sections_are_refused_not_overflowing() {
        // Found by fuzzing: 20,000 nested sections overflowed the stack when rendered.
        let deep = format!(
            "{}x{}",
            "{{#kind}}".repeat(100_000),
            "{{/kind}}".repeat(100_000)
        );
        let e = Template::parse(&deep).unwrap_err().to_string();
        assert!(e.contains("sections nest deeper than 32 levels"), "{e}");
        let at_limit = format!(
            "{}x{}",
            "{{^message}}".repeat(32),
            "{{/message}}".repeat(32)
        );
        let t = Template::parse(&at_limit).unwrap();
        assert_eq!(t.render(&event(EventKind::UpdateApplied)), "x");
    }

    #[test]
    fn bad_templates_name_the_problem() {
        let cases = [
            ("hi {{nope}}", "unknown variable `nope`", Some((3, 11))),
            ("hi {{image", "never closed by `}}`", Some((3, 10))),
            ("{{}}", "empty tag", Some((0, 4))),
            (
                "{{#message}}x",
                "section `message` is never closed",
                Some((0, 12)),
            ),
            (
                "{{#message}}x{{/image}}",
                "section `message` is closed by `{{/image}}`",
                None,
            ),
            ("x{{/image}}", "`{{/image}}` closes no section", None),
        ];
        for (source, want, span) in cases {
            let err = Template::parse(source).unwrap_err();
            let Error::InvalidInput(parse) = &err else {
                panic!("{source}: {err:?}")
            };
            assert_eq!(parse.kind(), "notification template");
            assert_eq!(parse.input(), source);
            assert!(err.to_string().contains(want), "{source}: {err}");
            if let Some(span) = span {
                assert_eq!(parse.span(), Some(span), "{source}");
            }
        }
        let err = Template::parse("{{tag}}").unwrap_err().to_string();
        assert!(err.contains("known variables: kind, title"), "{err}");
    }

    #[test]
    fn defaults_render_per_kind() {
        let templates = Templates::default();
        let notes = Some("https://n/1".to_string());
        let said = |kind, message: &str| Event {
            message: message.into(),
            ..event(kind)
        };
        let cases = [
            (
                event(EventKind::UpdatePlanned),
                "Update of prod/default/web planned: nginx:1.25.0 → nginx:1.25.1.",
            ),
            (
                event(EventKind::UpdateApplied),
                "prod/default/web now runs nginx:1.25.1 (was nginx:1.25.0).",
            ),
            (
                said(EventKind::UpdateFailed, "conflict"),
                "Update of prod/default/web from nginx:1.25.0 to nginx:1.25.1 failed: conflict",
            ),
            (
                event(EventKind::ApprovalRequested).with_approval(approval()),
                "Update of prod/default/web from nginx:1.25.0 to nginx:1.25.1 needs approval: \
                 1/2 so far. Approve with `/keel approve a1b2` before 2024-05-02T12:00:00Z.",
            ),
            (
                said(EventKind::ApprovalRequested, "needs 2 approval(s)"),
                "Update of prod/default/web from nginx:1.25.0 to nginx:1.25.1 needs approval \
                 (needs 2 approval(s)).",
            ),
            (
                event(EventKind::Approved).with_approval(ApprovalInfo {
                    approvals: 2,
                    voters: vec!["ana".into(), "bo".into()],
                    ..approval()
                }),
                "Update of prod/default/web to nginx:1.25.1 approved (2/2: ana, bo).",
            ),
            (
                said(EventKind::Rejected, "not on a Friday"),
                "Update of prod/default/web to nginx:1.25.1 rejected: not on a Friday.",
            ),
            (
                event(EventKind::Expired).with_approval(approval()),
                "Approval of the update of prod/default/web to nginx:1.25.1 expired at \
                 2024-05-02T12:00:00Z.",
            ),
        ];
        for (e, want) in cases {
            assert_eq!(templates.render(&e), want, "{:?}", e.kind);
            let with_notes = e.with_release_notes(notes.clone());
            assert_eq!(
                templates.render(&with_notes),
                format!("{want} Release notes: https://n/1"),
            );
        }
    }

    #[test]
    fn overrides_replace_one_kind() {
        let t = Templates::new()
            .with_source(EventKind::UpdateFailed, "FAIL {{image}}")
            .unwrap();
        assert_eq!(t.render(&event(EventKind::UpdateFailed)), "FAIL nginx");
        assert!(
            t.render(&event(EventKind::UpdateApplied))
                .starts_with("prod/")
        );
        assert!(Templates::default_source(EventKind::Expired).contains("{{deadline}}"));
    }

    #[test]
    fn escape_applies_to_values_only() {
        let t = Template::parse("<{{message}}>").unwrap();
        let mut e = event(EventKind::UpdateFailed);
        e.message = "a<b".into();
        let out = t.render_escaped(&e, &|s| Cow::Owned(s.replace('<', "&lt;")));
        assert_eq!(out, "<a&lt;b>");
    }
}

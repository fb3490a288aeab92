//! Fuzzes notifier templates (`keel_notify::Template`): parsing and rendering.
//!
//! Checked: no panic; an error names the template and points inside it; text without tags
//! renders as itself; the output is no longer than the template with every tag replaced by
//! the longest value; a template wrapped in a section of a non-empty variable renders the
//! same, and wrapped in an inverted one renders nothing (unless that nests too deep).
#![no_main]

use keel_core::{ApprovalInfo, Error, Event, EventKind, ImageRef, UpdatePlan};
use keel_notify::Template;
use keel_notify::template::variables;
use libfuzzer_sys::fuzz_target;

fn event() -> Event {
    let plan = UpdatePlan {
        target: "prod".into(),
        id: "default/web".into(),
        current: ImageRef::parse("ghcr.io/acme/web:1.25.0").unwrap(),
        new: ImageRef::parse(
            "ghcr.io/acme/web:1.25.1@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        )
        .unwrap(),
    };
    Event::new(
        EventKind::ApprovalRequested,
        plan,
        "needs 2 approvals; {{image}} & <b>",
    )
    .with_release_notes(Some("https://example.com/notes?a=1&b=2".into()))
    .with_channels(vec!["#ops".into(), "#web".into()])
    .with_approval(ApprovalInfo {
        id: "0a1b2c3d4e5f6789".into(),
        required: 2,
        approvals: 1,
        voters: vec!["alice".into()],
        deadline: chrono::DateTime::from_timestamp(1_900_000_000, 0).unwrap(),
    })
}

fuzz_target!(|source: &str| {
    let event = event();
    let template = match Template::parse(source) {
        Ok(t) => t,
        Err(Error::InvalidInput(e)) => {
            assert_eq!(e.input(), source);
            if let Some((start, end)) = e.span() {
                assert!(start <= end && end <= source.len(), "span {start}..{end}");
                assert!(source.is_char_boundary(start) && source.is_char_boundary(end));
            }
            return;
        }
        Err(other) => panic!("{source:?}: unexpected error {other:?}"),
    };
    assert_eq!(template.source(), source);
    let out = template.render(&event);
    if !source.contains("{{") {
        assert_eq!(out, source);
    }
    let longest = variables()
        .map(|v| {
            Template::parse(&format!("{{{{{v}}}}}"))
                .unwrap()
                .render(&event)
                .len()
        })
        .max()
        .unwrap_or(0);
    let tags = source.matches("{{").count();
    assert!(
        out.len() <= source.len() + tags * longest,
        "{source:?} rendered {} bytes",
        out.len()
    );

    // Wrapping adds a level, which a template at the nesting limit has no room for; and a
    // trailing `{` would open a tag with the closing one.
    if source.ends_with('{') {
        return;
    }
    for (wrapper, expected) in [("#", out.as_str()), ("^", "")] {
        let source = format!("{{{{{wrapper}target}}}}{source}{{{{/target}}}}");
        match Template::parse(&source) {
            Ok(wrapped) => assert_eq!(wrapped.render(&event), expected, "{source:?}"),
            Err(e) => assert!(
                e.to_string().contains("sections nest deeper than"),
                "{source:?} parses, but not in a section: {e}"
            ),
        }
    }
});

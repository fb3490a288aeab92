//! Property: a rewrite changes only the tag bytes.

use super::*;

#[derive(Debug, Clone)]
enum Filler {
    Blank,
    Comment(usize, String),
    Pair(String),
}

fn filler() -> impl Strategy<Value = Filler> {
    prop_oneof![
        Just(Filler::Blank),
        (0usize..10, "[a-zA-Z0-9 #:'\"{}$,.-]{0,24}").prop_map(|(i, t)| Filler::Comment(i, t)),
        "[a-z0-9][a-z0-9.-]{0,8}".prop_map(Filler::Pair),
    ]
}

/// Writes filler lines at `indent`; keys are numbered from `*n` so they never repeat.
fn push_fillers(out: &mut String, fillers: &[Filler], indent: usize, eol: &str, n: &mut usize) {
    for f in fillers {
        match f {
            Filler::Blank => {}
            Filler::Comment(i, text) => {
                out.push_str(&" ".repeat(*i));
                out.push('#');
                out.push_str(text);
            }
            Filler::Pair(value) => {
                *n += 1;
                out.push_str(&format!("{}k{n}: v{value}", " ".repeat(indent)));
            }
        }
        out.push_str(eol);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn rewriting_changes_exactly_the_tag_bytes(
        depth in 0usize..4,
        step in 1usize..5,
        before in prop::collection::vec(filler(), 0..6),
        after in prop::collection::vec(filler(), 0..6),
        quote in 0usize..3,
        split in any::<bool>(),
        repo in prop::sample::select(vec!["ghcr.io/org/app", "nginx", "localhost:5000/a/b", "org/app"]),
        old in (0u32..30, 0u32..30, 0u32..30),
        new in (0u32..30, 0u32..30, 0u32..30),
        gap in 1usize..4,
        marker_space in prop::sample::select(vec!["", " ", "  ", "\t"]),
        crlf in any::<bool>(),
        final_newline in any::<bool>(),
    ) {
        let eol = if crlf { "\r\n" } else { "\n" };
        let old_tag = format!("{}.{}.{}", old.0, old.1, old.2);
        let new_tag = format!("{}.{}.{}", new.0, new.1, new.2);
        let mut text = String::new();
        let mut n = 0;
        for level in 0..depth {
            text.push_str(&format!("{}p{level}:{eol}", " ".repeat(level * step)));
        }
        let indent = depth * step;
        push_fillers(&mut text, &before, indent, eol, &mut n);
        text.push_str(&format!("{}key: ", " ".repeat(indent)));
        let (q_open, q_close) = [("", ""), ("'", "'"), ("\"", "\"")][quote];
        text.push_str(q_open);
        let value_start = text.len();
        let tag_start = if split {
            value_start
        } else {
            text.push_str(repo);
            text.push(':');
            text.len()
        };
        text.push_str(&old_tag);
        let tag_end = text.len();
        text.push_str(q_close);
        let marker = if split { "ns:app:tag" } else { "ns:app" };
        text.push_str(&format!(
            "{}#{s}{{{s}\"$imagepolicy\"{s}:{s}\"{marker}\"{s}}}",
            " ".repeat(gap),
            s = marker_space
        ));
        if !after.is_empty() || final_newline {
            text.push_str(eol);
        }
        push_fillers(&mut text, &after, indent, eol, &mut n);
        if !final_newline && text.ends_with(eol) && !after.is_empty() {
            text.truncate(text.len() - eol.len());
        }

        let config = RepoConfig::default()
            .with_policy("ns:app", MarkerPolicy::parse("semver").unwrap().with_image(repo));
        let found = scan("p.yaml", &text, &config);
        prop_assert!(found.warnings.is_empty(), "{:?}\n{}", found.warnings, text);
        prop_assert_eq!(found.references.len(), 1, "{}", text);
        let r = found.references[0].clone();
        prop_assert_eq!(&text[r.slots[0].range.clone()], &text[if split { tag_start } else { value_start }..tag_end]);
        prop_assert_eq!(r.line, text[..value_start].matches('\n').count() + 1);

        let target = image(&format!("{repo}:{new_tag}"));
        let out = rewrite(&text, &[(r, target)]).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let expected = format!("{}{}{}", &text[..tag_start], new_tag, &text[tag_end..]);
        prop_assert_eq!(out, expected);
    }
}

/// One top-level entry `k<i>: ...` of a generated values file.
fn entry() -> impl Strategy<Value = (usize, usize, usize, usize, bool)> {
    (0usize..6, 0usize..6, 0usize..3, 0usize..5, any::<bool>())
}

fn render_entry(
    i: usize,
    (form, value, quote, marker, extra): (usize, usize, usize, usize, bool),
) -> String {
    let values = [
        "ghcr.io/org/a:1.2.3".to_owned(),
        format!("ghcr.io/org/a@{}", sha('a')),
        format!("ghcr.io/org/a:1.2.3@{}", sha('a')),
        "nginx".to_owned(),
        "Not An Image".to_owned(),
        "1.2.3".to_owned(),
    ];
    let q = ["", "'", "\""][quote];
    let v = format!("{q}{}{q}", values[value]);
    let markers = [
        "",
        " # {\"$imagepolicy\": \"ns:a\"}",
        " # {\"$imagepolicy\": \"ns:b:tag\"}",
        " # keel.sh/policy: minor",
        " #{\"$imagepolicy\":\"ns:a:name\"}",
    ];
    let m = markers[marker];
    let comment = if extra { "\n  # note\n" } else { "\n" };
    match form {
        0 => format!("k{i}: {v}{m}"),
        1 => format!("k{i}:{comment}  image: {v}{m}"),
        2 => format!(
            "k{i}:\n  repository: ghcr.io/org/b # {{\"$imagepolicy\": \"ns:b:name\"}}{comment}  tag: {q}1.2.3{q}{m}"
        ),
        3 => format!("k{i}: {{repository: ghcr.io/org/b, tag: {q}1.2.3{q}}}{m}"),
        4 => format!("k{i}: &a{i} {v}{m}\nk{i}x: *a{i}"),
        _ => format!("k{i}:\n  - {v}{m}\n  -   {v}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever the input, scanning does not panic, every slot is a real scalar's content,
    /// writing each reference back unchanged is a no-op, and updating every reference gives
    /// YAML whose fresh scan sees the new references.
    #[test]
    fn scanning_and_rewriting_generated_values_files(
        entries in prop::collection::vec(entry(), 0..8),
        crlf in any::<bool>(),
        final_newline in any::<bool>(),
    ) {
        let eol = if crlf { "\r\n" } else { "\n" };
        let mut text = entries
            .iter()
            .enumerate()
            .map(|(i, &e)| render_entry(i, e))
            .collect::<Vec<_>>()
            .join("\n")
            .replace('\n', eol);
        if final_newline {
            text.push_str(eol);
        }
        let config = RepoConfig::default()
            .with_policy("ns:b", MarkerPolicy::new(PolicySpec::Minor).with_image("ghcr.io/org/b"));
        let found = scan("values.yaml", &text, &config);
        prop_assert!(found.warnings.iter().all(|w| !w.reason.contains("not valid YAML")), "{:?}\n{}", found.warnings, text);
        for r in &found.references {
            for slot in &r.slots {
                prop_assert!(text.get(slot.range.clone()).is_some_and(|s| !s.is_empty()), "{:?}", slot);
            }
        }
        let same: Vec<_> = found.references.iter().map(|r| (r.clone(), r.image.clone())).collect();
        prop_assert_eq!(rewrite(&text, &same).map_err(|e| TestCaseError::fail(e.to_string()))?, text.clone());

        let bump = |r: &Reference| {
            let holds_tag = r.slots.iter().any(|s| !matches!(s.part, Part::Name | Part::Digest));
            if !holds_tag {
                return r.image.clone();
            }
            let tag = keel_core::Tag::new("2.0.0").unwrap();
            match r.image.digest() {
                Some(_) => r.image.with_tag(tag).with_digest(keel_core::Digest::new(sha('b')).unwrap()),
                None => r.image.with_tag(tag),
            }
        };
        let edits: Vec<_> = found.references.iter().map(|r| (r.clone(), bump(r))).collect();
        let out = rewrite(&text, &edits).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        let again = scan("values.yaml", &out, &config);
        let images: Vec<_> = again.references.iter().map(|r| r.image.clone()).collect();
        let wanted: Vec<_> = edits.iter().map(|(_, new)| new.clone()).collect();
        prop_assert_eq!(images, wanted, "{}\n{}", text, out);
    }
}

#[test]
fn alias_bombs_are_invalid_files_not_work() {
    // Merge keys of merge keys in a workload: reading its metadata would follow 8^8 entries.
    let text = keel_testsupport::yaml::merge_bomb();
    assert!(text.len() <= 1024, "{} bytes", text.len());
    let found = scan("apps/bomb.yaml", &text, &RepoConfig::default());
    assert!(found.references.is_empty(), "{:?}", found.references);
    let [warning] = found.warnings.as_slice() else {
        panic!("{:?}", found.warnings)
    };
    assert_eq!(warning.file, "apps/bomb.yaml");
    assert!(warning.reason.contains("not valid YAML"), "{warning}");
    assert!(warning.reason.contains("100000 nodes"), "{warning}");
    // The same file as the configuration is refused, not expanded.
    let e = RepoConfig::from_yaml(&text).unwrap_err();
    assert!(e.to_string().contains("100000 nodes"), "{e}");
}

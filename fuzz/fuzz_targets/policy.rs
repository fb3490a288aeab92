//! Fuzzes policy parsing and selection. The input is a policy string, a newline, then tags
//! one per line; the first tag is the current one.
//!
//! Checked: parsing never panics; a `PolicySpec` or `VersionRange` that parses displays as a
//! string that parses back to the same; selection never panics, chooses one of the candidates
//! other than the current tag, does not depend on the order of the candidates, and decides
//! the same when asked to explain.
#![no_main]

use keel_core::VersionPolicy;
use keel_core::policy::{Candidate, Current, Policy, PolicyOptions, PolicySpec, SelectInput};
use keel_core::version::{Version, VersionRange};
use libfuzzer_sys::fuzz_target;

/// Enough tags for every rule to meet every other, few enough to keep runs fast.
const MAX_TAGS: usize = 64;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let (policy, tags) = input.split_once('\n').unwrap_or((input, ""));
    let tags: Vec<&str> = tags.lines().take(MAX_TAGS).collect();

    if let Ok(range) = VersionRange::parse(policy) {
        let again = VersionRange::parse(&range.to_string())
            .unwrap_or_else(|e| panic!("range {policy:?} parsed, its display {range} not: {e}"));
        assert_eq!(again, range);
        for tag in &tags {
            if let Some(v) = Version::parse(tag) {
                assert_eq!(range.matches(&v), again.matches(&v), "{tag:?}");
            }
        }
    }

    let Ok(spec) = policy.parse::<PolicySpec>() else {
        return;
    };
    let shown = spec.to_string();
    let reparsed = shown
        .parse::<PolicySpec>()
        .unwrap_or_else(|e| panic!("policy {policy:?} parsed, its display {shown:?} not: {e}"));
    assert_eq!(reparsed.to_string(), shown);

    let policy = VersionPolicy::new(spec, &PolicyOptions::default())
        .expect("default options fit every policy");
    let current = tags.first().copied();
    let current = current.map_or_else(Current::none, Current::tag);
    let candidates: Vec<Candidate<'_>> = tags.iter().map(|t| Candidate::new(t)).collect();
    let decision = policy.select(&SelectInput::new(current, &candidates));
    if let Some(chosen) = decision.tag() {
        assert!(tags.contains(&chosen), "chose {chosen:?}, not a candidate");
        assert_ne!(Some(chosen), current.tag, "chose the current tag");
    }

    let reversed: Vec<Candidate<'_>> = candidates.iter().rev().copied().collect();
    let decision_reversed = policy.select(&SelectInput::new(current, &reversed));
    assert_eq!(
        decision_reversed.tag(),
        decision.tag(),
        "depends on the order"
    );

    let explained = policy.select(&SelectInput::new(current, &candidates).explained());
    assert_eq!(
        explained.tag(),
        decision.tag(),
        "explaining changed the decision"
    );
    let explanation = explained.explanation.expect("asked to explain");
    assert_eq!(explanation.chosen.as_deref(), decision.tag());
});

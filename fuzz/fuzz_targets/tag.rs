//! Fuzzes `Tag::new`, `Digest::new` and `Platform::parse`: none panics, `Tag::new` agrees
//! with `is_valid_tag`, and every value that parses displays as a string that parses back to
//! an equal value.
#![no_main]

use keel_core::reference::is_valid_tag;
use keel_core::{Digest, Platform, Tag};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };

    let tag = Tag::new(input);
    assert_eq!(tag.is_ok(), is_valid_tag(input), "{input:?}");
    if let Ok(tag) = tag {
        assert_eq!(tag.as_str(), input);
        assert_eq!(tag.to_string().parse::<Tag>().ok(), Some(tag));
    }

    if let Ok(digest) = Digest::new(input) {
        assert_eq!(digest.as_str(), input);
        assert_eq!(
            format!("{}:{}", digest.algorithm(), digest.encoded()),
            input
        );
        assert_eq!(digest.to_string().parse::<Digest>().ok(), Some(digest));
    }

    if let Ok(platform) = Platform::parse(input) {
        let shown = platform.to_string();
        let again = Platform::parse(&shown).unwrap_or_else(|e| {
            panic!("{input:?} parsed, but its display {shown:?} does not: {e}")
        });
        assert_eq!(again, platform, "{input:?} -> {shown:?}");
        assert!(platform.matches(&again));
    }
});

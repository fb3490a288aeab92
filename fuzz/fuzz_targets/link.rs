//! Fuzzes the registry client's `Link` header reader (tag-list pagination). The input is
//! `Link` header values, one per line.
//!
//! Checked: no panic; the next page, when there is one, is an absolute URL; headers that
//! never say `next` lead nowhere; a single `<target>; rel="next"` leads to the target
//! resolved against the page, whatever other links come after it.
#![no_main]

use keel_registry::fuzzing::next_link;
use libfuzzer_sys::fuzz_target;
use url::Url;

const PAGE: &str = "https://registry.example.com/v2/acme/web/tags/list?n=100";

fuzz_target!(|data: &[u8]| {
    let values: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
    let next = next_link(&values, PAGE);
    if let Some(next) = &next {
        let url = Url::parse(next).unwrap_or_else(|e| panic!("{next:?} is not a URL: {e}"));
        assert_eq!(url.as_str(), next);
    }
    let says_next = data.windows(4).any(|w| w.eq_ignore_ascii_case(b"next"));
    if !says_next {
        assert_eq!(next, None, "{data:?}");
    }

    // The first line as the target of a well-formed link.
    let Ok(target) = std::str::from_utf8(values[0]) else {
        return;
    };
    if target.is_empty()
        || target.trim() != target
        || target.contains([',', ';', '<', '>'])
        || target.chars().any(|c| !c.is_ascii_graphic())
    {
        return;
    }
    let header = format!("<{target}>; rel=\"next\", <other>; rel=\"last\"");
    let expected = Url::parse(PAGE)
        .expect("the page is a URL")
        .join(target)
        .ok()
        .map(String::from);
    let mut links = vec![header.as_bytes()];
    links.extend(&values[1..]);
    assert_eq!(next_link(&links, PAGE), expected, "{header:?}");
});

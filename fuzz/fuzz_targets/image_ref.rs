//! Fuzzes `ImageRef::parse`: it never panics, and whatever parses displays as a string that
//! parses back to an equal reference (and displays the same again).
#![no_main]

use keel_core::ImageRef;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(reference) = ImageRef::parse(input) else {
        return;
    };
    let shown = reference.to_string();
    let again = ImageRef::parse(&shown)
        .unwrap_or_else(|e| panic!("{input:?} parsed, but its display {shown:?} does not: {e}"));
    assert_eq!(again, reference, "{input:?} -> {shown:?}");
    assert_eq!(again.to_string(), shown);
    assert!(reference.tag().is_some() || reference.digest().is_some());
});

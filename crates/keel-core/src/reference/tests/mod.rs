//! Tests of the reference types, one file per type, sharing the helpers below.

use super::*;
use proptest::prelude::*;
use std::collections::HashSet;

const HEX64: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn sha256() -> String {
    format!("sha256:{HEX64}")
}

fn sha512() -> String {
    format!("sha512:{HEX64}{HEX64}")
}

fn parse(s: &str) -> ImageRef {
    ImageRef::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
}

fn parse_err(s: &str) -> ParseError {
    match ImageRef::parse(s) {
        Ok(r) => panic!("{s:?} should not parse, got {r}"),
        Err(e) => e,
    }
}

/// Asserts the error names the input and contains `rule`, and returns the bad part.
fn assert_error<'a>(e: &ParseError, input: &'a str, rule: &str) -> Option<&'a str> {
    let message = e.to_string();
    assert!(
        message.contains(&format!("{input:?}")),
        "{message:?} should name the input {input:?}"
    );
    assert!(
        message.contains(rule),
        "{message:?} should name the rule {rule:?}"
    );
    assert_eq!(e.input(), input);
    e.span().map(|(start, end)| &input[start..end])
}

mod digest;
mod image_ref;
mod platform;
mod properties;
mod tag;

//! Glob patterns of the `glob:` policy.

use std::fmt;

/// A glob over a whole tag: `*` matches any run of characters (including none), `?` exactly
/// one character, everything else itself.
///
/// ```
/// use keel_core::policy::Glob;
///
/// let g = Glob::new("build-*-?");
/// assert!(g.matches("build-42-a"));
/// assert!(!g.matches("build-42-ab"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Glob {
    pattern: String,
    chars: Vec<char>,
}

impl Glob {
    /// A glob for `pattern`; every string is a valid pattern.
    pub fn new(pattern: &str) -> Glob {
        Glob {
            pattern: pattern.to_owned(),
            chars: pattern.chars().collect(),
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether the whole of `value` matches.
    pub fn matches(&self, value: &str) -> bool {
        if self.pattern.is_ascii() && value.is_ascii() {
            wildcard_match(self.pattern.as_bytes(), value.as_bytes(), b'*', b'?')
        } else {
            let value: Vec<char> = value.chars().collect();
            wildcard_match(&self.chars, &value, '*', '?')
        }
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pattern)
    }
}

/// Linear-backtracking wildcard match: on a mismatch, retry from the last `*` one position
/// further, which is enough because a later `*` can absorb anything an earlier one could.
fn wildcard_match<T: PartialEq + Copy>(pattern: &[T], value: &[T], star: T, one: T) -> bool {
    let (mut p, mut v) = (0, 0);
    let mut restart: Option<(usize, usize)> = None;
    while v < value.len() {
        if p < pattern.len() && pattern[p] == star {
            restart = Some((p, v));
            p += 1;
        } else if p < pattern.len() && (pattern[p] == one || pattern[p] == value[v]) {
            p += 1;
            v += 1;
        } else if let Some((sp, sv)) = restart {
            p = sp + 1;
            v = sv + 1;
            restart = Some((sp, sv + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == star)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn matches_whole_tags() {
        assert!(Glob::new("*").matches(""));
        assert!(Glob::new("1.*").matches("1.2.3"));
        assert!(!Glob::new("1.*").matches("21.2"));
        assert!(Glob::new("*-alpine").matches("3.12-alpine"));
        assert!(!Glob::new("*-alpine").matches("3.12-alpine3.18"));
        assert!(Glob::new("a*b*c").matches("aXbYbZc"));
        assert!(!Glob::new("a*b*c").matches("aXbYbZ"));
        assert!(Glob::new("??").matches("é1"));
        assert!(!Glob::new("?").matches(""));
        assert!(Glob::new("**x").matches("x"));
    }

    /// An obviously correct exponential matcher to check the fast one against.
    fn reference(p: &[char], v: &[char]) -> bool {
        match p.split_first() {
            None => v.is_empty(),
            Some(('*', rest)) => (0..=v.len()).any(|i| reference(rest, &v[i..])),
            Some((c, rest)) => {
                !v.is_empty() && (*c == '?' || *c == v[0]) && reference(rest, &v[1..])
            }
        }
    }

    proptest! {
        #[test]
        fn agrees_with_reference(p in "[ab*?]{0,6}", v in "[ab]{0,8}") {
            let pc: Vec<char> = p.chars().collect();
            let vc: Vec<char> = v.chars().collect();
            prop_assert_eq!(Glob::new(&p).matches(&v), reference(&pc, &vc));
        }
    }
}

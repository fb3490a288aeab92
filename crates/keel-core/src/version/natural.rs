//! Natural order: runs of digits compare as numbers, other runs byte-wise.

use std::cmp::Ordering;

use super::cmp_digits;

/// Compares `a` and `b` in natural order: both are split into runs of ASCII digits and runs
/// of anything else; digit runs compare as numbers of any length (`9 < 10`, `007 = 7`), other
/// runs byte-wise, and a digit run against another run by their first bytes. The order is a
/// total preorder (tags equal under it are tied, and ties are broken elsewhere).
///
/// ```
/// use keel_core::version::natural_cmp;
/// use std::cmp::Ordering::Less;
///
/// assert_eq!(natural_cmp("build-9", "build-10"), Less);
/// assert_eq!(natural_cmp("1.9", "1.10"), Less);
/// assert_eq!(natural_cmp("a2b", "a10b"), Less);
/// ```
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut x, mut y) = (a, b);
    loop {
        match (x.is_empty(), y.is_empty()) {
            (true, true) => return Ordering::Equal,
            (true, false) => return Ordering::Less,
            (false, true) => return Ordering::Greater,
            (false, false) => {}
        }
        let (rx, tx) = split_run(x);
        let (ry, ty) = split_run(y);
        let dx = rx.as_bytes()[0].is_ascii_digit();
        let dy = ry.as_bytes()[0].is_ascii_digit();
        let ord = match (dx, dy) {
            (true, true) => cmp_digits(rx, ry),
            (false, false) => rx.cmp(ry),
            _ => rx.as_bytes()[0].cmp(&ry.as_bytes()[0]),
        };
        if ord != Ordering::Equal {
            return ord;
        }
        x = tx;
        y = ty;
    }
}

/// Splits off the leading run (all digits or no digits) of a non-empty string.
fn split_run(s: &str) -> (&str, &str) {
    let bytes = s.as_bytes();
    let digit = bytes[0].is_ascii_digit();
    let end = bytes
        .iter()
        .position(|b| b.is_ascii_digit() != digit)
        .unwrap_or(bytes.len());
    s.split_at(end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn examples() {
        use Ordering::*;
        assert_eq!(natural_cmp("build-9", "build-10"), Less);
        assert_eq!(natural_cmp("1.9", "1.10"), Less);
        assert_eq!(natural_cmp("a2b", "a10b"), Less);
        assert_eq!(natural_cmp("a", "a1"), Less);
        assert_eq!(natural_cmp("abc", "ab1"), Greater);
        assert_eq!(natural_cmp("007", "7"), Equal);
        assert_eq!(natural_cmp("", ""), Equal);
        assert_eq!(natural_cmp("-1", "1"), Less);
        assert_eq!(natural_cmp("x1", "1"), Greater);
    }

    fn tag() -> impl Strategy<Value = String> {
        "[a-c0-9._-]{0,8}"
    }

    proptest! {
        #[test]
        fn antisymmetric(a in tag(), b in tag()) {
            prop_assert_eq!(natural_cmp(&a, &b), natural_cmp(&b, &a).reverse());
        }

        #[test]
        fn transitive(a in tag(), b in tag(), c in tag()) {
            let mut v = [a, b, c];
            v.sort_by(|x, y| natural_cmp(x, y));
            prop_assert_ne!(natural_cmp(&v[0], &v[1]), Ordering::Greater);
            prop_assert_ne!(natural_cmp(&v[1], &v[2]), Ordering::Greater);
            prop_assert_ne!(natural_cmp(&v[0], &v[2]), Ordering::Greater);
        }

        #[test]
        fn equal_only_up_to_leading_zeros(a in tag(), b in tag()) {
            if natural_cmp(&a, &b) == Ordering::Equal {
                let strip = |s: &str| s.split(|c: char| !c.is_ascii_digit())
                    .map(|r| r.trim_start_matches('0').to_string())
                    .collect::<Vec<_>>();
                prop_assert_eq!(strip(&a), strip(&b));
            }
        }
    }
}

//! Decimal numbers, as the `numerical` policy reads tags.

use std::cmp::Ordering;

use super::{cmp_digits, is_digits, strip_marker};

/// A decimal number (`42`, `-7`, `3.14`, `0010`) borrowed from a tag, compared exactly at any
/// length, never through floating point.
///
/// ```
/// use keel_core::version::Decimal;
///
/// let a = Decimal::parse("1.5").unwrap();
/// let b = Decimal::parse("10").unwrap();
/// assert!(a < b);
/// assert!(Decimal::parse("1e5").is_none());
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Decimal<'a> {
    negative: bool,
    int: &'a str,
    frac: &'a str,
}

impl<'a> Decimal<'a> {
    /// Parses `-?[0-9]+(\.[0-9]+)?`; `None` for anything else.
    pub fn parse(s: &'a str) -> Option<Decimal<'a>> {
        let (negative, body) = strip_marker(s, '-');
        let (int, frac) = match body.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (body, None),
        };
        if !is_digits(int) || frac.is_some_and(|f| !is_digits(f)) {
            return None;
        }
        let int = int.trim_start_matches('0');
        let frac = frac.unwrap_or("").trim_end_matches('0');
        let zero = int.is_empty() && frac.is_empty();
        Some(Decimal {
            negative: negative && !zero,
            int,
            frac,
        })
    }

    fn cmp_magnitude(&self, other: &Self) -> Ordering {
        cmp_digits(self.int, other.int).then_with(|| self.frac.cmp(other.frac))
    }
}

impl Ord for Decimal<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self.negative, other.negative) {
            (false, false) => self.cmp_magnitude(other),
            (true, true) => other.cmp_magnitude(self),
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
        }
    }
}

impl PartialOrd for Decimal<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Decimal<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Decimal<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(s: &str) -> Decimal<'_> {
        Decimal::parse(s).unwrap()
    }

    #[test]
    fn orders_exactly() {
        assert!(d("9") < d("10"));
        assert!(d("1.5") < d("1.50001"));
        assert!(d("-2") < d("-1"));
        assert!(d("-1") < d("0"));
        assert_eq!(d("-0"), d("0.000"));
        assert_eq!(d("007"), d("7.0"));
        assert!(d("99999999999999999999999") > d("99999999999999999999998"));
        assert!(d("0.1") < d("0.12"));
    }

    #[test]
    fn rejects_non_numbers() {
        for s in [
            "", "-", "1.", ".5", "1e5", "+1", "1.2.3", "abc", " 1", "0x10",
        ] {
            assert!(Decimal::parse(s).is_none(), "{s:?}");
        }
    }

    proptest! {
        #[test]
        fn agrees_with_integers(a in any::<i64>(), b in any::<i64>()) {
            let (sa, sb) = (a.to_string(), b.to_string());
            prop_assert_eq!(d(&sa).cmp(&d(&sb)), a.cmp(&b));
        }
    }
}

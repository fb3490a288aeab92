//! `semver:` version ranges in the syntax Flux users write (Masterminds / npm style): the
//! parser, and the matcher that tests candidate versions against a parsed range without
//! allocating.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use semver::{BuildMetadata, Prerelease};

use super::Version;
use crate::error::ParseError;

/// The kind of input named in parse errors.
const KIND: &str = "semver range";

/// A version range in the syntax Flux users write (Masterminds / npm style).
///
/// A range is one or more alternatives separated by `||`; an alternative is one or more
/// comparators separated by spaces or commas, all of which must hold:
///
/// - `=`, `!=`, `>`, `>=`, `<`, `<=` followed (optionally after whitespace) by a version; a
///   bare version means `=`;
/// - `^V` (caret: `^1.2.3` is `>=1.2.3 <2.0.0`, `^0.2.3` is `>=0.2.3 <0.3.0`, `^0.0.3` is
///   `>=0.0.3 <0.0.4`), `~V` or `~>V` (tilde: `~1.2.3` is `>=1.2.3 <1.3.0`, `~1` is
///   `>=1.0.0 <2.0.0`);
/// - `A - B` (hyphen range, spaces required around the `-`): `>=A <=B`.
///
/// Versions in ranges take an optional `v`/`V` prefix, one to three numeric parts, an optional
/// `-pre-release` and an optional `+build` (ignored). A part may be a wildcard `x`, `X` or `*`,
/// and missing parts count as wildcards, so `1.2`, `1.2.x` and `1.2.*` all stand for every
/// `1.2.z` release and `*` for any version. Bounds derived from such partial versions follow
/// npm: a lower bound is the release (`>=1.2` is `>=1.2.0`, `>1.2` is `>=1.3.0`) and an upper
/// bound sits below every pre-release of the next version (`<1.2` is `<1.2.0-0`, `<=1.2` is
/// `<1.3.0-0`, and `^1.2.3` is really `>=1.2.3 <2.0.0-0`), so that a range that admits
/// pre-releases never selects a pre-release of a version it excludes. `=1.2` is the x-range
/// `1.2.x` and `!=1.2` everything outside it. A pre-release on a partial version fills the
/// missing parts with zeros (`1.2-rc.1` is `1.2.0-rc.1`).
///
/// A candidate with a pre-release satisfies an alternative only if one of that alternative's
/// comparators was written with a pre-release (`>=1.0.0-0 <2.0.0`); it may then be a
/// pre-release of any version. Ordering is semver precedence (`2.0.0-rc.1 < 2.0.0`); build
/// metadata is ignored on both sides.
///
/// ```
/// use keel_core::version::{Version, VersionRange};
///
/// let range: VersionRange = ">=1.2, <2 || ^3.0.0-0".parse().unwrap();
/// assert!(range.matches(&Version::parse("1.9.0").unwrap()));
/// assert!(!range.matches(&Version::parse("2.0.0").unwrap()));
/// assert!(range.matches(&Version::parse("v3.1.0-rc.1").unwrap()));
/// assert!(!range.matches(&Version::parse("1.9.1-rc.1").unwrap()));
/// assert!(range.admits_pre_releases());
/// assert_eq!(range.to_string(), ">=1.2, <2 || ^3.0.0-0");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionRange {
    alternatives: Vec<Alternative>,
    text: String,
}

/// Comparators that must all hold, and whether one of them was written with a pre-release.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Alternative {
    comparators: Vec<Comparator>,
    pre: bool,
}

/// One test against a bound, by semver precedence.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Comparator {
    Eq(semver::Version),
    Ne(semver::Version),
    Gt(semver::Version),
    Ge(semver::Version),
    Lt(semver::Version),
    Le(semver::Version),
    /// Below `below`, or at or above `from` (when there is one): the complement of an x-range.
    Outside {
        below: semver::Version,
        from: Option<semver::Version>,
    },
    /// Matches nothing (`>*`, `<*`, `!=*`).
    Never,
}

impl Comparator {
    #[inline]
    fn matches(&self, v: &Version<'_>) -> bool {
        match self {
            Comparator::Eq(b) => v.precedence_to(b) == Ordering::Equal,
            Comparator::Ne(b) => v.precedence_to(b) != Ordering::Equal,
            Comparator::Gt(b) => v.precedence_to(b) == Ordering::Greater,
            Comparator::Ge(b) => v.precedence_to(b) != Ordering::Less,
            Comparator::Lt(b) => v.precedence_to(b) == Ordering::Less,
            Comparator::Le(b) => v.precedence_to(b) != Ordering::Greater,
            Comparator::Outside { below, from } => {
                v.precedence_to(below) == Ordering::Less
                    || from
                        .as_ref()
                        .is_some_and(|f| v.precedence_to(f) != Ordering::Less)
            }
            Comparator::Never => false,
        }
    }
}

impl Alternative {
    #[inline]
    fn matches(&self, v: &Version<'_>) -> bool {
        (self.pre || !v.is_pre_release()) && self.comparators.iter().all(|c| c.matches(v))
    }
}

impl VersionRange {
    /// Parses a range; see [`VersionRange`] for the syntax.
    ///
    /// Every malformed input gives a [`ParseError`] of kind `"semver range"` whose span
    /// points at the offending part of `text`. An empty range is an error (write `*` for
    /// "any version").
    pub fn parse(text: &str) -> Result<VersionRange, ParseError> {
        let alternatives = Parser { text, pos: 0 }.range()?;
        Ok(VersionRange {
            alternatives,
            text: text.trim().to_owned(),
        })
    }

    /// Whether `v` satisfies the range (any alternative).
    ///
    /// A pre-release `v` can only satisfy an alternative that has a comparator written with a
    /// pre-release. Does not allocate.
    #[inline]
    pub fn matches(&self, v: &Version<'_>) -> bool {
        self.alternatives.iter().any(|alt| alt.matches(v))
    }

    /// Whether any alternative names a pre-release (so pre-releases may be selected at all).
    pub fn admits_pre_releases(&self) -> bool {
        self.alternatives.iter().any(|alt| alt.pre)
    }
}

impl FromStr for VersionRange {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        VersionRange::parse(s)
    }
}

impl fmt::Display for VersionRange {
    /// Prints the range as written, without surrounding whitespace.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The operators written before a version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Caret,
    Tilde,
}

/// A version as written in a range: the leading numeric parts (`known` of them; the rest are
/// wildcards or missing and stored as 0) and the pre-release. A pre-release is only allowed
/// without wildcards, and makes the version full (`1.2-rc.1` is `1.2.0-rc.1`).
#[derive(Clone, Debug)]
struct Partial {
    nums: [u64; 3],
    known: usize,
    pre: Prerelease,
}

impl Partial {
    fn is_full(&self) -> bool {
        self.known == 3
    }

    /// The version with the unwritten parts as 0, with the pre-release as written.
    fn floor(&self) -> semver::Version {
        let [major, minor, patch] = self.nums;
        semver::Version {
            major,
            minor,
            patch,
            pre: self.pre.clone(),
            build: BuildMetadata::EMPTY,
        }
    }

    /// The numbers of the first version after every version this partial stands for: `None`
    /// for a full version or a lone wildcard, and when there is no such version.
    fn next(&self) -> Option<(u64, u64, u64)> {
        match self.known {
            1 | 2 => bump(self.nums, self.known - 1),
            _ => None,
        }
    }

    /// The numbers of the first version after the caret range of this partial: the left-most
    /// non-zero part is bumped (or the last written one when all are zero).
    fn caret_next(&self) -> Option<(u64, u64, u64)> {
        let last = self.known.saturating_sub(1);
        let index = self.nums[..last]
            .iter()
            .position(|&n| n > 0)
            .unwrap_or(last);
        bump(self.nums, index)
    }

    /// The numbers of the first version after the tilde range of this partial: the minor is
    /// bumped, or the major when it is the only part written.
    fn tilde_next(&self) -> Option<(u64, u64, u64)> {
        bump(self.nums, if self.known == 1 { 0 } else { 1 })
    }
}

/// `nums` with part `index` incremented and the parts after it zeroed, carrying into the
/// part before on overflow; `None` when the major overflows (no version is that high).
fn bump(nums: [u64; 3], index: usize) -> Option<(u64, u64, u64)> {
    let mut out = [0u64; 3];
    out[..index].copy_from_slice(&nums[..index]);
    let mut i = index;
    loop {
        match nums[i].checked_add(1) {
            Some(n) => {
                out[i] = n;
                return Some((out[0], out[1], out[2]));
            }
            None if i == 0 => return None,
            None => {
                out[i] = 0;
                i -= 1;
            }
        }
    }
}

/// The release `major.minor.patch`.
fn release((major, minor, patch): (u64, u64, u64)) -> semver::Version {
    semver::Version::new(major, minor, patch)
}

/// `major.minor.patch-0`: the least version with these numbers, below all their pre-releases.
fn lowest((major, minor, patch): (u64, u64, u64)) -> semver::Version {
    semver::Version {
        major,
        minor,
        patch,
        pre: Prerelease::new("0").expect("`0` is a valid pre-release"),
        build: BuildMetadata::EMPTY,
    }
}

/// Appends the comparators `op p` stands for.
fn push_comparators(op: Op, p: &Partial, out: &mut Vec<Comparator>) {
    let any = p.known == 0;
    let numbers = (p.nums[0], p.nums[1], p.nums[2]);
    match op {
        Op::Eq if p.is_full() => out.push(Comparator::Eq(p.floor())),
        Op::Ne if p.is_full() => out.push(Comparator::Ne(p.floor())),
        Op::Gt if p.is_full() => out.push(Comparator::Gt(p.floor())),
        Op::Ge if p.is_full() => out.push(Comparator::Ge(p.floor())),
        Op::Lt if p.is_full() => out.push(Comparator::Lt(p.floor())),
        Op::Le if p.is_full() => out.push(Comparator::Le(p.floor())),
        Op::Eq | Op::Ge if any => {}
        Op::Ne | Op::Gt | Op::Lt if any => out.push(Comparator::Never),
        Op::Eq => {
            out.push(Comparator::Ge(p.floor()));
            if let Some(next) = p.next() {
                out.push(Comparator::Lt(lowest(next)));
            }
        }
        Op::Ne => out.push(Comparator::Outside {
            below: p.floor(),
            from: p.next().map(lowest),
        }),
        Op::Gt => out.push(match p.next() {
            Some(next) => Comparator::Ge(release(next)),
            None => Comparator::Never,
        }),
        Op::Ge => out.push(Comparator::Ge(p.floor())),
        Op::Lt => out.push(Comparator::Lt(lowest(numbers))),
        Op::Le => {
            if let Some(next) = p.next() {
                out.push(Comparator::Lt(lowest(next)));
            }
        }
        Op::Caret | Op::Tilde => {
            out.push(Comparator::Ge(p.floor()));
            let next = if op == Op::Caret {
                p.caret_next()
            } else {
                p.tilde_next()
            };
            if let Some(next) = next {
                out.push(Comparator::Lt(lowest(next)));
            }
        }
    }
}

fn is_op_char(b: u8) -> bool {
    matches!(b, b'=' | b'!' | b'<' | b'>' | b'^' | b'~')
}

fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'*' | b'+' | b'-')
}

fn is_wildcard(part: &str) -> bool {
    matches!(part, "x" | "X" | "*")
}

/// A recursive-descent parser over the bytes of the range; `pos` only ever moves over ASCII
/// bytes, so it always sits on a character boundary.
struct Parser<'t> {
    text: &'t str,
    pos: usize,
}

impl Parser<'_> {
    fn error(&self, start: usize, end: usize, reason: impl Into<String>) -> ParseError {
        ParseError::new(KIND, self.text, reason).at(start, end)
    }

    /// An error at the span `start..end`, its reason written from the span's text.
    fn span_error(
        &self,
        (start, end): (usize, usize),
        reason: impl FnOnce(&str) -> String,
    ) -> ParseError {
        self.error(start, end, reason(&self.text[start..end]))
    }

    fn byte_at(&self, i: usize) -> Option<u8> {
        self.text.as_bytes().get(i).copied()
    }

    fn peek(&self) -> Option<u8> {
        self.byte_at(self.pos)
    }

    /// Skips whitespace; whether there was any.
    fn skip_ws(&mut self) -> bool {
        let start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.pos += 1;
        }
        self.pos > start
    }

    /// Whether byte `i` ends a word: whitespace or the end of the text.
    fn boundary_at(&self, i: usize) -> bool {
        self.byte_at(i).is_none_or(|b| b.is_ascii_whitespace())
    }

    /// Advances over bytes matching `pred`; the span passed over.
    fn take_while(&mut self, pred: fn(u8) -> bool) -> (usize, usize) {
        let start = self.pos;
        while self.peek().is_some_and(pred) {
            self.pos += 1;
        }
        (start, self.pos)
    }

    fn unexpected(&self, at: usize) -> ParseError {
        let c = self.text[at..].chars().next().unwrap_or(' ');
        self.error(at, at + c.len_utf8(), format!("unexpected character {c:?}"))
    }

    /// `range := alternative ('||' alternative)*`
    fn range(mut self) -> Result<Vec<Alternative>, ParseError> {
        if self.text.trim().is_empty() {
            return Err(self.error(
                0,
                self.text.len(),
                "empty range (write `*` to accept any version)",
            ));
        }
        let mut alternatives = Vec::new();
        // Where the `||` before the current alternative is.
        let mut bar: Option<usize> = None;
        loop {
            self.skip_ws();
            let at_bar = self.peek() == Some(b'|');
            if at_bar && self.byte_at(self.pos + 1) != Some(b'|') {
                return Err(self.lone_bar());
            }
            if at_bar || self.peek().is_none() {
                return Err(match bar {
                    Some(b) => self.error(b, b + 2, "`||` is not followed by an alternative"),
                    None => self.error(self.pos, self.pos + 2, "`||` has no alternative before it"),
                });
            }
            alternatives.push(self.alternative()?);
            if self.peek().is_none() {
                return Ok(alternatives);
            }
            // `alternative` only stops at the end or at a `||`.
            bar = Some(self.pos);
            self.pos += 2;
        }
    }

    fn lone_bar(&self) -> ParseError {
        self.error(
            self.pos,
            self.pos + 1,
            "a lone `|` (alternatives are separated by `||`)",
        )
    }

    /// `alternative := term ((ws+ | ws* ',' ws*) term)*`, stopping at the end or at `||`.
    fn alternative(&mut self) -> Result<Alternative, ParseError> {
        let mut comparators = Vec::new();
        let mut pre = false;
        loop {
            self.term(&mut comparators, &mut pre)?;
            let spaced = self.skip_ws();
            match self.peek() {
                None => break,
                Some(b'|') if self.byte_at(self.pos + 1) == Some(b'|') => break,
                Some(b'|') => return Err(self.lone_bar()),
                Some(b',') => {
                    let comma = self.pos;
                    self.pos += 1;
                    self.skip_ws();
                    if matches!(self.peek(), None | Some(b'|' | b',')) {
                        return Err(self.error(
                            comma,
                            comma + 1,
                            "`,` is not followed by a comparator",
                        ));
                    }
                }
                Some(_) if spaced => {}
                Some(b) if is_op_char(b) => {
                    let op = self.take_while(is_op_char);
                    return Err(
                        self.span_error(op, |op| format!("expected a space or `,` before `{op}`"))
                    );
                }
                Some(_) => return Err(self.unexpected(self.pos)),
            }
        }
        Ok(Alternative { comparators, pre })
    }

    /// `term := op ws* version | version ws+ '-' ws+ version | version`
    fn term(&mut self, out: &mut Vec<Comparator>, pre: &mut bool) -> Result<(), ParseError> {
        let start = self.pos;
        let Some(first) = self.peek() else {
            return Err(self.error(start, start, "expected a comparator"));
        };
        if is_op_char(first) {
            let (op_start, op_end) = self.take_while(is_op_char);
            let op = match &self.text[op_start..op_end] {
                "=" => Op::Eq,
                "!=" => Op::Ne,
                ">" => Op::Gt,
                ">=" => Op::Ge,
                "<" => Op::Lt,
                "<=" => Op::Le,
                "^" => Op::Caret,
                "~" | "~>" => Op::Tilde,
                other => {
                    return Err(self.error(
                        op_start,
                        op_end,
                        format!(
                            "unknown operator `{other}` (expected one of `=`, `!=`, `>`, \
                             `>=`, `<`, `<=`, `^`, `~`, `~>`)"
                        ),
                    ));
                }
            };
            self.skip_ws();
            let (tok_start, tok_end) = self.take_while(is_token_char);
            if tok_start == tok_end {
                let next = self.peek();
                if self.boundary_at(self.pos)
                    || next.is_some_and(|b| b == b'|' || b == b',' || is_op_char(b))
                {
                    return Err(self.span_error((op_start, op_end), |op| {
                        format!("expected a version after `{op}`")
                    }));
                }
                return Err(self.unexpected(self.pos));
            }
            let version = self.version(tok_start, tok_end)?;
            if matches!(op, Op::Caret | Op::Tilde) && version.known == 0 {
                return Err(self.error(
                    op_start,
                    tok_end,
                    format!(
                        "`{}` needs a version, not a wildcard",
                        &self.text[op_start..op_end]
                    ),
                ));
            }
            if self.hyphen_follows() {
                return Err(self.error(
                    op_start,
                    op_end,
                    "the bounds of a hyphen range take no operator",
                ));
            }
            *pre |= !version.pre.is_empty();
            push_comparators(op, &version, out);
            return Ok(());
        }
        match first {
            b'-' if self.boundary_at(start + 1) => {
                return Err(self.error(
                    start,
                    start + 1,
                    "hyphen range has no lower bound before `-`",
                ));
            }
            b'-' => {
                return Err(self.error(
                    start,
                    start + 1,
                    "unexpected `-` (a hyphen range is written `A - B`, with spaces)",
                ));
            }
            b',' => {
                return Err(self.error(start, start + 1, "`,` has no comparator before it"));
            }
            b if !is_token_char(b) => return Err(self.unexpected(start)),
            _ => {}
        }
        let (tok_start, tok_end) = self.take_while(is_token_char);
        let lower = self.version(tok_start, tok_end)?;
        if !self.hyphen_follows() {
            *pre |= !lower.pre.is_empty();
            push_comparators(Op::Eq, &lower, out);
            return Ok(());
        }
        self.skip_ws();
        let dash = self.pos;
        self.pos += 1;
        self.skip_ws();
        let upper_start = self.pos;
        match self.peek() {
            None | Some(b'|' | b',') => {
                return Err(self.error(
                    dash,
                    dash + 1,
                    "hyphen range has no upper bound after `-`",
                ));
            }
            Some(b) if is_op_char(b) => {
                let (op_start, op_end) = self.take_while(is_op_char);
                return Err(self.error(
                    op_start,
                    op_end,
                    "the bounds of a hyphen range take no operator",
                ));
            }
            Some(b) if !is_token_char(b) || b == b'-' => {
                return Err(self.unexpected(upper_start));
            }
            Some(_) => {}
        }
        let (tok_start, tok_end) = self.take_while(is_token_char);
        let upper = self.version(tok_start, tok_end)?;
        *pre |= !lower.pre.is_empty() || !upper.pre.is_empty();
        push_comparators(Op::Ge, &lower, out);
        push_comparators(Op::Le, &upper, out);
        Ok(())
    }

    /// Whether whitespace, a lone `-` and whitespace (or the end) come next; does not move.
    fn hyphen_follows(&self) -> bool {
        let mut i = self.pos;
        while self.byte_at(i).is_some_and(|b| b.is_ascii_whitespace()) {
            i += 1;
        }
        i > self.pos && self.byte_at(i) == Some(b'-') && self.boundary_at(i + 1)
    }

    /// Parses the version in bytes `start..end` (all token characters).
    fn version(&self, start: usize, end: usize) -> Result<Partial, ParseError> {
        let tok = &self.text[start..end];
        let prefix = usize::from(matches!(tok.as_bytes().first(), Some(b'v' | b'V')));
        let core_end = tok[prefix..]
            .find(['-', '+'])
            .map_or(tok.len(), |i| prefix + i);
        if core_end == prefix {
            return Err(self.error(start, end, format!("`{tok}` is not a version")));
        }

        let mut nums = [0u64; 3];
        let mut known = 0;
        let mut wildcard = false;
        let mut part_start = start + prefix;
        for (index, part) in tok[prefix..core_end].split('.').enumerate() {
            let part_end = part_start + part.len();
            if index == 3 {
                return Err(self.error(
                    part_start,
                    start + core_end,
                    "too many parts: a version has at most three (MAJOR.MINOR.PATCH)",
                ));
            }
            if part.is_empty() {
                return Err(self.error(
                    start,
                    end,
                    format!("`{tok}` is not a version: empty part between dots"),
                ));
            }
            if is_wildcard(part) {
                wildcard = true;
            } else if part.bytes().all(|b| b.is_ascii_digit()) {
                if wildcard {
                    return Err(self.error(
                        part_start,
                        part_end,
                        format!("number `{part}` after a wildcard part"),
                    ));
                }
                nums[index] = part.parse().map_err(|_| {
                    self.error(
                        part_start,
                        part_end,
                        format!("number `{part}` is too large (the largest is {})", u64::MAX),
                    )
                })?;
                known += 1;
            } else {
                return Err(self.error(
                    part_start,
                    part_end,
                    format!("`{part}` is not a number or a wildcard (`x`, `X`, `*`)"),
                ));
            }
            part_start = part_end + 1;
        }

        let rest = &tok[core_end..];
        let rest_start = start + core_end;
        let (pre_text, build_text) = match rest.strip_prefix('-') {
            Some(after) => match after.find('+') {
                Some(plus) => (Some(&after[..plus]), Some(&after[plus + 1..])),
                None => (Some(after), None),
            },
            None => (None, rest.strip_prefix('+')),
        };
        let mut pre = Prerelease::EMPTY;
        if let Some(text) = pre_text {
            let pre_start = rest_start + 1;
            if text.is_empty() {
                return Err(self.error(rest_start, pre_start, "empty pre-release after `-`"));
            }
            let pre_end = pre_start + text.len();
            if wildcard {
                return Err(self.error(
                    pre_start,
                    pre_end,
                    "a version with a wildcard cannot have a pre-release",
                ));
            }
            pre = Prerelease::new(text).map_err(|e| {
                self.error(
                    pre_start,
                    pre_end,
                    format!("invalid pre-release `{text}`: {e}"),
                )
            })?;
            known = 3;
        }
        if let Some(text) = build_text {
            let build_start = end - text.len();
            if text.is_empty() {
                return Err(self.error(
                    build_start - 1,
                    build_start,
                    "empty build metadata after `+`",
                ));
            }
            BuildMetadata::new(text).map_err(|e| {
                self.error(
                    build_start,
                    end,
                    format!("invalid build metadata `{text}`: {e}"),
                )
            })?;
        }
        Ok(Partial { nums, known, pre })
    }
}

#[cfg(test)]
mod tests;

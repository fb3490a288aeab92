//! Shared helpers of the keel-rs benchmarks: tag lists to select from, and the memory and
//! request figures ([`measure`]).
//!
//! [`realistic_tags`] generates, from a seed, the kind of tag list a busy repository serves:
//! semver releases with and without `v`, pre-releases, variant suffixes, date and commit
//! tags, build numbers, cosign signatures and floating tags. [`official_tags`] reads the real
//! tag names of the Docker official images when the data file is present.

use std::path::PathBuf;

pub mod measure;

/// A small, fast, deterministic PRNG (splitmix64), so the generator needs no dependency.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (the modulo bias is irrelevant here).
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// One of `items`.
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }

    /// `len` lower-case hex digits.
    fn hex(&mut self, len: usize) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        (0..len)
            .map(|_| char::from(HEX[self.below(16) as usize]))
            .collect()
    }

    /// A version `major.minor.patch`, skewed towards small majors as real projects are.
    fn version(&mut self) -> (u64, u64, u64) {
        let major = [0, 1, 1, 1, 2, 2, 3, 4, 5][self.below(9) as usize];
        (major, self.below(30), self.below(40))
    }
}

const SUFFIXES: &[&str] = &[
    "slim",
    "alpine",
    "alpine3.18",
    "alpine3.20",
    "bookworm",
    "bullseye",
    "slim-bookworm",
    "jammy",
    "windowsservercore-ltsc2022",
];

const PRE_RELEASES: &[&str] = &["rc", "beta", "alpha"];

const BRANCHES: &[&str] = &["main", "main", "main", "develop", "feature-x"];

/// `n` tag names, the same for the same `seed`, in random order and with possible repeats.
///
/// The mix, by weight: plain semver `1.2.3` (22%), `v1.2.3` (10%), two-part `3.11` (8%),
/// pre-releases `1.3.0-rc.1` (10%), suffixed versions `3.12-slim`, `1.25.3-alpine3.18`
/// (16%), dates `20240101` and `2024.01.15` (6%), commit tags `sha-1a2b3c4` and
/// `main-1234-1a2b3c4d` (12%), build numbers `build-4711` (6%), cosign signatures
/// `sha256-<64 hex>.sig` (6%) and `latest`/`stable` (4%). Every name is a valid tag.
///
/// ```
/// let tags = keel_benches::realistic_tags(1000, 42);
/// assert_eq!(tags.len(), 1000);
/// assert_eq!(tags, keel_benches::realistic_tags(1000, 42));
/// ```
pub fn realistic_tags(n: usize, seed: u64) -> Vec<String> {
    let mut rng = SplitMix64(seed);
    (0..n).map(|_| one_tag(&mut rng)).collect()
}

fn one_tag(rng: &mut SplitMix64) -> String {
    let (major, minor, patch) = rng.version();
    match rng.below(100) {
        0..22 => format!("{major}.{minor}.{patch}"),
        22..32 => format!("v{major}.{minor}.{patch}"),
        32..40 => format!("{}.{minor}", major + 2),
        40..50 => {
            let channel = rng.pick(PRE_RELEASES);
            format!("{major}.{minor}.0-{channel}.{}", rng.below(5) + 1)
        }
        50..66 => {
            let suffix = rng.pick(SUFFIXES);
            if rng.below(2) == 0 {
                format!("{}.{minor}-{suffix}", major + 2)
            } else {
                format!("{major}.{minor}.{patch}-{suffix}")
            }
        }
        66..72 => {
            let (year, month, day) = (2018 + rng.below(8), rng.below(12) + 1, rng.below(28) + 1);
            if rng.below(2) == 0 {
                format!("{year}{month:02}{day:02}")
            } else {
                format!("{year}.{month:02}.{day:02}")
            }
        }
        72..84 => {
            if rng.below(2) == 0 {
                format!("sha-{}", rng.hex(7))
            } else {
                let branch = rng.pick(BRANCHES);
                format!("{branch}-{}-{}", rng.below(5000), rng.hex(8))
            }
        }
        84..90 => format!("build-{}", rng.below(10_000)),
        90..96 => format!(
            "sha256-{}.{}",
            rng.hex(64),
            rng.pick(&["sig", "att", "sbom"])
        ),
        _ => rng.pick(&["latest", "stable"]).to_owned(),
    }
}

/// The path of the official-images tag list: `shared/data/official-images-tags.txt` beside
/// the repository.
pub fn official_tags_path() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/data/official-images-tags.txt"
    ))
}

/// The ~165k real tag names of the Docker official images, one per line of
/// [`official_tags_path`]; `None` when the file is absent (it lives outside the repository).
pub fn official_tags() -> Option<Vec<String>> {
    let text = std::fs::read_to_string(official_tags_path()).ok()?;
    Some(
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_core::reference::is_valid_tag;

    #[test]
    fn deterministic_from_the_seed() {
        assert_eq!(realistic_tags(5000, 7), realistic_tags(5000, 7));
        assert_ne!(realistic_tags(100, 7), realistic_tags(100, 8));
        assert_eq!(realistic_tags(100, 7)[..], realistic_tags(5000, 7)[..100]);
    }

    #[test]
    fn every_tag_is_valid() {
        for tag in realistic_tags(50_000, 1) {
            assert!(is_valid_tag(&tag), "{tag:?}");
        }
    }

    fn digits(s: &str) -> bool {
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
    }

    fn hex(s: &str, len: usize) -> bool {
        s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    }

    /// `parts` runs of digits separated by dots.
    fn dotted(s: &str, parts: usize) -> bool {
        s.split('.').count() == parts && s.split('.').all(digits)
    }

    fn suffixed(t: &str, parts: usize) -> bool {
        t.split_once('-')
            .is_some_and(|(v, s)| dotted(v, parts) && SUFFIXES.contains(&s))
    }

    /// Whether a tag is of one kind.
    type IsKind = fn(&str) -> bool;

    #[test]
    fn the_mix_contains_each_kind() {
        let kinds: [(&str, IsKind); 13] = [
            ("semver", |t| dotted(t, 3) && !t.starts_with("20")),
            ("v-semver", |t| {
                t.strip_prefix('v').is_some_and(|r| dotted(r, 3))
            }),
            ("two-part", |t| dotted(t, 2)),
            ("pre-release", |t| {
                t.contains("-rc.") || t.contains("-beta.")
            }),
            ("two-part suffix", |t| suffixed(t, 2)),
            ("three-part suffix", |t| suffixed(t, 3)),
            ("date", |t| t.len() == 8 && digits(t)),
            ("dotted date", |t| t.len() == 10 && dotted(t, 3)),
            ("sha commit", |t| {
                t.strip_prefix("sha-").is_some_and(|h| hex(h, 7))
            }),
            ("branch commit", |t| {
                let parts: Vec<&str> = t.rsplitn(3, '-').collect();
                t.starts_with("main-") && parts.len() == 3 && hex(parts[0], 8) && digits(parts[1])
            }),
            ("build", |t| t.strip_prefix("build-").is_some_and(digits)),
            ("signature", |t| {
                t.strip_prefix("sha256-")
                    .and_then(|r| r.strip_suffix(".sig"))
                    .is_some_and(|h| hex(h, 64))
            }),
            ("floating", |t| t == "latest" || t == "stable"),
        ];
        let tags = realistic_tags(10_000, 3);
        for (kind, is_kind) in kinds {
            let count = tags.iter().filter(|t| is_kind(t)).count();
            assert!(count >= 50, "only {count} {kind} tags in 10k");
        }
    }

    #[test]
    fn official_tags_are_read_when_present() {
        if let Some(tags) = official_tags() {
            assert!(tags.len() > 100_000, "{}", tags.len());
            assert!(tags.iter().any(|t| t == "latest"));
        }
    }
}

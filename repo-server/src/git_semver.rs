//! Semver `targetRevision`s for Git: a revision such as `>=1.0.0 <2.0.0`, `1.2.*`, `^1.2`,
//! `~1.2.0` or `*` picks the highest tag (with or without a leading `v`) it matches, as Argo CD
//! does with Masterminds semver: `||` separates alternatives, spaces or commas separate the
//! comparators that must all hold, `A - B` is an inclusive range, a bare version is exact (or
//! an x-range when partial, `1.2` = `1.2.x`), never a caret range. Pre-releases take part only
//! when the comparator names one (`*-0`, `>=1.2.0-0`), per comparator, as Masterminds rules.
//!
//! Pure: [`git::resolve`](crate::git::resolve) tries exact branches, tags and SHAs first and
//! only then reads a revision as a constraint.

use std::cmp::Ordering;

use semver::{BuildMetadata, Prerelease, Version};

/// Longest constraint read (a revision is user input).
const MAX_CONSTRAINT: usize = 256;

/// A parsed constraint: any alternative may match; within one, every comparator must.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    alternatives: Vec<Vec<Comparator>>,
}

/// One comparator as a range of versions.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Comparator {
    /// Lower bound and whether it is inclusive.
    lo: Option<(Version, bool)>,
    /// Upper bound and whether it is inclusive.
    hi: Option<(Version, bool)>,
    /// `!=`: the version must lie outside the range.
    negate: bool,
    /// The comparator names a pre-release, so pre-release versions are compared at all.
    pre: bool,
}

impl Comparator {
    fn matches(&self, v: &Version) -> bool {
        if !v.pre.is_empty() && !self.pre {
            return false;
        }
        let above = match &self.lo {
            None => true,
            Some((lo, incl)) => match cmp(v, lo) {
                Ordering::Greater => true,
                Ordering::Equal => *incl,
                Ordering::Less => false,
            },
        };
        let below = match &self.hi {
            None => true,
            Some((hi, incl)) => match cmp(v, hi) {
                Ordering::Less => true,
                Ordering::Equal => *incl,
                Ordering::Greater => false,
            },
        };
        (above && below) != self.negate
    }
}

/// Precedence, build metadata ignored (semver's rule; `Version`'s `Ord` compares it).
fn cmp(a: &Version, b: &Version) -> Ordering {
    a.cmp_precedence(b)
}

impl Constraint {
    /// Read `text` as a constraint; `None` when it is not one (a branch name, say).
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        if text.is_empty() || text.len() > MAX_CONSTRAINT {
            return None;
        }
        let alternatives = text
            .split("||")
            .map(parse_alternative)
            .collect::<Option<Vec<_>>>()?;
        Some(Self { alternatives })
    }

    /// Whether `v` satisfies the constraint.
    pub fn matches(&self, v: &Version) -> bool {
        self.alternatives
            .iter()
            .any(|alt| alt.iter().all(|c| c.matches(v)))
    }

    /// The highest of `candidates` (name, value) whose name reads as a version that matches;
    /// on equal versions the first one wins (callers pass tags sorted by name).
    pub fn pick<'a, T>(&self, candidates: impl IntoIterator<Item = (&'a str, T)>) -> Option<T> {
        self.ranked(candidates).into_iter().next()
    }

    /// Every one of `candidates` (name, value) whose name reads as a version that matches,
    /// highest first; equal versions keep their order.
    pub fn ranked<'a, T>(&self, candidates: impl IntoIterator<Item = (&'a str, T)>) -> Vec<T> {
        let mut matching: Vec<(Version, T)> = candidates
            .into_iter()
            .filter_map(|(name, value)| {
                let v = parse_version(name)?;
                self.matches(&v).then_some((v, value))
            })
            .collect();
        // A stable sort: ties keep the callers' order.
        matching.sort_by(|a, b| cmp(&b.0, &a.0));
        matching.into_iter().map(|(_, value)| value).collect()
    }
}

/// A tag as a version, leniently (Masterminds' `NewVersion`): an optional `v`, one to three
/// numeric parts (missing ones are 0), an optional pre-release and build metadata.
pub fn parse_version(tag: &str) -> Option<Version> {
    let p = parse_partial(tag)?;
    if p.major.is_none() || p.wildcard {
        return None;
    }
    Some(p.fill())
}

/// A version as written in a constraint: parts may be missing or wildcards.
#[derive(Debug, Clone)]
struct Partial {
    major: Option<u64>,
    minor: Option<u64>,
    patch: Option<u64>,
    pre: Prerelease,
    /// A part was `*`, `x` or `X` (rather than left out).
    wildcard: bool,
}

impl Partial {
    /// Missing parts as 0, with the pre-release.
    fn fill(&self) -> Version {
        Version {
            major: self.major.unwrap_or(0),
            minor: self.minor.unwrap_or(0),
            patch: self.patch.unwrap_or(0),
            pre: self.pre.clone(),
            build: BuildMetadata::EMPTY,
        }
    }

    fn is_full(&self) -> bool {
        self.patch.is_some()
    }

    /// The first version past the x-range this partial names (`1.2` → `1.3.0-0`); `None` for
    /// `*` or a full version.
    fn next(&self) -> Option<Version> {
        let v = match (self.major, self.minor, self.patch) {
            (Some(m), None, _) => Version::new(m.checked_add(1)?, 0, 0),
            (Some(m), Some(n), None) => Version::new(m, n.checked_add(1)?, 0),
            _ => return None,
        };
        Some(lowest_pre(v))
    }
}

/// `v` with the lowest pre-release (`-0`), below every other version of its number.
fn lowest_pre(mut v: Version) -> Version {
    v.pre = Prerelease::new("0").unwrap_or(Prerelease::EMPTY);
    v
}

fn parse_partial(text: &str) -> Option<Partial> {
    let text = text.strip_prefix(['v', 'V']).unwrap_or(text);
    let (text, build) = match text.split_once('+') {
        Some((t, b)) => (t, Some(b)),
        None => (text, None),
    };
    if let Some(b) = build {
        BuildMetadata::new(b).ok()?;
    }
    let (nums, pre) = match text.split_once('-') {
        Some((n, p)) => (n, Prerelease::new(p).ok()?),
        None => (text, Prerelease::EMPTY),
    };
    let parts: Vec<&str> = nums.split('.').collect();
    if parts.is_empty() || parts.len() > 3 {
        return None;
    }
    let mut out = [None; 3];
    let mut wildcard = false;
    for (i, part) in parts.iter().enumerate() {
        if matches!(*part, "*" | "x" | "X") {
            wildcard = true;
            continue;
        }
        if wildcard || part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            // A number after a wildcard (`1.*.3`) or not a number at all.
            return None;
        }
        if part.len() > 1 && part.starts_with('0') {
            return None;
        }
        out[i] = Some(part.parse::<u64>().ok()?);
    }
    Some(Partial {
        major: out[0],
        minor: out[1],
        patch: out[2],
        pre,
        wildcard,
    })
}

const OPS: [&str; 12] = [
    "!=", ">=", "=>", "<=", "=<", "~>", ">", "<", "=", "~", "^", "",
];

fn parse_alternative(text: &str) -> Option<Vec<Comparator>> {
    let raw: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|t| !t.is_empty())
        .collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        if raw.get(i + 1) == Some(&"-") {
            let lo = parse_partial(raw[i])?;
            let hi = parse_partial(raw.get(i + 2)?)?;
            out.push(Comparator {
                lo: Some((lo.fill(), true)),
                hi: Some(match hi.next() {
                    Some(next) => (next, false),
                    None => (hi.fill(), true),
                }),
                negate: false,
                pre: !lo.pre.is_empty() || !hi.pre.is_empty(),
            });
            i += 3;
            continue;
        }
        let mut token = raw[i].to_string();
        // An operator apart from its version (`>= 1.2`).
        if OPS[..OPS.len() - 1].contains(&raw[i]) {
            token.push_str(raw.get(i + 1)?);
            i += 1;
        }
        i += 1;
        let op = OPS.iter().find(|op| token.starts_with(**op)).copied()?;
        let p = parse_partial(&token[op.len()..])?;
        out.push(comparator(op, &p)?);
    }
    (!out.is_empty()).then_some(out)
}

fn comparator(op: &str, p: &Partial) -> Option<Comparator> {
    let pre = !p.pre.is_empty();
    let any = p.major.is_none();
    let base = p.fill();
    // The x-range a partial (or full) version names.
    let range_hi = if p.is_full() {
        Some((base.clone(), true))
    } else {
        p.next().map(|n| (n, false))
    };
    let (lo, hi, negate) = match op {
        "" | "=" => (Some((base, true)), range_hi, false),
        "!=" => (Some((base, true)), range_hi, true),
        ">" if any => return Some(nothing()),
        ">" if p.is_full() => (Some((base, false)), None, false),
        ">" => (p.next().map(|n| (n, true)), None, false),
        ">=" | "=>" => (Some((base, true)), None, false),
        "<" => (None, Some((base, false)), false),
        "<=" | "=<" => (None, range_hi, false),
        "~" | "~>" => {
            let hi = match (p.major, p.minor) {
                (Some(m), Some(n)) => Some(lowest_pre(Version::new(m, n.checked_add(1)?, 0))),
                (Some(m), None) => Some(lowest_pre(Version::new(m.checked_add(1)?, 0, 0))),
                _ => None,
            };
            (Some((base, true)), hi.map(|h| (h, false)), false)
        }
        "^" => {
            let hi = match (p.major, p.minor, p.patch) {
                (None, ..) => None,
                (Some(m), _, _) if m > 0 => Some(Version::new(m.checked_add(1)?, 0, 0)),
                (Some(0), None, _) => Some(Version::new(1, 0, 0)),
                (Some(0), Some(n), _) if n > 0 => Some(Version::new(0, n.checked_add(1)?, 0)),
                (Some(0), Some(0), None) => Some(Version::new(0, 1, 0)),
                (Some(0), Some(0), Some(z)) => Some(Version::new(0, 0, z.checked_add(1)?)),
                _ => None,
            };
            (
                Some((base, true)),
                hi.map(|h| (lowest_pre(h), false)),
                false,
            )
        }
        _ => return None,
    };
    let lo = if any && !pre { None } else { lo };
    Some(Comparator {
        lo,
        hi,
        negate,
        pre,
    })
}

/// A comparator no version satisfies (`>*`).
fn nothing() -> Comparator {
    Comparator {
        lo: None,
        hi: None,
        negate: true,
        pre: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(constraint: &str, tags: &[&str]) -> Option<String> {
        Constraint::parse(constraint)
            .expect("parses")
            .pick(tags.iter().map(|t| (*t, t.to_string())))
    }

    const TAGS: &[&str] = &[
        "v1.0.0",
        "v1.2.0",
        "1.2.5",
        "v1.3.0-rc.1",
        "v1.10.0",
        "v2.0.0",
        "v2.1.0-beta.1",
        "not-a-version",
        "release-3",
    ];

    #[test]
    fn picks_the_highest_matching_tag() {
        for (c, want) in [
            (">=1.0.0 <2.0.0", Some("v1.10.0")),
            (">=1.0.0, <2.0.0", Some("v1.10.0")),
            (">= 1.0.0 < 2.0.0", Some("v1.10.0")),
            ("1.2.*", Some("1.2.5")),
            ("1.2.x", Some("1.2.5")),
            ("1.2", Some("1.2.5")),
            ("v1.2", Some("1.2.5")),
            ("^1.2", Some("v1.10.0")),
            ("~1.2.0", Some("1.2.5")),
            ("~> 1.2", Some("1.2.5")),
            ("*", Some("v2.0.0")),
            ("1.x", Some("v1.10.0")),
            ("1.2.0", Some("v1.2.0")),
            ("=1.2.0", Some("v1.2.0")),
            ("1.2.1", None),
            ("3.x", None),
            ("1.0.0 - 1.2", Some("1.2.5")),
            ("3.x || <1.1", Some("v1.0.0")),
            (">1.2", Some("v2.0.0")),
            ("<=1.2", Some("1.2.5")),
            ("!=2.0.0, >=1.5", Some("v1.10.0")),
            ("^0", None),
        ] {
            assert_eq!(pick(c, TAGS).as_deref(), want, "{c}");
        }
    }

    #[test]
    fn pre_releases_only_when_the_constraint_names_one() {
        assert_eq!(pick("*-0", TAGS).as_deref(), Some("v2.1.0-beta.1"));
        assert_eq!(pick(">=0.0.0-0", TAGS).as_deref(), Some("v2.1.0-beta.1"));
        assert_eq!(
            pick(">=1.3.0-0 <1.4.0-0", TAGS).as_deref(),
            Some("v1.3.0-rc.1")
        );
        assert_eq!(pick(">=1.3.0 <1.4.0", TAGS), None);
        assert_eq!(pick("~1.3.0-0", TAGS).as_deref(), Some("v1.3.0-rc.1"));
        assert_eq!(pick("1.3.0-rc.1", TAGS).as_deref(), Some("v1.3.0-rc.1"));
        // Per comparator: an upper bound without a pre-release keeps them out (Masterminds).
        assert_eq!(pick(">=2.1.0-0, <3.0.0", TAGS), None);
    }

    #[test]
    fn what_is_not_a_constraint() {
        for s in [
            "main",
            "release-1.2",
            "feature/x",
            "",
            "HEAD",
            ">=",
            "1.*.3",
            "01.2.3",
            "1.2.3.4",
            "abc123f",
            "~",
            "1 -",
        ] {
            assert!(Constraint::parse(s).is_none(), "{s:?} is no constraint");
        }
        assert!(Constraint::parse(&"1".repeat(300)).is_none());
        assert!(parse_version("v1.2.3+build.7").is_some());
        assert!(parse_version("1.x").is_none());
    }
}

//! Path globs as Argo CD applies them: Go's `path.Match` for `git.directories[].path`, and for
//! `git.files[].path` either `git ls-files -- <pattern>` (Argo CD's default, where `*` also
//! matches `/`) or doublestar (Argo CD's opt-in "new git file globbing").

use thiserror::Error;

/// A malformed pattern (Go's `path.ErrBadPattern`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("syntax error in pattern {pattern:?}: {reason}")]
pub struct GlobError {
    pub pattern: String,
    pub reason: String,
}

/// How `git.files[].path` is matched; the controller picks the mode Argo CD is configured with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FileGlobbing {
    /// Argo CD's default: git pathspec semantics (`*` and `?` also match `/`; a pattern without
    /// wildcards also matches everything below that directory).
    #[default]
    GitLsFiles,
    /// `applicationsetcontroller.enable.new.git.file.globbing`: doublestar (`*` stays within a
    /// segment, a whole-segment `**` matches any number of segments).
    Doublestar,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Lit(char),
    Any,
    Star,
    /// `**` as a whole segment at the end, or followed by nothing: anything.
    DStar,
    /// `**/`: nothing, or anything ending with `/`.
    DStarSlash,
    Class {
        neg: bool,
        ranges: Vec<(char, char)>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    GoPath,
    GitPathspec,
    Doublestar,
}

const MAX_PATTERN: usize = 1024;
const MAX_NAME: usize = 4096;

fn compile(pattern: &str, mode: Mode) -> Result<Vec<Tok>, GlobError> {
    let bad = |reason: &str| GlobError {
        pattern: pattern.to_string(),
        reason: reason.to_string(),
    };
    if pattern.len() > MAX_PATTERN {
        return Err(bad("pattern too long"));
    }
    let cs: Vec<char> = pattern.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < cs.len() {
        match cs[i] {
            '*' => {
                let mut j = i;
                while j < cs.len() && cs[j] == '*' {
                    j += 1;
                }
                let whole_segment = (i == 0 || cs[i - 1] == '/') && (j == cs.len() || cs[j] == '/');
                if mode == Mode::Doublestar && j - i == 2 && whole_segment {
                    if j < cs.len() {
                        toks.push(Tok::DStarSlash);
                        j += 1;
                    } else {
                        toks.push(Tok::DStar);
                    }
                } else {
                    toks.push(Tok::Star);
                }
                i = j;
            }
            '?' => {
                toks.push(Tok::Any);
                i += 1;
            }
            '\\' => {
                let Some(&c) = cs.get(i + 1) else {
                    return Err(bad("trailing backslash"));
                };
                toks.push(Tok::Lit(c));
                i += 2;
            }
            '[' => {
                i += 1;
                let mut neg = false;
                if matches!(cs.get(i), Some('^') | Some('!'))
                    && (mode != Mode::GoPath || cs[i] == '^')
                {
                    neg = true;
                    i += 1;
                }
                let mut ranges = Vec::new();
                loop {
                    let Some(&c) = cs.get(i) else {
                        return Err(bad("unclosed character class"));
                    };
                    if c == ']' && !ranges.is_empty() {
                        i += 1;
                        break;
                    }
                    if c == ']' && mode == Mode::GoPath {
                        return Err(bad("empty character class"));
                    }
                    let mut lo = c;
                    if c == '\\' {
                        let Some(&e) = cs.get(i + 1) else {
                            return Err(bad("trailing backslash"));
                        };
                        lo = e;
                        i += 1;
                    }
                    i += 1;
                    let mut hi = lo;
                    if cs.get(i) == Some(&'-') && cs.get(i + 1).is_some_and(|&c| c != ']') {
                        let mut h = cs[i + 1];
                        i += 2;
                        if h == '\\' {
                            let Some(&e) = cs.get(i) else {
                                return Err(bad("trailing backslash"));
                            };
                            h = e;
                            i += 1;
                        }
                        if h < lo {
                            return Err(bad("inverted character range"));
                        }
                        hi = h;
                    }
                    ranges.push((lo, hi));
                }
                toks.push(Tok::Class { neg, ranges });
            }
            c => {
                toks.push(Tok::Lit(c));
                i += 1;
            }
        }
    }
    Ok(toks)
}

fn run(toks: &[Tok], name: &[char], star_crosses_slash: bool) -> bool {
    let w = name.len() + 1;
    let mut memo: Vec<Option<bool>> = vec![None; (toks.len() + 1) * w];
    fn go(
        t: usize,
        s: usize,
        toks: &[Tok],
        name: &[char],
        cross: bool,
        memo: &mut Vec<Option<bool>>,
        w: usize,
    ) -> bool {
        if let Some(r) = memo[t * w + s] {
            return r;
        }
        let r = match toks.get(t) {
            None => s == name.len(),
            Some(Tok::Lit(c)) => {
                name.get(s) == Some(c) && go(t + 1, s + 1, toks, name, cross, memo, w)
            }
            Some(Tok::Any) => {
                name.get(s).is_some_and(|&c| cross || c != '/')
                    && go(t + 1, s + 1, toks, name, cross, memo, w)
            }
            Some(Tok::Class { neg, ranges }) => {
                name.get(s)
                    .is_some_and(|&c| ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *neg)
                    && go(t + 1, s + 1, toks, name, cross, memo, w)
            }
            Some(Tok::Star) => {
                go(t + 1, s, toks, name, cross, memo, w)
                    || name.get(s).is_some_and(|&c| cross || c != '/')
                        && go(t, s + 1, toks, name, cross, memo, w)
            }
            Some(Tok::DStar) => true,
            Some(Tok::DStarSlash) => {
                go(t + 1, s, toks, name, cross, memo, w)
                    || (s..name.len())
                        .filter(|&i| name[i] == '/')
                        .any(|i| go(t + 1, i + 1, toks, name, cross, memo, w))
            }
        };
        memo[t * w + s] = Some(r);
        r
    }
    go(0, 0, toks, name, star_crosses_slash, &mut memo, w)
}

fn too_long(name: &str) -> bool {
    name.len() > MAX_NAME
}

/// Go's `path.Match(pattern, name)`.
pub fn path_match(pattern: &str, name: &str) -> Result<bool, GlobError> {
    let toks = compile(pattern, Mode::GoPath)?;
    if too_long(name) {
        return Ok(false);
    }
    let name: Vec<char> = name.chars().collect();
    Ok(run(&toks, &name, false))
}

/// Whether a file at `path` (relative to the repository root) is selected by the
/// `git.files[].path` pattern under `mode`.
pub fn file_glob_matches(pattern: &str, path: &str, mode: FileGlobbing) -> Result<bool, GlobError> {
    if too_long(path) {
        return Ok(false);
    }
    let chars: Vec<char> = path.chars().collect();
    match mode {
        FileGlobbing::Doublestar => Ok(run(&compile(pattern, Mode::Doublestar)?, &chars, false)),
        FileGlobbing::GitLsFiles => {
            let toks = compile(pattern, Mode::GitPathspec)?;
            let literal = toks.iter().all(|t| matches!(t, Tok::Lit(_)));
            if literal {
                let p = pattern.trim_end_matches('/');
                return Ok(path == p || path.starts_with(&format!("{p}/")));
            }
            Ok(run(&toks, &chars, true))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_path_match() -> Result<(), GlobError> {
        assert!(path_match(
            "applicationset/examples/git-generator-directory/cluster-addons/*",
            "applicationset/examples/git-generator-directory/cluster-addons/argo-workflows"
        )?);
        assert!(!path_match("apps/*", "apps/a/b")?);
        assert!(path_match("apps/?b", "apps/ab")?);
        assert!(path_match("apps/[a-c]x", "apps/bx")?);
        assert!(!path_match("apps/[^a-c]x", "apps/bx")?);
        assert!(path_match("a\\*b", "a*b")?);
        assert!(path_match("*", "")?);
        assert!(path_match("apps", "apps")?);
        assert!(path_match("apps/[", "apps/x").is_err());
        assert!(path_match("a/[]", "a/x").is_err());
        Ok(())
    }

    #[test]
    fn git_ls_files_is_greedy() -> Result<(), GlobError> {
        let m = FileGlobbing::GitLsFiles;
        // Argo CD's docs: cluster-charts/*/*/values.yaml also picks up a subchart's values.yaml.
        assert!(file_glob_matches(
            "cluster-charts/*/*/values.yaml",
            "cluster-charts/cluster1/mychart/values.yaml",
            m
        )?);
        assert!(file_glob_matches(
            "cluster-charts/*/*/values.yaml",
            "cluster-charts/cluster1/mychart/charts/mysubchart/values.yaml",
            m
        )?);
        assert!(file_glob_matches(
            "some-path/*.yaml",
            "some-path/a/b/c.yaml",
            m
        )?);
        assert!(file_glob_matches(
            "cluster-config",
            "cluster-config/x/config.json",
            m
        )?);
        assert!(!file_glob_matches(
            "cluster-config",
            "cluster-configs/x.json",
            m
        )?);
        Ok(())
    }

    #[test]
    fn doublestar_is_precise() -> Result<(), GlobError> {
        let m = FileGlobbing::Doublestar;
        assert!(file_glob_matches(
            "cluster-charts/*/*/values.yaml",
            "cluster-charts/cluster1/mychart/values.yaml",
            m
        )?);
        assert!(!file_glob_matches(
            "cluster-charts/*/*/values.yaml",
            "cluster-charts/cluster1/mychart/charts/mysubchart/values.yaml",
            m
        )?);
        assert!(file_glob_matches(
            "cluster-charts/**/values.yaml",
            "cluster-charts/values.yaml",
            m
        )?);
        assert!(file_glob_matches(
            "cluster-charts/**/values.yaml",
            "cluster-charts/a/b/c/values.yaml",
            m
        )?);
        assert!(file_glob_matches("a/**", "a/b/c", m)?);
        assert!(!file_glob_matches(
            "some-path/*.yaml",
            "some-path/a/c.yaml",
            m
        )?);
        Ok(())
    }
}

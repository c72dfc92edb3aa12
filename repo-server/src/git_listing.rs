//! What Argo CD's ApplicationSet git generator reads from a commit (its repo-server's
//! `GetGitDirectories` and `GetGitFiles`), read from the bare cache's objects without a
//! checkout: every directory path, or the files matching globs with their contents. Bounded
//! (an error, never a truncated answer); a hostile tree is refused as an export refuses it.
//!
//! Argo CD's rules, kept: directories are walked like `filepath.WalkDir` over a checkout
//! (depth first, names sorted; the root left out; a directory whose name starts with `.` is
//! skipped with everything below it; a symlink is never a directory). Files are matched as
//! `git ls-files -- <pattern>` (default) or doublestar (its "new git file globbing", see
//! [`flotilla_appset::generators::glob`]). Symlinks are not followed: a symlinked file is
//! skipped (Argo CD's doublestar mode skips a link leaving the repository; here every link is
//! skipped, so no content is read through one). Submodules are not fetched: a gitlink is a
//! directory without contents (as in a checkout without submodules) and never a file. Git LFS
//! objects are not downloaded: with `enableLfs`, a matched LFS pointer is an error.

use std::time::{Duration, Instant};

use flotilla_appset::generators::glob::{FileGlobbing, file_glob_matches};
use flotilla_core::redact::redact_url;
use gix::object::tree::EntryKind;

use crate::git::{GitError, describe, unsafe_entry_name};

/// What to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    /// Every directory (Argo CD's `GetGitDirectories`).
    Directories,
    /// The files matching any of `globs`, with contents (Argo CD's `GetGitFiles`).
    Files {
        globs: Vec<String>,
        globbing: FileGlobbing,
    },
}

/// The bounds of one listing; exceeding one is an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_directories: usize,
    pub max_files: usize,
    pub max_file_bytes: u64,
    pub max_total_bytes: u64,
    /// Tree entries looked at (a "git bomb" references one subtree many times).
    pub max_entries: usize,
    /// Longest path (bytes) of any entry.
    pub max_path_bytes: usize,
    pub max_time: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            // A monorepo of 10,000 apps is 10,000+ directories; a files generator may select as
            // many files as a set may have parameter sets.
            max_directories: 100_000,
            max_files: 10_000,
            max_file_bytes: 1 << 20,
            max_total_bytes: 16 << 20,
            max_entries: crate::git::MAX_EXPORT_ENTRIES,
            max_path_bytes: 4096,
            max_time: crate::git::MAX_EXPORT_TIME,
        }
    }
}

/// What a commit holds, as asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// Directory paths, depth first with names sorted (Argo CD's walk order).
    pub directories: Vec<String>,
    /// (path, content), sorted by path (`git ls-files` order).
    pub files: Vec<(String, Vec<u8>)>,
}

/// Why a listing failed.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// The request itself is wrong (no glob, a malformed glob).
    #[error("{0}")]
    Invalid(String),
    /// A bound was exceeded, or something was met that is not served (an LFS pointer).
    #[error("listing commit {commit} of {url}: {what}")]
    Refused {
        url: String,
        commit: String,
        what: String,
    },
    #[error(transparent)]
    Git(#[from] GitError),
}

/// Paths one `UpdateRevisionForPaths` may compare, and their length.
pub const MAX_COMPARED_PATHS: usize = 64;
pub const MAX_COMPARED_PATH_BYTES: usize = 1024;

/// Whether anything under `paths` (relative to the root, `/`-separated; `""` is the whole
/// tree) differs between the commits `old` and `new`: the object each path names is compared
/// (a tree's id covers everything below it), so this reads a few trees, never file contents.
pub fn paths_changed(
    repo: &gix::Repository,
    url: &str,
    old: &str,
    new: &str,
    paths: &[String],
) -> Result<bool, ListError> {
    let tree = |commit: &str| -> Result<gix::Tree<'_>, ListError> {
        let read_err = |e: &dyn std::error::Error| GitError::Read {
            url: redact_url(url),
            commit: commit.to_string(),
            message: describe(e),
        };
        let id = gix::ObjectId::from_hex(commit.as_bytes()).map_err(|e| read_err(&e))?;
        let c = repo.find_commit(id).map_err(|e| read_err(&e))?;
        Ok(c.tree().map_err(|e| read_err(&e))?)
    };
    if paths.len() > MAX_COMPARED_PATHS || paths.iter().any(|p| p.len() > MAX_COMPARED_PATH_BYTES) {
        return Err(ListError::Invalid(format!(
            "at most {MAX_COMPARED_PATHS} paths of at most {MAX_COMPARED_PATH_BYTES} bytes are compared"
        )));
    }
    let (a, b) = (tree(old)?, tree(new)?);
    let entry =
        |t: &gix::Tree<'_>, commit: &str, p: &str| -> Result<Option<gix::ObjectId>, ListError> {
            if p.is_empty() {
                return Ok(Some(t.id));
            }
            t.lookup_entry_by_path(p)
                .map(|e| e.map(|e| e.object_id()))
                .map_err(|e| {
                    ListError::Git(GitError::Read {
                        url: redact_url(url),
                        commit: commit.to_string(),
                        message: describe(&e),
                    })
                })
        };
    for p in paths {
        if p.starts_with('/') || p.split('/').any(|c| c == ".." || c == ".") {
            return Err(ListError::Invalid(format!(
                "path {p:?} must be relative to the repository root, without . or .."
            )));
        }
        if entry(&a, old, p)? != entry(&b, new, p)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Checks the request before anything is fetched: file globs are given and well formed.
pub fn check(wanted: &Wanted) -> Result<(), ListError> {
    let Wanted::Files { globs, globbing } = wanted else {
        return Ok(());
    };
    if globs.is_empty() {
        return Err(ListError::Invalid("no file glob given".into()));
    }
    for g in globs {
        file_glob_matches(g, "x", *globbing)
            .map_err(|e| ListError::Invalid(format!("invalid file glob {g:?}: {}", e.reason)))?;
    }
    Ok(())
}

/// Whether `path` is selected by any of `globs`. In `git ls-files` mode an empty pattern and
/// `.` are the repository root, as Argo CD passes them (`path: ""` becomes `.`).
fn selected(globs: &[String], path: &str, globbing: FileGlobbing) -> Result<bool, ListError> {
    for g in globs {
        let root = globbing == FileGlobbing::GitLsFiles && matches!(g.as_str(), "" | "." | "./");
        let hit = root
            || file_glob_matches(g, path, globbing).map_err(|e| {
                ListError::Invalid(format!("invalid file glob {g:?}: {}", e.reason))
            })?;
        if hit {
            return Ok(true);
        }
    }
    Ok(false)
}

/// One step of the walk: a tree to look into (or a gitlink, listed but never entered).
enum Item {
    Tree(gix::ObjectId, String),
    Gitlink(String),
}

/// Lists `commit` of the bare repository `repo` (fetched from `url`). `lfs`: the repository
/// has `enableLfs` (then a matched LFS pointer is refused rather than served as content).
pub fn list(
    repo: &gix::Repository,
    url: &str,
    commit: &str,
    wanted: &Wanted,
    limits: &Limits,
    lfs: bool,
) -> Result<Listing, ListError> {
    check(wanted)?;
    let read_err = |e: &dyn std::error::Error| GitError::Read {
        url: redact_url(url),
        commit: commit.to_string(),
        message: describe(e),
    };
    let unsafe_err = |path: &str, why: &str| GitError::UnsafeTree {
        url: redact_url(url),
        commit: commit.to_string(),
        path: path.to_string(),
        why: why.to_string(),
    };
    let refused = |what: String| ListError::Refused {
        url: redact_url(url),
        commit: commit.to_string(),
        what,
    };
    let id = gix::ObjectId::from_hex(commit.as_bytes()).map_err(|e| read_err(&e))?;
    let root = repo
        .find_commit(id)
        .map_err(|e| read_err(&e))?
        .tree_id()
        .map_err(|e| read_err(&e))?
        .detach();
    let dirs_only = matches!(wanted, Wanted::Directories);
    let deadline = Instant::now() + limits.max_time;
    let mut out = Listing::default();
    let mut entries = 0usize;
    let mut total = 0u64;
    let mut stack = vec![Item::Tree(root, String::new())];
    while let Some(item) = stack.pop() {
        let (tree_id, dir) = match item {
            Item::Gitlink(path) => {
                out.directories.push(path);
                check_dirs(&out, limits, &refused)?;
                continue;
            }
            Item::Tree(id, path) => (id, path),
        };
        if dirs_only && !dir.is_empty() {
            out.directories.push(dir.clone());
            check_dirs(&out, limits, &refused)?;
        }
        let tree = repo.find_tree(tree_id).map_err(|e| read_err(&e))?;
        // (name, kind, id) of every entry, names checked as an export checks them.
        let mut children: Vec<(String, EntryKind, gix::ObjectId)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for entry in tree.iter() {
            let entry = entry.map_err(|e| read_err(&e))?;
            entries += 1;
            if entries > limits.max_entries || Instant::now() > deadline {
                return Err(refused(format!(
                    "the tree is too large to list (more than {} entries or {:?})",
                    limits.max_entries, limits.max_time
                )));
            }
            let raw: &[u8] = entry.filename().as_ref();
            let shown = join(&dir, &String::from_utf8_lossy(raw));
            let name = std::str::from_utf8(raw)
                .map_err(|_| unsafe_err(&shown, "entry name is not UTF-8"))?;
            if let Some(why) = unsafe_entry_name(name) {
                return Err(unsafe_err(&shown, why).into());
            }
            if !seen.insert(name.to_string()) {
                return Err(unsafe_err(&shown, "the tree holds this name twice").into());
            }
            if shown.len() > limits.max_path_bytes {
                return Err(unsafe_err(
                    &shown[..limits.max_path_bytes.min(200)],
                    &format!("path longer than {} bytes", limits.max_path_bytes),
                )
                .into());
            }
            children.push((
                name.to_string(),
                entry.mode().kind(),
                entry.oid().to_owned(),
            ));
        }
        // filepath.WalkDir reads each directory sorted by name.
        children.sort_by(|a, b| a.0.cmp(&b.0));
        let mut subtrees = Vec::new();
        for (name, kind, oid) in children {
            let path = join(&dir, &name);
            match kind {
                EntryKind::Tree => {
                    if dirs_only && name.starts_with('.') {
                        continue;
                    }
                    subtrees.push(Item::Tree(oid, path));
                }
                EntryKind::Commit => {
                    if dirs_only && !name.starts_with('.') {
                        subtrees.push(Item::Gitlink(path));
                    }
                }
                // Symlinks are never followed: not a directory, not a file's content.
                EntryKind::Link => {}
                EntryKind::Blob | EntryKind::BlobExecutable => {
                    let Wanted::Files { globs, globbing } = wanted else {
                        continue;
                    };
                    if !selected(globs, &path, *globbing)? {
                        continue;
                    }
                    if out.files.len() >= limits.max_files {
                        return Err(refused(format!(
                            "more than {} files match {globs:?}",
                            limits.max_files
                        )));
                    }
                    let size = repo.find_header(oid).map_err(|e| read_err(&e))?.size();
                    if size > limits.max_file_bytes {
                        return Err(refused(format!(
                            "file {path} is {size} bytes, more than the limit of {}",
                            limits.max_file_bytes
                        )));
                    }
                    total += size;
                    if total > limits.max_total_bytes {
                        return Err(refused(format!(
                            "the files matching {globs:?} hold more than {} bytes",
                            limits.max_total_bytes
                        )));
                    }
                    let mut blob = repo.find_blob(oid).map_err(|e| read_err(&e))?;
                    let data = std::mem::take(&mut blob.data);
                    if lfs
                        && data.len() <= crate::git_lfs::MAX_POINTER_BYTES
                        && crate::git_lfs::parse_pointer(&data).is_some()
                    {
                        return Err(refused(format!(
                            "file {path} is a Git LFS pointer; LFS objects are not read for the git generator"
                        )));
                    }
                    out.files.push((path, data));
                }
            }
        }
        // Depth first in name order: the first child is looked at next.
        stack.extend(subtrees.into_iter().rev());
    }
    out.files.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn check_dirs(
    out: &Listing,
    limits: &Limits,
    refused: &dyn Fn(String) -> ListError,
) -> Result<(), ListError> {
    if out.directories.len() > limits.max_directories {
        return Err(refused(format!(
            "more than {} directories",
            limits.max_directories
        )));
    }
    Ok(())
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::process::Command;

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
            .args(["-c", "init.defaultBranch=main"])
            .args(args)
            .current_dir(dir)
            .output()
            .expect("git runs");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A repository with `files` (and symlinks `links`: path, target) committed; (dir, commit).
    fn repo(files: &[(&str, &str)], links: &[(&str, &str)]) -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().expect("tempdir");
        git(dir.path(), &["init", "-q"]);
        for (p, body) in files {
            let p = dir.path().join(p);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, body).expect("write");
        }
        for (p, target) in links {
            let p = dir.path().join(p);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::os::unix::fs::symlink(target, p).expect("symlink");
        }
        git(dir.path(), &["add", "-A"]);
        git(dir.path(), &["commit", "-qm", "c"]);
        let commit = git(dir.path(), &["rev-parse", "HEAD"]);
        (dir, commit)
    }

    fn run(
        dir: &Path,
        commit: &str,
        wanted: Wanted,
        limits: &Limits,
    ) -> Result<Listing, ListError> {
        let r = gix::open(dir).expect("open");
        list(&r, "file:///r", commit, &wanted, limits, false)
    }

    fn files(globs: &[&str], globbing: FileGlobbing) -> Wanted {
        Wanted::Files {
            globs: globs.iter().map(|s| s.to_string()).collect(),
            globbing,
        }
    }

    #[test]
    fn paths_changed_compares_the_trees_under_each_path() -> Result<(), ListError> {
        let (dir, c1) = repo(&[("apps/a/cm.yaml", "a1"), ("apps/b/cm.yaml", "b1")], &[]);
        std::fs::write(dir.path().join("apps/a/cm.yaml"), "a2").expect("write");
        git(dir.path(), &["commit", "-qam", "a2"]);
        let c2 = git(dir.path(), &["rev-parse", "HEAD"]);
        let r = gix::open(dir.path()).expect("open");
        let changed = |paths: &[&str]| {
            let paths: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
            paths_changed(&r, "file:///r", &c1, &c2, &paths)
        };
        assert!(changed(&["apps/a"])?);
        assert!(!changed(&["apps/b"])?);
        assert!(changed(&["apps/b", "apps/a/cm.yaml"])?, "any path counts");
        assert!(!changed(&["apps/none"])?, "absent in both");
        assert!(changed(&[""])?, "the whole tree");
        assert!(changed(&["../apps/a"]).is_err(), "no escaping the root");
        assert!(changed(&["/apps/a"]).is_err());
        assert!(changed(&["apps/b"; 65]).is_err(), "bounded");
        Ok(())
    }

    #[test]
    fn directories_in_walk_order_without_hidden_ones_or_links() -> Result<(), ListError> {
        let (dir, commit) = repo(
            &[
                ("a/x.yaml", "x"),
                ("a-c/y.yaml", "y"),
                ("a/b/z.yaml", "z"),
                (".hidden/d/f", "f"),
                ("a/.cfg/f", "f"),
                ("top.yaml", "t"),
            ],
            &[("linked", "a"), ("a/b/up", "..")],
        );
        let l = run(dir.path(), &commit, Wanted::Directories, &Limits::default())?;
        assert_eq!(l.directories, ["a", "a/b", "a-c"]);
        assert!(l.files.is_empty());
        let small = Limits {
            max_directories: 2,
            ..Limits::default()
        };
        let e = run(dir.path(), &commit, Wanted::Directories, &small).expect_err("bound");
        assert!(e.to_string().contains("more than 2 directories"), "{e}");
        Ok(())
    }

    #[test]
    fn files_in_both_globbings_skip_links_and_are_bounded() -> Result<(), ListError> {
        let (dir, commit) = repo(
            &[
                ("c/one/config.json", "1"),
                ("c/one/sub/config.json", "2"),
                ("c/.x/config.json", "3"),
                ("other.json", "4"),
            ],
            &[("c/two/config.json", "../one/config.json")],
        );
        let l = run(
            dir.path(),
            &commit,
            files(&["c/*/config.json"], FileGlobbing::GitLsFiles),
            &Limits::default(),
        )?;
        let paths: Vec<&str> = l.files.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "c/.x/config.json",
                "c/one/config.json",
                "c/one/sub/config.json"
            ]
        );
        assert_eq!(l.files[1].1, b"1");
        let l = run(
            dir.path(),
            &commit,
            files(&["c/*/config.json"], FileGlobbing::Doublestar),
            &Limits::default(),
        )?;
        let paths: Vec<&str> = l.files.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["c/.x/config.json", "c/one/config.json"]);
        let l = run(
            dir.path(),
            &commit,
            files(&["", "nothing"], FileGlobbing::GitLsFiles),
            &Limits::default(),
        )?;
        assert_eq!(l.files.len(), 4, "{l:?}");
        for (limits, want) in [
            (
                Limits {
                    max_files: 2,
                    ..Limits::default()
                },
                "more than 2 files",
            ),
            (
                Limits {
                    max_file_bytes: 0,
                    ..Limits::default()
                },
                "more than the limit of 0",
            ),
            (
                Limits {
                    max_total_bytes: 2,
                    ..Limits::default()
                },
                "more than 2 bytes",
            ),
            (
                Limits {
                    max_entries: 3,
                    ..Limits::default()
                },
                "too large to list",
            ),
        ] {
            let e = run(
                dir.path(),
                &commit,
                files(&["**"], FileGlobbing::Doublestar),
                &limits,
            )
            .expect_err("bound");
            assert!(e.to_string().contains(want), "{e}");
        }
        let e = check(&files(&["a/[", "b"], FileGlobbing::GitLsFiles)).expect_err("bad glob");
        assert!(matches!(e, ListError::Invalid(_)), "{e}");
        assert!(check(&files(&[], FileGlobbing::Doublestar)).is_err());
        Ok(())
    }
}

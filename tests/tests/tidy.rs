//! Tidiness rules the style guide asks for, enforced: every Rust file opens with a `//!` line
//! saying what it owns, and every crate root says what the crate must not know.

use std::path::{Path, PathBuf};

fn workspace_root() -> PathBuf {
    flotilla_loadtest::fleet::process::workspace_dir()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name();
        let name = name.to_string_lossy();
        if p.is_dir() {
            if name != "target" && !name.starts_with('.') {
                rust_files(&p, out);
            }
        } else if name.ends_with(".rs") {
            out.push(p);
        }
    }
}

#[test]
fn every_rust_file_starts_with_a_module_doc_line() {
    let mut files = Vec::new();
    rust_files(&workspace_root(), &mut files);
    assert!(files.len() > 10, "found the sources: {}", files.len());
    let missing: Vec<_> = files
        .iter()
        .filter(|p| {
            std::fs::read_to_string(p)
                .map(|t| !t.starts_with("//!"))
                .unwrap_or(true)
        })
        .collect();
    assert!(
        missing.is_empty(),
        "files without a leading //! line: {missing:?}"
    );
}

#[test]
fn library_roots_say_what_they_must_not_know() {
    let mut files = Vec::new();
    rust_files(&workspace_root(), &mut files);
    let roots: Vec<_> = files.iter().filter(|p| p.ends_with("src/lib.rs")).collect();
    assert!(!roots.is_empty());
    for r in roots {
        let text = std::fs::read_to_string(r).unwrap_or_default();
        let head: String = text.lines().take_while(|l| l.starts_with("//!")).collect();
        assert!(
            head.to_lowercase().contains("must not"),
            "{} does not say what the crate must not know",
            r.display()
        );
        assert!(text.contains("#![forbid(unsafe_code)]"), "{}", r.display());
    }
}

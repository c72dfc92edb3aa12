//! Builds the web UI (`../ui`, Preact + Vite, pinned in its package-lock.json) into OUT_DIR
//! and writes `ui_assets.rs`, which embeds every built file in the binary. `npm ci` runs only
//! when `node_modules` is older than the lock file. `FLOTILLA_UI_DIST=<dir>` embeds an
//! already-built directory instead (no Node.js needed).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let ui = manifest.join("../ui");
    for p in [
        "src",
        "public",
        "index.html",
        "package.json",
        "package-lock.json",
        "vite.config.ts",
        "tsconfig.json",
    ] {
        println!("cargo:rerun-if-changed={}", ui.join(p).display());
    }
    println!("cargo:rerun-if-env-changed=FLOTILLA_UI_DIST");
    let dist = match std::env::var("FLOTILLA_UI_DIST") {
        Ok(d) if !d.is_empty() => PathBuf::from(d),
        _ => {
            let dist = out.join("ui-dist");
            build_ui(&ui, &dist);
            dist
        }
    };
    if !dist.join("index.html").is_file() {
        panic!(
            "{} has no index.html: the web UI was not built",
            dist.display()
        );
    }
    let mut files = Vec::new();
    walk(&dist, &dist, &mut files);
    files.sort();
    let mut code = String::from(
        "/// Every file of the built web UI: (path, content type, bytes).\npub static ASSETS: &[(&str, &str, &[u8])] = &[\n",
    );
    for (route, path) in &files {
        let _ = writeln!(
            code,
            "    ({route:?}, {:?}, include_bytes!({:?})),",
            content_type(route),
            path.display().to_string()
        );
    }
    code.push_str("];\n");
    std::fs::write(out.join("ui_assets.rs"), code).expect("writing ui_assets.rs");
}

fn npm(ui: &Path, args: &[&str]) {
    let status = Command::new("npm")
        .args(args)
        .current_dir(ui)
        .status()
        .unwrap_or_else(|e| {
            panic!(
                "running npm {args:?} in {}: {e}. The web UI is built with Node.js 20+ and npm \
                 (./scripts/test.sh and ./scripts/demo.sh install them), or set \
                 FLOTILLA_UI_DIST to an already-built ui/dist",
                ui.display()
            )
        });
    assert!(
        status.success(),
        "npm {args:?} in {} failed: {status}",
        ui.display()
    );
}

fn modified(p: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

fn build_ui(ui: &Path, dist: &Path) {
    let installed = modified(&ui.join("node_modules/.package-lock.json"));
    let locked = modified(&ui.join("package-lock.json"));
    if installed.is_none() || installed < locked {
        npm(ui, &["ci", "--no-audit", "--no-fund", "--loglevel=error"]);
    }
    let dist = dist.display().to_string();
    npm(
        ui,
        &[
            "run",
            "build",
            "--silent",
            "--",
            "--outDir",
            &dist,
            "--emptyOutDir",
        ],
    );
}

fn walk(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            walk(root, &path, files);
        } else if let Ok(rel) = path.strip_prefix(root) {
            let route = format!("/{}", rel.to_string_lossy().replace('\\', "/"));
            let abs = path.canonicalize().unwrap_or(path);
            files.push((route, abs));
        }
    }
}

fn content_type(route: &str) -> &'static str {
    match route.rsplit('.').next().unwrap_or_default() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" | "map" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}

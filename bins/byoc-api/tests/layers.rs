//! The crate's modules are layers and imports run one way (see the crate docs): the HTTP plumbing imports
//! nothing above it, the use cases only the plumbing, the routes and the settings page the use cases, the
//! plumbing and the handlers' state but not each other, and only start-up sees everything. This test reads the
//! sources and fails on any `crate::…` path (code, not comments) that runs the other way.

use std::fs;
use std::path::{Path, PathBuf};

/// The layer a source file belongs to, from its path under `src/`.
fn layer_of(relative: &Path) -> &'static str {
    let text = relative.to_string_lossy().replace('\\', "/");
    match text.as_str() {
        "startup/state.rs" => "state",
        "lib.rs" | "main.rs" => "root",
        other => match other.split('/').next() {
            Some("plumbing") => "plumbing",
            Some("usecases") => "usecases",
            Some("routes") => "routes",
            Some("settings") => "settings",
            Some("startup") => "startup",
            _ => "unknown",
        },
    }
}

/// The layer a `crate::` path names (the part after `crate::`).
fn layer_named(path: &str) -> &'static str {
    if path.starts_with("startup::state") {
        return "state";
    }
    match path.split("::").next().unwrap_or_default() {
        "plumbing" => "plumbing",
        "usecases" => "usecases",
        "routes" => "routes",
        "settings" => "settings",
        "startup" => "startup",
        _ => "root",
    }
}

/// The layers a file of `layer` may name besides its own.
fn allowed(layer: &str) -> &'static [&'static str] {
    match layer {
        "plumbing" => &["root"],
        "usecases" => &["root", "plumbing"],
        "state" => &["root", "plumbing", "usecases"],
        "routes" | "settings" => &["root", "plumbing", "usecases", "state"],
        "startup" | "root" => &[
            "root", "plumbing", "usecases", "state", "routes", "settings", "startup",
        ],
        _ => &[],
    }
}

fn source_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            source_files(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            found.push(path);
        }
    }
}

/// Every `crate::` path in the code of `source` (comment lines skipped).
fn crate_paths(source: &str) -> Vec<(usize, String)> {
    let mut paths = Vec::new();
    for (index, line) in source.lines().enumerate() {
        let code = line.split("//").next().unwrap_or_default();
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let end = after
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(after.len());
            paths.push((index + 1, after[..end].to_owned()));
            rest = &after[end..];
        }
    }
    paths
}

#[test]
fn imports_run_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    source_files(&src, &mut files);
    assert!(files.len() > 20, "found only {} source files", files.len());
    let mut violations = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).expect("under src");
        let layer = layer_of(relative);
        assert_ne!(layer, "unknown", "{} is in no layer", relative.display());
        let source = fs::read_to_string(file).expect("read source");
        for (line, path) in crate_paths(&source) {
            let named = layer_named(&path);
            if named != layer && !allowed(layer).contains(&named) {
                violations.push(format!(
                    "{}:{line}: {layer} names crate::{path} ({named})",
                    relative.display()
                ));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "imports that run back up:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_check_sees_a_violation() {
    let paths = crate_paths("use crate::routes::sms::x; // crate::settings in a comment\n");
    assert_eq!(paths, vec![(1, "routes::sms::x".to_owned())]);
    let named = layer_named(&paths[0].1);
    assert!(!allowed("plumbing").contains(&named));
}

//! Copy sources inside a stage's or an image's filesystem: paths as the image sees them
//! (absolute or relative to its `/`), symlinks resolved inside that filesystem and never
//! on the host, wildcards (`*`, `?`, `[…]`) in any part of a path, as BuildKit allows.

use crate::layer::root::RootDir;
use glob::{MatchOptions, Pattern};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum TreePathError {
    #[error("{pattern:?} matches nothing in {from}")]
    NoMatch { pattern: String, from: String },
    #[error("invalid pattern {pattern:?}: {message}")]
    BadPattern { pattern: String, message: String },
    #[error("{pattern:?} in {from}: {source}")]
    Unreadable {
        pattern: String,
        from: String,
        #[source]
        source: crate::layer::LayerError,
    },
}

/// As for context copies: Go's `filepath.Match`, `*` stops at `/`, leading dots match.
const MATCH_OPTIONS: MatchOptions = MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: false,
};

fn has_wildcard(text: &str) -> bool {
    text.contains(['*', '?', '['])
}

/// Host paths of what `patterns` name in `root` (`from` names it in errors), sorted
/// and without repeats. Each is where the entry really is, below the root.
pub fn resolve_in_tree(
    root: &RootDir,
    patterns: &[String],
    from: &str,
) -> Result<Vec<PathBuf>, TreePathError> {
    let mut found = Vec::new();
    for pattern in patterns {
        found.extend(resolve_one(root, pattern, from)?);
    }
    found.sort();
    found.dedup();
    Ok(found)
}

fn resolve_one(root: &RootDir, pattern: &str, from: &str) -> Result<Vec<PathBuf>, TreePathError> {
    let rel = pattern.trim_start_matches('/');
    let unreadable = |source| TreePathError::Unreadable {
        pattern: pattern.to_string(),
        from: from.to_string(),
        source,
    };
    let no_match = || TreePathError::NoMatch {
        pattern: pattern.to_string(),
        from: from.to_string(),
    };
    let resolve = |rel: &Path| {
        root.resolve(rel).map_err(|e| {
            if is_not_found(&e) {
                no_match()
            } else {
                unreadable(e)
            }
        })
    };
    if !has_wildcard(rel) {
        return Ok(vec![resolve(Path::new(rel))?]);
    }
    // Go's filepath.Glob, which BuildKit's copy uses: each part with a wildcard is
    // matched against the entries of every folder matched so far; a candidate that is
    // missing or not a folder drops out. Paths stay as the image sees them, so links on
    // the way resolve inside the tree.
    let top = resolve(Path::new(""))?;
    let mut candidates = vec![PathBuf::new()];
    for part in rel.split('/').filter(|p| !p.is_empty() && *p != ".") {
        if !has_wildcard(part) {
            for candidate in &mut candidates {
                candidate.push(part);
            }
            continue;
        }
        let matcher = Pattern::new(part).map_err(|e| TreePathError::BadPattern {
            pattern: pattern.to_string(),
            message: e.msg.to_string(),
        })?;
        let mut next = Vec::new();
        for candidate in &candidates {
            let folder = match resolve(candidate) {
                Ok(folder) => folder,
                Err(TreePathError::NoMatch { .. }) => continue,
                Err(e) => return Err(e),
            };
            if !folder.is_dir() {
                continue;
            }
            let folder_rel = folder.strip_prefix(&top).unwrap_or(Path::new(""));
            let mut names = root.read_dir(folder_rel).map_err(unreadable)?;
            names.sort();
            for name in names {
                let Some(text) = name.to_str() else { continue };
                if matcher.matches_with(text, MATCH_OPTIONS) {
                    next.push(candidate.join(&name));
                }
            }
        }
        candidates = next;
    }
    let mut out = Vec::new();
    // A trailing slash asks for folders, as in a shell.
    let folders_only = rel.ends_with('/');
    for candidate in &candidates {
        match resolve(candidate) {
            Ok(found) if folders_only && !found.is_dir() => {}
            Ok(found) => out.push(found),
            Err(TreePathError::NoMatch { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    if out.is_empty() {
        return Err(no_match());
    }
    Ok(out)
}

/// Nothing there: no such entry, or a part of the path on the way is not a folder.
fn is_not_found(e: &crate::layer::LayerError) -> bool {
    use std::io::ErrorKind;
    matches!(e, crate::layer::LayerError::Io { source, .. }
        if matches!(source.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree() -> (tempfile::TempDir, RootDir) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::create_dir_all(p.join("out/sub")).unwrap();
        std::fs::write(p.join("out/hello"), b"hi").unwrap();
        std::fs::write(p.join("out/a.bin"), b"a").unwrap();
        std::fs::write(p.join("out/b.bin"), b"b").unwrap();
        symlink("/out/hello", p.join("out/link")).unwrap();
        // Absolute and escaping links resolve inside the tree, never on the host.
        symlink("/etc/passwd", p.join("out/passwd")).unwrap();
        symlink("../../../../../../etc", p.join("etc-up")).unwrap();
        std::fs::create_dir_all(p.join("etc")).unwrap();
        std::fs::write(p.join("etc/passwd"), b"root:x:0:0::/root:/bin/sh\n").unwrap();
        let root = RootDir::open(p).unwrap();
        (dir, root)
    }

    fn names(root: &RootDir, patterns: &[&str]) -> Vec<String> {
        let patterns: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
        resolve_in_tree(root, &patterns, "stage build")
            .unwrap()
            .iter()
            .map(|p| {
                p.strip_prefix(root.path().canonicalize().unwrap())
                    .unwrap()
                    .display()
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn paths_globs_and_links_resolve_inside_the_tree() {
        let (_dir, root) = tree();
        assert_eq!(names(&root, &["/out/hello"]), ["out/hello"]);
        assert_eq!(names(&root, &["out/hello"]), ["out/hello"]);
        assert_eq!(names(&root, &["/out/*.bin"]), ["out/a.bin", "out/b.bin"]);
        assert_eq!(names(&root, &["/out/link"]), ["out/hello"]);
        assert_eq!(names(&root, &["/out/passwd"]), ["etc/passwd"]);
        assert_eq!(names(&root, &["/etc-up/passwd"]), ["etc/passwd"]);
        assert_eq!(names(&root, &["/out/"]), ["out"]);
        assert_eq!(names(&root, &["/out/hello", "/out/link"]), ["out/hello"]);
    }

    #[test]
    fn misses_and_bad_patterns_are_named() {
        let (_dir, root) = tree();
        let err = |pattern: &str| {
            resolve_in_tree(&root, &[pattern.to_string()], "stage build")
                .unwrap_err()
                .to_string()
        };
        assert_eq!(err("/nope"), "\"/nope\" matches nothing in stage build");
        assert_eq!(
            err("/out/*.txt"),
            "\"/out/*.txt\" matches nothing in stage build"
        );
        assert_eq!(
            err("/nope/*.txt"),
            "\"/nope/*.txt\" matches nothing in stage build"
        );
        assert_eq!(
            err("/o*/nope"),
            "\"/o*/nope\" matches nothing in stage build"
        );
        assert!(err("/out/[a").starts_with("invalid pattern \"/out/[a\""));
    }

    #[test]
    fn wildcards_in_folders_match_every_folder_they_name() {
        let (dir, root) = tree();
        std::fs::create_dir_all(dir.path().join("lib/x86_64/deep")).unwrap();
        std::fs::create_dir_all(dir.path().join("lib/arm64")).unwrap();
        std::fs::write(dir.path().join("lib/x86_64/libz.so"), b"z").unwrap();
        std::fs::write(dir.path().join("lib/arm64/libz.so"), b"z").unwrap();
        std::fs::write(dir.path().join("lib/not-a-folder"), b"f").unwrap();
        assert_eq!(
            names(&root, &["/lib/*/libz.so"]),
            ["lib/arm64/libz.so", "lib/x86_64/libz.so"]
        );
        assert_eq!(names(&root, &["/o*/hello"]), ["out/hello"]);
        assert_eq!(names(&root, &["/*/*.bin"]), ["out/a.bin", "out/b.bin"]);
        // A link to a folder is followed inside the tree; its entries keep their names.
        assert_eq!(names(&root, &["/etc-u?/passwd"]), ["etc/passwd"]);
        assert_eq!(names(&root, &["/lib/x86_64/*/"]), ["lib/x86_64/deep"]);
    }
}

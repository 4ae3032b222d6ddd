//! Turns a copy step's source patterns into files on disk. The one place in the recipe
//! module that looks at the filesystem (besides reading the recipe itself).

use std::path::{Path, PathBuf};

use glob::{MatchOptions, Pattern};

use super::error::{Location, Problem, RecipeError};
use crate::context::BuildContext;

/// Resolves `patterns` (relative to the build context; files, folders or globs) to
/// absolute canonical paths, sorted and de-duplicated. Every pattern must match
/// something the context's ignore file lets through, and every match must stay inside
/// the context once symlinks are resolved: a recipe is shared and rebuilt by others,
/// and `files/etc -> /etc` must not copy the builder's /etc into an image.
///
/// Only the matches themselves are resolved. Symlinks *inside* a matched folder are the
/// copier's business: it copies them as links, as docker does, and never follows them.
/// A match that is itself a symlink resolves to its target, whose name the returned
/// path carries; the link and its target must both be let through.
pub fn resolve_copy_sources(
    context: &BuildContext,
    patterns: &[String],
    at: &Location,
) -> Result<Vec<PathBuf>, RecipeError> {
    let fail = |problem| RecipeError::Invalid {
        at: at.clone(),
        problem,
    };
    let mut found = Vec::new();
    for pattern in patterns {
        found.extend(resolve_one(context, pattern).map_err(fail)?);
    }
    found.sort();
    found.dedup();
    Ok(found)
}

/// Go's `filepath.Match` rules, which docker's COPY follows: `*` stops at `/` and
/// matches leading dots.
const MATCH_OPTIONS: MatchOptions = MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: false,
};

fn resolve_one(context: &BuildContext, pattern: &str) -> Result<Vec<PathBuf>, Problem> {
    let dir = context.dir();
    if Path::new(pattern).is_absolute() {
        return Err(Problem::AbsoluteCopySource {
            pattern: pattern.to_string(),
        });
    }
    // The folder's own name may contain `[` or `*`: escape it so only the recipe's
    // pattern is a pattern.
    let dir_text = dir.to_str().ok_or_else(|| Problem::BadCopyPattern {
        pattern: pattern.to_string(),
        message: format!("build context {} is not UTF-8", dir.display()),
    })?;
    let full = format!("{}/{pattern}", Pattern::escape(dir_text));
    let matches = glob::glob_with(&full, MATCH_OPTIONS).map_err(|e| Problem::BadCopyPattern {
        pattern: pattern.to_string(),
        message: e.msg.to_string(),
    })?;

    let mut resolved = Vec::new();
    let mut excluded = 0;
    for entry in matches {
        let path = entry.map_err(|e| Problem::CopySourceUnreadable {
            path: e.path().to_path_buf(),
            source: e.into(),
        })?;
        let canonical = path
            .canonicalize()
            .map_err(|source| Problem::CopySourceUnreadable {
                path: path.clone(),
                source,
            })?;
        if !canonical.starts_with(dir) {
            return Err(Problem::CopySourceEscapes {
                pattern: pattern.to_string(),
                resolved: canonical,
                dir: dir.to_path_buf(),
            });
        }
        if !let_through(context, &path, &canonical)? {
            excluded += 1;
            continue;
        }
        resolved.push(canonical);
    }
    if let (true, Some(ignore_file)) = (excluded > 0 && resolved.is_empty(), context.ignore_file())
    {
        return Err(Problem::CopyAllIgnored {
            pattern: pattern.to_string(),
            excluded,
            ignore_file: ignore_file.to_path_buf(),
        });
    }
    if resolved.is_empty() {
        return Err(Problem::CopyNoMatch {
            pattern: pattern.to_string(),
            dir: dir.to_path_buf(),
        });
    }
    Ok(resolved)
}

/// Whether the ignore file lets a match through: neither its path nor (when a symlink
/// led elsewhere) its target is excluded, or it is a folder holding something an
/// exception includes again.
fn let_through(context: &BuildContext, path: &Path, canonical: &Path) -> Result<bool, Problem> {
    let unreadable = |path: &Path| {
        let path = path.to_path_buf();
        move |e: crate::context::ContextError| Problem::CopySourceUnreadable {
            path,
            source: std::io::Error::other(e),
        }
    };
    if path != canonical && context.is_ignored(path).map_err(unreadable(path))? {
        return Ok(false);
    }
    if !context
        .is_ignored(canonical)
        .map_err(unreadable(canonical))?
    {
        return Ok(true);
    }
    let entries = context.entries(canonical).map_err(unreadable(canonical))?;
    Ok(!entries.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn at() -> Location {
        Location {
            file: PathBuf::from("recipe.yaml"),
            line: 7,
            column: 5,
        }
    }

    fn resolve(dir: &Path, patterns: &[&str]) -> Result<Vec<PathBuf>, RecipeError> {
        let patterns: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
        let context = BuildContext::open(dir).unwrap();
        resolve_copy_sources(&context, &patterns, &at())
    }

    fn problem(result: Result<Vec<PathBuf>, RecipeError>) -> Problem {
        match result {
            Err(RecipeError::Invalid {
                at: where_,
                problem,
            }) => {
                assert_eq!(where_, at());
                problem
            }
            other => panic!("expected a located problem, got {other:?}"),
        }
    }

    /// A recipe folder `recipe/` with files, next to a file outside it.
    fn fixture() -> (tempfile::TempDir, PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let recipe = root.path().join("recipe");
        fs::create_dir_all(recipe.join("files/sub")).unwrap();
        fs::write(recipe.join("files/b.txt"), "b").unwrap();
        fs::write(recipe.join("files/a.txt"), "a").unwrap();
        fs::write(recipe.join("files/.hidden.txt"), "h").unwrap();
        fs::write(recipe.join("files/sub/c.txt"), "c").unwrap();
        fs::write(root.path().join("secret"), "s").unwrap();
        (root, recipe)
    }

    #[test]
    fn files_folders_and_globs_sorted_and_deduplicated() {
        let (_root, recipe) = fixture();
        let files = recipe.canonicalize().unwrap().join("files");
        let found = resolve(&recipe, &["files/b.txt", "files/*.txt", "files/sub"]).unwrap();
        assert_eq!(
            found,
            [
                files.join(".hidden.txt"),
                files.join("a.txt"),
                files.join("b.txt"),
                files.join("sub"),
            ]
        );
        // `*` does not cross `/`.
        let found = resolve(&recipe, &["files/*/c.txt"]).unwrap();
        assert_eq!(found, [files.join("sub/c.txt")]);
        let found = resolve(&recipe, &["."]).unwrap();
        assert_eq!(found, [recipe.canonicalize().unwrap()]);
    }

    #[test]
    fn parent_escape_is_refused() {
        let (_root, recipe) = fixture();
        assert!(matches!(
            problem(resolve(&recipe, &["../secret"])),
            Problem::CopySourceEscapes { pattern, .. } if pattern == "../secret"
        ));
        assert!(matches!(
            problem(resolve(&recipe, &["files/../../secret"])),
            Problem::CopySourceEscapes { .. }
        ));
    }

    #[test]
    fn absolute_source_is_refused() {
        let (root, recipe) = fixture();
        let absolute = root.path().join("secret").display().to_string();
        assert!(matches!(
            problem(resolve(&recipe, &[&absolute])),
            Problem::AbsoluteCopySource { .. }
        ));
    }

    #[test]
    fn symlink_pointing_outside_is_refused() {
        let (root, recipe) = fixture();
        std::os::unix::fs::symlink(root.path().join("secret"), recipe.join("files/link")).unwrap();
        std::os::unix::fs::symlink(root.path(), recipe.join("up")).unwrap();
        for pattern in ["files/link", "files/*", "up/secret"] {
            assert!(
                matches!(
                    problem(resolve(&recipe, &[pattern])),
                    Problem::CopySourceEscapes { .. }
                ),
                "{pattern}"
            );
        }
    }

    #[test]
    fn symlink_staying_inside_resolves_to_its_target() {
        let (_root, recipe) = fixture();
        std::os::unix::fs::symlink("a.txt", recipe.join("files/alias")).unwrap();
        let found = resolve(&recipe, &["files/alias"]).unwrap();
        assert_eq!(found, [recipe.canonicalize().unwrap().join("files/a.txt")]);
    }

    #[test]
    fn pattern_matching_nothing_is_named() {
        let (_root, recipe) = fixture();
        let err = resolve(&recipe, &["files/*.png"]).unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with("recipe.yaml:7:5: copy source \"files/*.png\" matches nothing"),
            "{message}"
        );
        assert!(matches!(
            problem(resolve(&recipe, &["missing.txt"])),
            Problem::CopyNoMatch { .. }
        ));
    }

    #[test]
    fn folder_names_with_glob_characters_are_literal() {
        let root = tempfile::tempdir().unwrap();
        let recipe = root.path().join("odd[1]*");
        fs::create_dir_all(&recipe).unwrap();
        fs::write(recipe.join("x.txt"), "x").unwrap();
        let found = resolve(&recipe, &["*.txt"]).unwrap();
        assert_eq!(found, [recipe.canonicalize().unwrap().join("x.txt")]);
    }

    #[test]
    fn bad_pattern_is_reported() {
        let (_root, recipe) = fixture();
        assert!(matches!(
            problem(resolve(&recipe, &["files/[a"])),
            Problem::BadCopyPattern { .. }
        ));
    }

    #[test]
    fn ignored_matches_are_left_out_and_all_ignored_is_named() {
        let (_root, recipe) = fixture();
        fs::write(recipe.join(".dockerignore"), "files/*.txt\n!files/a.txt\n").unwrap();
        let files = recipe.canonicalize().unwrap().join("files");
        let found = resolve(&recipe, &["files/*"]).unwrap();
        assert_eq!(found, [files.join("a.txt"), files.join("sub")]);
        let message = resolve(&recipe, &["files/b.txt"]).unwrap_err().to_string();
        let ignore_file = recipe.canonicalize().unwrap().join(".dockerignore");
        assert_eq!(
            message,
            format!(
                "recipe.yaml:7:5: copy source \"files/b.txt\" matches nothing that {} lets \
                 through (1 excluded)",
                ignore_file.display()
            )
        );
        assert!(matches!(
            problem(resolve(&recipe, &["files/.h*", "files/a.txt"])),
            Problem::CopyAllIgnored { excluded: 1, .. }
        ));
    }

    #[test]
    fn an_ignored_folder_is_a_source_when_an_exception_brings_something_back() {
        let (_root, recipe) = fixture();
        let files = recipe.canonicalize().unwrap().join("files");
        fs::write(recipe.join(".dockerignore"), "files\n!files/sub/c.txt\n").unwrap();
        assert_eq!(resolve(&recipe, &["files"]).unwrap(), [files]);
        fs::write(recipe.join(".dockerignore"), "files\n").unwrap();
        assert!(matches!(
            problem(resolve(&recipe, &["files"])),
            Problem::CopyAllIgnored { .. }
        ));
    }

    #[test]
    fn a_link_is_let_through_only_with_its_target() {
        let (_root, recipe) = fixture();
        std::os::unix::fs::symlink("files/a.txt", recipe.join("alias")).unwrap();
        fs::write(recipe.join(".dockerignore"), "files/a.txt\n").unwrap();
        assert!(matches!(
            problem(resolve(&recipe, &["alias"])),
            Problem::CopyAllIgnored { .. }
        ));
        fs::write(recipe.join(".dockerignore"), "alias\n").unwrap();
        assert!(matches!(
            problem(resolve(&recipe, &["alias"])),
            Problem::CopyAllIgnored { .. }
        ));
    }
}

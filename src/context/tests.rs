use super::*;
use std::fs;

/// A context folder with `files` (path → content; a path ending in `/` is a folder).
fn context_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, content) in files {
        let p = dir.path().join(path);
        if path.ends_with('/') {
            fs::create_dir_all(&p).unwrap();
        } else {
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, content).unwrap();
        }
    }
    dir
}

/// What `entries` lets through below `source`, as paths relative to the context.
fn listed(ctx: &BuildContext, source: &str) -> Vec<String> {
    ctx.entries(&ctx.dir().join(source))
        .unwrap()
        .iter()
        .map(|e| {
            let rel = e
                .path
                .strip_prefix(ctx.dir())
                .unwrap()
                .display()
                .to_string();
            if e.meta.is_dir() {
                format!("{rel}/")
            } else {
                rel
            }
        })
        .collect()
}

fn ignored(ctx: &BuildContext, path: &str) -> bool {
    ctx.is_ignored(&ctx.dir().join(path)).unwrap()
}

#[test]
fn without_an_ignore_file_everything_is_let_through() {
    let dir = context_with(&[("a/b.txt", "b"), (".env", "secret")]);
    let ctx = BuildContext::open(dir.path()).unwrap();
    assert_eq!(ctx.ignore_file(), None);
    assert_eq!(ctx.dir(), dir.path().canonicalize().unwrap());
    assert!(!ignored(&ctx, ".env"));
    // The top itself is the empty relative path, shown as `/`.
    assert_eq!(listed(&ctx, ""), ["/", ".env", "a/", "a/b.txt"]);
}

#[test]
fn dockerignore_excludes_with_exceptions_and_keeps_parents_of_what_it_re_includes() {
    let dir = context_with(&[
        (
            ".dockerignore",
            "# secrets\n.env\n*.log\n!keep.log\napp/cache\n!app/cache/seed\n",
        ),
        (".env", "secret"),
        ("x.log", "x"),
        ("keep.log", "k"),
        ("sub/x.log", "not at the top"),
        ("app/main.c", "m"),
        ("app/cache/big", "b"),
        ("app/cache/seed", "s"),
        ("app/cache/deeper/y", "y"),
    ]);
    let ctx = BuildContext::open(dir.path()).unwrap();
    assert_eq!(
        ctx.ignore_file(),
        Some(ctx.dir().join(".dockerignore").as_path())
    );
    assert!(ignored(&ctx, ".env"));
    assert!(ignored(&ctx, "x.log"));
    assert!(!ignored(&ctx, "keep.log"));
    assert!(!ignored(&ctx, "sub/x.log"));
    assert!(ignored(&ctx, "app/cache"));
    assert!(!ignored(&ctx, "app/cache/seed"));
    assert_eq!(
        listed(&ctx, "app"),
        ["app/", "app/cache/", "app/cache/seed", "app/main.c"],
        "the excluded folder is listed for what its exception brings back"
    );
    assert_eq!(
        listed(&ctx, ""),
        [
            "/",
            ".dockerignore",
            "app/",
            "app/cache/",
            "app/cache/seed",
            "app/main.c",
            "keep.log",
            "sub/",
            "sub/x.log",
        ]
    );
    assert_eq!(listed(&ctx, "app/cache"), ["app/cache/", "app/cache/seed"]);
    assert!(listed(&ctx, "app/cache/deeper").is_empty());
}

#[test]
fn an_excluded_folder_without_exceptions_is_not_walked() {
    let dir = context_with(&[
        (".dockerignore", "node_modules\n"),
        ("node_modules/a/b/c", ""),
    ]);
    let unreadable = dir.path().join("node_modules/a");
    fs::set_permissions(
        &unreadable,
        std::os::unix::fs::PermissionsExt::from_mode(0o000),
    )
    .unwrap();
    let ctx = BuildContext::open(dir.path()).unwrap();
    // Without root, walking into the unreadable folder would fail; root reads anything,
    // and then the listing is what is checked.
    assert_eq!(listed(&ctx, ""), ["/", ".dockerignore"]);
    fs::set_permissions(
        &unreadable,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
}

#[test]
fn xbakeignore_wins_over_dockerignore() {
    let dir = context_with(&[
        (".xbakeignore", "b.txt\n"),
        (".dockerignore", "a.txt\n"),
        ("a.txt", "a"),
        ("b.txt", "b"),
    ]);
    let ctx = BuildContext::open(dir.path()).unwrap();
    assert_eq!(
        ctx.ignore_file(),
        Some(ctx.dir().join(".xbakeignore").as_path())
    );
    assert!(!ignored(&ctx, "a.txt"));
    assert!(ignored(&ctx, "b.txt"));
}

#[test]
fn a_missing_or_non_folder_context_is_named() {
    let dir = context_with(&[("file", "x")]);
    let missing = dir.path().join("nope");
    let err = BuildContext::open(&missing).unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("build context {}: ", missing.display())),
        "{err}"
    );
    let err = BuildContext::open(&dir.path().join("file")).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "build context {} is not a folder",
            dir.path().join("file").display()
        )
    );
}

#[test]
fn the_ignore_file_must_be_a_small_regular_file_in_the_context() {
    let outside = context_with(&[("patterns", "a.txt\n")]);
    let dir = context_with(&[("a.txt", "a")]);
    std::os::unix::fs::symlink(
        outside.path().join("patterns"),
        dir.path().join(".dockerignore"),
    )
    .unwrap();
    let err = BuildContext::open(dir.path()).unwrap_err();
    assert!(
        matches!(&err, ContextError::IgnoreFileNotRegular { path, kind: "symbolic link" }
            if path.ends_with(".dockerignore")),
        "{err}"
    );

    let dir = context_with(&[(".xbakeignore/", "")]);
    let err = BuildContext::open(dir.path()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "ignore file {} is a directory; it must be a regular file in the context \
             (symbolic links are not followed)",
            dir.path()
                .canonicalize()
                .unwrap()
                .join(".xbakeignore")
                .display()
        )
    );

    let big = "x\n".repeat(IGNORE_FILE_LIMIT as usize / 2 + 1);
    let dir = context_with(&[(".dockerignore", &big)]);
    let err = BuildContext::open(dir.path()).unwrap_err();
    assert!(
        matches!(
            err,
            ContextError::IgnoreFileTooLarge {
                limit: IGNORE_FILE_LIMIT,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_bad_pattern_names_the_file_and_line() {
    let dir = context_with(&[(".dockerignore", "ok\n\n[oops\n")]);
    let err = BuildContext::open(dir.path()).unwrap_err();
    let file = dir.path().canonicalize().unwrap().join(".dockerignore");
    assert_eq!(
        err.to_string(),
        format!(
            "ignore file {}, line 3: \"[oops\": syntax error in pattern",
            file.display()
        )
    );
}

#[test]
fn paths_outside_the_context_are_refused() {
    let dir = context_with(&[("a", "")]);
    let other = context_with(&[("b", "")]);
    let ctx = BuildContext::open(dir.path()).unwrap();
    let b = other.path().canonicalize().unwrap().join("b");
    assert!(matches!(ctx.entries(&b), Err(ContextError::Outside { .. })));
}

#[test]
fn the_cache_inside_the_context_is_never_part_of_it() {
    let dir = context_with(&[
        ("src/a.c", "a"),
        ("cache/xbake/lock", ""),
        ("cache/xbake/work/tree/f", "f"),
        (".dockerignore", "*\n!cache\n!src\n"),
    ]);
    let ctx = BuildContext::open(dir.path())
        .unwrap()
        .excluding(&dir.path().join("cache/xbake"));
    // Not even an exception in the ignore file brings it back.
    assert_eq!(listed(&ctx, "."), ["/", "cache/", "src/", "src/a.c"]);
    assert!(ignored(&ctx, "cache/xbake/lock"));
    assert!(!ignored(&ctx, "src/a.c"));
    // A cache that does not exist yet, and one outside the context, are fine too.
    let later = BuildContext::open(dir.path())
        .unwrap()
        .excluding(&dir.path().join("not-yet/xbake"))
        .excluding(Path::new("/var/cache/elsewhere"));
    assert_eq!(
        later.excluded,
        [dir.path().canonicalize().unwrap().join("not-yet/xbake")]
    );
    // The unfiltered view (a bind mount's key) leaves it out as well.
    assert_eq!(listed(&ctx.unfiltered(), "cache"), ["cache/"]);
}

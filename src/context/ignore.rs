//! An ignore file's patterns and the rule for a path: moby's `ignorefile.ReadAll` for
//! the lines, patternmatcher's `MatchesUsingParentResults` for the verdict, which is
//! what BuildKit (fsutil) evaluates while it walks a build context. The last pattern
//! that matches a path or one of its parent folders decides; a `!` pattern re-includes.

use super::pattern::{Pattern, PatternError, go_clean, go_dir};

/// One pattern line of an ignore file, as `ignorefile.ReadAll` leaves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// 1-based, for error messages.
    pub number: usize,
    pub text: String,
}

/// `ignorefile.ReadAll`: a UTF-8 byte order mark dropped; lines starting with `#`
/// skipped (before trimming, so ` #x` is a pattern); whitespace trimmed; blank lines
/// skipped; each pattern cleaned with `filepath.Clean` and its leading `/` dropped, the
/// `!` of an exception kept in front.
pub fn read_lines(text: &str) -> Vec<Line> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = Vec::new();
    // `str::lines` splits as bufio.ScanLines does: at `\n`, dropping one `\r` before it.
    for (index, raw) in text.lines().enumerate() {
        if raw.starts_with('#') {
            continue;
        }
        let mut pattern = raw.trim();
        if pattern.is_empty() {
            continue;
        }
        let invert = match pattern.strip_prefix('!') {
            Some(rest) => {
                pattern = rest.trim();
                true
            }
            None => false,
        };
        let mut cleaned = String::new();
        if !pattern.is_empty() {
            cleaned = go_clean(pattern);
            if cleaned.len() > 1
                && let Some(relative) = cleaned.strip_prefix('/')
            {
                cleaned = relative.to_string();
            }
        }
        if invert {
            cleaned.insert(0, '!');
        }
        lines.push(Line {
            number: index + 1,
            text: cleaned,
        });
    }
    lines
}

/// Compiled patterns, in file order.
#[derive(Clone, Debug, Default)]
pub struct Matcher {
    patterns: Vec<Pattern>,
    exclusions: bool,
}

/// A pattern that does not compile, and on which line.
#[derive(Debug, thiserror::Error)]
#[error("line {line}: {pattern:?}: {source}")]
pub struct BadLine {
    pub line: usize,
    pub pattern: String,
    #[source]
    pub source: PatternError,
}

/// What matching a folder found, per pattern: its children start from it
/// (patternmatcher's `MatchInfo`). The default knows nothing about the parents.
#[derive(Clone, Debug, Default)]
pub struct ParentMatches(Vec<bool>);

impl Matcher {
    pub fn new(lines: &[Line]) -> Result<Matcher, BadLine> {
        let mut matcher = Matcher::default();
        for line in lines {
            let bad = |source| BadLine {
                line: line.number,
                pattern: line.text.clone(),
                source,
            };
            if let Some(p) = Pattern::parse(&line.text).map_err(bad)? {
                matcher.exclusions |= p.is_exclusion();
                matcher.patterns.push(p);
            }
        }
        Ok(matcher)
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether any pattern is a `!` exception: without one, nothing below an ignored
    /// folder can be included again, and a walk may skip it.
    pub fn has_exclusions(&self) -> bool {
        self.exclusions
    }

    /// patternmatcher's `MatchesUsingParentResults`: whether `file` (slash-separated,
    /// relative to the context's top) is ignored, given what its parent folder's call
    /// returned (or the default, and then the parent folders are matched here).
    pub fn matches_under(&self, file: &str, parent: &ParentMatches) -> (bool, ParentMatches) {
        let known = !parent.0.is_empty();
        let mut matched = false;
        let mut info = vec![false; self.patterns.len()];
        for (i, pattern) in self.patterns.iter().enumerate() {
            // A pattern the parent matched matches its children too.
            let mut hit = known && parent.0[i];
            if !hit {
                // An inclusion cannot change an already ignored path, nor an
                // exception a path not (yet) ignored.
                if pattern.is_exclusion() != matched {
                    continue;
                }
                hit = pattern.matches(file) || (!known && matches_a_parent(pattern, file));
            }
            info[i] = hit;
            if hit {
                matched = !pattern.is_exclusion();
            }
        }
        (matched, ParentMatches(info))
    }

    /// Whether `path` (slash-separated, relative to the context's top, cleaned) is
    /// ignored, found as a walk from the top would: each parent folder in turn, then
    /// the path. The top itself (`.` or empty) never is.
    pub fn is_ignored(&self, path: &str) -> bool {
        if path.is_empty() || path == "." || self.is_empty() {
            return false;
        }
        let mut info = ParentMatches::default();
        let parent = go_dir(path);
        if parent != "." {
            let dirs: Vec<&str> = parent.split('/').collect();
            for n in 1..=dirs.len() {
                info = self.matches_under(&dirs[..n].join("/"), &info).1;
            }
        }
        self.matches_under(path, &info).0
    }
}

/// Without parent results: whether the pattern matches one of the file's parent
/// folders (`a`, `a/b` for `a/b/c`), as `MatchesOrParentMatches` checks.
fn matches_a_parent(pattern: &Pattern, file: &str) -> bool {
    let parent = go_dir(file);
    if parent == "." {
        return false;
    }
    let dirs: Vec<&str> = parent.split('/').collect();
    (1..=dirs.len()).any(|n| pattern.matches(&dirs[..n].join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(patterns: &[&str]) -> Matcher {
        let lines: Vec<Line> = patterns
            .iter()
            .enumerate()
            .map(|(i, p)| Line {
                number: i + 1,
                text: p.to_string(),
            })
            .collect();
        Matcher::new(&lines).unwrap_or_else(|e| panic!("{patterns:?}: {e}"))
    }

    /// Checks a path as patternmatcher_test.go checks all three ways: walking parent
    /// by parent, with no parent results at all, and the same through `is_ignored`.
    fn ignored(patterns: &[&str], path: &str) -> bool {
        let m = matcher(patterns);
        let walked = m.is_ignored(path);
        let cold = m.matches_under(path, &ParentMatches::default()).0;
        assert_eq!(
            walked, cold,
            "{patterns:?} {path:?}: walk and lookup differ"
        );
        walked
    }

    /// patternmatcher_test.go `TestMatches`, single patterns.
    #[test]
    fn patternmatcher_match_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("**", "file", true),
            ("**", "file/", true),
            ("**/", "file", true),
            ("**/", "file/", true),
            ("**", "/", true),
            ("**/", "/", true),
            ("**", "dir/file", true),
            ("**/", "dir/file", true),
            ("**", "dir/file/", true),
            ("**/", "dir/file/", true),
            ("**/**", "dir/file", true),
            ("**/**", "dir/file/", true),
            ("dir/**", "dir/file", true),
            ("dir/**", "dir/file/", true),
            ("dir/**", "dir/dir2/file", true),
            ("dir/**", "dir/dir2/file/", true),
            ("**/dir", "dir", true),
            ("**/dir", "dir/file", true),
            ("**/dir2/*", "dir/dir2/file", true),
            ("**/dir2/*", "dir/dir2/file/", true),
            ("**/dir2/**", "dir/dir2/dir3/file", true),
            ("**/dir2/**", "dir/dir2/dir3/file/", true),
            ("**file", "file", true),
            ("**file", "dir/file", true),
            ("**/file", "dir/file", true),
            ("**file", "dir/dir/file", true),
            ("**/file", "dir/dir/file", true),
            ("**/file*", "dir/dir/file", true),
            ("**/file*", "dir/dir/file.txt", true),
            ("**/file*txt", "dir/dir/file.txt", true),
            ("**/file*.txt", "dir/dir/file.txt", true),
            ("**/file*.txt*", "dir/dir/file.txt", true),
            ("**/**/*.txt", "dir/dir/file.txt", true),
            ("**/**/*.txt2", "dir/dir/file.txt", false),
            ("**/*.txt", "file.txt", true),
            ("**/**/*.txt", "file.txt", true),
            ("a**/*.txt", "a/file.txt", true),
            ("a**/*.txt", "a/dir/file.txt", true),
            ("a**/*.txt", "a/dir/dir/file.txt", true),
            ("a/*.txt", "a/dir/file.txt", false),
            ("a/*.txt", "a/file.txt", true),
            ("a/*.txt**", "a/file.txt", true),
            ("a[b-d]e", "ae", false),
            ("a[b-d]e", "ace", true),
            ("a[b-d]e", "aae", false),
            ("a[^b-d]e", "aze", true),
            (".*", ".foo", true),
            (".*", "foo", false),
            ("abc.def", "abcdef", false),
            ("abc.def", "abc.def", true),
            ("abc.def", "abcZdef", false),
            ("abc?def", "abcZdef", true),
            ("abc?def", "abcdef", false),
            ("a\\\\", "a\\", true),
            ("**/foo/bar", "foo/bar", true),
            ("**/foo/bar", "dir/foo/bar", true),
            ("**/foo/bar", "dir/dir2/foo/bar", true),
            ("abc/**", "abc", false),
            ("abc/**", "abc/def", true),
            ("abc/**", "abc/def/ghi", true),
            ("**/.foo", ".foo", true),
            ("**/.foo", "bar.foo", false),
            ("a(b)c/def", "a(b)c/def", true),
            ("a(b)c/def", "a(b)c/xyz", false),
            ("a.|)$(}+{bc", "a.|)$(}+{bc", true),
            (
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                true,
            ),
            (
                "dist/*.whl",
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                true,
            ),
            ("a\\*b", "a*b", true),
        ];
        for &(pattern, path, want) in cases {
            assert_eq!(ignored(&[pattern], path), want, "{pattern:?} {path:?}");
        }
    }

    /// patternmatcher_test.go `TestMatches`, several patterns.
    #[test]
    fn patternmatcher_multi_pattern_table() {
        let whl = "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl";
        let cases: &[(&[&str], &str, bool)] = &[
            (&["**", "!util/docker/web"], "util/docker/web/foo", false),
            (
                &["**", "!util/docker/web", "util/docker/web/foo"],
                "util/docker/web/foo",
                true,
            ),
            (
                &[
                    "**",
                    "!dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                ],
                whl,
                false,
            ),
            (&["**", "!dist/*.whl"], whl, false),
        ];
        for &(patterns, path, want) in cases {
            assert_eq!(ignored(patterns, path), want, "{patterns:?} {path:?}");
        }
    }

    /// patternmatcher_test.go's exclusion tests (`TestExclusionPattern…`,
    /// `TestPatternMatchesFolder…`) and Go's `filepath.Match` table (`matchTests`,
    /// the well-formed ones).
    #[test]
    fn exceptions_folders_and_filepath_match_table() {
        let cases: &[(&[&str], &str, bool)] = &[
            (&["*"], "fileutils.go", true),
            (&["*.go"], "fileutils.go", true),
            (&["!fileutils.go", "*.go"], "fileutils.go", true),
            (&["docs", "!docs/README.md"], "docs/README.md", false),
            (&["docs/", "!docs/README.md"], "docs/README.md", false),
            (&["docs/*", "!docs/README.md"], "docs/README.md", false),
            (&["*.go", "!fileutils.go"], "fileutils.go", false),
            (&["*.go"], ".", false),
            (&[], "/any/path/there", false),
            (&["abc"], "abc", true),
            (&["*"], "abc", true),
            (&["*c"], "abc", true),
            (&["a*"], "a", true),
            (&["a*"], "abc", true),
            (&["a*"], "ab/c", true),
            (&["a*/b"], "abc/b", true),
            (&["a*/b"], "a/c/b", false),
            (&["a*b*c*d*e*/f"], "axbxcxdxe/f", true),
            (&["a*b*c*d*e*/f"], "axbxcxdxexxx/f", true),
            (&["a*b*c*d*e*/f"], "axbxcxdxe/xxx/f", false),
            (&["a*b*c*d*e*/f"], "axbxcxdxexxx/fff", false),
            (&["a*b?c*x"], "abxbbxdbxebxczzx", true),
            (&["a*b?c*x"], "abxbbxdbxebxczzy", false),
            (&["ab[c]"], "abc", true),
            (&["ab[b-d]"], "abc", true),
            (&["ab[e-g]"], "abc", false),
            (&["ab[^c]"], "abc", false),
            (&["ab[^b-d]"], "abc", false),
            (&["ab[^e-g]"], "abc", true),
            (&["a\\*b"], "a*b", true),
            (&["a\\*b"], "ab", false),
            (&["a?b"], "a☺b", true),
            (&["a[^a]b"], "a☺b", true),
            (&["a???b"], "a☺b", false),
            (&["a[^a][^a][^a]b"], "a☺b", false),
            (&["[a-ζ]*"], "α", true),
            (&["*[a-ζ]"], "A", false),
            (&["a?b"], "a/b", false),
            (&["a*b"], "a/b", false),
            (&["[\\]a]"], "]", true),
            (&["[\\-]"], "-", true),
            (&["[x\\-]"], "x", true),
            (&["[x\\-]"], "-", true),
            (&["[x\\-]"], "z", false),
            (&["[\\-x]"], "x", true),
            (&["[\\-x]"], "-", true),
            (&["[\\-x]"], "a", false),
            (&["*x"], "xxx", true),
        ];
        for &(patterns, path, want) in cases {
            assert_eq!(ignored(patterns, path), want, "{patterns:?} {path:?}");
        }
    }

    #[test]
    fn a_folder_pattern_covers_everything_below_unless_an_exception_follows() {
        let p = &["app", "!app/keep", "*.log", "!keep.log"];
        assert!(ignored(p, "app"));
        assert!(ignored(p, "app/a/b/c.txt"));
        assert!(!ignored(p, "app/keep"));
        assert!(!ignored(p, "app/keep/inner"));
        assert!(ignored(p, "x.log"));
        assert!(!ignored(p, "keep.log"));
        assert!(!ignored(p, "sub/x.log"), "`*` is anchored at the top");
        assert!(ignored(&["**/*.log"], "sub/deep/x.log"));
        assert!(!ignored(&["**/*.log"], "sub/deep/x.logs"));
    }

    #[test]
    fn the_walk_uses_parent_results_as_buildkit_does() {
        // A re-inclusion that only the parent folder matched: fsutil's walk (parent
        // results) and MatchesOrParentMatches disagree here; the walk wins, since it
        // is what a build sees.
        let m = matcher(&["x", "!x/y", "x"]);
        assert!(!m.is_ignored("x/y"));
        assert!(m.matches_under("x/y", &ParentMatches::default()).0);
    }

    #[test]
    fn lines_are_read_as_ignorefile_reads_them() {
        let text = "\u{feff}# comment\n\n  .env  \r\n #not-a-comment\n/abs/path/\n! /neg/./x\n!\n/\r\nlast";
        let lines: Vec<(usize, String)> = read_lines(text)
            .into_iter()
            .map(|l| (l.number, l.text))
            .collect();
        let expected = [
            (3, ".env"),
            (4, "#not-a-comment"),
            (5, "abs/path"),
            (6, "!neg/x"),
            (7, "!"),
            (8, "/"),
            (9, "last"),
        ]
        .map(|(n, t)| (n, t.to_string()));
        assert_eq!(lines, expected);
        let err = Matcher::new(&read_lines("ok\n!\n")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 2: \"!\": illegal exclusion pattern: \"!\""
        );
        let err = Matcher::new(&read_lines("a[\n")).unwrap_err();
        assert_eq!(err.to_string(), "line 1: \"a[\": syntax error in pattern");
    }
}

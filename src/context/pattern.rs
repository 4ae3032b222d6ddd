//! One ignore-file pattern, as moby/patternmatcher compiles and matches it
//! (patternmatcher.go: `New`, `Pattern.compile`, `Pattern.match`). Docker and BuildKit
//! read `.dockerignore` through that code, so a port has to copy its quirks rather than
//! gitignore's rules: `*` never crosses `/`, a pattern is anchored at the context's top,
//! `**` matches any number of folders, and `abc/**` does not match `abc` itself.
//!
//! patternmatcher turns a pattern into a Go regular expression. [`go_regex`] builds
//! that exact text (the tests compare it with patternmatcher's own expectations), and
//! [`rust_regex`] re-reads it the way Go's regexp parser does and writes the same
//! language in the `regex` crate's syntax, which differs inside brackets (`[` nests,
//! `&&`/`~~`/`--` are set operations) and in a few escapes (`\<` is a word boundary).

use regex::Regex;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PatternError {
    /// The text Go's `filepath.ErrBadPattern` has.
    #[error("syntax error in pattern")]
    Syntax,
    #[error("illegal exclusion pattern: \"!\"")]
    LoneExclamation,
    /// The translated expression was refused (patternmatcher reports these as
    /// `ErrBadPattern` when it first matches; here, when the file is read).
    #[error("syntax error in pattern: {0}")]
    Regex(String),
}

/// How a pattern is matched; patternmatcher's `matchType`.
#[derive(Clone, Debug)]
pub(super) enum Kind {
    /// No wildcard: the path must equal the pattern.
    Exact,
    /// `literal**`: the path starts with the literal.
    Prefix,
    /// `**literal`: the path ends with the literal (or is it, without the leading `/`).
    Suffix,
    Regex(Regex),
}

/// A compiled pattern: `cleaned` without its `!`, and whether it re-includes.
#[derive(Clone, Debug)]
pub struct Pattern {
    cleaned: String,
    kind: Kind,
    exclusion: bool,
}

impl Pattern {
    /// patternmatcher's `New` for one line: trimmed, cleaned (`filepath.Clean`, the `!`
    /// included, as there), checked with `filepath.Match`'s syntax rules, compiled.
    /// None for a line that is blank once trimmed.
    pub fn parse(text: &str) -> Result<Option<Pattern>, PatternError> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(None);
        }
        let cleaned = go_clean(text);
        let (exclusion, cleaned) = match cleaned.strip_prefix('!') {
            Some("") => return Err(PatternError::LoneExclamation),
            Some(rest) => (true, rest.to_string()),
            None => (false, cleaned),
        };
        if !filepath_syntax_ok(&cleaned) {
            return Err(PatternError::Syntax);
        }
        let (kind, go) = go_regex(&cleaned);
        let kind = match kind {
            GoKind::Exact => Kind::Exact,
            GoKind::Prefix => Kind::Prefix,
            GoKind::Suffix => Kind::Suffix,
            GoKind::Regex => {
                let rust = rust_regex(&go).ok_or(PatternError::Syntax)?;
                Kind::Regex(Regex::new(&rust).map_err(|e| PatternError::Regex(e.to_string()))?)
            }
        };
        Ok(Some(Pattern {
            cleaned,
            kind,
            exclusion,
        }))
    }

    pub fn is_exclusion(&self) -> bool {
        self.exclusion
    }

    /// patternmatcher's `Pattern.match`: `path` is slash-separated, relative to the
    /// context's top.
    pub fn matches(&self, path: &str) -> bool {
        match &self.kind {
            Kind::Exact => path == self.cleaned,
            Kind::Prefix => path.starts_with(&self.cleaned[..self.cleaned.len() - 2]),
            Kind::Suffix => {
                let suffix = &self.cleaned[2..];
                // `**/foo` matches `foo` too.
                path.ends_with(suffix)
                    || suffix
                        .strip_prefix('/')
                        .is_some_and(|without| path == without)
            }
            Kind::Regex(re) => re.is_match(path),
        }
    }
}

/// Go's `path.Clean` (what `filepath.Clean` is on Linux): the shortest equivalent path,
/// by lexical processing only; `.` for an empty result.
pub fn go_clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&last) if last != ".." => {
                    parts.pop();
                }
                // `..` at the root is the root; leading `..` of a relative path stay.
                _ if rooted => {}
                _ => parts.push(".."),
            },
            name => parts.push(name),
        }
    }
    let joined = parts.join("/");
    if rooted {
        format!("/{joined}")
    } else if joined.is_empty() {
        ".".into()
    } else {
        joined
    }
}

/// Go's `filepath.Dir`: everything before the last `/`, cleaned.
pub fn go_dir(path: &str) -> String {
    match path.rfind('/') {
        Some(i) => go_clean(&path[..=i]),
        None => ".".into(),
    }
}

/// Whether Go's `filepath.Match(pattern, ".")` would accept the pattern's syntax, which
/// is all that patternmatcher's `New` asks of it. Go checks every chunk even after the
/// match has failed, so this is a syntax check of the whole pattern: bracket
/// expressions must close and hold ranges whose ends are not `-` or `]` (escaped ones
/// aside), and a `\` must escape something.
fn filepath_syntax_ok(pattern: &str) -> bool {
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        let ok = match c {
            '[' => bracket_ok(&mut chars),
            '\\' => chars.next().is_some(),
            _ => true,
        };
        if !ok {
            return false;
        }
    }
    true
}

type Chars<'a> = std::iter::Peekable<std::str::Chars<'a>>;

/// The rest of a bracket expression after its `[`, as Go's `matchChunk` reads it.
fn bracket_ok(chars: &mut Chars) -> bool {
    chars.next_if_eq(&'^');
    let mut ranges = 0;
    loop {
        if ranges > 0 && chars.next_if_eq(&']').is_some() {
            return true;
        }
        if !class_char_ok(chars) {
            return false;
        }
        if chars.next_if_eq(&'-').is_some() && !class_char_ok(chars) {
            return false;
        }
        ranges += 1;
    }
}

/// Go's `getEsc`: one class character (maybe escaped), which must be followed by more.
fn class_char_ok(chars: &mut Chars) -> bool {
    let escaped = match chars.next() {
        None | Some('-') | Some(']') => return false,
        Some('\\') => chars.next(),
        other => other,
    };
    escaped.is_some() && chars.peek().is_some()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum GoKind {
    Exact,
    Prefix,
    Suffix,
    Regex,
}

/// Characters that mean something to a regular expression but not to `filepath.Match`,
/// escaped by patternmatcher (`shouldEscape`).
fn should_escape(c: char) -> bool {
    ".+()|{}$".contains(c)
}

/// patternmatcher's `Pattern.compile`, step for step: the match kind and, for
/// [`GoKind::Regex`], the Go regular expression (for the other kinds the text is not
/// used, as there). Note that `i == 0` there counts loop turns, not characters.
pub(super) fn go_regex(cleaned: &str) -> (GoKind, String) {
    let mut re = String::from("^");
    let mut kind = GoKind::Exact;
    let mut chars = cleaned.chars().peekable();
    let mut first = true;
    while let Some(c) = chars.next() {
        match c {
            '*' if chars.next_if_eq(&'*').is_some() => {
                // `**/` is `**`: eat the `/`.
                chars.next_if_eq(&'/');
                if chars.peek().is_none() {
                    // `**` at the end accepts everything, as in .gitignore.
                    if kind == GoKind::Exact {
                        kind = GoKind::Prefix;
                    } else {
                        re.push_str(".*");
                        kind = GoKind::Regex;
                    }
                } else {
                    // Any number of folders, none included.
                    re.push_str("(.*/)?");
                    kind = GoKind::Regex;
                }
                if first {
                    kind = GoKind::Suffix;
                }
            }
            '*' => {
                re.push_str("[^/]*");
                kind = GoKind::Regex;
            }
            '?' => {
                re.push_str("[^/]");
                kind = GoKind::Regex;
            }
            c if should_escape(c) => {
                re.push('\\');
                re.push(c);
            }
            '\\' => match chars.next() {
                Some(next) => {
                    re.push('\\');
                    re.push(next);
                    kind = GoKind::Regex;
                }
                None => re.push('\\'),
            },
            '[' | ']' => {
                re.push(c);
                kind = GoKind::Regex;
            }
            c => re.push(c),
        }
        first = false;
    }
    if kind == GoKind::Regex {
        re.push('$');
    }
    (kind, re)
}

/// The Go regular expression `go` (as [`go_regex`] writes them) in the `regex` crate's
/// syntax, with the meaning Go's parser gives it; None where Go's parser would fail on
/// a bracket expression that never closes.
///
/// Outside brackets the two syntaxes agree on everything `go_regex` leaves unescaped
/// except `]`, a literal in Go; escaped punctuation is always a literal in Go, so it is
/// written as the crate's escaped literal (`\<` would be a word boundary). Inside
/// brackets every member is written escaped, since `[` (unless it starts `[:name:]`),
/// `&`, `~` and `-` outside a range are plain characters to Go but not to the crate.
pub(super) fn rust_regex(go: &str) -> Option<String> {
    let chars: Vec<char> = go.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' => i = escape(&chars, i, &mut out),
            '[' => i = bracket(&chars, i, &mut out)?,
            c @ ('^' | '$' | '(' | ')' | '|' | '*' | '+' | '?' | '.') => {
                out.push(c);
                i += 1;
            }
            c => {
                out.push_str(&regex::escape(c.encode_utf8(&mut [0; 4])));
                i += 1;
            }
        }
    }
    Some(out)
}

/// A backslash sequence at `chars[i]`: punctuation is a literal in Go; letters and
/// digits (`\d`, `\pL`, `\x41`) keep their meaning, which the crate shares. Returns the
/// index after it.
fn escape(chars: &[char], i: usize, out: &mut String) -> usize {
    match chars.get(i + 1) {
        Some(&c) if c.is_ascii() && !c.is_ascii_alphanumeric() => {
            out.push_str(&regex::escape(c.encode_utf8(&mut [0; 4])));
        }
        Some(&c) => {
            out.push('\\');
            out.push(c);
        }
        // A trailing backslash: Go refuses it, and so will the crate.
        None => out.push('\\'),
    }
    i + 2
}

/// A bracket expression at `chars[i]`, parsed as Go's `parseClass` does: `^` negates, a
/// `]` first is a member, `[:name:]` is a named class, `a-z` a range unless the `-` is
/// last. Returns the index after the closing `]`.
fn bracket(chars: &[char], mut i: usize, out: &mut String) -> Option<usize> {
    out.push('[');
    i += 1;
    if chars.get(i) == Some(&'^') {
        out.push('^');
        i += 1;
    }
    let mut first = true;
    loop {
        let c = *chars.get(i)?;
        if c == ']' && !first {
            out.push(']');
            return Some(i + 1);
        }
        first = false;
        if c == '[' && chars.get(i + 1) == Some(&':') {
            // Go looks for the closing `:]` anywhere after; the crate knows the same
            // names and refuses unknown ones, as Go does.
            if let Some(len) = find(&chars[i + 2..], &[':', ']']) {
                let end = i + 2 + len + 2;
                out.extend(&chars[i..end]);
                i = end;
                continue;
            }
        }
        if c == '\\' && matches!(chars.get(i + 1), Some('d' | 'D' | 's' | 'S' | 'w' | 'W')) {
            // A Perl class inside brackets.
            i = escape(chars, i, out);
            continue;
        }
        i = class_member(chars, i, out);
        if chars.get(i) == Some(&'-') && chars.get(i + 1).is_some_and(|&n| n != ']') {
            out.push('-');
            i = class_member(chars, i + 1, out);
        }
    }
}

/// One member character of a bracket expression (maybe escaped), written escaped.
fn class_member(chars: &[char], i: usize, out: &mut String) -> usize {
    match chars.get(i) {
        Some('\\') => escape(chars, i, out),
        Some(&c) => {
            out.push_str(&regex::escape(c.encode_utf8(&mut [0; 4])));
            i + 1
        }
        None => i,
    }
}

fn find(haystack: &[char], needle: &[char]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// patternmatcher_test.go `compileTests`: the match kind, and the Go expression.
    #[test]
    fn compiles_to_patternmatchers_expressions() {
        use GoKind::*;
        let cases = [
            ("*", Regex, r"^[^/]*$"),
            ("file*", Regex, r"^file[^/]*$"),
            ("*file", Regex, r"^[^/]*file$"),
            ("a*/b", Regex, r"^a[^/]*/b$"),
            ("**", Suffix, ""),
            ("**/**", Regex, r"^(.*/)?.*$"),
            ("dir/**", Prefix, ""),
            ("**/dir", Suffix, ""),
            ("**/dir2/*", Regex, r"^(.*/)?dir2/[^/]*$"),
            ("**/dir2/**", Regex, r"^(.*/)?dir2/.*$"),
            ("**file", Suffix, ""),
            ("**/file*txt", Regex, r"^(.*/)?file[^/]*txt$"),
            ("**/**/*.txt", Regex, r"^(.*/)?(.*/)?[^/]*\.txt$"),
            ("a[b-d]e", Regex, r"^a[b-d]e$"),
            (".*", Regex, r"^\.[^/]*$"),
            ("abc.def", Exact, ""),
            ("abc?def", Regex, r"^abc[^/]def$"),
            ("**/foo/bar", Suffix, ""),
            ("a(b)c/def", Exact, ""),
            ("a.|)$(}+{bc", Exact, ""),
            (
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                Exact,
                "",
            ),
        ];
        for (pattern, kind, expected) in cases {
            let (got_kind, got) = go_regex(&go_clean(pattern));
            assert_eq!(got_kind, kind, "{pattern}");
            if kind == Regex {
                assert_eq!(got, expected, "{pattern}");
            }
        }
    }

    #[test]
    fn go_expressions_keep_their_meaning_in_the_crates_syntax() {
        let cases = [
            // Go's `[` inside brackets is a member; `]` outside is a literal.
            (r"^[[^/]*]$", r"^[\[\^/]*\]$"),
            (r"^a[b-d]e$", r"^a[b-d]e$"),
            (r"^[\]a]$", r"^[\]a]$"),
            (r"^[x\-]$", r"^[x\-]$"),
            (r"^[a&&b~~c]$", r"^[a\&\&b\~\~c]$"),
            (r"^[a-]$", r"^[a\-]$"),
            (r"^[[:alpha:]]$", r"^[[:alpha:]]$"),
            (r"^a\<b$", r"^a<b$"),
            (r"^a\*b$", r"^a\*b$"),
            (r"^a\\$", r"^a\\$"),
            (r"^\d$", r"^\d$"),
            (r"^é#&~-$", r"^é\#\&\~\-$"),
        ];
        for (go, rust) in cases {
            assert_eq!(rust_regex(go).as_deref(), Some(rust), "{go}");
        }
        assert_eq!(rust_regex("^[ab$"), None);
    }

    #[test]
    fn paths_are_cleaned_and_split_as_go_does() {
        for (path, clean) in [
            ("", "."),
            ("a//b/./c/", "a/b/c"),
            ("a/../..", ".."),
            ("../a/..", ".."),
            ("/../a", "/a"),
            ("/", "/"),
            ("!docs/", "!docs"),
            ("./x", "x"),
        ] {
            assert_eq!(go_clean(path), clean, "{path:?}");
        }
        for (path, dir) in [
            ("a", "."),
            ("a/b", "a"),
            ("file/", "file"),
            ("/", "/"),
            ("a/b/c", "a/b"),
        ] {
            assert_eq!(go_dir(path), dir, "{path:?}");
        }
    }

    #[test]
    fn filepath_match_syntax_errors_are_refused() {
        for bad in [
            "[]a]", "[-]", "[x-]", "[-x]", "\\", "[a-b-c]", "[", "[^", "[^bc", "a[",
        ] {
            assert_eq!(
                Pattern::parse(bad).err(),
                Some(PatternError::Syntax),
                "{bad}"
            );
        }
        assert_eq!(
            Pattern::parse(" ! ").err(),
            Some(PatternError::LoneExclamation)
        );
        assert!(Pattern::parse("  ").unwrap().is_none());
        // Valid for filepath.Match, refused by the regular expression: patternmatcher's
        // `[Local-Only]/` regression (it fails at the first match there, here at once).
        assert!(matches!(
            Pattern::parse("[Local-Only]/"),
            Err(PatternError::Regex(_))
        ));
    }
}

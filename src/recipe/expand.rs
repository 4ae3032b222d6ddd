//! `${NAME}` expansion in recipe values, with the operators of BuildKit's Dockerfile
//! lexer (moby/buildkit frontend/dockerfile/shell/lex.go).
//!
//! Outside braces the syntax stays smaller than a shell's: `$$` is a literal `$`, and any
//! other `$` stays as written, so `PATH: /x:$PATH` reaches the image config unchanged
//! and the program reading it (a shell, usually) expands it there. RUN text is never
//! expanded here: the shell does that with the variables in its environment.
//!
//! Inside braces, as in BuildKit:
//!
//! | form | gives |
//! |---|---|
//! | `${NAME}` | the value; an unknown NAME is an error |
//! | `${NAME:-word}` / `${NAME-word}` | word if NAME is unset or empty / unset |
//! | `${NAME:+word}` / `${NAME+word}` | word if NAME is set and not empty / set, else nothing |
//! | `${NAME:?message}` / `${NAME?message}` | the value; an error carrying message if NAME is unset or empty / unset |
//! | `${NAME#pattern}` / `${NAME##pattern}` | the value without the shortest / longest prefix matching pattern |
//! | `${NAME%pattern}` / `${NAME%%pattern}` | the value without the shortest / longest suffix matching pattern |
//!
//! `word` may hold `${…}` itself (evaluated only when used), and `\` escapes the next
//! character there (`\}` is a literal brace). Patterns are BuildKit's: `*` any run of
//! characters, `?` one character, `\*` a literal star; BuildKit has no `[…]` classes, so
//! brackets match themselves. With the `-`, `+` and `?` forms an unknown NAME counts as
//! unset; with `#` and `%` it stays the error `${NAME}` gives. Quotes are ordinary
//! characters (YAML has already done the quoting).

use std::collections::BTreeMap;

use super::error::Problem;
use super::fields::is_var_name;

/// The variables visible at one point of the recipe. A name set again replaces the
/// earlier value (an env step overriding a build arg, say).
#[derive(Clone, Debug, Default)]
pub(super) struct Scope {
    vars: BTreeMap<String, String>,
}

impl Scope {
    pub fn set(&mut self, name: &str, value: &str) {
        self.vars.insert(name.to_string(), value.to_string());
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// Expands `text`, naming the known variables if it refers to an unknown one.
    pub fn expand(&self, text: &str) -> Result<String, Problem> {
        let pieces = parse(text).map_err(|error| error.into_problem(text))?;
        let mut out = String::with_capacity(text.len());
        evaluate(&pieces, &|name| self.get(name), &mut out).map_err(|error| match error {
            ExpandError::Unknown(name) => Problem::UnknownVariable {
                name,
                known: self.known_names(),
            },
            other => other.into_problem(text),
        })?;
        Ok(out)
    }

    fn known_names(&self) -> String {
        if self.vars.is_empty() {
            return "none".to_string();
        }
        self.vars.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}

/// Checks only the `${…}` syntax of `text`, so a recipe with an unterminated `${` fails
/// when it is loaded rather than when a platform is planned.
pub(super) fn check_syntax(text: &str) -> Result<(), Problem> {
    parse(text)
        .map(drop)
        .map_err(|error| error.into_problem(text))
}

/// The first `${…}` reference in `text`, as written (`${TARGETARCH}`), for warnings
/// about values that are never expanded; None when there is none (`$${X}` is none).
pub(super) fn first_reference(text: &str) -> Option<String> {
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            rest = tail;
        } else if after.starts_with('{') {
            let end = after.find('}').map_or(after.len(), |end| end + 1);
            return Some(format!("${}", &after[..end]));
        } else {
            rest = after;
        }
    }
    None
}

#[derive(Debug, PartialEq, Eq)]
enum ExpandError {
    Unterminated,
    /// A `${…}` that is not one of the forms above; carries what is between the braces.
    BadReference(String),
    Unknown(String),
    /// `${NAME?message}` with NAME unset (or `:?` and empty).
    Required {
        name: String,
        message: String,
    },
}

impl ExpandError {
    fn into_problem(self, text: &str) -> Problem {
        let text = text.to_string();
        match self {
            ExpandError::Unterminated => Problem::UnterminatedVariable { text },
            ExpandError::BadReference(name) => Problem::BadVariable { name, text },
            ExpandError::Unknown(name) => Problem::UnknownVariable {
                name,
                known: String::new(),
            },
            ExpandError::Required { name, message } => Problem::RequiredVariable { name, message },
        }
    }
}

/// A value as parsed: literal text and references, in order.
type Word = Vec<Piece>;

#[derive(Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Var {
        name: String,
        op: Option<(Op, Word)>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    /// `-`, or `:-` when `empty_is_unset`.
    Default { empty_is_unset: bool },
    /// `+`, `:+`.
    Alternative { empty_is_unset: bool },
    /// `?`, `:?`.
    Required { empty_is_unset: bool },
    /// `#`, `##` when `longest`.
    TrimPrefix { longest: bool },
    /// `%`, `%%`.
    TrimSuffix { longest: bool },
}

impl Op {
    /// Pattern words keep their backslashes, so the pattern can tell `\*` from `*`
    /// (BuildKit's "raw escapes" for `#` and `%`).
    fn is_pattern(self) -> bool {
        matches!(self, Op::TrimPrefix { .. } | Op::TrimSuffix { .. })
    }
}

/// A cursor over the characters of one value.
struct Parser<'t> {
    text: &'t str,
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            return true;
        }
        false
    }

    /// Text and references up to the end (`inside` None) or up to the `}` that closes
    /// the reference the word belongs to (consumed).
    fn word(&mut self, inside: Option<Op>) -> Result<Word, ExpandError> {
        let mut pieces = Vec::new();
        let mut text = String::new();
        loop {
            let Some(c) = self.next() else {
                if inside.is_some() {
                    return Err(ExpandError::Unterminated);
                }
                break;
            };
            match c {
                '$' if self.eat('$') => text.push('$'),
                '$' if self.eat('{') => {
                    if !text.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut text)));
                    }
                    pieces.push(self.reference()?);
                }
                '}' if inside.is_some() => break,
                '\\' if inside.is_some() => {
                    let escaped = self.next().ok_or(ExpandError::Unterminated)?;
                    if inside.is_some_and(Op::is_pattern) {
                        text.push('\\');
                    }
                    text.push(escaped);
                }
                c => text.push(c),
            }
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(pieces)
    }

    /// What follows a `${`, up to and including its `}`.
    fn reference(&mut self) -> Result<Piece, ExpandError> {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            self.pos += 1;
        }
        let name = &self.text[start..self.pos];
        let op = match self.next().ok_or(ExpandError::Unterminated)? {
            '}' => None,
            ':' => match self.next() {
                Some('-') => Some(Op::Default {
                    empty_is_unset: true,
                }),
                Some('+') => Some(Op::Alternative {
                    empty_is_unset: true,
                }),
                Some('?') => Some(Op::Required {
                    empty_is_unset: true,
                }),
                _ => return Err(self.bad_reference(start)),
            },
            '-' => Some(Op::Default {
                empty_is_unset: false,
            }),
            '+' => Some(Op::Alternative {
                empty_is_unset: false,
            }),
            '?' => Some(Op::Required {
                empty_is_unset: false,
            }),
            '#' => Some(Op::TrimPrefix {
                longest: self.eat('#'),
            }),
            '%' => Some(Op::TrimSuffix {
                longest: self.eat('%'),
            }),
            _ => return Err(self.bad_reference(start)),
        };
        if !is_var_name(name) {
            return Err(self.bad_reference(start));
        }
        let name = name.to_string();
        let op = match op {
            None => None,
            Some(op) => Some((op, self.word(Some(op))?)),
        };
        Ok(Piece::Var { name, op })
    }

    /// The reference that starts at `start` is malformed: name it as written, up to its
    /// `}` (or say it never ends).
    fn bad_reference(&self, start: usize) -> ExpandError {
        let rest = &self.text[start..];
        match rest.find('}') {
            Some(end) => ExpandError::BadReference(rest[..end].to_string()),
            None => ExpandError::Unterminated,
        }
    }
}

fn parse(text: &str) -> Result<Word, ExpandError> {
    Parser { text, pos: 0 }.word(None)
}

fn evaluate<'v>(
    word: &[Piece],
    lookup: &dyn Fn(&str) -> Option<&'v str>,
    out: &mut String,
) -> Result<(), ExpandError> {
    for piece in word {
        match piece {
            Piece::Text(text) => out.push_str(text),
            Piece::Var { name, op: None } => {
                out.push_str(lookup(name).ok_or_else(|| ExpandError::Unknown(name.clone()))?);
            }
            Piece::Var {
                name,
                op: Some((op, word)),
            } => apply(name, *op, word, lookup, out)?,
        }
    }
    Ok(())
}

fn apply<'v>(
    name: &str,
    op: Op,
    word: &[Piece],
    lookup: &dyn Fn(&str) -> Option<&'v str>,
    out: &mut String,
) -> Result<(), ExpandError> {
    let value = lookup(name);
    // `set` as the operator means it: with `:`, an empty value counts as unset.
    let set = |empty_is_unset: bool| value.filter(|v| !(empty_is_unset && v.is_empty()));
    match op {
        Op::Default { empty_is_unset } => match set(empty_is_unset) {
            Some(value) => out.push_str(value),
            None => evaluate(word, lookup, out)?,
        },
        Op::Alternative { empty_is_unset } => {
            if set(empty_is_unset).is_some() {
                evaluate(word, lookup, out)?;
            }
        }
        Op::Required { empty_is_unset } => match set(empty_is_unset) {
            Some(value) => out.push_str(value),
            None => {
                let mut message = String::new();
                evaluate(word, lookup, &mut message)?;
                if message.is_empty() {
                    message = match value {
                        None => "is not allowed to be unset",
                        Some(_) => "is not allowed to be empty",
                    }
                    .to_string();
                }
                return Err(ExpandError::Required {
                    name: name.to_string(),
                    message,
                });
            }
        },
        Op::TrimPrefix { longest } | Op::TrimSuffix { longest } => {
            let value = value.ok_or_else(|| ExpandError::Unknown(name.to_string()))?;
            let mut pattern = String::new();
            evaluate(word, lookup, &mut pattern)?;
            let pattern = Glob::new(&pattern);
            out.push_str(match op {
                Op::TrimPrefix { .. } => pattern.trim_prefix(value, longest),
                _ => pattern.trim_suffix(value, longest),
            });
        }
    }
    Ok(())
}

/// A `#`/`%` pattern. As in BuildKit, the pattern is what the word expanded to, so a
/// `*` inside a variable's value is a wildcard too.
#[derive(Debug)]
pub(super) struct Glob(Vec<GlobToken>);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GlobToken {
    Char(char),
    /// `?`
    One,
    /// `*`
    Any,
}

impl Glob {
    pub(super) fn new(pattern: &str) -> Glob {
        let mut tokens = Vec::new();
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            tokens.push(match c {
                '*' => GlobToken::Any,
                '?' => GlobToken::One,
                // A trailing backslash stands for itself.
                '\\' => GlobToken::Char(chars.next().unwrap_or('\\')),
                c => GlobToken::Char(c),
            });
        }
        Glob(tokens)
    }

    fn reversed(&self) -> Glob {
        Glob(self.0.iter().rev().copied().collect())
    }

    /// The lengths (in characters) of the prefixes of `chars` the pattern matches
    /// whole, shortest first. One pass of a set-of-positions automaton: linear in the
    /// value for each pattern token.
    fn matching_prefixes(&self, chars: impl Iterator<Item = char>) -> Vec<usize> {
        let tokens = &self.0;
        // BuildKit turns the pattern into a Go regexp, where `.` never matches a
        // newline; keep that, so both give the same result.
        let wild = |c: char| c != '\n';
        let close = |states: &mut Vec<bool>| {
            for i in 0..tokens.len() {
                if states[i] && tokens[i] == GlobToken::Any {
                    states[i + 1] = true;
                }
            }
        };
        let mut states = vec![false; tokens.len() + 1];
        states[0] = true;
        close(&mut states);
        let mut found = Vec::new();
        let mut consumed = 0;
        if states[tokens.len()] {
            found.push(0);
        }
        for c in chars {
            let mut next = vec![false; tokens.len() + 1];
            for (i, token) in tokens.iter().enumerate() {
                if !states[i] {
                    continue;
                }
                match token {
                    GlobToken::Char(want) if *want == c => next[i + 1] = true,
                    GlobToken::One if wild(c) => next[i + 1] = true,
                    GlobToken::Any if wild(c) => next[i] = true,
                    _ => {}
                }
            }
            close(&mut next);
            states = next;
            consumed += 1;
            if !states.contains(&true) {
                break;
            }
            if states[tokens.len()] {
                found.push(consumed);
            }
        }
        found
    }

    fn pick(found: &[usize], longest: bool) -> Option<usize> {
        if longest {
            found.last().copied()
        } else {
            found.first().copied()
        }
    }

    pub(super) fn trim_prefix<'v>(&self, value: &'v str, longest: bool) -> &'v str {
        match Self::pick(&self.matching_prefixes(value.chars()), longest) {
            Some(n) => {
                let cut = value.char_indices().nth(n).map_or(value.len(), |(i, _)| i);
                &value[cut..]
            }
            None => value,
        }
    }

    /// A suffix of the value is a prefix of the reversed value, matched by the
    /// reversed pattern (BuildKit's trimSuffix does the same).
    pub(super) fn trim_suffix<'v>(&self, value: &'v str, longest: bool) -> &'v str {
        let found = self.reversed().matching_prefixes(value.chars().rev());
        match Self::pick(&found, longest) {
            Some(0) | None => value,
            Some(n) => {
                // The byte where the n-th character from the end starts.
                let cut = value.char_indices().rev().nth(n - 1).map_or(0, |(i, _)| i);
                &value[..cut]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(vars: &[(&str, &str)]) -> Scope {
        let mut scope = Scope::default();
        for (name, value) in vars {
            scope.set(name, value);
        }
        scope
    }

    #[test]
    fn replaces_braced_names_and_keeps_other_dollars() {
        let s = scope(&[("TARGETARCH", "arm"), ("TARGETVARIANT", "v7"), ("E", "")]);
        let cases = [
            (
                "busybox-${TARGETARCH}${TARGETVARIANT}.tar",
                "busybox-armv7.tar",
            ),
            ("${E}x${E}", "x"),
            ("cost: $$5", "cost: $5"),
            ("$${TARGETARCH}", "${TARGETARCH}"),
            ("/usr/bin:$PATH", "/usr/bin:$PATH"),
            ("trailing $", "trailing $"),
            ("$ {TARGETARCH}", "$ {TARGETARCH}"),
            ("$$$", "$$"),
            ("no dollars", "no dollars"),
            ("ünï${TARGETARCH}cödé", "ünïarmcödé"),
            // Outside braces a backslash is an ordinary character, as it always was.
            (r"C:\${TARGETARCH}\x", r"C:\arm\x"),
            ("'${TARGETARCH}' \"q\"", "'arm' \"q\""),
        ];
        for (text, want) in cases {
            assert_eq!(s.expand(text).unwrap(), want, "expanding {text:?}");
        }
    }

    /// Every case here gives the same as BuildKit's lexer
    /// (`shell.NewLex('\\').ProcessWord`, frontend/dockerfile/shell/lex.go) with the same
    /// variables; checked by running this table through it. Where xbake differs on
    /// purpose, see `differences_from_buildkit_are_deliberate`.
    #[test]
    fn operators_give_what_buildkit_gives() {
        let s = scope(&[
            ("SET", "value"),
            ("EMPTY", ""),
            ("V", "v7"),
            ("PATH", "/usr/local/bin:/usr/bin:/bin"),
            ("FILE", "archive.tar.gz"),
            ("DIR", "/a/b/c/"),
            ("STAR", "*"),
            ("LIT", "a*b"),
            ("U", "ünïcödé"),
            ("NL", "a\nb"),
        ]);
        let cases = [
            // default and alternative values
            ("${SET:-d}", "value"),
            ("${EMPTY:-d}", "d"),
            ("${UNSET:-d}", "d"),
            ("${SET-d}", "value"),
            ("${EMPTY-d}", ""),
            ("${UNSET-d}", "d"),
            ("${SET:+alt}", "alt"),
            ("${EMPTY:+alt}", ""),
            ("${UNSET:+alt}", ""),
            ("${SET+alt}", "alt"),
            ("${EMPTY+alt}", "alt"),
            ("${UNSET+alt}", ""),
            ("${UNSET:-}", ""),
            ("${SET:?}", "value"),
            ("${EMPTY?}", ""),
            // nested words
            ("${UNSET:-${SET}}", "value"),
            ("${UNSET:-a${V}b}", "av7b"),
            ("${UNSET:-${ALSO_UNSET:-deep}}", "deep"),
            ("${SET:+[${V}]}", "[v7]"),
            ("${V:+-${V}}", "-v7"),
            ("${EMPTY:+-${V}}", ""),
            ("${UNSET:-a:b-c+d?e}", "a:b-c+d?e"),
            ("${UNSET:-x\\}y}", "x}y"),
            ("${UNSET:- spaced }", " spaced "),
            // prefix and suffix removal
            ("${V#v}", "7"),
            ("${SET#v}", "alue"),
            ("${SET#x}", "value"),
            ("${SET#}", "value"),
            ("${PATH#*:}", "/usr/bin:/bin"),
            ("${PATH##*:}", "/bin"),
            ("${PATH%:*}", "/usr/local/bin:/usr/bin"),
            ("${PATH%%:*}", "/usr/local/bin"),
            ("${FILE%.*}", "archive.tar"),
            ("${FILE%%.*}", "archive"),
            ("${FILE#*.}", "tar.gz"),
            ("${FILE##*.}", "gz"),
            ("${FILE#a?c}", "hive.tar.gz"),
            ("${FILE%.t?r.gz}", "archive"),
            ("${FILE#*}", "archive.tar.gz"),
            ("${FILE##*}", ""),
            ("${FILE%*}", "archive.tar.gz"),
            ("${FILE%%*}", ""),
            ("${DIR%/}", "/a/b/c"),
            ("${DIR#/*/}", "b/c/"),
            ("${DIR##/*/}", ""),
            ("${DIR%/*/}", "/a/b"),
            ("${DIR%%/*/}", ""),
            ("${EMPTY#*}", ""),
            ("${FILE#archive.tar.gz}", ""),
            ("${FILE#archive.tar.gz.}", "archive.tar.gz"),
            // escapes, and patterns that come from variables
            ("${LIT#a\\*}", "b"),
            ("${LIT#a*}", "*b"),
            ("${LIT##a*}", ""),
            ("${LIT%\\*b}", "a"),
            ("${LIT#${STAR}}", "a*b"),
            ("${LIT##${STAR}}", ""),
            ("${LIT#a${STAR}}", "*b"),
            // BuildKit has no bracket expressions: brackets are literal
            ("${FILE#[a]}", "archive.tar.gz"),
            ("${U#ü}", "nïcödé"),
            ("${U%?}", "ünïcöd"),
            ("${U##*ö}", "dé"),
            // Go's regexp `.` stops at a newline, and so do * and ? here
            ("${NL#*}", "a\nb"),
            ("${NL##*}", "\nb"),
            ("${NL#a?}", "a\nb"),
            ("${NL%%*}", "a\n"),
            ("${NL#a\n}", "b"),
            // text around references
            ("go${V#v}.tar", "go7.tar"),
            ("${V#v}${V%7}", "7v"),
        ];
        for (text, want) in cases {
            assert_eq!(
                s.expand(text).as_deref().map_err(ToString::to_string),
                Ok(want),
                "expanding {text:?}"
            );
        }
    }

    /// BuildKit reads a recipe value as a shell word; xbake keeps the rules its
    /// recipes had before the operators came, so existing values (and digests) stay.
    #[test]
    fn differences_from_buildkit_are_deliberate() {
        let s = scope(&[("A", "1"), ("Q", "x")]);
        let cases = [
            // BuildKit: `$$` is the shell's pid variable, unset, so "".
            ("${UNSET:-$$}", "$"),
            // BuildKit expands `$A` and honours shell quotes: "1", "${Q}" and "q".
            ("$A", "$A"),
            ("'${Q}'", "'x'"),
            ("${UNSET:-\"q\"}", "\"q\""),
        ];
        for (text, want) in cases {
            assert_eq!(s.expand(text).unwrap(), want, "expanding {text:?}");
        }
        // BuildKit: an unknown `${NAME}` is "", a unicode name is a name, and
        // `${A/x/y}` replaces; here the first is an error, the others unsupported.
        assert!(matches!(
            s.expand("${NOPE}"),
            Err(Problem::UnknownVariable { .. })
        ));
        for text in ["${É}", "${A/x/y}"] {
            assert!(
                matches!(s.expand(text), Err(Problem::BadVariable { .. })),
                "{text}"
            );
        }
    }

    #[test]
    fn the_example_from_the_issue() {
        let s = scope(&[("TARGETARCH", "arm"), ("TARGETVARIANT", "v6")]);
        assert_eq!(
            s.expand("GOARCH=${TARGETARCH} GOARM=${TARGETVARIANT#v}")
                .unwrap(),
            "GOARCH=arm GOARM=6"
        );
        let arm64 = scope(&[("TARGETARCH", "arm64"), ("TARGETVARIANT", "")]);
        assert_eq!(
            arm64.expand("${TARGETVARIANT:-none}").unwrap(),
            "none",
            "arm64 has an empty variant"
        );
    }

    #[test]
    fn unknown_names_are_named_with_the_known_ones() {
        let s = scope(&[("B", "1"), ("A", "2")]);
        for text in [
            "x${NOPE}",
            "${NOPE#x}",
            "${NOPE%%x}",
            "${UNSET:-${NOPE}}",
            "${A:+${NOPE}}",
            "${A#${NOPE}}",
        ] {
            let err = s.expand(text).unwrap_err();
            assert_eq!(
                err.to_string(),
                "unknown variable ${NOPE}; known: A, B",
                "{text}: {err:?}"
            );
        }
        // A word that is not used is not evaluated, so its names need not exist.
        assert_eq!(s.expand("${A:-${NOPE}}${Z:+${NOPE}}").unwrap(), "2");
    }

    #[test]
    fn required_names_fail_with_their_message() {
        let s = scope(&[("EMPTY", ""), ("WHO", "ci")]);
        let cases = [
            (
                "${VERSION:?set it with --build-arg}",
                "VERSION: set it with --build-arg",
            ),
            ("${VERSION?}", "VERSION: is not allowed to be unset"),
            ("${EMPTY:?}", "EMPTY: is not allowed to be empty"),
            ("${EMPTY:?asked by ${WHO}}", "EMPTY: asked by ci"),
        ];
        for (text, want) in cases {
            let err = s.expand(text).unwrap_err();
            assert!(
                matches!(err, Problem::RequiredVariable { .. }),
                "{text}: {err:?}"
            );
            assert_eq!(err.to_string(), want, "{text}");
        }
    }

    #[test]
    fn syntax_errors() {
        let s = scope(&[("A", "1")]);
        for text in [
            "a${A",
            "${A:-x",
            "${A:-${B}",
            "${A#",
            "${A:-x\\}",
            "${OPEN",
            "${",
        ] {
            assert!(
                matches!(s.expand(text), Err(Problem::UnterminatedVariable { .. })),
                "{text}"
            );
            assert!(
                matches!(
                    check_syntax(text),
                    Err(Problem::UnterminatedVariable { .. })
                ),
                "{text}"
            );
        }
        for (text, inner) in [
            ("${}", ""),
            ("${A.B}", "A.B"),
            ("${1A}", "1A"),
            ("${:-x}", ":-x"),
            ("${A:#x}", "A:#x"),
            ("${A:%x}", "A:%x"),
            ("${A/x/y}", "A/x/y"),
            ("${A B}", "A B"),
            ("${É}", "É"),
            ("${UNSET:-${B.C}}", "B.C"),
        ] {
            for result in [s.expand(text).map(drop), check_syntax(text)] {
                assert!(
                    matches!(&result, Err(Problem::BadVariable { name, .. }) if name == inner),
                    "{text}: {result:?}"
                );
            }
        }
        let message = s.expand("x${A.B}").unwrap_err().to_string();
        assert!(
            message.starts_with("invalid variable reference ${A.B} in \"x${A.B}\""),
            "{message}"
        );
        for ok in [
            "${UNKNOWN_IS_FINE_HERE}",
            "${A:-${B:+${C#x}}}",
            "${A%%*.}",
            "${A?}",
            "$${",
        ] {
            assert!(check_syntax(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn first_reference_finds_what_would_have_been_expanded() {
        assert_eq!(first_reference("a ${X} ${Y}").as_deref(), Some("${X}"));
        assert_eq!(first_reference("$${X} $PATH").as_deref(), None);
        assert_eq!(first_reference("$$$${X}").as_deref(), None);
        assert_eq!(first_reference("$$${X:-d}").as_deref(), Some("${X:-d}"));
        assert_eq!(first_reference("tail ${OPEN").as_deref(), Some("${OPEN"));
    }
}

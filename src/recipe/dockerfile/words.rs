//! Dockerfile word processing: quotes, escapes and `$VAR`/`${VAR…}` expansion, the way
//! BuildKit's shell lexer does it for every instruction but the commands of RUN, CMD and
//! ENTRYPOINT (those go to the image's shell untouched).
//!
//! What it follows (BuildKit `frontend/dockerfile/shell`, itself modelled on sh):
//! - `'…'` is literal; `"…"` expands `$` and lets the escape character quote only `"`,
//!   `$` and itself; outside quotes the escape character quotes any character.
//! - `$NAME`, `${NAME}`, and the modifiers `:-` `-` `:+` `+` `:?` `?` `#` `##` `%` `%%`
//!   `/` `//` (patterns with `*` and `?`). An unset name is empty, unless
//!   [`Lexer::keep_unset`] asks to leave the reference as written.
//! - [`Lexer::words`] splits the result on unquoted white space *after* expansion, so a
//!   value with spaces stays one word only when quoted.

use regex::Regex;

use super::super::expand::Glob;

/// Why a word could not be processed; the caller adds the line and instruction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WordError {
    #[error("unterminated {0} quote")]
    UnterminatedQuote(&'static str),
    #[error("missing `}}` in a `${{…}}` substitution")]
    MissingBrace,
    #[error("bad substitution `${{{0}`")]
    BadSubstitution(String),
    #[error("unsupported modifier `{0}` in a `${{…}}` substitution")]
    UnsupportedModifier(String),
    #[error("{name}: {message}")]
    Required { name: String, message: String },
    #[error("invalid pattern `{0}` in a substitution")]
    BadPattern(String),
}

/// The values variables expand to.
pub trait Vars {
    fn get(&self, name: &str) -> Option<&str>;
}

impl Vars for [(String, String)] {
    /// The last definition wins, as in an environment built up in order.
    fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

impl Vars for Vec<(String, String)> {
    fn get(&self, name: &str) -> Option<&str> {
        Vars::get(self.as_slice(), name)
    }
}

/// How to process: the escape character and BuildKit's switches.
#[derive(Clone, Copy, Debug)]
pub struct Lexer {
    pub escape: char,
    /// Keep quote characters in the result (they still group words).
    pub raw_quotes: bool,
    /// Keep escape characters in the result.
    pub raw_escapes: bool,
    /// Leave `$NAME` of an unset name as written instead of making it empty.
    pub keep_unset: bool,
    /// A heredoc body, as sh reads one whose delimiter is unquoted: quotes are
    /// ordinary characters, and the escape character quotes only `$`, `` ` ``, itself
    /// and a newline (which it removes); elsewhere it stays as written.
    pub heredoc: bool,
}

impl Lexer {
    pub fn new(escape: char) -> Lexer {
        Lexer {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            keep_unset: false,
            heredoc: false,
        }
    }

    /// The text with quotes and escapes processed and variables expanded, as one value
    /// (white space kept).
    pub fn word(&self, text: &str, vars: &dyn Vars) -> Result<String, WordError> {
        Ok(self.run(text, vars)?.0)
    }

    /// The same, split into words on unquoted white space after expansion.
    pub fn words(&self, text: &str, vars: &dyn Vars) -> Result<Vec<String>, WordError> {
        Ok(self.run(text, vars)?.1)
    }

    fn run(&self, text: &str, vars: &dyn Vars) -> Result<(String, Vec<String>), WordError> {
        let mut scan = Scan {
            lexer: *self,
            chars: text.chars().collect(),
            at: 0,
            vars,
        };
        scan.until(None, self.raw_escapes)
    }
}

/// Words being built: a character from an expansion splits on white space, a quoted one
/// never does.
#[derive(Default)]
struct Words {
    done: Vec<String>,
    word: String,
    in_word: bool,
}

impl Words {
    fn push(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.done.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.push_raw(ch);
        }
    }

    fn push_raw(&mut self, ch: char) {
        self.word.push(ch);
        self.in_word = true;
    }

    fn push_str(&mut self, text: &str) {
        text.chars().for_each(|ch| self.push(ch));
    }

    fn push_raw_str(&mut self, text: &str) {
        self.word.push_str(text);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.done.push(self.word);
        }
        self.done
    }
}

struct Scan<'a> {
    lexer: Lexer,
    chars: Vec<char>,
    at: usize,
    vars: &'a dyn Vars,
}

impl Scan<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn next(&mut self) -> Option<char> {
        let ch = self.peek();
        if ch.is_some() {
            self.at += 1;
        }
        ch
    }

    /// Processes up to `stop` (consumed) or the end; `raw_escapes` keeps escapes (the
    /// pattern of `${V#pattern}` needs them).
    fn until(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), WordError> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.at += 1;
                return Ok((result, words.finish()));
            }
            match ch {
                '$' => {
                    let value = self.dollar()?;
                    result.push_str(&value);
                    words.push_str(&value);
                }
                '\'' if !self.lexer.heredoc => {
                    let value = self.single_quoted()?;
                    result.push_str(&value);
                    words.push_raw_str(&value);
                }
                '"' if !self.lexer.heredoc => {
                    let value = self.double_quoted(raw_escapes)?;
                    result.push_str(&value);
                    words.push_raw_str(&value);
                }
                _ => {
                    self.at += 1;
                    let quotes_next = |next: Option<char>| matches!(next, Some(n) if n == '$' || n == '`' || n == '\n' || n == ch);
                    if ch == self.lexer.escape && self.lexer.heredoc && !quotes_next(self.peek()) {
                        words.push(ch);
                        result.push(ch);
                    } else if ch == self.lexer.escape
                        && self.lexer.heredoc
                        && self.peek() == Some('\n')
                    {
                        self.at += 1;
                    } else if ch == self.lexer.escape {
                        if raw_escapes {
                            words.push_raw(ch);
                            result.push(ch);
                        }
                        // The escape quotes the next character; at the end it is dropped.
                        let Some(quoted) = self.next() else { break };
                        words.push_raw(quoted);
                        result.push(quoted);
                    } else {
                        words.push(ch);
                        result.push(ch);
                    }
                }
            }
        }
        match stop {
            Some(_) => Err(WordError::MissingBrace),
            None => Ok((result, words.finish())),
        }
    }

    fn single_quoted(&mut self) -> Result<String, WordError> {
        let mut out = String::new();
        let open = self.next();
        if self.lexer.raw_quotes {
            out.extend(open);
        }
        loop {
            match self.next() {
                None => return Err(WordError::UnterminatedQuote("single")),
                Some('\'') => {
                    if self.lexer.raw_quotes {
                        out.push('\'');
                    }
                    return Ok(out);
                }
                Some(ch) => out.push(ch),
            }
        }
    }

    fn double_quoted(&mut self, raw_escapes: bool) -> Result<String, WordError> {
        let mut out = String::new();
        let open = self.next();
        if self.lexer.raw_quotes {
            out.extend(open);
        }
        loop {
            match self.peek() {
                None => return Err(WordError::UnterminatedQuote("double")),
                Some('"') => {
                    self.at += 1;
                    if self.lexer.raw_quotes {
                        out.push('"');
                    }
                    return Ok(out);
                }
                Some('$') => out.push_str(&self.dollar()?),
                Some(ch) => {
                    self.at += 1;
                    if ch == self.lexer.escape {
                        if raw_escapes {
                            out.push(ch);
                        }
                        match self.peek() {
                            None => continue,
                            // Only these are quoted inside "…"; any other escape stays.
                            Some(next) if next == '"' || next == '$' || next == ch => {
                                self.at += 1;
                                out.push(next);
                            }
                            Some(_) => {
                                if !raw_escapes {
                                    out.push(ch);
                                }
                            }
                        }
                    } else {
                        out.push(ch);
                    }
                }
            }
        }
    }

    fn lookup(&self, name: &str) -> Option<String> {
        self.vars.get(name).map(str::to_string)
    }

    fn dollar(&mut self) -> Result<String, WordError> {
        self.at += 1; // the `$`
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(match self.lookup(&name) {
                Some(value) => value,
                None if self.lexer.keep_unset => format!("${name}"),
                None => String::new(),
            });
        }
        self.at += 1; // the `{`
        match self.peek() {
            None => return Err(WordError::MissingBrace),
            Some(ch @ ('{' | '}' | ':')) => return Err(WordError::BadSubstitution(ch.into())),
            Some(_) => {}
        }
        let name = self.name();
        let Some(op) = self.next() else {
            return Err(WordError::MissingBrace);
        };
        match op {
            '}' => Ok(match self.lookup(&name) {
                Some(value) => value,
                None if self.lexer.keep_unset => format!("${{{name}}}"),
                None => String::new(),
            }),
            ':' | '+' | '-' | '?' | '#' | '%' => {
                let (colon, op) = if op == ':' {
                    match self.next() {
                        Some(next @ ('+' | '-' | '?')) => (true, next),
                        Some(next) => {
                            return Err(WordError::UnsupportedModifier(format!(":{next}")));
                        }
                        None => return Err(WordError::MissingBrace),
                    }
                } else {
                    (false, op)
                };
                let (word, _) = self.until(Some('}'), op == '#' || op == '%')?;
                let value = self.lookup(&name);
                if value.is_none() && self.lexer.keep_unset {
                    let colon = if colon { ":" } else { "" };
                    return Ok(format!("${{{name}{colon}{op}{word}}}"));
                }
                let unset = match &value {
                    None => true,
                    Some(value) => colon && value.is_empty(),
                };
                match op {
                    '-' => Ok(if unset {
                        word
                    } else {
                        value.unwrap_or_default()
                    }),
                    '+' => Ok(if unset { String::new() } else { word }),
                    '?' if unset => {
                        let message = if !word.is_empty() {
                            word
                        } else if value.is_none() {
                            "is not allowed to be unset".into()
                        } else {
                            "is not allowed to be empty".into()
                        };
                        Err(WordError::Required { name, message })
                    }
                    '?' => Ok(value.unwrap_or_default()),
                    _ => trim(&value.unwrap_or_default(), &word, op),
                }
            }
            '/' => {
                let all = self.peek() == Some('/');
                if all {
                    self.at += 1;
                }
                let (pattern, _) = self.until(Some('/'), true)?;
                let (replacement, _) = self.until(Some('}'), true)?;
                let Some(value) = self.lookup(&name) else {
                    return Ok(if self.lexer.keep_unset {
                        let slashes = if all { "//" } else { "/" };
                        format!("${{{name}{slashes}{pattern}/{replacement}}}")
                    } else {
                        String::new()
                    });
                };
                let regex = pattern_regex(&pattern)?;
                Ok(if all {
                    regex
                        .replace_all(&value, regex::NoExpand(&replacement))
                        .into()
                } else {
                    regex.replace(&value, regex::NoExpand(&replacement)).into()
                })
            }
            other => Err(WordError::UnsupportedModifier(other.into())),
        }
    }

    /// A variable name: letters, digits and `_`; or digits alone; or one of sh's special
    /// parameters.
    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_ascii_digit() {
                while let Some(digit) = self.peek().filter(char::is_ascii_digit) {
                    self.at += 1;
                    name.push(digit);
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.at += 1;
                return ch.into();
            }
            if !(ch.is_alphanumeric() || ch == '_') {
                break;
            }
            self.at += 1;
            name.push(ch);
        }
        name
    }
}

/// `${V#p}` `${V##p}` `${V%p}` `${V%%p}`: the shortest (or, doubled, the longest) prefix
/// or suffix matching the pattern removed, with the recipe expander's matcher.
fn trim(value: &str, pattern: &str, op: char) -> Result<String, WordError> {
    let (longest, pattern) = match pattern.strip_prefix(op) {
        Some(rest) => (true, rest),
        None => (false, pattern),
    };
    let glob = Glob::new(pattern);
    Ok(match op {
        '#' => glob.trim_prefix(value, longest),
        _ => glob.trim_suffix(value, longest),
    }
    .to_string())
}

/// A `${V/pattern/…}` pattern (`*` any text, `?` one character, `\` quotes the next) as
/// a regular expression; as in BuildKit's Go regexp, neither wildcard matches a newline.
fn pattern_regex(pattern: &str) -> Result<Regex, WordError> {
    let mut out = String::new();
    let mut chars = pattern.chars();
    while let Some(ch) = chars.next() {
        match ch {
            '*' => out.push_str(".*"),
            '?' => out.push('.'),
            '\\' => match chars.next() {
                Some(quoted) => out.push_str(&regex::escape(&quoted.to_string())),
                None => out.push_str(r"\\"),
            },
            other => out.push_str(&regex::escape(&other.to_string())),
        }
    }
    Regex::new(&out).map_err(|_| WordError::BadPattern(pattern.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vec<(String, String)> {
        [
            ("A", "apple"),
            ("EMPTY", ""),
            ("PATH", "/usr/local/bin:/usr/bin:/bin"),
            ("SPACED", "one two"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn word(text: &str) -> String {
        Lexer::new('\\').word(text, &vars()).unwrap()
    }

    fn words(text: &str) -> Vec<String> {
        Lexer::new('\\').words(text, &vars()).unwrap()
    }

    #[test]
    fn quotes_and_escapes_follow_sh() {
        assert_eq!(word(r#"'$A' "$A" \$A"#), "$A apple $A");
        assert_eq!(word(r#""a\"b" "c\d" 'e\f'"#), r#"a"b c\d e\f"#);
        assert_eq!(word(r"a\ b\\c"), r"a b\c");
        assert_eq!(word("trailing\\"), "trailing");
        assert_eq!(
            Lexer::new('`').word(r#"C:\dir `$A "x`"y""#, &vars()),
            Ok(r#"C:\dir $A x"y"#.to_string())
        );
    }

    #[test]
    fn expansion_and_its_modifiers() {
        assert_eq!(word("$A-${A}_$NOPE."), "apple-apple_.");
        assert_eq!(
            word("${NOPE:-x} ${EMPTY:-x} ${EMPTY-x} ${A:-x}"),
            "x x  apple"
        );
        assert_eq!(word("${NOPE:+x}|${EMPTY:+x}|${EMPTY+x}|${A+x}"), "||x|x");
        assert_eq!(
            word("${PATH#*:} ${PATH##*:} ${PATH%:*} ${PATH%%:*}"),
            "/usr/bin:/bin /bin /usr/local/bin:/usr/bin /usr/local/bin"
        );
        assert_eq!(word("${A/p/P} ${A//p/P} ${A/x/y}"), "aPple aPPle apple");
        assert_eq!(word("${NOPE:-$A} ${NOPE:-'q r'}"), "apple q r");
        assert_eq!(word("$ $1x"), "$ x");
    }

    #[test]
    fn required_variables_fail_with_their_message() {
        let lex = Lexer::new('\\');
        assert_eq!(
            lex.word("${NOPE?}", &vars()),
            Err(WordError::Required {
                name: "NOPE".into(),
                message: "is not allowed to be unset".into()
            })
        );
        assert_eq!(
            lex.word("${EMPTY:?set it}", &vars()),
            Err(WordError::Required {
                name: "EMPTY".into(),
                message: "set it".into()
            })
        );
        assert_eq!(lex.word("${EMPTY?}", &vars()), Ok(String::new()));
    }

    #[test]
    fn words_split_after_expansion_unless_quoted() {
        assert_eq!(
            words("a $SPACED \"$SPACED\" 'x  y'"),
            ["a", "one", "two", "one two", "x  y"]
        );
        assert_eq!(words("  "), Vec::<String>::new());
    }

    #[test]
    fn malformed_words_are_errors() {
        let lex = Lexer::new('\\');
        assert_eq!(
            lex.word("'open", &vars()),
            Err(WordError::UnterminatedQuote("single"))
        );
        assert_eq!(
            lex.word("\"open", &vars()),
            Err(WordError::UnterminatedQuote("double"))
        );
        assert_eq!(lex.word("${A", &vars()), Err(WordError::MissingBrace));
        assert_eq!(lex.word("${A:-x", &vars()), Err(WordError::MissingBrace));
        assert_eq!(
            lex.word("${}", &vars()),
            Err(WordError::BadSubstitution("}".into()))
        );
        assert_eq!(
            lex.word("${A:x}", &vars()),
            Err(WordError::UnsupportedModifier(":x".into()))
        );
        assert_eq!(
            lex.word("${A^}", &vars()),
            Err(WordError::UnsupportedModifier("^".into()))
        );
    }

    #[test]
    fn unset_references_can_be_kept() {
        let lex = Lexer {
            keep_unset: true,
            ..Lexer::new('\\')
        };
        assert_eq!(
            lex.word("$A $NOPE ${NOPE} ${NOPE:-d} ${NOPE//x/y}", &vars()),
            Ok("apple $NOPE ${NOPE} ${NOPE:-d} ${NOPE//x/y}".to_string())
        );
    }

    #[test]
    fn raw_modes_keep_what_they_name() {
        let lex = Lexer {
            raw_quotes: true,
            raw_escapes: true,
            keep_unset: true,
            ..Lexer::new('\\')
        };
        assert_eq!(
            lex.words(r#"<<"EOF" a\ b 'c'"#, &vars()),
            Ok(vec![r#"<<"EOF""#.to_string(), r"a\ b".into(), "'c'".into()])
        );
        let body = Lexer {
            heredoc: true,
            ..Lexer::new('\\')
        };
        assert_eq!(
            body.word("say \"$A\" it's", &vars()),
            Ok("say \"apple\" it's".into())
        );
        // As in sh: `\$` and `\\` are quoted, `\n` stays, a backslash-newline joins.
        assert_eq!(
            body.word(
                r"printf 'a\n' \$A \\ $A\
next",
                &vars()
            ),
            Ok(r"printf 'a\n' $A \ applenext".to_string())
        );
    }
}

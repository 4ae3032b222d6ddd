//! From Dockerfile text to logical lines: parser directives, comments, line
//! continuations and heredoc bodies, as BuildKit's parser reads them.
//!
//! - Directives (`# syntax=…`, `# escape=…`, `# check=…`) count only at the very top:
//!   the first line that is not one (a blank line, another comment, an instruction)
//!   ends them. Each may appear once.
//! - A line whose first non-blank character is `#` is a comment, also inside a
//!   continued instruction; blank lines inside one are skipped (BuildKit warns).
//! - The escape character at the end of a line (spaces after it allowed) joins the next
//!   line; the first line of an instruction loses its leading white space, the others
//!   keep theirs.
//! - A RUN, COPY or ADD (also under ONBUILD) in shell form whose words include `<<NAME`
//!   (or `<<-NAME`, `<<"NAME"`, `3<<NAME`) takes the lines after it, up to a line that
//!   is NAME, as that heredoc's body, in order.

use super::error::{DockerfileError, SyntaxProblem};
use super::words::{Lexer, Vars};

/// A heredoc named on an instruction line, with its body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heredoc {
    pub name: String,
    /// The body is expanded (the name was not quoted).
    pub expand: bool,
    /// `<<-`: leading tabs are stripped from the body and from the terminator line.
    pub chomp: bool,
    /// The file descriptor before `<<` (0 when none was written).
    pub fd: u32,
    /// The lines between the instruction and the terminator, with their line ends.
    pub body: String,
}

/// One instruction as written: keyword, flags and the rest, with its lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogicalLine {
    /// 1-based line of the keyword.
    pub line: usize,
    /// The keyword as written (case kept for messages).
    pub keyword: String,
    /// Leading `--name[=value]` words, quotes and escapes processed, without `--`.
    pub flags: Vec<String>,
    /// What follows the keyword and the flags, continuations joined.
    pub rest: String,
    pub heredocs: Vec<Heredoc>,
}

/// The parsed top of the file and its instructions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lines {
    pub escape: char,
    pub syntax: Option<String>,
    pub check: Option<String>,
    pub instructions: Vec<LogicalLine>,
    /// Things BuildKit accepts but warns about, as `line: message`.
    pub warnings: Vec<(usize, String)>,
}

/// Instructions whose shell form may name heredocs.
fn takes_heredocs(keyword: &str) -> bool {
    ["RUN", "COPY", "ADD"]
        .iter()
        .any(|k| k.eq_ignore_ascii_case(keyword))
}

struct Directives {
    escape: char,
    syntax: Option<String>,
    check: Option<String>,
    done: bool,
}

impl Directives {
    /// Reads `line` as a directive while they are still allowed; Ok(true) if it was one.
    fn take(&mut self, line: &str, number: usize) -> Result<bool, DockerfileError> {
        if self.done {
            return Ok(false);
        }
        let Some((name, value)) = directive(line) else {
            self.done = true;
            return Ok(false);
        };
        let name = name.to_ascii_lowercase();
        let slot_taken = match name.as_str() {
            "escape" => {
                let seen = self.escape != '\0';
                self.escape = match value {
                    "\\" => '\\',
                    "`" => '`',
                    _ => {
                        return Err(DockerfileError::at(
                            number,
                            SyntaxProblem::BadEscape(value.into()),
                        ));
                    }
                };
                seen
            }
            "syntax" => self.syntax.replace(value.into()).is_some(),
            "check" => self.check.replace(value.into()).is_some(),
            _ => {
                // An unknown `# key=value` is an ordinary comment, and ends directives.
                self.done = true;
                return Ok(false);
            }
        };
        if slot_taken {
            return Err(DockerfileError::at(
                number,
                SyntaxProblem::RepeatedDirective(name),
            ));
        }
        Ok(true)
    }
}

/// `# name = value` with name `[A-Za-z][A-Za-z0-9]*`.
fn directive(line: &str) -> Option<(&str, &str)> {
    let body = line.strip_prefix('#')?.trim_start();
    let name_end = body
        .char_indices()
        .find(|&(at, ch)| !(ch.is_ascii_alphabetic() || (at > 0 && ch.is_ascii_digit())))
        .map_or(body.len(), |(at, _)| at);
    if name_end == 0 {
        return None;
    }
    let (name, after) = body.split_at(name_end);
    let value = after.trim_start().strip_prefix('=')?.trim();
    (!value.is_empty()).then_some((name, value))
}

/// The text's lines, each without its line end (`\n` or `\r\n`).
fn physical_lines(text: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let mut rest = text.strip_prefix('\u{feff}').unwrap_or(text);
    while !rest.is_empty() {
        let (line, next) = match rest.find('\n') {
            Some(at) => rest.split_at(at + 1),
            None => (rest, ""),
        };
        out.push((line.trim_end_matches(['\r', '\n']), line));
        rest = next;
    }
    out
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// The line without a continuation at its end, and whether it had one: the escape
/// character, then only spaces or tabs; not itself escaped.
fn strip_continuation(line: &str, escape: char) -> (&str, bool) {
    let trimmed = line.trim_end_matches([' ', '\t']);
    let Some(before) = trimmed.strip_suffix(escape) else {
        return (line, false);
    };
    if before.ends_with(escape) {
        return (line, false);
    }
    (before, true)
}

/// Splits a joined instruction into keyword, flags and the rest.
pub(super) fn split_instruction(joined: &str) -> (String, Vec<String>, String) {
    let joined = joined.trim();
    let (keyword, args) = match joined.find(|ch: char| ch.is_whitespace()) {
        Some(at) => (&joined[..at], joined[at..].trim_start()),
        None => (joined, ""),
    };
    let (flags, rest) = builder_flags(args);
    (keyword.to_string(), flags, rest.to_string())
}

/// BuildKit's extractBuilderFlags: leading words that start with `--`, quotes and `\`
/// escapes processed; a lone `--` ends them.
fn builder_flags(args: &str) -> (Vec<String>, &str) {
    let mut flags = Vec::new();
    let mut rest = args;
    loop {
        rest = rest.trim_start();
        if !rest.starts_with("--") {
            return (flags, rest);
        }
        let mut word = String::new();
        let mut quote: Option<char> = None;
        let mut end = rest.len();
        let mut chars = rest.char_indices();
        while let Some((at, ch)) = chars.next() {
            match quote {
                None if ch.is_whitespace() => {
                    end = at;
                    break;
                }
                None if ch == '\'' || ch == '"' => quote = Some(ch),
                Some(open) if ch == open => quote = None,
                _ if ch == '\\' => {
                    if let Some((_, next)) = chars.next() {
                        word.push(next);
                    }
                }
                _ => word.push(ch),
            }
        }
        rest = &rest[end..];
        if word == "--" {
            return (flags, rest.trim_start());
        }
        flags.push(word.trim_start_matches("--").to_string());
    }
}

/// The heredocs named on a line, in order: words like `<<NAME`, `<<-NAME`, `2<<"NAME"`.
fn heredoc_names(line: &str) -> Vec<(String, bool, bool, u32)> {
    struct NoVars;
    impl Vars for NoVars {
        fn get(&self, _: &str) -> Option<&str> {
            None
        }
    }
    let raw = Lexer {
        raw_quotes: true,
        raw_escapes: true,
        keep_unset: true,
        ..Lexer::new('\\')
    };
    let Ok(words) = raw.words(line, &NoVars) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for word in words {
        let digits = word.chars().take_while(char::is_ascii_digit).count();
        let Some(after) = word[digits..].strip_prefix("<<") else {
            continue;
        };
        let (chomp, name) = match after.strip_prefix('-') {
            Some(name) => (true, name),
            None => (false, after),
        };
        if name.is_empty() || name.contains('<') {
            continue;
        }
        let plain = Lexer {
            keep_unset: true,
            ..Lexer::new('\\')
        };
        let Ok(unquoted) = plain.words(name, &NoVars) else {
            continue;
        };
        let [unquoted] = unquoted.as_slice() else {
            continue;
        };
        let quotes = |text: &str| text.matches(['\'', '"']).count();
        let expand = quotes(unquoted) == quotes(name);
        let fd = word[..digits].parse().unwrap_or(0);
        found.push((unquoted.clone(), expand, chomp, fd));
    }
    found
}

/// Reads the file's directives and instructions.
pub fn read(text: &str) -> Result<Lines, DockerfileError> {
    let physical = physical_lines(text);
    let mut directives = Directives {
        escape: '\0',
        syntax: None,
        check: None,
        done: false,
    };
    let mut instructions = Vec::new();
    let mut warnings = Vec::new();
    let mut index = 0;
    while index < physical.len() {
        let number = index + 1;
        let first = physical[index].0.trim_start();
        index += 1;
        if directives.take(first, number)? {
            continue;
        }
        let escape = match directives.escape {
            '\0' => '\\',
            chosen => chosen,
        };
        if is_comment(first) {
            continue;
        }
        let (head, mut continued) = strip_continuation(first, escape);
        if head.trim().is_empty() && !continued {
            continue;
        }
        let mut joined = head.to_string();
        let mut empty_continuation = false;
        while continued && index < physical.len() {
            let line = physical[index].0;
            index += 1;
            if is_comment(line) {
                continue;
            }
            if line.trim().is_empty() {
                empty_continuation = true;
                continue;
            }
            let (part, more) = strip_continuation(line, escape);
            joined.push_str(part);
            continued = more;
        }
        if empty_continuation {
            warnings.push((number, "empty continuation line".to_string()));
        }
        let (keyword, flags, rest) = split_instruction(&joined);
        if keyword.is_empty() {
            continue;
        }
        let mut heredocs = Vec::new();
        if heredoc_capable(&keyword, &rest) {
            for (name, expand, chomp, fd) in heredoc_names(&joined) {
                let mut body = String::new();
                let mut terminated = false;
                while index < physical.len() {
                    let (line, with_end) = physical[index];
                    index += 1;
                    let candidate = if chomp {
                        line.trim_start_matches('\t')
                    } else {
                        line
                    };
                    if candidate == name {
                        terminated = true;
                        break;
                    }
                    body.push_str(with_end);
                }
                if !terminated {
                    return Err(DockerfileError::at(
                        number,
                        SyntaxProblem::UnterminatedHeredoc(name),
                    ));
                }
                heredocs.push(Heredoc {
                    name,
                    expand,
                    chomp,
                    fd,
                    body,
                });
            }
        }
        instructions.push(LogicalLine {
            line: number,
            keyword,
            flags,
            rest,
            heredocs,
        });
    }
    if instructions.is_empty() {
        return Err(DockerfileError::at(
            physical.len().max(1),
            SyntaxProblem::NoInstructions,
        ));
    }
    Ok(Lines {
        escape: match directives.escape {
            '\0' => '\\',
            chosen => chosen,
        },
        syntax: directives.syntax,
        check: directives.check,
        instructions,
        warnings,
    })
}

/// RUN, COPY, ADD in shell form (not a JSON array), or ONBUILD of one of them.
fn heredoc_capable(keyword: &str, rest: &str) -> bool {
    if keyword.eq_ignore_ascii_case("ONBUILD") {
        let (inner, _, inner_rest) = split_instruction(rest);
        return takes_heredocs(&inner) && !is_json_array(&inner_rest);
    }
    takes_heredocs(keyword) && !is_json_array(rest)
}

/// Whether the text is a JSON array (the exec form; its items are checked later).
fn is_json_array(text: &str) -> bool {
    text.trim_start().starts_with('[')
        && serde_json::from_str::<Vec<serde_json::Value>>(text.trim()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Lines {
        read(text).unwrap()
    }

    fn instruction(text: &str, n: usize) -> LogicalLine {
        lines(text).instructions.swap_remove(n)
    }

    #[test]
    fn directives_only_at_the_top_and_once() {
        let read = lines("# syntax=docker/dockerfile:1\n# ESCAPE = `\nFROM a\n");
        assert_eq!(read.syntax.as_deref(), Some("docker/dockerfile:1"));
        assert_eq!(read.escape, '`');
        // After a comment, a directive is just a comment.
        let late = lines("# hello\n# escape=`\nFROM a\n");
        assert_eq!(late.escape, '\\');
        // After a blank line too.
        assert_eq!(lines("\n# escape=`\nFROM a").escape, '\\');
        let twice = read_err("# escape=`\n# escape=\\\nFROM a\n");
        assert_eq!(
            (twice.line, twice.problem),
            (2, SyntaxProblem::RepeatedDirective("escape".into()))
        );
        let bad = read_err("# escape=x\nFROM a\n");
        assert_eq!(bad.problem, SyntaxProblem::BadEscape("x".into()));
    }

    fn read_err(text: &str) -> DockerfileError {
        read(text).unwrap_err()
    }

    #[test]
    fn continuations_comments_and_blank_lines_inside_an_instruction() {
        let text = "FROM a\nRUN echo one \\\n# a comment\n    && echo two \\  \n\n  && echo three\nRUN x\n";
        let read = lines(text);
        let run = &read.instructions[1];
        assert_eq!((run.line, run.keyword.as_str()), (2, "RUN"));
        assert_eq!(run.rest, "echo one     && echo two   && echo three");
        assert_eq!(read.instructions[2].line, 7);
        assert_eq!(read.warnings, [(2, "empty continuation line".to_string())]);
    }

    #[test]
    fn an_escaped_escape_does_not_continue() {
        let run = instruction("FROM a\nRUN echo a\\\\\nRUN b\n", 1);
        assert_eq!(run.rest, "echo a\\\\");
        let run = instruction("# escape=`\nFROM a\nRUN dir C:\\ `\n  /w\n", 1);
        assert_eq!(run.rest, "dir C:\\   /w");
    }

    #[test]
    fn flags_end_at_the_first_other_word() {
        let run = instruction(
            "FROM a\nRUN --mount=type=secret,id=\"a b\" --network=none -- --not-a-flag x\n",
            1,
        );
        assert_eq!(run.flags, ["mount=type=secret,id=a b", "network=none"]);
        assert_eq!(run.rest, "--not-a-flag x");
        // A quoted word is not a flag, and ends them.
        let run = instruction("FROM a\nRUN --network=none \"--x\" y\n", 1);
        assert_eq!((run.flags.len(), run.rest.as_str()), (1, "\"--x\" y"));
        let from = instruction("FROM --platform=$BUILDPLATFORM golang:1 AS build\n", 0);
        assert_eq!(from.flags, ["platform=$BUILDPLATFORM"]);
        assert_eq!(from.rest, "golang:1 AS build");
    }

    #[test]
    fn heredocs_take_the_lines_after_the_instruction() {
        let text = "FROM a\nRUN <<EOF\necho hi\nEOF\nRUN cat <<A > /a && cat <<-\"B\" > /b\none $X\nA\n\ttwo $X\n\tB\nCMD x\n";
        let read = lines(text);
        assert_eq!(read.instructions.len(), 4);
        let first = &read.instructions[1];
        assert_eq!(first.heredocs[0].body, "echo hi\n");
        assert!(first.heredocs[0].expand);
        let two = &read.instructions[2];
        assert_eq!(two.rest, "cat <<A > /a && cat <<-\"B\" > /b");
        assert_eq!(two.heredocs.len(), 2);
        assert_eq!(
            (two.heredocs[0].name.as_str(), two.heredocs[0].body.as_str()),
            ("A", "one $X\n")
        );
        let b = &two.heredocs[1];
        assert_eq!(
            (b.name.as_str(), b.expand, b.chomp, b.body.as_str()),
            ("B", false, true, "\ttwo $X\n")
        );
        assert_eq!(read.instructions[3].line, 10);
    }

    #[test]
    fn heredocs_only_where_buildkit_reads_them() {
        // Exec form, other instructions and a here-string name none.
        let read = lines("FROM a\nRUN [\"sh\", \"<<EOF\"]\nENV A=<<EOF\nRUN cat <<<word\n");
        assert!(
            read.instructions
                .iter()
                .all(|line| line.heredocs.is_empty())
        );
        let copy = instruction("FROM a\nCOPY --chmod=755 <<EOT /x\nhi\nEOT\n", 1);
        assert_eq!(copy.heredocs[0].body, "hi\n");
        let onbuild = instruction("FROM a\nONBUILD RUN 3<<EOF cat\nhi\nEOF\n", 1);
        assert_eq!(onbuild.heredocs[0].fd, 3);
        let err = read_err("FROM a\nRUN <<EOF\nno end\n");
        assert_eq!(
            (err.line, err.problem),
            (2, SyntaxProblem::UnterminatedHeredoc("EOF".into()))
        );
    }

    #[test]
    fn crlf_bom_and_empty_files() {
        let read = lines("\u{feff}FROM a\r\nRUN a \\\r\n  b\r\n");
        assert_eq!(read.instructions[1].rest, "a   b");
        assert_eq!(
            read_err("# only a comment\n\n").problem,
            SyntaxProblem::NoInstructions
        );
    }
}

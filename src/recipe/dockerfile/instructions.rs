//! Logical lines to typed instructions: each keyword's arguments split the way BuildKit
//! splits them, still unexpanded (what `$VAR` means depends on the ARG and ENV state
//! where the instruction stands, which the translation to a build plan tracks).

use super::error::{DockerfileError, SyntaxProblem};
use super::lines::{Heredoc, LogicalLine, split_instruction};

/// A RUN, CMD or ENTRYPOINT command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// The JSON array form: the program and its arguments, run as they are.
    Exec(Vec<String>),
    /// The shell form: the text as written, for the image's shell.
    Shell(String),
}

/// A `--name[=value]` flag of an instruction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flag {
    pub name: String,
    pub value: Option<String>,
}

/// A COPY or ADD source: a path, URL or pattern, or a heredoc's body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Path(String),
    Heredoc(Heredoc),
}

/// `ARG NAME` or `ARG NAME=default` (the default still unexpanded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArgDecl {
    pub name: String,
    pub default: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    From {
        platform: Option<String>,
        image: String,
        alias: Option<String>,
    },
    Arg(Vec<ArgDecl>),
    /// NAME=value pairs as written: quotes and escapes still in (they are processed
    /// together with the expansion).
    Env(Vec<(String, String)>),
    Label(Vec<(String, String)>),
    Run {
        flags: Vec<Flag>,
        command: Command,
        heredocs: Vec<Heredoc>,
    },
    Copy {
        add: bool,
        flags: Vec<Flag>,
        sources: Vec<Source>,
        dest: String,
    },
    Cmd(Command),
    Entrypoint(Command),
    Shell(Vec<String>),
    Workdir(String),
    User(String),
    Expose(Vec<String>),
    Volume(Vec<String>),
    StopSignal(String),
    /// `HEALTHCHECK NONE` (None) or `HEALTHCHECK [flags] CMD command`.
    Healthcheck(Option<(Vec<Flag>, Command)>),
    /// The trigger as written (`RUN make`), recorded in the image config as Docker does.
    Onbuild(String),
    Maintainer(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instruction {
    pub line: usize,
    /// The keyword in upper case.
    pub keyword: String,
    pub kind: Kind,
}

/// The flags each instruction takes.
fn known_flags(keyword: &str) -> &'static [&'static str] {
    match keyword {
        "FROM" => &["platform"],
        "RUN" => &["mount", "network", "security"],
        "COPY" => &["from", "chown", "chmod", "link", "parents", "exclude"],
        "ADD" => &[
            "chown",
            "chmod",
            "link",
            "checksum",
            "keep-git-dir",
            "exclude",
            "unpack",
        ],
        "HEALTHCHECK" => &[
            "interval",
            "timeout",
            "start-period",
            "start-interval",
            "retries",
        ],
        _ => &[],
    }
}

/// The flags an instruction takes, as its error message lists them.
fn known_flags_text(keyword: &str) -> String {
    match known_flags(keyword) {
        [] => "no flags".to_string(),
        known => known
            .iter()
            .map(|flag| format!("--{flag}"))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// Checks the flags against what the instruction takes; `mount` and `exclude` may repeat.
fn flags(line: &LogicalLine, keyword: &str, raw: &[String]) -> Result<Vec<Flag>, DockerfileError> {
    let known = known_flags(keyword);
    let mut out: Vec<Flag> = Vec::new();
    for word in raw {
        let (name, value) = match word.split_once('=') {
            Some((name, value)) => (name.to_string(), Some(value.to_string())),
            None => (word.clone(), None),
        };
        if !known.contains(&name.as_str()) {
            return Err(DockerfileError::in_instruction(
                line.line,
                keyword,
                SyntaxProblem::UnknownFlag {
                    flag: name,
                    known: known_flags_text(keyword),
                },
            ));
        }
        let repeatable = name == "mount" || name == "exclude";
        if !repeatable && out.iter().any(|flag| flag.name == name) {
            return Err(DockerfileError::in_instruction(
                line.line,
                keyword,
                SyntaxProblem::RepeatedFlag(name),
            ));
        }
        out.push(Flag { name, value });
    }
    Ok(out)
}

/// BuildKit's parseWords: white-space separated words, quotes and escapes kept (they are
/// processed later, with the expansion).
fn quoted_words(text: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = text.chars().peekable();
    while let Some(ch) = chars.next() {
        match quote {
            None if ch.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
                continue;
            }
            None => {
                if ch == '\'' || ch == '"' {
                    quote = Some(ch);
                }
                if ch == escape {
                    if chars.peek().is_none() {
                        continue;
                    }
                    word.push(ch);
                    word.extend(chars.next());
                    in_word = true;
                    continue;
                }
            }
            Some(open) => {
                if ch == open {
                    quote = None;
                } else if ch == escape && open != '\'' {
                    if chars.peek().is_none() {
                        continue;
                    }
                    word.push(ch);
                    word.extend(chars.next());
                    continue;
                }
            }
        }
        word.push(ch);
        in_word = true;
    }
    if in_word || !word.is_empty() {
        words.push(word);
    }
    words
}

/// ENV and LABEL: `NAME=value …`, or the old `NAME value` (the rest of the line).
fn name_values(
    line: &LogicalLine,
    keyword: &str,
    escape: char,
) -> Result<Vec<(String, String)>, DockerfileError> {
    let words = quoted_words(&line.rest, escape);
    let malformed = |found: &str| {
        DockerfileError::in_instruction(
            line.line,
            keyword,
            SyntaxProblem::Malformed {
                expected: "NAME=value pairs (or one NAME value)",
                found: found.to_string(),
            },
        )
    };
    let Some(first) = words.first() else {
        return Err(DockerfileError::in_instruction(
            line.line,
            keyword,
            SyntaxProblem::MissingArguments("at least one NAME=value"),
        ));
    };
    if !first.contains('=') {
        let rest = line.rest.trim();
        let Some(at) = rest.find(char::is_whitespace) else {
            return Err(malformed(rest));
        };
        return Ok(vec![(
            rest[..at].to_string(),
            rest[at..].trim_start().to_string(),
        )]);
    }
    words
        .iter()
        .map(|word| match word.split_once('=') {
            Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
            _ => Err(malformed(word)),
        })
        .collect()
}

/// A JSON array of strings, or (when `shell_ok`) the text as a shell-form command.
fn command(line: &LogicalLine, keyword: &str) -> Result<Command, DockerfileError> {
    let rest = line.rest.trim();
    // Text that is not a JSON array after all is a shell command, as in BuildKit.
    if let Some(values) = rest
        .starts_with('[')
        .then(|| serde_json::from_str::<Vec<serde_json::Value>>(rest).ok())
        .flatten()
    {
        let strings: Option<Vec<String>> = values
            .into_iter()
            .map(|value| match value {
                serde_json::Value::String(text) => Some(text),
                _ => None,
            })
            .collect();
        return strings.map(Command::Exec).ok_or_else(|| {
            DockerfileError::in_instruction(line.line, keyword, SyntaxProblem::JsonNotStrings)
        });
    }
    Ok(Command::Shell(line.rest.clone()))
}

/// A JSON array of strings or white-space separated words (COPY, ADD, VOLUME).
fn json_or_words(line: &LogicalLine, keyword: &str) -> Result<Vec<String>, DockerfileError> {
    match command(line, keyword)? {
        Command::Exec(words) => Ok(words),
        Command::Shell(text) => Ok(text.split_whitespace().map(str::to_string).collect()),
    }
}

fn one_value(
    line: &LogicalLine,
    keyword: &str,
    what: &'static str,
) -> Result<String, DockerfileError> {
    let rest = line.rest.trim();
    if rest.is_empty() {
        return Err(DockerfileError::in_instruction(
            line.line,
            keyword,
            SyntaxProblem::MissingArguments(what),
        ));
    }
    Ok(rest.to_string())
}

fn no_flags(line: &LogicalLine, keyword: &str) -> Result<(), DockerfileError> {
    flags(line, keyword, &line.flags).map(|_| ())
}

/// Types one logical line.
pub fn instruction(line: &LogicalLine, escape: char) -> Result<Instruction, DockerfileError> {
    let keyword = line.keyword.to_ascii_uppercase();
    let err = |problem| DockerfileError::in_instruction(line.line, &keyword, problem);
    let kind = match keyword.as_str() {
        "FROM" => {
            let flags = flags(line, &keyword, &line.flags)?;
            let words: Vec<&str> = line.rest.split_whitespace().collect();
            let (image, alias) = match words.as_slice() {
                [image] => (image.to_string(), None),
                [image, as_, name] if as_.eq_ignore_ascii_case("AS") => {
                    (image.to_string(), Some(name.to_string()))
                }
                [] => {
                    return Err(err(SyntaxProblem::MissingArguments(
                        "an image or stage name",
                    )));
                }
                _ => {
                    return Err(err(SyntaxProblem::Malformed {
                        expected: "IMAGE or IMAGE AS NAME",
                        found: line.rest.clone(),
                    }));
                }
            };
            let platform = flags.into_iter().find(|f| f.name == "platform");
            let platform = match platform {
                Some(Flag {
                    value: Some(value), ..
                }) => Some(value),
                Some(_) => return Err(err(SyntaxProblem::FlagNeedsValue("platform".into()))),
                None => None,
            };
            Kind::From {
                platform,
                image,
                alias,
            }
        }
        "ARG" => {
            no_flags(line, &keyword)?;
            let words = quoted_words(&line.rest, escape);
            if words.is_empty() {
                return Err(err(SyntaxProblem::MissingArguments(
                    "a NAME or NAME=default",
                )));
            }
            Kind::Arg(
                words
                    .into_iter()
                    .map(|word| match word.split_once('=') {
                        Some((name, default)) => ArgDecl {
                            name: name.to_string(),
                            default: Some(default.to_string()),
                        },
                        None => ArgDecl {
                            name: word,
                            default: None,
                        },
                    })
                    .collect(),
            )
        }
        "ENV" => {
            no_flags(line, &keyword)?;
            Kind::Env(name_values(line, &keyword, escape)?)
        }
        "LABEL" => {
            no_flags(line, &keyword)?;
            Kind::Label(name_values(line, &keyword, escape)?)
        }
        "RUN" => {
            let flags = flags(line, &keyword, &line.flags)?;
            let command = command(line, &keyword)?;
            if matches!(&command, Command::Shell(text) if text.trim().is_empty()) {
                return Err(err(SyntaxProblem::MissingArguments("a command")));
            }
            Kind::Run {
                flags,
                command,
                heredocs: line.heredocs.clone(),
            }
        }
        "COPY" | "ADD" => {
            let flags = flags(line, &keyword, &line.flags)?;
            let mut words = json_or_words(line, &keyword)?;
            if words.len() < 2 {
                return Err(err(SyntaxProblem::MissingArguments(
                    "at least one source and a destination",
                )));
            }
            let dest = words.pop().unwrap_or_default();
            let mut heredocs = line.heredocs.iter();
            let sources = words
                .into_iter()
                .map(|word| {
                    // A `<<NAME` source is the next heredoc's body.
                    let digits = word.chars().take_while(char::is_ascii_digit).count();
                    if word[digits..].starts_with("<<")
                        && let Some(doc) = heredocs.next()
                    {
                        return Source::Heredoc(doc.clone());
                    }
                    Source::Path(word)
                })
                .collect();
            Kind::Copy {
                add: keyword == "ADD",
                flags,
                sources,
                dest,
            }
        }
        "CMD" => {
            no_flags(line, &keyword)?;
            Kind::Cmd(command(line, &keyword)?)
        }
        "ENTRYPOINT" => {
            no_flags(line, &keyword)?;
            Kind::Entrypoint(command(line, &keyword)?)
        }
        "SHELL" => {
            no_flags(line, &keyword)?;
            match command(line, &keyword)? {
                Command::Exec(words) if !words.is_empty() => Kind::Shell(words),
                _ => {
                    return Err(err(SyntaxProblem::Malformed {
                        expected: "a JSON array, like [\"/bin/bash\", \"-c\"]",
                        found: line.rest.clone(),
                    }));
                }
            }
        }
        "WORKDIR" => {
            no_flags(line, &keyword)?;
            Kind::Workdir(one_value(line, &keyword, "a path")?)
        }
        "USER" => {
            no_flags(line, &keyword)?;
            Kind::User(one_value(
                line,
                &keyword,
                "a user (name or uid, optionally :group)",
            )?)
        }
        "EXPOSE" => {
            no_flags(line, &keyword)?;
            let ports: Vec<String> = line.rest.split_whitespace().map(str::to_string).collect();
            if ports.is_empty() {
                return Err(err(SyntaxProblem::MissingArguments("at least one port")));
            }
            Kind::Expose(ports)
        }
        "VOLUME" => {
            no_flags(line, &keyword)?;
            let volumes = json_or_words(line, &keyword)?;
            if volumes.is_empty() {
                return Err(err(SyntaxProblem::MissingArguments("at least one path")));
            }
            Kind::Volume(volumes)
        }
        "STOPSIGNAL" => {
            no_flags(line, &keyword)?;
            Kind::StopSignal(one_value(line, &keyword, "a signal")?)
        }
        "MAINTAINER" => {
            no_flags(line, &keyword)?;
            Kind::Maintainer(one_value(line, &keyword, "a name")?)
        }
        "HEALTHCHECK" => {
            let flags = flags(line, &keyword, &line.flags)?;
            let rest = line.rest.trim();
            let (kind, after) = match rest.find(char::is_whitespace) {
                Some(at) => (&rest[..at], rest[at..].trim_start()),
                None => (rest, ""),
            };
            if kind.eq_ignore_ascii_case("NONE") {
                if !after.is_empty() || !flags.is_empty() {
                    return Err(err(SyntaxProblem::Malformed {
                        expected: "NONE alone",
                        found: line.rest.clone(),
                    }));
                }
                Kind::Healthcheck(None)
            } else if kind.eq_ignore_ascii_case("CMD") && !after.is_empty() {
                let inner = LogicalLine {
                    rest: after.to_string(),
                    ..line.clone()
                };
                Kind::Healthcheck(Some((flags, command(&inner, &keyword)?)))
            } else {
                return Err(err(SyntaxProblem::Malformed {
                    expected: "NONE or CMD command",
                    found: line.rest.clone(),
                }));
            }
        }
        "ONBUILD" => {
            no_flags(line, &keyword)?;
            let trigger = one_value(line, &keyword, "an instruction")?;
            let inner = trigger
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_ascii_uppercase();
            if matches!(inner.as_str(), "ONBUILD" | "FROM" | "MAINTAINER") {
                return Err(err(SyntaxProblem::BadOnbuild(inner)));
            }
            // The trigger must itself be a valid instruction.
            let (keyword, flags, rest) = split_instruction(&trigger);
            instruction(
                &LogicalLine {
                    line: line.line,
                    keyword,
                    flags,
                    rest,
                    heredocs: line.heredocs.clone(),
                },
                escape,
            )?;
            Kind::Onbuild(trigger)
        }
        _ => return Err(err(SyntaxProblem::UnknownInstruction(line.keyword.clone()))),
    };
    Ok(Instruction {
        line: line.line,
        keyword,
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::super::lines::read;
    use super::*;

    fn parse(text: &str) -> Vec<Instruction> {
        let lines = read(text).unwrap();
        lines
            .instructions
            .iter()
            .map(|line| instruction(line, lines.escape).unwrap())
            .collect()
    }

    fn one(text: &str) -> Kind {
        parse(&format!("FROM a\n{text}\n")).swap_remove(1).kind
    }

    fn error(text: &str) -> String {
        let lines = read(text).unwrap();
        lines
            .instructions
            .iter()
            .map(|line| instruction(line, lines.escape))
            .find_map(Result::err)
            .unwrap()
            .to_string()
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn from_with_platform_and_alias() {
        assert_eq!(
            parse("FROM --platform=$BUILDPLATFORM golang:1.22 as build\n")[0].kind,
            Kind::From {
                platform: Some("$BUILDPLATFORM".into()),
                image: "golang:1.22".into(),
                alias: Some("build".into())
            }
        );
        assert_eq!(
            error("FROM a b\n"),
            "1: FROM: takes IMAGE or IMAGE AS NAME, not \"a b\""
        );
        assert_eq!(
            error("FROM --plat=x a\n"),
            "1: FROM: unknown flag --plat; it takes --platform"
        );
    }

    #[test]
    fn env_and_label_in_both_forms() {
        assert_eq!(
            one(r#"ENV A=1 B="x y" C=z\ w"#),
            Kind::Env(vec![
                ("A".into(), "1".into()),
                ("B".into(), "\"x y\"".into()),
                ("C".into(), "z\\ w".into())
            ])
        );
        assert_eq!(
            one("ENV D e  f"),
            Kind::Env(vec![("D".into(), "e  f".into())])
        );
        assert_eq!(
            one("LABEL org.opencontainers.image.title=\"My app\""),
            Kind::Label(vec![(
                "org.opencontainers.image.title".into(),
                "\"My app\"".into()
            )])
        );
        assert_eq!(
            error("FROM a\nENV A=1 B\n"),
            "2: ENV: takes NAME=value pairs (or one NAME value), not \"B\""
        );
        assert_eq!(
            error("FROM a\nENV LONELY\n"),
            "2: ENV: takes NAME=value pairs (or one NAME value), not \"LONELY\""
        );
    }

    #[test]
    fn arg_declarations() {
        assert_eq!(
            one("ARG A B=2 C=\"x y\""),
            Kind::Arg(vec![
                ArgDecl {
                    name: "A".into(),
                    default: None
                },
                ArgDecl {
                    name: "B".into(),
                    default: Some("2".into())
                },
                ArgDecl {
                    name: "C".into(),
                    default: Some("\"x y\"".into())
                },
            ])
        );
    }

    #[test]
    fn commands_in_exec_and_shell_form() {
        assert_eq!(
            one(r#"CMD ["echo", "a\"b"]"#),
            Kind::Cmd(Command::Exec(strings(&["echo", "a\"b"])))
        );
        assert_eq!(
            one("CMD echo $HOME"),
            Kind::Cmd(Command::Shell("echo $HOME".into()))
        );
        // Not valid JSON: the shell form, as BuildKit does.
        assert_eq!(
            one("ENTRYPOINT [oops"),
            Kind::Entrypoint(Command::Shell("[oops".into()))
        );
        assert_eq!(
            error("FROM a\nCMD [\"a\", 1]\n"),
            "2: CMD: a JSON array here must hold strings only"
        );
        assert_eq!(
            one("SHELL [\"/bin/bash\", \"-c\"]"),
            Kind::Shell(strings(&["/bin/bash", "-c"]))
        );
        assert!(error("FROM a\nSHELL /bin/bash -c\n").starts_with("2: SHELL: takes a JSON array"));
    }

    #[test]
    fn run_flags_and_heredocs() {
        let Kind::Run {
            flags,
            command,
            heredocs,
        } = one("RUN --mount=type=cache,target=/root/.cache --network=none <<EOF\nmake\nEOF")
        else {
            panic!("not a RUN");
        };
        assert_eq!(flags.len(), 2);
        assert_eq!(
            flags[1],
            Flag {
                name: "network".into(),
                value: Some("none".into())
            }
        );
        assert_eq!(command, Command::Shell("<<EOF".into()));
        assert_eq!(heredocs[0].body, "make\n");
        assert_eq!(
            error("FROM a\nRUN --mount=type=tmpfs,target=/t --networks=none x\n"),
            "2: RUN: unknown flag --networks; it takes --mount, --network, --security"
        );
        assert_eq!(
            error("FROM a\nRUN --network=none --network=host x\n"),
            "2: RUN: flag --network is given twice"
        );
        assert_eq!(error("FROM a\nRUN\n"), "2: RUN: needs a command");
    }

    #[test]
    fn copy_and_add_sources() {
        assert_eq!(
            one("COPY --from=build --chown=app:app /out/app /src/a* /usr/local/bin/"),
            Kind::Copy {
                add: false,
                flags: vec![
                    Flag {
                        name: "from".into(),
                        value: Some("build".into())
                    },
                    Flag {
                        name: "chown".into(),
                        value: Some("app:app".into())
                    }
                ],
                sources: vec![
                    Source::Path("/out/app".into()),
                    Source::Path("/src/a*".into())
                ],
                dest: "/usr/local/bin/".into()
            }
        );
        let Kind::Copy { sources, dest, .. } = one("COPY <<one <<two /etc/\n1\none\n2\ntwo") else {
            panic!("not a COPY");
        };
        assert_eq!(dest, "/etc/");
        let bodies: Vec<_> = sources
            .iter()
            .map(|s| match s {
                Source::Heredoc(doc) => (doc.name.as_str(), doc.body.as_str()),
                Source::Path(p) => (p.as_str(), ""),
            })
            .collect();
        assert_eq!(bodies, [("one", "1\n"), ("two", "2\n")]);
        assert_eq!(
            one(r#"ADD ["a b.tar", "/x y/"]"#),
            Kind::Copy {
                add: true,
                flags: vec![],
                sources: vec![Source::Path("a b.tar".into())],
                dest: "/x y/".into()
            }
        );
        assert_eq!(
            error("FROM a\nCOPY onlyone\n"),
            "2: COPY: needs at least one source and a destination"
        );
        assert!(
            error("FROM a\nCOPY --checksum=sha256:00 a b\n")
                .starts_with("2: COPY: unknown flag --checksum")
        );
    }

    #[test]
    fn the_config_instructions() {
        assert_eq!(
            one("EXPOSE 80 443/udp"),
            Kind::Expose(strings(&["80", "443/udp"]))
        );
        assert_eq!(one("VOLUME /a /b"), Kind::Volume(strings(&["/a", "/b"])));
        assert_eq!(one("VOLUME [\"/data\"]"), Kind::Volume(strings(&["/data"])));
        assert_eq!(one("STOPSIGNAL SIGINT"), Kind::StopSignal("SIGINT".into()));
        assert_eq!(one("USER app:app"), Kind::User("app:app".into()));
        assert_eq!(one("WORKDIR /src"), Kind::Workdir("/src".into()));
        assert_eq!(
            one("MAINTAINER Jo <jo@example.org>"),
            Kind::Maintainer("Jo <jo@example.org>".into())
        );
        assert_eq!(one("HEALTHCHECK NONE"), Kind::Healthcheck(None));
        assert_eq!(
            one(
                "HEALTHCHECK --interval=5s --retries=3 CMD [\"curl\", \"-f\", \"http://localhost/\"]"
            ),
            Kind::Healthcheck(Some((
                vec![
                    Flag {
                        name: "interval".into(),
                        value: Some("5s".into())
                    },
                    Flag {
                        name: "retries".into(),
                        value: Some("3".into())
                    }
                ],
                Command::Exec(strings(&["curl", "-f", "http://localhost/"]))
            )))
        );
        assert!(
            error("FROM a\nHEALTHCHECK curl x\n")
                .starts_with("2: HEALTHCHECK: takes NONE or CMD command")
        );
    }

    #[test]
    fn onbuild_records_its_trigger() {
        assert_eq!(
            one("ONBUILD RUN make -C /src"),
            Kind::Onbuild("RUN make -C /src".into())
        );
        assert_eq!(
            error("FROM a\nONBUILD FROM b\n"),
            "2: ONBUILD: ONBUILD cannot hold FROM"
        );
        assert_eq!(
            error("FROM a\nONBUILD NOPE x\n"),
            "2: NOPE: unknown instruction `NOPE`"
        );
    }

    #[test]
    fn unknown_instructions_are_named() {
        assert_eq!(
            error("FROM a\nCOPPY a b\n"),
            "2: COPPY: unknown instruction `COPPY`"
        );
    }

    #[test]
    fn a_platform_flag_needs_a_value() {
        assert_eq!(
            error("FROM --platform a\n"),
            "1: FROM: flag --platform needs a value (--platform=VALUE)"
        );
    }
}

//! What can be wrong with a Dockerfile, and where: every error names the line of the
//! instruction (`Dockerfile:12: COPY: …`), as BuildKit's do.

use super::words::WordError;

/// A problem at a line of the Dockerfile, with the instruction's keyword when there is
/// one; the file name is added by the caller that knows it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}: {}{problem}", instruction.as_deref().map(|i| format!("{i}: ")).unwrap_or_default())]
pub struct DockerfileError {
    pub line: usize,
    pub instruction: Option<String>,
    pub problem: SyntaxProblem,
}

impl DockerfileError {
    pub fn at(line: usize, problem: SyntaxProblem) -> DockerfileError {
        DockerfileError {
            line,
            instruction: None,
            problem,
        }
    }

    pub fn in_instruction(line: usize, keyword: &str, problem: SyntaxProblem) -> DockerfileError {
        DockerfileError {
            line,
            instruction: Some(keyword.to_ascii_uppercase()),
            problem,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyntaxProblem {
    #[error("invalid escape directive {0:?}: it must be \\ or `")]
    BadEscape(String),
    #[error("the {0} parser directive may be given only once")]
    RepeatedDirective(String),
    #[error("heredoc `{0}` is not terminated: no line `{0}` follows")]
    UnterminatedHeredoc(String),
    #[error("the file has no instructions")]
    NoInstructions,
    #[error("unknown instruction `{0}`")]
    UnknownInstruction(String),
    #[error("the file has no FROM instruction")]
    NoFrom,
    #[error("the first instruction must be FROM (or ARG before it), not {0}")]
    BeforeFrom(String),
    #[error("{0}")]
    Word(#[from] WordError),
    #[error("needs {0}")]
    MissingArguments(&'static str),
    #[error("takes {expected}, not {found:?}")]
    Malformed {
        expected: &'static str,
        found: String,
    },
    #[error("unknown flag --{flag}; it takes {known}")]
    UnknownFlag { flag: String, known: String },
    #[error("flag --{0} needs a value (--{0}=VALUE)")]
    FlagNeedsValue(String),
    #[error("flag --{0} is given twice")]
    RepeatedFlag(String),
    #[error("a JSON array here must hold strings only")]
    JsonNotStrings,
    #[error("ONBUILD cannot hold {0}")]
    BadOnbuild(String),
    #[error("not supported yet: {0}")]
    Unsupported(&'static str),
    #[error("{0}")]
    Invalid(String),
}

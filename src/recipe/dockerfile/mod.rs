//! The Dockerfile front end: BuildKit's Dockerfile syntax read into typed instructions,
//! for translation into the same build plan a recipe makes (one engine, two front ends;
//! DESIGN.md).
//!
//! ```text
//! text ──lines::read──▶ directives + logical lines (continuations, comments, heredocs)
//!      ──instructions::instruction──▶ typed instructions, still unexpanded
//! ```
//! Expansion of `$VAR` waits for the translation, which knows the ARG and ENV state at
//! each instruction and the platform being built.
//!
//! The parser is ours rather than a crate's: the one Rust crate that reads heredocs
//! (parse-dockerfile) takes them only at the start of a RUN (`RUN <<EOF`), not in the
//! `RUN python3 <<EOF` and `RUN cat <<EOF > file` forms real Dockerfiles use.

mod error;
mod instructions;
mod lines;
mod plan;
pub(super) mod skeleton;
mod words;

pub use error::{DockerfileError, SyntaxProblem};
pub use instructions::{ArgDecl, Command, Flag, Instruction, Kind, Source};
pub use lines::Heredoc;
pub use plan::{Stage, StageFrom, StagePlatform, StageRequest, plan_stage, stage_from};
pub use words::{Lexer, Vars, WordError};

/// A parsed Dockerfile: its parser directives and instructions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dockerfile {
    /// The escape character (`\`, or `` ` `` from `# escape=`).
    pub escape: char,
    /// `# syntax=`: accepted and not acted on (xbake reads the Dockerfile itself).
    pub syntax: Option<String>,
    /// `# check=`: accepted, no checks are run.
    pub check: Option<String>,
    pub instructions: Vec<Instruction>,
    /// What BuildKit accepts with a warning, as `line: message`.
    pub warnings: Vec<(usize, String)>,
}

impl Dockerfile {
    /// Parses Dockerfile text; errors name the line and the instruction.
    pub fn parse(text: &str) -> Result<Dockerfile, DockerfileError> {
        let lines = lines::read(text)?;
        let instructions = lines
            .instructions
            .iter()
            .map(|line| instructions::instruction(line, lines.escape))
            .collect::<Result<Vec<_>, _>>()?;
        // Only ARGs may come before the first FROM (they parameterise the FROM lines).
        if let Some(first) = instructions
            .iter()
            .find(|i| !matches!(i.kind, Kind::Arg(_)))
            .filter(|i| !matches!(i.kind, Kind::From { .. }))
        {
            return Err(DockerfileError::in_instruction(
                first.line,
                &first.keyword,
                SyntaxProblem::BeforeFrom(first.keyword.clone()),
            ));
        }
        if !instructions
            .iter()
            .any(|i| matches!(i.kind, Kind::From { .. }))
        {
            let last = instructions.last().map_or(1, |i| i.line);
            return Err(DockerfileError::at(last, SyntaxProblem::NoFrom));
        }
        Ok(Dockerfile {
            escape: lines.escape,
            syntax: lines.syntax,
            check: lines.check,
            instructions,
            warnings: lines.warnings,
        })
    }

    /// The ARGs before the first FROM: usable in FROM lines, and in a stage that
    /// declares them again without a value.
    pub fn global_args(&self) -> impl Iterator<Item = &ArgDecl> {
        self.instructions
            .iter()
            .take_while(|i| !matches!(i.kind, Kind::From { .. }))
            .flat_map(|i| match &i.kind {
                Kind::Arg(decls) => decls.as_slice(),
                _ => &[],
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MULTI_STAGE: &str = r#"# syntax=docker/dockerfile:1.7
ARG GO_VERSION=1.22
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
ARG TARGETOS TARGETARCH
WORKDIR /src
COPY go.* ./
RUN --mount=type=cache,target=/root/go/pkg/mod \
    go mod download
COPY . .
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -o /out/app .

FROM gcr.example/distroless/static AS runtime
COPY --from=build /out/app /app
USER 65532:65532
ENTRYPOINT ["/app"]
"#;

    #[test]
    fn a_multi_stage_dockerfile() {
        let file = Dockerfile::parse(MULTI_STAGE).unwrap();
        assert_eq!(file.syntax.as_deref(), Some("docker/dockerfile:1.7"));
        let keywords: Vec<_> = file
            .instructions
            .iter()
            .map(|i| (i.line, i.keyword.as_str()))
            .collect();
        assert_eq!(
            keywords,
            [
                (2, "ARG"),
                (3, "FROM"),
                (4, "ARG"),
                (5, "WORKDIR"),
                (6, "COPY"),
                (7, "RUN"),
                (9, "COPY"),
                (10, "RUN"),
                (12, "FROM"),
                (13, "COPY"),
                (14, "USER"),
                (15, "ENTRYPOINT")
            ]
        );
        let globals: Vec<_> = file.global_args().map(|a| a.name.as_str()).collect();
        assert_eq!(globals, ["GO_VERSION"]);
    }

    #[test]
    fn only_args_before_the_first_from() {
        let err = Dockerfile::parse("ARG A\nRUN echo\nFROM a\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "2: RUN: the first instruction must be FROM (or ARG before it), not RUN"
        );
        let err = Dockerfile::parse("ARG A\n").unwrap_err();
        assert_eq!(err.to_string(), "1: the file has no FROM instruction");
    }
}

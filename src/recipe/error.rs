//! What can be wrong with a recipe, and where. Every problem found in the recipe text
//! carries the `file:line:column` of the offending YAML node (DESIGN.md, decision 6).

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::platform::PlatformError;

/// A place in a recipe file. Lines and columns are 1-based and count characters, as
/// editors do.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    #[error("cannot read recipe {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },

    /// The YAML parser or the schema (unknown key, wrong type, missing field) rejected
    /// the document; the message is serde-saphyr's.
    #[error("{at}: {message}")]
    Yaml { at: Location, message: String },

    /// A YAML failure the parser could not place (invalid UTF-8, for one).
    #[error("{}: {message}", file.display())]
    YamlUnplaced { file: PathBuf, message: String },

    /// The document is well-formed YAML of the right shape, but a value is wrong.
    #[error("{at}: {problem}")]
    Invalid { at: Location, problem: Problem },

    /// `--target NAME` names no stage.
    #[error("--target {name}: the recipe has no such stage; its stages: {known}")]
    UnknownStage { name: String, known: String },

    /// A Dockerfile problem, at its line: `Dockerfile:12: COPY: …`.
    #[error("{}:{error}", file.display())]
    Dockerfile {
        file: PathBuf,
        error: super::dockerfile::DockerfileError,
    },

    /// A `--build-arg` given on the command line (it has no place in the recipe).
    #[error("--build-arg {name}: {problem}")]
    BuildArg { name: String, problem: Problem },
}

impl RecipeError {
    /// The recipe location of the error, when it has one.
    pub fn location(&self) -> Option<&Location> {
        match self {
            RecipeError::Yaml { at, .. } | RecipeError::Invalid { at, .. } => Some(at),
            _ => None,
        }
    }
}

/// The steps' keys, shown when a step has an unknown one.
pub(super) const STEP_KEYS: &str =
    "run (with network, normalize, mounts), copy (with from, to, mode, owner), env, workdir, user";

/// One thing wrong with one value; [`RecipeError::Invalid`] adds where.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    // ---- step shape ----
    #[error("unknown key `{key}` in a step; expected one of {STEP_KEYS}")]
    UnknownStepKey { key: String },
    #[error("a step needs one of run, copy, env, workdir, user")]
    NoStepKind,
    #[error(
        "a step has exactly one of run, copy, env, workdir, user, but this one has both \
         `{first}` and `{second}`"
    )]
    TwoStepKinds { first: String, second: String },
    #[error("`{key}` belongs on a {owner} step, not on a {kind} step")]
    KeyOnWrongStep {
        key: String,
        kind: &'static str,
        owner: &'static str,
    },
    #[error("a copy step needs `to:`, the destination path in the image")]
    MissingCopyDestination,
    #[error("empty copy destination `to:`")]
    EmptyCopyDestination,
    #[error("a copy step needs at least one source")]
    NoCopySources,
    #[error("empty copy source")]
    EmptyCopySource,
    #[error("empty run command")]
    EmptyRun,
    #[error("an env step needs at least one NAME: value")]
    EmptyEnvStep,

    // ---- single values ----
    #[error("{0}")]
    BadPlatform(PlatformError),
    #[error("invalid mode {value:?}: expected octal permission bits up to 7777, like \"0644\"")]
    BadMode { value: String },
    #[error("invalid owner {value:?}: expected a numeric uid or uid:gid, like \"1000:1000\"")]
    BadOwner { value: String },
    #[error("invalid network {value:?}: expected private, host or none")]
    BadNetwork { value: String },
    #[error(
        "invalid {what} name {name:?}: expected letters, digits and _, not starting with a digit"
    )]
    BadName { what: &'static str, name: String },
    #[error("{name} is set by xbake for each platform; it cannot be a build arg")]
    ReservedArg { name: String },
    #[error("workdir {value:?} must be an absolute path")]
    RelativeWorkdir { value: String },
    #[error("invalid user {value:?}: expected name, uid, uid:gid or name:group")]
    BadUser { value: String },
    #[error(
        "invalid exposed port {value:?}: expected PORT or PORT/tcp, PORT/udp, PORT/sctp with PORT 1-65535"
    )]
    BadPort { value: String },
    #[error(
        "invalid stop signal {value:?}: expected a signal name like SIGTERM or TERM, or a number 1-64"
    )]
    BadStopSignal { value: String },
    #[error("volume {value:?} must be an absolute path")]
    RelativeVolume { value: String },
    #[error("empty label key")]
    EmptyLabelKey,
    #[error("empty annotation key")]
    EmptyAnnotationKey,
    #[error("invalid {what} {value:?}: expected a duration like 30s, 1m30s or 500ms")]
    BadDuration { what: &'static str, value: String },
    #[error("{what} {value:?} is shorter than 1ms, Docker's minimum (0 means the default)")]
    DurationTooShort { what: &'static str, value: String },
    #[error("healthcheck retries must be between 0 and 2147483647, not {value}")]
    BadRetries { value: i64 },
    #[error(
        "invalid healthcheck test: {reason}; expected a command string (run by the \
         image's shell), [\"CMD\", program, args…], [\"CMD-SHELL\", command] or [\"NONE\"]"
    )]
    BadHealthcheckTest { reason: String },
    #[error("`{key}` has no meaning with the healthcheck test [\"NONE\"], which turns checks off")]
    HealthcheckNoneOption { key: &'static str },
    #[error("shell must be an exec-form list with the program first, like [\"/bin/bash\", \"-c\"]")]
    BadShell,
    #[error("source_date_epoch must be zero or positive, not {value}")]
    NegativeEpoch { value: i64 },

    // ---- variables ----
    #[error("unknown variable ${{{name}}}; known: {known}")]
    UnknownVariable { name: String, known: String },
    #[error("unterminated ${{ in {text:?}; write $$ for a literal $")]
    UnterminatedVariable { text: String },
    #[error(
        "invalid variable reference ${{{name}}} in {text:?}: expected ${{NAME}}, \
         ${{NAME:-default}}, ${{NAME:+alternative}}, ${{NAME:?message}} (each also without \
         the colon), ${{NAME#prefix}}, ${{NAME##prefix}}, ${{NAME%suffix}} or ${{NAME%%suffix}}"
    )]
    BadVariable { name: String, text: String },
    /// `${NAME?message}` or `${NAME:?message}` with NAME unset (or empty).
    #[error("{name}: {message}")]
    RequiredVariable { name: String, message: String },

    // ---- from: ----
    #[error("empty `from:`; expected scratch, rootfs:FILE, oci:DIR[:tag] or an image reference")]
    EmptyFrom,
    #[error("rootfs base {path:?} must be a .tar, .tar.gz, .tgz, .tar.xz or .tar.zst file")]
    BadRootfsExtension { path: String },
    #[error("{what} {path:?} leaves the recipe folder")]
    EscapesRecipeDir { what: &'static str, path: String },
    #[error("invalid oci layout base {text:?}: expected oci:DIR or oci:DIR:tag")]
    BadOciLayout { text: String },
    #[error(
        "{text:?} is not supported as a base yet; expected scratch, rootfs:FILE, oci:DIR[:tag] or an image reference"
    )]
    UnsupportedBase { text: String },
    #[error("invalid image reference {text:?}: it may not contain spaces")]
    BadImageRef { text: String },

    // ---- stages ----
    #[error(
        "invalid stage name {name:?}: expected lower-case letters, digits, `-`, `_` and `.`, \
         starting with a letter (and not `scratch`)"
    )]
    BadStageName { name: String },
    #[error("invalid stage platform {value:?}: expected build, target or a platform ({problem})")]
    BadStagePlatform { value: String, problem: String },
    #[error("stage {name} depends on itself: {cycle}")]
    StageCycle { name: String, cycle: String },
    #[error("copy from {from:?}: sources are paths inside it; {pattern:?} may not contain `..`")]
    BadCopyFromSource { from: String, pattern: String },

    // ---- run mounts ----
    #[error("unknown mount type {value:?}: expected cache, secret, bind or tmpfs")]
    BadMountType { value: String },
    #[error("a {kind} mount has no `{key}`; it takes {allowed}")]
    MountKeyNotAllowed {
        kind: &'static str,
        key: &'static str,
        allowed: &'static str,
    },
    #[error("a {kind} mount needs `{key}`")]
    MountKeyMissing {
        kind: &'static str,
        key: &'static str,
    },
    #[error(
        "mount target {value:?} must be an absolute path other than / (and not in /proc, /dev or /sys)"
    )]
    BadMountTarget { value: String },
    #[error("invalid sharing {value:?}: expected shared, private or locked")]
    BadSharing { value: String },
    #[error("invalid secret id {value:?}: expected letters, digits, `-`, `_` and `.`")]
    BadSecretId { value: String },
    #[error("invalid size {value:?}: expected bytes, or a number with k, m or g (like 64m)")]
    BadSize { value: String },
    #[error("two mounts of this step have the target {target}")]
    DuplicateMountTarget { target: String },

    // ---- copy sources on disk ----
    #[error("copy source {pattern:?} must be relative to the recipe folder")]
    AbsoluteCopySource { pattern: String },
    #[error("copy source {pattern:?} resolves to {}, outside the build context {}", resolved.display(), dir.display())]
    CopySourceEscapes {
        pattern: String,
        resolved: PathBuf,
        dir: PathBuf,
    },
    #[error("copy source {pattern:?} matches nothing in {}", dir.display())]
    CopyNoMatch { pattern: String, dir: PathBuf },
    #[error("copy source {pattern:?} matches nothing that {} lets through ({excluded} excluded)", ignore_file.display())]
    CopyAllIgnored {
        pattern: String,
        excluded: usize,
        ignore_file: PathBuf,
    },
    #[error("invalid copy pattern {pattern:?}: {message}")]
    BadCopyPattern { pattern: String, message: String },
    #[error("copy source {}: {source}", path.display())]
    CopySourceUnreadable { path: PathBuf, source: io::Error },
}

/// A position in the recipe text, before the file name is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(super) struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    pub fn of(location: &serde_saphyr::Location) -> Pos {
        Pos {
            line: usize::try_from(location.line()).unwrap_or(usize::MAX),
            column: usize::try_from(location.column()).unwrap_or(usize::MAX),
        }
    }

    pub fn in_file(self, file: &std::path::Path) -> Location {
        Location {
            file: file.to_path_buf(),
            line: self.line,
            column: self.column,
        }
    }
}

/// A problem at a position: what the pure parts of the module return, so they need not
/// know the file name. The public entry points turn it into [`RecipeError::Invalid`].
#[derive(Debug)]
pub(super) struct Flaw {
    pub at: Pos,
    pub problem: Problem,
}

impl Flaw {
    pub fn in_file(self, file: &std::path::Path) -> RecipeError {
        RecipeError::Invalid {
            at: self.at.in_file(file),
            problem: self.problem,
        }
    }
}

impl Problem {
    pub(super) fn at(self, at: Pos) -> Flaw {
        Flaw { at, problem: self }
    }
}

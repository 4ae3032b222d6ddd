//! A Dockerfile's stage expanded for one platform into the builder's [`Plan`], the same
//! plan a recipe makes: the Dockerfile front end ends here, and running, caching,
//! layers and output are the engine's, shared.
//!
//! BuildKit's rules, followed here:
//! - ARGs before the first FROM are for FROM lines only, with the automatic TARGET*/
//!   BUILD* args; a stage sees an ARG from the line that declares it, and a stage ARG
//!   without a default takes the global one. An ARG is in the environment of the RUN
//!   steps after it, under any ENV of the same name (ENV wins), and never in the image
//!   config. Unlike recipes, nothing else is put in RUN's environment (no TARGET*, no
//!   GOOS/GOARCH unless declared), so a Dockerfile means what it means under buildx.
//! - Every value but RUN, CMD and ENTRYPOINT commands is expanded with the stage's ARGs
//!   and ENV as they stand *before* the instruction (`ENV A=1 B=$A` gives B the old A).
//! - WORKDIR and relative COPY destinations are relative to the current WORKDIR.
//! - `RUN <<EOF` alone runs the heredoc as the script; other heredocs go to the shell
//!   with the command line (`cmd <<EOF` + body + terminator), as BuildKit does.

use std::path::{Path, PathBuf};

use super::Dockerfile;
use super::error::{DockerfileError, SyntaxProblem};
use super::instructions::{ArgDecl, Command, Flag, Instruction, Kind, Source};
use super::lines::Heredoc;
use super::words::{Lexer, Vars};
use crate::platform::Platform;
use crate::recipe::base::BaseRef;
use crate::recipe::builtin_vars::{is_reserved_name, platform_vars};
use crate::recipe::error::Location;
use crate::recipe::fields::{
    is_valid_stop_signal, is_valid_user, normalize_port, parse_duration, parse_mode, parse_owner,
};
use crate::recipe::plan::{
    CacheSharing, ConfigSpec, CopyFrom, CopyOwner, DEFAULT_SHELL, Healthcheck, Network, Plan,
    PlanStep, RunCommand, RunMount, RunMountKind, StepKind,
};

type Pairs = Vec<(String, String)>;

/// One stage: its FROM and the instructions up to the next FROM.
#[derive(Clone, Debug)]
pub struct Stage<'a> {
    pub index: usize,
    /// `AS name`, lower-cased as BuildKit compares them.
    pub alias: Option<String>,
    pub from: &'a Instruction,
    pub body: &'a [Instruction],
}

impl Stage<'_> {
    /// What `--from=` and `FROM` may call it: its alias, else its index.
    pub fn name(&self) -> String {
        self.alias.clone().unwrap_or_else(|| self.index.to_string())
    }
}

impl Dockerfile {
    /// The stages in file order.
    pub fn stages(&self) -> Vec<Stage<'_>> {
        let starts: Vec<usize> = self
            .instructions
            .iter()
            .enumerate()
            .filter(|(_, i)| matches!(i.kind, Kind::From { .. }))
            .map(|(at, _)| at)
            .collect();
        starts
            .iter()
            .enumerate()
            .map(|(index, &at)| {
                let end = starts
                    .get(index + 1)
                    .copied()
                    .unwrap_or(self.instructions.len());
                let from = &self.instructions[at];
                let alias = match &from.kind {
                    Kind::From { alias, .. } => alias.as_ref().map(|a| a.to_ascii_lowercase()),
                    _ => None,
                };
                Stage {
                    index,
                    alias,
                    from,
                    body: &self.instructions[at + 1..end],
                }
            })
            .collect()
    }
}

/// What planning a stage needs besides the Dockerfile.
pub struct StageRequest<'a> {
    /// The Dockerfile's path, for the steps' locations.
    pub file: &'a Path,
    /// The context folder (relative `oci:`/`rootfs:` bases start there).
    pub dir: &'a Path,
    pub target: &'a Platform,
    pub build: &'a Platform,
    /// `--build-arg NAME=value`, later ones winning.
    pub build_args: &'a [(String, String)],
    /// The environment the stage's base leaves (its image config's Env).
    pub base_env: &'a [(String, String)],
    /// The base's ONBUILD triggers (its config's `OnBuild`): run before the stage's own
    /// instructions, as Docker does.
    pub base_triggers: &'a [String],
}

/// Where a stage runs, from its `FROM --platform=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StagePlatform {
    Target,
    Build,
    Fixed(Platform),
}

/// The expanded FROM of a stage: where it runs, and its base (another stage or an image).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StageFrom {
    pub platform: StagePlatform,
    pub base: BaseRef,
    /// The image text as expanded, for the history.
    pub text: String,
}

/// Variables: ENV over ARG, as BuildKit's lookup does.
struct Scope<'a> {
    env: &'a Pairs,
    args: &'a Pairs,
}

impl Vars for Scope<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        Vars::get(self.env.as_slice(), name).or_else(|| Vars::get(self.args.as_slice(), name))
    }
}

fn set(pairs: &mut Pairs, name: &str, value: String) {
    match pairs.iter_mut().find(|(n, _)| n == name) {
        Some(slot) => slot.1 = value,
        None => pairs.push((name.to_string(), value)),
    }
}

fn build_arg<'r>(request: &'r StageRequest, name: &str) -> Option<&'r str> {
    Vars::get(request.build_args, name)
}

/// The global ARGs (before the first FROM) with their values, after the automatic
/// platform args: what FROM lines see.
fn global_scope(file: &Dockerfile, request: &StageRequest) -> Result<Pairs, DockerfileError> {
    let mut args = platform_vars(request.target, request.build);
    let lexer = Lexer::new(file.escape);
    for instruction in file
        .instructions
        .iter()
        .take_while(|i| !matches!(i.kind, Kind::From { .. }))
    {
        let Kind::Arg(decls) = &instruction.kind else {
            continue;
        };
        for decl in decls {
            let value = declared_value(
                &lexer,
                instruction,
                decl,
                request,
                &Pairs::new(),
                &args,
                None,
            )?;
            if let Some(value) = value {
                set(&mut args, &decl.name, value);
            }
        }
    }
    Ok(args)
}

/// An ARG's value where it is declared: the `--build-arg`, else its default expanded,
/// else (in a stage) the global ARG's or the automatic platform value; None if unset.
fn declared_value(
    lexer: &Lexer,
    instruction: &Instruction,
    decl: &ArgDecl,
    request: &StageRequest,
    env: &Pairs,
    args: &Pairs,
    globals: Option<&Pairs>,
) -> Result<Option<String>, DockerfileError> {
    let err = |problem| DockerfileError::in_instruction(instruction.line, "ARG", problem);
    if !crate::recipe::fields::is_var_name(&decl.name) {
        return Err(err(SyntaxProblem::Invalid(format!(
            "invalid ARG name {:?}: expected letters, digits and _, not starting with a digit",
            decl.name
        ))));
    }
    if is_reserved_name(&decl.name) {
        // The automatic platform args: declaring one brings it into scope; its value is
        // the platform's, whatever the default says (as in BuildKit).
        let automatic = platform_vars(request.target, request.build);
        return Ok(Vars::get(automatic.as_slice(), &decl.name).map(str::to_string));
    }
    if let Some(value) = build_arg(request, &decl.name) {
        return Ok(Some(value.to_string()));
    }
    if let Some(default) = &decl.default {
        let scope = Scope { env, args };
        return lexer
            .word(default, &scope)
            .map(Some)
            .map_err(|e| err(e.into()));
    }
    Ok(globals
        .and_then(|g| Vars::get(g.as_slice(), &decl.name))
        .map(str::to_string))
}

/// The stage's FROM, expanded with the global scope.
pub fn stage_from(
    file: &Dockerfile,
    index: usize,
    request: &StageRequest,
) -> Result<StageFrom, DockerfileError> {
    let stages = file.stages();
    let stage = &stages[index];
    let globals = global_scope(file, request)?;
    let lexer = Lexer::new(file.escape);
    let Kind::From {
        platform, image, ..
    } = &stage.from.kind
    else {
        unreachable!("a stage starts with FROM");
    };
    let err = |problem| DockerfileError::in_instruction(stage.from.line, "FROM", problem);
    let scope = Scope {
        env: &Pairs::new(),
        args: &globals,
    };
    let platform = match platform {
        None => StagePlatform::Target,
        Some(text) => {
            let value = lexer.word(text, &scope).map_err(|e| err(e.into()))?;
            if text.contains("BUILDPLATFORM") && value == request.build.to_string() {
                StagePlatform::Build
            } else if text.contains("TARGETPLATFORM") && value == request.target.to_string() {
                StagePlatform::Target
            } else {
                StagePlatform::Fixed(value.parse().map_err(
                    |e: crate::platform::PlatformError| {
                        err(SyntaxProblem::Invalid(format!("--platform={value}: {e}")))
                    },
                )?)
            }
        }
    };
    let text = lexer.word(image, &scope).map_err(|e| err(e.into()))?;
    let base = match earlier_stage(&stages[..index], &text) {
        Some(name) => BaseRef::Stage(name),
        None => BaseRef::parse(&text, request.dir)
            .map_err(|problem| err(SyntaxProblem::Invalid(problem.to_string())))?,
    };
    Ok(StageFrom {
        platform,
        base,
        text,
    })
}

/// A stage before this point named `text` (aliases compare case-insensitively).
fn earlier_stage(stages: &[Stage], text: &str) -> Option<String> {
    let wanted = text.to_ascii_lowercase();
    stages
        .iter()
        .rev()
        .find(|s| s.alias.as_deref() == Some(wanted.as_str()))
        .map(Stage::name)
}

/// The running state of a stage while its instructions are read.
struct StageState {
    env: Pairs,
    /// Declared ARGs with a value, in declaration order.
    args: Pairs,
    workdir: String,
    shell: Option<Vec<String>>,
    config: ConfigSpec,
    cmd_set: bool,
    steps: Vec<PlanStep>,
}

/// Expands stage `index` for `request.target`.
pub fn plan_stage(
    file: &Dockerfile,
    index: usize,
    request: &StageRequest,
) -> Result<Plan, DockerfileError> {
    let stages = file.stages();
    let stage = &stages[index];
    let from = stage_from(file, index, request)?;
    let globals = global_scope(file, request)?;
    let runs_on = match from.platform {
        StagePlatform::Target => *request.target,
        StagePlatform::Build => *request.build,
        StagePlatform::Fixed(p) => p,
    };
    let lexer = Lexer::new(file.escape);
    // As BuildKit (and buildah): a stage whose base sets no PATH (scratch among them)
    // gets the default one, in its steps and in its image's config.
    let default_path: Vec<(String, String)> = if request.base_env.iter().any(|(k, _)| k == "PATH") {
        Vec::new()
    } else {
        vec![("PATH".into(), crate::sandbox::init::DEFAULT_PATH.into())]
    };
    let mut state = StageState {
        env: [request.base_env, &default_path].concat(),
        args: Pairs::new(),
        workdir: "/".into(),
        shell: None,
        config: ConfigSpec::default(),
        cmd_set: false,
        steps: Vec::new(),
    };
    let triggers = base_triggers(file, stage.from, request.base_triggers)?;
    for instruction in triggers.iter().chain(stage.body) {
        let step = translate(
            &lexer,
            instruction,
            &mut state,
            &Context {
                request,
                globals: &globals,
                earlier: &stages[..index],
            },
        )?;
        if let Some(kind) = step {
            let is_run = matches!(kind, StepKind::Run { .. });
            state.steps.push(PlanStep {
                number: state.steps.len() + 1,
                location: Location {
                    file: request.file.to_path_buf(),
                    line: instruction.line,
                    column: 1,
                },
                normalize: is_run,
                shell: state.shell.clone().filter(|_| is_run),
                kind,
            });
        }
    }
    state.config.labels.sort();
    Ok(Plan {
        stage: super::skeleton::stage_name(stage, stages.len()),
        platform: runs_on,
        target: *request.target,
        from: from.base,
        from_text: from.text,
        args: state.args.clone(),
        build_env: Vec::new(),
        env: default_path,
        workdir: None,
        steps: state.steps,
        config: state.config,
        source_date_epoch: None,
        warnings: unused_build_args(file, request),
    })
}

/// The base's ONBUILD triggers as instructions, placed at the FROM line that runs them.
/// They come from an image, so are read as untrusted as the Dockerfile itself.
fn base_triggers(
    file: &Dockerfile,
    from: &Instruction,
    triggers: &[String],
) -> Result<Vec<Instruction>, DockerfileError> {
    let mut out = Vec::with_capacity(triggers.len());
    for trigger in triggers {
        let bad = |problem: SyntaxProblem| {
            DockerfileError::in_instruction(
                from.line,
                "FROM",
                SyntaxProblem::Invalid(format!("the base's ONBUILD {trigger:?}: {problem}")),
            )
        };
        let (keyword, flags, rest) = super::lines::split_instruction(trigger);
        if matches!(
            keyword.to_ascii_uppercase().as_str(),
            "ONBUILD" | "FROM" | "MAINTAINER"
        ) {
            return Err(bad(SyntaxProblem::BadOnbuild(keyword.to_ascii_uppercase())));
        }
        let line = super::lines::LogicalLine {
            line: from.line,
            keyword,
            flags,
            rest,
            heredocs: Vec::new(),
        };
        let instruction =
            super::instructions::instruction(&line, file.escape).map_err(|e| bad(e.problem))?;
        // `--allow network.host` is granted before any base is read, for the RUN steps
        // the Dockerfile itself shows; a base image cannot ask for the host's network.
        if let Kind::Run { flags, .. } = &instruction.kind
            && flags
                .iter()
                .any(|f| f.name == "network" && f.value.as_deref() == Some("host"))
        {
            return Err(bad(SyntaxProblem::Invalid(
                "a base image's trigger may not ask for the host's network".into(),
            )));
        }
        out.push(instruction);
    }
    Ok(out)
}

/// `--build-arg`s no ARG anywhere declares: still used nowhere, with a warning, as
/// docker says "one or more build-args were not consumed".
fn unused_build_args(file: &Dockerfile, request: &StageRequest) -> Vec<String> {
    let declared = |name: &str| {
        file.instructions.iter().any(|i| match &i.kind {
            Kind::Arg(decls) => decls.iter().any(|d| d.name == name),
            _ => false,
        })
    };
    let mut out: Vec<String> = Vec::new();
    for (name, _) in request.build_args {
        let warning = format!(
            "build arg {name} is not declared by any ARG in {}",
            request.file.display()
        );
        if !declared(name) && !out.contains(&warning) {
            out.push(warning);
        }
    }
    out
}

struct Context<'a> {
    request: &'a StageRequest<'a>,
    globals: &'a Pairs,
    earlier: &'a [Stage<'a>],
}

fn unsupported(instruction: &Instruction, what: &'static str) -> DockerfileError {
    DockerfileError::in_instruction(
        instruction.line,
        &instruction.keyword,
        SyntaxProblem::Unsupported(what),
    )
}

/// One instruction: the step it makes (None for what only changes the config or the
/// scope).
fn translate(
    lexer: &Lexer,
    instruction: &Instruction,
    state: &mut StageState,
    context: &Context,
) -> Result<Option<StepKind>, DockerfileError> {
    let err =
        |problem| DockerfileError::in_instruction(instruction.line, &instruction.keyword, problem);
    let invalid = |message: String| err(SyntaxProblem::Invalid(message));
    // Values are expanded with the scope as it was before this instruction.
    let scope_env = state.env.clone();
    let scope_args = state.args.clone();
    let scope = Scope {
        env: &scope_env,
        args: &scope_args,
    };
    let word = |text: &str| lexer.word(text, &scope).map_err(|e| err(e.into()));
    Ok(match &instruction.kind {
        Kind::From { .. } => unreachable!("stages are split at FROM"),
        Kind::Arg(decls) => {
            for decl in decls {
                let value = declared_value(
                    lexer,
                    instruction,
                    decl,
                    context.request,
                    &state.env,
                    &state.args,
                    Some(context.globals),
                )?;
                if let Some(value) = value {
                    set(&mut state.args, &decl.name, value);
                }
            }
            None
        }
        Kind::Env(pairs) => {
            let mut vars = Pairs::new();
            for (name, value) in pairs {
                let name = word(name)?;
                if !crate::recipe::fields::is_var_name(&name) {
                    return Err(invalid(format!("invalid ENV name {name:?}")));
                }
                vars.push((name, word(value)?));
            }
            for (name, value) in &vars {
                set(&mut state.env, name, value.clone());
            }
            Some(StepKind::Env(vars))
        }
        Kind::Label(pairs) => {
            for (name, value) in pairs {
                let name = word(name)?;
                if name.is_empty() {
                    return Err(invalid("empty LABEL key".into()));
                }
                let value = word(value)?;
                set(&mut state.config.labels, &name, value);
            }
            None
        }
        // The image's author, as BuildKit and buildah record it, and the `maintainer`
        // label that docker's documentation gives as MAINTAINER's replacement, for the
        // tools that read only labels.
        Kind::Maintainer(name) => {
            state.config.author = Some(name.clone());
            set(&mut state.config.labels, "maintainer", name.clone());
            None
        }
        Kind::Workdir(dir) => {
            let dir = word(dir)?;
            state.workdir = join(&state.workdir, &dir);
            Some(if state.workdir == "/" {
                StepKind::Workdir(state.workdir.clone())
            } else {
                StepKind::MakeWorkdir(state.workdir.clone())
            })
        }
        Kind::User(user) => {
            let user = word(user)?;
            if !is_valid_user(&user) {
                return Err(invalid(format!(
                    "invalid user {user:?}: expected name, uid, uid:gid or name:group"
                )));
            }
            state.config.user = Some(user.clone());
            Some(StepKind::User(user))
        }
        Kind::Run {
            flags,
            command,
            heredocs,
        } => Some(run_step(
            lexer,
            instruction,
            flags,
            command,
            heredocs,
            state,
            context,
            &scope,
        )?),
        Kind::Copy {
            add,
            flags,
            sources,
            dest,
        } => Some(copy_step(
            instruction,
            *add,
            flags,
            sources,
            dest,
            state,
            context,
            &word,
            &|text: &str| {
                let body = Lexer {
                    heredoc: true,
                    ..*lexer
                };
                body.word(text, &scope).map_err(|e| err(e.into()))
            },
        )?),
        Kind::Cmd(command) => {
            state.config.cmd = Some(config_command(command, &state.shell));
            state.cmd_set = true;
            None
        }
        Kind::Entrypoint(command) => {
            state.config.entrypoint = Some(config_command(command, &state.shell));
            // An ENTRYPOINT resets the CMD the base left, not one this stage set.
            if !state.cmd_set {
                state.config.cmd = None;
            }
            None
        }
        Kind::Shell(shell) => {
            state.shell = Some(shell.clone());
            state.config.shell = Some(shell.clone());
            None
        }
        Kind::Expose(ports) => {
            for port in ports {
                for port in lexer.words(port, &scope).map_err(|e| err(e.into()))? {
                    let normalized = normalize_port(&port).ok_or_else(|| {
                        invalid(format!(
                            "invalid port {port:?}: expected PORT or PORT/tcp|udp|sctp"
                        ))
                    })?;
                    if !state.config.exposed_ports.contains(&normalized) {
                        state.config.exposed_ports.push(normalized);
                    }
                }
            }
            None
        }
        Kind::Volume(volumes) => {
            for volume in volumes {
                let volume = word(volume)?;
                if !volume.starts_with('/') {
                    return Err(invalid(format!(
                        "volume {volume:?} must be an absolute path"
                    )));
                }
                if !state.config.volumes.contains(&volume) {
                    state.config.volumes.push(volume);
                }
            }
            None
        }
        Kind::StopSignal(signal) => {
            let signal = word(signal)?;
            if !is_valid_stop_signal(&signal) {
                return Err(invalid(format!("invalid stop signal {signal:?}")));
            }
            state.config.stop_signal = Some(signal);
            None
        }
        Kind::Healthcheck(check) => {
            state.config.healthcheck = Some(healthcheck(instruction, check)?);
            None
        }
        Kind::Onbuild(trigger) => {
            state.config.onbuild.push(trigger.clone());
            None
        }
    })
}

/// `base` + `path` as WORKDIR resolves it: an absolute path replaces, a relative one is
/// appended; `.` and `..` are resolved lexically, never above `/`.
fn join(base: &str, path: &str) -> String {
    let joined = if path.starts_with('/') {
        PathBuf::from(path)
    } else {
        Path::new(base).join(path)
    };
    let mut parts: Vec<String> = Vec::new();
    for part in joined.components() {
        match part {
            std::path::Component::Normal(name) => parts.push(name.to_string_lossy().into_owned()),
            std::path::Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    format!("/{}", parts.join("/"))
}

/// CMD/ENTRYPOINT: the exec form as written, the shell form through the current SHELL.
fn config_command(command: &Command, shell: &Option<Vec<String>>) -> Vec<String> {
    match command {
        Command::Exec(argv) => argv.clone(),
        Command::Shell(text) => {
            let mut argv: Vec<String> = match shell {
                Some(shell) => shell.clone(),
                None => DEFAULT_SHELL.iter().map(|s| s.to_string()).collect(),
            };
            argv.push(text.clone());
            argv
        }
    }
}

fn healthcheck(
    instruction: &Instruction,
    check: &Option<(Vec<Flag>, Command)>,
) -> Result<Healthcheck, DockerfileError> {
    let invalid = |message: String| {
        DockerfileError::in_instruction(
            instruction.line,
            "HEALTHCHECK",
            SyntaxProblem::Invalid(message),
        )
    };
    let Some((flags, command)) = check else {
        return Ok(Healthcheck {
            test: vec!["NONE".into()],
            ..Healthcheck::default()
        });
    };
    let mut out = Healthcheck {
        test: match command {
            Command::Exec(argv) => std::iter::once("CMD".to_string())
                .chain(argv.iter().cloned())
                .collect(),
            Command::Shell(text) => vec!["CMD-SHELL".into(), text.clone()],
        },
        ..Healthcheck::default()
    };
    for flag in flags {
        let value = flag.value.as_deref().unwrap_or_default();
        let duration = || {
            parse_duration(value).ok_or_else(|| {
                invalid(format!(
                    "--{}={value}: expected a duration like 30s or 1m30s",
                    flag.name
                ))
            })
        };
        match flag.name.as_str() {
            "interval" => out.interval = duration()?,
            "timeout" => out.timeout = duration()?,
            "start-period" => out.start_period = duration()?,
            "start-interval" => out.start_interval = duration()?,
            _ => {
                out.retries = value
                    .parse()
                    .map_err(|_| invalid(format!("--retries={value}: expected a whole number")))?;
            }
        }
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn run_step(
    lexer: &Lexer,
    instruction: &Instruction,
    flags: &[Flag],
    command: &Command,
    heredocs: &[Heredoc],
    state: &StageState,
    context: &Context,
    scope: &Scope,
) -> Result<StepKind, DockerfileError> {
    let err = |problem| DockerfileError::in_instruction(instruction.line, "RUN", problem);
    let mut network = None;
    let mut mounts: Vec<RunMount> = Vec::new();
    for flag in flags {
        let value = flag
            .value
            .as_deref()
            .ok_or_else(|| err(SyntaxProblem::FlagNeedsValue(flag.name.clone())))?;
        let value = lexer.word(value, scope).map_err(|e| err(e.into()))?;
        match flag.name.as_str() {
            "network" => {
                network = match value.as_str() {
                    "default" => None,
                    "none" => Some(Network::None),
                    "host" => Some(Network::Host),
                    other => {
                        return Err(err(SyntaxProblem::Invalid(format!(
                            "--network={other}: expected default, none or host"
                        ))));
                    }
                }
            }
            "mount" => {
                let mount = run_mount(&value, state, context)
                    .map_err(|m| err(SyntaxProblem::Invalid(m)))?;
                if mounts.iter().any(|m| m.target == mount.target) {
                    return Err(err(SyntaxProblem::Invalid(format!(
                        "two mounts at {}",
                        mount.target
                    ))));
                }
                mounts.push(mount);
            }
            _ => return Err(unsupported(instruction, "RUN --security (insecure steps)")),
        }
    }
    let command = match command {
        Command::Exec(argv) => RunCommand::Exec(argv.clone()),
        Command::Shell(text) => RunCommand::Shell(script(instruction, text, heredocs)?),
    };
    Ok(StepKind::Run {
        command,
        network,
        mounts,
        args: state.args.clone(),
    })
}

/// The shell script a shell-form RUN runs.
fn script(
    instruction: &Instruction,
    text: &str,
    heredocs: &[Heredoc],
) -> Result<String, DockerfileError> {
    match heredocs {
        [] => Ok(text.to_string()),
        // `RUN <<EOF` alone: the body is the script.
        [doc] if is_lone_heredoc(text) => {
            let body = if doc.chomp {
                chomp(&doc.body)
            } else {
                doc.body.clone()
            };
            if body.starts_with("#!") {
                return Err(unsupported(
                    instruction,
                    "a RUN heredoc with #! (run by its own interpreter)",
                ));
            }
            Ok(body)
        }
        docs => {
            let mut script = text.to_string();
            script.push('\n');
            for doc in docs {
                script.push_str(&doc.body);
                script.push_str(&doc.name);
                script.push('\n');
            }
            Ok(script)
        }
    }
}

fn is_lone_heredoc(text: &str) -> bool {
    let word = text.trim();
    let digits = word.chars().take_while(char::is_ascii_digit).count();
    word[digits..].starts_with("<<") && !word.contains(char::is_whitespace)
}

/// `<<-`: leading tabs off every line.
fn chomp(body: &str) -> String {
    body.split_inclusive('\n')
        .map(|line| line.trim_start_matches('\t'))
        .collect()
}

/// BuildKit's `--mount=` fields: comma-separated `key=value` (and bare booleans).
fn run_mount(text: &str, state: &StageState, context: &Context) -> Result<RunMount, String> {
    let mut kind = "bind".to_string();
    let mut fields: Vec<(String, Option<String>)> = Vec::new();
    for field in text.split(',') {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.to_string())),
            None => (field.trim().to_ascii_lowercase(), None),
        };
        if key == "type" {
            kind = value.unwrap_or_default();
        } else {
            fields.push((key, value));
        }
    }
    let get = |names: &[&str]| {
        fields
            .iter()
            .rev()
            .find(|(k, _)| names.contains(&k.as_str()))
            .map(|(_, v)| v.clone().unwrap_or_else(|| "true".into()))
    };
    let flag = |names: &[&str]| -> Result<bool, String> {
        match get(names).as_deref() {
            None => Ok(false),
            Some("true") | Some("") => Ok(true),
            Some("false") => Ok(false),
            Some(other) => Err(format!(
                "--mount {}: {other:?} is not true or false",
                names[0]
            )),
        }
    };
    let number = |names: &[&str], default: u32| -> Result<u32, String> {
        match get(names) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("--mount {}={v}: expected a number", names[0])),
        }
    };
    let mode = |default: u32| -> Result<u32, String> {
        match get(&["mode"]) {
            None => Ok(default),
            Some(v) => parse_mode(&v)
                .ok_or_else(|| format!("--mount mode={v}: expected octal bits like 0755")),
        }
    };
    let known: &[&str] = match kind.as_str() {
        "cache" => &[
            "target",
            "dst",
            "destination",
            "id",
            "sharing",
            "mode",
            "uid",
            "gid",
            "ro",
            "readonly",
            "from",
            "source",
            "src",
        ],
        "secret" => &[
            "target",
            "dst",
            "destination",
            "id",
            "required",
            "mode",
            "uid",
            "gid",
            "env",
        ],
        "bind" => &[
            "target",
            "dst",
            "destination",
            "from",
            "source",
            "src",
            "rw",
            "readwrite",
            "ro",
            "readonly",
        ],
        "tmpfs" => &["target", "dst", "destination", "size"],
        "ssh" => return Err("--mount type=ssh is not supported yet".into()),
        other => {
            return Err(format!(
                "--mount type={other}: expected cache, secret, bind or tmpfs"
            ));
        }
    };
    if let Some((key, _)) = fields.iter().find(|(k, _)| !known.contains(&k.as_str())) {
        return Err(format!("--mount type={kind}: unknown field {key:?}"));
    }
    for unsupported in ["from", "source", "src", "env", "ro", "readonly"] {
        let allowed =
            kind == "bind" && matches!(unsupported, "from" | "source" | "src" | "ro" | "readonly");
        if !allowed && fields.iter().any(|(k, _)| k == unsupported) {
            return Err(format!(
                "--mount type={kind},{unsupported}= is not supported yet"
            ));
        }
    }
    let target = get(&["target", "dst", "destination"]);
    let target = match (target, kind.as_str()) {
        (Some(t), _) => join(&state.workdir, &t),
        (None, "secret") => format!("/run/secrets/{}", get(&["id"]).unwrap_or_default()),
        (None, _) => return Err(format!("--mount type={kind} needs target=")),
    };
    let reserved = ["/proc", "/dev", "/sys"]
        .iter()
        .any(|r| target == *r || target.starts_with(&format!("{r}/")));
    if target == "/" || reserved {
        return Err(format!(
            "--mount target={target}: not a place a mount may go"
        ));
    }
    let kind = match kind.as_str() {
        "cache" => RunMountKind::Cache {
            id: get(&["id"]).unwrap_or_else(|| target.clone()),
            sharing: match get(&["sharing"]).as_deref() {
                None | Some("shared") => CacheSharing::Shared,
                Some("private") => CacheSharing::Private,
                Some("locked") => CacheSharing::Locked,
                Some(other) => {
                    return Err(format!(
                        "--mount sharing={other}: expected shared, private or locked"
                    ));
                }
            },
            mode: mode(0o755)?,
            uid: number(&["uid"], 0)?,
            gid: number(&["gid"], 0)?,
        },
        "secret" => {
            let id = get(&["id"]).ok_or("--mount type=secret needs id=")?;
            RunMountKind::Secret {
                id,
                required: flag(&["required"])?,
                mode: mode(0o400)?,
                uid: number(&["uid"], 0)?,
                gid: number(&["gid"], 0)?,
            }
        }
        "bind" => {
            let from = match get(&["from"]) {
                None => None,
                Some(from) => Some(copy_from(&from, context)?),
            };
            RunMountKind::Bind {
                from,
                source: get(&["source", "src"])
                    .unwrap_or_default()
                    .trim_start_matches('/')
                    .to_string(),
                readwrite: flag(&["rw", "readwrite"])?,
            }
        }
        _ => RunMountKind::Tmpfs {
            size: match get(&["size"]) {
                None => None,
                Some(v) => Some(
                    v.parse()
                        .map_err(|_| format!("--mount size={v}: expected bytes"))?,
                ),
            },
        },
    };
    Ok(RunMount { target, kind })
}

/// `--from=`: an earlier stage by alias or index, else an image.
fn copy_from(text: &str, context: &Context) -> Result<CopyFrom, String> {
    if let Ok(index) = text.parse::<usize>() {
        return context
            .earlier
            .get(index)
            .map(|stage| CopyFrom::Stage(stage.name()))
            .ok_or_else(|| format!("--from={index}: there is no earlier stage {index}"));
    }
    if let Some(name) = earlier_stage(context.earlier, text) {
        return Ok(CopyFrom::Stage(name));
    }
    match BaseRef::parse(text, context.request.dir).map_err(|p| p.to_string())? {
        BaseRef::Scratch => Err("--from=scratch: there is nothing to copy from scratch".into()),
        base => Ok(CopyFrom::Image {
            base,
            text: text.to_string(),
        }),
    }
}

#[allow(clippy::too_many_arguments)]
fn copy_step(
    instruction: &Instruction,
    add: bool,
    flags: &[Flag],
    sources: &[Source],
    dest: &str,
    state: &StageState,
    context: &Context,
    word: &dyn Fn(&str) -> Result<String, DockerfileError>,
    body: &dyn Fn(&str) -> Result<String, DockerfileError>,
) -> Result<StepKind, DockerfileError> {
    let keyword = &instruction.keyword;
    let invalid = |message: String| {
        DockerfileError::in_instruction(instruction.line, keyword, SyntaxProblem::Invalid(message))
    };
    let mut from = None;
    let mut mode = None;
    let mut owner = None;
    let mut checksum = None;
    for flag in flags {
        let value = match &flag.value {
            Some(value) => word(value)?,
            None => String::new(),
        };
        match flag.name.as_str() {
            "from" => from = Some(copy_from(&value, context).map_err(invalid)?),
            "chmod" => {
                mode = Some(parse_mode(&value).ok_or_else(|| {
                    invalid(format!("--chmod={value}: expected octal bits like 0644"))
                })?)
            }
            "chown" => {
                owner = Some(match parse_owner(&value) {
                    Some((uid, gid)) => CopyOwner::Ids(uid, gid),
                    None if is_valid_user(&value) => CopyOwner::Named(value),
                    None => {
                        return Err(invalid(format!(
                            "--chown={value}: expected user[:group], by name or number"
                        )));
                    }
                })
            }
            // Every xbake COPY already makes a layer of its own files only.
            "link" => {}
            "checksum" => {
                checksum = Some(value.parse::<crate::digest::Digest>().map_err(|_| {
                    invalid(format!(
                        "--checksum={value}: expected sha256: and 64 hex digits"
                    ))
                })?)
            }
            "parents" => return Err(unsupported(instruction, "COPY --parents")),
            "exclude" => return Err(unsupported(instruction, "--exclude")),
            _ => return Err(unsupported(instruction, "ADD --keep-git-dir and --unpack")),
        }
    }
    let docs: Vec<&Heredoc> = sources
        .iter()
        .filter_map(|s| match s {
            Source::Heredoc(doc) => Some(doc),
            Source::Path(_) => None,
        })
        .collect();
    if !docs.is_empty() {
        if docs.len() != sources.len() {
            return Err(unsupported(
                instruction,
                "heredocs and paths as sources of one COPY",
            ));
        }
        if from.is_some() {
            return Err(invalid("--from cannot go with heredoc sources".into()));
        }
        let mut files = Vec::new();
        for doc in docs {
            let text = if doc.chomp {
                chomp(&doc.body)
            } else {
                doc.body.clone()
            };
            let text = if doc.expand { body(&text)? } else { text };
            files.push((doc.name.clone(), text));
        }
        return Ok(StepKind::Write {
            files,
            to: destination(state, &word(dest)?).map_err(invalid)?,
            mode,
            owner,
        });
    }
    // No heredocs past this point: every source is a path (or URL), expanded once.
    let expanded = sources
        .iter()
        .filter_map(|s| match s {
            Source::Path(path) => Some(word(path)),
            Source::Heredoc(_) => None,
        })
        .collect::<Result<Vec<_>, _>>()?;
    if add && expanded.iter().any(|path| is_remote(path)) {
        let [url] = expanded.as_slice() else {
            return Err(unsupported(
                instruction,
                "several URLs, or URLs and paths, in one ADD",
            ));
        };
        if url.starts_with("git@") || url.ends_with(".git") || !url.contains("://") {
            return Err(unsupported(instruction, "ADD of a git repository"));
        }
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(invalid(format!(
                "{url}: ADD fetches http:// and https:// URLs"
            )));
        }
        let to = destination(state, &word(dest)?).map_err(invalid)?;
        if to.ends_with('/') && crate::recipe::plan::url_file_name(url).is_none() {
            return Err(invalid(format!(
                "{url}: no file name in the URL; give the destination as a file path"
            )));
        }
        return Ok(StepKind::Fetch {
            url: url.clone(),
            checksum,
            to,
            mode,
            owner,
        });
    }
    if checksum.is_some() {
        return Err(invalid("--checksum is for ADD of a URL".into()));
    }
    let mut paths = Vec::new();
    for path in expanded {
        if is_remote(&path) {
            return Err(invalid(format!(
                "{path}: COPY takes files of the context; ADD fetches URLs"
            )));
        }
        if path.is_empty() {
            return Err(invalid("empty source".into()));
        }
        paths.push(match from {
            // The context's root is `/` to COPY: `/app.conf` is the context's app.conf.
            None => {
                let relative = path.trim_start_matches('/');
                if relative.is_empty() {
                    ".".to_string()
                } else {
                    relative.to_string()
                }
            }
            Some(_) => path,
        });
    }
    let to = destination(state, &word(dest)?).map_err(invalid)?;
    if add && owner.is_some() {
        return Err(unsupported(
            instruction,
            "ADD --chown (of what an archive unpacks)",
        ));
    }
    Ok(StepKind::Copy {
        unpack: add && from.is_none(),
        from,
        sources: paths,
        to,
        mode,
        owner,
    })
}

/// A source BuildKit fetches rather than reads from the context.
fn is_remote(path: &str) -> bool {
    path.contains("://") || path.starts_with("git@")
}

/// A COPY destination made absolute against the WORKDIR, a trailing `/` kept.
fn destination(state: &StageState, dest: &str) -> Result<String, String> {
    if dest.is_empty() {
        return Err("empty destination".into());
    }
    let trailing = dest.ends_with('/') || dest == "." || dest.ends_with("/.");
    let mut to = join(&state.workdir, dest);
    if trailing && !to.ends_with('/') {
        to.push('/');
    }
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platform(text: &str) -> Platform {
        text.parse().unwrap()
    }

    fn plan_for(text: &str, index: usize, target: &str, build_args: &[(&str, &str)]) -> Plan {
        try_plan(text, index, target, build_args).unwrap()
    }

    fn try_plan(
        text: &str,
        index: usize,
        target: &str,
        build_args: &[(&str, &str)],
    ) -> Result<Plan, DockerfileError> {
        let file = Dockerfile::parse(text)?;
        let target = platform(target);
        let build = platform("linux/amd64");
        let args: Pairs = build_args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        plan_stage(
            &file,
            index,
            &StageRequest {
                file: Path::new("Dockerfile"),
                dir: Path::new("/ctx"),
                target: &target,
                build: &build,
                build_args: &args,
                base_env: &[("PATH".into(), "/usr/bin:/bin".into())],
                base_triggers: &[],
            },
        )
    }

    #[test]
    fn onbuild_is_recorded_and_a_bases_triggers_run_first() {
        let plan = plan_for(
            "FROM a\nONBUILD COPY . /app/\nONBUILD RUN make\n",
            0,
            "linux/amd64",
            &[],
        );
        assert_eq!(plan.config.onbuild, ["COPY . /app/", "RUN make"]);
        assert!(
            plan.steps.is_empty(),
            "a stage's own triggers do not run in it"
        );

        let file = Dockerfile::parse("FROM base\nRUN after\n").unwrap();
        let target = platform("linux/amd64");
        let triggers = ["COPY . /app/".to_string(), "RUN ls /app > /app/list".into()];
        let request = StageRequest {
            file: Path::new("Dockerfile"),
            dir: Path::new("/ctx"),
            target: &target,
            build: &target,
            build_args: &[],
            base_env: &[],
            base_triggers: &triggers,
        };
        let plan = plan_stage(&file, 0, &request).unwrap();
        let described: Vec<_> = plan
            .steps
            .iter()
            .map(|s| (s.location.line, s.describe()))
            .collect();
        assert_eq!(
            described,
            [
                (1, "COPY . /app/".to_string()),
                (1, "RUN ls /app > /app/list".into()),
                (2, "RUN after".into())
            ]
        );
        let host = ["RUN --network=host curl http://127.0.0.1/".to_string()];
        let err = plan_stage(
            &file,
            0,
            &StageRequest {
                base_triggers: &host,
                ..request
            },
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .ends_with("a base image's trigger may not ask for the host's network"),
            "{err}"
        );
        let bad = ["FROM x".to_string()];
        let err = plan_stage(
            &file,
            0,
            &StageRequest {
                base_triggers: &bad,
                ..request
            },
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "1: FROM: the base's ONBUILD \"FROM x\": ONBUILD cannot hold FROM"
        );
    }

    /// Each RUN's ARG environment, in order.
    fn run_args(plan: &Plan) -> Vec<Vec<(String, String)>> {
        plan.steps
            .iter()
            .filter_map(|s| match &s.kind {
                StepKind::Run { args, .. } => Some(args.clone()),
                _ => None,
            })
            .collect()
    }

    fn pairs(items: &[(&str, &str)]) -> Pairs {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn args_are_visible_from_their_declaration_and_globals_only_when_redeclared() {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dockerfiles/arg-scope/Dockerfile"),
        )
        .unwrap();
        let plan = plan_for(&text, 0, "linux/arm64", &[]);
        assert_eq!(
            run_args(&plan),
            [
                pairs(&[]),
                pairs(&[("VERSION", "1.0")]),
                pairs(&[("VERSION", "1.0")]),
                pairs(&[("VERSION", "1.0"), ("LATE", "default")])
            ]
        );
        assert_eq!(plan.from_text, "127.0.0.1:5000/busybox:1");
        // A --build-arg overrides the global default where the stage redeclares it.
        let plan = plan_for(
            &text,
            0,
            "linux/arm64",
            &[("VERSION", "2.0"), ("LATE", "x")],
        );
        assert_eq!(
            run_args(&plan)[3],
            pairs(&[("VERSION", "2.0"), ("LATE", "x")])
        );
    }

    #[test]
    fn env_expansion_sees_the_scope_before_the_instruction() {
        let plan = plan_for(
            "FROM a\nENV A=old\nENV A=new B=$A C=${PATH}:/x\nARG D=$A\nRUN true\n",
            0,
            "linux/amd64",
            &[],
        );
        let envs: Vec<_> = plan
            .steps
            .iter()
            .filter_map(|s| match &s.kind {
                StepKind::Env(v) => Some(v.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(
            envs[1],
            pairs(&[("A", "new"), ("B", "old"), ("C", "/usr/bin:/bin:/x")])
        );
        assert_eq!(run_args(&plan)[0], pairs(&[("D", "new")]));
    }

    #[test]
    fn platform_args_only_when_declared_and_from_on_the_build_platform() {
        let text = "ARG REGISTRY=r.example\nFROM --platform=$BUILDPLATFORM $REGISTRY/golang AS build\nRUN echo\nARG TARGETARCH TARGETVARIANT\nRUN go build\nFROM scratch\nCOPY --from=build /out /\n";
        let plan = plan_for(text, 0, "linux/arm/v7", &[]);
        assert_eq!(plan.platform, platform("linux/amd64"));
        assert_eq!(plan.from_text, "r.example/golang");
        assert!(plan.build_env.is_empty());
        assert_eq!(
            run_args(&plan),
            [
                pairs(&[]),
                pairs(&[("TARGETARCH", "arm"), ("TARGETVARIANT", "v7")])
            ]
        );
        let last = plan_for(text, 1, "linux/arm/v7", &[]);
        assert_eq!(last.platform, platform("linux/arm/v7"));
        assert_eq!(last.from, BaseRef::Scratch);
        assert!(matches!(
            &last.steps[0].kind,
            StepKind::Copy { from: Some(CopyFrom::Stage(name)), sources, to, .. }
                if name == "build" && sources == &["/out".to_string()] && to == "/"
        ));
    }

    #[test]
    fn workdir_and_copy_destinations_are_relative_to_the_workdir() {
        let plan = plan_for(
            "FROM a\nWORKDIR /src\nWORKDIR app/../lib\nCOPY --chmod=640 --chown=10:20 /conf x.conf ./\nCOPY a b\n",
            0,
            "linux/amd64",
            &[],
        );
        assert_eq!(plan.steps[1].kind, StepKind::MakeWorkdir("/src/lib".into()));
        assert_eq!(
            plan.steps[2].kind,
            StepKind::Copy {
                from: None,
                sources: vec!["conf".into(), "x.conf".into()],
                to: "/src/lib/".into(),
                mode: Some(0o640),
                owner: Some(CopyOwner::Ids(10, 20)),
                unpack: false,
            }
        );
        assert!(matches!(&plan.steps[3].kind, StepKind::Copy { to, .. } if to == "/src/lib/b"));
    }

    #[test]
    fn heredoc_runs_become_shell_scripts() {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dockerfiles/heredoc-run/Dockerfile"),
        )
        .unwrap();
        let plan = plan_for(&text, 0, "linux/arm64", &[]);
        let scripts: Vec<_> = plan
            .steps
            .iter()
            .filter_map(|s| match &s.kind {
                StepKind::Run {
                    command: RunCommand::Shell(s),
                    ..
                } => Some(s.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(
            scripts,
            [
                "set -e\nmkdir -p /etc/app\necho \"hello $NAME\" > /etc/app/greeting\n",
                "sh <<SCRIPT && cat <<'RAW' > /etc/app/raw\necho \"from sh: $NAME\" > /etc/app/from-sh\nSCRIPT\nkept as written: $NAME\nRAW\n",
                "cat <<-EOT > /etc/app/tabs\n\tindented\nEOT\n"
            ]
        );
    }

    #[test]
    fn heredoc_copies_write_their_bodies() {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dockerfiles/heredoc-copy/Dockerfile"),
        )
        .unwrap();
        let plan = plan_for(&text, 0, "linux/arm64", &[("PORT", "9000")]);
        let writes: Vec<_> = plan
            .steps
            .iter()
            .filter_map(|s| match &s.kind {
                StepKind::Write {
                    files, to, mode, ..
                } => Some((files.clone(), to.clone(), *mode)),
                _ => None,
            })
            .collect();
        let file = |name: &str, body: &str| (name.to_string(), body.to_string());
        assert_eq!(
            writes,
            [
                (
                    vec![file("EOF", "listen = 9000\n")],
                    "/etc/app.conf".to_string(),
                    None
                ),
                // Quoted delimiter: not expanded; <<-: tabs stripped.
                (
                    vec![file("EOT", "#!/bin/sh\nexec httpd -f -p \"$PORT\"\n")],
                    "/usr/local/bin/start".to_string(),
                    Some(0o755)
                ),
                (
                    vec![file("one.txt", "first\n"), file("two.txt", "second\n")],
                    "/srv/".to_string(),
                    None
                ),
            ]
        );
        assert_eq!(plan.steps[0].describe(), "COPY <<EOF /etc/app.conf");
        assert_eq!(
            plan.steps[1].describe(),
            "COPY --chmod=0755 <<EOT /usr/local/bin/start"
        );
    }

    #[test]
    fn run_flags_become_mounts_and_networks() {
        let plan = plan_for(
            "FROM a AS assets\nFROM a\nWORKDIR /w\nRUN --network=none --mount=type=cache,target=cache,sharing=locked --mount=type=secret,id=tok,required --mount=type=bind,from=assets,source=/x,target=/mnt --mount=type=tmpfs,target=/t,size=1024 true\n",
            1,
            "linux/amd64",
            &[],
        );
        let StepKind::Run {
            network, mounts, ..
        } = &plan.steps[1].kind
        else {
            panic!("not a run step");
        };
        assert_eq!(*network, Some(Network::None));
        let described: Vec<_> = mounts.iter().map(RunMount::describe).collect();
        assert_eq!(
            described,
            [
                "--mount=type=cache,target=/w/cache,sharing=locked",
                "--mount=type=secret,id=tok,target=/run/secrets/tok,required",
                "--mount=type=bind,from=assets,source=x,target=/mnt",
                "--mount=type=tmpfs,target=/t,size=1024"
            ]
        );
        let err = try_plan(
            "FROM a\nRUN --mount=type=cache,targt=/x true\n",
            0,
            "linux/amd64",
            &[],
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "2: RUN: --mount type=cache: unknown field \"targt\""
        );
        let err = try_plan("FROM a\nRUN --network true\n", 0, "linux/amd64", &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "2: RUN: flag --network needs a value (--network=VALUE)"
        );
    }

    #[test]
    fn config_instructions_fill_the_config() {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dockerfiles/config/Dockerfile"),
        )
        .unwrap();
        let plan = plan_for(&text, 0, "linux/amd64", &[]);
        let config = &plan.config;
        assert_eq!(
            config.labels,
            pairs(&[
                ("maintainer", "Jo Maintainer <jo@example.org>"),
                ("org.opencontainers.image.title", "config demo"),
                ("org.opencontainers.image.version", "1.0")
            ])
        );
        assert_eq!(
            config.author.as_deref(),
            Some("Jo Maintainer <jo@example.org>")
        );
        assert_eq!(config.exposed_ports, ["8080/tcp", "9090/udp"]);
        assert_eq!(config.volumes, ["/data", "/logs"]);
        assert_eq!(
            config.shell.as_deref(),
            Some(&["/bin/sh".to_string(), "-ec".into()][..])
        );
        assert_eq!(plan.steps[0].shell, config.shell);
        let health = config.healthcheck.as_ref().unwrap();
        assert_eq!(health.test[0], "CMD-SHELL");
        assert_eq!(
            (health.interval, health.timeout, health.retries),
            (30_000_000_000, 3_000_000_000, 2)
        );
        assert_eq!(config.stop_signal.as_deref(), Some("SIGQUIT"));
        assert_eq!(config.entrypoint, Some(vec!["httpd".into(), "-f".into()]));
        assert_eq!(config.cmd, Some(vec!["-p".into(), "8080".into()]));
    }

    #[test]
    fn what_is_not_supported_yet_is_named_at_its_line() {
        let cases = [(
            "FROM a\nADD git@example.org:x/y.git /x\n",
            "2: ADD: not supported yet: ADD of a git repository",
        )];
        for (text, message) in cases {
            assert_eq!(
                try_plan(text, 0, "linux/amd64", &[])
                    .unwrap_err()
                    .to_string(),
                message
            );
        }
        let err = try_plan("FROM a\nCOPY --from=3 /x /y\n", 0, "linux/amd64", &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "2: COPY: --from=3: there is no earlier stage 3"
        );
    }
}

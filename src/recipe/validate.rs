//! From the YAML as written ([`RawRecipe`]) to a checked [`Spec`]: everything that can
//! be judged without knowing the platform is judged here, at load time. Values that are
//! expanded per platform get their `${…}` syntax checked now and their meaning checked
//! after expansion (by `planner`).

use serde_saphyr::Spanned;

use super::builtin_vars::is_reserved_name;
use super::error::{Flaw, Pos, Problem};
use super::expand::check_syntax;
use super::fields::{
    is_absolute, is_valid_stop_signal, is_var_name, normalize_port, parse_duration, parse_mode,
    parse_owner,
};
use super::model::{
    ConfigTemplate, Spec, StagePlatform, StageSpec, StepSpec, StepTemplate, Template, Var,
};
use super::plan::{DEFAULT_SHELL, Healthcheck, Network, RunCommand};
use super::schema::{
    Command, OneOrMany, OrderedMap, RawAnnotations, RawConfig, RawHealthcheck, RawMount, RawRecipe,
    RawStep, StepValue,
};
use crate::platform::Platform;

pub(super) fn validate(raw: RawRecipe) -> Result<Spec, Flaw> {
    let mut stages = Vec::with_capacity(raw.stages.0.len() + 1);
    for (name, stage) in raw.stages.0 {
        let stage = stage.value;
        stages.push(StageSpec {
            name: Some(stage_name(&name)?),
            from: template(stage.from)?,
            platform: stage
                .platform
                .map(stage_platform)
                .transpose()?
                .unwrap_or(StagePlatform::Target),
            args: build_args(stage.args)?,
            env: vars(stage.env, "env")?,
            workdir: stage.workdir.map(template).transpose()?,
            normalize: stage.normalize.is_none_or(|n| n.value),
            steps: steps(stage.steps)?,
            target_dependent: true,
        });
    }
    stages.push(StageSpec {
        name: None,
        from: template(raw.from)?,
        platform: StagePlatform::Target,
        args: Vec::new(),
        env: vars(raw.env, "env")?,
        workdir: raw.workdir.map(template).transpose()?,
        normalize: raw.normalize.is_none_or(|n| n.value),
        steps: steps(raw.steps)?,
        target_dependent: true,
    });
    super::stage_graph::settle_target_dependence(&mut stages)?;
    Ok(Spec {
        platforms: platforms(raw.platforms)?,
        args: build_args(raw.args)?,
        source_date_epoch: raw.source_date_epoch.map(epoch).transpose()?,
        stages,
        config: config(raw.config.unwrap_or_default())?,
    })
}

fn steps(raw: Option<Vec<Spanned<RawStep>>>) -> Result<Vec<StepSpec>, Flaw> {
    raw.into_iter().flatten().map(step).collect()
}

/// Docker's rule for stage names (lower case, as BuildKit folds them), minus `scratch`,
/// which always means the empty base.
fn stage_name(key: &Spanned<String>) -> Result<String, Flaw> {
    let name = &key.value;
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
        && name != "scratch";
    if !valid {
        return Err(Problem::BadStageName { name: name.clone() }.at(pos(key)));
    }
    Ok(name.clone())
}

fn stage_platform(value: Spanned<String>) -> Result<StagePlatform, Flaw> {
    match value.value.as_str() {
        "build" => Ok(StagePlatform::Build),
        "target" => Ok(StagePlatform::Target),
        text => {
            text.parse()
                .map(StagePlatform::Fixed)
                .map_err(|e: crate::platform::PlatformError| {
                    Problem::BadStagePlatform {
                        value: text.to_string(),
                        problem: e.to_string(),
                    }
                    .at(pos(&value))
                })
        }
    }
}

/// Where a value was used. For a YAML alias that is the alias, not the anchor: the
/// value is wrong in the role it plays there.
pub(super) fn pos<T>(spanned: &Spanned<T>) -> Pos {
    Pos::of(&spanned.referenced)
}

pub(super) fn template(value: Spanned<String>) -> Result<Template, Flaw> {
    let at = pos(&value);
    check_syntax(&value.value).map_err(|problem| problem.at(at))?;
    Ok(Template {
        text: value.value,
        at,
    })
}

/// A lone string stands for itself, placed where the node is.
fn items(value: Spanned<OneOrMany>) -> Vec<Spanned<String>> {
    match value.value {
        OneOrMany::One(text) => vec![Spanned::new(text, value.referenced, value.defined)],
        OneOrMany::Many(items) => items,
    }
}

fn platforms(value: Option<Spanned<OneOrMany>>) -> Result<Vec<Platform>, Flaw> {
    let mut platforms = Vec::new();
    for name in value.map(items).unwrap_or_default() {
        let platform: Platform = name
            .value
            .parse()
            .map_err(|e| Problem::BadPlatform(e).at(pos(&name)))?;
        // Same rule as `--arch`: order kept, a platform listed twice built once.
        if !platforms.contains(&platform) {
            platforms.push(platform);
        }
    }
    Ok(platforms)
}

fn checked_name(key: &Spanned<String>, what: &'static str) -> Result<String, Flaw> {
    if !is_var_name(&key.value) {
        return Err(Problem::BadName {
            what,
            name: key.value.clone(),
        }
        .at(pos(key)));
    }
    Ok(key.value.clone())
}

fn build_args(map: OrderedMap<Option<String>>) -> Result<Vec<(String, String)>, Flaw> {
    map.0
        .into_iter()
        .map(|(key, default)| {
            let name = checked_name(&key, "build arg")?;
            if is_reserved_name(&name) {
                return Err(Problem::ReservedArg { name }.at(pos(&key)));
            }
            Ok((name, default.value.unwrap_or_default()))
        })
        .collect()
}

fn vars(map: OrderedMap<String>, what: &'static str) -> Result<Vec<Var>, Flaw> {
    map.0
        .into_iter()
        .map(|(key, value)| {
            Ok(Var {
                name: checked_name(&key, what)?,
                value: template(value)?,
            })
        })
        .collect()
}

fn epoch(value: Spanned<i64>) -> Result<i64, Flaw> {
    if value.value < 0 {
        return Err(Problem::NegativeEpoch { value: value.value }.at(pos(&value)));
    }
    Ok(value.value)
}

/// A key with its value, both placed.
type Entry = (Spanned<String>, Spanned<String>);

/// The kind key of a step, with its value.
type KindEntry = (Spanned<String>, Kind);

/// The key that makes a step what it is.
enum Kind {
    Run(Spanned<Command>),
    Copy(Spanned<OneOrMany>),
    Env(OrderedMap<String>),
    Workdir(Spanned<String>),
    User(Spanned<String>),
}

impl Kind {
    fn name(&self) -> &'static str {
        match self {
            Kind::Run(_) => "run",
            Kind::Copy(_) => "copy",
            Kind::Env(_) => "env",
            Kind::Workdir(_) => "workdir",
            Kind::User(_) => "user",
        }
    }
}

/// The keys that qualify a kind of step.
#[derive(Default)]
struct Qualifiers {
    network: Option<Entry>,
    normalize: Option<(Spanned<String>, Spanned<bool>)>,
    mounts: Option<(Spanned<String>, Vec<Spanned<RawMount>>)>,
    from: Option<Entry>,
    to: Option<Entry>,
    mode: Option<Entry>,
    owner: Option<Entry>,
}

impl Qualifiers {
    /// Each qualifier with the kind of step it belongs on.
    fn owners(&self) -> [(Option<&Spanned<String>>, &'static str); 7] {
        fn key(entry: &Option<Entry>) -> Option<&Spanned<String>> {
            entry.as_ref().map(|(k, _)| k)
        }
        [
            (key(&self.network), "run"),
            (self.normalize.as_ref().map(|(k, _)| k), "run"),
            (self.mounts.as_ref().map(|(k, _)| k), "run"),
            (key(&self.from), "copy"),
            (key(&self.to), "copy"),
            (key(&self.mode), "copy"),
            (key(&self.owner), "copy"),
        ]
    }
}

/// Sorts a step's keys into its kind and its qualifiers, reporting the first unknown
/// or second kind key in reading order.
fn step_parts(raw: RawStep) -> Result<(Option<KindEntry>, Qualifiers), Flaw> {
    let mut kind: Option<KindEntry> = None;
    let mut q = Qualifiers::default();
    for (key, value) in raw.entries {
        let this_kind = match value {
            StepValue::Unknown => {
                return Err(Problem::UnknownStepKey {
                    key: key.value.clone(),
                }
                .at(pos(&key)));
            }
            StepValue::Network(v) => {
                q.network = Some((key, v));
                continue;
            }
            StepValue::Normalize(v) => {
                q.normalize = Some((key, v));
                continue;
            }
            StepValue::Mounts(v) => {
                q.mounts = Some((key, v));
                continue;
            }
            StepValue::From(v) => {
                q.from = Some((key, v));
                continue;
            }
            StepValue::To(v) => {
                q.to = Some((key, v));
                continue;
            }
            StepValue::Mode(v) => {
                q.mode = Some((key, v));
                continue;
            }
            StepValue::Owner(v) => {
                q.owner = Some((key, v));
                continue;
            }
            StepValue::Run(v) => Kind::Run(v),
            StepValue::Copy(v) => Kind::Copy(v),
            StepValue::Env(v) => Kind::Env(v),
            StepValue::Workdir(v) => Kind::Workdir(v),
            StepValue::User(v) => Kind::User(v),
        };
        if let Some((first, _)) = &kind {
            return Err(Problem::TwoStepKinds {
                first: first.value.clone(),
                second: key.value.clone(),
            }
            .at(pos(&key)));
        }
        kind = Some((key, this_kind));
    }
    Ok((kind, q))
}

fn step(raw: Spanned<RawStep>) -> Result<StepSpec, Flaw> {
    let at = pos(&raw);
    let (kind, qualifiers) = step_parts(raw.value)?;
    let Some((kind_key, kind)) = kind else {
        return Err(Problem::NoStepKind.at(at));
    };
    for (qualifier, owner) in qualifiers.owners() {
        if let Some(key) = qualifier
            && owner != kind.name()
        {
            return Err(Problem::KeyOnWrongStep {
                key: key.value.clone(),
                kind: kind.name(),
                owner,
            }
            .at(pos(key)));
        }
    }

    let normalize = qualifiers.normalize.as_ref().map(|(_, v)| v.value);
    let kind = match kind {
        Kind::Run(command) => StepTemplate::Run {
            command: run_command(command)?,
            network: qualifiers.network.map(|(_, v)| network(v)).transpose()?,
            mounts: (qualifiers.mounts.into_iter().flat_map(|(_, m)| m))
                .map(super::mounts::mount)
                .collect::<Result<_, _>>()?,
        },
        Kind::Copy(sources) => copy_step(&kind_key, sources, qualifiers)?,
        Kind::Env(map) => {
            if map.0.is_empty() {
                return Err(Problem::EmptyEnvStep.at(pos(&kind_key)));
            }
            StepTemplate::Env(vars(map, "env")?)
        }
        Kind::Workdir(dir) => StepTemplate::Workdir(template(dir)?),
        Kind::User(user) => StepTemplate::User(template(user)?),
    };
    Ok(StepSpec {
        at,
        kind,
        normalize,
    })
}

fn run_command(command: Spanned<Command>) -> Result<RunCommand, Flaw> {
    let at = pos(&command);
    let command = match command.value {
        Command::Shell(script) => RunCommand::Shell(script),
        Command::Exec(argv) => RunCommand::Exec(argv),
    };
    let empty = match &command {
        RunCommand::Shell(script) => script.trim().is_empty(),
        RunCommand::Exec(argv) => argv.first().is_none_or(|program| program.is_empty()),
    };
    if empty {
        return Err(Problem::EmptyRun.at(at));
    }
    Ok(command)
}

fn network(value: Spanned<String>) -> Result<Network, Flaw> {
    value.value.parse().map_err(|_| {
        Problem::BadNetwork {
            value: value.value.clone(),
        }
        .at(pos(&value))
    })
}

fn copy_step(
    copy_key: &Spanned<String>,
    sources: Spanned<OneOrMany>,
    qualifiers: Qualifiers,
) -> Result<StepTemplate, Flaw> {
    let sources_at = pos(&sources);
    let sources = items(sources)
        .into_iter()
        .map(|source| {
            if source.value.is_empty() {
                return Err(Problem::EmptyCopySource.at(pos(&source)));
            }
            template(source)
        })
        .collect::<Result<Vec<_>, _>>()?;
    if sources.is_empty() {
        return Err(Problem::NoCopySources.at(sources_at));
    }
    let Some((_, to)) = qualifiers.to else {
        return Err(Problem::MissingCopyDestination.at(pos(copy_key)));
    };
    if to.value.is_empty() {
        return Err(Problem::EmptyCopyDestination.at(pos(&to)));
    }
    let mode = qualifiers
        .mode
        .map(|(_, mode)| {
            parse_mode(&mode.value).ok_or_else(|| {
                Problem::BadMode {
                    value: mode.value.clone(),
                }
                .at(pos(&mode))
            })
        })
        .transpose()?;
    let owner = qualifiers
        .owner
        .map(|(_, owner)| {
            parse_owner(&owner.value).ok_or_else(|| {
                Problem::BadOwner {
                    value: owner.value.clone(),
                }
                .at(pos(&owner))
            })
        })
        .transpose()?;
    Ok(StepTemplate::Copy {
        from: qualifiers
            .from
            .map(|(_, from)| template(from))
            .transpose()?,
        sources,
        to: template(to)?,
        mode,
        owner,
    })
}

/// `entrypoint:`/`cmd:` as a list are used as given (an empty list clears the base's);
/// as a string they get docker's shell form: the recipe's `shell:`, else `/bin/sh -c`,
/// then STRING.
fn config_command(command: Spanned<Command>, shell: Option<&[String]>) -> Vec<String> {
    match command.value {
        Command::Exec(argv) => argv,
        Command::Shell(script) => {
            let mut argv: Vec<String> = match shell {
                Some(shell) => shell.to_vec(),
                None => DEFAULT_SHELL.iter().map(|s| s.to_string()).collect(),
            };
            argv.push(script);
            argv
        }
    }
}

/// Labels and annotations: keys as written (not empty), values templates; sorted when
/// planned.
fn keyed_templates(
    map: OrderedMap<String>,
    empty_key: fn() -> Problem,
) -> Result<Vec<(String, Template)>, Flaw> {
    map.0
        .into_iter()
        .map(|(key, value)| {
            if key.value.is_empty() {
                return Err(empty_key().at(pos(&key)));
            }
            Ok((key.value, template(value)?))
        })
        .collect()
}

/// Docker's SHELL takes only the JSON (exec) form.
fn shell(value: Spanned<Command>) -> Result<Vec<String>, Flaw> {
    match value.value {
        Command::Exec(argv) if argv.first().is_some_and(|program| !program.is_empty()) => Ok(argv),
        _ => Err(Problem::BadShell.at(pos(&value))),
    }
}

/// The test in Docker's list form: a string is `CMD-SHELL`, as in compose files.
fn healthcheck_test(test: Spanned<Command>) -> Result<Vec<String>, Flaw> {
    let at = pos(&test);
    let bad = |reason: &str| {
        Problem::BadHealthcheckTest {
            reason: reason.to_string(),
        }
        .at(at)
    };
    let argv = match test.value {
        Command::Shell(command) => vec!["CMD-SHELL".to_string(), command],
        Command::Exec(argv) => argv,
    };
    match argv
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] => Err(bad("the list is empty")),
        ["NONE"] => Ok(argv),
        ["NONE", ..] => Err(bad("NONE takes nothing after it")),
        ["CMD", program, ..] if !program.is_empty() => Ok(argv),
        ["CMD", ..] => Err(bad("CMD needs a program after it")),
        ["CMD-SHELL", command] if !command.trim().is_empty() => Ok(argv),
        ["CMD-SHELL", _] | ["CMD-SHELL"] => Err(bad("the command is empty")),
        ["CMD-SHELL", ..] => Err(bad("CMD-SHELL takes one command string")),
        [first, ..] => Err(bad(&format!("it starts with {first:?}"))),
    }
}

/// A healthcheck duration in nanoseconds; zero means the runtime's default, and
/// anything else must be at least 1ms (Docker's `parseOptInterval`).
fn duration(value: Spanned<String>, what: &'static str) -> Result<u64, Flaw> {
    let at = pos(&value);
    let value = value.value;
    match parse_duration(&value) {
        Some(ns) if ns == 0 || ns >= 1_000_000 => Ok(ns),
        Some(_) => Err(Problem::DurationTooShort { what, value }.at(at)),
        None => Err(Problem::BadDuration { what, value }.at(at)),
    }
}

fn healthcheck(raw: RawHealthcheck) -> Result<Healthcheck, Flaw> {
    let test = healthcheck_test(raw.test)?;
    let options = [
        ("interval", raw.interval.as_ref().map(pos)),
        ("timeout", raw.timeout.as_ref().map(pos)),
        ("start_period", raw.start_period.as_ref().map(pos)),
        ("start_interval", raw.start_interval.as_ref().map(pos)),
        ("retries", raw.retries.as_ref().map(pos)),
    ];
    // Docker refuses HEALTHCHECK NONE with options, rather than ignoring them.
    let first_option = (options.iter())
        .filter_map(|(key, at)| at.map(|at| (at, *key)))
        .min();
    if let (true, Some((at, key))) = (test == ["NONE"], first_option) {
        return Err(Problem::HealthcheckNoneOption { key }.at(at));
    }
    let optional = |value: Option<Spanned<String>>, what| {
        value
            .map(|v| duration(v, what))
            .transpose()
            .map(Option::unwrap_or_default)
    };
    let retries = raw
        .retries
        .map(|r| {
            // Docker reads retries as an int32 and refuses negative ones.
            i32::try_from(r.value)
                .ok()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| Problem::BadRetries { value: r.value }.at(pos(&r)))
        })
        .transpose()?
        .unwrap_or_default();
    Ok(Healthcheck {
        test,
        interval: optional(raw.interval, "healthcheck interval")?,
        timeout: optional(raw.timeout, "healthcheck timeout")?,
        start_period: optional(raw.start_period, "healthcheck start_period")?,
        start_interval: optional(raw.start_interval, "healthcheck start_interval")?,
        retries,
    })
}

fn config(raw: RawConfig) -> Result<ConfigTemplate, Flaw> {
    let shell = raw.shell.map(shell).transpose()?;
    let labels = keyed_templates(raw.labels, || Problem::EmptyLabelKey)?;
    let exposed_ports = raw
        .exposed_ports
        .into_iter()
        .flatten()
        .map(|port| {
            normalize_port(&port.value).ok_or_else(|| {
                Problem::BadPort {
                    value: port.value.clone(),
                }
                .at(pos(&port))
            })
        })
        .collect::<Result<_, _>>()?;
    let stop_signal = raw
        .stop_signal
        .map(|signal| {
            if is_valid_stop_signal(&signal.value) {
                Ok(signal.value)
            } else {
                Err(Problem::BadStopSignal {
                    value: signal.value.clone(),
                }
                .at(pos(&signal)))
            }
        })
        .transpose()?;
    let volumes = raw
        .volumes
        .into_iter()
        .flatten()
        .map(|volume| {
            if is_absolute(&volume.value) {
                Ok(volume.value)
            } else {
                Err(Problem::RelativeVolume {
                    value: volume.value.clone(),
                }
                .at(pos(&volume)))
            }
        })
        .collect::<Result<_, _>>()?;
    let RawAnnotations { manifest, index } = raw.annotations.unwrap_or_default();
    Ok(ConfigTemplate {
        entrypoint: raw.entrypoint.map(|c| config_command(c, shell.as_deref())),
        cmd: raw.cmd.map(|c| config_command(c, shell.as_deref())),
        labels,
        exposed_ports,
        stop_signal,
        volumes,
        healthcheck: raw.healthcheck.map(|h| healthcheck(h.value)).transpose()?,
        shell,
        manifest_annotations: keyed_templates(manifest, || Problem::EmptyAnnotationKey)?,
        index_annotations: keyed_templates(index, || Problem::EmptyAnnotationKey)?,
    })
}

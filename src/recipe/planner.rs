//! Expands a validated recipe for one platform into a [`Plan`]. Pure: no file is read;
//! copy sources are checked lexically here and on disk by `resolve_copy_sources`.
//!
//! What each value can refer to (later names shadow earlier ones):
//! - `from:` — build args and the TARGET*/BUILD* variables (the base is chosen before
//!   any env exists, as in a Dockerfile, where only ARGs are visible to FROM);
//! - top-level `env:` values — those, plus the env entries above them;
//! - everything else (top-level `workdir:`, steps, config label and annotation values)
//!   — those, plus the top-level env and the env steps above it. Within one env map, a
//!   value may use the names set before it in the same map.
//!
//! Build-arg defaults are taken literally.

use std::path::Path;

use super::base::BaseRef;
use super::builtin_vars::{build_env, is_reserved_name, platform_vars};
use super::error::{Flaw, Pos, Problem, RecipeError};
use super::expand::Scope;
use super::fields::{is_absolute, is_valid_user, is_var_name, relative_inside};
use super::model::{
    MountKindTemplate, MountTemplate, Spec, StagePlatform, StageSpec, StepTemplate, Template, Var,
};
use super::plan::{
    ConfigSpec, CopyFrom, CopyOwner, Plan, PlanStep, RunMount, RunMountKind, StepKind,
};
use crate::platform::Platform;

/// Name-value pairs in a meaningful order.
type Pairs = Vec<(String, String)>;

/// What a plan needs besides the recipe: where it lives and what the user asked for.
pub(super) struct PlanRequest<'a> {
    pub file: &'a Path,
    pub dir: &'a Path,
    pub target: &'a Platform,
    pub build: &'a Platform,
    pub build_args: &'a [(String, String)],
}

/// Where a stage runs, for `target` built on `build`, and what its TARGET* name: the
/// target, or for a stage whose result cannot depend on it, its own platform (so one
/// build serves every target).
pub(super) fn stage_platforms(
    stage: &StageSpec,
    target: &Platform,
    build: &Platform,
) -> (Platform, Platform) {
    let runs_on = match stage.platform {
        StagePlatform::Target => *target,
        StagePlatform::Build => *build,
        StagePlatform::Fixed(p) => p,
    };
    let names = if stage.target_dependent {
        *target
    } else {
        runs_on
    };
    (runs_on, names)
}

/// The expanded `from:` of stage `index`: another stage, or a base to resolve. It sees
/// the build args and the TARGET*/BUILD* variables only, as a Dockerfile's FROM sees
/// only ARGs.
pub(super) fn stage_from(
    spec: &Spec,
    index: usize,
    request: &PlanRequest,
) -> Result<(BaseRef, String), RecipeError> {
    let stage = &spec.stages[index];
    let (scope, _, _) = start_scope(spec, stage, request)?;
    let text = expand(&scope, &stage.from).map_err(|flaw| flaw.in_file(request.file))?;
    let base = from_ref(spec, &text, request.dir)
        .map_err(|p| p.at(stage.from.at).in_file(request.file))?;
    Ok((base, text))
}

/// A stage's name, else an image reference.
fn from_ref(spec: &Spec, text: &str, dir: &Path) -> Result<BaseRef, Problem> {
    if spec.stage_index(text).is_some() {
        return Ok(BaseRef::Stage(text.to_string()));
    }
    BaseRef::parse(text, dir)
}

/// Expands stage `index` for `request.target`; `base_env` is the environment its base
/// leaves (the base image's config Env, or the stage it is built on), visible to
/// `${NAME}` everywhere after `from:`.
pub(super) fn plan_stage(
    spec: &Spec,
    index: usize,
    request: &PlanRequest,
    base_env: &[(String, String)],
) -> Result<Plan, RecipeError> {
    let stage = &spec.stages[index];
    let (mut scope, parts, runs_on) = start_scope(spec, stage, request)?;
    let (from, from_text) = stage_from(spec, index, request)?;
    for (name, value) in base_env {
        scope.set(name, value);
    }
    expand_plan(
        spec,
        stage,
        request,
        scope,
        parts,
        (from, from_text),
        runs_on,
    )
    .map_err(|flaw| flaw.in_file(request.file))
}

/// The variables `from:` may use, and the parts of a plan settled before any recipe
/// value is expanded.
fn start_scope(
    spec: &Spec,
    stage: &StageSpec,
    request: &PlanRequest,
) -> Result<(Scope, Planned, Platform), RecipeError> {
    let (args, warnings) = effective_args(spec, stage, request)?;
    let (runs_on, target) = stage_platforms(stage, request.target, request.build);
    let platform_vars = platform_vars(&target, request.build);
    let build_env = build_env(&runs_on, &platform_vars, &args);
    // Args after platform variables: neither can shadow the other (reserved names), so
    // the order only documents intent.
    let mut scope = Scope::default();
    for (name, value) in platform_vars.iter().chain(&args) {
        scope.set(name, value);
    }
    let parts = Planned {
        args,
        build_env,
        warnings,
        target,
    };
    Ok((scope, parts, runs_on))
}

/// The parts of a plan settled before any recipe value is expanded.
struct Planned {
    args: Vec<(String, String)>,
    build_env: Vec<(String, String)>,
    warnings: Vec<String>,
    target: Platform,
}

/// Declared defaults (the top level's, then the stage's own) overridden by
/// `--build-arg` (the last one given for a name wins), sorted by name. An undeclared
/// `--build-arg` is still visible, with a warning, as docker does; declared anywhere in
/// the recipe counts as declared.
fn effective_args(
    spec: &Spec,
    stage: &StageSpec,
    request: &PlanRequest,
) -> Result<(Pairs, Vec<String>), RecipeError> {
    let mut args: std::collections::BTreeMap<String, String> =
        spec.args.iter().chain(&stage.args).cloned().collect();
    let mut warnings = Vec::new();
    check_build_args(request.build_args)?;
    for (name, value) in request.build_args {
        let declared = spec
            .args
            .iter()
            .chain(spec.stages.iter().flat_map(|s| &s.args))
            .any(|(declared, _)| declared == name);
        let warning = format!(
            "build arg {name} is not declared in `args:` of {}",
            request.file.display()
        );
        if !declared && !warnings.contains(&warning) {
            warnings.push(warning);
        }
        args.insert(name.clone(), value.clone());
    }
    Ok((args.into_iter().collect(), warnings))
}

/// `--build-arg` names: shell variable names, and none of those xbake sets itself.
pub(super) fn check_build_args(build_args: &[(String, String)]) -> Result<(), RecipeError> {
    for (name, _) in build_args {
        let bad = |problem| RecipeError::BuildArg {
            name: name.clone(),
            problem,
        };
        if !is_var_name(name) {
            return Err(bad(Problem::BadName {
                what: "build arg",
                name: name.clone(),
            }));
        }
        if is_reserved_name(name) {
            return Err(bad(Problem::ReservedArg { name: name.clone() }));
        }
    }
    Ok(())
}

/// `scope` holds what `from:` may use plus the base's env, and grows with each env
/// entry and env step.
fn expand_plan(
    spec: &Spec,
    stage: &StageSpec,
    request: &PlanRequest,
    mut scope: Scope,
    planned: Planned,
    (from, from_text): (BaseRef, String),
    runs_on: Platform,
) -> Result<Plan, Flaw> {
    let env = expand_vars(&mut scope, &stage.env)?;
    let workdir = stage
        .workdir
        .as_ref()
        .map(|dir| absolute_dir(&scope, dir))
        .transpose()?;

    let mut steps = Vec::with_capacity(stage.steps.len());
    let mut user = None;
    let context = StepContext {
        spec,
        dir: request.dir,
    };
    for (index, step) in stage.steps.iter().enumerate() {
        let kind = expand_step(&mut scope, &context, &step.kind)?;
        if let StepKind::User(name) = &kind {
            user = Some(name.clone());
        }
        let is_run = matches!(kind, StepKind::Run { .. });
        steps.push(PlanStep {
            number: index + 1,
            location: step.at.in_file(request.file),
            normalize: is_run && step.normalize.unwrap_or(stage.normalize),
            // The recipe's `shell:` is the final image's; stages run /bin/sh.
            shell: spec
                .config
                .shell
                .clone()
                .filter(|_| is_run && stage.name.is_none()),
            kind,
        });
    }

    // Only the final image carries the recipe's config; a stage is built to be used.
    let config = if stage.name.is_none() {
        ConfigSpec {
            entrypoint: spec.config.entrypoint.clone(),
            cmd: spec.config.cmd.clone(),
            labels: expand_sorted(&scope, &spec.config.labels)?,
            exposed_ports: spec.config.exposed_ports.clone(),
            stop_signal: spec.config.stop_signal.clone(),
            volumes: spec.config.volumes.clone(),
            user,
            healthcheck: spec.config.healthcheck.clone(),
            shell: spec.config.shell.clone(),
            onbuild: Vec::new(),
            author: None,
            manifest_annotations: expand_sorted(&scope, &spec.config.manifest_annotations)?,
            index_annotations: expand_sorted(&scope, &spec.config.index_annotations)?,
        }
    } else {
        ConfigSpec {
            user,
            ..ConfigSpec::default()
        }
    };

    Ok(Plan {
        stage: stage.name.clone(),
        platform: runs_on,
        target: planned.target,
        from,
        from_text,
        args: planned.args,
        build_env: planned.build_env,
        env,
        workdir,
        steps,
        config,
        source_date_epoch: spec.source_date_epoch,
        warnings: planned.warnings,
    })
}

/// What expanding a step needs to know besides the variables.
struct StepContext<'a> {
    spec: &'a Spec,
    dir: &'a Path,
}

fn expand(scope: &Scope, template: &Template) -> Result<String, Flaw> {
    scope
        .expand(&template.text)
        .map_err(|problem| problem.at(template.at))
}

/// Labels and annotations: values expanded, sorted by key so the bytes written do not
/// depend on YAML order. (A key written twice is refused by the YAML parser.)
fn expand_sorted(scope: &Scope, entries: &[(String, Template)]) -> Result<Pairs, Flaw> {
    let mut pairs = entries
        .iter()
        .map(|(key, value)| Ok((key.clone(), expand(scope, value)?)))
        .collect::<Result<Pairs, Flaw>>()?;
    pairs.sort();
    Ok(pairs)
}

/// Expands env entries in order, each one visible to those after it.
fn expand_vars(scope: &mut Scope, vars: &[Var]) -> Result<Vec<(String, String)>, Flaw> {
    let mut out = Vec::with_capacity(vars.len());
    for var in vars {
        let value = expand(scope, &var.value)?;
        scope.set(&var.name, &value);
        out.push((var.name.clone(), value));
    }
    Ok(out)
}

fn absolute_dir(scope: &Scope, dir: &Template) -> Result<String, Flaw> {
    let value = expand(scope, dir)?;
    if !is_absolute(&value) {
        return Err(Problem::RelativeWorkdir { value }.at(dir.at));
    }
    Ok(value)
}

fn expand_step(
    scope: &mut Scope,
    context: &StepContext,
    step: &StepTemplate,
) -> Result<StepKind, Flaw> {
    Ok(match step {
        StepTemplate::Run {
            command,
            network,
            mounts,
        } => StepKind::Run {
            command: command.clone(),
            network: *network,
            mounts: run_mounts(scope, context, mounts)?,
            args: Vec::new(),
        },
        StepTemplate::Copy {
            from,
            sources,
            to,
            mode,
            owner,
        } => {
            let from = from
                .as_ref()
                .map(|from| copy_from(scope, context, from))
                .transpose()?;
            StepKind::Copy {
                sources: sources
                    .iter()
                    .map(|source| match from {
                        None => copy_source(scope, source),
                        Some(_) => {
                            non_empty(expand(scope, source)?, source.at, Problem::EmptyCopySource)
                        }
                    })
                    .collect::<Result<_, _>>()?,
                from,
                to: non_empty(expand(scope, to)?, to.at, Problem::EmptyCopyDestination)?,
                mode: *mode,
                owner: owner.map(|(uid, gid)| CopyOwner::Ids(uid, gid)),
                unpack: false,
            }
        }
        StepTemplate::Env(vars) => StepKind::Env(expand_vars(scope, vars)?),
        StepTemplate::Workdir(dir) => StepKind::Workdir(absolute_dir(scope, dir)?),
        StepTemplate::User(user) => {
            let value = expand(scope, user)?;
            if !is_valid_user(&value) {
                return Err(Problem::BadUser { value }.at(user.at));
            }
            StepKind::User(value)
        }
    })
}

/// Rejects what is wrong whatever the disk holds (absolute, `..` out of the folder)
/// now; `resolve_copy_sources` checks symlinks when the files are read.
fn copy_source(scope: &Scope, source: &Template) -> Result<String, Flaw> {
    let pattern = non_empty(expand(scope, source)?, source.at, Problem::EmptyCopySource)?;
    if Path::new(&pattern).is_absolute() {
        return Err(Problem::AbsoluteCopySource { pattern }.at(source.at));
    }
    if relative_inside(Path::new(&pattern)).is_none() {
        return Err(Problem::EscapesRecipeDir {
            what: "copy source",
            path: pattern,
        }
        .at(source.at));
    }
    Ok(pattern)
}

fn non_empty(value: String, at: Pos, problem: Problem) -> Result<String, Flaw> {
    if value.is_empty() {
        return Err(problem.at(at));
    }
    Ok(value)
}

/// A copy step's or bind mount's `from:`: a stage of this recipe, else an image.
fn copy_from(scope: &Scope, context: &StepContext, from: &Template) -> Result<CopyFrom, Flaw> {
    let text = expand(scope, from)?;
    if context.spec.stage_index(&text).is_some() {
        return Ok(CopyFrom::Stage(text));
    }
    match BaseRef::parse(&text, context.dir).map_err(|p| p.at(from.at))? {
        BaseRef::Scratch => Err(Problem::EmptyFrom.at(from.at)),
        base => Ok(CopyFrom::Image { base, text }),
    }
}

fn run_mounts(
    scope: &Scope,
    context: &StepContext,
    mounts: &[MountTemplate],
) -> Result<Vec<RunMount>, Flaw> {
    let mut out: Vec<RunMount> = Vec::with_capacity(mounts.len());
    for mount in mounts {
        let target = match (&mount.target, &mount.kind) {
            (Some(target), _) => mount_target(expand(scope, target)?, target.at)?,
            (None, MountKindTemplate::Secret { id, .. }) => format!("/run/secrets/{id}"),
            (None, _) => {
                return Err(Problem::MountKeyMissing {
                    kind: "this",
                    key: "target",
                }
                .at(mount.at));
            }
        };
        if out.iter().any(|m| m.target == target) {
            return Err(Problem::DuplicateMountTarget { target }.at(mount.at));
        }
        let kind = match &mount.kind {
            MountKindTemplate::Cache {
                id,
                sharing,
                mode,
                uid,
                gid,
            } => RunMountKind::Cache {
                id: match id {
                    Some(id) => non_empty(
                        expand(scope, id)?,
                        id.at,
                        Problem::MountKeyMissing {
                            kind: "cache",
                            key: "id",
                        },
                    )?,
                    // BuildKit's default: the target names the cache.
                    None => target.clone(),
                },
                sharing: *sharing,
                mode: *mode,
                uid: *uid,
                gid: *gid,
            },
            MountKindTemplate::Secret {
                id,
                required,
                mode,
                uid,
                gid,
            } => RunMountKind::Secret {
                id: id.clone(),
                required: *required,
                mode: *mode,
                uid: *uid,
                gid: *gid,
            },
            MountKindTemplate::Bind {
                from,
                source,
                readwrite,
            } => RunMountKind::Bind {
                from: from
                    .as_ref()
                    .map(|from| copy_from(scope, context, from))
                    .transpose()?,
                source: match source {
                    Some(source) => expand(scope, source)?,
                    None => String::new(),
                },
                readwrite: *readwrite,
            },
            MountKindTemplate::Tmpfs { size } => RunMountKind::Tmpfs { size: *size },
        };
        out.push(RunMount { target, kind });
    }
    Ok(out)
}

/// An absolute path, not `/` and not where the sandbox mounts its own filesystems;
/// trailing slashes dropped.
fn mount_target(value: String, at: Pos) -> Result<String, Flaw> {
    let trimmed = value.trim_end_matches('/');
    let reserved = ["/proc", "/dev", "/sys"]
        .iter()
        .any(|r| trimmed == *r || trimmed.starts_with(&format!("{r}/")));
    let dots = trimmed.split('/').any(|part| part == "..");
    if !is_absolute(&value) || trimmed.is_empty() || reserved || dots {
        return Err(Problem::BadMountTarget { value }.at(at));
    }
    Ok(trimmed.to_string())
}

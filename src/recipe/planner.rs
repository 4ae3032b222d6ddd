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
use super::model::{Spec, StepTemplate, Template, Var};
use super::plan::{ConfigSpec, Plan, PlanStep, StepKind};
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

pub(super) fn plan(spec: &Spec, request: &PlanRequest) -> Result<Plan, RecipeError> {
    let (args, warnings) = effective_args(spec, request)?;
    let platform_vars = platform_vars(request.target, request.build);
    let build_env = build_env(request.target, &platform_vars, &args);
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
    };
    expand_plan(spec, request, scope, parts).map_err(|flaw| flaw.in_file(request.file))
}

/// The parts of a plan settled before any recipe value is expanded.
struct Planned {
    args: Vec<(String, String)>,
    build_env: Vec<(String, String)>,
    warnings: Vec<String>,
}

/// Declared defaults overridden by `--build-arg` (the last one given for a name wins),
/// sorted by name. An undeclared `--build-arg` is still visible, with a warning, as
/// docker does.
fn effective_args(spec: &Spec, request: &PlanRequest) -> Result<(Pairs, Vec<String>), RecipeError> {
    let mut args: std::collections::BTreeMap<String, String> = spec.args.iter().cloned().collect();
    let mut warnings = Vec::new();
    for (name, value) in request.build_args {
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
        let declared = spec.args.iter().any(|(declared, _)| declared == name);
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

/// `scope` starts with what `from:` may use and grows with each env entry and env step.
fn expand_plan(
    spec: &Spec,
    request: &PlanRequest,
    mut scope: Scope,
    planned: Planned,
) -> Result<Plan, Flaw> {
    let from_text = expand(&scope, &spec.from)?;
    let from = BaseRef::parse(&from_text, request.dir).map_err(|p| p.at(spec.from.at))?;
    let env = expand_vars(&mut scope, &spec.env)?;
    let workdir = spec
        .workdir
        .as_ref()
        .map(|dir| absolute_dir(&scope, dir))
        .transpose()?;

    let mut steps = Vec::with_capacity(spec.steps.len());
    let mut user = None;
    for (index, step) in spec.steps.iter().enumerate() {
        let kind = expand_step(&mut scope, &step.kind)?;
        if let StepKind::User(name) = &kind {
            user = Some(name.clone());
        }
        let is_run = matches!(kind, StepKind::Run { .. });
        steps.push(PlanStep {
            number: index + 1,
            location: step.at.in_file(request.file),
            normalize: is_run && step.normalize.unwrap_or(spec.normalize),
            shell: spec.config.shell.clone().filter(|_| is_run),
            kind,
        });
    }

    let config = ConfigSpec {
        entrypoint: spec.config.entrypoint.clone(),
        cmd: spec.config.cmd.clone(),
        labels: expand_sorted(&scope, &spec.config.labels)?,
        exposed_ports: spec.config.exposed_ports.clone(),
        stop_signal: spec.config.stop_signal.clone(),
        volumes: spec.config.volumes.clone(),
        user,
        healthcheck: spec.config.healthcheck.clone(),
        shell: spec.config.shell.clone(),
        manifest_annotations: expand_sorted(&scope, &spec.config.manifest_annotations)?,
        index_annotations: expand_sorted(&scope, &spec.config.index_annotations)?,
    };

    Ok(Plan {
        platform: *request.target,
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

fn expand_step(scope: &mut Scope, step: &StepTemplate) -> Result<StepKind, Flaw> {
    Ok(match step {
        StepTemplate::Run { command, network } => StepKind::Run {
            command: command.clone(),
            network: *network,
        },
        StepTemplate::Copy {
            sources,
            to,
            mode,
            owner,
        } => StepKind::Copy {
            sources: sources
                .iter()
                .map(|source| copy_source(scope, source))
                .collect::<Result<_, _>>()?,
            to: non_empty(expand(scope, to)?, to.at, Problem::EmptyCopyDestination)?,
            mode: *mode,
            owner: *owner,
        },
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

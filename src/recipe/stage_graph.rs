//! The stage graph as far as the recipe text shows it: which stage uses which (by
//! `from:` of the stage, of a copy step, of a bind mount), refused when it loops, and
//! which stages depend on the target platform.
//!
//! A `platform: build` (or fixed-platform) stage is built once per target only when its
//! result can differ between targets; otherwise once, as if it targeted its own
//! platform. It can differ when the stage names a TARGET* variable anywhere, uses a
//! stage that can differ, or names a stage through a variable (which might be one).
//! BuildKit asks the same of a Dockerfile stage: TARGET* is visible only where the
//! stage declares `ARG TARGETARCH`.

use super::error::{Flaw, Problem};
use super::model::{MountKindTemplate, StagePlatform, StageSpec, StepTemplate, Template};
use super::plan::RunCommand;

const TARGET_VARS: [&str; 4] = ["TARGETPLATFORM", "TARGETOS", "TARGETARCH", "TARGETVARIANT"];

/// A stage's reference to another filesystem, as written.
struct Uses<'a> {
    /// Literal names (stage names or image references: only the former matter).
    names: Vec<&'a Template>,
    /// Whether a reference goes through a variable.
    templated: bool,
}

fn uses(stage: &StageSpec) -> Uses<'_> {
    let mut names = vec![&stage.from];
    for step in &stage.steps {
        match &step.kind {
            StepTemplate::Copy {
                from: Some(from), ..
            } => names.push(from),
            StepTemplate::Run { mounts, .. } => {
                for mount in mounts {
                    if let MountKindTemplate::Bind {
                        from: Some(from), ..
                    } = &mount.kind
                    {
                        names.push(from);
                    }
                }
            }
            _ => {}
        }
    }
    let templated = names.iter().any(|t| t.text.contains('$'));
    Uses { names, templated }
}

/// Every text of the stage a variable could appear in.
fn mentions_target(stage: &StageSpec) -> bool {
    let mut texts: Vec<&str> = vec![&stage.from.text];
    texts.extend(stage.env.iter().map(|v| v.value.text.as_str()));
    texts.extend(stage.workdir.iter().map(|w| w.text.as_str()));
    texts.extend(stage.args.iter().map(|(_, default)| default.as_str()));
    for step in &stage.steps {
        match &step.kind {
            StepTemplate::Run {
                command, mounts, ..
            } => {
                match command {
                    RunCommand::Shell(script) => texts.push(script),
                    RunCommand::Exec(argv) => texts.extend(argv.iter().map(String::as_str)),
                }
                for mount in mounts {
                    texts.extend(mount.target.iter().map(|t| t.text.as_str()));
                    match &mount.kind {
                        MountKindTemplate::Cache { id, .. } => {
                            texts.extend(id.iter().map(|t| t.text.as_str()))
                        }
                        MountKindTemplate::Bind { from, source, .. } => {
                            texts.extend(from.iter().chain(source).map(|t| t.text.as_str()))
                        }
                        MountKindTemplate::Secret { .. } | MountKindTemplate::Tmpfs { .. } => {}
                    }
                }
            }
            StepTemplate::Copy {
                from, sources, to, ..
            } => texts.extend(
                from.iter()
                    .chain(sources)
                    .chain([to])
                    .map(|t| t.text.as_str()),
            ),
            StepTemplate::Env(vars) => texts.extend(vars.iter().map(|v| v.value.text.as_str())),
            StepTemplate::Workdir(t) | StepTemplate::User(t) => texts.push(&t.text),
        }
    }
    texts
        .iter()
        .any(|text| TARGET_VARS.iter().any(|name| text.contains(name)))
}

/// Refuses loops among literal stage references and sets each stage's
/// `target_dependent`.
pub(super) fn settle_target_dependence(stages: &mut [StageSpec]) -> Result<(), Flaw> {
    settle_target_dependence_with(stages, &|_, stage| {
        stage.platform == StagePlatform::Target || mentions_target(stage)
    })
}

/// The same, with the front end saying which stages depend on the target by
/// themselves (`own`): a recipe's by the variables it names, a Dockerfile's by the
/// TARGET* ARGs it declares. Using a stage that does, or naming one through a variable,
/// makes a stage depend on it too.
pub(super) fn settle_target_dependence_with(
    stages: &mut [StageSpec],
    own: &dyn Fn(usize, &StageSpec) -> bool,
) -> Result<(), Flaw> {
    let index_of = |name: &str| stages.iter().position(|s| s.name.as_deref() == Some(name));
    let mut edges: Vec<Vec<(usize, super::error::Pos)>> = Vec::with_capacity(stages.len());
    let is_own = own;
    let mut own: Vec<bool> = Vec::with_capacity(stages.len());
    for (index, stage) in stages.iter().enumerate() {
        let uses = uses(stage);
        edges.push(
            uses.names
                .iter()
                .filter_map(|t| index_of(&t.text).map(|i| (i, t.at)))
                .collect(),
        );
        own.push(uses.templated || is_own(index, stage));
    }
    let mut state = vec![Visit::New; stages.len()];
    let mut dependent = own.clone();
    for start in 0..stages.len() {
        let mut path = Vec::new();
        visit(start, &edges, &mut state, &mut dependent, &mut path).map_err(|cycle| {
            let names: Vec<&str> = cycle
                .iter()
                .map(|&i| stages[i].name.as_deref().unwrap_or("(final)"))
                .collect();
            let first = cycle[0];
            let at = edges[first]
                .iter()
                .find(|(to, _)| Some(to) == cycle.get(1))
                .map_or(stages[first].from.at, |(_, at)| *at);
            Problem::StageCycle {
                name: names[0].to_string(),
                cycle: names.join(" -> "),
            }
            .at(at)
        })?;
    }
    for (stage, dependent) in stages.iter_mut().zip(dependent) {
        stage.target_dependent = dependent;
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Visit {
    New,
    Open,
    Done,
}

/// Depth-first: a stage depends on the target if it does itself or a stage it uses
/// does. Returns the loop (first stage repeated at the end) when there is one.
fn visit(
    i: usize,
    edges: &[Vec<(usize, super::error::Pos)>],
    state: &mut [Visit],
    dependent: &mut [bool],
    path: &mut Vec<usize>,
) -> Result<(), Vec<usize>> {
    match state[i] {
        Visit::Done => return Ok(()),
        Visit::Open => {
            let start = path.iter().position(|&p| p == i).unwrap_or(0);
            let mut cycle = path[start..].to_vec();
            cycle.push(i);
            return Err(cycle);
        }
        Visit::New => {}
    }
    state[i] = Visit::Open;
    path.push(i);
    for &(to, _) in &edges[i] {
        visit(to, edges, state, dependent, path)?;
        if dependent[to] {
            dependent[i] = true;
        }
    }
    path.pop();
    state[i] = Visit::Done;
    Ok(())
}

//! A Dockerfile's stage graph in the recipe model's terms: for every stage its name,
//! its FROM, where it runs, and the stages it reads (`COPY --from`, bind mounts), so
//! the build graph, `--target`, and the target-dependence rules work on it unchanged.
//! The steps themselves are planned from the Dockerfile (see `plan`), not from here.

use super::Dockerfile;
use super::error::{DockerfileError, SyntaxProblem};
use super::instructions::{Flag, Kind};
use super::plan::Stage;
use crate::recipe::Location;
use crate::recipe::error::Pos;
use crate::recipe::model::{
    ConfigTemplate, MountKindTemplate, MountTemplate, Spec, StagePlatform, StageSpec, StepSpec,
    StepTemplate, Template,
};
use crate::recipe::plan::{Network, RunCommand};

const TARGET_ARGS: [&str; 4] = ["TARGETPLATFORM", "TARGETOS", "TARGETARCH", "TARGETVARIANT"];

fn template(text: &str, line: usize) -> Template {
    Template {
        text: text.to_string(),
        at: Pos { line, column: 1 },
    }
}

/// What the graph calls a stage: its alias, else its index; the last stage, when it
/// has no alias, is the final image (no name), as a recipe's top level is.
pub(super) fn stage_name(stage: &Stage, count: usize) -> Option<String> {
    match &stage.alias {
        Some(alias) => Some(alias.clone()),
        None if stage.index + 1 == count => None,
        None => Some(stage.index.to_string()),
    }
}

/// Where a stage runs, from its `FROM --platform=` as written.
fn stage_platform(stage: &Stage) -> Result<StagePlatform, DockerfileError> {
    let Kind::From { platform, .. } = &stage.from.kind else {
        return Ok(StagePlatform::Target);
    };
    let Some(text) = platform else {
        return Ok(StagePlatform::Target);
    };
    let err = |problem| DockerfileError::in_instruction(stage.from.line, "FROM", problem);
    let bare = text
        .trim_start_matches('$')
        .trim_start_matches('{')
        .trim_end_matches('}');
    match bare {
        "BUILDPLATFORM" => Ok(StagePlatform::Build),
        "TARGETPLATFORM" => Ok(StagePlatform::Target),
        _ if text.contains('$') => Err(err(SyntaxProblem::Unsupported(
            "FROM --platform with a variable other than $BUILDPLATFORM or $TARGETPLATFORM",
        ))),
        _ => text
            .parse()
            .map(StagePlatform::Fixed)
            .map_err(|e: crate::platform::PlatformError| {
                err(SyntaxProblem::Invalid(format!("--platform={text}: {e}")))
            }),
    }
}

/// The `from=` of a `--mount=type=bind,…` flag, when it has one.
fn bind_from(flag: &Flag) -> Option<String> {
    let value = flag.value.as_deref()?;
    let fields: Vec<(&str, &str)> = value
        .split(',')
        .filter_map(|field| field.split_once('='))
        .collect();
    let is_bind = fields
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("type"))
        .is_none_or(|(_, v)| *v == "bind");
    if !is_bind {
        return None;
    }
    fields
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("from"))
        .map(|(_, v)| v.to_string())
}

/// The stage's steps as far as the graph needs them: the filesystems they read, and
/// whether it declares a TARGET* ARG (the only way its steps can see the target).
fn skeleton_steps(stage: &Stage) -> (Vec<StepSpec>, bool) {
    let mut steps = Vec::new();
    let mut names_target = false;
    for instruction in stage.body {
        let at = Pos {
            line: instruction.line,
            column: 1,
        };
        match &instruction.kind {
            Kind::Arg(decls) => {
                names_target |= decls.iter().any(|d| TARGET_ARGS.contains(&d.name.as_str()));
            }
            Kind::Copy { flags, .. } => {
                if let Some(from) = flags
                    .iter()
                    .find(|f| f.name == "from")
                    .and_then(|f| f.value.as_deref())
                {
                    steps.push(StepSpec {
                        at,
                        kind: StepTemplate::Copy {
                            from: Some(template(from, instruction.line)),
                            sources: Vec::new(),
                            to: template("/", instruction.line),
                            mode: None,
                            owner: None,
                        },
                        normalize: None,
                    });
                }
            }
            Kind::Run { flags, .. } => {
                let mounts: Vec<MountTemplate> = flags
                    .iter()
                    .filter(|f| f.name == "mount")
                    .filter_map(bind_from)
                    .map(|from| MountTemplate {
                        at,
                        target: None,
                        kind: MountKindTemplate::Bind {
                            from: Some(template(&from, instruction.line)),
                            source: None,
                            readwrite: false,
                        },
                    })
                    .collect();
                if !mounts.is_empty() {
                    steps.push(StepSpec {
                        at,
                        kind: StepTemplate::Run {
                            command: RunCommand::Exec(Vec::new()),
                            network: None,
                            mounts,
                        },
                        normalize: None,
                    });
                }
            }
            _ => {}
        }
    }
    (steps, names_target)
}

/// The recipe-model stages of a Dockerfile, with target dependence settled.
pub(in crate::recipe) fn spec(file: &Dockerfile) -> Result<Spec, DockerfileError> {
    let stages = file.stages();
    let mut specs = Vec::with_capacity(stages.len());
    let mut names_target = Vec::with_capacity(stages.len());
    for stage in &stages {
        let Kind::From { image, .. } = &stage.from.kind else {
            continue;
        };
        let (steps, declares_target) = skeleton_steps(stage);
        names_target.push(declares_target);
        specs.push(StageSpec {
            name: stage_name(stage, stages.len()),
            from: template(image, stage.from.line),
            platform: stage_platform(stage)?,
            args: Vec::new(),
            env: Vec::new(),
            workdir: None,
            normalize: true,
            steps,
            target_dependent: false,
        });
    }
    crate::recipe::stage_graph::settle_target_dependence_with(&mut specs, &|index, stage| {
        stage.platform == StagePlatform::Target || names_target[index]
    })
    .map_err(|flaw| {
        DockerfileError::at(
            flaw.at.line,
            SyntaxProblem::Invalid(flaw.problem.to_string()),
        )
    })?;
    Ok(Spec {
        platforms: Vec::new(),
        args: Vec::new(),
        source_date_epoch: None,
        stages: specs,
        config: ConfigTemplate::default(),
    })
}

/// Every RUN's own `--network`, with where it is and its step number in the stage (the
/// plan's numbering: the instructions that make steps).
pub(in crate::recipe) fn run_networks(
    file: &Dockerfile,
    path: &std::path::Path,
) -> Vec<(Location, usize, Option<Network>)> {
    let mut out = Vec::new();
    for stage in file.stages() {
        let mut number = 0;
        for instruction in stage.body {
            let makes_step = matches!(
                instruction.kind,
                Kind::Env(_)
                    | Kind::Workdir(_)
                    | Kind::User(_)
                    | Kind::Run { .. }
                    | Kind::Copy { .. }
            );
            if makes_step {
                number += 1;
            }
            if let Kind::Run { flags, .. } = &instruction.kind {
                let network = flags.iter().find(|f| f.name == "network").and_then(|f| {
                    match f.value.as_deref() {
                        Some("none") => Some(Network::None),
                        Some("host") => Some(Network::Host),
                        _ => None,
                    }
                });
                let location = Location {
                    file: path.to_path_buf(),
                    line: instruction.line,
                    column: 1,
                };
                out.push((location, number, network));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stages(text: &str) -> Vec<(Option<String>, StagePlatform, bool)> {
        spec(&Dockerfile::parse(text).unwrap())
            .unwrap()
            .stages
            .into_iter()
            .map(|s| (s.name, s.platform, s.target_dependent))
            .collect()
    }

    #[test]
    fn stage_names_platforms_and_target_dependence() {
        let text = "FROM --platform=$BUILDPLATFORM a AS tools\nRUN make\nFROM --platform=$BUILDPLATFORM a AS build\nARG TARGETARCH\nFROM --platform=linux/amd64 a\nCOPY --from=build /x /x\nFROM b\nCOPY --from=0 /t /t\nRUN --mount=type=bind,from=2,target=/m true\n";
        assert_eq!(
            stages(text),
            [
                (Some("tools".into()), StagePlatform::Build, false),
                (Some("build".into()), StagePlatform::Build, true),
                // Runs on a fixed platform, but reads a stage that depends on the target.
                (
                    Some("2".into()),
                    StagePlatform::Fixed("linux/amd64".parse().unwrap()),
                    true
                ),
                (None, StagePlatform::Target, true),
            ]
        );
        let err = spec(&Dockerfile::parse("ARG P=linux/arm64\nFROM --platform=$P a\n").unwrap())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "2: FROM: not supported yet: FROM --platform with a variable other than $BUILDPLATFORM or $TARGETPLATFORM"
        );
    }

    #[test]
    fn run_networks_are_numbered_as_plan_steps() {
        let file = Dockerfile::parse(
            "FROM a\nENV A=1\nLABEL x=y\nRUN --network=none true\nRUN --network=host true\n",
        )
        .unwrap();
        let networks: Vec<_> = run_networks(&file, std::path::Path::new("Dockerfile"))
            .into_iter()
            .map(|(at, n, net)| (at.line, n, net))
            .collect();
        assert_eq!(
            networks,
            [(4, 2, Some(Network::None)), (5, 3, Some(Network::Host))]
        );
    }
}

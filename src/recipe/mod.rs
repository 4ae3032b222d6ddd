//! The recipe: its YAML schema (v1), validation with `file:line:column` in every error,
//! and expansion of `${TARGETARCH}`-style variables and build args per platform.
//!
//! ```text
//! recipe.yaml ──Recipe::load──▶ Recipe (checked, unexpanded) ──plan(platform, args)──▶ Plan
//! ```
//! Loading judges everything that does not depend on the platform; planning expands
//! and judges the rest. Neither touches the disk beyond reading the recipe:
//! [`resolve_copy_sources`] does, when the builder is about to copy.
//!
//! Choices the format leaves open, settled here:
//! - `mode:` is read as octal text whether quoted or not (`0644`, `644`, `"0644"` and
//!   `0o644` are all rw-r--r--); a YAML integer is never reinterpreted.
//! - `entrypoint:`/`cmd:` given as a string become `["/bin/sh", "-c", STRING]`, or the
//!   `config: shell:` list followed by STRING; shell-form run steps use that shell too.
//! - A healthcheck `test:` string means `["CMD-SHELL", STRING]`.
//! - `exposed_ports:` are stored as `PORT/proto` (`8080` → `8080/tcp`).
//! - An `args:` entry with no value (`VERSION:`) declares the arg with an empty default.
//! - Build args may not use the names xbake sets (TARGET*, BUILD*, GOOS, GOARCH, GOARM).
//! - `platforms:` and `copy:` take a string or a list of strings.

mod base;
mod builtin_vars;
mod copy_sources;
pub mod dockerfile;
mod error;
mod expand;
mod fields;
mod lint;
mod model;
mod mounts;
mod plan;
mod planner;
mod schema;
mod stage_graph;
mod validate;

#[cfg(test)]
mod stage_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
use tests as tests_support;

use std::path::{Path, PathBuf};

pub use base::BaseRef;
pub use copy_sources::resolve_copy_sources;
pub use error::{Location, Problem, RecipeError};
pub use model::StagePlatform;
pub use plan::{
    CacheSharing, ConfigSpec, CopyFrom, CopyOwner, Healthcheck, Network, Plan, PlanStep,
    RunCommand, RunMount, RunMountKind, StepKind, UnknownNetwork, url_file_name,
};

use crate::digest::Digest;
use crate::platform::Platform;
use error::Pos;
use planner::PlanRequest;

/// A parsed and validated recipe, not yet expanded for a platform.
#[derive(Clone, Debug)]
pub struct Recipe {
    file: PathBuf,
    dir: PathBuf,
    digest: Digest,
    /// The stages; for a Dockerfile, their graph only (see `dockerfile::skeleton`).
    spec: model::Spec,
    /// Set when the recipe is a Dockerfile: its stages are planned from it.
    dockerfile: Option<dockerfile::Dockerfile>,
    /// `file:line:column: message`, for the builder to show (see [`Recipe::warnings`]).
    warnings: Vec<String>,
}

impl Recipe {
    /// Reads and parses the recipe at `path`, a YAML recipe or a Dockerfile (see
    /// [`is_dockerfile`]); errors name `path` as given.
    pub fn load(path: &Path) -> Result<Recipe, RecipeError> {
        let text = std::fs::read_to_string(path).map_err(|source| RecipeError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        if is_dockerfile(path, &text) {
            Recipe::parse_dockerfile(&text, path)
        } else {
            Recipe::parse(&text, path)
        }
    }

    /// Parses Dockerfile text into the same stages a recipe has; `file` is the name
    /// shown in errors (`Dockerfile:12: COPY: …`), and its parent the default context.
    pub fn parse_dockerfile(text: &str, file: &Path) -> Result<Recipe, RecipeError> {
        let in_file = |error| RecipeError::Dockerfile {
            file: file.to_path_buf(),
            error,
        };
        let parsed = dockerfile::Dockerfile::parse(text).map_err(in_file)?;
        let spec = dockerfile::skeleton::spec(&parsed).map_err(in_file)?;
        let mut warnings: Vec<String> = parsed
            .warnings
            .iter()
            .map(|(line, message)| format!("{}:{line}: {message}", file.display()))
            .collect();
        if let Some(syntax) = &parsed.syntax {
            warnings.push(format!(
                "{}:1: # syntax={syntax} is not used: xbake reads the Dockerfile itself",
                file.display()
            ));
        }
        Ok(Recipe {
            file: file.to_path_buf(),
            dir: recipe_dir(file),
            digest: Digest::of(text.as_bytes()),
            spec,
            dockerfile: Some(parsed),
            warnings,
        })
    }

    /// Parses recipe text. `file` is the name shown in errors, and its parent is the
    /// recipe folder that relative paths start from.
    pub fn parse(text: &str, file: &Path) -> Result<Recipe, RecipeError> {
        let raw: schema::RawRecipe = serde_saphyr::from_str_with_options(text, parser_options())
            .map_err(|error| yaml_error(&error, file))?;
        let warnings = lint::unexpanded(&raw)
            .into_iter()
            .map(|(at, message)| format!("{}: {message}", at.in_file(file)))
            .collect();
        let spec = validate::validate(raw).map_err(|flaw| flaw.in_file(file))?;
        Ok(Recipe {
            file: file.to_path_buf(),
            dir: recipe_dir(file),
            digest: Digest::of(text.as_bytes()),
            spec,
            dockerfile: None,
            warnings,
        })
    }

    /// What is valid but probably not meant (`${…}` in an exec-form command, which
    /// nothing expands), as `file:line:column: message`; the same for every platform.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The folder relative paths in the recipe start from.
    /// Whether it was read from a Dockerfile (else a YAML recipe).
    pub fn is_dockerfile(&self) -> bool {
        self.dockerfile.is_some()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn file(&self) -> &Path {
        &self.file
    }

    /// sha256 of the recipe text, for audit metadata.
    pub fn digest(&self) -> Digest {
        self.digest.clone()
    }

    /// The recipe's `platforms:` (the default for `--arch`); may be empty.
    pub fn platforms(&self) -> Vec<Platform> {
        self.spec.platforms.clone()
    }

    /// The recipe's `source_date_epoch:`.
    /// Every build arg the recipe declares, with its default (`""` when none), the top
    /// level's first, then each stage's; a name declared twice is listed once.
    pub fn declared_args(&self) -> Vec<(String, String)> {
        let mut seen = std::collections::BTreeSet::new();
        self.spec
            .args
            .iter()
            .chain(self.spec.stages.iter().flat_map(|stage| &stage.args))
            .filter(|(name, _)| seen.insert(name.clone()))
            .cloned()
            .collect()
    }

    pub fn source_date_epoch(&self) -> Option<i64> {
        self.spec.source_date_epoch
    }

    /// The stage the build writes out: the top level, or `--target NAME`.
    pub fn output_stage(&self, target: Option<&str>) -> Result<usize, RecipeError> {
        match target {
            None => Ok(self.spec.final_stage()),
            Some(name) => self
                .spec
                .stage_index(name)
                .ok_or_else(|| RecipeError::UnknownStage {
                    name: name.to_string(),
                    known: match self.stage_names() {
                        names if names.is_empty() => "none".to_string(),
                        names => names.join(", "),
                    },
                }),
        }
    }

    /// The named stages, in recipe order.
    pub fn stage_names(&self) -> Vec<String> {
        self.spec
            .stages
            .iter()
            .filter_map(|s| s.name.clone())
            .collect()
    }

    pub fn stage_index(&self, name: &str) -> Option<usize> {
        self.spec.stage_index(name)
    }

    /// Display name of stage `index`: its name, or `final` for the top level.
    pub fn stage_label(&self, index: usize) -> &str {
        self.spec.stages[index].name.as_deref().unwrap_or("final")
    }

    /// Where stage `index` runs when `target` is built on `build`, and the platform its
    /// TARGET* variables name (see `stage_graph` for when that is not the target).
    pub fn stage_platforms(
        &self,
        index: usize,
        target: &Platform,
        build: &Platform,
    ) -> (Platform, Platform) {
        planner::stage_platforms(&self.spec.stages[index], target, build)
    }

    /// Every fixed `platform:` a stage names: the build may have to emulate it.
    pub fn fixed_platforms(&self) -> Vec<Platform> {
        let mut out = Vec::new();
        for stage in &self.spec.stages {
            if let StagePlatform::Fixed(p) = stage.platform
                && !out.contains(&p)
            {
                out.push(p);
            }
        }
        out
    }

    /// Every run step's own `network:`, with where it is, over all stages: what the
    /// pre-flight checks need, without expanding anything.
    pub fn run_networks(&self) -> Vec<(Location, usize, Option<Network>)> {
        if let Some(file) = &self.dockerfile {
            return dockerfile::skeleton::run_networks(file, &self.file);
        }
        let mut out = Vec::new();
        for stage in &self.spec.stages {
            for (i, step) in stage.steps.iter().enumerate() {
                if let model::StepTemplate::Run { network, .. } = &step.kind {
                    out.push((step.at.in_file(&self.file), i + 1, *network));
                }
            }
        }
        out
    }

    /// The expanded `from:` of stage `index`: `BaseRef::Stage` for another stage.
    pub fn stage_from(
        &self,
        index: usize,
        target: &Platform,
        build: &Platform,
        build_args: &[(String, String)],
    ) -> Result<(BaseRef, String), RecipeError> {
        if let Some(file) = &self.dockerfile {
            let from = dockerfile::stage_from(
                file,
                index,
                &self.stage_request(target, build, build_args, &[]),
            )
            .map_err(|error| self.dockerfile_error(error))?;
            return Ok((from.base, from.text));
        }
        planner::stage_from(&self.spec, index, &self.request(target, build, build_args))
    }

    /// Expands stage `index` for `target`, built on `build`, with `build_args` from the
    /// command line (later ones win) and `base_env`, the environment its base leaves.
    pub fn plan_stage(
        &self,
        index: usize,
        target: &Platform,
        build: &Platform,
        build_args: &[(String, String)],
        base_env: &[(String, String)],
        base_triggers: &[String],
    ) -> Result<Plan, RecipeError> {
        if let Some(file) = &self.dockerfile {
            planner::check_build_args(build_args)?;
            let request = dockerfile::StageRequest {
                base_triggers,
                ..self.stage_request(target, build, build_args, base_env)
            };
            return dockerfile::plan_stage(file, index, &request)
                .map_err(|error| self.dockerfile_error(error));
        }
        let mut plan = planner::plan_stage(
            &self.spec,
            index,
            &self.request(target, build, build_args),
            base_env,
        )?;
        if !base_triggers.is_empty() {
            plan.warnings.push(format!(
                "the base of stage {} has ONBUILD triggers ({}); only Dockerfiles run them",
                self.stage_label(index),
                base_triggers.join("; ")
            ));
        }
        Ok(plan)
    }

    /// Expands the final image's stage for `target` as if every image base had an empty
    /// environment (stages it is built on contribute theirs).
    pub fn plan(
        &self,
        target: &Platform,
        build: &Platform,
        build_args: &[(String, String)],
    ) -> Result<Plan, RecipeError> {
        self.plan_with_parents(self.spec.final_stage(), target, build, build_args, 0)
    }

    fn plan_with_parents(
        &self,
        index: usize,
        target: &Platform,
        build: &Platform,
        build_args: &[(String, String)],
        depth: usize,
    ) -> Result<Plan, RecipeError> {
        let (base_env, triggers) = match self.stage_from(index, target, build, build_args)?.0 {
            BaseRef::Stage(name) if depth < self.spec.stages.len() => {
                let parent = self.spec.stage_index(&name).unwrap_or(index);
                let parent =
                    self.plan_with_parents(parent, target, build, build_args, depth + 1)?;
                (parent.final_env(&[]), parent.config.onbuild)
            }
            _ => (Vec::new(), Vec::new()),
        };
        self.plan_stage(index, target, build, build_args, &base_env, &triggers)
    }

    fn dockerfile_error(&self, error: dockerfile::DockerfileError) -> RecipeError {
        RecipeError::Dockerfile {
            file: self.file.clone(),
            error,
        }
    }

    fn stage_request<'a>(
        &'a self,
        target: &'a Platform,
        build: &'a Platform,
        build_args: &'a [(String, String)],
        base_env: &'a [(String, String)],
    ) -> dockerfile::StageRequest<'a> {
        dockerfile::StageRequest {
            file: &self.file,
            dir: &self.dir,
            target,
            build,
            build_args,
            base_env,
            base_triggers: &[],
        }
    }

    fn request<'a>(
        &'a self,
        target: &'a Platform,
        build: &'a Platform,
        build_args: &'a [(String, String)],
    ) -> PlanRequest<'a> {
        PlanRequest {
            file: &self.file,
            dir: &self.dir,
            target,
            build,
            build_args,
        }
    }
}

/// Whether `path` holds a Dockerfile rather than a YAML recipe: named `Dockerfile` or
/// `Containerfile` (any case, also `*.Dockerfile`, `Dockerfile.*`), or not named
/// `.yaml`/`.yml` and starting (after comments) with FROM or ARG.
pub fn is_dockerfile(path: &Path, text: &str) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let named = ["dockerfile", "containerfile"].iter().any(|kind| {
        name == *kind
            || name.ends_with(&format!(".{kind}"))
            || name.starts_with(&format!("{kind}."))
    });
    if named {
        return true;
    }
    if name.ends_with(".yaml") || name.ends_with(".yml") {
        return false;
    }
    let first = text
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty() && !line.starts_with('#'))
        .and_then(|line| line.split_whitespace().next())
        .unwrap_or_default()
        .to_ascii_uppercase();
    first == "FROM" || first == "ARG"
}

/// `recipes/hello.yaml` → `recipes`; a bare `hello.yaml` → `.` (not the empty path,
/// which cannot be canonicalised).
fn recipe_dir(file: &Path) -> PathBuf {
    match file.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn parser_options() -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    // We print our own `file:line:column: message`; the snippet is not used.
    options.with_snippet = false;
    // Where a value may be a string or a list (`copy:`, `platforms:`, `run:`), YAML types
    // plain scalars; keep `0644` and `1_000` as written instead of making them numbers,
    // and take only true/false as booleans (not yes/no/on/off).
    options.leading_zero_numbers_as_strings = true;
    options.underscored_numbers_as_strings = true;
    options.strict_booleans = true;
    options
}

/// `config: {user: …}` (and env, workdir): what Dockerfile users write first. In a
/// recipe they are steps, which set the image's value too, so the refusal says where
/// they go. The config's own refusal is told apart by its list of fields.
fn config_field_hint(message: &str) -> Option<&'static str> {
    let rest = message.strip_prefix("unknown field `")?;
    let (field, expected) = rest.split_once('`')?;
    if !expected.contains("expected one of entrypoint") {
        return None;
    }
    Some(match field {
        "user" => {
            "; `user` is a step (`- user: NAME`): it applies to the steps after it and is the image's user"
        }
        "env" => {
            "; `env` is a step (`- env: {KEY: VALUE}`) or top-level key: it applies to the steps after it and is in the image's environment"
        }
        "workdir" => {
            "; `workdir` is a step (`- workdir: /dir`) or top-level key: it applies to the steps after it and is the image's working directory"
        }
        _ => return None,
    })
}

fn yaml_error(error: &serde_saphyr::Error, file: &Path) -> RecipeError {
    use serde_saphyr::MessageFormatter as _;
    let inner = error.without_snippet();
    // The user formatter leaves out the developer hints ("set DuplicateKeyPolicy …").
    let mut message = String::new();
    // format_message's text is not sanitised for terminals (its docs say so).
    for c in serde_saphyr::UserMessageFormatter
        .format_message(inner)
        .chars()
    {
        if c.is_control() {
            message.extend(c.escape_default());
        } else {
            message.push(c);
        }
    }
    if let Some(hint) = config_field_hint(&message) {
        message.push_str(hint);
    }
    match error.location() {
        Some(location) if location.line() > 0 => RecipeError::Yaml {
            at: Pos::of(&location).in_file(file),
            message,
        },
        _ => RecipeError::YamlUnplaced {
            file: file.to_path_buf(),
            message,
        },
    }
}

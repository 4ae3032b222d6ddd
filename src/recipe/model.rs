//! The recipe after validation and before expansion: every value that is checked per
//! platform is a [`Template`] that remembers where it was written.

use super::error::Pos;
use super::plan::{Healthcheck, Network, RunCommand};
use crate::platform::Platform;

/// Text that may contain `${NAME}`, with its position for errors found on expansion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Template {
    pub text: String,
    pub at: Pos,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Var {
    pub name: String,
    pub value: Template,
}

#[derive(Clone, Debug)]
pub(super) struct Spec {
    pub platforms: Vec<Platform>,
    /// Build args declared at the top level, visible to every stage, with their
    /// defaults (`NAME:` with no value means empty).
    pub args: Vec<(String, String)>,
    pub source_date_epoch: Option<i64>,
    /// The named stages in recipe order, then the top level (the final image) last.
    pub stages: Vec<StageSpec>,
    pub config: ConfigTemplate,
}

impl Spec {
    pub fn final_stage(&self) -> usize {
        self.stages.len() - 1
    }

    pub fn stage_index(&self, name: &str) -> Option<usize> {
        self.stages
            .iter()
            .position(|stage| stage.name.as_deref() == Some(name))
    }
}

/// One stage: a base, the steps on it, and where it runs.
#[derive(Clone, Debug)]
pub(super) struct StageSpec {
    /// None for the top level.
    pub name: Option<String>,
    pub from: Template,
    pub platform: StagePlatform,
    /// The stage's own build args (the top level's are in `Spec::args`).
    pub args: Vec<(String, String)>,
    pub env: Vec<Var>,
    pub workdir: Option<Template>,
    /// The stage's `normalize:` (default true).
    pub normalize: bool,
    pub steps: Vec<StepSpec>,
    /// Whether its result depends on the target platform: it runs on it, or names a
    /// TARGET* variable, or uses a stage that does, or names a stage through a variable
    /// (which could be one that does). Settled at load time for the whole graph.
    pub target_dependent: bool,
}

/// Where a stage's steps run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StagePlatform {
    /// The platform being built (the default).
    Target,
    /// The build machine's, natively, with TARGET* still naming the target.
    Build,
    /// Always this platform.
    Fixed(Platform),
}

#[derive(Clone, Debug)]
pub(super) struct StepSpec {
    pub at: Pos,
    pub kind: StepTemplate,
    /// A run step's own `normalize:`; None: the recipe's.
    pub normalize: Option<bool>,
}

#[derive(Clone, Debug)]
pub(super) enum StepTemplate {
    Run {
        command: RunCommand,
        network: Option<Network>,
        mounts: Vec<MountTemplate>,
    },
    Copy {
        /// A stage or image to copy from (None: the build context).
        from: Option<Template>,
        sources: Vec<Template>,
        to: Template,
        mode: Option<u32>,
        owner: Option<(u32, u32)>,
    },
    Env(Vec<Var>),
    Workdir(Template),
    User(Template),
}

#[derive(Clone, Debug, Default)]
pub(super) struct ConfigTemplate {
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub labels: Vec<(String, Template)>,
    pub exposed_ports: Vec<String>,
    pub stop_signal: Option<String>,
    pub volumes: Vec<String>,
    pub healthcheck: Option<Healthcheck>,
    pub shell: Option<Vec<String>>,
    /// `annotations: manifest:` and `index:`, values expanded per platform like labels.
    pub manifest_annotations: Vec<(String, Template)>,
    pub index_annotations: Vec<(String, Template)>,
}

/// A run step's mount as checked at load time; paths and names still to expand.
#[derive(Clone, Debug)]
pub(super) struct MountTemplate {
    pub at: Pos,
    pub target: Option<Template>,
    pub kind: MountKindTemplate,
}

#[derive(Clone, Debug)]
pub(super) enum MountKindTemplate {
    Cache {
        id: Option<Template>,
        sharing: super::plan::CacheSharing,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    Secret {
        id: String,
        required: bool,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    Bind {
        from: Option<Template>,
        source: Option<Template>,
        readwrite: bool,
    },
    Tmpfs {
        size: Option<u64>,
    },
}

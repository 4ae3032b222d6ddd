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
    pub from: Template,
    pub platforms: Vec<Platform>,
    /// Declared build args and their defaults (`NAME:` with no value means empty).
    pub args: Vec<(String, String)>,
    pub env: Vec<Var>,
    pub workdir: Option<Template>,
    pub source_date_epoch: Option<i64>,
    /// The recipe's `normalize:` (default true).
    pub normalize: bool,
    pub steps: Vec<StepSpec>,
    pub config: ConfigTemplate,
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
    },
    Copy {
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

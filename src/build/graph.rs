//! The build graph: which stages the output needs, for which platforms, in what order.
//!
//! A stage is built once per [`StageKey`]: the stage, the platform it runs on and the
//! platform its TARGET* variables name. A target stage gets one key per target; a
//! `platform: build` stage that depends on the target one per target too, all running
//! natively; one that does not, a single key shared by every target. Only stages the
//! output reaches (through `from:`, copy `from:` or a bind mount's `from:`) are
//! planned, and so built.
//!
//! Planning a stage needs the environment its base leaves (`${PATH}` from the base
//! image), so bases are resolved while the graph is discovered: every image a stage
//! starts from or reads, once per (reference, platform), before any step runs. The
//! plans that come out are complete: nothing is expanded later.

use super::BuildError;
use crate::platform::Platform;
use crate::recipe::{BaseRef, CopyFrom, Plan, Recipe, RunMountKind, StepKind};
use crate::source::BaseImage;
use std::collections::HashMap;
use std::sync::Arc;

/// One build of one stage.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct StageKey {
    pub stage: usize,
    pub runs_on: Platform,
    pub target: Platform,
}

/// What a stage starts from.
pub(crate) enum Start {
    /// Another node's result.
    Stage(usize),
    /// An image (or rootfs, or scratch) brought into the store.
    Image(Arc<BaseImage>),
}

/// A filesystem a node's copy steps or bind mounts read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reads {
    Stage(usize),
    /// An index into [`Graph::images`].
    Image(usize),
}

pub(crate) struct Node {
    /// Progress and error prefix: the platform for the final image (as before stages
    /// existed), `NAME@PLATFORM` for a stage, with `→TARGET` when it cross-builds.
    pub label: String,
    pub plan: Plan,
    pub start: Start,
    /// The environment after the stage: what a stage built on it starts with.
    pub final_env: Vec<(String, String)>,
    /// The shell its image config names (docker's `SHELL`, from its base): what the
    /// shell-form run steps of a stage built on it go through.
    pub final_shell: Option<Vec<String>>,
    pub reads: HashMap<CopyFrom, Reads>,
    /// Nodes that must be built first, without repeats.
    pub deps: Vec<usize>,
}

/// An image read by copy steps or bind mounts, for one platform.
pub(crate) struct ImageSource {
    pub text: String,
    pub platform: Platform,
    pub base: Arc<BaseImage>,
}

pub(crate) struct Graph {
    /// Dependencies before the nodes that need them.
    pub nodes: Vec<Node>,
    pub images: Vec<ImageSource>,
    /// The output node of each requested target, in the order asked for.
    pub outputs: Vec<usize>,
}

impl Graph {
    /// Every image `node` and the nodes it needs start from or read, once each, as
    /// (the reference as written, the platform it was resolved for, what it resolved
    /// to), in build order: what its provenance names as bases.
    pub fn bases_of(&self, node: usize) -> Vec<(String, Platform, Arc<BaseImage>)> {
        let mut seen = vec![false; self.nodes.len()];
        let mut stack = vec![node];
        let mut reached = Vec::new();
        while let Some(n) = stack.pop() {
            if std::mem::replace(&mut seen[n], true) {
                continue;
            }
            reached.push(n);
            stack.extend(self.nodes[n].deps.iter().copied());
        }
        reached.sort_unstable();
        let mut bases: Vec<(String, Platform, Arc<BaseImage>)> = Vec::new();
        let mut add = |text: &str, platform: Platform, base: &Arc<BaseImage>| {
            if !bases.iter().any(|(t, p, _)| t == text && *p == platform) {
                bases.push((text.to_string(), platform, base.clone()));
            }
        };
        for n in reached {
            let node = &self.nodes[n];
            if let Start::Image(base) = &node.start {
                add(&node.plan.from_text, node.plan.platform, base);
            }
            let mut reads: Vec<usize> = node
                .reads
                .values()
                .filter_map(|r| match r {
                    Reads::Image(k) => Some(*k),
                    Reads::Stage(_) => None,
                })
                .collect();
            reads.sort_unstable();
            for k in reads {
                let image = &self.images[k];
                add(&image.text, image.platform, &image.base);
            }
        }
        bases
    }
}

type Resolved = Result<Arc<BaseImage>, BuildError>;

/// Brings a base into the store: `(reference, its text, platform)`.
pub(crate) type ResolveBase<'a> =
    dyn Fn(&BaseRef, &str, &Platform) -> Result<Arc<BaseImage>, BuildError> + Sync + 'a;

pub(crate) struct Discovery<'a> {
    pub recipe: &'a Recipe,
    pub build_args: &'a [(String, String)],
    pub host: Platform,
    pub resolve: &'a ResolveBase<'a>,
    pub warn: &'a (dyn Fn(&str, &str) + Sync),
}

impl Discovery<'_> {
    /// The graph that builds `output` (a stage index) for every target; `jobs` bases
    /// are resolved at a time.
    pub fn discover(
        &self,
        output: usize,
        targets: &[Platform],
        jobs: usize,
    ) -> Result<Graph, BuildError> {
        let bases = self.prefetch(output, targets, jobs)?;
        let mut walk = Walk {
            discovery: self,
            graph: Graph {
                nodes: Vec::new(),
                images: Vec::new(),
                outputs: Vec::new(),
            },
            by_key: HashMap::new(),
            bases,
            open: Vec::new(),
        };
        for target in targets {
            let node = walk.node(output, target)?;
            walk.graph.outputs.push(node);
        }
        Ok(walk.graph)
    }
}

impl Discovery<'_> {
    /// Resolves side by side the bases the output's `from:` chains end in, one per
    /// target usually (the final image's base for each platform): the slow part of
    /// discovery, which would otherwise happen one after the other. Bases only copy
    /// steps name are resolved as they are found.
    fn prefetch(
        &self,
        output: usize,
        targets: &[Platform],
        jobs: usize,
    ) -> Result<HashMap<(String, Platform), Arc<BaseImage>>, BuildError> {
        let mut wanted: Vec<(BaseRef, String, Platform)> = Vec::new();
        for target in targets {
            let mut stage = output;
            // A chain longer than the number of stages loops; `Walk` reports that.
            for _ in 0..=self.recipe.stage_names().len() {
                let (runs_on, names) = self.recipe.stage_platforms(stage, target, &self.host);
                let (from, text) =
                    self.recipe
                        .stage_from(stage, &names, &self.host, self.build_args)?;
                match from {
                    BaseRef::Stage(name) => match self.recipe.stage_index(&name) {
                        Some(parent) => stage = parent,
                        None => break,
                    },
                    base => {
                        if !wanted.iter().any(|(_, t, p)| *t == text && *p == runs_on) {
                            wanted.push((base, text, runs_on));
                        }
                        break;
                    }
                }
            }
        }
        let next = std::sync::atomic::AtomicUsize::new(0);
        let slots: std::sync::Mutex<Vec<Option<Resolved>>> =
            std::sync::Mutex::new((0..wanted.len()).map(|_| None).collect());
        std::thread::scope(|scope| {
            for _ in 0..jobs.clamp(1, wanted.len().max(1)) {
                scope.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let Some((base, text, platform)) = wanted.get(i) else {
                            break;
                        };
                        let result = (self.resolve)(base, text, platform);
                        if let Ok(image) = &result {
                            for w in &image.warnings {
                                (self.warn)(&platform.short_name(), w);
                            }
                        }
                        slots.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(result);
                    }
                });
            }
        });
        let slots = slots.into_inner().unwrap_or_else(|p| p.into_inner());
        let mut bases = HashMap::new();
        for ((_, text, platform), slot) in wanted.into_iter().zip(slots) {
            match slot {
                Some(Ok(image)) => {
                    bases.insert((text, platform), image);
                }
                Some(Err(e)) => return Err(e),
                None => {}
            }
        }
        Ok(bases)
    }
}

struct Walk<'d, 'a> {
    discovery: &'d Discovery<'a>,
    graph: Graph,
    by_key: HashMap<StageKey, usize>,
    /// Bases resolved so far, by (text, platform): each is read once per build.
    bases: HashMap<(String, Platform), Arc<BaseImage>>,
    /// Keys being discovered, to refuse a loop made through variables.
    open: Vec<StageKey>,
}

impl Walk<'_, '_> {
    fn node(&mut self, stage: usize, target: &Platform) -> Result<usize, BuildError> {
        let d = self.discovery;
        let (runs_on, names) = d.recipe.stage_platforms(stage, target, &d.host);
        let key = StageKey {
            stage,
            runs_on,
            target: names,
        };
        if let Some(&index) = self.by_key.get(&key) {
            return Ok(index);
        }
        if self.open.contains(&key) {
            return Err(self.cycle(stage));
        }
        self.open.push(key.clone());
        let (from, from_text) = d.recipe.stage_from(stage, &names, &d.host, d.build_args)?;
        let mut deps = Vec::new();
        // What the base leaves: its env and shell, and the ONBUILD triggers a Dockerfile
        // built on it runs first.
        let (start, base_env, base_shell, triggers) = match &from {
            BaseRef::Stage(name) => {
                let parent = self.stage_index(name)?;
                let parent = self.node(parent, target)?;
                deps.push(parent);
                let parent_node = &self.graph.nodes[parent];
                (
                    Start::Stage(parent),
                    parent_node.final_env.clone(),
                    parent_node.final_shell.clone(),
                    parent_node.plan.config.onbuild.clone(),
                )
            }
            base => {
                let image = self.base(base, &from_text, &runs_on)?;
                let env = image_env(&image);
                let shell = image.docker.shell.clone();
                let triggers = image.docker.onbuild.clone();
                (Start::Image(image), env, shell, triggers)
            }
        };
        let mut plan =
            d.recipe
                .plan_stage(stage, &names, &d.host, d.build_args, &base_env, &triggers)?;
        inherit_shell(&mut plan, &base_shell);
        let mut reads = HashMap::new();
        for from in reads_of(&plan) {
            if reads.contains_key(&from) {
                continue;
            }
            let source = match &from {
                CopyFrom::Stage(name) => {
                    let index = self.stage_index(name)?;
                    let node = self.node(index, target)?;
                    deps.push(node);
                    Reads::Stage(node)
                }
                CopyFrom::Image { base, text } => Reads::Image(self.image(base, text, &runs_on)?),
            };
            reads.insert(from, source);
        }
        deps.sort_unstable();
        deps.dedup();
        self.open.pop();
        let label = match &plan.stage {
            None => runs_on.short_name(),
            Some(name) if names == runs_on => format!("{name}@{}", runs_on.short_name()),
            Some(name) => format!("{name}@{}→{}", runs_on.short_name(), names.short_name()),
        };
        let mut warnings = plan.warnings.clone();
        warnings.sort();
        warnings.dedup();
        for w in &warnings {
            (d.warn)("recipe", w);
        }
        let final_env = plan.final_env(&base_env);
        self.graph.nodes.push(Node {
            label,
            plan,
            start,
            final_env,
            final_shell: base_shell,
            reads,
            deps,
        });
        let index = self.graph.nodes.len() - 1;
        self.by_key.insert(key, index);
        Ok(index)
    }

    fn stage_index(&self, name: &str) -> Result<usize, BuildError> {
        self.discovery
            .recipe
            .stage_index(name)
            .ok_or_else(|| BuildError::Command {
                what: format!("stage {name}"),
                message: "the recipe has no such stage".into(),
            })
    }

    fn cycle(&self, stage: usize) -> BuildError {
        let recipe = self.discovery.recipe;
        let names: Vec<&str> = self
            .open
            .iter()
            .map(|k| recipe.stage_label(k.stage))
            .chain([recipe.stage_label(stage)])
            .collect();
        BuildError::Command {
            what: format!("stage {}", recipe.stage_label(stage)),
            message: format!("it depends on itself: {}", names.join(" -> ")),
        }
    }

    fn base(
        &mut self,
        base: &BaseRef,
        text: &str,
        platform: &Platform,
    ) -> Result<Arc<BaseImage>, BuildError> {
        let key = (text.to_string(), *platform);
        if let Some(image) = self.bases.get(&key) {
            return Ok(image.clone());
        }
        let image = (self.discovery.resolve)(base, text, platform)?;
        for w in &image.warnings {
            (self.discovery.warn)(&platform.short_name(), w);
        }
        self.bases.insert(key, image.clone());
        Ok(image)
    }

    fn image(
        &mut self,
        base: &BaseRef,
        text: &str,
        platform: &Platform,
    ) -> Result<usize, BuildError> {
        if let Some(i) = self
            .graph
            .images
            .iter()
            .position(|i| i.text == text && i.platform == *platform)
        {
            return Ok(i);
        }
        let image = self.base(base, text, platform)?;
        self.graph.images.push(ImageSource {
            text: text.to_string(),
            platform: *platform,
            base: image,
        });
        Ok(self.graph.images.len() - 1)
    }
}

/// The base image's config Env, as `${NAME}` sees it.
fn image_env(image: &BaseImage) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::new();
    let entries = image
        .config
        .as_ref()
        .and_then(|c| c.config().as_ref())
        .and_then(|c| c.env().clone())
        .unwrap_or_default();
    for entry in entries {
        let (name, value) = entry.split_once('=').unwrap_or((entry.as_str(), ""));
        match env.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value.to_string(),
            None => env.push((name.to_string(), value.to_string())),
        }
    }
    env
}

/// Every filesystem the plan's copy steps and bind mounts read, in step order.
fn reads_of(plan: &Plan) -> Vec<CopyFrom> {
    let mut out = Vec::new();
    for step in &plan.steps {
        match &step.kind {
            StepKind::Copy {
                from: Some(from), ..
            } => out.push(from.clone()),
            StepKind::Run { mounts, .. } => {
                for mount in mounts {
                    if let RunMountKind::Bind {
                        from: Some(from), ..
                    } = &mount.kind
                    {
                        out.push(from.clone());
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// Shell-form run steps the recipe gives no shell go through the base's `SHELL`, as in a
/// Dockerfile whose base image set one; the recipe's `config: shell:` still wins.
fn inherit_shell(plan: &mut Plan, base_shell: &Option<Vec<String>>) {
    let Some(shell) = base_shell else {
        return;
    };
    for step in &mut plan.steps {
        if matches!(step.kind, StepKind::Run { .. }) && step.shell.is_none() {
            step.shell = Some(shell.clone());
        }
    }
}

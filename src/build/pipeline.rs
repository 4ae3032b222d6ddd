//! One platform's build: resolve the base, then each step in order — from the step
//! cache when its key is known, else run in the sandbox (unpacking the rootfs first if
//! nothing has needed it yet) and committed as a layer — and finally the config and
//! manifest.

use super::copy::{CopyRequest, copy_into};
use super::env::with_source_date_epoch;
use super::image_state::{HISTORY_COMMENT, HistoryEntry, ImageState, Layer};
use super::progress::Progress;
use super::rootfs::LazyRootfs;
use super::sandboxing::{SandboxRequest, sandbox_spec, step_network};
use super::timefmt::rfc3339;
use super::{BuildError, PlatformImage};
use crate::cache::key::{InputFile, StepKey, chain_id, input_files, tree_digest};
use crate::cache::{Cache, RecordKind, StepRecord};
use crate::digest::Digest;
use crate::emulation::Activation;
use crate::image::{canonical_json, descriptor};
use crate::layer::LayerError;
use crate::layer::pack::{MEDIA_TYPE_GZIP_LAYER, PackOptions, pack_changes, settle};
use crate::layer::root::RootDir;
use crate::layer::snapshot::Snapshotter;
use crate::normalize::{self, RuleSet};
use crate::recipe::{Plan, PlanStep, Recipe, RunCommand, StepKind, resolve_copy_sources};
use crate::sandbox::{NetworkMode, run_step};
use crate::source;
use oci_spec::image::{Arch, MediaType, Os, PlatformBuilder};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

pub(crate) struct Context<'a> {
    pub recipe: &'a Recipe,
    /// What `copy:` steps read (`--context`), less what its ignore file excludes.
    pub context: &'a crate::context::BuildContext,
    pub plan: &'a Plan,
    pub cache: &'a Cache,
    /// `--no-cache`: run every step (results are still recorded).
    pub no_cache: bool,
    /// The rules applied after run steps whose `normalize` is on; None: `--no-normalize`.
    pub normalize: Option<&'a RuleSet>,
    /// This platform's scratch folder inside the workspace.
    pub dir: PathBuf,
    pub activation: &'a Activation,
    pub progress: &'a Progress,
    pub cancel: &'a AtomicBool,
    pub epoch: i64,
    pub network: Option<NetworkMode>,
    pub seccomp: crate::sandbox::SeccompMode,
    pub native: bool,
    /// How this platform's steps are limited; not in the step key, since limits do
    /// not change what a step produces (a step over them fails and records nothing).
    pub limits: crate::sandbox::limits::StepLimits,
    /// sha256 of the emulator that runs this platform's steps (None: native). Part of
    /// every step key: a different QEMU may produce different output.
    pub emulator: Option<Digest>,
    pub registry: &'a crate::registry::RegistryOptions,
    pub steps_run: &'a AtomicUsize,
    pub steps_cached: &'a AtomicUsize,
    /// Apparent bytes unpacking may write into this platform's rootfs.
    pub unpack_limit: u64,
}

impl Context<'_> {
    fn name(&self) -> String {
        self.plan.platform.short_name()
    }

    fn layer_err(&self, what: impl Into<String>) -> impl FnOnce(LayerError) -> BuildError + '_ {
        let what = what.into();
        move |source| BuildError::Layer {
            platform: self.name(),
            what,
            source,
        }
    }

    fn step_err(&self, step: &PlanStep, message: String) -> BuildError {
        BuildError::Step {
            platform: self.name(),
            number: step.number,
            location: step.location.clone(),
            message,
        }
    }

    fn warn_all(&self, warnings: impl IntoIterator<Item = String>) {
        for w in warnings {
            self.progress.warn(&self.name(), &w);
        }
    }
}

/// What a step will do, worked out before deciding whether it must run.
enum Prepared {
    Run {
        argv: Vec<String>,
        network: NetworkMode,
    },
    Copy {
        sources: Vec<PathBuf>,
        to: String,
        mode: Option<u32>,
        owner: (u32, u32),
        /// Content digests of the inputs, by source path (what the key was made of).
        expected: std::collections::HashMap<PathBuf, Digest>,
    },
}

pub(crate) fn build_platform(ctx: &Context) -> Result<PlatformImage, BuildError> {
    let plan = ctx.plan;
    let name = ctx.name();
    crate::cache::private_dir::create_private_dir(&ctx.dir).map_err(|source| BuildError::Io {
        what: format!("[{name}] creating {}", ctx.dir.display()),
        source,
    })?;
    let base = source::resolve(
        &plan.from,
        &plan.from_text,
        &plan.platform,
        &source::SourceContext {
            cache: ctx.cache,
            recipe_dir: Some(ctx.recipe.dir()),
            scratch: &ctx.dir,
            registry: ctx.registry,
            unpack_limit: ctx.unpack_limit,
        },
    )
    .map_err(|source| BuildError::Source {
        platform: name.clone(),
        source,
    })?;
    ctx.warn_all(base.warnings.iter().cloned());
    ctx.progress.info(
        &name,
        &format!(
            "FROM {} ({} layer{})",
            plan.from_text,
            base.layers.len(),
            plural(base.layers.len())
        ),
    );
    let mut state = ImageState::from_base_config(base.config.as_ref());
    state.layers = base.layers.clone();
    if base.config.is_none() && !base.layers.is_empty() {
        // A rootfs tarball has no history of its own; describe where the layer came from.
        state.history.push(HistoryEntry {
            created: Some(rfc3339(ctx.epoch)),
            created_by: format!("FROM {}", plan.from_text),
            comment: Some(HISTORY_COMMENT.into()),
            empty_layer: false,
        });
    }
    for (k, v) in &plan.env {
        state.set_env(k, v);
        state.push_empty(format!("ENV {k}={v}"), ctx.epoch);
    }
    if let Some(w) = &plan.workdir {
        state.workdir = Some(w.clone());
        state.push_empty(format!("WORKDIR {w}"), ctx.epoch);
    }

    let mut rootfs = LazyRootfs::new(ctx.dir.join("rootfs"), ctx.unpack_limit);
    let mut inputs: Vec<InputFile> = Vec::new();
    let total = plan.steps.len();
    for step in &plan.steps {
        if ctx.cancel.load(Ordering::SeqCst) {
            return Err(BuildError::Cancelled);
        }
        let prefix = format!("{name} {}/{total}", step.number);
        let (prepared, step_inputs) = match &step.kind {
            StepKind::Env(vars) => {
                ctx.progress.info(&prefix, &step.describe());
                for (k, v) in vars {
                    state.set_env(k, v);
                }
                state.push_empty(step.created_by(), ctx.epoch);
                continue;
            }
            StepKind::Workdir(dir) => {
                ctx.progress.info(&prefix, &step.describe());
                state.workdir = Some(dir.clone());
                state.push_empty(step.created_by(), ctx.epoch);
                continue;
            }
            StepKind::User(user) => {
                ctx.progress.info(&prefix, &step.describe());
                state.user = Some(user.clone());
                state.push_empty(step.created_by(), ctx.epoch);
                continue;
            }
            StepKind::Run { command, network } => {
                let argv = match command {
                    RunCommand::Shell(script) => {
                        vec!["/bin/sh".into(), "-c".into(), script.clone()]
                    }
                    RunCommand::Exec(argv) => argv.clone(),
                };
                let network = step_network(*network, ctx.network);
                (Prepared::Run { argv, network }, None)
            }
            StepKind::Copy {
                sources,
                to,
                mode,
                owner,
            } => {
                let files = resolve_copy_sources(ctx.context, sources, &step.location)?;
                let listed = input_files(ctx.context, &files)
                    .map_err(|e| ctx.step_err(step, format!("reading the copy inputs: {e}")))?;
                let prepared = Prepared::Copy {
                    sources: files,
                    to: destination_in(state.workdir.as_deref(), to),
                    mode: *mode,
                    owner: owner.unwrap_or((0, 0)),
                    expected: listed
                        .iter()
                        .filter(|f| !f.symlink && !f.path.ends_with('/'))
                        .map(|f| (f.source.clone(), f.sha256.clone()))
                        .collect(),
                };
                (prepared, Some(listed))
            }
        };
        let key = step_key(ctx, &state, step, &prepared, step_inputs.as_deref());
        if let Some(files) = step_inputs {
            inputs.extend(files);
        }
        if !ctx.no_cache
            && let Some(record) = ctx.cache.lookup_step(&key)
        {
            ctx.progress
                .info(&prefix, &format!("{} (cached)", step.describe()));
            ctx.steps_cached.fetch_add(1, Ordering::Relaxed);
            match record.layer {
                Some(l) => state.push_layer(l, step.created_by(), ctx.epoch),
                None => state.push_empty(step.created_by(), ctx.epoch),
            }
            continue;
        }
        ctx.progress.info(&prefix, &step.describe());
        ctx.steps_run.fetch_add(1, Ordering::Relaxed);
        rootfs.materialize(
            &state.layers,
            ctx.cache.store(),
            ctx.activation,
            &ctx.plan.platform,
            &mut |w| ctx.progress.warn(&name, &w),
        )?;
        let layer = run_and_commit(ctx, &mut rootfs, &state, step, prepared, &prefix, total)?;
        let record = StepRecord {
            layer: layer.clone(),
            platform: ctx.plan.platform.to_string(),
            created_by: step.created_by(),
        };
        match layer {
            Some(l) => {
                rootfs.record_step_layer();
                state.push_layer(l, step.created_by(), ctx.epoch);
            }
            None => state.push_empty(step.created_by(), ctx.epoch),
        }
        ctx.cache
            .put(RecordKind::Step, &key, &record)
            .map_err(|e| BuildError::Io {
                what: format!("[{name}] recording step {} in the cache", step.number),
                source: std::io::Error::other(e.to_string()),
            })?;
    }
    state.apply_config(&plan.config);
    let mut image = finish(ctx, &state)?;
    image.base_manifest = base.manifest_digest;
    image.base_layers = base.layers.iter().map(|l| l.digest.clone()).collect();
    image.inputs = inputs;
    Ok(image)
}

/// Everything that can change what the step produces (see cache/key.rs).
fn step_key(
    ctx: &Context,
    state: &ImageState,
    step: &PlanStep,
    prepared: &Prepared,
    inputs: Option<&[InputFile]>,
) -> Digest {
    let diff_ids: Vec<Digest> = state.layers.iter().map(|l| l.diff_id.clone()).collect();
    let mut env = state.env.clone();
    env.extend(with_source_date_epoch(&ctx.plan.build_env, ctx.epoch));
    let (what, network) = match prepared {
        Prepared::Run { argv, network } => (
            // A step may behave differently without the filter: never share results.
            match ctx.seccomp {
                crate::sandbox::SeccompMode::Default => format!("RUN {argv:?}"),
                crate::sandbox::SeccompMode::Unconfined => {
                    format!("RUN {argv:?} seccomp=unconfined")
                }
            },
            network.as_str(),
        ),
        Prepared::Copy {
            to, mode, owner, ..
        } => (
            format!("COPY to={to} mode={mode:?} owner={owner:?}"),
            "host",
        ),
    };
    StepKey {
        platform: match &ctx.emulator {
            Some(emulator) => format!("{} emulated by {emulator}", ctx.plan.platform),
            None => ctx.plan.platform.to_string(),
        },
        parent: chain_id(&diff_ids),
        step: format!("{what} ({})", step.created_by()),
        env: &env,
        workdir: state.workdir.as_deref().unwrap_or("/"),
        user: state.user.as_deref(),
        network,
        epoch: ctx.epoch,
        inputs: inputs.map(tree_digest),
        normalize: step_rules(ctx, step, prepared)
            .map(|rules| format!("rules v{} {}", rules.version, rules.digest)),
    }
    .digest()
}

/// The normalisation rules that apply after `step`: a run step whose `normalize` is on,
/// in a build without `--no-normalize`.
fn step_rules<'a>(ctx: &Context<'a>, step: &PlanStep, prepared: &Prepared) -> Option<&'a RuleSet> {
    ctx.normalize
        .filter(|_| step.normalize && matches!(prepared, Prepared::Run { .. }))
}

/// Runs (or copies) in the materialized rootfs and packs what changed.
fn run_and_commit(
    ctx: &Context,
    rootfs: &mut LazyRootfs,
    state: &ImageState,
    step: &PlanStep,
    prepared: Prepared,
    prefix: &str,
    total: usize,
) -> Result<Option<Layer>, BuildError> {
    let path = rootfs.path().to_path_buf();
    rootfs
        .snapshotter()
        .begin()
        .map_err(ctx.layer_err("snapshotting the rootfs"))?;
    let root = RootDir::open(&path).map_err(ctx.layer_err("opening the rootfs"))?;
    let rules = step_rules(ctx, step, &prepared);
    let mut normalizing = None;
    match prepared {
        Prepared::Run { argv, network } => {
            if let Some(rules) = rules {
                let before = normalize::before_step(rules, &root)
                    .map_err(ctx.layer_err("reading the files the normalisation rules compare"))?;
                normalizing = Some((rules, before));
            }
            run(ctx, &root, state, step, argv, network, prefix, total)?;
        }
        Prepared::Copy {
            sources,
            to,
            mode,
            owner,
            expected,
        } => {
            let warnings = copy_into(
                &root,
                &CopyRequest {
                    context: Some(ctx.context),
                    sources: &sources,
                    to: &to,
                    mode,
                    owner,
                    epoch: ctx.epoch,
                    expected: &expected,
                },
            )
            .map_err(|e| ctx.step_err(step, e.to_string()))?;
            ctx.warn_all(warnings);
        }
    }
    commit(ctx, &path, rootfs.snapshotter(), step, normalizing, prefix)
}

/// A relative copy destination is relative to the working directory, as in Docker.
fn destination_in(workdir: Option<&str>, to: &str) -> String {
    if to.starts_with('/') {
        return to.to_string();
    }
    format!("{}/{to}", workdir.unwrap_or("/").trim_end_matches('/'))
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
#[test]
fn relative_copy_destinations_follow_the_workdir() {
    assert_eq!(destination_in(Some("/app"), "rel.yaml"), "/app/rel.yaml");
    assert_eq!(destination_in(Some("/app/"), "sub/"), "/app/sub/");
    assert_eq!(destination_in(None, "x"), "/x");
    assert_eq!(destination_in(Some("/app"), "/abs"), "/abs");
}

#[allow(clippy::too_many_arguments)]
fn run(
    ctx: &Context,
    root: &RootDir,
    state: &ImageState,
    step: &PlanStep,
    argv: Vec<String>,
    network: NetworkMode,
    prefix: &str,
    total: usize,
) -> Result<(), BuildError> {
    let workdir = state.workdir.clone().unwrap_or_else(|| "/".into());
    // Docker creates a missing WORKDIR; it lands in this step's layer.
    let w = root
        .create_dir_all(Path::new(&workdir), 0o755, (0, 0))
        .map_err(ctx.layer_err(format!("creating the working directory {workdir}")))?;
    ctx.warn_all(w.into_vec());
    let spec = sandbox_spec(SandboxRequest {
        root,
        scratch: &ctx.dir,
        platform: &ctx.plan.platform,
        native: ctx.native,
        activation: ctx.activation,
        image_env: &state.env,
        build_env: &with_source_date_epoch(&ctx.plan.build_env, ctx.epoch),
        workdir: &workdir,
        user: state.user.as_deref(),
        argv,
        network,
        stdin_from_caller: false,
        seccomp: ctx.seccomp,
        limits: ctx.limits,
    })
    .map_err(|message| ctx.step_err(step, message))?;
    let mut on_line = |line: &str| ctx.progress.info(prefix, line);
    let result = run_step(&spec, &mut on_line).map_err(|source| BuildError::Sandbox {
        platform: ctx.name(),
        number: step.number,
        location: step.location.clone(),
        source,
    })?;
    if !result.exit.success() {
        return Err(BuildError::StepFailed {
            platform: ctx.name(),
            number: step.number,
            total,
            location: step.location.clone(),
            command: step.describe(),
            exit: result.exit,
            tail: result.tail,
            limit: result.limit,
        });
    }
    Ok(())
}

/// Turns the step's changes into a layer; None when nothing changed.
fn commit(
    ctx: &Context,
    rootfs: &Path,
    snapshotter: &mut dyn Snapshotter,
    step: &PlanStep,
    normalizing: Option<(&RuleSet, normalize::Before)>,
    prefix: &str,
) -> Result<Option<Layer>, BuildError> {
    let mut changes = snapshotter
        .changes()
        .map_err(ctx.layer_err("finding the step's changes"))?;
    if let Some((rules, before)) = normalizing {
        // After the step, before packing: the rules see exactly what the step wrote.
        let root = RootDir::open(rootfs).map_err(ctx.layer_err("opening the rootfs"))?;
        let (normalized, applied) = normalize::apply(rules, &root, &before, ctx.epoch, changes)
            .map_err(ctx.layer_err(format!("normalising step {}", step.number)))?;
        changes = normalized;
        if !applied.is_empty() {
            let list: Vec<String> = applied
                .iter()
                .map(|a| format!("/{} ({})", a.path.display(), a.action.name()))
                .collect();
            ctx.progress
                .info(prefix, &format!("normalized {}", list.join(", ")));
        }
    }
    if changes.is_empty() {
        return Ok(None);
    }
    let pending = ctx.cache.store().create()?;
    let opts = PackOptions { epoch: ctx.epoch };
    let (pending, packed) = pack_changes(rootfs, &changes, &opts, pending)
        .map_err(ctx.layer_err(format!("packing step {}", step.number)))?;
    pending.commit(&packed.digest)?;
    // The tree must look as if this layer had been unpacked from the cache, so later
    // steps see the same thing on every path; the touched entries then need a fresh
    // baseline.
    let root = RootDir::open(rootfs).map_err(ctx.layer_err("opening the rootfs"))?;
    settle(&root, &changes, &opts).map_err(ctx.layer_err("settling the step's changes"))?;
    snapshotter.invalidate();
    Ok(Some(Layer {
        digest: packed.digest,
        size: packed.size,
        media_type: MEDIA_TYPE_GZIP_LAYER.into(),
        diff_id: packed.diff_id,
    }))
}

/// Stores config and manifest; returns the manifest's descriptor for the index.
fn finish(ctx: &Context, state: &ImageState) -> Result<PlatformImage, BuildError> {
    let platform = &ctx.plan.platform;
    let store = ctx.cache.store();
    let config = state.config(platform, ctx.epoch)?;
    let (config_digest, config_size) =
        store.put_bytes(&canonical_json(&config, "image config")?)?;
    let config_desc = descriptor(MediaType::ImageConfig, &config_digest, config_size)?;
    let manifest = state.manifest(&config_desc)?;
    let (manifest_digest, manifest_size) =
        store.put_bytes(&canonical_json(&manifest, "image manifest")?)?;
    let mut desc = descriptor(MediaType::ImageManifest, &manifest_digest, manifest_size)?;
    let mut oci_platform = PlatformBuilder::default()
        .architecture(Arch::from(platform.oci_arch()))
        .os(Os::from(platform.os()));
    if let Some(v) = platform.oci_variant() {
        oci_platform = oci_platform.variant(v.to_string());
    }
    desc.set_platform(Some(oci_platform.build().map_err(|e| {
        crate::image::ImageError::Invalid {
            what: "platform".into(),
            message: e.to_string(),
        }
    })?));
    let mut blobs: Vec<Digest> = state.layers.iter().map(|l| l.digest.clone()).collect();
    blobs.push(config_digest);
    blobs.push(manifest_digest.clone());
    ctx.progress.info(
        &ctx.name(),
        &format!(
            "manifest {manifest_digest} ({} layer{})",
            state.layers.len(),
            plural(state.layers.len())
        ),
    );
    Ok(PlatformImage {
        platform: *platform,
        manifest: desc,
        manifest_digest,
        blobs,
        base_manifest: None,
        base_layers: Vec::new(),
        inputs: Vec::new(),
    })
}

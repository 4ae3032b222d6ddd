//! One stage's build for one platform: from the state its base leaves, each step in
//! order — from the step cache when its key is known, else run in the sandbox
//! (unpacking the rootfs first if nothing has needed it yet) and committed as a layer.
//! An output stage then gets its config and manifest ([`finish`]).

use super::copy::{CopyRequest, copy_into};
use super::env::with_source_date_epoch;
use super::filesystem::Filesystem;
use super::image_state::{ImageState, Layer};
use super::progress::{Progress, StepState};
use super::progress_lines;
use super::rootfs::{LazyRootfs, Unpacked};
use super::sandboxing::{SandboxRequest, sandbox_spec, step_network};
use super::tree_paths::resolve_in_tree;
use super::{BuildError, PlatformImage};
use crate::cache::key::{InputFile, StepKey, chain_id, input_files, tree_digest};
use crate::cache::{Cache, RecordKind, StepRecord};
use crate::digest::Digest;
use crate::emulation::Activation;
use crate::image::{canonical_json, descriptor};
use crate::layer::LayerError;
use crate::layer::pack::{PackOptions, pack_changes, settle};
use crate::layer::root::RootDir;
use crate::layer::snapshot::Snapshotter;
use crate::normalize::{self, RuleSet};
use crate::recipe::{
    CacheSharing, CopyFrom, CopyOwner, Plan, PlanStep, RunCommand, RunMount, RunMountKind,
    StepKind, resolve_copy_sources,
};
use crate::sandbox::{NetworkMode, run_step};
use oci_spec::image::{Arch, MediaType, Os, PlatformBuilder};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub(crate) struct Context<'a> {
    /// What `copy:` steps read (`--context`), less what its ignore file excludes.
    pub context: &'a crate::context::BuildContext,
    pub plan: &'a Plan,
    /// Progress and error prefix (see `graph::Node::label`).
    pub label: &'a str,
    /// The filesystems its copy steps and bind mounts read.
    pub reads: &'a HashMap<CopyFrom, Arc<Filesystem>>,
    /// `--secret` values, for `type: secret` mounts.
    pub secrets: &'a super::secrets::Secrets,
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
    pub steps_run: &'a AtomicUsize,
    pub steps_cached: &'a AtomicUsize,
    /// Apparent bytes unpacking may write into this platform's rootfs.
    pub unpack_limit: u64,
    /// How its rootfs is made (overlay snapshots or the walk).
    pub backend: &'a super::snapshots::Backend,
    /// How the layers of this stage's steps are compressed; in every step key.
    pub compression: crate::layer::LayerCompression,
    /// Threads gzip uses (0: one per CPU); not in the key, the bytes do not depend on it.
    pub gzip_threads: usize,
    /// `--cache-from`: where a step the local cache misses is looked up next.
    pub shared_from: &'a [crate::cache::shared::Imported],
    /// `--cache-to`: where this stage's steps are collected for export (None: not
    /// exported, with mode=min for a stage the output is not made of).
    pub shared_to: Option<&'a std::sync::Mutex<Vec<(Digest, StepRecord)>>>,
}

impl Context<'_> {
    fn name(&self) -> String {
        self.label.to_string()
    }

    fn read(&self, from: &CopyFrom) -> Result<Arc<Filesystem>, BuildError> {
        self.reads
            .get(from)
            .cloned()
            .ok_or_else(|| BuildError::Command {
                what: format!("[{}] reading {from}", self.label),
                message: "it was not built for this stage".into(),
            })
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

    /// What unpacking a tree took: `what` is `base` for the stage's own rootfs, else
    /// the filesystem a step reads.
    fn report_unpacked(&self, what: &str, unpacked: Option<Unpacked>, took: Duration) {
        let Some(u) = unpacked else { return };
        let what = if u.first { what } else { "cached layers" };
        self.progress.info(
            &self.name(),
            &progress_lines::unpacked(what, u.layers, u.bytes, u.from_store, took),
        );
    }

    /// A step's tree from a stage or image, unpacked now if nothing needed it yet.
    fn tree_of(&self, from: &Filesystem) -> Result<RootDir, BuildError> {
        let started = Instant::now();
        let (tree, unpacked) = from.tree(self.cache.store(), self.activation, &mut |w| {
            self.progress.warn(&self.name(), &w)
        })?;
        self.report_unpacked(&from.name, unpacked, started.elapsed());
        Ok(tree)
    }
}

/// What a step will do, worked out before deciding whether it must run.
enum Prepared {
    Run {
        argv: Vec<String>,
        network: NetworkMode,
        mounts: Vec<RunMount>,
        /// What the bind mounts' sources hold (their layer chains, or the context
        /// files' digest), for the key: their paths are scratch folders.
        bound: Vec<String>,
    },
    Copy {
        sources: Vec<PathBuf>,
        to: String,
        mode: Option<u32>,
        owner: CopyOwner,
        /// ADD: tar archives among the sources are unpacked.
        unpack: bool,
        /// Content digests of the inputs, by source path (what the key was made of).
        expected: std::collections::HashMap<PathBuf, Digest>,
    },
    /// Files from the plan's text (a Dockerfile's `COPY <<EOF`).
    Write {
        files: Vec<(String, String)>,
        to: String,
        mode: Option<u32>,
        owner: CopyOwner,
    },
    /// A Dockerfile's WORKDIR folder, made for `user` (the USER in effect) if missing.
    MakeWorkdir { dir: String, user: Option<String> },
    /// `ADD https://…`: fetched while preparing when the key needs the content (no
    /// checksum given), else only when the step runs.
    Fetch {
        url: String,
        checksum: Option<Digest>,
        fetched: Option<(PathBuf, Digest)>,
        to: String,
        mode: Option<u32>,
        owner: CopyOwner,
    },
    /// A copy from a stage's or an image's filesystem.
    CopyFrom {
        from: Arc<Filesystem>,
        patterns: Vec<String>,
        to: String,
        mode: Option<u32>,
        owner: CopyOwner,
    },
}

/// What a stage's build leaves: the image state after its steps, the tree they ran in
/// (unpacked only if a step ran), and the context files they read.
pub(crate) struct Built {
    pub state: ImageState,
    pub rootfs: LazyRootfs,
    pub inputs: Vec<InputFile>,
}

pub(crate) fn build_stage(ctx: &Context, mut state: ImageState) -> Result<Built, BuildError> {
    let plan = ctx.plan;
    let name = ctx.name();
    crate::cache::private_dir::create_private_dir(&ctx.dir).map_err(|source| BuildError::Io {
        what: format!("[{name}] creating {}", ctx.dir.display()),
        source,
    })?;
    for (k, v) in &plan.env {
        state.set_env(k, v);
        state.push_empty(format!("ENV {k}={v}"), ctx.epoch);
    }
    if let Some(w) = &plan.workdir {
        state.workdir = Some(w.clone());
        state.push_empty(format!("WORKDIR {w}"), ctx.epoch);
    }

    let mut rootfs = LazyRootfs::new(ctx.dir.join("rootfs"), ctx.unpack_limit, ctx.backend);
    let base_layers = state.layers.len();
    let mut cached_here = 0;
    let mut inputs: Vec<InputFile> = Vec::new();
    let total = plan.steps.len();
    for step in &plan.steps {
        if ctx.cancel.load(Ordering::SeqCst) {
            return Err(BuildError::Cancelled);
        }
        let prefix = format!("{name} {}/{total}", step.number);
        let at = (step.number, total);
        // Config steps change the image state only: started and done at once.
        let config_step = |ctx: &Context| {
            let describe = step.describe();
            ctx.progress.info(&prefix, &describe);
            ctx.progress
                .step(&name, at, StepState::Started, None, None, Some(&describe));
            ctx.progress
                .step(&name, at, StepState::Done, Some(Duration::ZERO), None, None);
        };
        let (prepared, step_inputs) = match &step.kind {
            StepKind::Env(vars) => {
                config_step(ctx);
                for (k, v) in vars {
                    state.set_env(k, v);
                }
                state.push_empty(step.created_by(), ctx.epoch);
                continue;
            }
            StepKind::Workdir(dir) => {
                config_step(ctx);
                state.workdir = Some(dir.clone());
                state.push_empty(step.created_by(), ctx.epoch);
                continue;
            }
            StepKind::User(user) => {
                config_step(ctx);
                state.user = Some(user.clone());
                state.push_empty(step.created_by(), ctx.epoch);
                continue;
            }
            StepKind::Run {
                command,
                network,
                mounts,
                ..
            } => {
                let argv = match command {
                    RunCommand::Shell(script) => step.shell_argv(script),
                    RunCommand::Exec(argv) => argv.clone(),
                };
                let network = step_network(*network, ctx.network);
                let bound = bound_contents(ctx, step, mounts)?;
                let prepared = Prepared::Run {
                    argv,
                    network,
                    mounts: mounts.clone(),
                    bound,
                };
                (prepared, None)
            }
            StepKind::Copy {
                from: Some(from),
                sources,
                to,
                mode,
                owner,
                ..
            } => (
                Prepared::CopyFrom {
                    from: ctx.read(from)?,
                    patterns: sources.clone(),
                    to: destination_in(state.workdir.as_deref(), to),
                    mode: *mode,
                    owner: owner.clone().unwrap_or(CopyOwner::Ids(0, 0)),
                },
                None,
            ),
            StepKind::MakeWorkdir(dir) => {
                state.workdir = Some(dir.clone());
                (
                    Prepared::MakeWorkdir {
                        dir: dir.clone(),
                        user: state.user.clone(),
                    },
                    None,
                )
            }
            StepKind::Write {
                files,
                to,
                mode,
                owner,
            } => (
                Prepared::Write {
                    files: files.clone(),
                    to: destination_in(state.workdir.as_deref(), to),
                    mode: *mode,
                    owner: owner.clone().unwrap_or(CopyOwner::Ids(0, 0)),
                },
                None,
            ),
            StepKind::Fetch {
                url,
                checksum,
                to,
                mode,
                owner,
            } => {
                // Without a checksum only the download tells the content the key needs.
                let fetched = match checksum {
                    Some(_) => None,
                    None => Some(fetch_for(ctx, step, url, None)?),
                };
                (
                    Prepared::Fetch {
                        url: url.clone(),
                        checksum: checksum.clone(),
                        fetched,
                        to: destination_in(state.workdir.as_deref(), to),
                        mode: *mode,
                        owner: owner.clone().unwrap_or(CopyOwner::Ids(0, 0)),
                    },
                    None,
                )
            }
            StepKind::Copy {
                from: None,
                sources,
                to,
                mode,
                owner,
                unpack,
            } => {
                let files = resolve_copy_sources(ctx.context, sources, &step.location)?;
                let listed = input_files(ctx.context, &files)
                    .map_err(|e| ctx.step_err(step, format!("reading the copy inputs: {e}")))?;
                let prepared = Prepared::Copy {
                    sources: files,
                    to: destination_in(state.workdir.as_deref(), to),
                    mode: *mode,
                    owner: owner.clone().unwrap_or(CopyOwner::Ids(0, 0)),
                    unpack: *unpack,
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
            && let Some(record) = ctx
                .cache
                .lookup_step(&key)
                .or_else(|| from_shared_cache(ctx, &key, step))
        {
            collect_for_export(ctx, &key, &record);
            ctx.progress
                .info(&prefix, &format!("{} (cached)", step.describe()));
            ctx.progress.step(
                &name,
                at,
                StepState::Cached,
                None,
                record.layer.as_ref().map(|l| l.size),
                Some(&step.describe()),
            );
            ctx.steps_cached.fetch_add(1, Ordering::Relaxed);
            cached_here += 1;
            match record.layer {
                Some(l) => state.push_layer(l, step.created_by(), ctx.epoch),
                None => state.push_empty(step.created_by(), ctx.epoch),
            }
            continue;
        }
        ctx.progress.info(&prefix, &step.describe());
        ctx.progress.step(
            &name,
            at,
            StepState::Started,
            None,
            None,
            Some(&step.describe()),
        );
        ctx.steps_run.fetch_add(1, Ordering::Relaxed);
        let running = Instant::now();
        let ran = (|| {
            let unpacking = Instant::now();
            let unpacked = materialize(ctx, &mut rootfs, &state)?;
            ctx.report_unpacked("base", unpacked, unpacking.elapsed());
            run_and_commit(ctx, &mut rootfs, &state, step, prepared, &prefix, total)
        })();
        let layer = match ran {
            Ok(layer) => {
                ctx.progress.step(
                    &name,
                    at,
                    StepState::Done,
                    Some(running.elapsed()),
                    layer.as_ref().map(|l| l.size),
                    None,
                );
                layer
            }
            Err(e) => {
                ctx.progress.step(
                    &name,
                    at,
                    StepState::Error,
                    Some(running.elapsed()),
                    None,
                    Some(&e.to_string()),
                );
                return Err(e);
            }
        };
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
        collect_for_export(ctx, &key, &record);
    }
    if cached_here > 0 && !rootfs.is_unpacked() {
        ctx.progress
            .info(&name, &progress_lines::base_reused(base_layers));
    }
    warn_of_unknown_user(ctx, &state, &mut rootfs)?;
    Ok(Built {
        state,
        rootfs,
        inputs,
    })
}

/// The stage's tree as `state`'s layers make it (unpacked or mounted as needed).
fn materialize(
    ctx: &Context,
    rootfs: &mut LazyRootfs,
    state: &ImageState,
) -> Result<Option<super::rootfs::Unpacked>, BuildError> {
    let name = ctx.name();
    rootfs.materialize(
        &state.layers,
        ctx.cache.store(),
        ctx.activation,
        &ctx.plan.platform,
        &mut |w| ctx.progress.warn(&name, &w),
    )
}

/// A step the local cache does not have, from the first `--cache-from` that has it (its
/// layer brought in and verified); a damaged entry is said and skipped.
fn from_shared_cache(ctx: &Context, key: &Digest, step: &PlanStep) -> Option<StepRecord> {
    for shared in ctx.shared_from {
        match shared.adopt(key, ctx.cache) {
            Ok(Some(record)) => return Some(record),
            Ok(None) => {}
            Err(e) => ctx.progress.warn(
                &ctx.name(),
                &format!(
                    "step {}: the entry in --cache-from {} is refused (the step is run instead): {e}",
                    step.number, shared.what
                ),
            ),
        }
    }
    None
}

/// For `--cache-to`: this step's record, if this stage is exported.
fn collect_for_export(ctx: &Context, key: &Digest, record: &StepRecord) {
    if let Some(out) = ctx.shared_to {
        out.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((key.clone(), record.clone()));
    }
}

/// An image whose user is a name its /etc/passwd lacks builds, but `docker run` and
/// `podman run` refuse to start it ("unable to find user"): say so at build time. Read
/// from the stage's tree when a step unpacked it, else from an overlay of the layers'
/// snapshots (a mount once they are unpacked); the walk backend would unpack the whole
/// image for it, so a fully cached walk build does not look.
fn warn_of_unknown_user(
    ctx: &Context,
    state: &ImageState,
    rootfs: &mut LazyRootfs,
) -> Result<(), BuildError> {
    let Some(user) = state.user.as_deref() else {
        return Ok(());
    };
    let (name_part, group_part) = user.split_once(':').unwrap_or((user, ""));
    let numeric = |t: &str| t.is_empty() || t.parse::<u32>().is_ok();
    if numeric(name_part) && numeric(group_part) {
        return Ok(());
    }
    if !rootfs.is_unpacked() {
        if !matches!(ctx.backend, super::snapshots::Backend::Overlay(_)) {
            return Ok(());
        }
        materialize(ctx, rootfs, state)?;
    }
    let root = RootDir::open(rootfs.path()).map_err(ctx.layer_err("opening the rootfs"))?;
    if let Err(e) = super::users::resolve_in(Some(user), &root) {
        ctx.progress.warn(
            &ctx.name(),
            &format!(
                "the image's user {user:?}: {e}; `docker run` and `podman run` will refuse \
                 to start it (add the account in a step before `user:`, or give numeric ids)"
            ),
        );
    }
    Ok(())
}

/// Fetches an ADD step's URL into a folder of its own in the stage's scratch space,
/// under the URL's file name (what a folder destination names it).
fn fetch_for(
    ctx: &Context,
    step: &PlanStep,
    url: &str,
    checksum: Option<&Digest>,
) -> Result<(PathBuf, Digest), BuildError> {
    let dir = ctx.dir.join(format!("fetch-{}", step.number));
    let io = |source| BuildError::Io {
        what: format!("[{}] preparing {}", ctx.name(), dir.display()),
        source,
    };
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(io)?;
    }
    std::fs::create_dir_all(&dir).map_err(io)?;
    let file = dir.join(crate::recipe::url_file_name(url).unwrap_or("download"));
    ctx.progress.info(&ctx.name(), &format!("fetching {url}"));
    let digest = super::fetch::fetch(url, &file, ctx.unpack_limit, checksum)
        .map_err(|e| ctx.step_err(step, with_causes(&e)))?;
    Ok((file, digest))
}

/// An error and its causes on one line: a copy's error wraps what the rootfs refused
/// (`copying to /x: layer entry "../a": …climbs out…`), and the step's message is text.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let more = inner.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        cause = inner.source();
    }
    text
}

/// The owner in a copy step's key: numbers as `(uid, gid)` (the text keys had before
/// names were possible, so existing cache entries stay valid), a name as written.
fn owner_key(owner: &CopyOwner) -> String {
    match owner {
        CopyOwner::Ids(uid, gid) => format!("({uid}, {gid})"),
        CopyOwner::Named(text) => format!("{text:?}"),
    }
}

/// A copy step's owner as numbers, names looked up in the image the step writes to.
fn owner_ids(
    ctx: &Context,
    step: &PlanStep,
    root: &RootDir,
    owner: &CopyOwner,
) -> Result<(u32, u32), BuildError> {
    match owner {
        CopyOwner::Ids(uid, gid) => Ok((*uid, *gid)),
        CopyOwner::Named(text) => super::users::resolve_chown(text, root)
            .map_err(|e| ctx.step_err(step, format!("--chown={text}: {e}"))),
    }
}

/// The build's variables a step sees: a Dockerfile's ARGs declared above it, then the
/// plan's (and SOURCE_DATE_EPOCH unless one of those sets it). For a recipe, whose steps
/// carry no ARGs, just the plan's, so its cache keys do not change.
fn step_build_env(ctx: &Context, step: &PlanStep) -> Vec<(String, String)> {
    let mut env = match &step.kind {
        StepKind::Run { args, .. } => args.clone(),
        _ => Vec::new(),
    };
    env.extend(ctx.plan.build_env.iter().cloned());
    with_source_date_epoch(&env, ctx.epoch)
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
    env.extend(step_build_env(ctx, step));
    let (what, network) = match prepared {
        Prepared::Run {
            argv,
            network,
            bound,
            ..
        } => {
            // A step may behave differently without the filter: never share results.
            let mut what = match ctx.seccomp {
                crate::sandbox::SeccompMode::Default => format!("RUN {argv:?}"),
                crate::sandbox::SeccompMode::Unconfined => {
                    format!("RUN {argv:?} seccomp=unconfined")
                }
            };
            // The mounts themselves are in the step's text (`--mount=…`); a cache
            // mount's contents and a secret's value never are.
            for b in bound {
                what.push_str(&format!(" bind={b}"));
            }
            (what, network.as_str())
        }
        Prepared::Copy {
            to,
            mode,
            owner,
            unpack,
            ..
        } => (
            // ` unpack` only for ADD, so COPY keys stay what they were.
            format!(
                "COPY to={to} mode={mode:?} owner={}{}",
                owner_key(owner),
                if *unpack { " unpack" } else { "" }
            ),
            "host",
        ),
        // The URL and the content's digest (the checksum promised, or what came).
        Prepared::Fetch {
            url,
            checksum,
            fetched,
            to,
            mode,
            owner,
        } => {
            let content = checksum
                .as_ref()
                .or(fetched.as_ref().map(|(_, digest)| digest))
                .map_or_else(String::new, |d| d.to_string());
            (
                format!(
                    "FETCH url={url} content={content} to={to} mode={mode:?} owner={}",
                    owner_key(owner)
                ),
                "host",
            )
        }
        Prepared::MakeWorkdir { dir, user } => (format!("MKDIR dir={dir} user={user:?}"), "host"),
        // The files' content, by digest; their names and the destination are in the
        // step's text below too.
        Prepared::Write {
            files,
            to,
            mode,
            owner,
        } => {
            let contents: Vec<String> = files
                .iter()
                .map(|(name, content)| format!("{name:?}={}", Digest::of(content.as_bytes())))
                .collect();
            (
                format!(
                    "WRITE to={to} mode={mode:?} owner={} files=[{}]",
                    owner_key(owner),
                    contents.join(",")
                ),
                "host",
            )
        }
        // The source's layer chain names its content; the patterns are in the step's
        // text below.
        Prepared::CopyFrom {
            from,
            to,
            mode,
            owner,
            ..
        } => (
            format!(
                "COPY from={} to={to} mode={mode:?} owner={}",
                from.chain_id()
                    .map_or_else(|| "empty".to_string(), |c| c.to_string()),
                owner_key(owner)
            ),
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
        compression: ctx.compression.key(),
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
    // A RUN step's sandbox waits for the baseline to settle just before its command
    // starts, hidden behind its own set-up; every other kind changes the tree at once.
    let settled_at_ns = rootfs
        .snapshotter()
        .begin_deferred()
        .map_err(ctx.layer_err("snapshotting the rootfs"))?;
    if !matches!(prepared, Prepared::Run { .. }) {
        crate::layer::snapshot::wait_until(settled_at_ns);
    }
    let root = RootDir::open(&path).map_err(ctx.layer_err("opening the rootfs"))?;
    let rules = step_rules(ctx, step, &prepared);
    let mut normalizing = None;
    match prepared {
        Prepared::Run {
            argv,
            network,
            mounts,
            ..
        } => {
            if let Some(rules) = rules {
                let before = normalize::before_step(rules, &root)
                    .map_err(ctx.layer_err("reading the files the normalisation rules compare"))?;
                normalizing = Some((rules, before));
            }
            let command = Command {
                argv,
                network,
                mounts: &mounts,
            };
            run(
                ctx,
                &root,
                rootfs.snapshotter(),
                state,
                step,
                command,
                prefix,
                total,
                settled_at_ns,
            )?;
        }
        Prepared::Copy {
            sources,
            to,
            mode,
            owner,
            unpack,
            expected,
        } => {
            let owner = owner_ids(ctx, step, &root, &owner)?;
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
                    unpack_limit: unpack.then_some(ctx.unpack_limit),
                },
            )
            .map_err(|e| ctx.step_err(step, with_causes(&e)))?;
            ctx.warn_all(warnings);
        }
        Prepared::Write {
            files,
            to,
            mode,
            owner,
        } => {
            let owner = owner_ids(ctx, step, &root, &owner)?;
            let warnings = super::copy::write_inline(&root, &files, &to, mode, owner, ctx.epoch)
                .map_err(|e| ctx.step_err(step, with_causes(&e)))?;
            ctx.warn_all(warnings);
        }
        Prepared::MakeWorkdir { dir, user } => {
            let owner = super::users::resolve_in(user.as_deref(), &root).map_err(|e| {
                ctx.step_err(
                    step,
                    format!("USER {}: {e}", user.as_deref().unwrap_or("0")),
                )
            })?;
            let warnings = super::copy::make_workdir(&root, &dir, (owner.uid, owner.gid))
                .map_err(|e| ctx.step_err(step, with_causes(&e)))?;
            ctx.warn_all(warnings);
        }
        Prepared::Fetch {
            url,
            checksum,
            fetched,
            to,
            mode,
            owner,
        } => {
            let (file, digest) = match fetched {
                Some(done) => done,
                None => fetch_for(ctx, step, &url, checksum.as_ref())?,
            };
            let owner = owner_ids(ctx, step, &root, &owner)?;
            let expected = std::collections::HashMap::from([(file.clone(), digest)]);
            let warnings = copy_into(
                &root,
                &CopyRequest {
                    context: None,
                    sources: std::slice::from_ref(&file),
                    to: &to,
                    // Docker's ADD gives a fetched file 0600.
                    mode: Some(mode.unwrap_or(0o600)),
                    owner,
                    epoch: ctx.epoch,
                    expected: &expected,
                    unpack_limit: None,
                },
            )
            .map_err(|e| ctx.step_err(step, with_causes(&e)))?;
            ctx.warn_all(warnings);
        }
        Prepared::CopyFrom {
            from,
            patterns,
            to,
            mode,
            owner,
        } => {
            let owner = owner_ids(ctx, step, &root, &owner)?;
            let tree = ctx.tree_of(&from)?;
            let sources = resolve_in_tree(&tree, &patterns, &from.name)
                .map_err(|e| ctx.step_err(step, with_causes(&e)))?;
            let warnings = copy_into(
                &root,
                &CopyRequest {
                    // A stage's or image's tree: no ignore file, nothing outside it.
                    context: None,
                    sources: &sources,
                    to: &to,
                    mode,
                    owner,
                    epoch: ctx.epoch,
                    expected: &std::collections::HashMap::new(),
                    unpack_limit: None,
                },
            )
            .map_err(|e| ctx.step_err(step, with_causes(&e)))?;
            ctx.warn_all(warnings);
        }
    }
    let committing = Instant::now();
    let committed = commit(ctx, &path, rootfs.snapshotter(), step, normalizing, prefix)?;
    let facts = committed
        .as_ref()
        .map(|(layer, entries)| progress_lines::CommittedLayer {
            size: layer.size,
            compression: progress_lines::compression_of(&layer.media_type),
            entries: *entries,
        });
    ctx.progress.info(
        &ctx.name(),
        &progress_lines::committed(step.number, total, facts.as_ref(), committing.elapsed()),
    );
    Ok(committed.map(|(layer, _)| layer))
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

/// What a run step executes, and with which mounts.
struct Command<'a> {
    argv: Vec<String>,
    network: NetworkMode,
    mounts: &'a [RunMount],
}

#[allow(clippy::too_many_arguments)]
fn run(
    ctx: &Context,
    root: &RootDir,
    snapshotter: &mut dyn Snapshotter,
    state: &ImageState,
    step: &PlanStep,
    command: Command,
    prefix: &str,
    total: usize,
    settled_at_ns: i128,
) -> Result<(), BuildError> {
    let Command {
        argv,
        network,
        mounts,
    } = command;
    let workdir = state.workdir.clone().unwrap_or_else(|| "/".into());
    // Docker creates a missing WORKDIR; it lands in this step's layer, so it is made
    // only once a change gets a timestamp the baseline can tell apart.
    let workdir_exists = root
        .lstat(Path::new(&workdir))
        .ok()
        .flatten()
        .is_some_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR);
    if !workdir_exists {
        crate::layer::snapshot::wait_until(settled_at_ns);
    }
    let w = root
        .create_dir_all(Path::new(&workdir), 0o755, (0, 0))
        .map_err(ctx.layer_err(format!("creating the working directory {workdir}")))?;
    ctx.warn_all(w.into_vec());
    let mut spec = sandbox_spec(SandboxRequest {
        root,
        scratch: &ctx.dir,
        platform: &ctx.plan.platform,
        native: ctx.native,
        activation: ctx.activation,
        image_env: &state.env,
        build_env: &step_build_env(ctx, step),
        workdir: &workdir,
        user: state.user.as_deref(),
        argv,
        network,
        stdin_from_caller: false,
        seccomp: ctx.seccomp,
        limits: ctx.limits,
    })
    .map_err(|message| ctx.step_err(step, message))?;
    spec.not_before_unix_ns = u64::try_from(settled_at_ns).ok();
    // Mounts: prepared (cache leases, secret files), their missing mount points made,
    // and after the step the mount points removed before the layer is read, so none of
    // it is ever in a layer.
    let requests = mount_requests(ctx, mounts)?;
    let cache_mounts = crate::cache::mounts::CacheMounts::of(ctx.cache);
    let prepared = super::mounts::prepare(
        &requests,
        &super::mounts::MountEnv {
            cache: &cache_mounts,
            secrets: ctx.secrets,
            platform: &ctx.plan.platform.to_string(),
            scratch: &ctx.dir,
            workdir: &workdir,
        },
    )
    .map_err(|e| ctx.step_err(step, format!("preparing the mounts: {e}")))?;
    spec.mounts = prepared.mounts.clone();
    let stubs = crate::sandbox::MountStubs::create(root, &spec.mounts)
        .map_err(|e| ctx.step_err(step, format!("making the mount points: {e}")))?;
    let mut on_line = |line: &str| ctx.progress.info(prefix, line);
    let result = run_step(&spec, &mut on_line);
    let removed = stubs.remove(root, Some(snapshotter));
    drop(prepared);
    let result = result.map_err(|source| BuildError::Sandbox {
        platform: ctx.name(),
        number: step.number,
        location: step.location.clone(),
        source,
    })?;
    removed.map_err(|e| ctx.step_err(step, format!("removing the mount points: {e}")))?;
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

/// The sandbox's view of a run step's mounts: bind sources become the trees they name
/// (a stage's or image's filesystem, unpacked if nothing had needed it, or the context).
fn mount_requests(
    ctx: &Context,
    mounts: &[RunMount],
) -> Result<Vec<super::mounts::MountRequest>, BuildError> {
    use super::mounts::MountRequest;
    mounts
        .iter()
        .map(|m| {
            let target = m.target.clone();
            Ok(match &m.kind {
                RunMountKind::Cache {
                    id,
                    sharing,
                    mode,
                    uid,
                    gid,
                } => MountRequest::Cache {
                    target,
                    id: Some(id.clone()),
                    sharing: match sharing {
                        CacheSharing::Shared => crate::cache::mounts::Sharing::Shared,
                        CacheSharing::Private => crate::cache::mounts::Sharing::Private,
                        CacheSharing::Locked => crate::cache::mounts::Sharing::Locked,
                    },
                    mode: Some(*mode),
                    uid: Some(*uid),
                    gid: Some(*gid),
                    read_only: false,
                },
                RunMountKind::Secret {
                    id,
                    required,
                    mode,
                    uid,
                    gid,
                } => MountRequest::Secret {
                    id: id.clone(),
                    target: Some(target),
                    required: *required,
                    mode: Some(*mode),
                    uid: Some(*uid),
                    gid: Some(*gid),
                },
                RunMountKind::Bind {
                    from,
                    source,
                    readwrite,
                } => MountRequest::Bind {
                    target,
                    from: match from {
                        Some(from) => {
                            let fs = ctx.read(from)?;
                            ctx.tree_of(&fs)?.path().to_path_buf()
                        }
                        None => ctx.context.dir().to_path_buf(),
                    },
                    source: if source.is_empty() {
                        "/".into()
                    } else {
                        source.clone()
                    },
                    read_write: *readwrite,
                },
                RunMountKind::Tmpfs { size } => MountRequest::Tmpfs {
                    target,
                    size: *size,
                },
            })
        })
        .collect()
}

/// For the step key, what each bind mount's source holds: a stage's or image's layer
/// chain, or the digest of the context files under `source`.
fn bound_contents(
    ctx: &Context,
    step: &PlanStep,
    mounts: &[RunMount],
) -> Result<Vec<String>, BuildError> {
    let mut out = Vec::new();
    for mount in mounts {
        let RunMountKind::Bind { from, source, .. } = &mount.kind else {
            continue;
        };
        let what = match from {
            Some(from) => ctx
                .read(from)?
                .chain_id()
                .map_or_else(|| "empty".to_string(), |c| c.to_string()),
            None => {
                let pattern = match source.trim_start_matches('/') {
                    "" => ".".to_string(),
                    rel => rel.to_string(),
                };
                // The step sees the folder itself, ignored files included (the
                // ignore file filters copies), so all of it is in the key.
                let everything = ctx.context.unfiltered();
                let files = resolve_copy_sources(&everything, &[pattern], &step.location)?;
                let listed = input_files(&everything, &files).map_err(|e| {
                    ctx.step_err(step, format!("reading the bind mount's source: {e}"))
                })?;
                tree_digest(&listed).to_string()
            }
        };
        out.push(format!("{}={what}", mount.target));
    }
    Ok(out)
}

/// Turns the step's changes into a layer, with the number of tar entries it holds;
/// None when nothing changed.
fn commit(
    ctx: &Context,
    rootfs: &Path,
    snapshotter: &mut dyn Snapshotter,
    step: &PlanStep,
    normalizing: Option<(&RuleSet, normalize::Before)>,
    prefix: &str,
) -> Result<Option<(Layer, u64)>, BuildError> {
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
    let opts = PackOptions {
        epoch: ctx.epoch,
        compression: ctx.compression,
        gzip_threads: ctx.gzip_threads,
    };
    let (pending, packed) = pack_changes(rootfs, &changes, &opts, pending)
        .map_err(ctx.layer_err(format!("packing step {}", step.number)))?;
    pending.commit(&packed.digest)?;
    // The tree must look as if this layer had been unpacked from the cache, so later
    // steps see the same thing on every path; the touched entries then need a fresh
    // baseline.
    let root = RootDir::open(rootfs).map_err(ctx.layer_err("opening the rootfs"))?;
    settle(&root, &changes, &opts).map_err(ctx.layer_err("settling the step's changes"))?;
    snapshotter.invalidate();
    Ok(Some((
        Layer {
            digest: packed.digest,
            size: packed.size,
            media_type: packed.media_type.into(),
            diff_id: packed.diff_id,
        },
        packed.entries,
    )))
}

/// Stores config and manifest; returns the manifest's descriptor for the index.
pub(crate) fn finish(ctx: &Context, state: &ImageState) -> Result<PlatformImage, BuildError> {
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

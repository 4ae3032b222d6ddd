//! The orchestrator: platforms side by side, each one's steps in order, then one image
//! index over all of them and the output. Runs inside the build's user namespace.

// A build fails at most once, and its error carries everything the user needs to see
// (platform, step, location, output tail); boxing it would only add noise.
#![allow(clippy::result_large_err)]

pub mod annotations;
mod attestations;
mod copy;
mod env;
mod fetch;
mod filesystem;
mod graph;
pub mod image_state;
pub mod metadata;
pub mod mounts;
pub mod output;
mod pipeline;
pub mod progress;
pub mod progress_lines;
pub(crate) mod rootfs;
pub mod run_image;
mod sandboxing;
mod schedule;
pub mod secrets;
mod signing;
pub(crate) mod snapshots;
mod tree_paths;
pub use sandboxing::step_network;
pub mod timefmt;
mod users;

use crate::cache::Cache;
use crate::digest::Digest;
use crate::emulation::{self, EmulationError};
use crate::image::{ImageError, canonical_json, descriptor};
use crate::layer::LayerError;
use crate::platform::Platform;
use crate::recipe::BaseRef;
use crate::recipe::{Location, Plan, Recipe, RecipeError};
use crate::sandbox::limits::LimitHit;
use crate::sandbox::{NetworkMode, SandboxError, StepExit};
use crate::source::SourceError;
use filesystem::Filesystem;
use image_state::ImageState;
use oci_spec::image::{ImageIndexBuilder, MediaType, SCHEMA_VERSION};
use progress::Progress;
use rootfs::LazyRootfs;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use crate::cache::workspace::Workspace;

pub use output::Output;

pub struct BuildRequest {
    pub recipe: Recipe,
    /// `--target NAME`: build that stage as the output instead of the final image.
    pub target: Option<String>,
    /// `--context DIR` (default: the recipe's folder): what `copy:` steps read.
    pub context: crate::context::BuildContext,
    pub platforms: Vec<Platform>,
    pub build_args: Vec<(String, String)>,
    pub output: Option<Output>,
    /// Platforms built at the same time.
    pub jobs: usize,
    pub progress: Progress,
    /// `--network` for every RUN step without its own `network:` (None: private).
    pub network: Option<NetworkMode>,
    /// `--security-opt seccomp=unconfined` for every RUN step.
    pub seccomp: crate::sandbox::SeccompMode,
    /// From `--source-date-epoch` or SOURCE_DATE_EPOCH; the recipe's value otherwise.
    pub source_date_epoch: Option<i64>,
    pub cache_dir: PathBuf,
    /// Run every step even when the cache knows its result.
    pub no_cache: bool,
    /// `--no-normalize`: no normalisation rules after any run step (src/normalize/).
    pub no_normalize: bool,
    /// `XBAKE_BINFMT=host`: use the host's binfmt_misc entries.
    pub force_host_binfmt: bool,
    /// How to reach registries (bases pulled, `--push`).
    pub registry: crate::registry::RegistryOptions,
    /// `--push REF`: push the index and every platform there after building.
    pub push: Option<crate::registry::Reference>,
    /// `--push-by-digest REPO`: `push` names a repository, and the index goes there
    /// under its digest, with no tag (buildx's `push-by-digest=true`).
    pub push_by_digest: bool,
    /// `--max-unpack-size`: apparent bytes a base may unpack to, per platform (None: the
    /// default, see `layer::unpack::default_unpack_limit`).
    pub max_unpack_size: Option<u64>,
    /// `--memory`, `--pids-limit`, `--cpus` for every RUN step.
    pub limits: crate::sandbox::limits::Limits,
    /// `--label KEY=VALUE`: over the recipe's labels, in every platform's config.
    pub labels: Vec<(String, String)>,
    /// `--annotation`: over the recipe's annotations.
    pub annotations: Vec<annotations::Annotation>,
    /// `--secret`: the values, read once before the build (build/secrets.rs), for run
    /// steps' `type: secret` mounts (build/mounts.rs).
    pub secrets: secrets::Secrets,
    /// `--compression`: how the layers this build makes are compressed.
    pub compression: crate::layer::LayerCompression,
    /// `XBAKE_GZIP_THREADS` (0: one per CPU); changes the speed, never the bytes.
    pub gzip_threads: usize,
    /// `--cache-from type=local,src=DIR`: shared caches a missed step is looked up in.
    pub cache_from: Vec<crate::cache::shared::CacheLocation>,
    /// `--cache-to type=local,dest=DIR[,mode=max]`: where this build's steps are written.
    pub cache_to: Option<crate::cache::shared::CacheTo>,
    /// `--provenance`, `--sbom`, `--attest-referrers`: statements attached to each
    /// platform image (src/attest/).
    pub attest: crate::attest::AttestOptions,
    /// `xbake verify REF`: the bases its provenance records. A registry base is fetched
    /// by that digest, and any base that resolves to other bytes is an error.
    pub base_pins: Vec<crate::attest::provenance::BaseFact>,
    /// `--sign-key`: sign the index digest as cosign does (build/signing.rs).
    pub sign: Option<std::sync::Arc<crate::sign::SigningKey>>,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Recipe(#[from] RecipeError),
    #[error(transparent)]
    Emulation(#[from] EmulationError),
    #[error(transparent)]
    Rules(#[from] crate::normalize::RulesError),
    #[error("[{platform}] {source}")]
    Source {
        platform: String,
        #[source]
        source: SourceError,
    },
    #[error("[{platform}] {what}: {source}")]
    Layer {
        platform: String,
        what: String,
        #[source]
        source: LayerError,
    },
    #[error("[{platform}] step {number} ({location}): {source}")]
    Sandbox {
        platform: String,
        number: usize,
        location: Location,
        #[source]
        source: SandboxError,
    },
    #[error("[{platform}] step {number} ({location}): {message}")]
    Step {
        platform: String,
        number: usize,
        location: Location,
        message: String,
    },
    #[error(
        "[{platform} {number}/{total}] {command} {} ({location}){}",
        outcome(exit, limit.as_ref()),
        tail_text(tail)
    )]
    StepFailed {
        platform: String,
        number: usize,
        total: usize,
        location: Location,
        command: String,
        exit: StepExit,
        tail: Vec<String>,
        /// The resource limit that explains the failure, when one does.
        limit: Option<LimitHit>,
    },
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {message}")]
    Command { what: String, message: String },
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
    #[error("cancelled after another platform failed")]
    Cancelled,
}

/// How a failed step ended: `failed with exit code 2`, or the limit it hit.
fn outcome(exit: &StepExit, limit: Option<&LimitHit>) -> String {
    match limit {
        None => format!("failed with {exit}"),
        Some(hit @ LimitHit::OutOfMemory { .. }) => match exit {
            StepExit::Signal(9) => hit.to_string(),
            _ => format!("{hit}, then failed with {exit}"),
        },
        Some(hit @ LimitHit::ProcessLimit { .. }) => format!("{hit} and failed with {exit}"),
        Some(hit @ LimitHit::Rlimits(_)) => format!("failed with {exit}; it {hit}"),
    }
}

fn tail_text(tail: &[String]) -> String {
    if tail.is_empty() {
        return "; it printed nothing".into();
    }
    let mut text = String::from("; last output:");
    for line in tail {
        text.push_str("\n  | ");
        text.push_str(line);
    }
    text
}

/// What a finished build produced, and what went into it (for `--metadata-file`).
#[derive(Clone, Debug)]
pub struct BuildOutcome {
    pub index_digest: Digest,
    pub index_size: u64,
    pub platforms: Vec<PlatformOutcome>,
    pub steps_run: usize,
    pub steps_cached: usize,
    /// The output stage's run steps (1-based) the normalisation rules apply after.
    pub normalized_steps: Vec<usize>,
}

#[derive(Clone, Debug)]
pub struct PlatformOutcome {
    pub platform: Platform,
    pub manifest_digest: Digest,
    pub base_manifest: Option<Digest>,
    /// The base's layer digests (for a rootfs base, the tarball's, or its conversion).
    pub base_layers: Vec<Digest>,
    /// Every file the platform's copy steps read.
    pub inputs: Vec<crate::cache::key::InputFile>,
    /// The emulator that ran its steps, and its sha256 (None: native).
    pub emulator: Option<(PathBuf, Digest)>,
}

/// One platform's finished image, with every blob it references.
#[derive(Clone)]
pub(crate) struct PlatformImage {
    pub platform: Platform,
    pub manifest: oci_spec::image::Descriptor,
    pub manifest_digest: Digest,
    pub blobs: Vec<Digest>,
    pub base_manifest: Option<Digest>,
    pub base_layers: Vec<Digest>,
    pub inputs: Vec<crate::cache::key::InputFile>,
}

/// What every namespaced command (a build, `xbake run`) sets up first: a workspace,
/// emulation for its platforms, and a blob store.
pub(crate) struct Session {
    pub workspace: Workspace,
    pub activation: emulation::Activation,
    pub emulators: Vec<emulation::Emulator>,
    /// (QEMU name, sha256 of the emulator binary).
    pub emulator_digests: Vec<(String, Digest)>,
    /// How its rootfs are made (overlay snapshots or the walk).
    pub backend: snapshots::Backend,
    pub cache: Cache,
}

impl Session {
    pub fn open(
        cache_dir: &Path,
        platforms: &[Platform],
        force_host_binfmt: bool,
    ) -> Result<Session, BuildError> {
        let emulators = emulation::required_emulators(
            platforms,
            &Platform::host(),
            &emulation::qemu::search_path(),
        )?;
        // The cache lock first: `prune` (exclusive) must never see this build's
        // workspace half made.
        let cache = Cache::open(cache_dir).map_err(|e| BuildError::Io {
            what: format!("opening the cache {}", cache_dir.display()),
            source: std::io::Error::other(e.to_string()),
        })?;
        let workspace = Workspace::create(cache_dir).map_err(|source| BuildError::Io {
            what: "creating the build workspace".into(),
            source,
        })?;
        let binfmt_dir = workspace.path().join("binfmt_misc");
        crate::cache::private_dir::create_new_private_dir(&binfmt_dir).map_err(|source| {
            BuildError::Io {
                what: binfmt_dir.display().to_string(),
                source,
            }
        })?;
        let activation = emulation::activate(
            &emulators,
            &binfmt_dir,
            Path::new(emulation::HOST_BINFMT_DIR),
            force_host_binfmt,
        )?;
        // Each emulator's digest is part of its steps' keys; the cache's trust records
        // spare re-reading a 5-20 MB binary on every build until it is replaced. A
        // fresh cache hashes them all, side by side (one thread each).
        let emulator_digests = std::thread::scope(|scope| {
            let hashing: Vec<_> = emulators
                .iter()
                .map(|e| scope.spawn(|| cache.file_digest(&e.interpreter)))
                .collect();
            emulators
                .iter()
                .zip(hashing)
                .map(|(e, hashed)| {
                    let (d, _, _) = hashed
                        .join()
                        .map_err(|_| std::io::Error::other("the hashing thread panicked"))??;
                    Ok((e.platform.qemu_name().to_string(), d))
                })
                .collect::<std::io::Result<Vec<_>>>()
        })
        .map_err(|source| BuildError::Io {
            what: "reading the QEMU emulators".into(),
            source,
        })?;
        let backend = snapshots::Backend::choose(&cache, workspace.path())?;
        Ok(Session {
            workspace,
            backend,
            activation,
            emulators,
            emulator_digests,
            cache,
        })
    }
}

impl Session {
    /// sha256 of the emulator for `platform` (None when native).
    fn emulator_digest(&self, platform: &Platform) -> Option<Digest> {
        self.emulator_digests
            .iter()
            .find(|(name, _)| name == platform.qemu_name())
            .map(|(_, d)| d.clone())
    }
}

impl Drop for Session {
    /// Runs before the workspace is removed: the binfmt_misc instance is mounted inside
    /// it, and its control files cannot be deleted while mounted.
    fn drop(&mut self) {
        if self.activation.private_instance {
            let _ = emulation::binfmt::unmount_private_instance(
                &self.workspace.path().join("binfmt_misc"),
            );
        }
    }
}

/// The SOURCE_DATE_EPOCH a build uses: request (CLI/environment), recipe, else 0.
fn unix_seconds(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

pub fn effective_epoch(requested: Option<i64>, plan: &Plan) -> i64 {
    requested.or(plan.source_date_epoch).unwrap_or(0)
}

/// What one node of the graph leaves for the nodes after it and for the output.
struct NodeResult {
    state: ImageState,
    fs: Arc<Filesystem>,
    /// The image at the bottom of the stage's `from:` chain, for the metadata file.
    base_manifest: Option<Digest>,
    base_layers: Vec<Digest>,
    /// Context files read by this stage and every stage it uses.
    inputs: Vec<crate::cache::key::InputFile>,
    /// Its finished image, when it is an output.
    image: Option<PlatformImage>,
}

/// Runs the whole build. Must run inside the build's user namespace.
pub fn run(req: &BuildRequest) -> Result<BuildOutcome, BuildError> {
    let build_started = Instant::now();
    // For `--provenance timestamps=true` only: every other output is free of the clock.
    let started_on = std::time::SystemTime::now();
    let host = Platform::host();
    for w in req.recipe.warnings() {
        req.progress.warn("recipe", w);
    }
    let output_stage = req.recipe.output_stage(req.target.as_deref())?;
    let rules = Some(crate::normalize::builtin()?);
    let mut platforms = req.platforms.clone();
    for p in req.recipe.fixed_platforms() {
        if !platforms.contains(&p) {
            platforms.push(p);
        }
    }
    let session = Session::open(&req.cache_dir, &platforms, req.force_host_binfmt)?;
    let (workspace, activation, cache) = (&session.workspace, &session.activation, &session.cache);
    // A shared cache that cannot be read is left out, said once: the build runs its
    // steps as without it.
    let shared_from: Vec<crate::cache::shared::Imported> = req
        .cache_from
        .iter()
        .filter_map(|location| {
            match crate::cache::shared::Imported::open(location, cache, &req.registry) {
                Ok(imported) => {
                    req.progress.info(
                        "build",
                        &format!(
                            "cache: {} steps in --cache-from {}",
                            imported.len(),
                            imported.what
                        ),
                    );
                    Some(imported)
                }
                Err(e) => {
                    req.progress.warn(
                        "build",
                        &format!(
                            "--cache-from {} is refused (building without it): {e}",
                            location.describe(false)
                        ),
                    );
                    None
                }
            }
        })
        .collect();
    let shared_to = std::sync::Mutex::new(Vec::new());
    let store = cache.store();
    let steps_run = AtomicUsize::new(0);
    let steps_cached = AtomicUsize::new(0);
    let cancel = AtomicBool::new(false);
    let unpack_limit = rootfs::unpack_limit(req.max_unpack_size, &req.cache_dir);
    req.progress.info("build", &session.backend.describe());
    let jobs = req.jobs.max(1);

    // The graph first: every base resolved and every stage expanded before any step runs.
    let resolved_bases = AtomicUsize::new(0);
    let resolve = |base: &BaseRef, text: &str, platform: &Platform| {
        let scratch = workspace.path().join(format!(
            "base-{}",
            resolved_bases.fetch_add(1, Ordering::SeqCst)
        ));
        crate::cache::private_dir::create_private_dir(&scratch).map_err(|source| {
            BuildError::Io {
                what: format!("creating {}", scratch.display()),
                source,
            }
        })?;
        let started = Instant::now();
        let pin = req
            .base_pins
            .iter()
            .find(|p| p.reference == text && p.platform == platform.to_string());
        // The text stays as written (it is in the image's history); only the fetch is
        // by digest.
        let pinned = match (base, pin.and_then(|p| p.manifest.as_ref())) {
            (BaseRef::Registry(name), Some(digest)) => {
                let name = name.split_once('@').map_or(name.as_str(), |(n, _)| n);
                Some(BaseRef::Registry(format!("{name}@{digest}")))
            }
            _ => None,
        };
        let resolved = crate::source::resolve(
            pinned.as_ref().unwrap_or(base),
            text,
            platform,
            &crate::source::SourceContext {
                cache,
                recipe_dir: Some(req.recipe.dir()),
                scratch: &scratch,
                registry: &req.registry,
                unpack_limit,
            },
        )
        .map_err(|source| BuildError::Source {
            platform: platform.short_name(),
            source,
        })?;
        if let Some(pin) = pin {
            let layers: Vec<Digest> = resolved.layers.iter().map(|l| l.digest.clone()).collect();
            let manifest_differs =
                pin.manifest.is_some() && resolved.manifest_digest != pin.manifest;
            if manifest_differs || layers != pin.layers {
                return Err(BuildError::Command {
                    what: format!("[{}] base {text}", platform.short_name()),
                    message: format!(
                        "it is not the base the provenance records: {} here, {} recorded",
                        resolved
                            .manifest_digest
                            .as_ref()
                            .or(layers.first())
                            .map_or("nothing".into(), |d| d.to_string()),
                        pin.manifest
                            .as_ref()
                            .or(pin.layers.first())
                            .map_or("nothing".into(), |d| d.to_string()),
                    ),
                });
            }
        }
        let bytes = resolved.layers.iter().map(|l| l.size).sum();
        req.progress.info(
            &platform.short_name(),
            &progress_lines::base_resolved(text, resolved.layers.len(), bytes, started.elapsed()),
        );
        Ok(Arc::new(resolved))
    };
    let warn = |who: &str, what: &str| req.progress.warn(who, what);
    let discovery = graph::Discovery {
        recipe: &req.recipe,
        build_args: &req.build_args,
        host,
        resolve: &resolve,
        warn: &warn,
    };
    let mut graph = discovery.discover(output_stage, &req.platforms, jobs)?;
    // `--label` and `--annotation` are the output's, like the recipe's `config:`.
    let mut output_nodes: Vec<usize> = Vec::new();
    for &node in &graph.outputs {
        if !output_nodes.contains(&node) {
            output_nodes.push(node);
            annotations::apply_to_plan(&mut graph.nodes[node].plan, &req.labels, &req.annotations);
        }
    }
    let output_plans: Vec<Plan> = output_nodes
        .iter()
        .map(|&n| graph.nodes[n].plan.clone())
        .collect();
    let index_annotations = annotations::index_annotations(&output_plans, &req.annotations)?;
    let graph = graph;
    let images: Vec<Arc<Filesystem>> = graph
        .images
        .iter()
        .enumerate()
        .map(|(i, image)| {
            Arc::new(Filesystem::new(
                format!("image {}", image.text),
                image.platform,
                image.base.layers.clone(),
                LazyRootfs::new(
                    workspace.path().join(format!("image-{i}/rootfs")),
                    unpack_limit,
                    &session.backend,
                ),
            ))
        })
        .collect();

    // Each stage build's time and wait for a slot, for the summary.
    let node_times: Mutex<Vec<Option<Duration>>> = Mutex::new(vec![None; graph.nodes.len()]);
    let node_waits: Mutex<Vec<Option<Duration>>> = Mutex::new(vec![None; graph.nodes.len()]);
    let build_node =
        |i: usize, done: &[Option<Arc<NodeResult>>]| -> Result<NodeResult, BuildError> {
            let node_started = Instant::now();
            let node = &graph.nodes[i];
            let plan = &node.plan;
            let dep = |j: usize| {
                done[j].clone().ok_or_else(|| BuildError::Command {
                    what: format!("[{}] starting", node.label),
                    message: "a stage it needs is not built".into(),
                })
            };
            let epoch = effective_epoch(req.source_date_epoch, plan);
            let (state, base_manifest, base_layers, mut inputs) = match &node.start {
                graph::Start::Image(base) => {
                    req.progress.info(
                        &node.label,
                        &format!(
                            "FROM {} ({} layer{})",
                            plan.from_text,
                            base.layers.len(),
                            if base.layers.len() == 1 { "" } else { "s" }
                        ),
                    );
                    (
                        image_state::ImageState::from_base(base, &plan.from_text, epoch),
                        base.manifest_digest.clone(),
                        base.layers.iter().map(|l| l.digest.clone()).collect(),
                        Vec::new(),
                    )
                }
                graph::Start::Stage(parent) => {
                    let parent = dep(*parent)?;
                    req.progress
                        .info(&node.label, &format!("FROM stage {}", plan.from_text));
                    (
                        parent.state.clone(),
                        parent.base_manifest.clone(),
                        parent.base_layers.clone(),
                        parent.inputs.clone(),
                    )
                }
            };
            let mut reads = HashMap::new();
            for (from, source) in &node.reads {
                let fs = match source {
                    graph::Reads::Stage(j) => {
                        let used = dep(*j)?;
                        inputs.extend(used.inputs.iter().cloned());
                        used.fs.clone()
                    }
                    graph::Reads::Image(k) => images[*k].clone(),
                };
                reads.insert(from.clone(), fs);
            }
            let native = plan.platform.runs_natively_on(&host);
            let (limits, warnings) =
                crate::sandbox::limits::for_platform(&req.limits, native, &node.label);
            for w in warnings {
                req.progress.warn(&node.label, &w);
            }
            let ctx = pipeline::Context {
                plan,
                label: &node.label,
                reads: &reads,
                secrets: &req.secrets,
                context: &req.context,
                cache,
                no_cache: req.no_cache,
                normalize: rules.filter(|_| !req.no_normalize),
                dir: workspace.path().join(format!("stage-{i}")),
                activation,
                progress: &req.progress,
                cancel: &cancel,
                epoch,
                network: req.network,
                seccomp: req.seccomp,
                native,
                limits,
                emulator: session.emulator_digest(&plan.platform),
                steps_run: &steps_run,
                steps_cached: &steps_cached,
                unpack_limit,
                backend: &session.backend,
                compression: req.compression,
                gzip_threads: req.gzip_threads,
                shared_from: &shared_from,
                // mode=min: the steps of the stages the output is made of; max: all.
                shared_to: req
                    .cache_to
                    .as_ref()
                    .filter(|to| to.max || graph.outputs.contains(&i))
                    .map(|_| &shared_to),
            };
            let built = pipeline::build_stage(&ctx, state)?;
            inputs.extend(built.inputs);
            let image = if graph.outputs.contains(&i) {
                let mut state = built.state.clone();
                state.apply_config(&plan.config);
                let mut image = pipeline::finish(&ctx, &state)?;
                image.base_manifest = base_manifest.clone();
                image.base_layers = base_layers.clone();
                image.inputs = inputs.clone();
                Some(image)
            } else {
                None
            };
            let fs = Arc::new(Filesystem::new(
                format!("stage {}", node.label),
                plan.platform,
                built.state.layers.clone(),
                built.rootfs,
            ));
            node_times.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(node_started.elapsed());
            Ok(NodeResult {
                state: built.state,
                fs,
                base_manifest,
                base_layers,
                inputs,
                image,
            })
        };
    let deps: Vec<&[usize]> = graph.nodes.iter().map(|n| n.deps.as_slice()).collect();
    let on_event = |event: schedule::Event| match event {
        schedule::Event::Queued { node, busy, slots } => req.progress.info(
            &graph.nodes[node].label,
            &progress_lines::queued(busy, slots),
        ),
        schedule::Event::Started { node, waited } => {
            node_waits.lock().unwrap_or_else(|p| p.into_inner())[node] = Some(waited);
            req.progress.info(
                &graph.nodes[node].label,
                &progress_lines::started_after(waited),
            );
        }
    };
    let observer = schedule::Observer {
        now: &Instant::now,
        event: &on_event,
    };
    let setup = build_started.elapsed();
    let results = schedule::run(&deps, jobs, &cancel, &observer, build_node)?;
    // Phases after the stage builds, for the summary.
    let mut after: Vec<(&str, Duration)> = Vec::new();

    // One manifest per output; a stage shared by every target (`--target` of a stage
    // that does not depend on it) is listed once.
    let outputs: Vec<(usize, PlatformImage)> = output_nodes
        .iter()
        .filter_map(|&node| results[node].image.clone().map(|image| (node, image)))
        .collect();
    let images: Vec<PlatformImage> = outputs.iter().map(|(_, i)| i.clone()).collect();
    let emulator_for = |p: &Platform| {
        let path = session
            .emulators
            .iter()
            .find(|e| e.platform.qemu_name() == p.qemu_name())
            .map(|e| e.interpreter.clone())?;
        Some((path, session.emulator_digest(p)?))
    };
    let attached = if req.attest.any() {
        let attesting = Instant::now();
        let outputs: Vec<(usize, &PlatformImage)> = outputs.iter().map(|(n, i)| (*n, i)).collect();
        let image_name =
            (req.attest.image_name.clone()).or_else(|| req.push.as_ref().map(|r| r.to_string()));
        let times = (
            timefmt::rfc3339(unix_seconds(started_on)),
            timefmt::rfc3339(unix_seconds(std::time::SystemTime::now())),
        );
        let attached = attestations::attach(
            req,
            store,
            &graph,
            &outputs,
            &emulator_for,
            image_name.as_deref(),
            Some(times),
            unpack_limit,
        )?;
        after.push(("attestations", attesting.elapsed()));
        Some(attached)
    } else {
        None
    };

    // The index lists platforms in the order they were asked for (DESIGN decision 4).
    // Attestation manifests follow the platform manifests, as BuildKit lists them.
    let mut entries: Vec<oci_spec::image::Descriptor> = images
        .iter()
        .map(|i| {
            let mut entry = i.manifest.clone();
            annotations::annotate_manifest_descriptor(&mut entry, &i.platform, &req.annotations);
            entry
        })
        .collect();
    for written in attached.iter().flat_map(|a| &a.manifests) {
        entries.push(
            serde_json::from_value(written.descriptor.clone()).map_err(|e| {
                ImageError::Invalid {
                    what: "attestation manifest descriptor".into(),
                    message: e.to_string(),
                }
            })?,
        );
    }
    let mut index = ImageIndexBuilder::default()
        .schema_version(SCHEMA_VERSION)
        .media_type(MediaType::ImageIndex)
        .manifests(entries);
    if !index_annotations.is_empty() {
        // A HashMap in oci-spec; canonical_json sorts the keys when it is written.
        index = index.annotations(
            index_annotations
                .into_iter()
                .collect::<std::collections::HashMap<_, _>>(),
        );
    }
    let index = index.build().map_err(|e| ImageError::Invalid {
        what: "image index".into(),
        message: e.to_string(),
    })?;
    let (index_digest, index_size) = store.put_bytes(&canonical_json(&index, "image index")?)?;
    if let Some(to) = &req.cache_to {
        let steps = shared_to.into_inner().unwrap_or_else(|p| p.into_inner());
        let exported = crate::cache::shared::export(cache, &to.location, &steps, &req.registry)
            .map_err(|message| BuildError::Command {
                what: format!("--cache-to {}", to.location.describe(true)),
                message,
            })?;
        req.progress.info(
            "build",
            &format!(
                "cache: wrote {} steps to --cache-to {} ({exported})",
                steps.len(),
                to.location.describe(true)
            ),
        );
    }
    if let Some(out) = &req.output {
        let mut blobs: Vec<Digest> = images
            .iter()
            .flat_map(|i| i.blobs.iter().cloned())
            .collect();
        blobs.push(index_digest.clone());
        if let Some(a) = &attached {
            blobs.extend(a.blobs());
        }
        blobs.sort();
        blobs.dedup();
        let mut top = descriptor(MediaType::ImageIndex, &index_digest, index_size)?;
        annotations::annotate_index_descriptor(&mut top, &req.annotations);
        let manifests: Vec<Digest> = images.iter().map(|i| i.manifest_digest.clone()).collect();
        let mut extra = attached
            .as_ref()
            .map(|a| a.referrer_entries())
            .transpose()?
            .unwrap_or_default();
        // A layout keeps the signature beside the image, under cosign's tag; it names
        // the repository the image is pushed to, if it is.
        if let Some(key) = &req.sign {
            let name = match &req.push {
                Some(target) => target.name(),
                None => out.path().display().to_string(),
            };
            let signed = signing::sign_into(store, key, &name, &index_digest, &[])?;
            blobs.extend(signed.blobs.iter().cloned());
            blobs.sort();
            blobs.dedup();
            extra.push(signing::layout_entry(&signed)?);
        }
        // Writing a layout hard-links the cache's blobs into it and unlinks the old
        // layout's names, and the hand-back chowns them: each moves their ctime. The
        // trust records that hold now are carried past these (src/trust.rs), or every
        // rebuild would hash every blob again.
        let held = store.hold_trust(&blobs);
        let writing = Instant::now();
        let finished = output::Finished {
            store,
            top: &top,
            blobs: &blobs,
            manifests: &manifests,
            extra: &extra,
        };
        let new_bytes = if req.progress.is_plain() {
            output::new_blob_bytes(out, &finished)
        } else {
            0
        };
        output::write(out, &finished)?;
        crate::sandbox::userns::hand_back_to_caller(out.path()).map_err(|source| {
            BuildError::Io {
                what: format!("giving {out} back to the caller"),
                source,
            }
        })?;
        store.carry_trust(held);
        let took = writing.elapsed();
        req.progress.note(&progress_lines::output_written(
            &out.to_string(),
            manifests.len(),
            new_bytes,
            took,
        ));
        after.push(("output", took));
    }
    if let Some(target) = &req.push {
        let pushing = Instant::now();
        let creds = crate::registry::auth::credentials_for(&target.registry)?;
        // Blobs of a base pulled from another repository of the same registry can be
        // mounted there instead of uploaded.
        let mount_from = graph
            .nodes
            .iter()
            .map(|n| &n.plan)
            .find_map(|p| match &p.from {
                crate::recipe::BaseRef::Registry(text) => text
                    .parse::<crate::registry::Reference>()
                    .ok()
                    .filter(|r| r.registry == target.registry && r.repository != target.repository)
                    .map(|r| r.repository),
                _ => None,
            });
        let by_digest;
        let target = if req.push_by_digest {
            by_digest = crate::registry::Reference {
                tag: None,
                digest: Some(index_digest.clone()),
                ..target.clone()
            };
            &by_digest
        } else {
            target
        };
        // With referrers or a signature to attach, the index goes up by digest first
        // and the tag moves last: a failure in between leaves the tag where it was,
        // not on an image without its signature.
        let has_referrers = attached.as_ref().is_some_and(|a| !a.referrers.is_empty());
        let tag_last = (req.sign.is_some() || has_referrers)
            && target.tag.is_some()
            && target.digest.is_none();
        let client = crate::registry::Client::new(target, &req.registry, creds)?;
        let pushed = crate::registry::push_with(
            &client,
            store,
            MediaType::ImageIndex.as_ref(),
            &index_digest,
            &if tag_last {
                index_digest.to_string()
            } else {
                target.tag.clone().unwrap_or_else(|| target.tag_or_digest())
            },
            mount_from.as_deref(),
        )?;
        if let Some(a) = attached.as_ref().filter(|a| !a.referrers.is_empty()) {
            req.progress
                .info("push", &a.push_referrers(&client, store)?);
        }
        if let Some(key) = &req.sign {
            let earlier = signing::earlier_in_registry(&client, &index_digest)?;
            let signed = signing::sign_into(store, key, &target.name(), &index_digest, &earlier)?;
            signing::push(&client, store, &signed)?;
            req.progress.info(
                "push",
                &format!(
                    "signed {index_digest}: {} ({} signature{} under the tag)",
                    client.describe(&signed.tag),
                    signed.count,
                    if signed.count == 1 { "" } else { "s" }
                ),
            );
        }
        if tag_last && let Some(tag) = &target.tag {
            client.put_manifest(
                tag,
                MediaType::ImageIndex.as_ref(),
                &store.read_bytes(&index_digest)?,
            )?;
        }
        let took = pushing.elapsed();
        req.progress.info(
            "push",
            &format!("pushed {target} ({pushed}) in {}", timefmt::elapsed(took)),
        );
        after.push(("push", took));
    }
    let outcome = BuildOutcome {
        index_digest,
        index_size,
        platforms: images
            .into_iter()
            .map(|i| PlatformOutcome {
                emulator: emulator_for(&i.platform),
                platform: i.platform,
                manifest_digest: i.manifest_digest,
                base_manifest: i.base_manifest,
                base_layers: i.base_layers,
                inputs: i.inputs,
            })
            .collect(),
        steps_run: steps_run.into_inner(),
        steps_cached: steps_cached.into_inner(),
        normalized_steps: graph
            .outputs
            .first()
            .map(|&node| {
                (graph.nodes[node].plan.steps.iter())
                    .filter(|s| s.normalize)
                    .map(|s| s.number)
                    .collect()
            })
            .unwrap_or_default(),
    };
    // Removing the workspace (every stage's unpacked rootfs) takes seconds for a large
    // base: timed and reported, not left as a silent pause before the digest.
    drop(results);
    let cleaning = Instant::now();
    drop(session);
    let took = cleaning.elapsed();
    req.progress.note(&progress_lines::cleaned_up(took));
    after.push(("cleanup", took));
    if req.progress.is_plain() {
        let times = node_times.into_inner().unwrap_or_else(|p| p.into_inner());
        let waits = node_waits.into_inner().unwrap_or_else(|p| p.into_inner());
        let nodes: Vec<progress_lines::NodeTime> = graph
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| progress_lines::NodeTime {
                label: &n.label,
                took: times[i].unwrap_or_default(),
                queued: waits[i],
            })
            .collect();
        for line in progress_lines::summary(build_started.elapsed(), setup, &nodes, &after) {
            req.progress.note(&line);
        }
    }
    Ok(outcome)
}

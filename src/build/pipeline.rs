//! One platform's build: fetch and unpack the base, run the steps in order, commit a
//! layer per changing step, and store the config and manifest.

use super::copy::{CopyRequest, copy_into};
use super::env::step_env;
use super::image_state::{ImageState, Layer};
use super::progress::Progress;
use super::users;
use super::{BuildError, PlatformImage};
use crate::digest::Digest;
use crate::emulation::Activation;
use crate::image::{BlobStore, canonical_json, descriptor};
use crate::layer::LayerError;
use crate::layer::pack::{MEDIA_TYPE_GZIP_LAYER, PackOptions, pack_changes};
use crate::layer::root::RootDir;
use crate::layer::snapshot::{Snapshotter, WalkSnapshotter};
use crate::layer::unpack::apply_blob;
use crate::recipe::{Network, Plan, PlanStep, Recipe, RunCommand, StepKind, resolve_copy_sources};
use crate::sandbox::placeholders::Placeholders;
use crate::sandbox::{NetworkMode, StepSpec, run_step};
use crate::source;
use oci_spec::image::{Arch, MediaType, Os, PlatformBuilder};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

pub(crate) struct Context<'a> {
    pub recipe: &'a Recipe,
    pub plan: &'a Plan,
    pub store: &'a BlobStore,
    /// This platform's scratch folder inside the workspace.
    pub dir: PathBuf,
    pub activation: &'a Activation,
    pub progress: &'a Progress,
    pub cancel: &'a AtomicBool,
    pub epoch: i64,
    pub network: Option<NetworkMode>,
    pub native: bool,
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

    fn io_err(&self, what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BuildError {
        let what = format!("[{}] {}", self.name(), what.into());
        move |source| BuildError::Io { what, source }
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

pub(crate) fn build_platform(ctx: &Context) -> Result<PlatformImage, BuildError> {
    let plan = ctx.plan;
    let name = ctx.name();
    let rootfs = ctx.dir.join("rootfs");
    std::fs::create_dir_all(&rootfs).map_err(ctx.io_err("creating the rootfs folder"))?;
    let root = RootDir::open(&rootfs).map_err(ctx.layer_err("opening the rootfs"))?;

    let base = source::resolve(
        &plan.from,
        &plan.from_text,
        &plan.platform,
        ctx.store,
        Some(ctx.recipe.dir()),
    )
    .map_err(|source| BuildError::Source {
        platform: name.clone(),
        source,
    })?;
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
    state.layers = unpack_layers(ctx.store, &root, &base.layers, &name, &mut |w| {
        ctx.progress.warn(&name, &w)
    })?;
    if base.config.is_none() && !base.layers.is_empty() {
        // A rootfs tarball has no history of its own; describe where the layer came from.
        state.history.push(super::image_state::HistoryEntry {
            created: Some(super::timefmt::rfc3339(ctx.epoch)),
            created_by: format!("FROM {}", plan.from_text),
            comment: Some(super::image_state::HISTORY_COMMENT.into()),
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

    prepare_mount_points(&root, ctx.activation, &plan.platform)
        .map_err(ctx.layer_err("creating mount points"))?;
    let mut snapshotter = WalkSnapshotter::new(rootfs.clone());
    let total = plan.steps.len();
    for step in &plan.steps {
        if ctx.cancel.load(Ordering::SeqCst) {
            return Err(BuildError::Cancelled);
        }
        let prefix = format!("{name} {}/{total}", step.number);
        ctx.progress.info(&prefix, &step.describe());
        match &step.kind {
            StepKind::Run { command, network } => {
                snapshotter
                    .begin()
                    .map_err(ctx.layer_err("snapshotting the rootfs"))?;
                run(ctx, &root, &state, step, command, *network, &prefix, total)?;
                commit(ctx, &rootfs, &mut snapshotter, &mut state, step)?;
            }
            StepKind::Copy {
                sources,
                to,
                mode,
                owner,
            } => {
                snapshotter
                    .begin()
                    .map_err(ctx.layer_err("snapshotting the rootfs"))?;
                let files = resolve_copy_sources(ctx.recipe.dir(), sources, &step.location)?;
                let to = destination_in(state.workdir.as_deref(), to);
                let warnings = copy_into(
                    &root,
                    &CopyRequest {
                        sources: &files,
                        to: &to,
                        mode: *mode,
                        owner: owner.unwrap_or((0, 0)),
                        epoch: ctx.epoch,
                    },
                )
                .map_err(|e| ctx.step_err(step, e.to_string()))?;
                ctx.warn_all(warnings);
                commit(ctx, &rootfs, &mut snapshotter, &mut state, step)?;
            }
            StepKind::Env(vars) => {
                for (k, v) in vars {
                    state.set_env(k, v);
                }
                state.push_empty(step.created_by(), ctx.epoch);
            }
            StepKind::Workdir(dir) => {
                state.workdir = Some(dir.clone());
                state.push_empty(step.created_by(), ctx.epoch);
            }
            StepKind::User(user) => {
                state.user = Some(user.clone());
                state.push_empty(step.created_by(), ctx.epoch);
            }
        }
    }
    state.apply_config(&plan.config);
    finish(ctx, &state)
}

/// Unpacks `layers` (already in `store`) onto `root` in order, verifying each blob's
/// digest and diff_id; returns them as image layers with their diff_ids known.
pub(crate) fn unpack_layers(
    store: &BlobStore,
    root: &RootDir,
    layers: &[source::BaseLayer],
    platform: &str,
    warn: &mut dyn FnMut(String),
) -> Result<Vec<Layer>, BuildError> {
    let mut out = Vec::new();
    for (i, layer) in layers.iter().enumerate() {
        let blob = store.open_blob(&layer.digest)?;
        let (report, diff_id) = apply_blob(
            root,
            std::io::BufReader::new(blob),
            &layer.digest,
            layer.diff_id.as_ref(),
        )
        .map_err(|source| BuildError::Layer {
            platform: platform.to_string(),
            what: format!("unpacking base layer {} ({})", i + 1, layer.digest),
            source,
        })?;
        for w in report.warnings {
            warn(w);
        }
        out.push(Layer {
            digest: layer.digest.clone(),
            size: layer.size,
            media_type: layer.media_type.clone(),
            diff_id,
        });
    }
    Ok(out)
}

/// Everything about one sandboxed command that does not depend on the recipe: used by
/// RUN steps and by `xbake run`.
pub(crate) struct SandboxRequest<'a> {
    pub root: &'a RootDir,
    /// Scratch folder for the generated hosts/hostname files.
    pub scratch: &'a Path,
    pub platform: &'a crate::platform::Platform,
    pub native: bool,
    pub activation: &'a Activation,
    pub image_env: &'a [(String, String)],
    pub build_env: &'a [(String, String)],
    pub workdir: &'a str,
    pub user: Option<&'a str>,
    pub argv: Vec<String>,
    pub network: NetworkMode,
}

/// Resolves the user in the image, writes hosts/hostname, and assembles the spec.
pub(crate) fn sandbox_spec(req: SandboxRequest) -> Result<StepSpec, String> {
    let read_text = |path: &str| -> Option<String> {
        let mut text = String::new();
        req.root
            .open_file(Path::new(path))
            .ok()?
            .read_to_string(&mut text)
            .ok()?;
        Some(text)
    };
    let user = users::resolve(
        req.user,
        read_text("etc/passwd").as_deref(),
        read_text("etc/group").as_deref(),
    )
    .map_err(|e| e.to_string())?;
    let spec = StepSpec {
        rootfs: req.root.path().to_path_buf(),
        argv: req.argv,
        env: step_env(
            req.image_env,
            req.build_env,
            req.platform,
            !req.native,
            &user.home,
        ),
        cwd: req.workdir.to_string(),
        uid: user.uid,
        gid: user.gid,
        network: req.network,
        hostname: "xbake".into(),
        hosts_file: req.scratch.join("hosts"),
        hostname_file: req.scratch.join("hostname"),
        resolv_conf: host_resolv_conf(),
        emulator_bind: req.activation.bind_for(req.platform).map(Path::to_path_buf),
        // i386 binaries on an x86_64 kernel: report i686 like `setarch linux32`.
        linux32: req.native
            && req.platform.oci_arch() == "386"
            && std::env::consts::ARCH == "x86_64",
    };
    let hosts =
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\txbake\n";
    write_if_missing(&spec.hosts_file, hosts)
        .map_err(|e| format!("writing the step's /etc/hosts: {e}"))?;
    write_if_missing(&spec.hostname_file, "xbake\n")
        .map_err(|e| format!("writing the step's /etc/hostname: {e}"))?;
    Ok(spec)
}

/// The host's resolv.conf, bound into steps when it exists.
fn host_resolv_conf() -> Option<PathBuf> {
    let resolv = Path::new("/etc/resolv.conf");
    resolv.is_file().then(|| resolv.to_path_buf())
}

/// Creates the mount points every step of this rootfs needs; call once, before the
/// first snapshot (see sandbox/placeholders.rs for why).
pub(crate) fn prepare_mount_points(
    root: &RootDir,
    activation: &Activation,
    platform: &crate::platform::Platform,
) -> Result<(), LayerError> {
    Placeholders::prepare(
        root,
        host_resolv_conf().is_some(),
        activation.bind_for(platform),
    )
    .map(|_| ())
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
    command: &RunCommand,
    network: Option<Network>,
    prefix: &str,
    total: usize,
) -> Result<(), BuildError> {
    let workdir = state.workdir.clone().unwrap_or_else(|| "/".into());
    // Docker creates a missing WORKDIR; it lands in this step's layer.
    let w = root
        .create_dir_all(Path::new(&workdir), 0o755, (0, 0))
        .map_err(ctx.layer_err(format!("creating the working directory {workdir}")))?;
    ctx.warn_all(w.into_vec());
    let argv = match command {
        RunCommand::Shell(script) => vec!["/bin/sh".into(), "-c".into(), script.clone()],
        RunCommand::Exec(argv) => argv.clone(),
    };
    let network = match (network, ctx.network) {
        (Some(Network::None), _) | (None, Some(NetworkMode::None)) => NetworkMode::None,
        _ => NetworkMode::Host,
    };
    let spec = sandbox_spec(SandboxRequest {
        root,
        scratch: &ctx.dir,
        platform: &ctx.plan.platform,
        native: ctx.native,
        activation: ctx.activation,
        image_env: &state.env,
        build_env: &ctx.plan.build_env,
        workdir: &workdir,
        user: state.user.as_deref(),
        argv,
        network,
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
        });
    }
    Ok(())
}

fn write_if_missing(path: &Path, text: &str) -> std::io::Result<()> {
    if path.exists() {
        return Ok(());
    }
    std::fs::write(path, text)
}

/// Turns the step's changes into a layer (or an empty history entry when nothing
/// changed).
fn commit(
    ctx: &Context,
    rootfs: &Path,
    snapshotter: &mut WalkSnapshotter,
    state: &mut ImageState,
    step: &PlanStep,
) -> Result<(), BuildError> {
    let changes = snapshotter
        .changes()
        .map_err(ctx.layer_err("finding the step's changes"))?;
    if changes.is_empty() {
        state.push_empty(step.created_by(), ctx.epoch);
        return Ok(());
    }
    let pending = ctx.store.create()?;
    let (pending, packed) =
        pack_changes(rootfs, &changes, &PackOptions { epoch: ctx.epoch }, pending)
            .map_err(ctx.layer_err(format!("packing step {}", step.number)))?;
    pending.commit(&packed.digest)?;
    state.push_layer(
        Layer {
            digest: packed.digest,
            size: packed.size,
            media_type: MEDIA_TYPE_GZIP_LAYER.into(),
            diff_id: packed.diff_id,
        },
        step.created_by(),
        ctx.epoch,
    );
    Ok(())
}

/// Stores config and manifest; returns the manifest's descriptor for the index.
fn finish(ctx: &Context, state: &ImageState) -> Result<PlatformImage, BuildError> {
    let platform = &ctx.plan.platform;
    let config = state.config(platform, ctx.epoch)?;
    let (config_digest, config_size) = ctx
        .store
        .put_bytes(&canonical_json(&config, "image config")?)?;
    let config_desc = descriptor(MediaType::ImageConfig, &config_digest, config_size)?;
    let manifest = state.manifest(&config_desc)?;
    let (manifest_digest, manifest_size) = ctx
        .store
        .put_bytes(&canonical_json(&manifest, "image manifest")?)?;
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
        manifest: desc,
        manifest_digest,
        blobs,
    })
}

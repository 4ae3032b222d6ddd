//! `xbake run`: unpack one platform of a built image and run a command in it, in the
//! same sandbox RUN steps use (emulated when the platform is foreign). For looking at
//! what a build produced: `xbake run oci:out/app:1.0 --platform arm64 -- uname -m`.

use super::image_state::Layer;
use super::progress::Progress;
use super::rootfs::LazyRootfs;
use super::sandboxing::{SandboxRequest, sandbox_spec};
use super::{BuildError, Session};
use crate::image::layout::Layout;
use crate::image::{ImageError, descriptor_digest, parse_json};
use crate::layer::root::RootDir;
use crate::platform::Platform;
use crate::recipe::BaseRef;
use crate::sandbox::{NetworkMode, StepExit};
use oci_spec::image::ImageIndex;
use std::path::{Path, PathBuf};

pub struct RunRequest {
    /// The image: a layout, an archive or a registry reference.
    pub image: BaseRef,
    /// As the user wrote it, for messages.
    pub reference: String,
    /// `-e KEY=VALUE`: after the image's environment, replacing its values.
    pub env: Vec<(String, String)>,
    /// `--user`: instead of the image's user.
    pub user: Option<String>,
    pub platform: Platform,
    /// Replaces the image's CMD (the entrypoint stays), as `docker run IMAGE ARGS…`.
    pub args: Vec<String>,
    pub network: NetworkMode,
    /// `-i`: the command reads this process's stdin.
    pub stdin: bool,
    pub seccomp: crate::sandbox::SeccompMode,
    pub cache_dir: PathBuf,
    pub force_host_binfmt: bool,
    pub progress: Progress,
    pub registry: crate::registry::RegistryOptions,
    /// `--memory`, `--pids-limit`, `--cpus`.
    pub limits: crate::sandbox::limits::Limits,
    /// `--mount`: the command's own mounts, as a RUN step's (build/mounts.rs).
    pub mounts: Vec<super::mounts::MountRequest>,
    /// `--secret`, for `type=secret` mounts.
    pub secrets: super::secrets::Secrets,
}

/// The platforms an `oci:DIR[:TAG]` image offers, in index order.
pub fn image_platforms(dir: &Path, tag: Option<&str>) -> Result<Vec<Platform>, ImageError> {
    let layout = Layout::open(dir)?;
    let top = layout.resolve(tag)?;
    if top.media_type().to_string() != "application/vnd.oci.image.index.v1+json" {
        return Ok(Vec::new());
    }
    let index: ImageIndex = parse_json(
        &layout.store().read_bytes(&descriptor_digest(&top)?)?,
        "image index",
    )?;
    Ok(index
        .manifests()
        .iter()
        .filter_map(|d| {
            let p = d.platform().as_ref()?;
            let name = match p.variant() {
                Some(v) => format!("{}/{}/{}", p.os(), p.architecture(), v),
                None => format!("{}/{}", p.os(), p.architecture()),
            };
            name.parse().ok()
        })
        .collect())
}

/// Runs the command; returns how it exited. Must run inside the build namespace.
pub fn run_image(req: &RunRequest) -> Result<StepExit, BuildError> {
    let host = Platform::host();
    let name = req.platform.short_name();
    let session = Session::open(&req.cache_dir, &[req.platform], req.force_host_binfmt)?;
    let (workspace, activation, cache) = (&session.workspace, &session.activation, &session.cache);
    let reference = req.reference.clone();
    let unpack_limit = super::rootfs::unpack_limit(None, &req.cache_dir);
    let base = crate::source::resolve(
        &req.image,
        &reference,
        &req.platform,
        &crate::source::SourceContext {
            cache,
            recipe_dir: None,
            scratch: workspace.path(),
            registry: &req.registry,
            unpack_limit,
        },
    )
    .map_err(|source| BuildError::Source {
        platform: name.clone(),
        source,
    })?;
    for w in &base.warnings {
        req.progress.warn(&name, w);
    }
    let layers: Vec<Layer> = base.layers.clone();
    let mut rootfs = LazyRootfs::new(
        workspace.path().join("rootfs"),
        unpack_limit,
        &session.backend,
    );
    rootfs.materialize(
        &layers,
        cache.store(),
        activation,
        &req.platform,
        &mut |w| req.progress.warn(&name, &w),
    )?;
    let root = RootDir::open(rootfs.path()).map_err(|source| BuildError::Layer {
        platform: name.clone(),
        what: "opening the rootfs".into(),
        source,
    })?;
    let mut state = super::image_state::ImageState::from_base_config(base.config.as_ref());
    for (k, v) in &req.env {
        state.set_env(k, v);
    }
    if let Some(user) = &req.user {
        state.user = Some(user.clone());
    }
    let mut argv = state.entrypoint.clone().unwrap_or_default();
    if req.args.is_empty() {
        argv.extend(state.cmd.clone().unwrap_or_default());
    } else {
        argv.extend(req.args.iter().cloned());
    }
    if argv.is_empty() {
        return Err(BuildError::Command {
            what: reference.clone(),
            message: "the image has no entrypoint or cmd; give a command after --".into(),
        });
    }
    let workdir = state.workdir.clone().unwrap_or_else(|| "/".into());
    let native = req.platform.runs_natively_on(&host);
    let (limits, warnings) = crate::sandbox::limits::for_platform(&req.limits, native, &name);
    for w in warnings {
        req.progress.warn(&name, &w);
    }
    let mut spec = sandbox_spec(SandboxRequest {
        root: &root,
        scratch: workspace.path(),
        platform: &req.platform,
        native,
        activation,
        image_env: &state.env,
        build_env: &[],
        workdir: &workdir,
        user: state.user.as_deref(),
        argv,
        network: req.network,
        stdin_from_caller: req.stdin,
        seccomp: req.seccomp,
        limits,
    })
    .map_err(|message| BuildError::Command {
        what: reference.clone(),
        message,
    })?;
    // The same sequence a RUN step goes through: prepare the mounts (leases, secret
    // files), make their mount points, run, remove the mount points, release.
    let cache_mounts = crate::cache::mounts::CacheMounts::of(cache);
    let mount_failed = |message: String| BuildError::Command {
        what: format!("[{name}] preparing the mounts"),
        message,
    };
    let prepared = super::mounts::prepare(
        &req.mounts,
        &super::mounts::MountEnv {
            cache: &cache_mounts,
            secrets: &req.secrets,
            platform: &req.platform.to_string(),
            scratch: workspace.path(),
            workdir: &workdir,
        },
    )
    .map_err(|e| mount_failed(e.to_string()))?;
    spec.mounts = prepared.mounts.clone();
    let stubs = crate::sandbox::MountStubs::create(&root, &spec.mounts)
        .map_err(|e| mount_failed(e.to_string()))?;
    let mut print = |line: &str| println!("{line}");
    let result =
        crate::sandbox::run_step(&spec, &mut print).map_err(|source| BuildError::Command {
            what: format!("[{name}] running the command"),
            message: source.to_string(),
        })?;
    stubs
        .remove(&root, None)
        .map_err(|e| mount_failed(e.to_string()))?;
    drop(prepared);
    if let Some(hit) = result.limit {
        req.progress.warn(&name, &format!("the command {hit}"));
    }
    Ok(result.exit)
}

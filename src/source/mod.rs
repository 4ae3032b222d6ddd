//! Where a build's base comes from (`from:`): nothing (`scratch`), a root filesystem
//! tarball (`rootfs:FILE`), or an OCI image layout (`oci:DIR[:tag]`). Every source ends
//! up as blobs in the build's store plus, for images, the configuration to inherit.

mod archive;
mod docker_config;
mod oci_layout;
mod registry;
mod rootfs;

pub use docker_config::DockerConfig;

use crate::cache::Cache;
use crate::digest::Digest;
use crate::image::ImageError;
use crate::layer::LayerError;
use crate::platform::Platform;
use crate::recipe::BaseRef;
use oci_spec::image::ImageConfiguration;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("base {reference}: {}: {source}", path.display())]
    Io {
        reference: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("base {reference}: {source}")]
    Image {
        reference: String,
        #[source]
        source: ImageError,
    },
    #[error("base {reference}: {source}")]
    Layer {
        reference: String,
        #[source]
        source: LayerError,
    },
    #[error("base {reference}: {message}")]
    Invalid { reference: String, message: String },
    /// The registry's error names the reference already.
    #[error("base {source}")]
    Registry {
        reference: String,
        #[source]
        source: Box<crate::registry::RegistryError>,
    },
}

fn check_inside(path: &Path, recipe_dir: &Path, reference: &str) -> Result<(), SourceError> {
    if !path.starts_with(recipe_dir) {
        return Ok(()); // an absolute path: the recipe's explicit choice
    }
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| SourceError::Io {
            reference: reference.to_string(),
            path: p,
            source,
        }
    };
    let real = path.canonicalize().map_err(io(path))?;
    let dir = recipe_dir.canonicalize().map_err(io(recipe_dir))?;
    if real.starts_with(&dir) {
        Ok(())
    } else {
        Err(SourceError::Invalid {
            reference: reference.to_string(),
            message: format!(
                "{} leaves the recipe folder (it resolves to {})",
                path.display(),
                real.display()
            ),
        })
    }
}

/// What resolving a base may use.
pub struct SourceContext<'a> {
    /// Blobs go into its store; conversions are remembered in it.
    pub cache: &'a Cache,
    /// For a recipe's base: paths relative to it must stay inside it.
    pub recipe_dir: Option<&'a Path>,
    /// A folder of this build's workspace for unpacking archives.
    pub scratch: &'a Path,
    /// How to reach registries (TLS, insecure ones).
    pub registry: &'a crate::registry::RegistryOptions,
    /// The build's `--max-unpack-size`: what importing a rootfs tarball or staging a
    /// docker-archive may read, counted as unpacking counts it (`layer::unpack::UnpackBudget`).
    pub unpack_limit: u64,
}

/// One layer of the base, already in the store (its diff_id from the base's config,
/// or computed and cached when a rootfs is imported).
pub use crate::image::Layer as BaseLayer;

#[derive(Clone, Debug, Default)]
pub struct BaseImage {
    pub layers: Vec<BaseLayer>,
    /// The configuration to inherit (images only).
    pub config: Option<ImageConfiguration>,
    /// Docker's `Healthcheck` and `Shell` from the same config, inherited like the rest.
    pub docker: DockerConfig,
    /// The base manifest's digest (images only), for audit metadata.
    pub manifest_digest: Option<Digest>,
    /// What reading the base found worth telling (e.g. two manifests for the platform),
    /// for the build's progress output.
    pub warnings: Vec<String>,
}

/// Brings the base for `platform` into the cache's store. With `recipe_dir`, a base path given
/// relative to it (so lexically inside it) must also stay inside after resolving
/// symlinks: `bases -> /` must not let `rootfs:bases/etc/x.tar` read the host.
pub fn resolve(
    base: &BaseRef,
    text: &str,
    platform: &Platform,
    ctx: &SourceContext,
) -> Result<BaseImage, SourceError> {
    let cache = ctx.cache;
    let path = match base {
        BaseRef::Rootfs(p) | BaseRef::DockerArchive(p) => Some(p),
        BaseRef::OciLayout { dir: p, .. } | BaseRef::OciArchive { file: p, .. } => Some(p),
        BaseRef::Scratch | BaseRef::Registry(_) | BaseRef::Stage(_) => None,
    };
    if let (Some(path), Some(dir)) = (path, ctx.recipe_dir) {
        check_inside(path, dir, text)?;
    }
    match base {
        BaseRef::Scratch => Ok(BaseImage::default()),
        BaseRef::Rootfs(path) => Ok(BaseImage {
            layers: vec![rootfs::import(path, text, cache, ctx.unpack_limit)?],
            config: None,
            docker: DockerConfig::default(),
            manifest_digest: None,
            warnings: Vec::new(),
        }),
        BaseRef::OciLayout { dir, tag } => {
            oci_layout::load(dir, tag.as_deref(), text, platform, cache.store())
        }
        BaseRef::OciArchive { file, tag } => {
            archive::oci_archive(file, tag.as_deref(), text, platform, cache, ctx.scratch)
        }
        BaseRef::DockerArchive(file) => {
            archive::docker_archive(file, text, platform, cache, ctx.scratch, ctx.unpack_limit)
        }
        BaseRef::Registry(reference) => registry::pull(reference, platform, cache, ctx.registry),
        // The build graph builds stages; reading one as an image is a caller's mistake.
        BaseRef::Stage(name) => Err(SourceError::Invalid {
            reference: text.to_string(),
            message: format!("{name} is a stage of the recipe, built by the build graph"),
        }),
    }
}

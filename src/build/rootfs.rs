//! A platform's root filesystem, unpacked only when a step actually has to run: a fully
//! cached build never touches it. When it is needed, every layer the image has so far
//! (base layers, then cached step layers) is applied, verified, in order.

use super::BuildError;
use super::image_state::Layer;
use super::sandboxing::prepare_mount_points;
use crate::emulation::Activation;
use crate::image::BlobStore;
use crate::layer::root::RootDir;
use crate::layer::snapshot::{Snapshotter, WalkSnapshotter};
use crate::layer::unpack::{UnpackBudget, apply_blob, default_unpack_limit, free_space};
use crate::platform::Platform;
use std::path::{Path, PathBuf};

pub(crate) struct LazyRootfs {
    path: PathBuf,
    root: Option<RootDir>,
    /// How many of the image's layers are applied to the tree.
    applied: usize,
    /// Whether the tree has been brought up to date at least once.
    prepared: bool,
    snapshotter: WalkSnapshotter,
    /// What unpacking may still write into this tree (`--max-unpack-size`), over all the
    /// layers applied to it. A failure leaves the tree half-written; it lives in the
    /// build's workspace, which is removed whatever happens, and no step is recorded in
    /// the cache, since recording follows a successful step only.
    budget: UnpackBudget,
}

/// The unpack limit of a build: `--max-unpack-size` if given, else the default rule on the
/// free space of the cache's file system (where the workspace and its rootfs live).
pub(crate) fn unpack_limit(requested: Option<u64>, cache_dir: &Path) -> u64 {
    requested.unwrap_or_else(|| default_unpack_limit(free_space(cache_dir).ok()))
}

/// What bringing a tree up to date unpacked, for progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Unpacked {
    pub layers: usize,
    /// Apparent bytes written (what `--max-unpack-size` counts).
    pub bytes: u64,
    /// The tree's first unpacking (its base), rather than catching up on layers that
    /// came from the cache since.
    pub first: bool,
}

impl LazyRootfs {
    pub fn new(path: PathBuf, unpack_limit: u64) -> LazyRootfs {
        LazyRootfs {
            budget: UnpackBudget::new(unpack_limit),
            snapshotter: WalkSnapshotter::new(path.clone()),
            path,
            root: None,
            applied: 0,
            prepared: false,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn snapshotter(&mut self) -> &mut WalkSnapshotter {
        &mut self.snapshotter
    }

    /// Whether the tree was ever unpacked.
    pub fn is_unpacked(&self) -> bool {
        self.prepared
    }

    /// Brings the tree up to `layers`, ready for a step to run in; says what that
    /// unpacked (None: it was up to date).
    pub fn materialize(
        &mut self,
        layers: &[Layer],
        store: &BlobStore,
        activation: &Activation,
        platform: &Platform,
        warn: &mut dyn FnMut(String),
    ) -> Result<Option<Unpacked>, BuildError> {
        let name = platform.short_name();
        let layer_err = |what: String| {
            let name = name.clone();
            move |source| BuildError::Layer {
                platform: name,
                what,
                source,
            }
        };
        let root = match &mut self.root {
            Some(root) => root,
            slot => {
                // The rootfs folder becomes the step's `/`, so it keeps the image's mode;
                // its parent (the stage's or image's scratch folder) is the private one.
                if let Some(parent) = self.path.parent() {
                    crate::cache::private_dir::create_private_dir(parent).map_err(|source| {
                        BuildError::Io {
                            what: format!("[{name}] creating {}", parent.display()),
                            source,
                        }
                    })?;
                }
                std::fs::create_dir_all(&self.path).map_err(|source| BuildError::Io {
                    what: format!("[{name}] creating {}", self.path.display()),
                    source,
                })?;
                slot.insert(
                    RootDir::open(&self.path).map_err(layer_err("opening the rootfs".into()))?,
                )
            }
        };
        if self.applied < layers.len() || !self.prepared {
            let unpacked = Unpacked {
                layers: layers.len().saturating_sub(self.applied),
                bytes: self.budget.used(),
                first: !self.prepared,
            };
            for (i, layer) in layers.iter().enumerate().skip(self.applied) {
                // Bounded by the layer's size: a blob that is not what its descriptor
                // says fails here rather than being read without end.
                let blob =
                    store.open_sized(&layer.digest, layer.size, &format!("layer {}", i + 1))?;
                let (report, _) = apply_blob(
                    root,
                    std::io::BufReader::new(blob),
                    &layer.digest,
                    Some(&layer.diff_id),
                    &mut self.budget,
                )
                .map_err(layer_err(format!(
                    "unpacking layer {} ({})",
                    i + 1,
                    layer.digest
                )))?;
                for w in report.warnings {
                    warn(w);
                }
            }
            self.applied = layers.len();
            self.prepared = true;
            // A layer may have removed a mount point; creating the missing ones is cheap.
            prepare_mount_points(root, activation, platform)
                .map_err(layer_err("creating mount points".into()))?;
            // The tree changed outside a step: the next snapshot starts afresh.
            self.snapshotter.invalidate();
            return Ok(Some(Unpacked {
                bytes: self.budget.used() - unpacked.bytes,
                ..unpacked
            }));
        }
        Ok(None)
    }

    /// A step just added its own layer on top of the tree.
    pub fn record_step_layer(&mut self) {
        self.applied += 1;
    }
}

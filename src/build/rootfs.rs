//! A platform's root filesystem, made only when a step actually has to run: a fully
//! cached build never touches it. When it is needed, every layer the image has so far
//! (base layers, then cached step layers) is there, verified, in order: stacked as an
//! overlay of the layers' snapshots (each unpacked once per machine), or, with the walk
//! backend, applied one by one onto the stage's own folder (build/snapshots.rs).

use super::BuildError;
use super::image_state::Layer;
use super::sandboxing::prepare_mount_points;
use super::snapshots::Backend;
use crate::cache::snapshots::{SnapshotInfo, SnapshotStore};
use crate::digest::Digest;
use crate::emulation::Activation;
use crate::image::BlobStore;
use crate::layer::LayerError;
use crate::layer::overlay_snapshot::OverlaySnapshotter;
use crate::layer::root::RootDir;
use crate::layer::snapshot::{Snapshotter, WalkSnapshotter};
use crate::layer::unpack::{UnpackBudget, apply_blob, default_unpack_limit, free_space};
use crate::platform::Platform;
use crate::sandbox::overlay::{self, OverlayDirs};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub(crate) struct LazyRootfs {
    path: PathBuf,
    root: Option<RootDir>,
    /// How many of the image's layers are applied to the tree (the walk backend).
    applied: usize,
    /// Whether the tree has been brought up to date at least once.
    prepared: bool,
    tree: Tree,
    /// What unpacking may still write into this tree (`--max-unpack-size`), over all the
    /// layers applied to it. A failure leaves the tree half-written; it lives in the
    /// build's workspace, which is removed whatever happens, and no step is recorded in
    /// the cache, since recording follows a successful step only.
    budget: UnpackBudget,
}

/// How the tree is made (see build/snapshots.rs).
enum Tree {
    /// One folder every layer is unpacked into.
    Walk(WalkSnapshotter),
    Overlay(OverlayTree),
}

/// An overlay of the chain's snapshots, with the step's writes in `upper`.
struct OverlayTree {
    store: Arc<SnapshotStore>,
    /// The mount point (the rootfs path).
    target: PathBuf,
    /// The scratch folder of the mounts: upper, work, the lower view, new snapshots.
    dir: PathBuf,
    /// The chain mounted now (Some(None): the empty chain); None: nothing is mounted.
    mounted: Option<Option<Digest>>,
    /// Reads the mounted overlay's upper folder.
    snapshotter: OverlaySnapshotter,
    /// Whether the read-only view of the lower stack is mounted (two layers or more).
    lower_view_mounted: bool,
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
    /// Layers found unpacked already in the snapshot store (the overlay backend).
    pub from_store: usize,
    /// The tree's first unpacking (its base), rather than catching up on layers that
    /// came from the cache since.
    pub first: bool,
}

impl LazyRootfs {
    pub fn new(path: PathBuf, unpack_limit: u64, backend: &Backend) -> LazyRootfs {
        let tree = match backend {
            Backend::Walk { .. } => Tree::Walk(WalkSnapshotter::new(path.clone())),
            Backend::Overlay(store) => {
                let dir = path.with_file_name(format!(
                    "{}-overlay",
                    path.file_name()
                        .and_then(|n| n.to_str())
                        .unwrap_or("rootfs")
                ));
                Tree::Overlay(OverlayTree {
                    store: store.clone(),
                    target: path.clone(),
                    snapshotter: OverlaySnapshotter::new(dir.join("upper"), dir.join("lower")),
                    dir,
                    mounted: None,
                    lower_view_mounted: false,
                })
            }
        };
        LazyRootfs {
            budget: UnpackBudget::new(unpack_limit),
            tree,
            path,
            root: None,
            applied: 0,
            prepared: false,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn snapshotter(&mut self) -> &mut dyn Snapshotter {
        match &mut self.tree {
            Tree::Walk(walk) => walk,
            Tree::Overlay(overlay) => &mut overlay.snapshotter,
        }
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
        if self.root.is_none() {
            // The rootfs folder becomes the step's `/`, so it keeps the image's mode;
            // its parent (the stage's or image's scratch folder) is the private one.
            if let Some(parent) = self.path.parent() {
                crate::cache::private_dir::create_private_dir(parent)
                    .map_err(io_err(&name, parent))?;
            }
            std::fs::create_dir_all(&self.path).map_err(io_err(&name, &self.path))?;
        }
        let unpacked = match &mut self.tree {
            Tree::Walk(_) => self.catch_up_walk(layers, store, warn, &name)?,
            Tree::Overlay(overlay) => {
                let unpacked = overlay.mount_chain(
                    layers,
                    store,
                    &mut self.budget,
                    warn,
                    &name,
                    !self.prepared,
                )?;
                if unpacked.is_some() {
                    // Opened again: the descriptor must name the new mount.
                    self.root = Some(
                        RootDir::open(&self.path)
                            .map_err(layer_err(&name, "opening the rootfs".into()))?,
                    );
                }
                unpacked
            }
        };
        let Some(unpacked) = unpacked else {
            return Ok(None);
        };
        self.prepared = true;
        let root = self.open_root(&name)?;
        // A layer may have removed a mount point; creating the missing ones is cheap.
        prepare_mount_points(root, activation, platform)
            .map_err(layer_err(&name, "creating mount points".into()))?;
        // The tree changed outside a step: the next snapshot starts afresh.
        self.snapshotter().invalidate();
        Ok(Some(unpacked))
    }

    fn open_root(&mut self, name: &str) -> Result<&RootDir, BuildError> {
        match &mut self.root {
            Some(root) => Ok(root),
            slot => Ok(slot.insert(
                RootDir::open(&self.path).map_err(layer_err(name, "opening the rootfs".into()))?,
            )),
        }
    }

    /// The walk backend: applies the layers the folder does not have yet onto it.
    fn catch_up_walk(
        &mut self,
        layers: &[Layer],
        store: &BlobStore,
        warn: &mut dyn FnMut(String),
        name: &str,
    ) -> Result<Option<Unpacked>, BuildError> {
        if self.applied >= layers.len() && self.prepared {
            return Ok(None);
        }
        let before = self.budget.used();
        let count = layers.len().saturating_sub(self.applied);
        let skip = self.applied;
        let first = !self.prepared;
        let mut budget = std::mem::replace(&mut self.budget, UnpackBudget::new(0));
        let root = self.open_root(name)?;
        let applied = apply_layers(root, layers, skip, store, &mut budget, warn, name);
        self.budget = budget;
        applied?;
        self.applied = layers.len();
        Ok(Some(Unpacked {
            layers: count,
            bytes: self.budget.used() - before,
            from_store: 0,
            first,
        }))
    }

    /// A step just added its own layer on top of the tree.
    pub fn record_step_layer(&mut self) {
        // The walk's folder has it now (settled). An overlay is mounted again with the
        // layer's own snapshot at the next step, so that a step always sees what a
        // cached layer would give it.
        self.applied += 1;
    }
}

fn io_err<'a>(name: &'a str, path: &'a Path) -> impl FnOnce(std::io::Error) -> BuildError + 'a {
    move |source| BuildError::Io {
        what: format!("[{name}] creating {}", path.display()),
        source,
    }
}

fn layer_err(name: &str, what: String) -> impl FnOnce(LayerError) -> BuildError + '_ {
    move |source| BuildError::Layer {
        platform: name.to_string(),
        what,
        source,
    }
}

/// Applies `layers[skip..]` onto `root`, verified, in order.
fn apply_layers(
    root: &RootDir,
    layers: &[Layer],
    skip: usize,
    store: &BlobStore,
    budget: &mut UnpackBudget,
    warn: &mut dyn FnMut(String),
    name: &str,
) -> Result<(), BuildError> {
    for (i, layer) in layers.iter().enumerate().skip(skip) {
        // Bounded by the layer's size: a blob that is not what its descriptor says
        // fails here rather than being read without end.
        let blob = store.open_sized(&layer.digest, layer.size, &format!("layer {}", i + 1))?;
        let (report, _) = apply_blob(
            root,
            std::io::BufReader::new(blob),
            &layer.digest,
            Some(&layer.diff_id),
            budget,
        )
        .map_err(layer_err(
            name,
            format!("unpacking layer {} ({})", i + 1, layer.digest),
        ))?;
        for w in report.warnings {
            warn(w);
        }
    }
    Ok(())
}

impl OverlayTree {
    /// Mounts the overlay of `layers` on `target` unless it is mounted already, making
    /// the snapshots the store lacks; says what that took.
    #[allow(clippy::too_many_arguments)]
    fn mount_chain(
        &mut self,
        layers: &[Layer],
        store: &BlobStore,
        budget: &mut UnpackBudget,
        warn: &mut dyn FnMut(String),
        name: &str,
        first: bool,
    ) -> Result<Option<Unpacked>, BuildError> {
        let diff_ids: Vec<Digest> = layers.iter().map(|l| l.diff_id.clone()).collect();
        let chains = crate::cache::key::chain_ids(&diff_ids);
        let wanted = chains.last().cloned();
        if self.mounted.as_ref() == Some(&wanted) {
            return Ok(None);
        }
        self.unmount_all();
        crate::cache::private_dir::create_private_dir(&self.dir)
            .map_err(io_err(name, &self.dir))?;
        let before = budget.used();
        let mut made = 0;
        let mut dirs: Vec<PathBuf> = Vec::with_capacity(layers.len());
        for (i, chain) in chains.iter().enumerate() {
            let dir = match self.store.get(chain) {
                Some(dir) => dir,
                None => {
                    made += 1;
                    self.make_snapshot(i, &chains, layers, &dirs, store, budget, warn, name)?
                }
            };
            dirs.push(dir);
        }
        let empty = self.dir.join("empty");
        let (upper, work, view) = (
            self.dir.join("upper"),
            self.dir.join("work"),
            self.dir.join("lower"),
        );
        for d in [&upper, &work] {
            remove_tree(d, name)?;
        }
        for d in [&empty, &upper, &work, &view] {
            std::fs::create_dir_all(d).map_err(io_err(name, d))?;
        }
        let lowers: Vec<&Path> = if dirs.is_empty() {
            vec![empty.as_path()]
        } else {
            dirs.iter().rev().map(PathBuf::as_path).collect()
        };
        // The merged tree's `/` is the upper folder itself: it takes the chain's.
        copy_root_metadata(lowers[0], &upper).map_err(io_err(name, &upper))?;
        let lower_view = if lowers.len() >= 2 {
            overlay::mount_overlay(
                &OverlayDirs {
                    lowers: &lowers,
                    upper: None,
                },
                &view,
            )
            .map_err(overlay_err(name))?;
            self.lower_view_mounted = true;
            view.clone()
        } else {
            lowers[0].to_path_buf()
        };
        overlay::mount_overlay(
            &OverlayDirs {
                lowers: &lowers,
                upper: Some((&upper, &work)),
            },
            &self.target,
        )
        .map_err(overlay_err(name))?;
        self.mounted = Some(wanted);
        self.snapshotter = OverlaySnapshotter::new(upper, lower_view);
        Ok(Some(Unpacked {
            layers: made,
            bytes: budget.used() - before,
            from_store: layers.len() - made,
            first,
        }))
    }

    /// Makes the snapshot of `chains[i]`: the first layer unpacked into an empty
    /// folder, any other applied onto an overlay of the snapshots below it, whose upper
    /// folder (with the parents it copied up) becomes the snapshot.
    #[allow(clippy::too_many_arguments)]
    fn make_snapshot(
        &self,
        i: usize,
        chains: &[Digest],
        layers: &[Layer],
        below: &[PathBuf],
        store: &BlobStore,
        budget: &mut UnpackBudget,
        warn: &mut dyn FnMut(String),
        name: &str,
    ) -> Result<PathBuf, BuildError> {
        let scratch = self.dir.join(format!("new-{i}"));
        remove_tree(&scratch, name)?;
        let tree = scratch.join("tree");
        std::fs::create_dir_all(&tree).map_err(io_err(name, &tree))?;
        if below.is_empty() {
            let root =
                RootDir::open(&tree).map_err(layer_err(name, "opening a snapshot".into()))?;
            apply_layers(&root, &layers[..=i], i, store, budget, warn, name)?;
        } else {
            let (work, merged) = (scratch.join("work"), scratch.join("merged"));
            for d in [&work, &merged] {
                std::fs::create_dir_all(d).map_err(io_err(name, d))?;
            }
            let lowers: Vec<&Path> = below.iter().rev().map(PathBuf::as_path).collect();
            copy_root_metadata(lowers[0], &tree).map_err(io_err(name, &tree))?;
            overlay::mount_overlay(
                &OverlayDirs {
                    lowers: &lowers,
                    upper: Some((&tree, &work)),
                },
                &merged,
            )
            .map_err(overlay_err(name))?;
            let applied = RootDir::open(&merged)
                .map_err(layer_err(name, "opening a snapshot".into()))
                .and_then(|root| apply_layers(&root, &layers[..=i], i, store, budget, warn, name));
            let unmounted = overlay::unmount(&merged);
            applied?;
            unmounted.map_err(|e| BuildError::Io {
                what: format!("[{name}] unmounting {}", merged.display()),
                source: e.into(),
            })?;
        }
        let info = SnapshotInfo {
            blobs: layers[..=i].iter().map(|l| l.digest.clone()).collect(),
        };
        let stored =
            self.store
                .insert(&chains[i], &tree, &info)
                .map_err(|e| BuildError::Command {
                    what: format!("[{name}] storing the snapshot of layer {}", i + 1),
                    message: e.to_string(),
                })?;
        // What is left: the work folder, or a copy another build stored first.
        remove_tree(&scratch, name)?;
        Ok(stored)
    }

    fn unmount_all(&mut self) {
        if self.mounted.take().is_some() {
            let _ = overlay::unmount(&self.target);
        }
        if std::mem::take(&mut self.lower_view_mounted) {
            let _ = overlay::unmount(&self.dir.join("lower"));
        }
    }
}

impl Drop for OverlayTree {
    /// Unmounted before the workspace goes: removing a mounted tree would delete through
    /// it, one whiteout per file. (A killed build's mounts go with its namespace.)
    fn drop(&mut self) {
        self.unmount_all();
    }
}

fn overlay_err(name: &str) -> impl FnOnce(overlay::OverlayError) -> BuildError + '_ {
    move |e| BuildError::Command {
        what: format!("[{name}] {}", e.target),
        message: e.detail,
    }
}

/// Removes a folder of the workspace, if there.
fn remove_tree(path: &Path, name: &str) -> Result<(), BuildError> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(BuildError::Io {
            what: format!("[{name}] removing {}", path.display()),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Gives `to` the mode and owner of `from` (both folders).
fn copy_root_metadata(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::metadata(from)?;
    std::os::unix::fs::chown(to, Some(meta.uid()), Some(meta.gid()))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
}

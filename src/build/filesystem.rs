//! A finished filesystem other steps can read: a stage's result, or an image a copy
//! step names. Unpacked only when a step really reads it (a fully cached build never
//! does), once, and never changed afterwards.

use super::BuildError;
use super::image_state::Layer;
use super::rootfs::{LazyRootfs, Unpacked};
use crate::cache::key::chain_id;
use crate::digest::Digest;
use crate::emulation::Activation;
use crate::image::BlobStore;
use crate::layer::root::RootDir;
use crate::platform::Platform;
use std::path::PathBuf;
use std::sync::Mutex;

pub(crate) struct Filesystem {
    /// What it is, for errors: `stage build@amd64`, `image oci:…`.
    pub name: String,
    pub platform: Platform,
    pub layers: Vec<Layer>,
    rootfs: Mutex<LazyRootfs>,
}

impl Filesystem {
    /// `rootfs` is the folder it is (or will be) unpacked in; a stage hands over the
    /// one its steps ran in, already up to date when a step ran.
    pub fn new(name: String, platform: Platform, layers: Vec<Layer>, rootfs: LazyRootfs) -> Self {
        Filesystem {
            name,
            platform,
            layers,
            rootfs: Mutex::new(rootfs),
        }
    }

    /// What a step that reads it puts in its cache key: the chain of its layers, which
    /// names its content exactly (an empty filesystem has none).
    pub fn chain_id(&self) -> Option<Digest> {
        let diff_ids: Vec<Digest> = self.layers.iter().map(|l| l.diff_id.clone()).collect();
        chain_id(&diff_ids)
    }

    /// The unpacked tree, opened; unpacked now if nothing has needed it yet (and then
    /// what that unpacked, for progress).
    pub fn tree(
        &self,
        store: &BlobStore,
        activation: &Activation,
        warn: &mut dyn FnMut(String),
    ) -> Result<(RootDir, Option<Unpacked>), BuildError> {
        let mut rootfs = self.rootfs.lock().unwrap_or_else(|p| p.into_inner());
        let unpacked = rootfs.materialize(&self.layers, store, activation, &self.platform, warn)?;
        let path: PathBuf = rootfs.path().to_path_buf();
        let tree = RootDir::open(&path).map_err(|source| BuildError::Layer {
            platform: self.platform.short_name(),
            what: format!("opening {}", self.name),
            source,
        })?;
        Ok((tree, unpacked))
    }
}

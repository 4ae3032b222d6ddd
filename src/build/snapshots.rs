//! Where a step's rootfs comes from, chosen once per build: overlay mounts of layers
//! unpacked once per machine (cache/snapshots.rs, layer/overlay_snapshot.rs), or, where
//! the kernel refuses overlay in the build's namespace, one folder per stage that every
//! layer is unpacked into and that the walk snapshotter compares (layer/snapshot.rs).
//! Both give the same layers; `--progress plain` says which one a build uses.
//!
//! `XBAKE_SNAPSHOTTER=walk` forces the walk, `=overlay` makes a refused overlay an error
//! instead of a fallback (for tests that compare the two).

use super::BuildError;
use crate::cache::Cache;
use crate::cache::snapshots::{SnapshotStore, current_id_map};
use std::path::Path;
use std::sync::Arc;

pub const SNAPSHOTTER_ENV: &str = "XBAKE_SNAPSHOTTER";

#[derive(Clone)]
pub(crate) enum Backend {
    /// Why overlay is not used.
    Walk {
        reason: String,
    },
    Overlay(Arc<SnapshotStore>),
}

impl Backend {
    /// Picks the backend for a build whose workspace is `workspace` (probed there).
    pub fn choose(cache: &Cache, workspace: &Path) -> Result<Backend, BuildError> {
        let wanted = std::env::var(SNAPSHOTTER_ENV).unwrap_or_default();
        match wanted.as_str() {
            "walk" => {
                return Ok(Backend::Walk {
                    reason: format!("{SNAPSHOTTER_ENV}=walk"),
                });
            }
            "" | "auto" | "overlay" => {}
            other => {
                return Err(BuildError::Command {
                    what: format!("{SNAPSHOTTER_ENV}={other}"),
                    message: "expected walk, overlay or auto".into(),
                });
            }
        }
        let probe_dir = workspace.join("overlay-probe");
        let probed = crate::sandbox::overlay::probe(&probe_dir);
        let _ = std::fs::remove_dir_all(&probe_dir);
        match probed {
            Ok(()) => {
                let store = SnapshotStore::open(cache.root(), &current_id_map()).map_err(|e| {
                    BuildError::Command {
                        what: "opening the layer snapshots".into(),
                        message: e.to_string(),
                    }
                })?;
                Ok(Backend::Overlay(Arc::new(store)))
            }
            Err(reason) if wanted == "overlay" => Err(BuildError::Command {
                what: format!("{SNAPSHOTTER_ENV}=overlay"),
                message: format!("overlay mounts do not work here: {reason}"),
            }),
            Err(reason) => Ok(Backend::Walk {
                reason: format!("overlay refused: {reason}"),
            }),
        }
    }

    /// The progress line that says how this build's rootfs are made.
    pub fn describe(&self) -> String {
        match self {
            Backend::Walk { reason } => format!(
                "snapshots: walk ({reason}); each stage unpacks its layers into its own folder"
            ),
            Backend::Overlay(store) => format!(
                "snapshots: overlay, each layer unpacked once in {}",
                store.dir().display()
            ),
        }
    }
}

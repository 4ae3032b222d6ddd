//! Layers unpacked once per machine (`CACHE/snapshots/`): for each layer chain a build
//! met, a folder holding what its top layer changes, in overlayfs's own form (0/0
//! whiteouts, `user.overlay.opaque` folders), to stack read-only under a step's rootfs
//! (`build/snapshots.rs`). A folder is keyed by the chain's id (the OCI chain id of its
//! diff_ids), not by its layer alone: the folder also holds the parent folders a layer
//! does not list, copied up with the metadata its chain gives them.
//!
//! Kill -9 safe and shared by concurrent builds: a snapshot is made in the build's
//! workspace and renamed into place whole, after its record (`<chain>.json`); the first
//! rename wins and the other build throws its copy away. A snapshot lives as long as the
//! blobs of its chain are in the store: `cache prune` removes the others (it runs under
//! the cache's exclusive lock, so never while a build stacks them).
//!
//! The folders below depend on how the build's user namespace maps ids (the files are
//! owned by the mapped ids), so each id map has its own set.

use super::{CacheError, io};
use crate::digest::Digest;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const SNAPSHOTS_DIR: &str = "snapshots";

/// A snapshot's record: the blobs of its chain, bottom first (what keeps it alive).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    pub blobs: Vec<Digest>,
}

pub struct SnapshotStore {
    dir: PathBuf,
}

impl SnapshotStore {
    /// The snapshots of the cache at `cache_root` made under the id map `id_map`.
    pub fn open(cache_root: &Path, id_map: &str) -> Result<SnapshotStore, CacheError> {
        let top = cache_root.join(SNAPSHOTS_DIR);
        super::private_dir::create_private_dir(&top).map_err(io(&top))?;
        let dir = top.join(id_map_key(id_map));
        super::private_dir::create_private_dir(&dir).map_err(io(&dir))?;
        Ok(SnapshotStore { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn folder(&self, chain: &Digest) -> PathBuf {
        self.dir.join(chain.hex())
    }

    fn record(&self, chain: &Digest) -> PathBuf {
        self.dir.join(format!("{}.json", chain.hex()))
    }

    /// The snapshot of `chain`, if one was made.
    pub fn get(&self, chain: &Digest) -> Option<PathBuf> {
        let folder = self.folder(chain);
        (folder.is_dir() && self.record(chain).is_file()).then_some(folder)
    }

    /// Moves the finished folder `tree` (on the cache's file system) into the store as
    /// the snapshot of `chain`. If another build stored one first, that one is kept and
    /// `tree` is left where it is for the caller's cleanup.
    pub fn insert(
        &self,
        chain: &Digest,
        tree: &Path,
        info: &SnapshotInfo,
    ) -> Result<PathBuf, CacheError> {
        let record = self.record(chain);
        let text = serde_json::to_vec(info).map_err(|e| io(&record)(std::io::Error::other(e)))?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&self.dir)
            .map_err(io(&self.dir))?;
        std::io::Write::write_all(&mut tmp, &text).map_err(io(&record))?;
        tmp.as_file().sync_all().map_err(io(&record))?;
        tmp.persist(&record).map_err(|e| io(&record)(e.error))?;
        let folder = self.folder(chain);
        match nix::fcntl::renameat2(
            nix::fcntl::AT_FDCWD,
            tree,
            nix::fcntl::AT_FDCWD,
            &folder,
            nix::fcntl::RenameFlags::RENAME_NOREPLACE,
        ) {
            Ok(()) => Ok(folder),
            Err(nix::errno::Errno::EEXIST) => Ok(folder),
            Err(e) => Err(io(&folder)(e.into())),
        }
    }
}

/// A short name for an id map (the text of /proc/self/uid_map and gid_map).
pub fn id_map_key(id_map: &str) -> String {
    let normal: Vec<&str> = id_map.split_whitespace().collect();
    Digest::of(normal.join(" ").as_bytes()).hex()[..16].to_string()
}

/// This process's id maps, as [`SnapshotStore::open`] keys them.
pub fn current_id_map() -> String {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    format!(
        "uid {} gid {}",
        read("/proc/self/uid_map"),
        read("/proc/self/gid_map")
    )
}

/// What pruning snapshots removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SnapshotsPruned {
    pub removed: usize,
}

/// Removes every snapshot one of whose chain's blobs is no longer stored (`blob_kept`),
/// records without their folder, and what interrupted writes left. Runs in the build
/// namespace (the files are owned by its ids), under the cache's exclusive lock.
pub fn prune(
    cache_root: &Path,
    blob_kept: &dyn Fn(&Digest) -> bool,
) -> Result<SnapshotsPruned, CacheError> {
    let mut report = SnapshotsPruned::default();
    let top = cache_root.join(SNAPSHOTS_DIR);
    let Ok(maps) = std::fs::read_dir(&top) else {
        return Ok(report);
    };
    for map in maps.flatten() {
        let dir = map.path();
        if !dir.is_dir() {
            remove(&dir)?;
            continue;
        }
        for entry in std::fs::read_dir(&dir).map_err(io(&dir))?.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let hex = name.strip_suffix(".json").unwrap_or(&name);
            let chain = format!("sha256:{hex}").parse::<Digest>().ok();
            let keep = chain.is_some_and(|_| {
                let record = dir.join(format!("{hex}.json"));
                let folder = dir.join(hex);
                let info = std::fs::read(&record)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<SnapshotInfo>(&b).ok());
                folder.is_dir() && info.is_some_and(|i| i.blobs.iter().all(blob_kept))
            });
            if !keep {
                if path.is_dir() {
                    report.removed += 1;
                }
                remove(&path)?;
            }
        }
    }
    Ok(report)
}

fn remove(path: &Path) -> Result<(), CacheError> {
    let result = match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) => Err(e),
    };
    match result {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(path)(e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: u8) -> Digest {
        Digest::of(&[n])
    }

    #[test]
    fn the_first_stored_snapshot_wins_and_prune_follows_the_blobs() {
        let cache = tempfile::tempdir().unwrap();
        let store = SnapshotStore::open(cache.path(), "0 1000 1").unwrap();
        let chain = digest(1);
        assert_eq!(store.get(&chain), None);
        let info = SnapshotInfo {
            blobs: vec![digest(10), digest(11)],
        };
        let work = tempfile::tempdir_in(cache.path()).unwrap();
        let first = work.path().join("first");
        std::fs::create_dir(&first).unwrap();
        std::fs::write(first.join("f"), "first").unwrap();
        let stored = store.insert(&chain, &first, &info).unwrap();
        assert_eq!(store.get(&chain).as_deref(), Some(stored.as_path()));
        // A second build that made the same snapshot keeps the first one.
        let second = work.path().join("second");
        std::fs::create_dir(&second).unwrap();
        std::fs::write(second.join("f"), "second").unwrap();
        store.insert(&chain, &second, &info).unwrap();
        assert_eq!(std::fs::read_to_string(stored.join("f")).unwrap(), "first");
        assert!(
            second.is_dir(),
            "the loser's copy is the caller's to remove"
        );

        // An interrupted write and a record without its folder go; a kept chain stays.
        std::fs::write(store.dir().join(".tmp-x"), "").unwrap();
        std::fs::write(store.dir().join(format!("{}.json", digest(2).hex())), "{}").unwrap();
        let kept = |d: &Digest| *d == digest(10) || *d == digest(11);
        assert_eq!(prune(cache.path(), &kept).unwrap().removed, 0);
        let left: Vec<String> = std::fs::read_dir(store.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left.len(), 2, "{left:?}");
        assert!(store.get(&chain).is_some());
        // One blob of the chain gone: the snapshot goes with its record.
        let only_one = |d: &Digest| *d == digest(10);
        assert_eq!(prune(cache.path(), &only_one).unwrap().removed, 1);
        assert_eq!(store.get(&chain), None);
        assert_eq!(std::fs::read_dir(store.dir()).unwrap().count(), 0);
    }

    #[test]
    fn id_maps_name_separate_sets() {
        assert_eq!(id_map_key("0 1000 1\n"), id_map_key(" 0  1000 1"));
        assert_ne!(id_map_key("0 1000 1"), id_map_key("0 100000 65536"));
    }
}

//! The step cache (`$XDG_CACHE_HOME/xbake`): a content store of blobs, plus small
//! records mapping a step's key to the layer it produced. Safe under kill -9 and under
//! concurrent builds: blobs and records are written to temporary names and renamed into
//! place, records only after their blob; a record whose blob is missing or does not
//! verify is dropped and the step runs again. Builds hold a shared lock on the cache,
//! `xbake cache prune` an exclusive one.
//!
//! Checking a blob or an input file does not mean reading it on every build: `trust/`
//! keeps, per blob and per hashed host file (emulators, rootfs tarballs), the digest
//! with the inode's stat, and only a file whose stat changed is hashed again
//! (src/trust.rs).

pub mod key;
pub mod mounts;
pub mod private_dir;
pub mod prune;
pub mod shared;
pub mod snapshots;
pub mod verify;
pub mod workspace;

use crate::digest::Digest;
use crate::image::{BlobStore, ImageError};
use crate::trust::{Check, Records};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Image(#[from] ImageError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What a cached step produced.
pub use crate::image::Layer as CachedLayer;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    /// None: the step changed nothing.
    pub layer: Option<CachedLayer>,
    /// For `xbake cache ls`.
    pub platform: String,
    pub created_by: String,
}

/// Kinds of records, each in its own folder.
#[derive(Clone, Copy, Debug)]
pub enum RecordKind {
    /// Step key → StepRecord.
    Step,
    /// sha256 of a rootfs tarball → its converted layer (CachedLayer).
    Import,
    /// Layer blob digest → diff_id (computing it means decompressing the blob).
    DiffId,
}

impl RecordKind {
    fn folder(self) -> &'static str {
        match self {
            RecordKind::Step => "steps",
            RecordKind::Import => "imports",
            RecordKind::DiffId => "diffids",
        }
    }
}

pub const LOCK_FILE: &str = "lock";
/// Trust records of the store's blobs, by hex digest (src/trust.rs).
pub const BLOB_TRUST_DIR: &str = "trust/blobs";
/// Trust records of host files (emulators, rootfs tarballs), by the sha256 of the path.
pub const FILE_TRUST_DIR: &str = "trust/files";

pub struct Cache {
    root: PathBuf,
    store: BlobStore,
    files: Records,
    _lock: Flock<File>,
}

impl Cache {
    /// Opens the cache at `root` for a build: a shared lock, so builds run together and
    /// `prune` waits for them.
    pub fn open(root: &Path) -> Result<Cache, CacheError> {
        Cache::open_with(root, FlockArg::LockShared)
    }

    pub(crate) fn open_with(root: &Path, mode: FlockArg) -> Result<Cache, CacheError> {
        private_dir::create_private_dir(root).map_err(io(root))?;
        let lock_path = root.join(LOCK_FILE);
        let file = File::options()
            .create(true)
            .append(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        let lock = Flock::lock(file, mode).map_err(|(_, e)| io(&lock_path)(e.into()))?;
        let store = BlobStore::open_trusting(root, &root.join(BLOB_TRUST_DIR))?;
        for kind in [RecordKind::Step, RecordKind::Import, RecordKind::DiffId] {
            let dir = root.join(kind.folder());
            private_dir::create_private_dir(&dir).map_err(io(&dir))?;
        }
        let files_dir = root.join(FILE_TRUST_DIR);
        let files = Records::open(&files_dir).map_err(io(&files_dir))?;
        Ok(Cache {
            root: root.to_path_buf(),
            store,
            files,
            _lock: lock,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn store(&self) -> &BlobStore {
        &self.store
    }

    fn record_path(&self, kind: RecordKind, key: &Digest) -> PathBuf {
        self.root
            .join(kind.folder())
            .join(format!("{}.json", key.hex()))
    }

    /// Reads a record; a missing or unreadable one is simply absent (a torn write from
    /// a killed build cannot exist: records are renamed into place whole; one another
    /// xbake version wrote is left alone and overwritten when the step runs again).
    pub fn get<T: serde::de::DeserializeOwned>(&self, kind: RecordKind, key: &Digest) -> Option<T> {
        let bytes = std::fs::read(self.record_path(kind, key)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Marks a record as just used: its mtime is what `prune` orders by.
    pub fn touch(&self, kind: RecordKind, key: &Digest) {
        let _ = File::options()
            .append(true)
            .open(self.record_path(kind, key))
            .and_then(|f| f.set_modified(std::time::SystemTime::now()));
    }

    /// Writes a record atomically (temporary file, fsync, rename).
    pub fn put<T: Serialize>(
        &self,
        kind: RecordKind,
        key: &Digest,
        value: &T,
    ) -> Result<(), CacheError> {
        let path = self.record_path(kind, key);
        let dir = self.root.join(kind.folder());
        let bytes = serde_json::to_vec(value).map_err(|e| io(&path)(std::io::Error::other(e)))?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&dir)
            .map_err(io(&dir))?;
        tmp.write_all(&bytes).map_err(io(&path))?;
        tmp.as_file().sync_all().map_err(io(&path))?;
        tmp.persist(&path).map_err(|e| io(&path)(e.error))?;
        Ok(())
    }

    /// The record of a step, if its layer blob is present and verifies; a record whose
    /// blob does not is removed.
    pub fn lookup_step(&self, key: &Digest) -> Option<StepRecord> {
        let record: StepRecord = self.get(RecordKind::Step, key)?;
        if let Some(layer) = &record.layer
            && !self.blob_verifies(&layer.digest, layer.size)
        {
            let _ = std::fs::remove_file(self.record_path(RecordKind::Step, key));
            return None;
        }
        self.touch(RecordKind::Step, key);
        Some(record)
    }

    /// Whether the blob exists, has `size` bytes and hashes to `digest`.
    pub fn blob_verifies(&self, digest: &Digest, size: u64) -> bool {
        self.store.verifies(digest, size)
    }

    /// The sha256 and size of the host file at `path` (an emulator, a rootfs tarball),
    /// hashed only when its inode changed since it was last hashed (an upgraded QEMU is
    /// a new inode, or at least a new ctime). Symlinks on the way are followed: the
    /// record is of the file they lead to now.
    pub fn file_digest(&self, path: &Path) -> std::io::Result<(Digest, u64, Check)> {
        let file = File::open(path)?;
        let size = file.metadata()?.len();
        let name = Digest::of(path.as_os_str().as_encoded_bytes());
        let (digest, how) = self.files.digest(name.hex(), &file, None, &file)?;
        Ok((digest, size, how))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(store: &BlobStore, bytes: &[u8]) -> CachedLayer {
        let (digest, size) = store.put_bytes(bytes).unwrap();
        CachedLayer {
            digest,
            size,
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
            diff_id: Digest::of(b"tar"),
        }
    }

    #[test]
    fn records_round_trip_and_a_corrupt_blob_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let key = Digest::of(b"step");
        assert!(cache.lookup_step(&key).is_none());
        let record = StepRecord {
            layer: Some(layer(cache.store(), b"layer bytes")),
            platform: "linux/arm64".into(),
            created_by: "RUN true".into(),
        };
        cache.put(RecordKind::Step, &key, &record).unwrap();
        assert_eq!(cache.lookup_step(&key), Some(record.clone()));
        // Flip the blob's bytes (same size): the record must not be used, and is dropped.
        let blob = cache.store().path(&record.layer.as_ref().unwrap().digest);
        std::fs::write(&blob, b"LAYER BYTES").unwrap();
        assert!(cache.lookup_step(&key).is_none());
        assert!(cache.get::<StepRecord>(RecordKind::Step, &key).is_none());
    }

    #[test]
    fn a_garbled_record_is_absent() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let key = Digest::of(b"k");
        std::fs::write(cache.record_path(RecordKind::Step, &key), b"{\"layer\":").unwrap();
        assert!(cache.lookup_step(&key).is_none());
    }

    #[test]
    fn two_builds_share_a_cache() {
        let dir = tempfile::tempdir().unwrap();
        let a = Cache::open(dir.path()).unwrap();
        let b = Cache::open(dir.path()).unwrap();
        let key = Digest::of(b"shared");
        let rec = StepRecord {
            layer: None,
            platform: "linux/amd64".into(),
            created_by: "RUN true".into(),
        };
        a.put(RecordKind::Step, &key, &rec).unwrap();
        b.put(RecordKind::Step, &key, &rec).unwrap();
        assert_eq!(b.lookup_step(&key), Some(rec));
    }
}

//! `xbake cache verify`: re-hash every blob of the cache, whatever its trust record says
//! (src/trust.rs trusts a stat; bits rotting on a disk leave the stat alone). A damaged
//! blob is removed, so the steps and bases that used it are built or imported again;
//! every intact blob gets a fresh record, and host files (emulators, rootfs tarballs)
//! are hashed again on their next use. The unpacked layer snapshots are dropped, to be
//! made again from the checked blobs.

use super::{BLOB_TRUST_DIR, Cache, CacheError, FILE_TRUST_DIR, io};
use crate::digest::Digest;
use nix::fcntl::FlockArg;
use std::path::Path;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub blobs: u64,
    pub bytes: u64,
    /// Blobs that did not hold their digest (or were not regular files), now removed.
    pub removed: Vec<Digest>,
    /// Unpacked layer snapshots dropped: their files have no digest to check against,
    /// so they are made again from the (now checked) blobs when a build needs them.
    pub snapshots_dropped: usize,
}

/// Re-hashes every blob. Waits for running builds (exclusive lock): a build may be
/// replacing a damaged blob at this very moment, and that one must not be removed.
pub fn verify_all(cache_dir: &Path) -> Result<VerifyReport, CacheError> {
    let cache = Cache::open_with(cache_dir, FlockArg::LockExclusive)?;
    let mut report = VerifyReport::default();
    let files = cache_dir.join(FILE_TRUST_DIR);
    for entry in std::fs::read_dir(&files).map_err(io(&files))?.flatten() {
        let _ = std::fs::remove_file(entry.path());
    }
    let blob_dir = cache_dir.join("blobs/sha256");
    let mut names: Vec<String> = std::fs::read_dir(&blob_dir)
        .map_err(io(&blob_dir))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        let Ok(digest) = format!("sha256:{name}").parse::<Digest>() else {
            continue; // temporary files and foreign names are not blobs
        };
        let path = cache.store().path(&digest);
        let size = std::fs::symlink_metadata(&path).map_or(0, |m| m.len());
        // Without its record the check reads every byte, and records it again.
        let _ = std::fs::remove_file(cache_dir.join(BLOB_TRUST_DIR).join(&name));
        report.blobs += 1;
        if cache.store().check(&digest, size).is_ok() {
            report.bytes += size;
        } else {
            std::fs::remove_file(&path).map_err(io(&path))?;
            report.removed.push(digest);
        }
    }
    report.snapshots_dropped = super::snapshots::prune(cache_dir, &|_| false)?.removed;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{RecordKind, StepRecord};

    #[test]
    fn a_damaged_blob_is_removed_and_its_step_runs_again() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let (good, good_size) = cache.store().put_bytes(b"good layer").unwrap();
        let (bad, bad_size) = cache.store().put_bytes(b"soon rotten").unwrap();
        let key = Digest::of(b"step");
        let record = StepRecord {
            layer: Some(crate::cache::CachedLayer {
                digest: bad.clone(),
                size: bad_size,
                media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
                diff_id: Digest::of(b"tar"),
            }),
            platform: "linux/arm64".into(),
            created_by: "RUN true".into(),
        };
        cache.put(RecordKind::Step, &key, &record).unwrap();
        drop(cache);
        std::fs::write(
            dir.path().join("blobs/sha256").join(bad.hex()),
            b"SOON ROTTEN",
        )
        .unwrap();
        let report = verify_all(dir.path()).unwrap();
        assert_eq!(
            report,
            VerifyReport {
                blobs: 2,
                bytes: good_size,
                removed: vec![bad.clone()],
                snapshots_dropped: 0,
            }
        );
        let cache = Cache::open(dir.path()).unwrap();
        assert!(!cache.store().contains(&bad));
        assert!(cache.store().contains(&good));
        assert!(cache.lookup_step(&key).is_none(), "the step runs again");
    }
}

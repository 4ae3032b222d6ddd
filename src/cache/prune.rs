//! `xbake cache ls` and `xbake cache prune`: what the cache holds, and keeping it under
//! a size by dropping the least recently used steps first.

use super::{Cache, CacheError, CachedLayer, RecordKind, StepRecord, io};
use crate::digest::Digest;
use nix::fcntl::FlockArg;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::SystemTime;

/// One cached step, for `cache ls`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Entry {
    pub key: Digest,
    pub platform: String,
    pub created_by: String,
    pub layer_bytes: u64,
    /// Seconds since the epoch.
    pub last_used: u64,
}

fn records_with_times<T: serde::de::DeserializeOwned>(
    cache: &Cache,
    kind: RecordKind,
) -> Vec<(Digest, T, SystemTime)> {
    let dir = cache.root().join(kind.folder());
    let Ok(read) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in read.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(hex) = name.strip_suffix(".json") else {
            continue;
        };
        let Ok(key) = format!("sha256:{hex}").parse::<Digest>() else {
            continue;
        };
        let Some(value) = cache.get::<T>(kind, &key) else {
            continue;
        };
        let used = entry
            .metadata()
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        out.push((key, value, used));
    }
    out
}

fn seconds(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Every cached step, most recently used first.
pub fn list(cache_dir: &Path) -> Result<Vec<Entry>, CacheError> {
    let cache = Cache::open(cache_dir)?;
    let mut records = records_with_times::<StepRecord>(&cache, RecordKind::Step);
    records.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
    Ok(records
        .into_iter()
        .map(|(key, r, used)| Entry {
            key,
            platform: r.platform,
            created_by: r.created_by,
            layer_bytes: r.layer.map(|l| l.size).unwrap_or(0),
            last_used: seconds(used),
        })
        .collect())
}

/// Bytes of every blob in the cache.
pub fn blob_bytes(cache_dir: &Path) -> u64 {
    std::fs::read_dir(cache_dir.join("blobs/sha256"))
        .map(|r| {
            r.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub steps_removed: usize,
    pub blobs_removed: usize,
    pub bytes_removed: u64,
    pub bytes_kept: u64,
    /// Cache mounts (cache/mounts.rs) removed, and their apparent bytes.
    pub mounts_removed: usize,
    pub mount_bytes_removed: u64,
    /// Unpacked layer chains (cache/snapshots.rs) whose blobs are gone.
    pub snapshots_removed: usize,
}

/// Keeps the most recently used steps whose blobs fit in `keep_bytes`, and removes the
/// rest, unreferenced blobs, interrupted writes and abandoned workspaces; then the cache
/// mounts, most recently used first, within what the budget has left (all of them with
/// the default budget of 0, as `docker builder prune` removes cache mounts too), unless
/// `keep_mounts`. Waits for running builds (exclusive lock).
pub fn prune(
    cache_dir: &Path,
    keep_bytes: u64,
    keep_mounts: bool,
) -> Result<PruneReport, CacheError> {
    let cache = Cache::open_with(cache_dir, FlockArg::LockExclusive)?;
    let mut report = PruneReport::default();
    // No build holds the cache now, so interrupted writes are leftovers; workspaces
    // still locked belong to running `verify`/`inspect`/`run` commands and stay.
    super::workspace::sweep_stale(&cache_dir.join("work"));
    for folder in [
        "blobs/sha256",
        "steps",
        "imports",
        "diffids",
        super::BLOB_TRUST_DIR,
        super::FILE_TRUST_DIR,
    ] {
        let dir = cache_dir.join(folder);
        for entry in std::fs::read_dir(&dir).map_err(io(&dir))?.flatten() {
            if entry.file_name().to_string_lossy().starts_with(".tmp-") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    let mut steps = records_with_times::<StepRecord>(&cache, RecordKind::Step);
    steps.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
    let mut kept_blobs: BTreeSet<Digest> = BTreeSet::new();
    let mut kept_bytes = 0u64;
    for (key, record, _) in steps {
        let extra = record
            .layer
            .as_ref()
            .filter(|l| !kept_blobs.contains(&l.digest))
            .map(|l| l.size)
            .unwrap_or(0);
        if kept_bytes + extra <= keep_bytes {
            kept_bytes += extra;
            if let Some(l) = record.layer {
                kept_blobs.insert(l.digest);
            }
        } else {
            let path = cache.record_path(RecordKind::Step, &key);
            std::fs::remove_file(&path).map_err(io(&path))?;
            report.steps_removed += 1;
        }
    }
    // Converted base layers go with the blob budget too; a dropped one is rebuilt.
    for (key, layer, _) in records_with_times::<CachedLayer>(&cache, RecordKind::Import) {
        if kept_blobs.contains(&layer.digest) || kept_bytes + layer.size <= keep_bytes {
            if kept_blobs.insert(layer.digest.clone()) {
                kept_bytes += layer.size;
            }
        } else {
            let _ = std::fs::remove_file(cache.record_path(RecordKind::Import, &key));
        }
    }
    let blob_dir = cache_dir.join("blobs/sha256");
    for entry in std::fs::read_dir(&blob_dir)
        .map_err(io(&blob_dir))?
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        let keep = format!("sha256:{name}")
            .parse::<Digest>()
            .is_ok_and(|d| kept_blobs.contains(&d));
        if !keep {
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            std::fs::remove_file(entry.path()).map_err(io(&entry.path()))?;
            if let Some(trust) = cache.store().trust() {
                trust.remove(&name);
            }
            report.blobs_removed += 1;
            report.bytes_removed += size;
        }
    }
    // Base layers (rootfs tarballs, layout and archive bases) are known by their
    // diff_id records: keep the most recently used within what the budget has left.
    let mut bases = records_with_times::<Digest>(&cache, RecordKind::DiffId);
    bases.sort_by_key(|b| std::cmp::Reverse(b.2));
    for (key, _, _) in bases {
        let size = std::fs::metadata(cache.store().path(&key))
            .map(|m| m.len())
            .unwrap_or(0);
        if kept_blobs.contains(&key) || (size > 0 && kept_bytes + size <= keep_bytes) {
            if kept_blobs.insert(key.clone()) {
                kept_bytes += size;
            }
        } else {
            let _ = std::fs::remove_file(cache.record_path(RecordKind::DiffId, &key));
        }
    }
    // Unpacked chains live as long as their blobs do.
    report.snapshots_removed =
        super::snapshots::prune(cache_dir, &|d: &Digest| cache.store().path(d).is_file())?.removed;
    report.bytes_kept = blob_bytes(cache_dir);
    if !keep_mounts {
        let left = keep_bytes.saturating_sub(report.bytes_kept);
        let mounts = super::mounts::CacheMounts::of(&cache).prune(left)?;
        report.mounts_removed = mounts.removed;
        report.mount_bytes_removed = mounts.bytes_removed;
    }
    Ok(report)
}

/// `500M`, `2G`, `1024`, `10k` → bytes (powers of 1024).
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let (num, mult) = match t.char_indices().last()? {
        (i, 'k' | 'K') => (&t[..i], 1u64 << 10),
        (i, 'm' | 'M') => (&t[..i], 1 << 20),
        (i, 'g' | 'G') => (&t[..i], 1 << 30),
        (i, 't' | 'T') => (&t[..i], 1 << 40),
        _ => (t, 1),
    };
    num.trim().parse::<u64>().ok()?.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::CachedLayer;

    fn add_step(cache: &Cache, name: &str, bytes: usize, age_secs: u64) -> Digest {
        let (digest, size) = cache
            .store()
            .put_bytes(&vec![name.as_bytes()[0]; bytes])
            .unwrap();
        let key = Digest::of(name.as_bytes());
        let record = StepRecord {
            layer: Some(CachedLayer {
                digest,
                size,
                media_type: "x".into(),
                diff_id: Digest::of(b"d"),
            }),
            platform: "linux/arm64".into(),
            created_by: format!("RUN {name}"),
        };
        cache.put(RecordKind::Step, &key, &record).unwrap();
        let when = SystemTime::now() - std::time::Duration::from_secs(age_secs);
        std::fs::File::options()
            .append(true)
            .open(cache.record_path(RecordKind::Step, &key))
            .unwrap()
            .set_modified(when)
            .unwrap();
        key
    }

    #[test]
    fn prune_keeps_the_most_recently_used_within_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        {
            let cache = Cache::open(dir.path()).unwrap();
            add_step(&cache, "old", 1000, 300);
            add_step(&cache, "mid", 1000, 200);
            add_step(&cache, "new", 1000, 100);
            cache.store().put_bytes(b"orphan").unwrap();
            // Checked, so each blob has a trust record.
            for name in ["old", "mid", "new"] {
                cache.lookup_step(&Digest::of(name.as_bytes())).unwrap();
            }
            std::fs::write(dir.path().join("trust/blobs/.tmp-killed"), "partial").unwrap();
            std::fs::write(dir.path().join("blobs/sha256/.tmp-killed"), "partial").unwrap();
            std::fs::create_dir_all(dir.path().join("work/build-x/rootfs")).unwrap();
            std::fs::write(dir.path().join("work/build-x.lock"), "").unwrap();
        }
        let listed = list(dir.path()).unwrap();
        let names: Vec<&str> = listed.iter().map(|e| e.created_by.as_str()).collect();
        assert_eq!(names, ["RUN new", "RUN mid", "RUN old"]);

        let report = prune(dir.path(), 2500, false).unwrap();
        assert_eq!(report.steps_removed, 1);
        assert_eq!(report.blobs_removed, 2, "the old layer and the orphan");
        assert_eq!(report.bytes_kept, 2000);
        let names: Vec<String> = list(dir.path())
            .unwrap()
            .into_iter()
            .map(|e| e.created_by)
            .collect();
        assert_eq!(names, ["RUN new", "RUN mid"]);
        assert!(
            !dir.path().join("work/build-x").exists(),
            "a stale workspace is swept"
        );
        assert!(!dir.path().join("blobs/sha256/.tmp-killed").exists());
        // Records go with their blobs, and interrupted record writes are swept.
        let records = |dir: &Path| -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(dir.join("trust/blobs"))
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            names.sort();
            names
        };
        let mut blobs: Vec<String> = std::fs::read_dir(dir.path().join("blobs/sha256"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        blobs.sort();
        assert_eq!(records(dir.path()), blobs);
        assert_eq!(blobs.len(), 2);

        let report = prune(dir.path(), 0, false).unwrap();
        assert_eq!(report.steps_removed, 2);
        assert_eq!(report.bytes_kept, 0);
    }

    #[test]
    fn prune_removes_cache_mounts_unless_asked_to_keep_them() {
        let dir = tempfile::tempdir().unwrap();
        let scratch = tempfile::tempdir().unwrap();
        {
            let cache = Cache::open(dir.path()).unwrap();
            add_step(&cache, "step", 100, 10);
            let spec = crate::cache::mounts::CacheMountSpec {
                id: "/root/.cache",
                platform: "linux/amd64",
                sharing: crate::cache::mounts::Sharing::Shared,
                mode: 0o755,
                uid: nix::unistd::getuid().as_raw(),
                gid: nix::unistd::getgid().as_raw(),
            };
            let lease = crate::cache::mounts::CacheMounts::of(&cache)
                .lease(&spec, scratch.path())
                .unwrap();
            std::fs::write(lease.path().join("obj"), vec![1u8; 50]).unwrap();
        }
        let report = prune(dir.path(), 0, true).unwrap();
        assert_eq!((report.steps_removed, report.mounts_removed), (1, 0));
        let mounts_dir = dir.path().join(crate::cache::mounts::MOUNTS_DIR);
        assert_eq!(std::fs::read_dir(&mounts_dir).unwrap().count(), 1);
        // Within a budget, the blobs come first and the mounts get what is left.
        add_step(&Cache::open(dir.path()).unwrap(), "again", 100, 10);
        let report = prune(dir.path(), 120, false).unwrap();
        assert_eq!((report.bytes_kept, report.mounts_removed), (100, 1));
        assert_eq!(report.mount_bytes_removed, 50);
        assert_eq!(std::fs::read_dir(&mounts_dir).unwrap().count(), 0);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1024"), Some(1024));
        assert_eq!(parse_size("10k"), Some(10240));
        assert_eq!(parse_size("500M"), Some(500 << 20));
        assert_eq!(parse_size("2G"), Some(2 << 30));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size(""), None);
    }
}

//! Cache mounts (`type: cache` on a run step, BuildKit's `RUN --mount=type=cache`):
//! persistent folders in the cache directory, one per (id, platform), bound read-write
//! into the steps that name them. Package managers and compilers keep their downloads
//! and objects there from one build to the next. A cache mount is never part of a layer,
//! a blob or a step key; it outlives the build's workspace, and `xbake cache prune`
//! removes it.
//!
//! Layout: `CACHE/mounts/<32 hex digits>/` (a hash of id and platform: the id is user
//! text) holding `info.json` (id and platform, for `cache ls`; its mtime is the last
//! use), `lock` (the sharing lock) and `data/` (what the step sees). Builds use them
//! under the cache's shared lock, `prune` removes them under its exclusive one.

use super::private_dir::create_private_dir;
use super::{Cache, CacheError, io};
use crate::digest::Digest;
use nix::fcntl::{Flock, FlockArg};
use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub const MOUNTS_DIR: &str = "mounts";
const DATA: &str = "data";
const INFO: &str = "info.json";
const LOCK: &str = "lock";

/// How steps that use the same cache mount at the same time share it (BuildKit's
/// `sharing`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sharing {
    /// All of them use it at once (a shared flock).
    #[default]
    Shared,
    /// One at a time: the others wait for it (an exclusive flock).
    Locked,
    /// One at a time: while it is in use, another step gets a fresh, empty folder of
    /// its own, thrown away after that step. (BuildKit keeps such extra instances;
    /// xbake keeps one folder per id and platform.)
    Private,
}

impl Sharing {
    pub fn as_str(self) -> &'static str {
        match self {
            Sharing::Shared => "shared",
            Sharing::Locked => "locked",
            Sharing::Private => "private",
        }
    }
}

impl std::str::FromStr for Sharing {
    type Err = String;

    fn from_str(text: &str) -> Result<Sharing, String> {
        match text.to_ascii_lowercase().as_str() {
            "shared" => Ok(Sharing::Shared),
            "locked" => Ok(Sharing::Locked),
            "private" => Ok(Sharing::Private),
            _ => Err(format!(
                "unknown sharing {text:?}: expected shared, private or locked"
            )),
        }
    }
}

/// Which cache mount a step wants, and how to make it the first time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheMountSpec<'a> {
    pub id: &'a str,
    /// The platform of the step (`linux/arm64`): each platform has its own folder, as
    /// compilers' and package managers' caches are rarely portable between CPUs.
    pub platform: &'a str,
    pub sharing: Sharing,
    /// Mode, owner and group of the folder when it is created (BuildKit: 0755, 0, 0);
    /// ids as the step sees them. Later uses leave it as the steps made it.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// The cache mounts of one cache folder.
#[derive(Debug)]
pub struct CacheMounts {
    dir: PathBuf,
}

/// A cache mount in use by one step: bind [`CacheLease::path`] at the target, and drop
/// the lease after the step.
#[derive(Debug)]
pub struct CacheLease {
    path: PathBuf,
    _lock: Option<Flock<File>>,
    /// A private mount's stand-in while the real one is busy; removed on drop.
    _throwaway: Option<tempfile::TempDir>,
}

impl CacheLease {
    /// The folder to bind.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True when this is a private mount's fresh stand-in (the real one was busy).
    pub fn is_throwaway(&self) -> bool {
        self._throwaway.is_some()
    }
}

/// One cache mount, for `xbake cache ls`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MountEntry {
    pub id: String,
    pub platform: String,
    /// Apparent bytes of the regular files in it.
    pub bytes: u64,
    /// Seconds since the epoch.
    pub last_used: u64,
    #[serde(skip)]
    pub dir: PathBuf,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Info {
    id: String,
    platform: String,
}

impl CacheMounts {
    /// The cache mounts of `cache`; use them only while `cache` (its lock) is held.
    pub fn of(cache: &Cache) -> CacheMounts {
        CacheMounts {
            dir: cache.root().join(MOUNTS_DIR),
        }
    }

    /// The folder of a cache mount (whether or not it exists yet).
    pub fn folder(&self, id: &str, platform: &str) -> PathBuf {
        let mut key = b"xbake cache mount\0".to_vec();
        key.extend_from_slice(id.as_bytes());
        key.push(0);
        key.extend_from_slice(platform.as_bytes());
        self.dir.join(&Digest::of(&key).hex()[..32])
    }

    /// Takes the cache mount `spec` names for one step, creating it the first time;
    /// waits while `sharing` says so. A private mount that is busy gets a fresh folder
    /// in `scratch` (a private folder of the build's workspace) instead.
    pub fn lease(&self, spec: &CacheMountSpec, scratch: &Path) -> Result<CacheLease, CacheError> {
        let dir = self.folder(spec.id, spec.platform);
        create_private_dir(&dir).map_err(io(&dir))?;
        self.write_info(&dir, spec)?;
        let lock_path = dir.join(LOCK);
        let file = File::options()
            .create(true)
            .append(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        let mode = match spec.sharing {
            Sharing::Shared => FlockArg::LockShared,
            Sharing::Locked => FlockArg::LockExclusive,
            Sharing::Private => FlockArg::LockExclusiveNonblock,
        };
        let lock = match Flock::lock(file, mode) {
            Ok(lock) => lock,
            Err((_, nix::errno::Errno::EWOULDBLOCK)) if spec.sharing == Sharing::Private => {
                return throwaway(spec, scratch);
            }
            Err((_, e)) => return Err(io(&lock_path)(e.into())),
        };
        let data = dir.join(DATA);
        if !data.is_dir() {
            create_data(&dir, &data, spec)?;
        }
        Ok(CacheLease {
            path: data,
            _lock: Some(lock),
            _throwaway: None,
        })
    }

    /// Records id and platform (the folder name is a hash of them) and marks the mount
    /// as just used: the mtime of `info.json` is what `cache ls` and `prune` order by.
    fn write_info(&self, dir: &Path, spec: &CacheMountSpec) -> Result<(), CacheError> {
        let path = dir.join(INFO);
        if !path.is_file() {
            let info = Info {
                id: spec.id.to_string(),
                platform: spec.platform.to_string(),
            };
            let bytes = serde_json::to_vec(&info).map_err(|e| io(&path)(e.into()))?;
            let mut tmp = tempfile::Builder::new()
                .prefix(".tmp-")
                .tempfile_in(dir)
                .map_err(io(dir))?;
            std::io::Write::write_all(&mut tmp, &bytes).map_err(io(&path))?;
            tmp.persist(&path).map_err(|e| io(&path)(e.error))?;
        }
        File::options()
            .append(true)
            .open(&path)
            .and_then(|f| f.set_modified(SystemTime::now()))
            .map_err(io(&path))
    }

    /// Every cache mount, most recently used first.
    pub fn list(&self) -> Vec<MountEntry> {
        let Ok(read) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out: Vec<MountEntry> = read
            .flatten()
            .filter_map(|entry| {
                let dir = entry.path();
                let info_path = dir.join(INFO);
                let info: Info = serde_json::from_slice(&std::fs::read(&info_path).ok()?).ok()?;
                let used = std::fs::metadata(&info_path)
                    .and_then(|m| m.modified())
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                Some(MountEntry {
                    id: info.id,
                    platform: info.platform,
                    bytes: apparent_bytes(&dir.join(DATA)),
                    last_used: used
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or(0),
                    dir,
                })
            })
            .collect();
        out.sort_by(|a, b| {
            b.last_used
                .cmp(&a.last_used)
                .then_with(|| (&a.id, &a.platform).cmp(&(&b.id, &b.platform)))
        });
        out
    }

    /// Keeps the most recently used mounts that fit in `keep_bytes` and removes the
    /// rest, with folders that are not a complete mount (an interrupted first use).
    /// Only under the cache's exclusive lock (`prune`): then no step holds a lease.
    pub(crate) fn prune(&self, keep_bytes: u64) -> Result<MountsPruned, CacheError> {
        let mut report = MountsPruned::default();
        let listed = self.list();
        let mut kept = 0u64;
        for entry in &listed {
            if kept + entry.bytes <= keep_bytes {
                kept += entry.bytes;
                // What an interrupted first use left beside the data folder.
                for leftover in std::fs::read_dir(&entry.dir)
                    .map_err(io(&entry.dir))?
                    .flatten()
                {
                    let name = leftover.file_name().to_string_lossy().into_owned();
                    if name.starts_with(".tmp-") {
                        remove(&leftover.path())?;
                    }
                }
                continue;
            }
            remove(&entry.dir)?;
            report.removed += 1;
            report.bytes_removed += entry.bytes;
        }
        let Ok(read) = std::fs::read_dir(&self.dir) else {
            return Ok(report);
        };
        for entry in read.flatten() {
            let dir = entry.path();
            if !listed.iter().any(|m| m.dir == dir) {
                remove(&dir)?;
            }
        }
        Ok(report)
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct MountsPruned {
    pub removed: usize,
    pub bytes_removed: u64,
}

fn remove(path: &Path) -> Result<(), CacheError> {
    let result = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match result {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(path)(e)),
        _ => Ok(()),
    }
}

/// Creates the data folder with the spec's mode and owner, atomically: made under a
/// temporary name and renamed into place, never over one another build made meanwhile.
fn create_data(dir: &Path, data: &Path, spec: &CacheMountSpec) -> Result<(), CacheError> {
    let tmp = tempfile::Builder::new()
        .prefix(".tmp-data-")
        .tempdir_in(dir)
        .map_err(io(dir))?;
    set_owner_and_mode(tmp.path(), spec)?;
    let tmp = tmp.keep();
    match nix::fcntl::renameat2(
        nix::fcntl::AT_FDCWD,
        &tmp,
        nix::fcntl::AT_FDCWD,
        data,
        nix::fcntl::RenameFlags::RENAME_NOREPLACE,
    ) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EEXIST) => {
            let _ = std::fs::remove_dir(&tmp);
            Ok(())
        }
        Err(e) => {
            let _ = std::fs::remove_dir(&tmp);
            Err(io(data)(e.into()))
        }
    }
}

fn set_owner_and_mode(path: &Path, spec: &CacheMountSpec) -> Result<(), CacheError> {
    std::os::unix::fs::chown(path, Some(spec.uid), Some(spec.gid)).map_err(|e| {
        io(path)(std::io::Error::new(
            e.kind(),
            format!(
                "giving cache mount {:?} the owner {}:{}: {e} (rootless builds map ids \
                 other than 0 only with a range in /etc/subuid and /etc/subgid)",
                spec.id, spec.uid, spec.gid
            ),
        ))
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(spec.mode & 0o7777))
        .map_err(io(path))
}

/// A private mount's stand-in: empty, made as the mount would be the first time.
fn throwaway(spec: &CacheMountSpec, scratch: &Path) -> Result<CacheLease, CacheError> {
    let tmp = tempfile::Builder::new()
        .prefix("cache-mount-")
        .tempdir_in(scratch)
        .map_err(io(scratch))?;
    set_owner_and_mode(tmp.path(), spec)?;
    Ok(CacheLease {
        path: tmp.path().to_path_buf(),
        _lock: None,
        _throwaway: Some(tmp),
    })
}

/// Apparent size of the regular files below `dir` (symlinks not followed); folders it
/// cannot read count as empty.
fn apparent_bytes(dir: &Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .follow_links(false)
        .into_iter()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn spec<'a>(id: &'a str, platform: &'a str, sharing: Sharing) -> CacheMountSpec<'a> {
        CacheMountSpec {
            id,
            platform,
            sharing,
            mode: 0o755,
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
        }
    }

    struct Fixture {
        cache_dir: tempfile::TempDir,
        scratch: tempfile::TempDir,
        cache: Cache,
    }

    fn fixture() -> Fixture {
        let cache_dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(cache_dir.path()).unwrap();
        Fixture {
            cache_dir,
            scratch: tempfile::tempdir().unwrap(),
            cache,
        }
    }

    #[test]
    fn a_mount_keeps_its_files_per_id_and_platform() {
        let f = fixture();
        let mounts = CacheMounts::of(&f.cache);
        let go = spec("go-build", "linux/arm64", Sharing::Shared);
        let lease = mounts.lease(&go, f.scratch.path()).unwrap();
        assert!(!lease.is_throwaway());
        assert!(
            lease
                .path()
                .starts_with(f.cache_dir.path().join(MOUNTS_DIR))
        );
        let meta = std::fs::metadata(lease.path()).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o755);
        std::fs::write(lease.path().join("object"), b"12345").unwrap();
        drop(lease);

        let again = mounts.lease(&go, f.scratch.path()).unwrap();
        assert_eq!(
            std::fs::read(again.path().join("object")).unwrap(),
            b"12345"
        );
        let other_platform = mounts
            .lease(
                &spec("go-build", "linux/amd64", Sharing::Shared),
                f.scratch.path(),
            )
            .unwrap();
        assert_ne!(other_platform.path(), again.path());
        assert!(!other_platform.path().join("object").exists());
        drop((again, other_platform));

        let listed = mounts.list();
        let summary: Vec<(&str, &str, u64)> = listed
            .iter()
            .map(|m| (m.id.as_str(), m.platform.as_str(), m.bytes))
            .collect();
        assert!(
            summary.contains(&("go-build", "linux/arm64", 5)),
            "{summary:?}"
        );
        assert!(
            summary.contains(&("go-build", "linux/amd64", 0)),
            "{summary:?}"
        );
        assert!(
            !f.cache_dir
                .path()
                .join("blobs/sha256")
                .read_dir()
                .unwrap()
                .any(|_| true),
            "a cache mount never enters the blob store"
        );
    }

    #[test]
    fn a_first_use_takes_mode_and_a_hashed_folder_name() {
        let f = fixture();
        let mounts = CacheMounts::of(&f.cache);
        let mut odd = spec(
            "../../etc id, with/slashes",
            "linux/arm/v7",
            Sharing::Locked,
        );
        odd.mode = 0o1777;
        let lease = mounts.lease(&odd, f.scratch.path()).unwrap();
        let name = lease.path().parent().unwrap().file_name().unwrap();
        assert_eq!(name.len(), 32);
        assert!(
            name.to_str()
                .unwrap()
                .bytes()
                .all(|b| b.is_ascii_hexdigit())
        );
        assert_eq!(
            std::fs::metadata(lease.path()).unwrap().mode() & 0o7777,
            0o1777
        );
    }

    #[test]
    fn a_busy_private_mount_gives_a_throwaway_and_locked_waits() {
        let f = fixture();
        let mounts = CacheMounts::of(&f.cache);
        let private = spec("apt", "linux/amd64", Sharing::Private);
        let first = mounts.lease(&private, f.scratch.path()).unwrap();
        std::fs::write(first.path().join("kept"), b"x").unwrap();
        let second = mounts.lease(&private, f.scratch.path()).unwrap();
        assert!(second.is_throwaway());
        assert!(second.path().starts_with(f.scratch.path()));
        assert!(
            !second.path().join("kept").exists(),
            "a fresh, empty folder"
        );
        let stand_in = second.path().to_path_buf();
        drop(second);
        assert!(!stand_in.exists(), "the stand-in is removed after the step");

        // A locked user waits until the private one is done.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::scope(|s| {
            s.spawn(|| {
                let locked = spec("apt", "linux/amd64", Sharing::Locked);
                let lease = mounts.lease(&locked, f.scratch.path()).unwrap();
                tx.send(std::fs::read(lease.path().join("kept")).unwrap())
                    .unwrap();
            });
            std::thread::sleep(std::time::Duration::from_millis(200));
            assert!(rx.try_recv().is_err(), "locked must wait for the holder");
            drop(first);
            assert_eq!(
                rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap(),
                b"x"
            );
        });

        // Shared users hold it together.
        let shared = spec("apt", "linux/amd64", Sharing::Shared);
        let a = mounts.lease(&shared, f.scratch.path()).unwrap();
        let b = mounts.lease(&shared, f.scratch.path()).unwrap();
        assert_eq!(a.path(), b.path());
    }

    #[test]
    fn prune_keeps_the_most_recent_within_the_budget() {
        let f = fixture();
        let mounts = CacheMounts::of(&f.cache);
        for (id, bytes) in [("old", 100usize), ("new", 300)] {
            let lease = mounts
                .lease(&spec(id, "linux/amd64", Sharing::Shared), f.scratch.path())
                .unwrap();
            std::fs::write(lease.path().join("f"), vec![0u8; bytes]).unwrap();
            let info = lease.path().parent().unwrap().join(INFO);
            let age = if id == "old" { 300 } else { 10 };
            File::options()
                .append(true)
                .open(info)
                .unwrap()
                .set_modified(SystemTime::now() - std::time::Duration::from_secs(age))
                .unwrap();
        }
        // An interrupted first use: a folder without info.json.
        std::fs::create_dir_all(f.cache_dir.path().join("mounts/deadbeef/.tmp-data-x")).unwrap();
        let names: Vec<String> = mounts.list().into_iter().map(|m| m.id).collect();
        assert_eq!(names, ["new", "old"]);

        let report = mounts.prune(350).unwrap();
        assert_eq!(
            report,
            MountsPruned {
                removed: 1,
                bytes_removed: 100
            }
        );
        let names: Vec<String> = mounts.list().into_iter().map(|m| m.id).collect();
        assert_eq!(names, ["new"]);
        assert!(!f.cache_dir.path().join("mounts/deadbeef").exists());

        assert_eq!(mounts.prune(0).unwrap().removed, 1);
        assert!(mounts.list().is_empty());
    }

    #[test]
    fn sharing_names() {
        for s in [Sharing::Shared, Sharing::Locked, Sharing::Private] {
            assert_eq!(s.as_str().parse::<Sharing>(), Ok(s));
        }
        assert_eq!("LOCKED".parse::<Sharing>(), Ok(Sharing::Locked));
        assert!(
            "exclusive"
                .parse::<Sharing>()
                .unwrap_err()
                .contains("shared")
        );
    }
}

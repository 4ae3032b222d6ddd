//! A build's scratch space under the cache folder: root filesystems, the build's blob
//! store and its binfmt_misc mount point. Held under an exclusive lock for the build's
//! lifetime; a later build removes workspaces whose lock nobody holds (left by a killed
//! build). Removal happens inside the build's user namespace, where files owned by
//! subordinate ids can be deleted.

use super::private_dir::{create_new_private_dir, create_private_dir};
use nix::fcntl::{Flock, FlockArg};
use std::fs::File;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub struct Workspace {
    dir: PathBuf,
    lock_path: PathBuf,
    _lock: Flock<File>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> std::io::Error + '_ {
    move |e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

impl Workspace {
    /// Creates `CACHE/work/build-XXXX/`, locking `build-XXXX.lock` first so a
    /// concurrent sweep never sees the folder unlocked.
    pub fn create(cache_dir: &Path) -> std::io::Result<Workspace> {
        let work = cache_dir.join("work");
        create_private_dir(&work).map_err(io(&work))?;
        sweep_stale(&work);
        let lock_file = tempfile::Builder::new()
            .prefix("build-")
            .suffix(".lock")
            .tempfile_in(&work)
            .map_err(io(&work))?;
        let (file, lock_path) = lock_file.keep().map_err(|e| e.error)?;
        let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| io(&lock_path)(e.into()))?;
        let dir = lock_path.with_extension("");
        create_new_private_dir(&dir).map_err(io(&dir))?;
        Ok(Workspace {
            dir,
            lock_path,
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Workspace {
    /// The lock file goes only with the folder: a folder that could not be removed keeps
    /// its lock file, so a later build's sweep finds and retries it.
    fn drop(&mut self) {
        if std::fs::remove_dir_all(&self.dir).is_ok() || !self.dir.exists() {
            let _ = std::fs::remove_file(&self.lock_path);
        }
    }
}

/// Removes workspaces of builds that are gone (their lock can be taken).
pub fn sweep_stale(work: &Path) {
    let Ok(entries) = std::fs::read_dir(work) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "lock") {
            continue;
        }
        let Ok(file) = File::open(&path) else {
            continue;
        };
        if let Ok(_held) = Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            let dir = path.with_extension("");
            if std::fs::remove_dir_all(&dir).is_ok() || !dir.exists() {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspaces_are_removed_on_drop_and_stale_ones_swept() {
        let cache = tempfile::tempdir().unwrap();
        let ws = Workspace::create(cache.path()).unwrap();
        let dir = ws.path().to_path_buf();
        std::fs::write(dir.join("f"), "x").unwrap();
        // A second, concurrent build must not sweep a live workspace.
        let other = Workspace::create(cache.path()).unwrap();
        assert!(dir.join("f").exists());
        drop(ws);
        assert!(!dir.exists());
        // Simulate a killed build: a lock file and folder nobody holds.
        let stale = cache.path().join("work/build-dead");
        std::fs::create_dir_all(stale.join("rootfs")).unwrap();
        std::fs::write(cache.path().join("work/build-dead.lock"), "").unwrap();
        let third = Workspace::create(cache.path()).unwrap();
        assert!(!stale.exists());
        assert!(other.path().exists());
        drop((other, third));
        let left: Vec<_> = std::fs::read_dir(cache.path().join("work"))
            .unwrap()
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}

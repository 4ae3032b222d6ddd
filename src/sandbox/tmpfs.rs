//! A private tmpfs for bytes that must never reach a disk (a step's secrets): mounted in
//! the build's own mount namespace, which is private (userns.rs), so neither the host
//! nor another build sees it, and gone with the namespace even if xbake is killed.

use super::SandboxError;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub struct PrivateTmpfs {
    path: PathBuf,
}

impl PrivateTmpfs {
    /// Creates the folder `dir` (it must not exist) and mounts a tmpfs of at most `size`
    /// bytes on it: mode 0700, nosuid, nodev, noexec. Only inside the build's namespace:
    /// anywhere else the mount could propagate to the host's tree.
    pub fn mount(dir: &Path, size: u64) -> Result<PrivateTmpfs, SandboxError> {
        if !super::userns::inside_build_namespace() {
            return Err(SandboxError::StepSetup {
                message: format!(
                    "a private tmpfs ({}) can only be mounted inside the build's namespace",
                    dir.display()
                ),
            });
        }
        crate::cache::private_dir::create_new_private_dir(dir).map_err(|source| {
            SandboxError::Io {
                what: "creating the folder of a private tmpfs",
                source,
            }
        })?;
        // Pages are the unit of tmpfs sizes; never 0, which means "no limit" to tmpfs.
        let size = size.div_ceil(4096).max(1) * 4096;
        let options = format!("mode=0700,size={size}");
        if let Err(errno) = mount(
            Some("tmpfs"),
            dir,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some(options.as_str()),
        ) {
            let _ = std::fs::remove_dir(dir);
            return Err(SandboxError::Sys {
                what: "mounting a private tmpfs",
                errno,
            });
        }
        Ok(PrivateTmpfs {
            path: dir.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PrivateTmpfs {
    /// Detached, so a step process still starting up cannot keep it busy; its pages are
    /// freed when the last user is gone.
    fn drop(&mut self) {
        let _ = umount2(&self.path, MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir(&self.path);
    }
}

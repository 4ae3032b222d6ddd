//! Overlay mounts in the build's own mount namespace (unprivileged overlayfs, Linux ≥
//! 5.11): a step's rootfs is its layers' snapshot folders stacked read-only, with the
//! step's writes going to an upper folder (see `build/snapshots.rs`).
//!
//! `userxattr` makes overlayfs keep opaque folders in `user.overlay.opaque` rather than
//! `trusted.*` (which a user namespace cannot set); whiteouts are 0/0 character devices,
//! which the kernel lets anyone create. `redirect_dir=nofollow` and `metacopy=off` keep the
//! upper folder plain: a renamed lower folder is copied (the rename fails with EXDEV
//! and tools copy), never recorded as a redirect that only overlayfs could read.
//!
//! Every folder is handed to the kernel as `/proc/self/fd/N` of a descriptor opened
//! here: the mount options stay short whatever the depth of the cache folder (the
//! options are one page at most), and no folder above the cache is searched by path.

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::stat::Mode;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

/// The folders of one overlay mount; `lowers` top first, as overlayfs lists them.
pub struct OverlayDirs<'a> {
    pub lowers: &'a [&'a Path],
    /// The upper and work folders (same file system); None: a read-only stack.
    pub upper: Option<(&'a Path, &'a Path)>,
}

#[derive(Debug, thiserror::Error)]
#[error("mounting an overlay on {target}: {detail}")]
pub struct OverlayError {
    pub target: String,
    pub detail: String,
}

fn open_dir(path: &Path) -> Result<OwnedFd, Errno> {
    open(
        path,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// The mount options for `dirs`, naming each folder by its descriptor's /proc path.
pub fn options(lowers: &[i32], upper: Option<(i32, i32)>) -> String {
    let fd = |n: i32| format!("/proc/self/fd/{n}");
    let lower: Vec<String> = lowers.iter().map(|&n| fd(n)).collect();
    let mut text = format!(
        "userxattr,redirect_dir=nofollow,metacopy=off,lowerdir={}",
        lower.join(":")
    );
    if let Some((u, w)) = upper {
        text.push_str(&format!(",upperdir={},workdir={}", fd(u), fd(w)));
    }
    text
}

/// Mounts the overlay of `dirs` on `target`. A read-only stack needs two lower folders
/// at least (overlayfs refuses one without an upper).
pub fn mount_overlay(dirs: &OverlayDirs<'_>, target: &Path) -> Result<(), OverlayError> {
    let err = |detail: String| OverlayError {
        target: target.display().to_string(),
        detail,
    };
    let opened = |p: &Path| open_dir(p).map_err(|e| err(format!("opening {}: {e}", p.display())));
    let lowers = dirs
        .lowers
        .iter()
        .map(|p| opened(p))
        .collect::<Result<Vec<_>, _>>()?;
    if lowers.is_empty() || (dirs.upper.is_none() && lowers.len() < 2) {
        return Err(err(
            "an overlay needs a lower folder, two without an upper".into()
        ));
    }
    let upper = match dirs.upper {
        Some((u, w)) => Some((opened(u)?, opened(w)?)),
        None => None,
    };
    let text = options(
        &lowers.iter().map(|f| f.as_raw_fd()).collect::<Vec<_>>(),
        upper.as_ref().map(|(u, w)| (u.as_raw_fd(), w.as_raw_fd())),
    );
    // A step's rootfs behaves as the walk's plain folder does (setuid programs work;
    // the sandbox mounts /dev itself); the read-only view is only ever read by xbake.
    let flags = match upper {
        Some(_) => MsFlags::empty(),
        None => MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
    };
    // The descriptors stay open until mount(2) returns: it resolves the /proc paths.
    mount(
        Some("overlay"),
        target,
        Some("overlay"),
        flags,
        Some(text.as_str()),
    )
    .map_err(|e| err(format!("{e} (options {text})")))
}

/// Detaches the mount on `target` (lazily: a descriptor still open below it, such as a
/// finished step's, does not keep it busy).
pub fn unmount(target: &Path) -> Result<(), Errno> {
    umount2(target, MntFlags::MNT_DETACH)
}

/// Whether overlay mounts work here as the snapshot store needs them: mounted in this
/// namespace with `userxattr`, a removed lower file becomes a 0/0 whiteout in the upper
/// folder and a folder made again over a removed one is marked opaque. `scratch` is an
/// empty folder on the cache's file system; what the probe makes in it is left for the
/// caller to remove. Err says why not (for the fallback's progress line).
pub fn probe(scratch: &Path) -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt;
    use std::os::unix::fs::MetadataExt;
    let io = |what: &str, e: std::io::Error| format!("{what}: {e}");
    let (lower, upper, work, merged) = (
        scratch.join("lower"),
        scratch.join("upper"),
        scratch.join("work"),
        scratch.join("merged"),
    );
    for d in [&lower, &upper, &work, &merged, &lower.join("d")] {
        std::fs::create_dir_all(d).map_err(|e| io("creating the probe's folders", e))?;
    }
    std::fs::write(lower.join("f"), b"f").map_err(|e| io("writing the probe's file", e))?;
    std::fs::write(lower.join("d/g"), b"g").map_err(|e| io("writing the probe's file", e))?;
    mount_overlay(
        &OverlayDirs {
            lowers: &[&lower],
            upper: Some((&upper, &work)),
        },
        &merged,
    )
    .map_err(|e| e.detail)?;
    let checked = (|| {
        std::fs::remove_file(merged.join("f")).map_err(|e| io("removing a lower file", e))?;
        std::fs::remove_dir_all(merged.join("d")).map_err(|e| io("removing a lower folder", e))?;
        std::fs::create_dir(merged.join("d")).map_err(|e| io("making a folder again", e))?;
        let meta = std::fs::symlink_metadata(upper.join("f"))
            .map_err(|e| io("reading the whiteout", e))?;
        if !(meta.file_type().is_char_device() && meta.rdev() == 0) {
            return Err("a removed file left no 0/0 whiteout in the upper folder".to_string());
        }
        match xattr_value(&upper.join("d"), "user.overlay.opaque") {
            Some(v) if v == b"y" => Ok(()),
            _ => Err("a folder made again was not marked opaque (user.overlay.opaque)".into()),
        }
    })();
    let unmounted = unmount(&merged).map_err(|e| format!("unmounting the probe: {e}"));
    checked.and(unmounted)
}

/// The value of extended attribute `name` of `path` (not following a symlink).
pub fn xattr_value(path: &Path, name: &str) -> Option<Vec<u8>> {
    // xattr::get is lgetxattr(2): a symlink's own attributes.
    xattr::get(path, name).ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_name_folders_by_descriptor_top_first() {
        assert_eq!(
            options(&[7, 5], Some((9, 10))),
            "userxattr,redirect_dir=nofollow,metacopy=off,lowerdir=/proc/self/fd/7:/proc/self/fd/5,\
             upperdir=/proc/self/fd/9,workdir=/proc/self/fd/10"
        );
        assert_eq!(
            options(&[3, 4], None),
            "userxattr,redirect_dir=nofollow,metacopy=off,lowerdir=/proc/self/fd/3:/proc/self/fd/4"
        );
    }
}

//! Applying an entry's metadata to a file inside a `RootDir`: owner (or the rootless
//! owner record), xattrs, mode and times, in the order the kernel requires.

use super::error::{LayerError, Warnings};
use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::sys::stat::{self, FchmodatFlags, Mode, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{self, Gid, Uid};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};

/// Where a rootless unpack records the owner a tar header asked for when `chown` is not
/// possible (DESIGN decision 1); `pack` reads it back so the layer keeps the real owner.
pub const OWNER_XATTR: &str = "user.xbake.owner";
/// xbake's own bookkeeping namespace: never taken from a layer, never written into one.
pub const XBAKE_XATTR_PREFIX: &str = "user.xbake.";

/// Metadata of one entry as a tar header describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EntryMeta {
    /// Permission bits including setuid, setgid and sticky (`0o7777`); file-type bits are
    /// ignored.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Modification time, seconds since the epoch; also used as the access time.
    pub mtime: i64,
    pub xattrs: Vec<(String, Vec<u8>)>,
}

/// chown, then xattrs, then chmod, then times. chown clears setuid/setgid bits and
/// security.capability (chown(2), capabilities(7)), so it must come before the other two.
pub(super) fn apply(
    node: &Node<'_>,
    rel: &Path,
    meta: &EntryMeta,
    clear_stale_owner: bool,
) -> Result<Warnings, LayerError> {
    let mut warnings = Warnings::new();
    set_owner(
        node,
        rel,
        meta.uid,
        meta.gid,
        clear_stale_owner,
        &mut warnings,
    )?;
    set_xattrs(node, rel, &meta.xattrs, &mut warnings)?;
    node.chmod(meta.mode)
        .map_err(|e| LayerError::io("chmod", rel, e))?;
    node.set_mtime(meta.mtime)
        .map_err(|e| LayerError::io("set the times of", rel, e))?;
    Ok(warnings)
}

/// What metadata is applied to: an open regular file or directory, or a name in an open
/// parent directory for the kinds of file that must not be opened (symlinks, fifos,
/// device nodes).
pub(super) enum Node<'a> {
    Open(&'a File),
    Named {
        parent: BorrowedFd<'a>,
        name: &'a OsStr,
        symlink: bool,
    },
}

impl Node<'_> {
    fn chown(&self, uid: u32, gid: u32) -> nix::Result<()> {
        let (uid, gid) = (Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)));
        match self {
            Node::Open(file) => unistd::fchown(file, uid, gid),
            Node::Named { parent, name, .. } => {
                unistd::fchownat(parent, *name, uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW)
            }
        }
    }

    pub(super) fn chmod(&self, mode: u32) -> nix::Result<()> {
        let mode = Mode::from_bits_truncate(mode & 0o7777);
        match self {
            Node::Open(file) => stat::fchmod(file, mode),
            // Symlink permissions are meaningless on Linux and cannot be changed.
            Node::Named { symlink: true, .. } => Ok(()),
            // Not a symlink (we created or lstat'ed it through the same parent fd), so
            // following the final component is following nothing.
            Node::Named { parent, name, .. } => {
                stat::fchmodat(parent, *name, mode, FchmodatFlags::FollowSymlink)
            }
        }
    }

    fn set_mtime(&self, mtime: i64) -> nix::Result<()> {
        let time = TimeSpec::new(mtime, 0);
        match self {
            Node::Open(file) => stat::futimens(file, &time, &time),
            Node::Named { parent, name, .. } => {
                stat::utimensat(parent, *name, &time, &time, UtimensatFlags::NoFollowSymlink)
            }
        }
    }

    fn set_xattr(&self, key: &str, value: &[u8]) -> io::Result<()> {
        match self {
            Node::Open(file) => xattr::FileExt::set_xattr(*file, key, value),
            // There is no fd-based xattr call for a file we must not open; lsetxattr on
            // /proc/self/fd/PARENT/NAME pins the parent and does not follow NAME.
            Node::Named { parent, name, .. } => {
                xattr::set(proc_fd_path(*parent, Some(name)), key, value)
            }
        }
    }

    fn remove_xattr(&self, key: &str) -> io::Result<()> {
        match self {
            Node::Open(file) => xattr::FileExt::remove_xattr(*file, key),
            Node::Named { parent, name, .. } => {
                xattr::remove(proc_fd_path(*parent, Some(name)), key)
            }
        }
    }

    fn is_symlink(&self) -> bool {
        matches!(self, Node::Named { symlink: true, .. })
    }
}

/// chown, or, when the id cannot be given (EPERM: no CAP_CHOWN, rootless; EINVAL: the id
/// is not mapped in this user namespace, chown(2)), the `user.xbake.owner` record.
pub(super) fn set_owner(
    node: &Node<'_>,
    rel: &Path,
    uid: u32,
    gid: u32,
    clear_stale_owner: bool,
    warnings: &mut Warnings,
) -> Result<(), LayerError> {
    match node.chown(uid, gid) {
        Ok(()) => {
            if clear_stale_owner && !node.is_symlink() {
                match node.remove_xattr(OWNER_XATTR) {
                    Ok(()) => {}
                    Err(e) if is_no_xattr(&e) || is_xattr_refused(&e) => {}
                    Err(e) => warnings.push(format!(
                        "{}: stale {OWNER_XATTR} not removed: {e}",
                        rel.display()
                    )),
                }
            }
            Ok(())
        }
        Err(Errno::EPERM | Errno::EINVAL) => {
            // user.* xattrs exist only on regular files and directories (xattr(7)); a
            // symlink's owner is not worth a warning per link.
            if node.is_symlink() {
                return Ok(());
            }
            let record = format!("{uid}:{gid}");
            if let Err(e) = node.set_xattr(OWNER_XATTR, record.as_bytes()) {
                warnings.push(format!(
                    "{}: owner {record} neither set nor recorded: {e}",
                    rel.display()
                ));
            }
            Ok(())
        }
        Err(e) => Err(LayerError::io("chown", rel, e)),
    }
}

/// Sets each xattr; those the kernel or filesystem refuses (trusted.* and security.*
/// without privilege, user.* on special files, no xattr support) become warnings.
fn set_xattrs(
    node: &Node<'_>,
    rel: &Path,
    xattrs: &[(String, Vec<u8>)],
    warnings: &mut Warnings,
) -> Result<(), LayerError> {
    for (key, value) in xattrs {
        if key.starts_with(XBAKE_XATTR_PREFIX) {
            // A layer must not be able to forge the owner record of a rootless unpack.
            warnings.push(format!(
                "{}: xattr {key} ignored: {XBAKE_XATTR_PREFIX}* is reserved for xbake",
                rel.display()
            ));
            continue;
        }
        match node.set_xattr(key, value) {
            Ok(()) => {}
            Err(e) if is_xattr_refused(&e) => {
                warnings.push(format!("{}: xattr {key} not set: {e}", rel.display()))
            }
            Err(e) => return Err(LayerError::io("set an xattr on", rel, e)),
        }
    }
    Ok(())
}

fn is_xattr_refused(e: &io::Error) -> bool {
    matches!(
        Errno::from_raw(e.raw_os_error().unwrap_or(0)),
        Errno::EPERM | Errno::EACCES | Errno::EOPNOTSUPP | Errno::ENOENT
    )
}

fn is_no_xattr(e: &io::Error) -> bool {
    e.raw_os_error() == Some(Errno::ENODATA as i32)
}

pub(super) fn read_xattrs(path: &Path, rel: &Path) -> Result<Vec<(OsString, Vec<u8>)>, LayerError> {
    let names = match xattr::list(path) {
        Ok(names) => names,
        Err(e) if e.raw_os_error() == Some(Errno::EOPNOTSUPP as i32) => return Ok(Vec::new()),
        Err(e) => return Err(LayerError::io("list the xattrs of", rel, e)),
    };
    let mut xattrs = Vec::new();
    for key in names {
        // Listed but gone (or unreadable to us, e.g. trusted.* listed to root only) = absent.
        if let Some(value) =
            xattr::get(path, &key).map_err(|e| LayerError::io("read an xattr of", rel, e))?
        {
            xattrs.push((key, value));
        }
    }
    Ok(xattrs)
}

/// `/proc/self/fd/FD[/NAME]`: how to name, for the path-based xattr calls, an entry of an
/// already-resolved directory without resolving its path again.
pub(super) fn proc_fd_path(dir: BorrowedFd<'_>, name: Option<&OsStr>) -> PathBuf {
    let mut path = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    if let Some(name) = name {
        path.push(name);
    }
    path
}

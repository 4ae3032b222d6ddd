//! The executor for [`SetupOp`]s: the only code that mounts inside a step's namespaces.
//!
//! Every mount target comes from an image, so it is opened with openat2(2)
//! `RESOLVE_IN_ROOT` (symlinks resolve as if the rootfs were `/`, never out of it) and
//! the mount is made on the opened file through its `/proc/self/fd/N` magic link, the
//! technique runc adopted after CVE-2021-30465. A plain path would let a symlink in the
//! image redirect a mount onto the host's tree.

use super::plan::SetupOp;
use nix::errno::Errno;
use nix::fcntl::{OFlag, openat};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::stat::Mode;
use nix::sys::statvfs::{FsFlags, fstatvfs};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

/// A failed set-up operation: what was being done, and the kernel's answer.
#[derive(Debug)]
pub struct SetupError {
    pub what: String,
    pub errno: Errno,
}

impl std::fmt::Display for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.what, self.errno.desc())
    }
}

fn fail(what: impl Into<String>) -> impl FnOnce(Errno) -> SetupError {
    let what = what.into();
    move |errno| SetupError { what, errno }
}

fn fd_path(fd: BorrowedFd<'_>) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Opens `rel` inside the root, following symlinks only within it.
fn open_in_root(root: BorrowedFd<'_>, rel: &str, flags: OFlag) -> Result<OwnedFd, Errno> {
    // openat2(2) rejects flags that O_PATH would ignore, so O_NOCTTY only without it.
    let extra = if flags.contains(OFlag::O_PATH) {
        OFlag::empty()
    } else {
        OFlag::O_NOCTTY
    };
    crate::layer::root::open_in_root(root, Path::new(rel), flags | extra)
}

const NONE: Option<&str> = None;

/// The executor's state between ops (and between the two phases, see
/// [`super::plan::split_host_side`]): the rootfs mount and the /dev tmpfs.
#[derive(Default)]
pub struct Mounts {
    root: Option<OwnedFd>,
    dev: Option<OwnedFd>,
}

impl Mounts {
    /// Makes the rootfs mount the working directory. unshare(CLONE_NEWNS) moves the
    /// caller's root and working directory onto the new namespace's copies of their
    /// mounts (copy_mnt_ns in fs/namespace.c), while descriptors keep naming the old
    /// ones; so this is how the rootfs crosses into the step's namespaces.
    pub fn enter_root(&self) -> Result<(), SetupError> {
        nix::unistd::fchdir(need(&self.root)?).map_err(fail("entering the rootfs"))
    }

    /// Runs `ops` in order.
    pub fn execute(&mut self, ops: &[SetupOp]) -> Result<(), SetupError> {
        execute(ops, &mut self.root, &mut self.dev)
    }
}

fn execute(
    ops: &[SetupOp],
    root: &mut Option<OwnedFd>,
    dev: &mut Option<OwnedFd>,
) -> Result<(), SetupError> {
    for op in ops {
        match op {
            SetupOp::OpenRootfs { rootfs } => {
                let fd = nix::fcntl::open(
                    rootfs,
                    OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(fail(format!("opening the rootfs {}", rootfs.display())))?;
                *root = Some(fd);
            }
            SetupOp::MountRootfs => {
                *root = Some(mount_copy_of_cwd().map_err(fail("mounting the rootfs"))?);
                *dev = None;
            }
            SetupOp::Proc { target } => {
                let root = need(root)?;
                let at = open_in_root(root, target, OFlag::O_PATH | OFlag::O_DIRECTORY)
                    .map_err(fail(format!("opening /{target} in the rootfs")))?;
                mount(
                    Some("proc"),
                    &fd_path(at.as_fd()),
                    Some("proc"),
                    MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                    NONE,
                )
                .map_err(fail(format!("mounting proc on /{target}")))?;
            }
            SetupOp::DevTmpfs { target } => {
                let root = need(root)?;
                let at = open_in_root(root, target, OFlag::O_PATH | OFlag::O_DIRECTORY)
                    .map_err(fail(format!("opening /{target} in the rootfs")))?;
                mount(
                    Some("tmpfs"),
                    &fd_path(at.as_fd()),
                    Some("tmpfs"),
                    MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
                    Some("mode=755,size=65536k"),
                )
                .map_err(fail(format!("mounting a tmpfs on /{target}")))?;
                // Re-open: the earlier descriptor still names the directory underneath.
                *dev = Some(
                    open_in_root(root, target, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
                        .map_err(fail(format!("opening the new /{target}")))?,
                );
            }
            SetupOp::DevNode { name } => {
                let dev = need(dev)?;
                let what = format!("binding /dev/{name}");
                let node = openat(
                    dev,
                    *name,
                    OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o666),
                )
                .map_err(fail(what.clone()))?;
                let host = format!("/dev/{name}");
                mount(
                    Some(host.as_str()),
                    &fd_path(node.as_fd()),
                    NONE,
                    MsFlags::MS_BIND,
                    NONE,
                )
                .map_err(fail(what))?;
            }
            SetupOp::Devpts => {
                let dev = need(dev)?;
                let at = mkdir_in(dev, "pts", 0o755)?;
                // No gid= option: gid 5 ("tty") may not be mapped in a rootless build.
                mount(
                    Some("devpts"),
                    &fd_path(at.as_fd()),
                    Some("devpts"),
                    MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
                    Some("newinstance,ptmxmode=0666,mode=0620"),
                )
                .map_err(fail("mounting devpts on /dev/pts"))?;
            }
            SetupOp::Shm => {
                let dev = need(dev)?;
                let at = mkdir_in(dev, "shm", 0o1777)?;
                mount(
                    Some("shm"),
                    &fd_path(at.as_fd()),
                    Some("tmpfs"),
                    MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                    Some("mode=1777,size=65536k"),
                )
                .map_err(fail("mounting a tmpfs on /dev/shm"))?;
            }
            SetupOp::DevSymlink { name, target } => {
                let dev = need(dev)?;
                nix::unistd::symlinkat(*target, dev, *name)
                    .map_err(fail(format!("creating /dev/{name}")))?;
            }
            SetupOp::Sysfs { target } => {
                let root = need(root)?;
                let at = open_in_root(root, target, OFlag::O_PATH | OFlag::O_DIRECTORY)
                    .map_err(fail(format!("opening /{target} in the rootfs")))?;
                mount(
                    Some("sysfs"),
                    &fd_path(at.as_fd()),
                    Some("sysfs"),
                    MsFlags::MS_RDONLY
                        | MsFlags::MS_NOSUID
                        | MsFlags::MS_NODEV
                        | MsFlags::MS_NOEXEC,
                    NONE,
                )
                .map_err(fail(format!("mounting sysfs on /{target}")))?;
            }
            SetupOp::ReadOnlyBindTree { source, target } => {
                let root = need(root)?;
                bind_tree_read_only(root, source, target)?;
            }
            SetupOp::ReadOnlyBindFile { source, target } => {
                let root = need(root)?;
                bind_file_read_only(root, source, target)?;
            }
            SetupOp::ReadOnlyPath { target } => {
                let root = need(root)?;
                read_only_in_place(root, target)?;
            }
            SetupOp::MaskPath { target } => {
                let root = need(root)?;
                mask(root, target)?;
            }
            SetupOp::PivotRoot => {
                let root = need(root)?;
                pivot_into(root)?;
            }
        }
    }
    Ok(())
}

// From linux/mount.h and linux/fcntl.h (not all in the libc crate yet).
const OPEN_TREE_CLONE: libc::c_uint = 1;
const AT_RECURSIVE: libc::c_uint = 0x8000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;

/// open_tree(2) a recursive copy of the working directory's mount tree and
/// move_mount(2) it over the working directory (Linux 5.2); returns the copy's root.
fn mount_copy_of_cwd() -> Result<OwnedFd, Errno> {
    use std::os::fd::FromRawFd;
    let dot = c".";
    // SAFETY: open_tree(2) with a valid NUL-terminated path and constant flags; the
    // result is checked and then owned by the OwnedFd below.
    let tree = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            dot.as_ptr(),
            OPEN_TREE_CLONE | AT_RECURSIVE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    if tree < 0 {
        return Err(Errno::last());
    }
    // SAFETY: a fresh descriptor returned by open_tree(2), owned by nothing else.
    let tree = unsafe { OwnedFd::from_raw_fd(tree as i32) };
    let empty = c"";
    // SAFETY: move_mount(2) with a descriptor we own, valid NUL-terminated paths and
    // constant flags; nothing is read or written through the pointers afterwards.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            dot.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if rc < 0 {
        return Err(Errno::last());
    }
    Ok(tree)
}

fn need(fd: &Option<OwnedFd>) -> Result<BorrowedFd<'_>, SetupError> {
    fd.as_ref().map(|f| f.as_fd()).ok_or(SetupError {
        what: "sandbox plan out of order".into(),
        errno: Errno::EINVAL,
    })
}

fn mkdir_in(dir: BorrowedFd<'_>, name: &str, mode: u32) -> Result<OwnedFd, SetupError> {
    let what = format!("creating /dev/{name}");
    nix::sys::stat::mkdirat(dir, name, Mode::from_bits_truncate(mode))
        .map_err(fail(what.clone()))?;
    // mkdir(2) applies the umask; the sticky /dev/shm needs its exact mode.
    nix::sys::stat::fchmodat(
        dir,
        name,
        Mode::from_bits_truncate(mode),
        nix::sys::stat::FchmodatFlags::FollowSymlink,
    )
    .map_err(fail(what.clone()))?;
    openat(
        dir,
        name,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(fail(what))
}

/// Flags a remount must repeat: in a user namespace the kernel refuses to clear
/// nosuid/nodev/noexec/atime flags inherited from a more privileged mount (they are
/// "locked", see mount_namespaces(7)), so a read-only remount restates them.
fn locked_flags(fd: BorrowedFd<'_>) -> MsFlags {
    let Ok(st) = fstatvfs(fd) else {
        return MsFlags::empty();
    };
    let f = st.flags();
    let mut out = MsFlags::empty();
    for (fs, ms) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if f.contains(fs) {
            out |= ms;
        }
    }
    out
}

fn remount_read_only(path: &Path, fd: BorrowedFd<'_>) -> Result<(), Errno> {
    mount(
        NONE,
        path,
        NONE,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | locked_flags(fd),
        NONE,
    )
}

fn bind_file_read_only(
    root: BorrowedFd<'_>,
    source: &Path,
    target: &str,
) -> Result<(), SetupError> {
    let what = format!("binding {} on /{target}", source.display());
    let at = match open_in_root(root, target, OFlag::O_PATH) {
        Ok(fd) => fd,
        // A symlink pointing to a missing file (e.g. resolv.conf managed by a resolver
        // that the image lacks): leave it as the image has it.
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(fail(what)(e)),
    };
    mount(
        Some(source),
        &fd_path(at.as_fd()),
        NONE,
        MsFlags::MS_BIND,
        NONE,
    )
    .map_err(fail(what.clone()))?;
    let top = open_in_root(root, target, OFlag::O_PATH).map_err(fail(what.clone()))?;
    remount_read_only(&fd_path(top.as_fd()), top.as_fd()).map_err(fail(what))
}

fn bind_tree_read_only(
    root: BorrowedFd<'_>,
    source: &Path,
    target: &str,
) -> Result<(), SetupError> {
    let what = format!("binding {} read-only on /{target}", source.display());
    let at = open_in_root(root, target, OFlag::O_PATH | OFlag::O_DIRECTORY)
        .map_err(fail(what.clone()))?;
    mount(
        Some(source),
        &fd_path(at.as_fd()),
        NONE,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        NONE,
    )
    .map_err(fail(what.clone()))?;
    // The absolute path of the new mount in this mount namespace, to find its submounts.
    let top = std::fs::read_link(fd_path(at.as_fd())).map_err(|_| SetupError {
        what: what.clone(),
        errno: Errno::EIO,
    })?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").map_err(|_| SetupError {
        what: what.clone(),
        errno: Errno::EIO,
    })?;
    for point in mount_points_under(&mountinfo, &top) {
        let fd = match nix::fcntl::open(
            &point,
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::ENOENT | Errno::EACCES) => continue,
            Err(e) => return Err(fail(format!("{what} ({})", point.display()))(e)),
        };
        match remount_read_only(&fd_path(fd.as_fd()), fd.as_fd()) {
            // Mounts the namespace cannot touch (e.g. hidden under another) stay as
            // they are; they are the host's and were read-only to us already.
            Ok(()) | Err(Errno::EPERM | Errno::EACCES | Errno::ENOENT) => {}
            Err(e) => return Err(fail(format!("{what} ({})", point.display()))(e)),
        }
    }
    Ok(())
}

/// Opens a kernel-interface path for masking or protecting it; None when this kernel
/// has no such path (e.g. /proc/acpi off ACPI machines).
fn open_kernel_path(root: BorrowedFd<'_>, target: &str) -> Result<Option<OwnedFd>, SetupError> {
    match open_in_root(root, target, OFlag::O_PATH | OFlag::O_NOFOLLOW) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(fail(format!("opening /{target}"))(e)),
    }
}

fn read_only_in_place(root: BorrowedFd<'_>, target: &str) -> Result<(), SetupError> {
    let what = format!("making /{target} read-only");
    let Some(at) = open_kernel_path(root, target)? else {
        return Ok(());
    };
    let path = fd_path(at.as_fd());
    mount(
        Some(&path),
        &path,
        NONE,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        NONE,
    )
    .map_err(fail(what.clone()))?;
    let top = open_in_root(root, target, OFlag::O_PATH | OFlag::O_NOFOLLOW)
        .map_err(fail(what.clone()))?;
    remount_read_only(&fd_path(top.as_fd()), top.as_fd()).map_err(fail(what))
}

fn mask(root: BorrowedFd<'_>, target: &str) -> Result<(), SetupError> {
    let what = format!("masking /{target}");
    let Some(at) = open_kernel_path(root, target)? else {
        return Ok(());
    };
    let is_dir = nix::sys::stat::fstat(at.as_fd())
        .map(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
        .map_err(fail(what.clone()))?;
    if is_dir {
        mount(
            Some("tmpfs"),
            &fd_path(at.as_fd()),
            Some("tmpfs"),
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some("size=0,mode=555"),
        )
    } else {
        mount(
            Some("/dev/null"),
            &fd_path(at.as_fd()),
            NONE,
            MsFlags::MS_BIND,
            NONE,
        )
    }
    .map_err(fail(what))
}

/// Mount points at or below `top`, parents before children, from mountinfo text
/// (proc_pid_mountinfo(5): field 5 is the mount point, with octal escapes).
pub fn mount_points_under(mountinfo: &str, top: &Path) -> Vec<PathBuf> {
    let mut points: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_octal(p)))
        .filter(|p| p.starts_with(top))
        .collect();
    points.sort_by_key(|p| p.components().count());
    points.dedup();
    points
}

fn unescape_octal(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let digits = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], digits) {
            (b'\\', Some(d)) => {
                let value = d.iter().fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
                out.push(value as u8);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// pivot_root(".", ".") then detach the old root, as runc does (pivot_root(2) notes):
/// no directory for the old root is needed inside the image.
fn pivot_into(root: BorrowedFd<'_>) -> Result<(), SetupError> {
    nix::unistd::fchdir(root).map_err(fail("entering the rootfs"))?;
    nix::unistd::pivot_root(".", ".").map_err(fail("pivot_root into the rootfs"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(fail("detaching the old root"))?;
    nix::unistd::chdir("/").map_err(fail("entering the new root"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_submounts_in_mountinfo_parents_first() {
        let info = "\
22 1 0:21 / /b/root/sys/fs/cgroup rw - cgroup2 cgroup2 rw
21 1 0:20 / /b/root/sys rw - sysfs sysfs rw
23 1 0:22 / /b/root/system rw - tmpfs t rw
24 21 0:23 / /b/root/sys/kernel/a\\040b rw - debugfs d rw
25 1 8:1 / / rw - ext4 /dev/vda rw
";
        let got = mount_points_under(info, Path::new("/b/root/sys"));
        assert_eq!(
            got,
            [
                PathBuf::from("/b/root/sys"),
                PathBuf::from("/b/root/sys/fs/cgroup"),
                PathBuf::from("/b/root/sys/kernel/a b"),
            ]
        );
    }
}

//! The executor for [`SetupOp`]s: the only code that mounts inside a step's namespaces.
//!
//! Every mount target comes from an image, so it is opened with openat2(2)
//! `RESOLVE_IN_ROOT` (symlinks resolve as if the rootfs were `/`, never out of it) and
//! the mount is made on the opened file through its `/proc/self/fd/N` magic link, the
//! technique runc adopted after CVE-2021-30465. A plain path would let a symlink in the
//! image redirect a mount onto the host's tree.

use super::plan::SetupOp;
use super::spec::{MountKind, MountSource, StepMount};
use nix::errno::Errno;
use nix::fcntl::{OFlag, openat};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::stat::Mode;
use nix::sys::statvfs::{FsFlags, fstatvfs};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

/// A failed set-up operation: what was being done, and the kernel's answer (None: the
/// operation was refused before any system call, and `what` says why).
#[derive(Debug)]
pub struct SetupError {
    pub what: String,
    pub errno: Option<Errno>,
}

impl std::fmt::Display for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.errno {
            Some(errno) => write!(f, "{}: {}", self.what, errno.desc()),
            None => f.write_str(&self.what),
        }
    }
}

fn fail(what: impl Into<String>) -> impl FnOnce(Errno) -> SetupError {
    let what = what.into();
    move |errno| SetupError {
        what,
        errno: Some(errno),
    }
}

fn refused(what: impl Into<String>) -> SetupError {
    SetupError {
        what: what.into(),
        errno: None,
    }
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
            SetupOp::RunMount(m) => {
                let root = need(root)?;
                run_mount(root, m)?;
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
    fd.as_ref()
        .map(|f| f.as_fd())
        .ok_or_else(|| refused("sandbox plan out of order"))
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
    read_only_tree(root, Path::new(target), &what)
}

/// Makes the mount now at `rel` in the root, and every mount below it, read-only, as
/// bwrap's --ro-bind does: MS_RDONLY on a recursive bind changes only its top mount.
///
/// Everything is opened relative to the root's descriptor, never by absolute path: the
/// builder may not be allowed to search the folders above the rootfs (a root build's
/// cache under a 0700 `mktemp -d`, whose owner is not mapped into the build namespace),
/// while it can always reach inside the rootfs it holds open.
fn read_only_tree(root: BorrowedFd<'_>, rel: &Path, what: &str) -> Result<(), SetupError> {
    let io_failure = |_| SetupError {
        what: what.to_string(),
        errno: Some(Errno::EIO),
    };
    // Reopened after the mount, so this names the new mount, not the folder under it.
    let top_fd = crate::layer::root::open_in_root(root, rel, OFlag::O_PATH | OFlag::O_CLOEXEC)
        .map_err(fail(what.to_string()))?;
    // Its absolute path in this mount namespace, only to pick its submounts out of
    // mountinfo; each is then opened relative to `top_fd`.
    let top = std::fs::read_link(fd_path(top_fd.as_fd())).map_err(io_failure)?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").map_err(io_failure)?;
    for point in mount_points_under(&mountinfo, &top) {
        let Ok(below) = point.strip_prefix(&top) else {
            continue;
        };
        // The top itself may be a file, which has no "." to open.
        let sub;
        let fd = match below.as_os_str().is_empty() {
            true => top_fd.as_fd(),
            false => match crate::layer::root::open_in_root(
                top_fd.as_fd(),
                below,
                OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            ) {
                Ok(fd) => {
                    sub = fd;
                    sub.as_fd()
                }
                // Hidden under a later mount, or below a folder the builder cannot search:
                // the step, whose namespace maps no more of the host's ids than the
                // builder's, cannot reach it either.
                Err(Errno::ENOENT | Errno::EACCES) => continue,
                Err(e) => return Err(fail(format!("{what} ({})", point.display()))(e)),
            },
        };
        match remount_read_only(&fd_path(fd), fd) {
            // Mounts the namespace cannot touch (e.g. hidden under another) stay as
            // they are; they are the host's and were read-only to us already.
            Ok(()) | Err(Errno::EPERM | Errno::EACCES | Errno::ENOENT) => {}
            Err(e) => return Err(fail(format!("{what} ({})", point.display()))(e)),
        }
    }
    // The top mount is ours: it must have become read-only, whatever its submounts did.
    let flags = fstatvfs(top_fd.as_fd()).map_err(fail(what.to_string()))?;
    if !flags.flags().contains(FsFlags::ST_RDONLY) {
        return Err(refused(format!("{what}: the mount is still writable")));
    }
    Ok(())
}

/// One of the step's own mounts (see [`MountKind`]). Runs host-side, in the step's first
/// mount namespace (see `plan::split_host_side`).
fn run_mount(root: BorrowedFd<'_>, m: &StepMount) -> Result<(), SetupError> {
    let rel = super::spec::target_path(&m.target).map_err(refused)?;
    let target = m.target.as_str();
    match &m.kind {
        MountKind::Bind { source, read_only } => {
            let what = format!(
                "binding {} {} on {target}",
                describe(source),
                if *read_only {
                    "read-only"
                } else {
                    "read-write"
                }
            );
            let src = open_source(source).map_err(fail(what.clone()))?;
            let is_dir = is_directory(src.as_fd()).map_err(fail(what.clone()))?;
            let at = open_run_target(root, &rel, is_dir, &what)?;
            mount(
                Some(&fd_path(src.as_fd())),
                &fd_path(at.as_fd()),
                NONE,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                NONE,
            )
            .map_err(fail(what.clone()))?;
            if *read_only {
                read_only_tree(root, &rel, &what)?;
            }
            Ok(())
        }
        MountKind::Scratch { source, scratch } => {
            let what = format!(
                "mounting {} on {target} with throwaway writes",
                describe(source)
            );
            let src = open_source(source).map_err(fail(what.clone()))?;
            let st = nix::sys::stat::fstat(src.as_fd()).map_err(fail(what.clone()))?;
            let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
            let at = open_run_target(root, &rel, is_dir, &what)?;
            if is_dir {
                overlay_on(src.as_fd(), &st, scratch, at.as_fd(), &what)
            } else {
                // overlayfs stacks folders only: a file is copied and the copy bound.
                let copy = copy_file(src.as_fd(), &st, &scratch.join("file"))
                    .map_err(fail(what.clone()))?;
                mount(
                    Some(&fd_path(copy.as_fd())),
                    &fd_path(at.as_fd()),
                    NONE,
                    MsFlags::MS_BIND,
                    NONE,
                )
                .map_err(fail(what))
            }
        }
        MountKind::Tmpfs { size } => {
            let what = format!("mounting a tmpfs on {target}");
            let at = open_run_target(root, &rel, true, &what)?;
            // size=0 means "no limit" to tmpfs; BuildKit passes a size only when > 0.
            let options = match size {
                Some(bytes) if *bytes > 0 => format!("mode=1777,size={bytes}"),
                _ => "mode=1777".to_string(),
            };
            mount(
                Some("tmpfs"),
                &fd_path(at.as_fd()),
                Some("tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                Some(options.as_str()),
            )
            .map_err(fail(what))
        }
    }
}

fn describe(source: &MountSource) -> String {
    match source {
        MountSource::Host(path) => path.display().to_string(),
        MountSource::InRoot { root, path } => {
            format!(
                "{} (inside {})",
                Path::new("/").join(path).display(),
                root.display()
            )
        }
    }
}

/// Opens a mount's source as an `O_PATH` descriptor; an in-tree path resolves inside its
/// tree (symlinks in another stage's rootfs never reach the host's files).
fn open_source(source: &MountSource) -> Result<OwnedFd, Errno> {
    match source {
        MountSource::Host(path) => {
            nix::fcntl::open(path, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
        }
        MountSource::InRoot { root, path } => {
            let tree = nix::fcntl::open(
                root,
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?;
            crate::layer::root::open_in_root(tree.as_fd(), Path::new(path), OFlag::O_PATH)
        }
    }
}

fn is_directory(fd: BorrowedFd<'_>) -> Result<bool, Errno> {
    nix::sys::stat::fstat(fd).map(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
}

/// Opens the target of a step mount, resolved inside the root, and checks where it
/// really is (symlinks followed) against the reserved folders. A missing target is
/// created only inside an earlier step mount (a tmpfs, a cache folder): one missing in
/// the rootfs itself is the builder's to create before the step and remove after it
/// (stubs.rs), so that it never lands in a layer.
fn open_run_target(
    root: BorrowedFd<'_>,
    rel: &Path,
    is_dir: bool,
    what: &str,
) -> Result<OwnedFd, SetupError> {
    let at = match crate::layer::root::open_in_root(root, rel, OFlag::O_PATH) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => create_inside_step_mount(root, rel, is_dir, what)?,
        Err(e) => return Err(fail(what.to_string())(e)),
    };
    let real = in_root_path(root, at.as_fd()).map_err(fail(what.to_string()))?;
    super::spec::check_target(&real).map_err(|reason| {
        refused(format!(
            "{what}: the target is /{} in the rootfs; {reason}",
            real.display()
        ))
    })?;
    Ok(at)
}

/// Where `fd` is, relative to the root (both as this mount namespace names them).
fn in_root_path(root: BorrowedFd<'_>, fd: BorrowedFd<'_>) -> Result<PathBuf, Errno> {
    let base = std::fs::read_link(fd_path(root)).map_err(|_| Errno::EIO)?;
    let path = std::fs::read_link(fd_path(fd)).map_err(|_| Errno::EIO)?;
    path.strip_prefix(&base)
        .map(Path::to_path_buf)
        .map_err(|_| Errno::EXDEV)
}

fn create_inside_step_mount(
    root: BorrowedFd<'_>,
    rel: &Path,
    is_dir: bool,
    what: &str,
) -> Result<OwnedFd, SetupError> {
    // The deepest ancestor that exists, and the names to create below it.
    let mut missing = Vec::new();
    let mut base = rel.to_path_buf();
    let parent = loop {
        let Some(name) = base.file_name().map(|n| n.to_os_string()) else {
            return Err(refused(format!("{what}: the target does not exist")));
        };
        missing.push(name);
        base.pop();
        match crate::layer::root::open_in_root(root, &base, OFlag::O_PATH | OFlag::O_DIRECTORY) {
            Ok(fd) => break fd,
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(fail(what.to_string())(e)),
        }
    };
    let on_root_mount = mount_id(parent.as_fd()).map_err(fail(what.to_string()))?
        == mount_id(root).map_err(fail(what.to_string()))?;
    if on_root_mount {
        return Err(refused(format!(
            "{what}: /{} does not exist in the rootfs (the builder creates a step's mount \
             points before it runs: sandbox::stubs::MountStubs)",
            rel.display()
        )));
    }
    let mut dir = parent;
    while let Some(name) = missing.pop() {
        let last = missing.is_empty();
        let made = if last && !is_dir {
            openat(
                &dir,
                name.as_os_str(),
                OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o644),
            )
            .map(drop)
        } else {
            nix::sys::stat::mkdirat(&dir, name.as_os_str(), Mode::from_bits_truncate(0o755))
        };
        made.map_err(fail(format!("{what}: creating the mount point")))?;
        dir = openat(
            &dir,
            name.as_os_str(),
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(fail(what.to_string()))?;
    }
    Ok(dir)
}

/// The id of the mount `fd` is on (statx(2) STATX_MNT_ID, Linux 5.8).
fn mount_id(fd: BorrowedFd<'_>) -> Result<u64, Errno> {
    const STATX_MNT_ID: libc::c_uint = 0x1000;
    // SAFETY: an all-zero statx is a valid value of this plain C struct.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: statx(2) on a descriptor we hold, with AT_EMPTY_PATH and an empty
    // NUL-terminated path; it writes only into `st`, which lives across the call.
    let rc = unsafe {
        libc::statx(
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            STATX_MNT_ID,
            &mut st,
        )
    };
    if rc != 0 {
        return Err(Errno::last());
    }
    if st.stx_mask & STATX_MNT_ID == 0 {
        return Err(Errno::ENOSYS);
    }
    Ok(st.stx_mnt_id)
}

/// An overlay at `at` whose lower layer is the folder `lower`: the step sees its files
/// and may change them, and the changes go to `scratch/upper`, which the caller throws
/// away. Unprivileged overlayfs (Linux 5.11) with `userxattr`: the overlay's own
/// metadata is kept in user.overlay.* attributes, which a user namespace may write.
fn overlay_on(
    lower: BorrowedFd<'_>,
    lower_st: &nix::sys::stat::FileStat,
    scratch: &Path,
    at: BorrowedFd<'_>,
    what: &str,
) -> Result<(), SetupError> {
    let dir = |name: &str| -> Result<OwnedFd, SetupError> {
        let path = scratch.join(name);
        nix::unistd::mkdir(&path, Mode::from_bits_truncate(0o700))
            .map_err(fail(format!("{what}: creating {}", path.display())))?;
        nix::fcntl::open(
            &path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(fail(format!("{what}: opening {}", path.display())))
    };
    let upper = dir("upper")?;
    let work = dir("work")?;
    // The overlay's root takes its owner and mode from the upper folder: the lower's.
    let upper_path = fd_path(upper.as_fd());
    let errno = |e: std::io::Error| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
    std::os::unix::fs::chown(&upper_path, Some(lower_st.st_uid), Some(lower_st.st_gid)).map_err(
        |e| {
            fail(format!(
                "{what}: giving the upper folder the source's owner"
            ))(errno(e))
        },
    )?;
    std::fs::set_permissions(
        &upper_path,
        std::os::unix::fs::PermissionsExt::from_mode(lower_st.st_mode & 0o7777),
    )
    .map_err(|e| fail(format!("{what}: giving the upper folder the source's mode"))(errno(e)))?;
    // Descriptor paths keep commas and colons in real paths out of the option string.
    let options = format!(
        "lowerdir={},upperdir={},workdir={},userxattr",
        fd_path(lower).display(),
        upper_path.display(),
        fd_path(work.as_fd()).display()
    );
    mount(
        Some("overlay"),
        &fd_path(at),
        Some("overlay"),
        MsFlags::empty(),
        Some(options.as_str()),
    )
    .map_err(fail(what.to_string()))
}

/// Copies the file `src` to `dest` (a new file) with its mode and owner; returns it
/// opened for binding.
fn copy_file(
    src: BorrowedFd<'_>,
    st: &nix::sys::stat::FileStat,
    dest: &Path,
) -> Result<OwnedFd, Errno> {
    use std::os::unix::fs::OpenOptionsExt;
    let errno = |e: std::io::Error| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
    let mut from = std::fs::File::open(fd_path(src)).map_err(errno)?;
    let mut to = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(dest)
        .map_err(errno)?;
    std::io::copy(&mut from, &mut to).map_err(errno)?;
    nix::unistd::fchown(
        &to,
        Some(nix::unistd::Uid::from_raw(st.st_uid)),
        Some(nix::unistd::Gid::from_raw(st.st_gid)),
    )?;
    nix::sys::stat::fchmod(&to, Mode::from_bits_truncate(st.st_mode & 0o7777))?;
    Ok(OwnedFd::from(to))
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

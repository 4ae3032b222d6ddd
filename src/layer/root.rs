//! `RootDir`: filesystem operations confined to one directory, for paths that come from
//! hostile input (a layer tar, a recipe, a step's output).
//!
//! Every operation resolves the *parent* of its target with
//! `openat2(root, parent, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`: symlinks met on the way
//! are followed as if the root were `/` and can never lead out of it (openat2(2)), and
//! `/proc/self/fd`-style magic links are refused. The final component is then handled with
//! `*at` calls relative to that parent fd and is never followed. This is DESIGN decision 5
//! and the same guarantee umoci gets from `securejoin` (oci/layer/tar_extract.go).

use super::error::{LayerError, Warnings};
use super::metadata::{self, Node, proc_fd_path, read_xattrs, set_owner};
use super::rel_path;
use super::tar_reader::SparseMap;

pub use super::metadata::{EntryMeta, OWNER_XATTR, XBAKE_XATTR_PREFIX};
use nix::errno::Errno;
use nix::fcntl::{self, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{self, FchmodatFlags, FileStat, Mode, SFlag};
use nix::unistd::{self, UnlinkatFlags};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Write buffer for file contents: large enough that copying a big file costs few
/// syscalls, small enough to not matter when platforms unpack side by side.
const COPY_BUFFER: usize = 128 * 1024;

/// openat2 returns EAGAIN under RESOLVE_IN_ROOT when a concurrent rename might have let a
/// ".." walk escape; the man page says to retry.
const OPENAT2_ATTEMPTS: usize = 16;

/// The non-regular, non-directory, non-symlink files `mknod` can create.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpecialFile {
    Fifo,
    CharDevice { major: u64, minor: u64 },
    BlockDevice { major: u64, minor: u64 },
}

/// Opens `rel` below the directory `root` as if `root` were `/` (openat2(2)
/// `RESOLVE_IN_ROOT`): symlinks and `..` resolve inside it, never out; magic links are
/// refused. Shared by [`RootDir`] and the sandbox's mount executor.
pub fn open_in_root(root: BorrowedFd<'_>, rel: &Path, flags: OFlag) -> nix::Result<OwnedFd> {
    let path = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    openat2_retrying(
        root,
        path,
        flags,
        ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS,
    )
}

/// Opens `rel` strictly beneath the directory `dir` without following any symlink on the
/// way, the last component included (openat2(2) `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`,
/// which fails with ELOOP at a symlink and EXDEV at a `..` that leaves `dir`). For files
/// that must be exactly where they are named, such as an image layout's blobs: a blob
/// that is a symlink to /dev/zero or to a file outside the layout is never opened.
pub fn open_beneath(dir: BorrowedFd<'_>, rel: &Path, flags: OFlag) -> nix::Result<OwnedFd> {
    openat2_retrying(
        dir,
        rel,
        flags,
        ResolveFlag::RESOLVE_BENEATH
            | ResolveFlag::RESOLVE_NO_SYMLINKS
            | ResolveFlag::RESOLVE_NO_MAGICLINKS,
    )
}

fn openat2_retrying(
    root: BorrowedFd<'_>,
    path: &Path,
    flags: OFlag,
    resolve: ResolveFlag,
) -> nix::Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(resolve);
    let mut attempts = 1;
    loop {
        match fcntl::openat2(root, path, how) {
            // EAGAIN: a concurrent rename raced the lookup; openat2(2) says to retry.
            Err(Errno::EAGAIN) if attempts < OPENAT2_ATTEMPTS => attempts += 1,
            result => return result,
        }
    }
}

/// An open directory that all operations are confined to.
#[derive(Debug)]
pub struct RootDir {
    fd: OwnedFd,
    path: PathBuf,
}

impl RootDir {
    /// Opens `path`, which must be a directory. `path` itself is trusted (it is ours); only
    /// the paths given to the methods are not.
    pub fn open(path: &Path) -> Result<RootDir, LayerError> {
        let fd = fcntl::open(
            path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| LayerError::io("open root directory", path, e))?;
        Ok(RootDir {
            fd,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `lstat` of `rel` (the final component is not followed); `None` if it does not exist.
    pub fn lstat(&self, rel: &Path) -> Result<Option<FileStat>, LayerError> {
        let rel = rel_path::clean(rel)?;
        if rel.as_os_str().is_empty() {
            return stat::fstat(&self.fd)
                .map(Some)
                .map_err(|e| LayerError::io("stat", &self.path, e));
        }
        let (parent, name) = match self.parent_dir(&rel, "stat") {
            Ok(found) => found,
            Err(e) if is_absent(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        match stat::fstatat(&parent, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(st)),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(LayerError::io("stat", &rel, e)),
        }
    }

    /// Creates `rel` and its missing ancestors. Directories it creates get `mode` and
    /// `owner`; existing ones are left untouched. Modes are applied last, deepest first, so
    /// a read-only mode cannot stop the creation of the next level.
    pub fn create_dir_all(
        &self,
        rel: &Path,
        mode: u32,
        owner: (u32, u32),
    ) -> Result<Warnings, LayerError> {
        let rel = rel_path::clean(rel)?;
        let mut warnings = Warnings::new();
        if self
            .open_in_root(&rel, OFlag::O_PATH | OFlag::O_DIRECTORY)
            .is_ok()
        {
            return Ok(warnings);
        }
        let mut created = Vec::new();
        let mut prefix = PathBuf::new();
        for name in rel.iter() {
            prefix.push(name);
            match self.open_in_root(&prefix, OFlag::O_PATH | OFlag::O_DIRECTORY) {
                Ok(_) => continue,
                Err(Errno::ENOENT) => {}
                Err(Errno::ENOTDIR) => return Err(LayerError::NotADirectory { path: prefix }),
                Err(e) => return Err(LayerError::io("resolve", &prefix, e)),
            }
            let (parent, name) = self.parent_dir(&prefix, "create")?;
            match stat::mkdirat(&parent, name, Mode::from_bits_truncate(0o700)) {
                Ok(()) => {}
                // It exists yet did not resolve to a directory: a file, or a symlink that
                // points nowhere inside the root.
                Err(Errno::EEXIST) => return Err(LayerError::NotADirectory { path: prefix }),
                Err(e) => return Err(LayerError::io("create directory", &prefix, e)),
            }
            let dir = open_dir_at(&parent, name).map_err(|e| LayerError::io("open", &prefix, e))?;
            set_owner(
                &Node::Open(&dir),
                &prefix,
                owner.0,
                owner.1,
                false,
                &mut warnings,
            )?;
            created.push((prefix.clone(), dir));
        }
        for (path, dir) in created.iter().rev() {
            Node::Open(dir)
                .chmod(mode)
                .map_err(|e| LayerError::io("chmod", path, e))?;
        }
        Ok(warnings)
    }

    /// Makes sure a directory exists at `rel` and returns whether it created one. An
    /// existing directory is kept as is (a layer's directory entry merges into it); any
    /// other file there is replaced. A new directory is private (0700) until
    /// [`RootDir::set_metadata`] gives it its final mode, so that an unpack can still
    /// create the entries that go inside it.
    pub fn mkdir(&self, rel: &Path) -> Result<bool, LayerError> {
        let rel = rel_path::clean(rel)?;
        if rel.as_os_str().is_empty() {
            return Ok(false);
        }
        let (parent, name) = self.parent_dir(&rel, "create")?;
        match stat::fstatat(&parent, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) if is_dir(&st) => return Ok(false),
            Ok(_) => unlink_non_dir(&parent, name, &rel)?,
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(LayerError::io("stat", &rel, e)),
        }
        stat::mkdirat(&parent, name, Mode::from_bits_truncate(0o700))
            .map_err(|e| LayerError::io("create directory", &rel, e))?;
        Ok(true)
    }

    /// Writes a regular file at `rel` from `contents`, then applies `meta`. An existing
    /// non-directory at `rel` is replaced; an existing directory is an error (remove it
    /// first). The parent must exist.
    pub fn write_file(
        &self,
        rel: &Path,
        contents: &mut dyn Read,
        meta: &EntryMeta,
    ) -> Result<Warnings, LayerError> {
        self.create_file(rel, meta, |file| {
            let mut writer = BufWriter::with_capacity(COPY_BUFFER, file);
            io::copy(contents, &mut writer)?;
            writer.flush()
        })
    }

    /// Writes a sparse file: each (offset, length) chunk of `map` is taken in turn from
    /// `data` and written at its offset; the rest stays a hole, since the file is created
    /// empty and only extended (`ftruncate` to the real size), never filled with zeros
    /// (lseek(2): "holes" read as zeros and take no blocks).
    pub fn write_sparse_file(
        &self,
        rel: &Path,
        data: &mut dyn Read,
        map: &SparseMap,
        meta: &EntryMeta,
    ) -> Result<Warnings, LayerError> {
        self.create_file(rel, meta, |file| {
            for &(offset, len) in &map.chunks {
                let mut at = file;
                at.seek(SeekFrom::Start(offset))?;
                let mut writer = BufWriter::with_capacity(COPY_BUFFER, at);
                let copied = io::copy(&mut data.take(len), &mut writer)?;
                writer.flush()?;
                if copied < len {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the archive ends inside a sparse file's data",
                    ));
                }
            }
            file.set_len(map.real_size)
        })
    }

    /// Creates `rel` (replacing a non-directory), lets `fill` write its contents, then
    /// applies `meta`.
    fn create_file(
        &self,
        rel: &Path,
        meta: &EntryMeta,
        fill: impl FnOnce(&File) -> io::Result<()>,
    ) -> Result<Warnings, LayerError> {
        let rel = rel_path::clean(rel)?;
        let (parent, name) = self.parent_dir(&rel, "write")?;
        unlink_non_dir(&parent, name, &rel)?;
        let fd = fcntl::openat(
            &parent,
            name,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(|e| LayerError::io("create", &rel, e))?;
        let file = File::from(fd);
        fill(&file).map_err(|e| LayerError::io("write", &rel, e))?;
        // Contents first, metadata after: a write clears setuid bits and file capabilities.
        metadata::apply(&Node::Open(&file), &rel, meta, false)
    }

    /// Creates a symlink at `rel` pointing to `target` (stored verbatim; it is resolved
    /// inside the root whenever this module follows it). Replaces an existing non-directory.
    pub fn symlink(
        &self,
        rel: &Path,
        target: &Path,
        meta: &EntryMeta,
    ) -> Result<Warnings, LayerError> {
        let rel = rel_path::clean(rel)?;
        let (parent, name) = self.parent_dir(&rel, "create a symlink at")?;
        unlink_non_dir(&parent, name, &rel)?;
        unistd::symlinkat(target, &parent, name)
            .map_err(|e| LayerError::io("create symlink", &rel, e))?;
        let node = Node::Named {
            parent: parent.as_fd(),
            name,
            symlink: true,
        };
        metadata::apply(&node, &rel, meta, false)
    }

    /// Creates a hardlink at `rel` to the existing non-directory `target`, both inside the
    /// root. A target with `..`, a missing target or a directory is an error. Replaces an
    /// existing non-directory at `rel`. Links the symlink itself if `target` is one, as
    /// GNU tar does.
    pub fn hardlink(&self, rel: &Path, target: &Path) -> Result<(), LayerError> {
        let rel = rel_path::clean(rel)?;
        let bad_target = |reason| LayerError::HardlinkTarget {
            path: rel.clone(),
            target: target.to_path_buf(),
            reason,
        };
        let target_rel = rel_path::clean(target).map_err(|_| {
            bad_target("the target is not inside the root (it has a \"..\" component)")
        })?;
        if target_rel.as_os_str().is_empty() {
            return Err(bad_target("the target is the root directory"));
        }
        let (target_parent, target_name) = match self.parent_dir(&target_rel, "link to") {
            Ok(found) => found,
            Err(e) if is_absent(&e) => {
                return Err(bad_target("the target does not exist in the root"));
            }
            Err(e) => return Err(e),
        };
        match stat::fstatat(&target_parent, target_name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) if is_dir(&st) => return Err(bad_target("the target is a directory")),
            Ok(_) => {}
            Err(Errno::ENOENT) => return Err(bad_target("the target does not exist in the root")),
            Err(e) => return Err(LayerError::io("stat", &target_rel, e)),
        }
        if target_rel == rel {
            return Ok(());
        }
        let (parent, name) = self.parent_dir(&rel, "create a hardlink at")?;
        unlink_non_dir(&parent, name, &rel)?;
        unistd::linkat(&target_parent, target_name, &parent, name, AtFlags::empty())
            .map_err(|e| LayerError::io("create hardlink", &rel, e))
    }

    /// Creates a fifo or device node at `rel`, replacing an existing non-directory. Creating
    /// devices needs CAP_MKNOD in the initial user namespace: the EPERM that an unprivileged
    /// or user-namespaced caller gets is returned as is, so the caller can decide to skip.
    pub fn mknod(
        &self,
        rel: &Path,
        kind: SpecialFile,
        meta: &EntryMeta,
    ) -> Result<Warnings, LayerError> {
        let rel = rel_path::clean(rel)?;
        let (file_type, dev) = match kind {
            SpecialFile::Fifo => (SFlag::S_IFIFO, 0),
            SpecialFile::CharDevice { major, minor } => {
                (SFlag::S_IFCHR, stat::makedev(major, minor))
            }
            SpecialFile::BlockDevice { major, minor } => {
                (SFlag::S_IFBLK, stat::makedev(major, minor))
            }
        };
        let (parent, name) = self.parent_dir(&rel, "create a node at")?;
        unlink_non_dir(&parent, name, &rel)?;
        stat::mknodat(
            &parent,
            name,
            file_type,
            Mode::from_bits_truncate(0o600),
            dev,
        )
        .map_err(|e| LayerError::io("mknod", &rel, e))?;
        let node = Node::Named {
            parent: parent.as_fd(),
            name,
            symlink: false,
        };
        metadata::apply(&node, &rel, meta, false)
    }

    /// Applies `meta` to whatever exists at `rel` (not following a final symlink).
    /// Directories get a stale `user.xbake.owner` removed when a real chown succeeds, since
    /// a layer's directory entry merges into an existing directory.
    pub fn set_metadata(&self, rel: &Path, meta: &EntryMeta) -> Result<Warnings, LayerError> {
        let rel = rel_path::clean(rel)?;
        let st = self
            .lstat(&rel)?
            .ok_or_else(|| LayerError::io("set metadata on", &rel, Errno::ENOENT))?;
        if is_dir(&st) {
            let dir = self
                .open_in_root(
                    &rel,
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW,
                )
                .map_err(|e| LayerError::io("open", &rel, e))?;
            return metadata::apply(&Node::Open(&File::from(dir)), &rel, meta, true);
        }
        let (parent, name) = self.parent_dir(&rel, "set metadata on")?;
        let node = Node::Named {
            parent: parent.as_fd(),
            name,
            symlink: file_type(&st) == SFlag::S_IFLNK,
        };
        metadata::apply(&node, &rel, meta, true)
    }

    /// Sets the mtime (and atime) of `rel` to `epoch` if it is newer, without following a
    /// symlink: the working tree then matches what a layer packed with that clamp holds.
    pub fn clamp_mtime(&self, rel: &Path, epoch: i64) -> Result<(), LayerError> {
        let rel = rel_path::clean(rel)?;
        let Some(st) = self.lstat(&rel)? else {
            return Ok(());
        };
        if st.st_mtime <= epoch || rel.as_os_str().is_empty() {
            return Ok(());
        }
        let (parent, name) = self.parent_dir(&rel, "set the time of")?;
        let time = nix::sys::time::TimeSpec::new(epoch, 0);
        stat::utimensat(
            &parent,
            name,
            &time,
            &time,
            stat::UtimensatFlags::NoFollowSymlink,
        )
        .map_err(|e| LayerError::io("set the time of", &rel, e))
    }

    /// Removes `rel` and everything below it. No error if it does not exist. Never removes
    /// the root itself, and never follows a symlink: a symlink is removed, not its target.
    pub fn remove_all(&self, rel: &Path) -> Result<(), LayerError> {
        let rel = rel_path::clean(rel)?;
        let (parent, name) = match self.parent_dir(&rel, "remove") {
            Ok(found) => found,
            Err(e) if is_absent(&e) => return Ok(()),
            Err(e) => return Err(e),
        };
        match stat::fstatat(&parent, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) if is_dir(&st) => remove_tree(parent.as_fd(), name, &rel),
            Ok(_) => unistd::unlinkat(&parent, name, UnlinkatFlags::NoRemoveDir)
                .map_err(|e| LayerError::io("remove", &rel, e)),
            Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(LayerError::io("stat", &rel, e)),
        }
    }

    /// Names in the directory `rel`, sorted by bytes, without `.` and `..`.
    pub fn read_dir(&self, rel: &Path) -> Result<Vec<OsString>, LayerError> {
        let rel = rel_path::clean(rel)?;
        let fd = self
            .open_in_root(
                &rel,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW,
            )
            .map_err(|e| LayerError::io("open directory", &rel, e))?;
        let mut dir =
            nix::dir::Dir::from_fd(fd).map_err(|e| LayerError::io("open directory", &rel, e))?;
        let mut names =
            list_dir(&mut dir).map_err(|e| LayerError::io("read directory", &rel, e))?;
        names.sort();
        Ok(names)
    }

    /// Reads the regular file `rel` and, if `edit` returns new contents, writes them over
    /// it in place (same inode, owner, mode and xattrs). Anything that is not a regular
    /// file — a symlink (never followed), a directory, a device, a fifo — or is absent is
    /// left alone and reported as `None`. For the normalisation rules (src/normalize/).
    pub fn edit_regular_file(
        &self,
        rel: &Path,
        edit: &mut dyn FnMut(&[u8]) -> Option<Vec<u8>>,
    ) -> Result<Option<bool>, LayerError> {
        let rel = rel_path::clean(rel)?;
        let (parent, name) = match self.parent_dir(&rel, "edit") {
            Ok(found) => found,
            Err(e) if is_absent(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        // O_NONBLOCK: opening a fifo must not wait for a writer; O_NOFOLLOW: a final
        // symlink fails with ELOOP and is left alone.
        let fd = match fcntl::openat(
            &parent,
            name,
            OFlag::O_RDWR | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::ENOENT | Errno::ELOOP | Errno::EISDIR | Errno::ENXIO) => return Ok(None),
            Err(e) => return Err(LayerError::io("open for editing", &rel, e)),
        };
        let st = stat::fstat(&fd).map_err(|e| LayerError::io("stat", &rel, e))?;
        if file_type(&st) != SFlag::S_IFREG {
            return Ok(None);
        }
        let mut file = File::from(fd);
        let mut contents = Vec::new();
        file.read_to_end(&mut contents)
            .map_err(|e| LayerError::io("read", &rel, e))?;
        let Some(new) = edit(&contents) else {
            return Ok(Some(false));
        };
        use std::os::unix::fs::FileExt;
        file.set_len(0)
            .and_then(|()| file.write_all_at(&new, 0))
            .map_err(|e| LayerError::io("rewrite", &rel, e))?;
        Ok(Some(true))
    }

    /// Opens the regular file `rel` for reading (a final symlink is refused, not followed).
    pub fn open_file(&self, rel: &Path) -> Result<File, LayerError> {
        let rel = rel_path::clean(rel)?;
        self.open_in_root(
            &rel,
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK,
        )
        .map(File::from)
        .map_err(|e| LayerError::io("open", &rel, e))
    }

    /// The target of the symlink `rel`, verbatim.
    pub fn read_link(&self, rel: &Path) -> Result<PathBuf, LayerError> {
        let rel = rel_path::clean(rel)?;
        let (parent, name) = self.parent_dir(&rel, "read the link")?;
        fcntl::readlinkat(&parent, name)
            .map(PathBuf::from)
            .map_err(|e| LayerError::io("read link", &rel, e))
    }

    /// All extended attributes of `rel` (not following a final symlink), in the order the
    /// filesystem lists them.
    pub fn xattrs(&self, rel: &Path) -> Result<Vec<(OsString, Vec<u8>)>, LayerError> {
        let rel = rel_path::clean(rel)?;
        match rel_path::split(&rel) {
            // "/proc/self/fd/N/." and not ".../N": the l*xattr calls would otherwise act on
            // the magic link itself.
            None => read_xattrs(&proc_fd_path(self.fd.as_fd(), Some(OsStr::new("."))), &rel),
            Some((parent_rel, name)) => {
                let parent = self
                    .open_in_root(parent_rel, OFlag::O_PATH | OFlag::O_DIRECTORY)
                    .map_err(|e| LayerError::io("resolve the parent of", &rel, e))?;
                read_xattrs(&proc_fd_path(parent.as_fd(), Some(name)), &rel)
            }
        }
    }

    /// Where `rel` really is, as a host path below the root: every symlink on the way,
    /// the last one included, resolved inside the root (as a step would see it), never
    /// outside. For reading a finished tree that nothing changes any more (a stage's
    /// result that a later stage copies from).
    pub fn resolve(&self, rel: &Path) -> Result<PathBuf, LayerError> {
        let rel = rel_path::clean(rel)?;
        let fd = self
            .open_in_root(&rel, OFlag::O_PATH)
            .map_err(|e| LayerError::io("resolve", self.path.join(&rel), e))?;
        let real = |fd: BorrowedFd<'_>| {
            nix::fcntl::readlink(format!("/proc/self/fd/{}", fd.as_raw_fd()).as_str())
                .map(PathBuf::from)
                .map_err(|e| LayerError::io("resolve", self.path.join(&rel), e))
        };
        let top = real(self.fd.as_fd())?;
        let found = real(fd.as_fd())?;
        if !found.starts_with(&top) {
            // openat2 never leaves the root; a rename racing it could, and is refused.
            return Err(LayerError::io(
                "resolve",
                self.path.join(&rel),
                Errno::EXDEV,
            ));
        }
        Ok(found)
    }

    /// Opens `rel` (cleaned) inside the root with openat2's confinement.
    fn open_in_root(&self, rel: &Path, flags: OFlag) -> nix::Result<OwnedFd> {
        open_in_root(self.fd.as_fd(), rel, flags)
    }

    /// The parent directory of `rel` (cleaned, non-empty) as an `O_PATH` fd, and the final
    /// name. The root itself has no parent: asking for it is refusing to retype the root.
    fn parent_dir<'p>(
        &self,
        rel: &'p Path,
        op: &'static str,
    ) -> Result<(OwnedFd, &'p OsStr), LayerError> {
        let (parent, name) = rel_path::split(rel).ok_or_else(|| LayerError::RootReplace {
            op,
            path: rel.to_path_buf(),
        })?;
        let fd = self
            .open_in_root(parent, OFlag::O_PATH | OFlag::O_DIRECTORY)
            .map_err(|e| LayerError::io("resolve the parent of", rel, e))?;
        Ok((fd, name))
    }
}

/// Removes a non-directory `name` if present, so the caller can create in its place.
fn unlink_non_dir(parent: &OwnedFd, name: &OsStr, rel: &Path) -> Result<(), LayerError> {
    match unistd::unlinkat(parent, name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(LayerError::io("replace", rel, e)),
    }
}

/// Depth-first removal of the directory `name` in `parent`. Directories are made
/// owner-writable first so that an unprivileged caller can empty a read-only one it owns.
fn remove_tree(parent: BorrowedFd<'_>, name: &OsStr, rel: &Path) -> Result<(), LayerError> {
    // The caller lstat'ed `name` as a directory through this same parent fd, so following
    // the final component follows nothing. Failure is fine: the open below reports it.
    let _ = stat::fchmodat(
        parent,
        name,
        Mode::from_bits_truncate(0o700),
        FchmodatFlags::FollowSymlink,
    );
    let dir = open_dir_at(&parent, name).map_err(|e| LayerError::io("open directory", rel, e))?;
    let mut dir = nix::dir::Dir::from_fd(OwnedFd::from(dir))
        .map_err(|e| LayerError::io("open directory", rel, e))?;
    let names = list_dir(&mut dir).map_err(|e| LayerError::io("read directory", rel, e))?;
    for child in names {
        let child_rel = rel.join(&child);
        match stat::fstatat(&dir, child.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) if is_dir(&st) => remove_tree(dir.as_fd(), &child, &child_rel)?,
            Ok(_) => unistd::unlinkat(&dir, child.as_os_str(), UnlinkatFlags::NoRemoveDir)
                .map_err(|e| LayerError::io("remove", &child_rel, e))?,
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(LayerError::io("stat", &child_rel, e)),
        }
    }
    drop(dir);
    unistd::unlinkat(parent, name, UnlinkatFlags::RemoveDir)
        .map_err(|e| LayerError::io("remove directory", rel, e))
}

fn open_dir_at(parent: &impl AsFd, name: &OsStr) -> nix::Result<File> {
    fcntl::openat(
        parent,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map(File::from)
}

fn list_dir(dir: &mut nix::dir::Dir) -> nix::Result<Vec<OsString>> {
    let mut names = Vec::new();
    for entry in dir.iter() {
        let name = entry?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            names.push(OsStr::from_bytes(&name).to_os_string());
        }
    }
    Ok(names)
}

/// True when the error says a path's parent does not exist (so neither does the path).
fn is_absent(e: &LayerError) -> bool {
    matches!(e.errno(), Some(libc::ENOENT | libc::ENOTDIR))
}

pub(crate) fn file_type(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

pub(crate) fn is_dir(st: &FileStat) -> bool {
    file_type(st) == SFlag::S_IFDIR
}

//! Turning a `ChangeSet` into a deterministic layer (DESIGN decision 4): the same tree and
//! the same changes give the same bytes on any machine, any day.
//!
//! Entry order: depth-first, children sorted by name bytes; every ancestor directory of an
//! emitted entry is emitted before it, with its current metadata; an opaque marker comes
//! right after its directory. Deleted paths become `.wh.NAME` (only the top-most one of a
//! deleted tree). Headers carry numeric ids only, mtimes clamped to the epoch, no
//! atime/ctime, xattrs sorted by name. See `tar_writer` for the byte format.

use super::compress::{self, LayerCompression};
use super::error::LayerError;
use super::rel_path;
use super::root::{OWNER_XATTR, RootDir, XBAKE_XATTR_PREFIX, file_type, is_dir};
use super::snapshot::{ChangeKind, ChangeSet};
use super::tar_writer::{AppendError, TarHeader, TarWriter};
use super::whiteout::{self, OPAQUE_MARKER};
use crate::digest::{Digest, HashingWriter};
use nix::sys::stat::{self as nixstat, FileStat, SFlag};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use tar::EntryType;

pub const MEDIA_TYPE_GZIP_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// Whiteout and opaque-marker entries: empty regular files with these fixed attributes.
const WHITEOUT_MODE: u32 = 0o644;

/// xattrs that describe the build host rather than the image: SELinux labels come from the
/// host's policy and would make digests differ between machines. (Docker's archive package
/// records only security.capability of the security.* namespace for the same reason.)
const HOST_XATTRS: &[&str] = &["security.selinux"];

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PackOptions {
    /// SOURCE_DATE_EPOCH: mtimes are clamped to `min(mtime, epoch)` (and to 0 from below:
    /// tar headers carry no negative times).
    pub epoch: i64,
    /// How the tar is compressed (`--compression`; default gzip).
    pub compression: LayerCompression,
    /// Threads gzip uses (0: one per CPU; `XBAKE_GZIP_THREADS`). Speed only: the bytes
    /// are the same for any count.
    pub gzip_threads: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackedLayer {
    /// sha256 of the compressed bytes: the manifest's layer digest.
    pub digest: Digest,
    /// sha256 of the uncompressed tar: the config's diff_id.
    pub diff_id: Digest,
    /// Length of the compressed bytes.
    pub size: u64,
    /// The manifest's media type for them.
    pub media_type: &'static str,
    /// Tar entries written, whiteouts and opaque markers included.
    pub entries: u64,
}

/// One pass: walk → tar → sha256 (diff_id) → compress → sha256 (digest) → `out`. Each
/// changed file is read once; gzip runs on `opts.gzip_threads` threads behind it.
pub fn pack_changes<W: Write>(
    root: &Path,
    changes: &ChangeSet,
    opts: &PackOptions,
    out: W,
) -> Result<(W, PackedLayer), LayerError> {
    let compressed = HashingWriter::new(out);
    let encoder = compress::layer_writer(compressed, opts.compression, opts.gzip_threads)
        .map_err(|source| LayerError::Write { source })?;
    let tar_stream = HashingWriter::new(encoder);
    let (tar_stream, entries) = write_entries(root, changes, opts, tar_stream)?;
    let (encoder, diff_id, _) = tar_stream.finish();
    let compressed = encoder
        .finish()
        .map_err(|source| LayerError::Write { source })?;
    let (out, digest, size) = compressed.finish();
    Ok((
        out,
        PackedLayer {
            digest,
            diff_id,
            size,
            media_type: opts.compression.media_type(),
            entries,
        },
    ))
}

/// Makes the working tree match the layer just packed from `changes`: every entry the
/// layer holds gets its clamped mtime. Without this, a later step would see real "now"
/// mtimes after running this step, but epoch mtimes after unpacking the cached layer,
/// and could produce different output (`find -newer`, make) depending on the cache.
pub fn settle(root: &RootDir, changes: &ChangeSet, opts: &PackOptions) -> Result<(), LayerError> {
    for change in &changes.changes {
        if change.kind != ChangeKind::Deleted {
            root.clamp_mtime(&change.path, opts.epoch)?;
        }
    }
    Ok(())
}

/// The uncompressed tar stream alone.
pub fn write_tar<W: Write>(
    root: &Path,
    changes: &ChangeSet,
    opts: &PackOptions,
    out: W,
) -> Result<W, LayerError> {
    write_entries(root, changes, opts, out).map(|(out, _)| out)
}

fn write_entries<W: Write>(
    root: &Path,
    changes: &ChangeSet,
    opts: &PackOptions,
    out: W,
) -> Result<(W, u64), LayerError> {
    let root = RootDir::open(root)?;
    let plan = plan(&root, changes)?;
    let mut packer = Packer {
        root: &root,
        epoch: opts.epoch,
        tar: TarWriter::new(out),
        first_link: HashMap::new(),
        link_ids: &changes.link_ids,
    };
    for item in &plan {
        match item {
            Item::Entry { path, opaque } => {
                let kind = packer.entry(path)?;
                if *opaque && kind == SFlag::S_IFDIR {
                    packer.whiteout(&path.join(OPAQUE_MARKER))?;
                }
            }
            Item::Whiteout(path) => packer.whiteout(path)?,
        }
    }
    packer
        .tar
        .finish()
        .map_err(|source| LayerError::Write { source })
}

/// One tar entry to write.
#[derive(Debug, PartialEq, Eq)]
enum Item {
    /// The file at this path, with its current metadata; a directory followed by an opaque
    /// marker if `opaque`.
    Entry { path: PathBuf, opaque: bool },
    /// An empty whiteout file at this path (`DIR/.wh.NAME`).
    Whiteout(PathBuf),
}

/// The entries to write, in order: keyed by their tar path in `Path` order, which is a
/// depth-first walk with children sorted by name bytes.
fn plan(root: &RootDir, changes: &ChangeSet) -> Result<Vec<Item>, LayerError> {
    let mut items: BTreeMap<PathBuf, Item> = BTreeMap::new();
    let mut deleted = Vec::new();
    let mut opaque = HashSet::new();
    for change in &changes.changes {
        let path = rel_path::clean(&change.path)?;
        // The root's own metadata is never part of a layer (the unpacker ignores it too).
        let Some((_, name)) = rel_path::split(&path) else {
            continue;
        };
        if whiteout::is_reserved(name) {
            return Err(LayerError::ReservedName { path });
        }
        match change.kind {
            ChangeKind::Added | ChangeKind::Modified => {
                items.insert(
                    path.clone(),
                    Item::Entry {
                        path,
                        opaque: false,
                    },
                );
            }
            ChangeKind::Replaced => {
                opaque.insert(path.clone());
                items.insert(path.clone(), Item::Entry { path, opaque: true });
            }
            ChangeKind::Deleted => deleted.push(path),
        }
    }

    let deleted_set: HashSet<&Path> = deleted.iter().map(PathBuf::as_path).collect();
    for path in &deleted {
        let mut ancestors = path
            .ancestors()
            .skip(1)
            .filter(|a| !a.as_os_str().is_empty());
        // Only the top-most whiteout of a deleted tree; nothing under an opaque directory
        // (the marker already hides all of the old one).
        if ancestors.any(|a| deleted_set.contains(a) || opaque.contains(a)) {
            continue;
        }
        // An ancestor that is no longer a directory replaces the whole old subtree with its
        // own entry; a whiteout under it could not even be unpacked.
        if !ancestors_are_dirs(root, path)? {
            continue;
        }
        let Some((parent, name)) = rel_path::split(path) else {
            continue;
        };
        let whiteout = parent.join(whiteout::whiteout_name(name));
        items.insert(whiteout.clone(), Item::Whiteout(whiteout));
    }

    let emitted: Vec<PathBuf> = items.keys().cloned().collect();
    for path in &emitted {
        for ancestor in path
            .ancestors()
            .skip(1)
            .filter(|a| !a.as_os_str().is_empty())
        {
            if items.contains_key(ancestor) {
                // Its own ancestors were added when it was.
                break;
            }
            items.insert(
                ancestor.to_path_buf(),
                Item::Entry {
                    path: ancestor.to_path_buf(),
                    opaque: false,
                },
            );
        }
    }
    Ok(items.into_values().collect())
}

/// True if every proper ancestor of `path` is, now, a real directory (not a symlink to one).
fn ancestors_are_dirs(root: &RootDir, path: &Path) -> Result<bool, LayerError> {
    let mut prefix = PathBuf::new();
    let parent = path.parent().unwrap_or(Path::new(""));
    for name in parent.iter() {
        prefix.push(name);
        if !root.lstat(&prefix)?.is_some_and(|st| is_dir(&st)) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// (name, value) pairs as they go into PAX `SCHILY.xattr.NAME` records.
type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

struct Packer<'r, W: Write> {
    root: &'r RootDir,
    epoch: i64,
    tar: TarWriter<W>,
    /// Regular files with other links, by (dev, inode): the path they were first written
    /// at. Later paths of the same file become hardlink entries to it.
    first_link: HashMap<(u64, u64), PathBuf>,
    /// The snapshotter's identities of linked files (see `ChangeSet::link_ids`).
    link_ids: &'r std::collections::BTreeMap<PathBuf, (u64, u64)>,
}

impl<W: Write> Packer<'_, W> {
    /// Writes the entry for `path` as it is now; returns its file type.
    fn entry(&mut self, path: &Path) -> Result<SFlag, LayerError> {
        let st = self
            .root
            .lstat(path)?
            .ok_or_else(|| LayerError::io("pack", path, nix::errno::Errno::ENOENT))?;
        let kind = file_type(&st);
        if kind == SFlag::S_IFSOCK {
            // A socket is a live endpoint, not content; tar cannot carry it.
            return Ok(kind);
        }
        let (xattrs, owner) = self.xattrs_and_owner(path)?;
        let (uid, gid) = owner.unwrap_or((st.st_uid, st.st_gid));
        let mut name = path.as_os_str().as_bytes().to_vec();
        let mut header = TarHeader {
            path: &[],
            entry_type: EntryType::Regular,
            mode: st.st_mode & 0o7777,
            uid: u64::from(uid),
            gid: u64::from(gid),
            mtime: clamp_mtime(st.st_mtime, self.epoch),
            size: 0,
            link_target: None,
            device: None,
            xattrs: &xattrs,
        };
        let link_target;
        let mut contents = None;
        match kind {
            SFlag::S_IFDIR => {
                name.push(b'/');
                header.entry_type = EntryType::Directory;
            }
            SFlag::S_IFREG => {
                let id = self
                    .link_ids
                    .get(path)
                    .copied()
                    .unwrap_or((st.st_dev, st.st_ino));
                let first = (st.st_nlink > 1)
                    .then(|| self.first_link.get(&id).cloned())
                    .flatten();
                if let Some(first) = first {
                    // Metadata and xattrs belong to the file, already written at `first`.
                    link_target = first.into_os_string().into_vec();
                    header.entry_type = EntryType::Link;
                    header.link_target = Some(&link_target);
                    header.xattrs = &[];
                } else {
                    if st.st_nlink > 1 {
                        self.first_link.insert(id, path.to_path_buf());
                    }
                    header.size = st.st_size as u64;
                    contents = Some(self.open_same_file(path, &st)?);
                }
            }
            SFlag::S_IFLNK => {
                link_target = self.root.read_link(path)?.into_os_string().into_vec();
                header.entry_type = EntryType::Symlink;
                header.link_target = Some(&link_target);
            }
            SFlag::S_IFCHR | SFlag::S_IFBLK => {
                header.entry_type = if kind == SFlag::S_IFCHR {
                    EntryType::Char
                } else {
                    EntryType::Block
                };
                header.device = Some(device_numbers(&st));
            }
            SFlag::S_IFIFO => header.entry_type = EntryType::Fifo,
            _ => return Ok(kind),
        }
        header.path = &name;
        let expected = header.size;
        let result = match contents.as_mut() {
            Some(file) => self.tar.append(&header, Some(file)),
            None => self.tar.append(&header, None),
        };
        result.map_err(|e| match e {
            AppendError::Write(source) => LayerError::Write { source },
            AppendError::Read(source) => LayerError::io("read", path, source),
            AppendError::SizeChanged => LayerError::ChangedWhilePacking {
                path: path.to_path_buf(),
                expected,
            },
        })?;
        Ok(kind)
    }

    /// Opens the regular file `path` and checks it is still the file `st` describes: the
    /// header is already decided from `st`, and the contents must belong to it.
    fn open_same_file(&self, path: &Path, st: &FileStat) -> Result<File, LayerError> {
        let file = self.root.open_file(path)?;
        let opened = nixstat::fstat(&file).map_err(|e| LayerError::io("stat", path, e))?;
        if (opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino) {
            return Err(LayerError::ChangedWhilePacking {
                path: path.to_path_buf(),
                expected: st.st_size as u64,
            });
        }
        Ok(file)
    }

    /// An empty regular file marking a deletion (`.wh.NAME`) or an opaque directory.
    fn whiteout(&mut self, path: &Path) -> Result<(), LayerError> {
        let header = TarHeader {
            path: path.as_os_str().as_bytes(),
            entry_type: EntryType::Regular,
            mode: WHITEOUT_MODE,
            uid: 0,
            gid: 0,
            mtime: clamp_mtime(self.epoch, self.epoch),
            size: 0,
            link_target: None,
            device: None,
            xattrs: &[],
        };
        self.tar.append(&header, None).map_err(|e| match e {
            AppendError::Write(source) | AppendError::Read(source) => LayerError::Write { source },
            AppendError::SizeChanged => LayerError::ChangedWhilePacking {
                path: path.to_path_buf(),
                expected: 0,
            },
        })
    }

    /// The xattrs to record, sorted by name, without xbake's own and the host's; and the
    /// owner a rootless unpack recorded in `user.xbake.owner`, which overrides the on-disk
    /// ids (DESIGN decision 1).
    fn xattrs_and_owner(&self, path: &Path) -> Result<(Xattrs, Option<(u32, u32)>), LayerError> {
        let mut owner = None;
        let mut kept = Vec::new();
        for (name, value) in self.root.xattrs(path)? {
            if name == OWNER_XATTR {
                owner = Some(parse_owner(path, &value)?);
            } else if !is_excluded_xattr(&name) {
                kept.push((name.into_vec(), value));
            }
        }
        kept.sort();
        Ok((kept, owner))
    }
}

fn is_excluded_xattr(name: &OsString) -> bool {
    let bytes = name.as_bytes();
    bytes.starts_with(XBAKE_XATTR_PREFIX.as_bytes())
        || HOST_XATTRS.iter().any(|h| bytes == h.as_bytes())
}

fn parse_owner(path: &Path, value: &[u8]) -> Result<(u32, u32), LayerError> {
    let text = String::from_utf8_lossy(value);
    let parsed = text
        .split_once(':')
        .and_then(|(uid, gid)| Some((uid.parse().ok()?, gid.parse().ok()?)));
    parsed.ok_or_else(|| LayerError::BadOwnerRecord {
        path: path.to_path_buf(),
        value: text.into_owned(),
    })
}

fn clamp_mtime(mtime: i64, epoch: i64) -> u64 {
    mtime.min(epoch).max(0) as u64
}

fn device_numbers(st: &FileStat) -> (u32, u32) {
    let major = nixstat::major(st.st_rdev);
    let minor = nixstat::minor(st.st_rdev);
    (major as u32, minor as u32)
}

//! Applying one layer (a tar stream, OCI image-spec layer.md "Applying Changesets") onto a
//! rootfs. Every path is hostile and goes through [`RootDir`]; the rules about what a
//! whiteout may delete follow umoci's `oci/layer/tar_extract.go`.

use super::compress;
use super::error::{LayerError, Warnings};
use super::rel_path;
use super::root::{EntryMeta, RootDir, SpecialFile, is_dir};
use super::tar_reader::{TarEntry, TarReader};
use super::whiteout::{self, EntryName};
use crate::digest::{Digest, HashingReader};
use std::collections::{BTreeMap, HashSet};
use std::ffi::OsStr;
use std::io::{self, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use tar::EntryType;

/// The default ceiling of [`UnpackBudget`]: far above any real base image (the largest
/// CUDA and ML bases are 10–20 GiB unpacked), far below what a decompression bomb claims.
pub const DEFAULT_MAX_UNPACK_SIZE: u64 = 64 << 30;

/// How much one rootfs may grow while its layers are applied, counted in apparent bytes
/// (`du --apparent-size`): a regular file counts its size, a sparse file its size *holes
/// included*, hard links, directories, symlinks and special files nothing. One figure, so
/// the limit means the same on every file system; holes are still written as holes, so a
/// sparse file under the limit takes only its data's room on disk. The check is made from
/// each entry's header before any of its data is written, so a bomb stops with nothing
/// of the oversized entry on disk. Whiteouts do not give room back: the figure is what
/// unpacking wrote, not what is left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackBudget {
    limit: u64,
    used: u64,
}

impl UnpackBudget {
    pub fn new(limit: u64) -> Self {
        UnpackBudget { limit, used: 0 }
    }

    /// No limit: for trees xbake wrote itself (tests, layers it just packed).
    pub fn unlimited() -> Self {
        UnpackBudget::new(u64::MAX)
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Apparent bytes unpacked so far.
    pub fn used(&self) -> u64 {
        self.used
    }

    /// The most bytes one layer's decompressed tar stream may have: the limit for the
    /// entries' data plus as much again for what the budget does not count (headers,
    /// padding, directories and links, bytes after the end-of-archive marker). Without
    /// it, 10 GiB of zeros is a valid empty tar (the first zero block ends the archive)
    /// that every reader still decompresses to hash its diff_id. Twice the limit only
    /// refuses a layer under the limit whose entries average less than a block of data.
    pub fn stream_limit(&self) -> u64 {
        self.limit.saturating_mul(2)
    }

    /// Counts one entry of `entry_size` apparent bytes (the header's figure, before any
    /// of its data is read).
    pub fn take(&mut self, entry_size: u64) -> Result<(), LayerError> {
        match self.used.checked_add(entry_size) {
            Some(total) if total <= self.limit => {
                self.used = total;
                Ok(())
            }
            _ => Err(LayerError::SizeLimit {
                limit: self.limit,
                unpacked: self.used,
                entry_size,
            }),
        }
    }
}

/// The limit used when `--max-unpack-size` is not given: [`DEFAULT_MAX_UNPACK_SIZE`] or
/// the free space of the cache's file system, whichever is smaller (unknown free space:
/// the ceiling alone). Pure, so the rule is unit-tested without a file system.
pub fn default_unpack_limit(free_space: Option<u64>) -> u64 {
    free_space.map_or(DEFAULT_MAX_UNPACK_SIZE, |free| {
        free.min(DEFAULT_MAX_UNPACK_SIZE)
    })
}

/// Bytes an unprivileged writer may still use on the file system holding `dir`
/// (statvfs(3): `f_bavail` blocks of `f_frsize` bytes; the root-reserved blocks are not
/// counted, so the figure is the same as root and rootless).
// statvfs's field types differ between libc targets (u32 on some 32-bit ones).
#[allow(clippy::useless_conversion)]
pub fn free_space(dir: &Path) -> io::Result<u64> {
    let st = nix::sys::statvfs::statvfs(dir).map_err(io::Error::from)?;
    Ok(u64::from(st.blocks_available()).saturating_mul(u64::from(st.fragment_size())))
}

/// What applying a layer did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UnpackReport {
    /// Tar entries processed, whiteouts included (PAX global headers are not entries).
    pub entries: u64,
    /// Metadata that was skipped instead of failing: unsettable xattrs, device nodes an
    /// unprivileged user cannot create, owners that could not be recorded.
    pub warnings: Vec<String>,
}

/// Mode and owner of parent directories a layer uses without listing them (the same
/// default as Docker's and containerd's unpackers).
const IMPLIED_DIR_MODE: u32 = 0o755;
const IMPLIED_DIR_OWNER: (u32, u32) = (0, 0);
/// Read buffer between the blob and the decompressor.
const BLOB_BUFFER: usize = 128 * 1024;

const PAX_MTIME: &[u8] = b"mtime";
const PAX_XATTR_PREFIX: &[u8] = b"SCHILY.xattr.";

/// Applies an uncompressed layer tar onto `root`, counting what it writes in `budget`.
pub fn apply_layer(
    root: &RootDir,
    tar: impl Read,
    budget: &mut UnpackBudget,
) -> Result<UnpackReport, LayerError> {
    apply_archive(root, &mut TarReader::new(tar), budget)
}

/// Applies a layer blob as stored in a registry or an OCI layout: compressed or not
/// (detected), checked against the manifest's `expected_digest` (of the blob bytes) and the
/// config's `expected_diff_id` (of the tar), both computed in the same single pass that
/// unpacks. On a mismatch the rootfs has been changed and must be thrown away. Returns
/// the report and the diff_id computed on the way (which a rootfs tarball's caller does
/// not know in advance). What the layer writes is counted in `budget`, shared by all the
/// layers of one rootfs; past its limit, unpacking stops with [`LayerError::SizeLimit`]
/// (and the rootfs must be thrown away too).
pub fn apply_blob(
    root: &RootDir,
    blob: impl Read,
    expected_digest: &Digest,
    expected_diff_id: Option<&Digest>,
    budget: &mut UnpackBudget,
) -> Result<(UnpackReport, Digest), LayerError> {
    let mut blob_hasher = HashingReader::new(blob);
    let applied = apply_compressed(root, &mut blob_hasher, budget);
    // The digest covers every byte of the blob, including any after the compressed stream.
    let drained = blob_hasher.drain_and_finish();
    let (report, diff_id) = match (applied, drained) {
        (Ok(applied), Ok((digest, _))) => {
            expected_digest.verify(&digest, "layer blob")?;
            applied
        }
        // A corrupt blob usually fails to decompress first; the digest is the better
        // explanation when it is wrong.
        (Err(e), Ok((digest, _))) => {
            expected_digest.verify(&digest, "layer blob")?;
            return Err(e);
        }
        (Err(e), Err(_)) => return Err(e),
        (Ok(_), Err(source)) => {
            return Err(LayerError::Tar {
                after: None,
                source,
            });
        }
    };
    if let Some(expected) = expected_diff_id {
        expected.verify(&diff_id, "layer diff_id")?;
    }
    Ok((report, diff_id))
}

fn apply_compressed(
    root: &RootDir,
    blob: &mut impl Read,
    budget: &mut UnpackBudget,
) -> Result<(UnpackReport, Digest), LayerError> {
    let decompressed = compress::decompressor(BufReader::with_capacity(BLOB_BUFFER, blob))?;
    let mut bounded = BoundedStream::new(decompressed, budget.stream_limit());
    let mut tar_hasher = HashingReader::new(&mut bounded);
    let applied = apply_archive(root, &mut TarReader::new(&mut tar_hasher), budget);
    // A tar reader stops at the end-of-archive marker; the padding after it is part of the
    // diff_id (umoci drains the same way before checking).
    let drained = applied.and_then(|report| {
        let (diff_id, _) = tar_hasher
            .drain_and_finish()
            .map_err(|source| LayerError::Tar {
                after: None,
                source,
            })?;
        Ok((report, diff_id))
    });
    bounded.explain(drained)
}

/// A decompressed tar stream that ends in an error past [`UnpackBudget::stream_limit`]
/// bytes, so no reader of a layer ever decompresses more than that. The error the tar
/// reader then reports is replaced by [`LayerError::StreamLimit`] in [`explain`].
///
/// [`explain`]: BoundedStream::explain
pub(crate) struct BoundedStream<R> {
    inner: R,
    read: u64,
    max: u64,
}

impl<R: Read> BoundedStream<R> {
    pub(crate) fn new(inner: R, max: u64) -> Self {
        BoundedStream {
            inner,
            read: 0,
            max,
        }
    }

    /// `result`, or the stream limit if that is why reading failed.
    pub(crate) fn explain<T>(&self, result: Result<T, LayerError>) -> Result<T, LayerError> {
        match result {
            Err(_) if self.read > self.max => Err(LayerError::StreamLimit {
                stream_limit: self.max,
            }),
            other => other,
        }
    }
}

impl<R: Read> Read for BoundedStream<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.read > self.max {
            return Err(io::Error::other("the tar stream is longer than its limit"));
        }
        // One byte past the limit is asked for, so a stream of exactly `max` bytes ends
        // normally and a longer one is noticed.
        let room = (self.max - self.read).saturating_add(1);
        let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.read += n as u64;
        if self.read > self.max {
            return Err(io::Error::other("the tar stream is longer than its limit"));
        }
        Ok(n)
    }
}

/// Reads a layer tar without writing anything: every entry name and hard-link target
/// must be a clean path inside the root (the same rule as unpacking), the stream a valid
/// tar, and what unpacking would write must fit in `budget` (counted as unpacking counts
/// it, the stream bounded by [`UnpackBudget::stream_limit`]), so a bomb is refused after
/// reading its first header. Returns the diff_id (the whole stream's sha256, padding
/// included). Used on rootfs tarballs that become a base layer, so a hostile one is
/// refused even when no step ever unpacks it.
pub fn check_layer(tar: impl Read, budget: &mut UnpackBudget) -> Result<Digest, LayerError> {
    let mut bounded = BoundedStream::new(tar, budget.stream_limit());
    let checked = check_entries(&mut bounded, budget);
    bounded.explain(checked)
}

fn check_entries(tar: impl Read, budget: &mut UnpackBudget) -> Result<Digest, LayerError> {
    let mut reader = TarReader::new(HashingReader::new(tar));
    while let Some(entry) = reader.next_entry()? {
        let named = |e| LayerError::Entry {
            entry: entry.name(),
            source: Box::new(e),
        };
        let path = rel_path::clean_bytes(&entry.path).map_err(named)?;
        if path.as_os_str().is_empty() && !entry.kind.is_dir() {
            return Err(named(LayerError::RootReplace {
                op: "a non-directory entry for the root",
                path: path.clone(),
            }));
        }
        if entry.kind.is_hard_link()
            && let Some(target) = &entry.link
        {
            rel_path::clean_bytes(target).map_err(named)?;
        }
        if counts_in_budget(entry.kind) {
            budget.take(entry.apparent_size()).map_err(named)?;
        }
    }
    reader
        .into_inner()
        .drain_and_finish()
        .map(|(d, _)| d)
        .map_err(|source| LayerError::Tar {
            after: None,
            source,
        })
}

/// The entry types whose data unpacking writes as a file, so [`UnpackBudget`] counts them.
pub(crate) fn counts_in_budget(kind: EntryType) -> bool {
    matches!(
        kind,
        EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse
    )
}

fn apply_archive<R: Read>(
    root: &RootDir,
    reader: &mut TarReader<R>,
    budget: &mut UnpackBudget,
) -> Result<UnpackReport, LayerError> {
    let mut layer = LayerApplier::new(root, budget);
    while let Some(entry) = reader.next_entry()? {
        layer
            .apply_entry(&entry, &mut reader.data())
            .map_err(|e| LayerError::Entry {
                entry: entry.name(),
                source: Box::new(e),
            })?;
    }
    layer.finish()
}

/// The state of one layer being applied.
struct LayerApplier<'r> {
    root: &'r RootDir,
    /// Paths this layer wrote, and all their ancestors. A whiteout hides lower layers only
    /// (layer.md: "files that are present in the same layer as a whiteout file can only be
    /// hidden by whiteout files in subsequent layers"), so it never deletes these, whatever
    /// the order of the entries (umoci's `upperPaths`).
    upper: HashSet<PathBuf>,
    /// Directory metadata, applied after all entries: creating children would bump the
    /// mtimes, and a read-only mode would stop an unprivileged unpack from creating them.
    dirs: BTreeMap<PathBuf, EntryMeta>,
    warnings: Warnings,
    entries: u64,
    budget: &'r mut UnpackBudget,
}

impl<'r> LayerApplier<'r> {
    fn new(root: &'r RootDir, budget: &'r mut UnpackBudget) -> Self {
        LayerApplier {
            root,
            budget,
            upper: HashSet::new(),
            dirs: BTreeMap::new(),
            warnings: Warnings::new(),
            entries: 0,
        }
    }

    fn apply_entry(&mut self, entry: &TarEntry, data: &mut dyn Read) -> Result<(), LayerError> {
        // PAX global headers never reach here: the reader consumes them (and refuses those
        // that would change entries); pre-POSIX `dir/` entries arrive as directories.
        let kind = entry.kind;
        self.entries += 1;
        let rel = rel_path::clean_bytes(&entry.path)?;
        let Some((parent, name)) = rel_path::split(&rel) else {
            // "./" or "/": the rootfs directory belongs to the builder, so its metadata is
            // ignored; anything but a directory would retype the root (umoci refuses too).
            return if kind.is_dir() {
                Ok(())
            } else {
                Err(LayerError::RootReplace {
                    op: "replace",
                    path: rel,
                })
            };
        };
        match whiteout::classify(name) {
            EntryName::Plain => {}
            EntryName::Opaque => return self.hide_lower_children(parent),
            EntryName::Delete(hidden) => return self.hide_lower(&parent.join(hidden)),
            EntryName::AufsMeta => {
                self.warnings.push(format!(
                    "{}: reserved aufs whiteout name, skipped",
                    rel.display()
                ));
                return Ok(());
            }
            EntryName::Invalid => {
                return Err(LayerError::UnsafePath {
                    path: rel,
                    reason: "is a whiteout that names nothing",
                });
            }
        }

        let meta = entry_meta(entry)?;
        self.mark_upper(&rel);
        let implied = self
            .root
            .create_dir_all(parent, IMPLIED_DIR_MODE, IMPLIED_DIR_OWNER)?;
        self.warnings.absorb(implied);
        if kind.is_dir() {
            self.root.mkdir(&rel)?;
            self.dirs.insert(rel, meta);
            return Ok(());
        }
        // A non-directory replaces whatever is at its path, a directory included.
        if self.root.lstat(&rel)?.is_some_and(|st| is_dir(&st)) {
            self.root.remove_all(&rel)?;
        }
        let warnings = match kind {
            file if counts_in_budget(file) => {
                self.budget.take(entry.apparent_size())?;
                match &entry.sparse {
                    Some(map) => self.root.write_sparse_file(&rel, data, map, &meta)?,
                    None => self.root.write_file(&rel, data, &meta)?,
                }
            }
            EntryType::Symlink => {
                let target = link_target(entry)?;
                self.root.symlink(&rel, &target, &meta)?
            }
            EntryType::Link => {
                let target = link_target(entry)?;
                self.root.hardlink(&rel, &target)?;
                Warnings::new()
            }
            EntryType::Fifo => self.root.mknod(&rel, SpecialFile::Fifo, &meta)?,
            EntryType::Char | EntryType::Block => {
                let node = device(&entry.header, kind)?;
                // A 0/0 character device is what overlayfs takes for a whiteout: made in
                // a layer snapshot (build/snapshots.rs) it would delete what the layers
                // below have of that name. It is no device anyone can use, so it is
                // skipped the same way on every path.
                if node == (SpecialFile::CharDevice { major: 0, minor: 0 }) {
                    self.warnings.push(format!(
                        "{}: device node 0/0 skipped: overlayfs reads it as a whiteout",
                        rel.display()
                    ));
                    return Ok(());
                }
                match self.root.mknod(&rel, node, &meta) {
                    Ok(warnings) => warnings,
                    // Devices need CAP_MKNOD in the initial user namespace: rootless and
                    // user-namespaced builds cannot create them (mknod(2)), and a build
                    // step has no use for them; the runtime provides /dev.
                    Err(e) if e.errno() == Some(libc::EPERM) => {
                        self.warnings.push(format!(
                            "{}: device node skipped: creating devices is not permitted here",
                            rel.display()
                        ));
                        Warnings::new()
                    }
                    Err(e) => return Err(e),
                }
            }
            other => {
                self.warnings.push(format!(
                    "{}: unsupported tar entry type {:?}, skipped",
                    rel.display(),
                    other.as_byte() as char
                ));
                Warnings::new()
            }
        };
        self.warnings.absorb(warnings);
        Ok(())
    }

    /// Records `path` and its ancestors as written by this layer.
    fn mark_upper(&mut self, path: &Path) {
        for ancestor in path.ancestors() {
            if !self.upper.insert(ancestor.to_path_buf()) {
                break;
            }
        }
    }

    /// `.wh.NAME`: removes what lower layers have at `path`. If this layer wrote `path` or
    /// something below it, only the lower-layer content around that is removed.
    fn hide_lower(&mut self, path: &Path) -> Result<(), LayerError> {
        if !self.upper.contains(path) {
            return self.root.remove_all(path);
        }
        self.hide_lower_children(path)
    }

    /// `.wh..wh..opq`: removes everything lower layers put in `dir`.
    fn hide_lower_children(&mut self, dir: &Path) -> Result<(), LayerError> {
        if !self.root.lstat(dir)?.is_some_and(|st| is_dir(&st)) {
            return Ok(());
        }
        for name in self.root.read_dir(dir)? {
            self.hide_lower(&dir.join(name))?;
        }
        Ok(())
    }

    /// Applies the deferred directory metadata, deepest first: children before parents, so
    /// a parent's final mode never blocks reaching a child.
    fn finish(mut self) -> Result<UnpackReport, LayerError> {
        for (rel, meta) in self.dirs.iter().rev() {
            let warnings =
                set_dir_metadata(self.root, rel, meta).map_err(|e| LayerError::Entry {
                    entry: rel.to_string_lossy().into_owned(),
                    source: Box::new(e),
                })?;
            self.warnings.absorb(warnings);
        }
        Ok(UnpackReport {
            entries: self.entries,
            warnings: self.warnings.into_vec(),
        })
    }
}

fn set_dir_metadata(root: &RootDir, rel: &Path, meta: &EntryMeta) -> Result<Warnings, LayerError> {
    // A later entry of the same layer may have replaced the directory with something else.
    if !root.lstat(rel)?.is_some_and(|st| is_dir(&st)) {
        return Ok(Warnings::new());
    }
    root.set_metadata(rel, meta)
}

/// Mode, numeric owner (user and group names are ignored: they mean nothing inside the
/// image), mtime and xattrs of an entry, PAX records included.
pub(crate) fn entry_meta(entry: &TarEntry) -> Result<EntryMeta, LayerError> {
    let header = &entry.header;
    let header_error = |source| LayerError::Tar {
        after: None,
        source,
    };
    let mode = header.mode().map_err(header_error)? & 0o7777;
    let uid = id(entry.uid()?, "uid")?;
    let gid = id(entry.gid()?, "gid")?;
    let mut mtime = i64::try_from(header.mtime().map_err(header_error)?).unwrap_or(i64::MAX);
    let mut xattrs = Vec::new();
    for (key, value) in &entry.pax {
        if key == PAX_MTIME {
            mtime = parse_pax_time(value).unwrap_or(mtime);
        } else if let Some(name) = key.strip_prefix(PAX_XATTR_PREFIX) {
            match std::str::from_utf8(name) {
                Ok(name) => xattrs.push((name.to_string(), value.clone())),
                Err(_) => {
                    return Err(LayerError::Tar {
                        after: None,
                        source: io::Error::new(
                            io::ErrorKind::InvalidData,
                            "xattr name is not UTF-8",
                        ),
                    });
                }
            }
        }
    }
    Ok(EntryMeta {
        mode,
        uid,
        gid,
        mtime,
        xattrs,
    })
}

fn id(value: u64, what: &str) -> Result<u32, LayerError> {
    u32::try_from(value).map_err(|_| LayerError::Tar {
        after: None,
        source: io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{what} {value} out of range"),
        ),
    })
}

/// PAX times are decimal seconds with an optional fraction ("1700000000.123456789");
/// whole seconds are kept, rounding towards negative infinity like the kernel does.
fn parse_pax_time(value: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(value).ok()?;
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let seconds: i64 = whole.parse().ok()?;
    let has_fraction = fraction.bytes().any(|b| b != b'0');
    Some(if whole.starts_with('-') && has_fraction {
        seconds - 1
    } else {
        seconds
    })
}

fn link_target(entry: &TarEntry) -> Result<PathBuf, LayerError> {
    match &entry.link {
        Some(target) if !target.is_empty() => Ok(PathBuf::from(OsStr::from_bytes(target))),
        _ => Err(LayerError::Tar {
            after: None,
            source: io::Error::new(io::ErrorKind::InvalidData, "link entry without a link name"),
        }),
    }
}

fn device(header: &tar::Header, kind: EntryType) -> Result<SpecialFile, LayerError> {
    let field = |value: io::Result<Option<u32>>| {
        value
            .map(|v| u64::from(v.unwrap_or(0)))
            .map_err(|source| LayerError::Tar {
                after: None,
                source,
            })
    };
    let major = field(header.device_major())?;
    let minor = field(header.device_minor())?;
    Ok(if kind == EntryType::Char {
        SpecialFile::CharDevice { major, minor }
    } else {
        SpecialFile::BlockDevice { major, minor }
    })
}

//! The one error type of the layer module, and the warnings that are reported instead of
//! failing (metadata the filesystem or the privilege level cannot represent).

use super::tar_reader::TarProblem;
use crate::digest::DigestError;
use std::fmt;
use std::io;
use std::path::PathBuf;

/// Everything that can go wrong turning layers into a rootfs and back. Each variant names
/// the path or layer entry it concerns; the OS error, when there is one, is the `source`.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// A system call on `path` failed. `op` says which operation ("create", "chown", ...).
    #[error("cannot {op} {path:?}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A path from a tar, a recipe or a change set that cannot be used inside a root:
    /// it has a `..` component or names nothing.
    #[error("unsafe path {path:?}: {reason}")]
    UnsafePath { path: PathBuf, reason: &'static str },

    /// An operation would replace, retype or delete the root directory itself.
    #[error("refusing to {op} the root directory itself (path {path:?})")]
    RootReplace { op: &'static str, path: PathBuf },

    /// Something exists at `path` but is not the directory the operation needs.
    #[error("{path:?} exists and is not a directory")]
    NotADirectory { path: PathBuf },

    /// A hardlink entry whose target is unusable (missing, a directory, outside the root).
    #[error("hardlink {path:?} -> {target:?}: {reason}")]
    HardlinkTarget {
        path: PathBuf,
        target: PathBuf,
        reason: &'static str,
    },

    /// Wraps any error raised while applying one tar entry, so the message names it.
    #[error("layer entry {entry:?}")]
    Entry {
        entry: String,
        #[source]
        source: Box<LayerError>,
    },

    /// The tar stream itself is malformed (bad header checksum, truncated, ...).
    #[error("reading the layer tar stream{}", after_entry(.after))]
    Tar {
        after: Option<String>,
        #[source]
        source: io::Error,
    },

    /// A header the one tar reader refuses (see `tar_reader`): what it does and the
    /// figures.
    #[error("reading the layer tar stream{}: {problem}", after_entry(.after))]
    TarHeader {
        after: Option<String>,
        problem: TarProblem,
    },

    /// A header-only entry (symlink, hard link, directory, ...) that carries data: Go's
    /// archive/tar and Python's tarfile read that data as more entries, so they would
    /// see a file xbake does not.
    #[error(
        "a {kind} header carries {size} bytes of data, which other tar readers (Go's \
         archive/tar, Python's tarfile) would read as hidden extra entries"
    )]
    HiddenData { kind: &'static str, size: u64 },

    /// Unpacking would go past the size limit of the rootfs (`--max-unpack-size`). The
    /// check is made from the entry's header, before any of its data is written.
    #[error(
        "the unpacked size limit of {} is reached: {} were unpacked before this entry \
         of {} (a larger limit can be given with --max-unpack-size)",
        human_size(*.limit), human_size(*.unpacked), human_size(*.entry_size)
    )]
    SizeLimit {
        limit: u64,
        unpacked: u64,
        entry_size: u64,
    },

    /// A layer's decompressed tar stream is longer than twice the unpack limit (see
    /// `UnpackBudget::stream_limit`): headers, padding or bytes after the archive's end
    /// that no file accounts for, as a bomb of plain zeros is.
    #[error(
        "the decompressed tar stream is longer than {}, twice the unpacked size limit \
         (a larger limit can be given with --max-unpack-size)",
        human_size(*.stream_limit)
    )]
    StreamLimit { stream_limit: u64 },

    /// The compressed stream is corrupt or its format is not supported.
    #[error("decompressing the layer ({format})")]
    Decompress {
        format: &'static str,
        #[source]
        source: io::Error,
    },

    /// A blob's digest or a layer's diff_id is not what the manifest or config promised
    /// (`what` is "layer blob" or "layer diff_id").
    #[error(transparent)]
    Digest(#[from] DigestError),

    /// A changed file whose name starts with `.wh.` cannot be packed: every reader would
    /// take it for a whiteout (OCI image-spec layer.md, "Whiteouts").
    #[error("cannot pack {path:?}: names starting with \".wh.\" are reserved for whiteouts")]
    ReservedName { path: PathBuf },

    /// The `user.xbake.owner` xattr that records a rootless file's owner is malformed.
    #[error("{path:?}: malformed user.xbake.owner xattr {value:?} (expected \"uid:gid\")")]
    BadOwnerRecord { path: PathBuf, value: String },

    /// A file changed size while it was being packed (something is still writing to the
    /// rootfs); the layer would not match the tree.
    #[error("{path:?} changed while it was being packed (expected {expected} bytes)")]
    ChangedWhilePacking { path: PathBuf, expected: u64 },

    /// `Snapshotter::changes` was called without a baseline from `begin`.
    #[error("snapshot of {root:?}: changes() called before begin()")]
    SnapshotNotBegun { root: PathBuf },

    /// Writing the layer (tar, compressor or the output) failed.
    #[error("writing the layer")]
    Write {
        #[source]
        source: io::Error,
    },
}

/// `16 MiB (16777216 bytes)`: the rounded figure for people, the exact one for checks.
pub fn human_size(bytes: u64) -> String {
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    format!("{} ({bytes} bytes)", rounded_size(bytes))
}

/// `16 MiB`, `4.2 MiB`, `512 bytes`: the rounded figure alone, for progress lines.
pub fn rounded_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64;
    let mut unit = "";
    for u in UNITS {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = u;
    }
    let rounded = if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    };
    format!("{rounded} {unit}")
}

fn after_entry(after: &Option<String>) -> String {
    match after {
        Some(entry) => format!(" after entry {entry:?}"),
        None => String::new(),
    }
}

impl LayerError {
    /// Shorthand for the common `Io` case.
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
        source: impl Into<io::Error>,
    ) -> Self {
        LayerError::Io {
            op,
            path: path.into(),
            source: source.into(),
        }
    }

    /// The errno behind this error, if it is a plain system-call failure.
    pub(crate) fn errno(&self) -> Option<i32> {
        match self {
            LayerError::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// Things that were skipped rather than failing: xattrs the filesystem or our privilege
/// level cannot set, device nodes an unprivileged user cannot create, owners that could
/// not be recorded. `#[must_use]` so that `root.write_file(..)?;` cannot silently drop them.
#[must_use = "warnings report metadata that was skipped; pass them on to the caller"]
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Warnings(Vec<String>);

impl Warnings {
    pub fn new() -> Self {
        Warnings(Vec::new())
    }

    pub fn push(&mut self, warning: String) {
        self.0.push(warning);
    }

    /// Moves `other`'s warnings into `self`.
    pub fn absorb(&mut self, other: Warnings) {
        self.0.extend(other.0);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &String> {
        self.0.iter()
    }

    pub fn into_vec(self) -> Vec<String> {
        self.0
    }
}

impl fmt::Display for Warnings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("\n"))
    }
}

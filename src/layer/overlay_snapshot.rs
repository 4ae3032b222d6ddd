//! The overlay snapshotter: a step runs on an overlay mount, and what it changed is read
//! from the mount's upper folder alone, never from a walk over the whole tree.
//!
//! It gives the walk snapshotter's `ChangeSet` for the same step. The baseline is the
//! tree when the step began: what the upper folder held then (xbake's own mount points
//! and placeholders, recorded by `begin`), over the read-only lower stack (`lower`, the
//! tree of the layers below). overlayfs copies a file up when it is opened for writing
//! even if nothing is written (dpkg's lock files), so an upper entry whose metadata,
//! extended attributes and bytes all equal the baseline's is no change, as the walk
//! sees it. Where the two differ: a chmod, chown or touch that sets what was already
//! there changes the ctime, which the walk counts and this cannot see (the copy-up gave
//! the file a new ctime anyway); and writing to one name of a file with several hard
//! links copies up that name only (overlayfs breaks the link), where the walk sees them
//! all change.

use super::error::LayerError;
use super::snapshot::{
    Change, ChangeKind, ChangeSet, EntryState, Snapshotter, TIMESTAMP_GRANULARITY,
};
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// overlayfs's own extended attributes (`userxattr` puts them under `user.`); never part
/// of what a step changed, and hidden from the merged tree anyway.
const OVERLAY_XATTR_PREFIXES: [&str; 2] = ["user.overlay.", "trusted.overlay."];
const OPAQUE_XATTR: &str = "user.overlay.opaque";

/// One entry of the upper folder.
#[derive(Clone, Debug)]
struct UpperEntry {
    state: EntryState,
    /// A 0/0 character device: the lower entry of that name is deleted.
    whiteout: bool,
    /// A folder hiding the lower folder of that name.
    opaque: bool,
}

/// What a path was when the step began.
enum Base {
    /// In the upper folder already (xbake put it there before the step).
    Upper(EntryState),
    /// Only in the lower stack.
    Lower(fs::Metadata),
}

impl Base {
    fn is_dir(&self) -> bool {
        match self {
            Base::Upper(s) => s.is_dir(),
            Base::Lower(m) => m.is_dir(),
        }
    }
}

pub struct OverlaySnapshotter {
    upper: PathBuf,
    lower: PathBuf,
    begun: Option<BTreeMap<PathBuf, UpperEntry>>,
    forgiven: BTreeSet<PathBuf>,
}

impl OverlaySnapshotter {
    /// `upper`: the mount's upper folder; `lower`: the tree below it (the lower stack,
    /// mounted read-only, or the one lower folder).
    pub fn new(upper: PathBuf, lower: PathBuf) -> Self {
        OverlaySnapshotter {
            upper,
            lower,
            begun: None,
            forgiven: BTreeSet::new(),
        }
    }

    fn base(&self, begun: &BTreeMap<PathBuf, UpperEntry>, path: &Path) -> Option<Base> {
        if let Some(e) = begun.get(path) {
            return (!e.whiteout).then_some(Base::Upper(e.state));
        }
        // Below a whiteout, an opaque folder or a non-folder of the upper folder, the
        // lower stack did not show.
        for ancestor in path.ancestors().skip(1) {
            if let Some(e) = begun.get(ancestor)
                && (e.whiteout || e.opaque || !e.state.is_dir())
            {
                return None;
            }
        }
        let meta = fs::symlink_metadata(self.lower.join(path)).ok()?;
        // A single lower folder is read as it is: a whiteout there hides nothing below.
        (!is_whiteout(&meta)).then_some(Base::Lower(meta))
    }

    /// Whether the entry at `path` differs from its base.
    fn differs(&self, base: &Base, now: &UpperEntry, path: &Path) -> Result<bool, LayerError> {
        let before = match base {
            Base::Upper(before) => {
                let after = &now.state;
                return Ok(before != after
                    && !(before.is_dir()
                        && before.same_but_ctime(after)
                        && self.forgiven.contains(path)));
            }
            Base::Lower(meta) => EntryState::of(meta),
        };
        let after = &now.state;
        if (
            before.file_type,
            before.mode,
            before.uid,
            before.gid,
            before.mtime,
        ) != (
            after.file_type,
            after.mode,
            after.uid,
            after.gid,
            after.mtime,
        ) {
            return Ok(true);
        }
        let (lower, upper) = (self.lower.join(path), self.upper.join(path));
        if !after.is_dir() {
            // A copy-up has one link; more means the step made links to it.
            let Base::Lower(meta) = base else {
                return Ok(true);
            };
            if before.size != after.size
                || meta.rdev() != fs::symlink_metadata(&upper).map(|m| m.rdev()).unwrap_or(0)
                || (after.nlink > 1 && after.nlink != before.nlink)
            {
                return Ok(true);
            }
        }
        if xattrs(&lower, path)? != xattrs(&upper, path)? {
            return Ok(true);
        }
        match after.file_type {
            libc::S_IFLNK => {
                let read =
                    |p: &Path| fs::read_link(p).map_err(|e| LayerError::io("read link", path, e));
                Ok(read(&lower)? != read(&upper)?)
            }
            libc::S_IFREG => Ok(!same_bytes(&lower, &upper, path)?),
            _ => Ok(false),
        }
    }
}

impl OverlaySnapshotter {
    /// For a folder at `dir` made again (opaque): the baseline's entries in it that the
    /// new folder lacks, as deletions.
    fn hidden_entries(
        &self,
        begun: &BTreeMap<PathBuf, UpperEntry>,
        dir: &Path,
        changes: &mut Vec<Change>,
    ) -> Result<(), LayerError> {
        if !self.base(begun, dir).is_some_and(|b| b.is_dir()) {
            return Ok(());
        }
        let mut names: BTreeSet<OsString> = BTreeSet::new();
        if let Ok(read) = fs::read_dir(self.lower.join(dir)) {
            for entry in read {
                let entry = entry.map_err(|e| LayerError::io("read directory", dir, e))?;
                names.insert(entry.file_name());
            }
        }
        for (path, e) in begun.range(dir.to_path_buf()..) {
            if !path.starts_with(dir) {
                break;
            }
            if path.parent() == Some(dir) && !e.whiteout {
                names.insert(path.file_name().unwrap_or_default().to_os_string());
            }
        }
        for name in names {
            let path = dir.join(&name);
            let there =
                fs::symlink_metadata(self.upper.join(&path)).is_ok_and(|m| !is_whiteout(&m));
            if !there && self.base(begun, &path).is_some() {
                changes.push(Change {
                    path,
                    kind: ChangeKind::Deleted,
                });
            }
        }
        Ok(())
    }
}

fn is_whiteout(meta: &fs::Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

fn xattrs(file: &Path, rel: &Path) -> Result<BTreeMap<OsString, Vec<u8>>, LayerError> {
    let mut out = BTreeMap::new();
    let names = match xattr::list(file) {
        Ok(names) => names,
        // File systems without extended attributes have none to compare.
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(out),
        Err(e) => return Err(LayerError::io("list extended attributes of", rel, e)),
    };
    for name in names {
        let text = name.to_string_lossy();
        if OVERLAY_XATTR_PREFIXES.iter().any(|p| text.starts_with(p)) {
            continue;
        }
        let value = xattr::get(file, &name)
            .map_err(|e| LayerError::io("read extended attributes of", rel, e))?
            .unwrap_or_default();
        out.insert(name, value);
    }
    Ok(out)
}

fn same_bytes(a: &Path, b: &Path, rel: &Path) -> Result<bool, LayerError> {
    let open = |p: &Path| fs::File::open(p).map_err(|e| LayerError::io("open", rel, e));
    let (mut fa, mut fb) = (open(a)?, open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let na = read_full(&mut fa, &mut ba).map_err(|e| LayerError::io("read", rel, e))?;
        let nb = read_full(&mut fb, &mut bb).map_err(|e| LayerError::io("read", rel, e))?;
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }
}

fn read_full(f: &mut fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// The upper folder, depth first, children sorted by name bytes (`Path` order).
fn walk_upper(
    root: &Path,
    rel: &Path,
    out: &mut Vec<(PathBuf, UpperEntry)>,
) -> Result<(), LayerError> {
    let dir = root.join(rel);
    let mut children = Vec::new();
    for entry in fs::read_dir(&dir).map_err(|e| LayerError::io("read directory", &dir, e))? {
        let entry = entry.map_err(|e| LayerError::io("read directory", &dir, e))?;
        let meta = entry
            .metadata()
            .map_err(|e| LayerError::io("stat", entry.path(), e))?;
        children.push((entry.file_name(), meta));
    }
    children.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, meta) in children {
        let path = rel.join(&name);
        let opaque = meta.is_dir()
            && xattr::get(root.join(&path), OPAQUE_XATTR)
                .ok()
                .flatten()
                .is_some_and(|v| v == b"y");
        out.push((
            path.clone(),
            UpperEntry {
                state: EntryState::of(&meta),
                whiteout: is_whiteout(&meta),
                opaque,
            },
        ));
        if meta.is_dir() {
            walk_upper(root, &path, out)?;
        }
    }
    Ok(())
}

fn upper_entries(upper: &Path) -> Result<Vec<(PathBuf, UpperEntry)>, LayerError> {
    let mut out = Vec::new();
    walk_upper(upper, Path::new(""), &mut out)?;
    Ok(out)
}

impl Snapshotter for OverlaySnapshotter {
    fn begin_deferred(&mut self) -> Result<i128, LayerError> {
        let begun = match self.begun.take() {
            Some(begun) => begun,
            None => upper_entries(&self.upper)?.into_iter().collect(),
        };
        // As the walk does (snapshot.rs): a change must get a later timestamp than any
        // recorded here.
        let newest = begun
            .values()
            .map(|e| e.state.last_change_ns())
            .max()
            .unwrap_or(0);
        self.begun = Some(begun);
        Ok(newest + TIMESTAMP_GRANULARITY.as_nanos() as i128)
    }

    fn changes(&mut self) -> Result<ChangeSet, LayerError> {
        let begun = self
            .begun
            .take()
            .ok_or_else(|| LayerError::SnapshotNotBegun {
                root: self.upper.clone(),
            })?;
        let now = upper_entries(&self.upper)?;
        let mut changes: Vec<Change> = Vec::new();
        let push = |changes: &mut Vec<Change>, path: &Path, kind| {
            changes.push(Change {
                path: path.to_path_buf(),
                kind,
            })
        };
        // Below a replaced folder everything is the new folder's (as in the walk).
        let mut replaced: Option<PathBuf> = None;
        let under = |prefix: &Option<PathBuf>, path: &Path| {
            prefix.as_deref().is_some_and(|p| path.starts_with(p))
        };
        for (path, entry) in &now {
            let base = self.base(&begun, path);
            if under(&replaced, path) {
                if !entry.whiteout {
                    let kind = match base {
                        Some(_) => ChangeKind::Modified,
                        None => ChangeKind::Added,
                    };
                    push(&mut changes, path, kind);
                    if entry.state.is_dir() {
                        self.hidden_entries(&begun, path, &mut changes)?;
                    }
                }
                continue;
            }
            match (&base, entry.whiteout) {
                (None, true) => {}
                (Some(_), true) => push(&mut changes, path, ChangeKind::Deleted),
                (None, false) => push(&mut changes, path, ChangeKind::Added),
                (Some(base), false) => {
                    let dir_again = base.is_dir()
                        && entry.state.is_dir()
                        && match base {
                            Base::Upper(before) => {
                                (before.inode, before.dev) != (entry.state.inode, entry.state.dev)
                            }
                            Base::Lower(_) => entry.opaque,
                        };
                    if dir_again {
                        // As the walk has it (snapshot.rs `diff`): Modified, what the old
                        // folder held Deleted, everything in the new one emitted.
                        replaced = Some(path.clone());
                        push(&mut changes, path, ChangeKind::Modified);
                        self.hidden_entries(&begun, path, &mut changes)?;
                    } else if self.differs(base, entry, path)? {
                        push(&mut changes, path, ChangeKind::Modified);
                    }
                }
            }
        }
        // What xbake had put in the upper folder and the step removed: it leaves no
        // whiteout when the lower stack never had it.
        let present: BTreeSet<&Path> = now.iter().map(|(p, _)| p.as_path()).collect();
        for (path, entry) in &begun {
            if !entry.whiteout && !present.contains(path.as_path()) {
                push(&mut changes, path, ChangeKind::Deleted);
            }
        }
        changes.sort_by(|a, b| a.path.cmp(&b.path));
        // A deleted folder, or one that is something else now, implies its subtree.
        let mut gone: Option<PathBuf> = None;
        let now_dirs: BTreeSet<&Path> = now
            .iter()
            .filter(|(_, e)| e.state.is_dir())
            .map(|(p, _)| p.as_path())
            .collect();
        let mut kept = Vec::with_capacity(changes.len());
        for change in changes {
            if under(&gone, &change.path) && change.kind == ChangeKind::Deleted {
                continue;
            }
            // Only an entry that is no folder now can end a folder's subtree; the
            // upper folder's listing says which are folders, with no second stat.
            let is_dir_now = now_dirs.contains(change.path.as_path());
            if change.kind == ChangeKind::Deleted || !is_dir_now {
                let was_dir = begun
                    .get(&change.path)
                    .map(|e| e.state.is_dir() && !e.whiteout)
                    .unwrap_or_else(|| {
                        fs::symlink_metadata(self.lower.join(&change.path))
                            .is_ok_and(|m| m.is_dir())
                    });
                if was_dir {
                    gone = Some(change.path.clone());
                }
            }
            kept.push(change);
        }
        kept.dedup_by(|a, b| a.path == b.path && a.kind == b.kind);
        // Hard links as the upper folder has them (the merged tree's inode numbers
        // differ between a copied-up file and a link made to it).
        let link_ids = now
            .iter()
            .filter(|(_, e)| e.state.file_type == libc::S_IFREG && e.state.nlink > 1)
            .map(|(p, e)| (p.clone(), (e.state.dev, e.state.inode)))
            .collect();
        self.begun = Some(now.into_iter().collect());
        self.forgiven.clear();
        Ok(ChangeSet {
            changes: kept,
            link_ids,
        })
    }

    fn invalidate(&mut self) {
        self.begun = None;
        self.forgiven.clear();
    }

    fn forgive_ctime(&mut self, dirs: &[PathBuf]) {
        self.forgiven.extend(dirs.iter().cloned());
    }
}

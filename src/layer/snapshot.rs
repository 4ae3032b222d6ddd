//! Detecting what a build step changed in a rootfs. `Snapshotter` is the seam: the walk
//! below works everywhere; an overlayfs one (reading the upper directory) can replace it
//! without the callers or `ChangeSet` noticing.

use super::error::LayerError;
use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Finds the changes a step makes to a rootfs.
pub trait Snapshotter: Send {
    /// Called before a step runs; the step then runs in the root. Returns once a change
    /// is sure to get a later timestamp than any the baseline recorded.
    fn begin(&mut self) -> Result<(), LayerError> {
        let settled_at_ns = self.begin_deferred()?;
        wait_until(settled_at_ns);
        Ok(())
    }
    /// [`Snapshotter::begin`] without the wait: returns the wall-clock time (ns since the
    /// epoch) before which the step must not change anything, for a caller that has
    /// other work to do first. A RUN step's sandbox waits for it just before the
    /// command starts (sandbox/init.rs), so its own set-up hides the wait.
    fn begin_deferred(&mut self) -> Result<i128, LayerError>;
    /// Called after the step: the changes since `begin`. Also the baseline for the next
    /// step, so consecutive steps cost one look at the tree each.
    fn changes(&mut self) -> Result<ChangeSet, LayerError>;
    /// The tree was changed outside a step (e.g. a cached layer was applied onto it): the
    /// next `begin` must take a fresh baseline.
    fn invalidate(&mut self);
    /// During the step, xbake itself made entries in these directories (relative paths)
    /// and removed them again, putting the directories' times back: the mount points of
    /// the step's own mounts (sandbox/stubs.rs). In the next `changes`, such a directory
    /// counts as changed only if more than what that leaves behind differs (its ctime,
    /// which no one can set, and its size, which ext4 never shrinks).
    fn forgive_ctime(&mut self, dirs: &[PathBuf]);
}

/// What changed, however it was found. Sorted by path, comparing component by component
/// with bytes (`Path`'s order), which is a depth-first walk with children sorted by name:
/// a directory comes right before its contents.
///
/// Every path to emit is listed (an added directory and each of its entries), except that
/// a `Deleted` directory implies its whole subtree, as an overlayfs whiteout does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChangeSet {
    pub changes: Vec<Change>,
    /// Which changed regular files are one file (hard links), where the tree that is
    /// packed cannot say: overlayfs gives a copied-up file its lower inode number and a
    /// link made to it afterwards the upper one. Path → the (device, inode) the
    /// snapshotter saw; a path not listed is known by the packed tree's own stat.
    pub link_ids: std::collections::BTreeMap<PathBuf, (u64, u64)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// Relative to the root, no leading `/`.
    pub path: PathBuf,
    pub kind: ChangeKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    Added,
    Modified,
    Deleted,
    /// A directory whose old contents are all hidden: packed with an opaque marker. The
    /// snapshotters never produce it (see `diff`); a directory made again is Modified,
    /// with its old entries Deleted, whether or not its inode changed.
    Replaced,
}

impl ChangeSet {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// What is recorded per entry. Any difference means "changed"; the ctime catches content
/// writes, chmod, chown, xattr changes and renames, so file contents are never read. (umoci
/// keeps the same kind of list as a constant: `oci/layer/generate.go`'s inode comparison.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct EntryState {
    /// File-type bits of st_mode.
    pub(super) file_type: u32,
    pub(super) mode: u32,
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) size: u64,
    pub(super) mtime: (i64, i64),
    pub(super) ctime: (i64, i64),
    pub(super) dev: u64,
    pub(super) inode: u64,
    pub(super) nlink: u64,
}

impl EntryState {
    pub(super) fn of(meta: &fs::Metadata) -> Self {
        EntryState {
            file_type: meta.mode() & libc::S_IFMT,
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
            dev: meta.dev(),
            inode: meta.ino(),
            nlink: meta.nlink(),
        }
    }

    pub(super) fn is_dir(&self) -> bool {
        self.file_type == libc::S_IFDIR
    }

    /// Equal but for what creating and removing an entry leaves on a directory whose
    /// times were put back (see [`Snapshotter::forgive_ctime`]).
    pub(super) fn same_but_ctime(&self, other: &EntryState) -> bool {
        EntryState {
            ctime: other.ctime,
            size: other.size,
            ..*self
        } == *other
    }

    /// The later of mtime and ctime, as nanoseconds since the epoch.
    pub(super) fn last_change_ns(&self) -> i128 {
        let ns = |(s, n): (i64, i64)| i128::from(s) * 1_000_000_000 + i128::from(n);
        ns(self.mtime).max(ns(self.ctime))
    }
}

/// File timestamps come from a clock that only advances once per scheduler tick (up to
/// 10 ms with HZ=100; "multigrain" timestamps fix this only on Linux >= 6.13), so a change
/// made in the same tick as an entry's recorded timestamp can leave every field equal.
/// Like git's "racily clean" index entries: `begin` makes sure the newest timestamp in the
/// baseline is at least this old before the step starts, so any change the step makes
/// gets a later timestamp. It costs nothing unless the tree changed in the last 20 ms.
pub(super) const TIMESTAMP_GRANULARITY: Duration = Duration::from_millis(20);

/// One look at the tree.
struct Walk {
    /// Depth-first, children sorted by name bytes (so sorted by `Path` order).
    entries: Vec<(PathBuf, EntryState)>,
    /// Wall-clock time (ns since the epoch) after which a change is sure to get a newer
    /// timestamp than any recorded here.
    settled_at_ns: i128,
}

/// The portable snapshotter: walks the tree before and after and compares metadata.
pub struct WalkSnapshotter {
    root: PathBuf,
    baseline: Option<Walk>,
    /// Directories whose ctime alone does not make them changed, in the next `changes`.
    forgiven: BTreeSet<PathBuf>,
}

impl WalkSnapshotter {
    pub fn new(root: PathBuf) -> Self {
        WalkSnapshotter {
            root,
            baseline: None,
            forgiven: BTreeSet::new(),
        }
    }

    fn walk(&self) -> Result<Walk, LayerError> {
        let mut entries = Vec::new();
        walk_dir(&self.root, Path::new(""), &mut entries)?;
        let newest = entries
            .iter()
            .map(|(_, st)| st.last_change_ns())
            .max()
            .unwrap_or(0);
        Ok(Walk {
            entries,
            settled_at_ns: newest + TIMESTAMP_GRANULARITY.as_nanos() as i128,
        })
    }
}

impl Snapshotter for WalkSnapshotter {
    fn begin_deferred(&mut self) -> Result<i128, LayerError> {
        let baseline = match self.baseline.take() {
            Some(baseline) => baseline,
            None => self.walk()?,
        };
        let settled_at_ns = baseline.settled_at_ns;
        self.baseline = Some(baseline);
        Ok(settled_at_ns)
    }

    fn changes(&mut self) -> Result<ChangeSet, LayerError> {
        let baseline = self
            .baseline
            .take()
            .ok_or_else(|| LayerError::SnapshotNotBegun {
                root: self.root.clone(),
            })?;
        let current = self.walk()?;
        let forgiven = std::mem::take(&mut self.forgiven);
        let changes = diff(&baseline.entries, &current.entries, &forgiven);
        self.baseline = Some(current);
        Ok(changes)
    }

    fn invalidate(&mut self) {
        self.baseline = None;
        self.forgiven.clear();
    }

    fn forgive_ctime(&mut self, dirs: &[PathBuf]) {
        self.forgiven.extend(dirs.iter().cloned());
    }
}

/// Sleeps until the wall clock passes `settled_at_ns` (ns since the epoch), for at most
/// [`TIMESTAMP_GRANULARITY`]: a file dated in the future must not stall the build.
pub fn wait_until(settled_at_ns: i128) {
    let wait_ns = settled_at_ns - now_ns();
    if wait_ns > 0 {
        std::thread::sleep(Duration::from_nanos(wait_ns as u64).min(TIMESTAMP_GRANULARITY));
    }
}

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

/// Appends the entries below `root/rel` in depth-first order, children sorted by name.
/// Symlinks are not followed; the directory's own fd does the stat (statx relative to the
/// open directory), so each entry costs one readdir slot and one stat.
fn walk_dir(
    root: &Path,
    rel: &Path,
    out: &mut Vec<(PathBuf, EntryState)>,
) -> Result<(), LayerError> {
    let dir = root.join(rel);
    let mut children = Vec::new();
    for entry in fs::read_dir(&dir).map_err(|e| LayerError::io("read directory", &dir, e))? {
        let entry = entry.map_err(|e| LayerError::io("read directory", &dir, e))?;
        let meta = match entry.metadata() {
            Ok(meta) => meta,
            // Removed between readdir and stat: it is not there.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(LayerError::io("stat", entry.path(), e)),
        };
        children.push((entry.file_name(), meta));
    }
    children.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, meta) in children {
        let path = rel.join(&name);
        let descend = meta.file_type().is_dir();
        out.push((path.clone(), EntryState::of(&meta)));
        if descend {
            walk_dir(root, &path, out)?;
        }
    }
    Ok(())
}

/// Compares two walks (both in `Path` order) into a canonical `ChangeSet`; directories in
/// `forgiven` may differ in ctime and size alone (see [`Snapshotter::forgive_ctime`]).
fn diff(
    old: &[(PathBuf, EntryState)],
    new: &[(PathBuf, EntryState)],
    forgiven: &BTreeSet<PathBuf>,
) -> ChangeSet {
    let mut changes = Vec::new();
    // A directory removed and made again is not told apart from one whose entries were
    // removed: its inode may or may not be new (file systems reuse freed inodes), so
    // opaque markers would depend on the allocator. It is Modified, with its old entries
    // Deleted and its new ones compared, the same on every path (the overlay
    // snapshotter reads an opaque folder the same way).
    // Below a deleted or retyped directory, deletions are implied by the top-most one.
    let mut gone: Option<PathBuf> = None;
    let under = |prefix: &Option<PathBuf>, path: &Path| {
        prefix.as_deref().is_some_and(|p| path.starts_with(p))
    };
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        let order = match (old.get(i), new.get(j)) {
            (Some((a, _)), Some((b, _))) => a.as_path().cmp(b.as_path()),
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        match order {
            std::cmp::Ordering::Less => {
                let (path, state) = &old[i];
                i += 1;
                if under(&gone, path) {
                    continue;
                }
                if state.is_dir() {
                    gone = Some(path.clone());
                }
                changes.push(change(path, ChangeKind::Deleted));
            }
            std::cmp::Ordering::Greater => {
                let (path, _) = &new[j];
                j += 1;
                changes.push(change(path, ChangeKind::Added));
            }
            std::cmp::Ordering::Equal => {
                let (path, before) = &old[i];
                let after = &new[j].1;
                i += 1;
                j += 1;
                if before != after
                    && !(before.is_dir() && before.same_but_ctime(after) && forgiven.contains(path))
                {
                    if before.is_dir() && !after.is_dir() {
                        gone = Some(path.clone());
                    }
                    changes.push(change(path, ChangeKind::Modified));
                }
            }
        }
    }
    ChangeSet {
        changes,
        ..ChangeSet::default()
    }
}

fn change(path: &Path, kind: ChangeKind) -> Change {
    Change {
        path: path.to_path_buf(),
        kind,
    }
}
